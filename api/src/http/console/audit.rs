//! The audit trail (Art. 30, 43): entries filtered by principal, dataset,
//! endpoint, outcome and time, newest first, a page at a time; the chain's
//! verification state and its last signed checkpoint. The search is the
//! API's use case, so a provider's approver sees only its own datasets'
//! entries, with other institutions' request text withheld.

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use veil_policies::Role;

use super::{Signed, St};
use crate::wire::admin::AuditQuery;

/// Entries per page.
const PAGE: usize = 50;

#[derive(Deserialize, Default, Clone)]
pub struct Filter {
    principal: Option<String>,
    dataset: Option<String>,
    endpoint: Option<String>,
    outcome: Option<String>,
    /// `datetime-local` values, read as China Standard Time, or RFC 3339.
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
}

/// A form's time as RFC 3339: a `datetime-local` value has no offset and
/// is the service's time zone (UTC+8).
fn rfc3339(value: &Option<String>) -> Option<String> {
    let v = value.as_deref()?.trim();
    if v.is_empty() {
        return None;
    }
    let has_offset = v.ends_with('Z') || v.get(19..).is_some_and(|t| t.contains(['+', '-']));
    Some(match (has_offset, v.len()) {
        (true, _) => v.to_owned(),
        (false, 16) => format!("{v}:00+08:00"),
        (false, _) => format!("{v}+08:00"),
    })
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// `GET /console/audit`: the page, or (for htmx) the results alone.
pub async fn search(
    axum::extract::State(state): St,
    s: Signed,
    filter: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = s.require(&[Role::Approver]) {
        return r;
    }
    let l = s.lang;
    let Ok(Query(f)) = filter else {
        return s.error(axum::http::StatusCode::BAD_REQUEST, l.t("bad_form"));
    };
    let query = AuditQuery {
        principal: nonempty(&f.principal),
        dataset: nonempty(&f.dataset),
        since: rfc3339(&f.since),
        outcome: nonempty(&f.outcome),
        limit: Some(PAGE),
        endpoint: nonempty(&f.endpoint),
        until: rfc3339(&f.until),
        before: f.before,
    };
    let results = match state.search_audit(s.principal(), &query) {
        Ok(page) => results(&s, &f, &page),
        Err(e) => s.refused(&e).1,
    };
    if s.fragment {
        return results.into_response();
    }
    let datasets: Vec<String> = state
        .catalog(s.principal(), None)
        .datasets
        .into_iter()
        .map(|d| d.name)
        .collect();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        div #chain hx-get="/console/audit/chain" hx-trigger="load" {
            p.hint { a href="/console/audit/chain" { (l.t("verify_chain")) } }
        }
        form.filters method="get" action="/console/audit" hx-get="/console/audit" hx-target="#audit-results" hx-push-url="true" data-testid="audit-filter" {
            label { (l.t("principal")) input type="text" name="principal" value=(value(&f.principal)); }
            label { (l.t("dataset"))
                select name="dataset" {
                    option value="" { (l.t("any")) }
                    @for d in &datasets { option value=(d) selected[f.dataset.as_deref() == Some(d.as_str())] { (d) } }
                }
            }
            label { (l.t("endpoint")) input type="text" name="endpoint" list="endpoints" value=(value(&f.endpoint)); }
            datalist #endpoints {
                @for e in ["POST /v1/query", "POST /v1/verify", "POST /v1/models", "POST /v1/requests", "POST /v1/requests/{id}/{action}", "POST /console/sign-in", "POST /console/requests/{id}/{action}", "POST /console/catalog/{dataset}/grade", "POST /console/policy/propose"] {
                    option value=(e) {}
                }
            }
            label { (l.t("outcome"))
                select name="outcome" {
                    @for (v, k) in [("", "any"), ("ok", "outcome_ok"), ("refused", "outcome_refused")] {
                        option value=(v) selected[f.outcome.as_deref().unwrap_or("") == v] { (l.t(k)) }
                    }
                }
            }
            label { (l.t("since")) input type="datetime-local" name="since" value=(value(&f.since)); }
            label { (l.t("until")) input type="datetime-local" name="until" value=(value(&f.until)); }
            button type="submit" { (l.t("filter")) }
        }
        div #audit-results { (results) }
    };
    s.render(l.t("nav_audit"), body)
}

