//! Privacy budgets: what each principal has spent of each dataset's budget,
//! charged atomically before an answer is released.

use chrono::{DateTime, Utc};
use rusqlite::params;
use veil_engine::dp::accounting::epsilon_of;
use veil_engine::{BudgetLeft, DpBudget, DpCost};

use super::{Store, StoreError, time_text};

/// What a principal has spent of one dataset's budget, under both
/// accountants.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spent {
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
    pub delta0: f64,
}

impl Spent {
    /// The ε of everything spent at the budget's δ: the smaller of basic
    /// composition (Σε, when Σδ fits) and zCDP (ε of Σρ at δ − Σδ₀). Both
    /// bound the same history, so the smaller one holds.
    pub fn epsilon(&self, budget_delta: f64) -> f64 {
        let basic = if self.delta <= budget_delta {
            self.epsilon
        } else {
            f64::INFINITY
        };
        let zcdp = if self.rho == 0.0 {
            0.0
        } else {
            epsilon_of(self.rho, budget_delta - self.delta0)
        };
        basic.min(zcdp)
    }

    /// Whether anything was spent.
    pub fn any(&self) -> bool {
        self.epsilon > 0.0 || self.rho > 0.0
    }

    /// The ε left of `budget` after this spending.
    pub fn epsilon_left(&self, budget: &DpBudget) -> f64 {
        (budget.epsilon - self.epsilon(budget.delta)).max(0.0)
    }

    fn plus(self, cost: &DpCost) -> Spent {
        Spent {
            epsilon: self.epsilon + cost.epsilon,
            delta: self.delta + cost.delta,
            rho: self.rho + cost.rho,
            delta0: self.delta0 + cost.delta0,
        }
    }
}

/// Whether spending `cost` on top of `spent` stays within the budget under
/// either accountant: basic composition (Σε ≤ ε_B, Σδ ≤ δ_B), or zCDP (Σδ₀ ≤
/// δ_B/2 and the ε of Σρ at δ_B − Σδ₀ at most ε_B).
pub fn fits(spent: Spent, cost: &DpCost) -> bool {
    let after = spent.plus(cost);
    let tolerance = 1.0 + 1e-9;
    let budget = &cost.budget;
    let basic =
        after.epsilon <= budget.epsilon * tolerance && after.delta <= budget.delta * tolerance;
    let zcdp = after.delta0 <= budget.delta / 2.0
        && epsilon_of(after.rho, budget.delta - after.delta0) <= budget.epsilon * tolerance;
    basic || zcdp
}

/// What was spent since `?3`: ledger times are RFC 3339 UTC with
/// milliseconds, so they order as text.
const SPENT: &str = "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COALESCE(SUM(rho), 0), COALESCE(SUM(delta0), 0)
     FROM dp_ledger WHERE principal = ?1 AND dataset = ?2 AND refunded = 0 AND time >= ?3";

/// Where a budget's current period began; the epoch when it never renews.
fn period_start(budget: &DpBudget, now: DateTime<Utc>) -> String {
    time_text(budget.period.map_or(DateTime::UNIX_EPOCH, |p| p.start(now)))
}

/// What a charge bought: the ledger rows, for a refund should the query
/// then fail, and what each budget holds after it.
#[derive(Debug, Clone, Default)]
pub struct Charged {
    pub ids: Vec<i64>,
    pub left: Vec<BudgetLeft>,
}

fn spent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Spent> {
    Ok(Spent {
        epsilon: r.get(0)?,
        delta: r.get(1)?,
        rho: r.get(2)?,
        delta0: r.get(3)?,
    })
}

impl Store {
    /// What `principal` spent of `dataset` in the budget's current period
    /// (since ever, when it never renews).
    pub fn spent(
        &self,
        principal: &str,
        dataset: &str,
        budget: &DpBudget,
        now: DateTime<Utc>,
    ) -> Result<Spent, StoreError> {
        let since = period_start(budget, now);
        Ok(self
            .conn
            .query_row(SPENT, params![principal, dataset, since], spent_row)?)
    }

    /// Charges every cost or none, in one transaction that holds the write
    /// lock while it reads what was spent.
    pub fn charge(
        &mut self,
        principal: &str,
        costs: &[DpCost],
        request: &str,
    ) -> Result<Charged, StoreError> {
        self.charge_at(principal, costs, request, Utc::now())
    }

