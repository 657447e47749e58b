//! Principals, for admins: the list, adding one, suspending and resuming,
//! revoking keys and issuing a new one. A new key is shown once, on the
//! answer to the form that made it, and never again (pages are not
//! cached).

use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use veil_policies::Role;

use super::{Signed, St, layout};
use crate::http::state::AppState;
use crate::wire::admin::{NewPrincipalBody, StatusBody};

fn page(state: &AppState, s: &Signed, top: Option<Markup>) -> Result<Markup, Response> {
    let l = s.lang;
    let list = state.principals(s.principal()).map_err(|e| s.refusal(&e))?;
    Ok(html! {
        @if let Some(t) = top { (t) }
        table.grid data-testid="principals" {
            thead { tr {
                th { (l.t("name")) } th { (l.t("role")) } th { (l.t("institution")) } th { (l.t("region")) }
                th { (l.t("status")) } th { (l.t("grants")) } th { (l.t("created_at")) } th { (l.t("actions")) }
            } }
            tbody {
                @for p in &list.principals {
                    tr data-principal=(p.name) {
                        td { code { (p.name) } }
                        td { (l.t(p.role)) }
                        td { (p.org.as_deref().unwrap_or("")) }
                        td { (p.region.as_deref().unwrap_or("")) }
                        td { span.badge.active[p.status == "active"].blocked[p.status != "active"] { (l.t(p.status)) } }
                        td { (p.grants.len()) }
                        td.time { (p.created_at) }
                        td.actions {
                            @let next = if p.status == "active" { "suspend" } else { "resume" };
                            @for action in [next, "revoke", "issue"] {
                                form.inline method="post" action={ "/console/principals/" (p.name) "/" (action) } {
                                    (layout::csrf(s))
                                    button type="submit" data-action=(action) { (l.t(&format!("principal_{action}"))) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (l.t("add_principal")) }
            form.grid-form method="post" action="/console/principals" data-testid="add-principal" {
                (layout::csrf(s))
                label { (l.t("name")) input type="text" name="name" required autocomplete="off"; }
                label { (l.t("role"))
                    select name="role" { @for r in Role::ALL { option value=(r.name()) { (l.t(r.name())) } } }
                }
                label { (l.t("institution")) input type="text" name="org"; }
                label { (l.t("region")) input type="text" name="region" inputmode="numeric"; }
                label { (l.t("subject_id")) input type="text" name="subject" autocomplete="off"; }
                button type="submit" { (l.t("add")) }
            }
        }
    })
}

fn render(state: &AppState, s: &Signed, status: StatusCode, top: Option<Markup>) -> Response {
    match page(state, s, top) {
        Ok(body) => (status, s.render(s.lang.t("nav_principals"), body)).into_response(),
        Err(r) => r,
    }
}

/// The box that shows a new key, once.
fn key_box(s: &Signed, name: &str, key: &str) -> Markup {
    let l = s.lang;
    html! {
        div.notice.ok.key role="status" data-testid="new-key" {
            strong { (l.t("new_key_for")) " " code { (name) } }
            p { (l.t("new_key_once")) }
            input type="text" readonly value=(key) aria-label=(l.t("api_key"));
        }
    }
}

/// `GET /console/principals`.
pub async fn list(axum::extract::State(state): St, s: Signed) -> Response {
    if let Err(r) = s.require(&[Role::Admin]) {
        return r;
    }
    render(&state, &s, StatusCode::OK, None)
}

/// `POST /console/principals`: adds a principal and shows its key once.
pub async fn add(
    axum::extract::State(state): St,
    s: Signed,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = match s.accept(form, &[Role::Admin]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let body = NewPrincipalBody {
        name: form.get("name").trim().to_owned(),
        role: form.get("role").to_owned(),
        org: form.value("org"),
        region: form.value("region"),
        subject: form.value("subject"),
    };
    let audited = state.add_principal(s.principal(), &body, "POST /console/principals");
    match state.settle(audited).await {
        Ok((view, _)) => {
            let key = view.api_key.as_deref().unwrap_or_default();
            let top = key_box(&s, &view.name, key);
            render(&state, &s, StatusCode::CREATED, Some(top))
        }
        Err(e) => {
            let (status, top) = s.refused(&e);
            render(&state, &s, status, Some(top))
        }
    }
}

/// `POST /console/principals/{name}/{suspend|resume|revoke|issue}`.
pub async fn change(
    axum::extract::State(state): St,
    s: Signed,
    Path((name, action)): Path<(String, String)>,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(r) = s.accept(form, &[Role::Admin]) {
        return r;
    }
    let endpoint = "POST /console/principals/{name}/{action}";
    let p = s.principal();
    let outcome: Result<Option<Markup>, crate::service::ServiceError> = match action.as_str() {
        "suspend" | "resume" => {
            let status = StatusBody {
                status: if action == "suspend" {
                    "suspended"
                } else {
                    "active"
                }
                .to_owned(),
            };
            state
                .settle(state.set_status(p, &name, &status, endpoint))
                .await
                .map(|_| Some(layout::notice(s.lang, s.lang.t("done_status"), false)))
        }
        "revoke" => state
            .settle(state.revoke_keys(p, &name, endpoint))
            .await
            .map(|_| Some(layout::notice(s.lang, s.lang.t("done_revoked"), false))),
        "issue" => state
            .settle(state.issue_key(p, &name, endpoint))
            .await
            .map(|(issued, _)| Some(key_box(&s, &issued.name, &issued.api_key))),
        _ => return s.error(StatusCode::NOT_FOUND, s.lang.t("no_such_action")),
    };
    match outcome {
        Ok(top) => render(&state, &s, StatusCode::OK, top),
        Err(e) => {
            let (status, top) = s.refused(&e);
            render(&state, &s, status, Some(top))
        }
    }
}
