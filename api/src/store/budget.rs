//! Privacy budgets: what each principal has spent of each dataset's budget,
//! charged atomically before an answer is released.

use rusqlite::params;
use veil_engine::DpCost;
use veil_engine::dp::accounting::epsilon_of;

use super::{Store, StoreError, now_text};

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
    let basic = after.epsilon <= cost.budget_epsilon * tolerance
        && after.delta <= cost.budget_delta * tolerance;
    let zcdp = after.delta0 <= cost.budget_delta / 2.0
        && epsilon_of(after.rho, cost.budget_delta - after.delta0)
            <= cost.budget_epsilon * tolerance;
    basic || zcdp
}

const SPENT: &str = "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COALESCE(SUM(rho), 0), COALESCE(SUM(delta0), 0)
     FROM dp_ledger WHERE principal = ?1 AND dataset = ?2 AND refunded = 0";

fn spent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Spent> {
    Ok(Spent {
        epsilon: r.get(0)?,
        delta: r.get(1)?,
        rho: r.get(2)?,
        delta0: r.get(3)?,
    })
}

impl Store {
    pub fn spent(&self, principal: &str, dataset: &str) -> Result<Spent, StoreError> {
        Ok(self
            .conn
            .query_row(SPENT, params![principal, dataset], spent_row)?)
    }

    /// Charges every cost or none, in one transaction that holds the write
    /// lock while it reads what was spent. Returns the ledger rows, for a
    /// refund should the query then fail.
    pub fn charge(
        &mut self,
        principal: &str,
        costs: &[DpCost],
        request: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(costs.len());
        for cost in costs {
            let spent = tx.query_row(SPENT, params![principal, cost.dataset], spent_row)?;
            if !fits(spent, cost) {
                let left = (cost.budget_epsilon - spent.epsilon(cost.budget_delta)).max(0.0);
                return Err(StoreError::BudgetExhausted(format!(
                    "this answer would exceed your privacy budget for `{}` (ε = {} at δ = {}); about ε = {left:.4} is left",
                    cost.dataset, cost.budget_epsilon, cost.budget_delta
                )));
            }
            tx.execute(
                "INSERT INTO dp_ledger (principal, dataset, epsilon, delta, rho, delta0, request, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![principal, cost.dataset, cost.epsilon, cost.delta, cost.rho, cost.delta0, request, now_text()],
            )?;
            ids.push(tx.last_insert_rowid());
        }
        tx.commit()?;
        Ok(ids)
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
            budget_epsilon: 1.0,
            budget_delta: 1e-7,
        }
    }

    #[test]
    fn charges_stop_at_the_budget_and_refunds_give_back() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let per_query = veil_engine::dp::accounting::rho_for(0.3, 0.5e-7);
        let mut charged = 0;
        let mut ids = Vec::new();
        while let Ok(mut id) = store.charge("alice", &[cost(per_query)], "q") {
            charged += 1;
            ids.append(&mut id);
            assert!(charged < 100, "the budget never ran out");
        }
        assert!(
            charged >= 3,
            "zCDP lets more ε=0.3 Gaussian answers fit in ε=1 than basic composition would (2): {charged}"
        );
        let spent = store.spent("alice", "health_visits").unwrap();
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
