//! The policy: the active version and its text, every version, a
//! side-by-side diff of any two, the open proposals, and a change form
//! that runs `veil policy check`'s checks and shows each problem at its
//! line before anything is proposed.

use axum::extract::Query;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use veil_policies::requests::{Kind, finished};
use veil_policies::{Problem, Role};

use super::{Signed, St, layout};
use crate::diff::{Op, ops};
use crate::http::state::AppState;

#[derive(Deserialize, Default)]
pub struct Compare {
    a: Option<i64>,
    b: Option<i64>,
}

/// `GET /console/policy[?a=N&b=M]`.
pub async fn show(
    axum::extract::State(state): St,
    s: Signed,
    compare: Result<Query<Compare>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = s.require(&[Role::Approver, Role::Admin]) {
        return r;
    }
    let compare = compare.map(|Query(c)| c).unwrap_or_default();
    match page(&state, &s, &compare, None) {
        Ok(body) => s.render(s.lang.t("nav_policy"), body),
        Err(r) => r,
    }
}

/// The form's state after a check: the text and its problems.
struct Checked {
    text: String,
    problems: Vec<Problem>,
}

fn page(
    state: &AppState,
    s: &Signed,
    compare: &Compare,
    checked: Option<Checked>,
) -> Result<Markup, Response> {
    let l = s.lang;
    let active = state.policy().map_err(|e| s.refusal(&e))?;
    let versions = state.policy_versions().map_err(|e| s.refusal(&e))?;
    let proposals: Vec<_> = if s.role() == Role::Approver {
        state
            .request_records(s.principal())
            .map_err(|e| s.refusal(&e))?
            .into_iter()
            .filter(|r| r.kind == Kind::PolicyChange && !finished(r.kind, &r.state))
            .collect()
    } else {
        Vec::new()
    };
    let (a, b) = (
        compare.a.unwrap_or((active.version - 1).max(1)),
        compare.b.unwrap_or(active.version),
    );
    let diff = if compare.a.is_some() || compare.b.is_some() {
        let left = state.policy_text(a).map_err(|e| s.refusal(&e))?;
        let right = state.policy_text(b).map_err(|e| s.refusal(&e))?;
        Some(side_by_side(s, a, &left, b, &right))
    } else {
        None
    };
    let may_propose = s.authority;
    Ok(html! {
        p.lead {
            (l.t("active_policy")) " " strong data-testid="active-policy" { (active.label) } " — " (active.name)
        }
        section {
            h2 { (l.t("versions")) }
            table.grid data-testid="policy-versions" {
                thead { tr { th { (l.t("version")) } th { (l.t("name")) } th { (l.t("digest")) } th { (l.t("loaded_at")) } th { (l.t("loaded_by")) } } }
                tbody {
                    @for v in versions.versions.iter().rev() {
                        tr { td { "v" (v.version) } td { (v.name) } td { code { (v.digest) } } td { (v.loaded_at) } td { (v.loaded_by) } }
                    }
                }
            }
            form.row method="get" action="/console/policy" {
                label { (l.t("compare")) " "
                    select name="a" { @for v in &versions.versions { option value=(v.version) selected[v.version == a] { "v" (v.version) } } }
                }
                label { " ↔ "
                    select name="b" { @for v in &versions.versions { option value=(v.version) selected[v.version == b] { "v" (v.version) } } }
                }
                button type="submit" { (l.t("show_diff")) }
            }
            @if let Some(d) = diff { (d) }
        }
        @if !proposals.is_empty() {
            section {
                h2 { (l.t("open_proposals")) }
                ul {
                    @for r in &proposals {
                        li { a href={ "/console/requests/" (r.id) } { code { (r.id) } } " — " (r.applicant) " · " (l.t(&r.state)) }
                    }
                }
            }
        }
        section {
            h2 { (l.t("change_policy")) }
            @if !may_propose { p.hint { (l.t("policy_authority_only")) } }
            @if let Some(c) = &checked {
                @if c.problems.is_empty() {
                    (layout::notice(l, l.t("policy_checks_pass"), false))
                } @else {
                    (layout::notice(l, &format!("{} {}", c.problems.len(), l.t("problems_found")), true))
                    (annotated(&c.text, &c.problems))
                }
            }
            form method="post" action="/console/policy/propose" {
                (layout::csrf(s))
                textarea name="text" rows="24" spellcheck="false" aria-label=(l.t("policy_text")) {
                    (checked.as_ref().map_or(active.text.as_str(), |c| c.text.as_str()))
                }
                div.row {
                    button type="submit" name="intent" value="check" { (l.t("check")) }
                    @if may_propose {
                        button.primary type="submit" name="intent" value="propose" { (l.t("propose")) }
                    }
                }
            }
        }
    })
}