fn results(s: &Signed, f: &Filter, page: &crate::wire::admin::AuditPage) -> Markup {
    let l = s.lang;
    let next = (page.entries.len() == PAGE)
        .then(|| page.entries.last().map(|e| e.seq))
        .flatten();
    let link = |before: i64| {
        let mut q: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("principal", &f.principal),
            ("dataset", &f.dataset),
            ("endpoint", &f.endpoint),
            ("outcome", &f.outcome),
            ("since", &f.since),
            ("until", &f.until),
        ] {
            if let Some(v) = nonempty(v) {
                q.push((k, v));
            }
        }
        q.push(("before", before.to_string()));
        format!(
            "/console/audit?{}",
            q.iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        )
    };
    html! {
        p.hint { (l.t("scope")) ": " (if page.scope == "all" { l.t("scope_all") } else { l.t("scope_own_datasets") })
            " · " (page.entries.len()) " " (l.t("entries")) }
        @if page.entries.is_empty() { p data-testid="no-entries" { (l.t("no_entries")) } }
        @else {
            div.scroll {
                table.grid.audit data-testid="audit" {
                    thead { tr {
                        th { "#" } th { (l.t("time")) } th { (l.t("principal")) } th { (l.t("endpoint")) }
                        th { (l.t("request")) } th { (l.t("dataset")) } th { (l.t("rows")) } th { (l.t("privacy")) } th { (l.t("outcome")) }
                    } }
                    tbody {
                        @for e in &page.entries {
                            tr.refused[e.outcome.starts_with("refused")] {
                                td { (e.seq) }
                                td.time { (e.time) }
                                td { (e.principal) br; span.hint { (e.role) } }
                                td { code { (e.endpoint) } }
                                td.request { (e.request) @if !e.purpose.is_empty() { br; span.hint { (l.t("purpose")) ": " (e.purpose) } } }
                                td { (e.datasets.join(", ")) }
                                td { @if let Some(r) = e.rows { (r) } }
                                td.privacy { @if !e.privacy.is_null() && e.privacy != serde_json::json!({}) { code { (e.privacy.to_string()) } } }
                                td.outcome { code { (e.outcome) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(before) = next {
            p { a.button href=(link(before)) hx-get=(link(before)) hx-target="#audit-results" hx-push-url="true" data-testid="next-page" { (l.t("next_page")) " →" } }
        }
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `GET /console/audit/chain`: the chain's state. The authority sees the
/// counts; a provider's approver whether it is intact and when it was last
/// signed (the counts are every institution's activity).
pub async fn chain(axum::extract::State(state): St, s: Signed) -> Response {
    if let Err(r) = s.require(&[Role::Approver]) {
        return r;
    }
    let l = s.lang;
    let checked = state
        .blocking(|state| {
            Ok::<_, crate::service::ServiceError>((
                state.check_audit_chain()?,
                state.last_audit_checkpoint()?,
            ))
        })
        .await
        .and_then(|r| r);
    let body = match checked {
        Err(e) => s.refused(&e).1,
        Ok((view, last)) => html! {
            div.chain.intact[view.intact].broken[!view.intact] data-testid="chain" {
                strong { (if view.intact { l.t("chain_intact") } else { l.t("chain_broken") }) }
                @if s.authority {
                    @if let Some(n) = view.entries { " · " (n) " " (l.t("entries")) }
                    @if let Some(n) = view.checkpoints { " · " (n) " " (l.t("checkpoints")) }
                }
                // The last signature over the chain: the signed head
                // (`audit.head`, signed as the log grows) or the last
                // checkpoint row, whichever reaches further.
                @let row = last.as_ref().map(|(seq, _)| *seq);
                @let signed = view.signed_head.max(row);
                @if let Some(n) = signed {
                    " · " (l.t("last_checkpoint"))
                    @if s.authority { " #" (n) }
                    @if let Some((seq, time)) = &last { @if *seq == n { " " (time) } }
                }
                @if let Some(bad) = view.first_bad_entry { " · " (l.t("first_bad_entry")) " #" (bad) }
                @if let Some(reason) = &view.reason { br; span { (reason) } }
            }
        },
    };
    s.render(l.t("verify_chain"), body)
}
