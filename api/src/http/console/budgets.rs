//! Privacy budgets: per principal and dataset, ε and δ spent and left,
//! and the cumulative ε over time as a chart. The use case scopes it: the
//! authority sees every principal, a provider's approver its own datasets
//! summed over principals.

use axum::response::Response;
use maud::html;
use veil_policies::Role;

use super::chart::{self, Series};
use super::{Signed, St};

/// `GET /console/budgets`.
pub async fn show(axum::extract::State(state): St, s: Signed) -> Response {
    if let Err(r) = s.require(&[Role::Approver]) {
        return r;
    }
    let l = s.lang;
    let spending = match state.spending(s.principal()) {
        Ok(v) => v,
        Err(e) => return s.refusal(&e),
    };
    let everyone = l.t("all_principals");
    let label = |r: &crate::service::spending::SpendingRow| {
        format!(
            "{} · {}",
            r.principal.as_deref().unwrap_or(everyone),
            r.dataset
        )
    };
    let series: Vec<Series<'_>> = spending
        .rows
        .iter()
        .map(|r| Series {
            label: label(r),
            points: &r.series,
        })
        .collect();
    let body = html! {
        p.lead { (l.t("budgets_intro")) }
        p.hint { (l.t("scope")) ": " (if spending.scope == "all" { l.t("scope_all") } else { l.t("scope_own_datasets_summed") }) }
        @if spending.rows.is_empty() { p data-testid="no-spending" { (l.t("no_spending")) } }
        @else {
            (chart::lines(l.t("cumulative_epsilon"), &series))
            table.grid data-testid="budgets" {
                thead { tr {
                    th { (l.t("principal")) } th { (l.t("dataset")) } th { (l.t("budget")) } th { (l.t("period")) }
                    th { "ε " (l.t("spent")) } th { "δ " (l.t("spent")) } th { "ε " (l.t("left")) } th { (l.t("used")) }
                } }
                tbody {
                    @for r in &spending.rows {
                        tr {
                            td { (r.principal.as_deref().unwrap_or(everyone)) }
                            td { code { (r.dataset) } }
                            td { @if let Some(b) = &r.budget { "ε " (fmt(b.epsilon)) ", δ " (format!("{:e}", b.delta)) } }
                            td { @if let Some(b) = &r.budget { (b.period.map_or(l.t("never_renews"), |p| l.t(p.name()))) } }
                            td { (fmt(r.spent_epsilon)) }
                            td { (format!("{:e}", r.spent_delta)) }
                            td { @if let Some(left) = r.left_epsilon { (fmt(left)) } }
                            td {
                                @if let Some(b) = &r.budget {
                                    @let used = if b.epsilon > 0.0 { (r.spent_epsilon / b.epsilon).clamp(0.0, 1.0) } else { 1.0 };
                                    meter min="0" max="1" value=(format!("{used:.3}")) { (format!("{:.0}%", used * 100.0)) }
                                    " " (format!("{:.0}%", used * 100.0))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    s.render(l.t("nav_budgets"), body)
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}
