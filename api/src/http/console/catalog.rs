//! The catalog: every dataset with its Art. 13 / 33 attributes, state and
//! versions; per field its category, grade and the level each analyst role
//! gets with and without a grant; the products and templates enabled on
//! it; and, for approvers, a grade change proposed as a catalog change.

use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use veil_policies::Role;

use super::{Signed, St, layout};
use crate::http::state::AppState;

const READERS: &[Role] = &[Role::Approver, Role::Admin];

/// The state of each dataset that is not simply active.
fn states(state: &AppState) -> std::collections::BTreeMap<String, String> {
    state
        .reader()
        .and_then(|r| r.dataset_access())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

fn state_badge(s: &Signed, access: Option<&String>) -> Markup {
    let l = s.lang;
    match access.map(String::as_str) {
        None => html! { span.badge.active { (l.t("state_active")) } },
        Some(other) => {
            let key = match other {
                "suspended" => "state_suspended",
                "sealed" => "state_sealed",
                "destroyed" => "state_destroyed",
                "withdrawn" => "state_withdrawn",
                _ => "state_blocked",
            };
            html! { span.badge.blocked { (l.t(key)) } }
        }
    }
}

/// `GET /console/catalog`.
pub async fn list(axum::extract::State(state): St, s: Signed) -> Response {
    if let Err(r) = s.require(READERS) {
        return r;
    }
    let l = s.lang;
    let catalog = state.catalog(s.principal(), None);
    let access = states(&state);
    let body = html! {
        p.lead { (l.t("catalog_intro")) " " (l.t("policy_version")) " " code { (catalog.policy_version) } }
        table.grid data-testid="catalog" {
            thead { tr {
                th { (l.t("dataset")) } th { (l.t("title")) } th { (l.t("provider")) }
                th { (l.t("share")) } th { (l.t("open")) } th { (l.t("state")) } th { (l.t("version")) }
            } }
            tbody {
                @for d in &catalog.datasets {
                    tr {
                        td { a href={ "/console/catalog/" (d.name) } { code { (d.name) } } }
                        td { (d.title) }
                        td { (d.providing_institution) }
                        td { (l.t(d.share.attribute)) }
                        td { (l.t(d.open.attribute)) }
                        td { (state_badge(&s, access.get(&d.name))) }
                        td { "v" (d.version) }
                    }
                }
            }
        }
    };
    s.render(l.t("nav_catalog"), body)
}

/// `GET /console/catalog/{dataset}`.
pub async fn show(
    axum::extract::State(state): St,
    s: Signed,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = s.require(READERS) {
        return r;
    }
    match page(&state, &s, &name, None) {
        Ok(body) => s.render(&name, body),
        Err(r) => r,
    }
}

fn page(
    state: &AppState,
    s: &Signed,
    name: &str,
    problem: Option<Markup>,
) -> Result<Markup, Response> {
    let l = s.lang;
    let catalog = state.catalog(s.principal(), None);
    let Some(d) = catalog.datasets.iter().find(|d| d.name == name) else {
        return Err(s.error(StatusCode::NOT_FOUND, l.t("no_such_dataset")));
    };
    let table = state.decision_table(name).map_err(|e| s.refusal(&e))?;
    let versions = state.catalog_versions(name).map_err(|e| s.refusal(&e))?;
    let engine = state.engine();
    let policy = engine.policy();
    let products: Vec<_> = policy
        .products
        .iter()
        .filter(|p| p.dataset == name)
        .collect();
    let templates = policy.models.get(name).cloned().unwrap_or_default();
    let access = states(state);
    // The authority's approvers propose for every entry, a provider's for
    // its own (the service decides; the page offers only what it allows).
    let own = s.principal().org.as_deref() == Some(d.providing_institution.as_str());
    let may_grade = s.role() == Role::Approver && (s.authority || own);
    Ok(html! {
        @if let Some(p) = problem { (p) }
        p.lead { (d.title) " — " (d.description) }
        p { (l.t("state")) ": " (state_badge(s, access.get(name))) " · " (l.t("version")) " v" (d.version) }
        section.attributes {
            h2 { (l.t("attributes")) }
            dl.attrs {
                dt { (l.t("provider")) } dd { (d.providing_institution) }
                dt { (l.t("collector")) } dd { (d.collecting_institution) }
                dt { (l.t("approver_institution")) } dd { (d.approving_institution) }
                dt { (l.t("database")) } dd { (d.database) }
                dt { (l.t("data_form")) } dd { (d.data_form) " · " (d.format) }
                dt { (l.t("update_frequency")) } dd { (d.update_frequency) }
                dt { (l.t("share")) } dd {
                    strong { (l.t(d.share.attribute)) } " — " (d.share.conditions)
                    br; (l.t("scope")) ": " (d.share.scope)
                    br; (l.t("legal_basis")) ": " (d.share.legal_basis)
                }
                dt { (l.t("open")) } dd { strong { (l.t(d.open.attribute)) } " — " (d.open.conditions) }
                dt { (l.t("privacy_unit")) } dd { code { (d.privacy_unit) } }
                @if let Some(r) = &d.region_field { dt { (l.t("region_field")) } dd { code { (r) } } }
            }
        }
        section {
            h2 { (l.t("fields")) }
            p.hint { (l.t("decision_table_intro")) }
            table.grid.fields data-testid="fields" {
                thead {
                    tr {
                        th rowspan="2" { (l.t("field")) } th rowspan="2" { (l.t("category")) }
                        th rowspan="2" { (l.t("grade")) } th rowspan="2" { (l.t("protections")) }
                        @for role in crate::service::grading::ANALYSTS {
                            th colspan="2" { (l.t(role.name())) }
                        }
                        @if may_grade { th rowspan="2" { (l.t("change_grade")) } }
                    }
                    tr {
                        @for _ in crate::service::grading::ANALYSTS {
                            th { (l.t("without_grant")) } th { (l.t("with_grant")) }
                        }
                    }
                }
                tbody {
                    @for f in &d.fields {
                        tr data-field=(f.name) {
                            td { code { (f.name) } br; span.hint { (f.description) } }
                            td { (f.category) }
                            td.grade { (f.grade) }
                            td {
                                @if f.personal { span.tag { (l.t("personal")) } }
                                @if f.sensitive { span.tag.sensitive { (l.t("sensitive")) } }
                                @if let Some(i) = f.identifier { span.tag { (i) } }
                            }
                            @if let Some(row) = table.iter().find(|t| t.field == f.name) {
                                @for (_, without, with) in &row.levels {
                                    td.level { (without.to_string()) }
                                    td.level { (with.to_string()) }
                                }
                            }
                            @if may_grade {
                                td {
                                    form.inline method="post" action={ "/console/catalog/" (name) "/grade" } {
                                        (layout::csrf(s))
                                        input type="hidden" name="field" value=(f.name);
                                        select name="grade" aria-label=(l.t("grade")) {
                                            @for g in &policy.grades {
                                                option value=(g.name) selected[g.name == f.grade] { (g.name) }
                                            }
                                        }
                                        button type="submit" { (l.t("propose")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (l.t("products_templates")) }
            @if products.is_empty() && templates.is_empty() { p.hint { (l.t("none")) } }
            ul {
                @for p in &products {
                    li { (l.t("product")) " " code { (p.name) } " — " (p.description) }
                }
                @for t in &templates {
                    li { (l.t("template")) " " code { (t.to_string()) } }
                }
            }
        }
        section {
            h2 { (l.t("versions")) }
            table.grid {
                thead { tr { th { (l.t("version")) } th { (l.t("registered_at")) } th { (l.t("registered_by")) } th { (l.t("rows")) } th { "SHA-256" } } }
                tbody {
                    @for v in versions.versions.iter().rev() {
                        tr { td { "v" (v.version) } td { (v.registered_at) } td { (v.registered_by) } td { (v.rows) } td { code.hash { (v.file_sha256.get(..16).unwrap_or(&v.file_sha256)) } } }
                    }
                }
            }
        }
    })
}

/// `POST /console/catalog/{dataset}/grade`: proposes one field's grade as
/// a `catalog_change` request, audited; then shows the request.
pub async fn grade(
    axum::extract::State(state): St,
    s: Signed,
    Path(name): Path<String>,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = match s.accept(form, &[Role::Approver]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let audited = state.propose_grade(
        s.principal(),
        &name,
        form.get("field"),
        form.get("grade"),
        "POST /console/catalog/{dataset}/grade",
    );
    match state.settle(audited).await {
        Ok((request, _)) => {
            let id = request["id"].as_str().unwrap_or_default();
            Redirect::to(&format!("/console/requests/{id}?done=proposed")).into_response()
        }
        Err(e) => {
            let (status, notice) = s.refused(&e);
            match page(&state, &s, &name, Some(notice)) {
                Ok(body) => (status, s.render(&name, body)).into_response(),
                Err(r) => r,
            }
        }
    }
}