/// `POST /console/policy/propose`: `intent=check` runs the checks and shows
/// the problems; `intent=propose` opens the `policy_change` request (which
/// checks again, and refuses with every problem).
pub async fn propose(
    axum::extract::State(state): St,
    s: Signed,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = match s.accept(form, &[Role::Approver]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = form.get("text").replace("\r\n", "\n");
    let checking = text.clone();
    let problems = match state
        .blocking(move |state| state.check_policy(&checking))
        .await
        .and_then(|r| r)
    {
        Ok(p) => p,
        Err(e) => return s.refusal(&e),
    };
    if form.get("intent") != "propose" || !problems.is_empty() {
        let status = if problems.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let checked = Checked { text, problems };
        return match page(&state, &s, &Compare::default(), Some(checked)) {
            Ok(body) => (status, s.render(s.lang.t("nav_policy"), body)).into_response(),
            Err(r) => r,
        };
    }
    let audited = state.propose_policy(s.principal(), &text, "POST /console/policy/propose");
    match state.settle(audited).await {
        Ok((request, _)) => {
            let id = request["id"].as_str().unwrap_or_default();
            Redirect::to(&format!("/console/requests/{id}?done=proposed")).into_response()
        }
        Err(e) => s.refusal(&e),
    }
}

/// The line a problem is about: the line a TOML error names, or the line
/// that names the table its location names (`grade \`L3\``); `None` for
/// the whole text.
fn line_of(text: &str, p: &Problem) -> Option<usize> {
    let named = |s: &str| {
        let rest = s.split("line ").nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().ok()
    };
    if let Some(n) = named(&p.message) {
        return Some(n);
    }
    let name = p.location.split('`').nth(1)?;
    let quoted = format!("\"{name}\"");
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with("name") && t.contains(&quoted)
        })
        .map(|i| i + 1)
}

/// The text with line numbers and each problem under its line.
fn annotated(text: &str, problems: &[Problem]) -> Markup {
    let placed: Vec<(Option<usize>, &Problem)> =
        problems.iter().map(|p| (line_of(text, p), p)).collect();
    html! {
        ol.problems data-testid="problems" {
            @for (line, p) in placed.iter().filter(|(l, _)| l.is_none()) {
                li.problem { (problem_text(*line, p)) }
            }
        }
        pre.annotated {
            @for (i, line) in text.lines().enumerate() {
                @let n = i + 1;
                @let here: Vec<&&Problem> = placed.iter().filter(|(l, _)| *l == Some(n)).map(|(_, p)| p).collect();
                span.line.bad[!here.is_empty()] { span.no { (n) } (line) "\n" }
                @for p in here {
                    span.problem data-line=(n) { "  ▲ " (problem_text(Some(n), p)) "\n" }
                }
            }
        }
    }
}

fn problem_text(line: Option<usize>, p: &Problem) -> String {
    let place = match (line, p.location.is_empty()) {
        (_, false) => format!("{}: ", p.location),
        (Some(n), true) => format!("line {n}: "),
        (None, true) => String::new(),
    };
    format!("{place}{}", p.message)
}

/// One row of a side-by-side diff: the left line, the right line (each
/// with its number), and whether it is a change.
type Row<'a> = (Option<(usize, &'a str)>, Option<(usize, &'a str)>, bool);

/// Pairs the removed and added lines of a change into rows.
fn flush<'a>(
    rows: &mut Vec<Row<'a>>,
    removed: &mut Vec<(usize, &'a str)>,
    added: &mut Vec<(usize, &'a str)>,
) {
    let n = removed.len().max(added.len());
    for k in 0..n {
        rows.push((removed.get(k).copied(), added.get(k).copied(), true));
    }
    removed.clear();
    added.clear();
}

/// Two versions side by side, changed lines paired.
fn side_by_side(s: &Signed, a: i64, left: &str, b: i64, right: &str) -> Markup {
    let l = s.lang;
    let mut rows: Vec<Row<'_>> = Vec::new();
    let mut removed: Vec<(usize, &str)> = Vec::new();
    let mut added: Vec<(usize, &str)> = Vec::new();
    let all = ops(left, right);
    let changed = all.iter().filter(|o| !matches!(o, Op::Same(..))).count();
    for op in all {
        match op {
            Op::Same(x, y, t) => {
                flush(&mut rows, &mut removed, &mut added);
                rows.push((Some((x, t)), Some((y, t)), false));
            }
            Op::Removed(x, t) => removed.push((x, t)),
            Op::Added(y, t) => added.push((y, t)),
        }
    }
    flush(&mut rows, &mut removed, &mut added);
    // Unchanged lines more than CONTEXT away from a change fold into one
    // row that says how many there are.
    const CONTEXT: usize = 3;
    let near: Vec<bool> = (0..rows.len())
        .map(|i| {
            let lo = i.saturating_sub(CONTEXT);
            let hi = (i + CONTEXT + 1).min(rows.len());
            rows[lo..hi].iter().any(|r| r.2)
        })
        .collect();
    let mut shown: Vec<Option<&Row<'_>>> = Vec::new();
    let mut folded = Vec::new();
    let mut run = 0usize;
    for (row, keep) in rows.iter().zip(&near) {
        if *keep {
            if run > 0 {
                shown.push(None);
                folded.push(run);
                run = 0;
            }
            shown.push(Some(row));
        } else {
            run += 1;
        }
    }
    if run > 0 {
        shown.push(None);
        folded.push(run);
    }
    let mut folds = folded.into_iter();
    html! {
        p { (l.t("diff_of")) " v" (a) " ↔ v" (b) ": " (changed) " " (l.t("lines_changed")) }
        div.diffwrap {
            table.diff data-testid="diff" {
                thead { tr { th colspan="2" { "v" (a) } th colspan="2" { "v" (b) } } }
                tbody {
                    @for row in &shown {
                        @if let Some((x, y, change)) = row {
                        tr.changed[*change] {
                            td.no { @if let Some((n, _)) = x { (n) } }
                            td.del[*change && x.is_some()] { @if let Some((_, t)) = x { (t) } }
                            td.no { @if let Some((n, _)) = y { (n) } }
                            td.add[*change && y.is_some()] { @if let Some((_, t)) = y { (t) } }
                        }
                        } @else {
                            tr.fold { td colspan="4" { "⋯ " (folds.next().unwrap_or(0)) " " (l.t("unchanged_lines")) } }
                        }
                    }
                }
            }
        }
    }
}