    /// [`Store::charge`] at a given time.
    pub fn charge_at(
        &mut self,
        principal: &str,
        costs: &[DpCost],
        request: &str,
        now: DateTime<Utc>,
    ) -> Result<Charged, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut charged = Charged::default();
        for cost in costs {
            let since = period_start(&cost.budget, now);
            let spent = tx.query_row(SPENT, params![principal, cost.dataset, since], spent_row)?;
            let renews = cost.budget.period.map(|p| p.renews(now));
            if !fits(spent, cost) {
                let left = spent.epsilon_left(&cost.budget);
                let renewal = renews.map_or(String::new(), |r| {
                    format!("; it renews at {}", time_text(r))
                });
                return Err(StoreError::BudgetExhausted(format!(
                    "this answer would exceed your privacy budget for `{}` (ε = {} at δ = {}); about ε = {left:.4} is left{renewal}",
                    cost.dataset, cost.budget.epsilon, cost.budget.delta
                )));
            }
            tx.execute(
                "INSERT INTO dp_ledger (principal, dataset, epsilon, delta, rho, delta0, request, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![principal, cost.dataset, cost.epsilon, cost.delta, cost.rho, cost.delta0, request, time_text(now)],
            )?;
            charged.ids.push(tx.last_insert_rowid());
            charged.left.push(BudgetLeft {
                dataset: cost.dataset.clone(),
                budget: cost.budget,
                epsilon_left: spent.plus(cost).epsilon_left(&cost.budget),
                renews,
            });
        }
        tx.commit()?;
        Ok(charged)
    }

    /// Gives back what a failed query was charged: it released nothing.
    pub fn refund(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE dp_ledger SET refunded = 1 WHERE id = ?1",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gaussian answer at ε = 0.3: (0.3, δ_B/2) alone, ρ for zCDP.
    fn cost(rho: f64) -> DpCost {
        DpCost {
            dataset: "health_visits".into(),
            epsilon: 0.3,
            delta: 0.5e-7,
            rho,
            delta0: 0.0,
            budget: DpBudget {
                epsilon: 1.0,
                delta: 1e-7,
                period: None,
            },
        }
    }

    #[test]
    fn charges_stop_at_the_budget_and_refunds_give_back() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let per_query = veil_engine::dp::accounting::rho_for(0.3, 0.5e-7);
        let mut charged = 0;
        let mut ids = Vec::new();
        while let Ok(mut c) = store.charge("alice", &[cost(per_query)], "q") {
            charged += 1;
            ids.append(&mut c.ids);
            assert!(charged < 100, "the budget never ran out");
        }
        assert!(
            charged >= 3,
            "zCDP lets more ε=0.3 Gaussian answers fit in ε=1 than basic composition would (2): {charged}"
        );
        let spent = store
            .spent("alice", "health_visits", &cost(0.0).budget, Utc::now())
            .unwrap();
        assert!(spent.epsilon(1e-7) <= 1.0);
        assert!(matches!(
            store.charge("alice", &[cost(per_query)], "q"),
            Err(StoreError::BudgetExhausted(_))
        ));
        assert!(
            store.charge("bob", &[cost(per_query)], "q").is_ok(),
            "budgets are per principal"
        );
        store.refund(&ids[..1]).unwrap();
        assert!(
            store.charge("alice", &[cost(per_query)], "q").is_ok(),
            "a refund frees its share"
        );
    }

    #[test]
    fn a_budget_with_a_period_renews_at_its_start_and_says_when() {
        use veil_policies::budget_period::BudgetPeriod;
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let mut monthly = cost(veil_engine::dp::accounting::rho_for(0.3, 0.5e-7));
        monthly.budget.period = Some(BudgetPeriod::Month);
        // 2026-04-30 15:00 UTC is 23:00 on the last day of April in China
        // Standard Time; May begins at 16:00 UTC.
        let april = at("2026-04-30T15:00:00Z");
        let may = at("2026-04-30T16:00:00Z");
        let mut lefts = Vec::new();
        while let Ok(c) = store.charge_at("alice", &[monthly.clone()], "q", april) {
            assert_eq!(c.left.len(), 1);
            assert_eq!(c.left[0].renews, Some(may));
            lefts.push(c.left[0].epsilon_left);
            assert!(lefts.len() < 100, "the budget never ran out");
        }
        assert!(
            lefts.windows(2).all(|w| w[1] < w[0]) && lefts.iter().all(|l| *l >= 0.0),
            "what is left falls with every answer: {lefts:?}"
        );
        let Err(StoreError::BudgetExhausted(m)) =
            store.charge_at("alice", &[monthly.clone()], "q", april)
        else {
            panic!("April's budget is spent")
        };
        assert!(m.contains("renews at 2026-04-30T16:00:00.000Z"), "{m}");
        // A millisecond before May, still spent; at May, whole again.
        let before = may - chrono::Duration::milliseconds(1);
        assert!(
            store
                .charge_at("alice", &[monthly.clone()], "q", before)
                .is_err()
        );
        let c = store
            .charge_at("alice", &[monthly.clone()], "q", may)
            .unwrap();
        assert!((c.left[0].epsilon_left - lefts[0]).abs() < 1e-12);
        assert_eq!(
            store
                .spent("alice", "health_visits", &monthly.budget, may)
                .unwrap()
                .rho,
            monthly.rho,
            "May counts only May's answer"
        );
        // Without a period the same history is one budget for ever.
        let lifetime = cost(monthly.rho);
        assert!(
            store.charge_at("alice", &[lifetime], "q", may).is_err(),
            "a budget that never renews counts April too"
        );
    }

    #[test]
    fn concurrent_charges_never_overspend() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let per_query = veil_engine::dp::accounting::rho_for(0.3, 0.5e-7);
        // How many fit when charged one after another.
        let capacity = {
            let other = tempfile::tempdir().unwrap();
            let mut store = Store::open(other.path()).unwrap();
            let mut n = 0;
            while store.charge("alice", &[cost(per_query)], "q").is_ok() {
                n += 1;
            }
            n
        };
        let dir = tmp.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open(&dir).unwrap();
                    (0..10)
                        .filter(|_| store.charge("alice", &[cost(per_query)], "q").is_ok())
                        .count()
                })
            })
            .collect();
        let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(answered, capacity, "80 racing queries, {capacity} fit");
    }
}
