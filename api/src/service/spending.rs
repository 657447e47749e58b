//! Privacy spending as approvers oversee it (Art. 30): per principal and
//! dataset, the budget, what was spent of it in the current period and
//! what is left, and the spending over time.
//!
//! The data authority sees every principal on every dataset. An approver
//! of a providing institution sees its own datasets with the spending
//! summed over all principals: who spent how much is the spender's own,
//! as the audit log withholds it from other institutions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use veil_policies::{Principal, Role};

use super::{Service, ServiceError};

/// The spending an approver oversees.
#[derive(Debug, Clone, Default)]
pub struct Spending {
    pub rows: Vec<SpendingRow>,
    /// `all` or `datasets your institution provides`.
    pub scope: &'static str,
}

/// One principal's (or, for a provider, every principal's) spending on one
/// dataset.
#[derive(Debug, Clone)]
pub struct SpendingRow {
    /// `None`: every principal together.
    pub principal: Option<String>,
    pub dataset: String,
    /// The principal's budget on the dataset, when it has one now.
    pub budget: Option<veil_engine::DpBudget>,
    /// ε and δ spent: in the budget's current period against a budget,
    /// since ever otherwise.
    pub spent_epsilon: f64,
    pub spent_delta: f64,
    /// ε left of the budget in its period.
    pub left_epsilon: Option<f64>,
    /// The cumulative ε charged (refunds netted), by time, since ever.
    pub series: Series,
}

/// A cumulative value by time.
pub type Series = Vec<(DateTime<Utc>, f64)>;

impl Service {
    /// The spending `caller`, an approver, may oversee.
    pub fn spending(&self, caller: &Principal) -> Result<Spending, ServiceError> {
        if caller.role != Role::Approver {
            return Err(ServiceError::forbidden(
                "only an approver oversees privacy spending",
            ));
        }
        let store = self.reader()?;
        let authority = super::requests::is_authority(&store, caller)?;
        let provided = super::audit_log::provided_by(&store, caller)?;
        let points = store.ledger_points((!authority).then_some(provided.as_slice()))?;
        // (principal, dataset) -> the cumulative ε series and the δ spent,
        // in one pass; a provider's rows are keyed by dataset alone.
        let mut series: BTreeMap<(Option<String>, String), (Series, f64)> = BTreeMap::new();
        for p in &points {
            let key = (authority.then(|| p.principal.clone()), p.dataset.clone());
            let (line, delta) = series.entry(key).or_default();
            *delta += p.delta;
            let Ok(time) = DateTime::parse_from_rfc3339(&p.time) else {
                continue;
            };
            let before = line.last().map_or(0.0, |(_, e)| *e);
            line.push((time.with_timezone(&Utc), before + p.epsilon));
        }
        let engine = self.engine();
        let now = Utc::now();
        let mut rows = Vec::new();
        for ((principal, dataset), (line, total_delta)) in series {
            let total_epsilon = line.last().map_or(0.0, |(_, e)| *e);
            let mut row = SpendingRow {
                principal: principal.clone(),
                dataset: dataset.clone(),
                budget: None,
                spent_epsilon: total_epsilon.max(0.0),
                spent_delta: total_delta.max(0.0),
                left_epsilon: None,
                series: line,
            };
            if let Some(name) = &principal
                && let Some(record) = store.principal(name)?
            {
                let who = &record.principal;
                let budget = engine
                    .dp_budget(&dataset, who, None, now)
                    .or_else(|| engine.model_budget(&dataset, who, None, now));
                if let Some(budget) = budget {
                    let spent = store.spent(name, &dataset, &budget, now)?;
                    row.spent_epsilon = spent.epsilon(budget.delta);
                    row.spent_delta = spent.delta;
                    row.left_epsilon = Some(spent.epsilon_left(&budget));
                    row.budget = Some(budget);
                }
            }
            rows.push(row);
        }
        Ok(Spending {
            rows,
            scope: if authority {
                "all"
            } else {
                "datasets your institution provides"
            },
        })
    }
}
