//! The requests queue and one request's page. The authority's approvers
//! see every request, a provider's approver those about its data (the
//! service decides: the same parties as the API). The queue puts overdue
//! requests first, marked, then the open ones by deadline; each shows the
//! party whose step it is and the working days left on the official
//! calendar. A request's page shows its history, what it proposes (a
//! manifest or policy text as a diff against what is in force), and a form
//! for each step the signed-in approver may take, with the notes it must
//! record.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use veil_policies::Role;
use veil_policies::calendar::working_days_left;
use veil_policies::requests::{Kind, Party, finished, next_steps, overdue, requires};

use super::{Lang, Signed, St, layout};
use crate::http::state::AppState;
use crate::service::requests::today;
use crate::store::RequestRecord;

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    /// Show finished requests too.
    all: Option<String>,
}

/// Where a request stands for the queue's order: overdue, open, finished.
fn rank(r: &RequestRecord, day: NaiveDate) -> (u8, NaiveDate) {
    let far = NaiveDate::MAX;
    if overdue(r.kind, &r.state, r.due, day) {
        (0, r.due.unwrap_or(far))
    } else if !finished(r.kind, &r.state) {
        (1, r.due.unwrap_or(far))
    } else {
        (2, far)
    }
}

/// `GET /console/requests`.
pub async fn queue(
    axum::extract::State(state): St,
    s: Signed,
    query: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = s.require(&[Role::Approver]) {
        return r;
    }
    let l = s.lang;
    let all = query.ok().and_then(|Query(q)| q.all).is_some();
    let day = today(Utc::now());
    let mut records = match state.request_records(s.principal()) {
        Ok(r) => r,
        Err(e) => return s.refusal(&e),
    };
    let total = records.len();
    if !all {
        records.retain(|r| !finished(r.kind, &r.state));
    }
    records.sort_by(|a, b| {
        rank(a, day)
            .cmp(&rank(b, day))
            .then(b.updated_at.cmp(&a.updated_at))
    });
    // One connection for the whole queue, not one per row.
    let store = match state.reader() {
        Ok(store) => store,
        Err(e) => return s.refusal(&e.into()),
    };
    let mine = |r: &RequestRecord| -> Vec<Party> {
        crate::service::requests::parties(&store, s.principal(), r).unwrap_or_default()
    };
    let body = html! {
        p.lead { (l.t("requests_intro")) }
        p.row {
            (l.t("today_is")) " " strong { (day.to_string()) }
            " · "
            @if all {
                a href="/console/requests" { (l.t("show_open")) }
            } @else {
                a href="/console/requests?all=1" { (l.t("show_all")) " (" (total) ")" }
            }
        }
        @if records.is_empty() { p.hint data-testid="empty-queue" { (l.t("no_requests")) } }
        @else {
            table.grid.queue data-testid="queue" {
                thead { tr {
                    th { (l.t("request")) } th { (l.t("kind")) } th { (l.t("dataset")) } th { (l.t("applicant")) }
                    th { (l.t("state")) } th { (l.t("whose_step")) } th { (l.t("due")) } th { (l.t("days_left")) }
                } }
                tbody {
                    @for r in &records {
                        @let late = overdue(r.kind, &r.state, r.due, day);
                        @let mine = mine(r);
                        tr.overdue[late] data-request=(r.id) {
                            td { a href={ "/console/requests/" (r.id) } { code { (short(&r.id)) } } }
                            td { (l.t(r.kind.name())) }
                            td { @if let Some(d) = &r.dataset { code { (d) } } }
                            td { (r.applicant) }
                            td { (l.t(&r.state)) }
                            td { (whose(l, r, &mine)) }
                            td { @if let Some(d) = r.due { (d.to_string()) } }
                            td {
                                @if late {
                                    span.badge.late data-testid="overdue" { (l.t("overdue")) " " (-working_days_left(day, r.due.unwrap_or(day))) " " (l.t("working_days")) }
                                } @else if let (Some(due), false) = (r.due, finished(r.kind, &r.state)) {
                                    (working_days_left(day, due)) " " (l.t("working_days"))
                                }
                            }
                        }
                    }
                }
            }
        }
        p.hint { (l.t("calendar_note")) }
    };
    s.render(l.t("nav_requests"), body)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Who takes the next step, marked when it is the signed-in approver.
fn whose(l: Lang, r: &RequestRecord, mine: &[Party]) -> Markup {
    let mut by: Vec<Party> = next_steps(r.kind, &r.state)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    by.dedup();
    html! {
        @for (i, p) in by.iter().enumerate() {
            @if i > 0 { ", " }
            @if mine.contains(p) { strong.you { (l.t(p.name())) " (" (l.t("you")) ")" } }
            @else { (l.t(p.name())) }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

/// `GET /console/requests/{id}`.
pub async fn show(
    axum::extract::State(state): St,
    s: Signed,
    Path(id): Path<String>,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = s.require(&[Role::Approver]) {
        return r;
    }
    let done = done.ok().and_then(|Query(d)| d.done);
    match page(&state, &s, &id, done.as_deref(), None) {
        Ok(body) => s.render(&format!("{} {}", s.lang.t("request"), short(&id)), body),
        Err(r) => r,
    }
}

fn page(
    state: &AppState,
    s: &Signed,
    id: &str,
    done: Option<&str>,
    problem: Option<Markup>,
) -> Result<Markup, Response> {
    let l = s.lang;
    let (r, steps, parties) = state
        .request_record(s.principal(), id)
        .map_err(|e| s.refusal(&e))?;
    let day = today(Utc::now());
    let late = overdue(r.kind, &r.state, r.due, day);
    // The proposer of a change of the rules or of a catalog entry does not
    // approve it too (the service refuses; the page does not offer it).
    let four_eyes = matches!(r.kind, Kind::PolicyChange | Kind::CatalogChange)
        && r.applicant == s.principal().name;
    let mine: Vec<(&str, Party)> = next_steps(r.kind, &r.state)
        .into_iter()
        .filter(|(_, p)| parties.contains(p))
        .filter(|(a, _)| !(four_eyes && *a == "approve"))
        .collect();
    let others: Vec<(&str, Party)> = next_steps(r.kind, &r.state)
        .into_iter()
        .filter(|(_, p)| !parties.contains(p))
        .collect();
    // A notice for a step just taken: from a fixed list, never the text of
    // the address.
    let done = done.and_then(|d| match d {
        "proposed" => Some(l.t("done_proposed")),
        "step" => Some(l.t("done_step")),
        _ => None,
    });
    Ok(html! {
        @if let Some(p) = problem { (p) }
        @if let Some(d) = done { (layout::notice(l, d, false)) }
        dl.attrs data-testid="request" {
            dt { (l.t("request")) } dd { code { (r.id) } }
            dt { (l.t("kind")) } dd { (l.t(r.kind.name())) }
            dt { (l.t("state")) } dd data-testid="state" { strong { (l.t(&r.state)) } " " code { (r.state) } }
            dt { (l.t("applicant")) } dd { (r.applicant) }
            @if let Some(d) = &r.dataset { dt { (l.t("dataset")) } dd { a href={ "/console/catalog/" (d) } { code { (d) } } } }
            @if let Some(p) = &r.purpose { dt { (l.t("purpose")) } dd { (p) } }
            @if let Some(f) = &r.fields { dt { (l.t("fields")) } dd { (f.join(", ")) } }
            @if let Some(d) = r.days { dt { (l.t("grant_days")) } dd { (d) } }
            @if let Some(due) = r.due {
                dt { (l.t("due")) } dd {
                    (due.to_string())
                    @if late { " " span.badge.late data-testid="overdue" { (l.t("overdue")) } }
                    @else if !finished(r.kind, &r.state) { " · " (working_days_left(day, due)) " " (l.t("working_days_left")) }
                    @if !r.assumed.is_empty() { br; span.hint { (l.t("assumed_weekdays")) " " (format!("{:?}", r.assumed)) } }
                }
            }
            @if let Some(g) = &r.grant_id { dt { (l.t("grant")) } dd { code { (g) } } }
            dt { (l.t("you_are")) } dd {
                @if parties.is_empty() { (l.t("none")) }
                @for (i, p) in parties.iter().enumerate() { @if i > 0 { ", " } (l.t(p.name())) }
            }
        }
        (details(state, s, &r))
        section {
            h2 { (l.t("next_steps")) }
            @if mine.is_empty() && others.is_empty() { p.hint { (l.t("finished")) } }
            @for (action, by) in &mine {
                form.step method="post" action={ "/console/requests/" (r.id) "/" (action) } data-action=(action) {
                    (layout::csrf(s))
                    h3 { (l.t(action)) " " code { (action) } span.hint { " · " (l.t(by.name())) } }
                    @for note in requires(r.kind, action) {
                        label { (l.t(note)) " " code { (note) } " *"
                            textarea name={ "note." (note) } rows="2" required {}
                        }
                    }
                    label { (l.t("comment"))
                        textarea name="note.comment" rows="2" {}
                    }
                    button type="submit" { (l.t(action)) }
                }
            }
            @if !others.is_empty() {
                p.hint { (l.t("waiting_on")) " "
                    @for (i, (action, by)) in others.iter().enumerate() {
                        @if i > 0 { ", " }
                        (l.t(action)) " (" (l.t(by.name())) ")"
                    }
                }
            }
        }
        section {
            h2 { (l.t("history")) }
            table.grid data-testid="history" {
                thead { tr { th { "#" } th { (l.t("step")) } th { (l.t("from")) } th { (l.t("to")) } th { (l.t("by")) } th { (l.t("notes")) } th { (l.t("time")) } } }
                tbody {
                    @for st in &steps {
                        tr {
                            td { (st.n) } td { (l.t(if st.action == "open" { "opened_request" } else { &st.action })) } td { (st.from_state.as_deref().map(|f| l.t(f)).unwrap_or("")) }
                            td { (l.t(&st.to_state)) } td { (st.actor) }
                            td { (notes(&st.notes)) }
                            td { (st.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) }
                        }
                    }
                }
            }
        }
    })
}

/// A step's notes, key by key.
fn notes(value: &serde_json::Value) -> Markup {
    html! {
        @if let Some(map) = value.as_object() {
            @for (k, v) in map {
                div { code { (k) } ": " (v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())) }
            }
        }
    }
}

/// What the request proposes, against what is in force: a catalog
/// change's manifest, a policy change's text; other details as they are.
fn details(state: &AppState, s: &Signed, r: &RequestRecord) -> Markup {
    let l = s.lang;
    let Some(detail) = r.detail.as_object() else {
        return html! {};
    };
    // Against what is in force while it is open; once finished, what is
    // in force may be it.
    let open = !finished(r.kind, &r.state);
    let current = match r.kind {
        _ if !open => None,
        Kind::CatalogChange => r
            .dataset
            .as_deref()
            .and_then(|d| state.reader().ok()?.dataset(d).ok()?)
            .map(|d| d.manifest_text),
        Kind::PolicyChange => state.policy().ok().map(|p| p.text),
        _ => None,
    };
    let long = |k: &str| matches!(k, "manifest" | "text");
    html! {
        @if !detail.is_empty() {
            section {
                h2 { (l.t("detail")) }
                @for (k, v) in detail {
                    @let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                    @if long(k) {
                        h3 { code { (k) } }
                        @if let Some(before) = &current {
                            p.hint { (l.t("diff_against_current")) }
                            (changed_lines(before, &text))
                        } @else {
                            pre.text { (text) }
                        }
                    } @else {
                        p { code { (k) } ": " (text) }
                    }
                }
            }
        }
    }
}

/// The changed lines between two texts, with their numbers.
fn changed_lines(before: &str, after: &str) -> Markup {
    use crate::diff::Op;
    let ops = crate::diff::ops(before, after);
    html! {
        pre.changes data-testid="changes" {
            @for op in ops {
                @match op {
                    Op::Same(..) => {}
                    Op::Removed(n, t) => { span.del { "- " (n) ": " (t) "\n" } }
                    Op::Added(n, t) => { span.add { "+ " (n) ": " (t) "\n" } }
                }
            }
        }
    }
}

/// `POST /console/requests/{id}/{action}`: takes the step with the notes
/// given (`note.<name>` fields), audited as the API's step is.
pub async fn act(
    axum::extract::State(state): St,
    s: Signed,
    Path((id, action)): Path<(String, String)>,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = match s.accept(form, &[Role::Approver]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let notes: std::collections::BTreeMap<String, String> = form
        .prefixed("note.")
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let audited = state.act_on_request(
        s.principal(),
        &id,
        &action,
        &notes,
        "POST /console/requests/{id}/{action}",
    );
    match state.settle(audited).await {
        Ok(_) => Redirect::to(&format!("/console/requests/{id}?done=step")).into_response(),
        Err(e) => {
            let (status, notice) = s.refused(&e);
            match page(&state, &s, &id, None, Some(notice)) {
                Ok(body) => {
                    let title = format!("{} {}", s.lang.t("request"), short(&id));
                    (status, s.render(&title, body)).into_response()
                }
                Err(r) => r,
            }
        }
    }
}
