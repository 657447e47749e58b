//! Privacy budgets: what each principal has spent of each dataset's budget,
//! charged atomically before an answer is released.
//!
//! The ledger is append-only and chained with a key only the service
//! holds: row hash = HMAC-SHA256, under a key derived from
//! `secrets/master.key`, over the previous row's hash, then `id`,
//! `refunds` (-1 for none) and the four amounts as 8 bytes big endian each
//! (amounts as IEEE bits, zero unsigned), then principal, dataset, request
//! and time each as a 4-byte length and UTF-8. So no row can be made, or
//! remade after an edit, without the secret; and after every charge or
//! refund the last row's id and hash are signed into `DIR/audit.head`
//! ([`crate::heads`]), so a cut end shows too ([`Store::verify_ledger`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
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
/// milliseconds, so they order as text. A refund is a negating row at its
/// charge's time, so it falls in the same period and cancels in the sum.
const SPENT: &str = "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COALESCE(SUM(rho), 0), COALESCE(SUM(delta0), 0)
     FROM dp_ledger WHERE principal = ?1 AND dataset = ?2 AND time >= ?3";

const GENESIS: [u8; 32] = [0u8; 32];

/// One ledger row as it is chained.
#[derive(Debug, Clone, PartialEq)]
struct LedgerRow {
    id: i64,
    refunds: Option<i64>,
    principal: String,
    dataset: String,
    amounts: [f64; 4],
    request: String,
    time: String,
}

const LEDGER_COLUMNS: &str =
    "id, refunds, principal, dataset, epsilon, delta, rho, delta0, request, time, prev_hash, hash";

/// A row as stored: the row, its stored link to the previous row's hash,
/// and its stored hash.
type StoredRow = (LedgerRow, Option<Vec<u8>>, Option<Vec<u8>>);

impl LedgerRow {
    /// The row and its stored links.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
        Ok((
            LedgerRow {
                id: r.get(0)?,
                refunds: r.get(1)?,
                principal: r.get(2)?,
                dataset: r.get(3)?,
                amounts: [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
                request: r.get(8)?,
                time: r.get(9)?,
            },
            r.get(10)?,
            r.get(11)?,
        ))
    }

    fn hash(&self, key: &LedgerKey, prev: &[u8]) -> [u8; 32] {
        let mut h = ring::hmac::Context::with_key(&key.0);
        h.update(prev);
        h.update(&self.id.to_be_bytes());
        h.update(&self.refunds.unwrap_or(-1).to_be_bytes());
        for a in self.amounts {
            // SQLite may keep a whole REAL as an integer: -0.0 reads back 0.
            let a = if a == 0.0 { 0.0 } else { a };
            h.update(&a.to_bits().to_be_bytes());
        }
        for text in [&self.principal, &self.dataset, &self.request, &self.time] {
            h.update(&(text.len() as u32).to_be_bytes());
            h.update(text.as_bytes());
        }
        h.sign()
            .as_ref()
            .try_into()
            .expect("HMAC-SHA256 is 32 bytes")
    }

    /// Appends the row after the ledger's last one, chained to it; returns
    /// its hash.
    fn append(
        &self,
        key: &LedgerKey,
        tx: &rusqlite::Transaction<'_>,
    ) -> Result<[u8; 32], StoreError> {
        let prev = ledger_end(tx)?.1;
        let hash = self.hash(key, &prev);
        let [epsilon, delta, rho, delta0] = self.amounts;
        tx.prepare_cached(
            "INSERT INTO dp_ledger (id, refunds, principal, dataset, epsilon, delta, rho, delta0, request, time, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            self.id,
            self.refunds,
            self.principal,
            self.dataset,
            epsilon,
            delta,
            rho,
            delta0,
            self.request,
            self.time,
            prev,
            hash.as_slice()
        ])?;
        Ok(hash)
    }
}

/// The key ledger rows are chained with, derived from the master secret.
pub(super) struct LedgerKey(ring::hmac::Key);

impl LedgerKey {
    pub(super) fn of(dir: &crate::datadir::DataDir) -> Result<LedgerKey, StoreError> {
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &dir.master_key()?);
        let derived = ring::hmac::sign(&root, b"veil privacy ledger v1");
        Ok(LedgerKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            derived.as_ref(),
        )))
    }
}

/// The ledger's last row: its id (0 when empty) and hash.
pub(super) fn ledger_end(conn: &rusqlite::Connection) -> Result<(i64, Vec<u8>), StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, hash FROM dp_ledger ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get::<_, Option<Vec<u8>>>(1)?)))
        .optional()?
        .map(|(id, hash)| (id, hash.unwrap_or_default()))
        .unwrap_or((0, GENESIS.to_vec())))
}

/// The result of checking the ledger's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerReport {
    Intact { rows: i64 },
    Broken { id: i64, reason: String },
}

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
    // A refund cancels its charge up to rounding; nothing spent is nothing.
    let sum = |i| r.get::<_, f64>(i).map(|v| if v < 1e-15 { 0.0 } else { v });
    Ok(Spent {
        epsilon: sum(0)?,
        delta: sum(1)?,
        rho: sum(2)?,
        delta0: sum(3)?,
    })
}

/// One charge (or refund, negative) of the privacy ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerPoint {
    pub principal: String,
    pub dataset: String,
    pub epsilon: f64,
    pub delta: f64,
    /// RFC 3339 UTC, milliseconds.
    pub time: String,
}

impl Store {
    /// Every charge and refund, oldest first; only those on `datasets`
    /// when given.
    pub fn ledger_points(
        &self,
        datasets: Option<&[String]>,
    ) -> Result<Vec<LedgerPoint>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT principal, dataset, epsilon, delta, time FROM dp_ledger
             WHERE ?1 IS NULL OR dataset IN (SELECT value FROM json_each(?1))
             ORDER BY time, id",
        )?;
        let within = datasets.map(|d| serde_json::to_string(d).unwrap_or_default());
        let points = stmt
            .query_map(params![within], |r| {
                Ok(LedgerPoint {
                    principal: r.get(0)?,
                    dataset: r.get(1)?,
                    epsilon: r.get(2)?,
                    delta: r.get(3)?,
                    time: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(points)
    }
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
        let key = LedgerKey::of(&self.dir)?;
        let mut charged = Charged::default();
        let mut end = (0, [0u8; 32]);
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
            let row = LedgerRow {
                id: ledger_end(&tx)?.0 + 1,
                refunds: None,
                principal: principal.to_owned(),
                dataset: cost.dataset.clone(),
                amounts: [cost.epsilon, cost.delta, cost.rho, cost.delta0],
                request: request.to_owned(),
                time: time_text(now),
            };
            end = (row.id, row.append(&key, &tx)?);
            charged.ids.push(row.id);
            charged.left.push(BudgetLeft {
                dataset: cost.dataset.clone(),
                budget: cost.budget,
                epsilon_left: spent.plus(cost).epsilon_left(&cost.budget),
                renews,
            });
        }
        tx.commit()?;
        if !charged.ids.is_empty() {
            self.sign_ledger_head(end)?;
        }
        Ok(charged)
    }

    /// Gives back what a failed query was charged: it released nothing. A
    /// refund is a row that negates the charge, at the charge's time; a
    /// charge is given back once.
    pub fn refund(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let key = LedgerKey::of(&self.dir)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut end = None;
        for &id in ids {
            let charge = tx
                .prepare_cached(&format!(
                    "SELECT {LEDGER_COLUMNS} FROM dp_ledger WHERE id = ?1 AND refunds IS NULL"
                ))?
                .query_row(params![id], LedgerRow::read)
                .optional()?;
            let Some((charge, _, _)) = charge else {
                return Err(StoreError::NotFound(format!("no charge {id} to refund")));
            };
            let given_back: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM dp_ledger WHERE refunds = ?1)")?
                .query_row(params![id], |r| r.get(0))?;
            if given_back {
                continue;
            }
            let row = LedgerRow {
                id: ledger_end(&tx)?.0 + 1,
                refunds: Some(id),
                amounts: charge.amounts.map(|a| -a),
                ..charge
            };
            end = Some((row.id, row.append(&key, &tx)?));
        }
        tx.commit()?;
        if let Some(end) = end {
            self.sign_ledger_head(end)?;
        }
        Ok(())
    }

    /// Signs the ledger's new end ([`Store::sign_head`]) with this
    /// connection's key.
    fn sign_ledger_head(&mut self, (id, hash): (i64, [u8; 32])) -> Result<(), StoreError> {
        let signer = self
            .signer
            .clone()
            .ok_or_else(|| StoreError::Conflict("a read-only connection signs nothing".into()))?;
        self.sign_head(crate::heads::Advance::Ledger { id, hash: &hash }, &signer)
    }

    /// Row `id`'s hash recomputed from what it holds now (and its stored
    /// link), or `None` when there is no such row.
    pub(super) fn ledger_hash_now(&self, id: i64) -> Result<Option<[u8; 32]>, StoreError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {LEDGER_COLUMNS} FROM dp_ledger WHERE id = ?1"
            ))?
            .query_row(params![id], LedgerRow::read)
            .optional()?;
        let key = LedgerKey::of(&self.dir)?;
        Ok(row.map(|(row, prev, _)| row.hash(&key, &prev.unwrap_or_default())))
    }

    /// Chains the rows of a ledger written before rows were chained (a
    /// store from before schema 9), in id order.
    pub(super) fn chain_old_ledger(&mut self) -> Result<(), StoreError> {
        let unchained: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM dp_ledger WHERE hash IS NULL)",
            [],
            |r| r.get(0),
        )?;
        if !unchained {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let chained: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM dp_ledger WHERE hash IS NOT NULL)",
            [],
            |r| r.get(0),
        )?;
        if chained {
            return Ok(());
        }
        let rows: Vec<LedgerRow> = tx
            .prepare(&format!(
                "SELECT {LEDGER_COLUMNS} FROM dp_ledger ORDER BY id"
            ))?
            .query_map([], |r| LedgerRow::read(r).map(|(row, _, _)| row))?
            .collect::<Result<_, _>>()?;
        let key = LedgerKey::of(&self.dir)?;
        let mut prev = GENESIS.to_vec();
        for row in rows {
            let hash = row.hash(&key, &prev);
            tx.execute(
                "UPDATE dp_ledger SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                params![prev, hash.as_slice(), row.id],
            )?;
            prev = hash.to_vec();
        }
        tx.commit()?;
        Ok(())
    }

    /// Recomputes the ledger's chain: every row unchanged and in place,
    /// every refund the exact negation of one earlier charge, given once.
    /// Where the chain must reach (the signed head) is checked by the
    /// caller.
    pub fn verify_ledger(&self) -> Result<LedgerReport, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LEDGER_COLUMNS} FROM dp_ledger ORDER BY id"
        ))?;
        let mut rows = stmt.query([])?;
        let key = LedgerKey::of(&self.dir)?;
        let mut prev = GENESIS.to_vec();
        let mut last_id = 0;
        let mut count = 0;
        let mut charges: HashMap<i64, LedgerRow> = HashMap::new();
        let mut refunded = HashSet::new();
        while let Some(r) = rows.next()? {
            let (row, stored_prev, stored_hash) = LedgerRow::read(r)?;
            let broken = |reason: &str| {
                Ok(LedgerReport::Broken {
                    id: row.id,
                    reason: reason.to_owned(),
                })
            };
            if row.id <= last_id {
                return broken("the ledger's rows are out of order");
            }
            if stored_prev.as_deref() != Some(prev.as_slice()) {
                return broken(
                    "its link to the previous row does not match: rows were removed or inserted",
                );
            }
            let hash = row.hash(&key, &prev);
            if stored_hash.as_deref() != Some(hash.as_slice()) {
                return broken("its contents were changed after it was written");
            }
            match row.refunds {
                None => {
                    if row.amounts.iter().any(|a| !a.is_finite() || *a < 0.0) {
                        return broken("a charge that is not a cost");
                    }
                }
                Some(of) => {
                    let Some(charge) = charges.get(&of) else {
                        return broken("a refund of no earlier charge");
                    };
                    let negates = charge.amounts.iter().zip(row.amounts).all(|(c, r)| r == -c)
                        && (&charge.principal, &charge.dataset, &charge.time)
                            == (&row.principal, &row.dataset, &row.time);
                    if !negates || !refunded.insert(of) {
                        return broken("a refund that does not give back exactly one charge");
                    }
                }
            }
            prev = hash.to_vec();
            last_id = row.id;
            count += 1;
            if row.refunds.is_none() {
                charges.insert(row.id, row);
            }
        }
        Ok(LedgerReport::Intact { rows: count })
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

    /// A ledger of charges and refunds under several principals.
    fn ledger() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let rho = veil_engine::dp::accounting::rho_for(0.3, 0.5e-7);
        for who in ["alice", "bob", "carol"] {
            let c = store.charge(who, &[cost(rho)], "q").unwrap();
            store.charge(who, &[cost(rho)], "q").unwrap();
            store.refund(&c.ids).unwrap();
            store.refund(&c.ids).unwrap();
        }
        assert_eq!(
            store.verify_ledger().unwrap(),
            LedgerReport::Intact { rows: 9 },
            "a charge is given back once"
        );
        (tmp, store)
    }

    #[test]
    fn a_ledger_cut_under_a_running_writer_takes_no_more_charges() {
        let rho = veil_engine::dp::accounting::rho_for(0.3, 0.5e-7);
        let (tmp, mut store) = ledger();
        // Another writer, opened before the cut, that only audits.
        let mut auditor = Store::open(tmp.path()).unwrap();
        store
            .conn
            .execute_batch("DELETE FROM dp_ledger WHERE id >= 8")
            .unwrap();
        // The next ids are 8 and 9 again: below the head, on it, past it.
        for costs in [1, 1, 3] {
            let err = store
                .charge("dave", &vec![cost(rho); costs], "q")
                .unwrap_err();
            assert!(matches!(err, StoreError::Integrity(_)), "{err}");
        }
        // A cut ledger stops the audit's acknowledgements too.
        let signer = auditor.data_dir().signer().unwrap();
        let entry = crate::store::AuditEntry {
            principal: "p".into(),
            outcome: "ok".into(),
            privacy: "{}".into(),
            ..Default::default()
        };
        assert!(matches!(
            auditor.append_audit(&[entry], &signer),
            Err(StoreError::Integrity(_))
        ));
        drop(store);
        assert!(matches!(
            Store::open(tmp.path()),
            Err(StoreError::Integrity(_))
        ));
    }

    #[test]
    fn an_edited_removed_or_forged_ledger_row_is_caught() {
        let rho = veil_engine::dp::accounting::rho_for(0.3, 0.5e-7);
        let (_tmp, store) = ledger();
        let spent = store
            .spent("alice", "health_visits", &cost(0.0).budget, Utc::now())
            .unwrap();
        assert!((spent.rho - rho).abs() < 1e-12, "one of two charges left");
        let cases = [
            "UPDATE dp_ledger SET epsilon = 0, rho = 0 WHERE id = 2",
            "UPDATE dp_ledger SET principal = 'mallory' WHERE id = 5",
            "UPDATE dp_ledger SET time = '1970-01-01T00:00:00.000Z' WHERE id = 4",
            "DELETE FROM dp_ledger WHERE id = 5",
            // A refund that was never made, or of more than was charged.
            "INSERT INTO dp_ledger (id, refunds, principal, dataset, epsilon, delta, rho, delta0, request, time, prev_hash, hash)
                 SELECT 100, 2, principal, dataset, -epsilon, -delta, -rho, -delta0, request, time, X'00', X'00' FROM dp_ledger WHERE id = 2",
            "UPDATE dp_ledger SET rho = 2 * rho WHERE id = 3",
            // Every charge given back, and the chain left to be made again.
            "INSERT INTO dp_ledger (principal, dataset, epsilon, delta, rho, delta0, request, time, refunds)
                 SELECT principal, dataset, -epsilon, -delta, -rho, -delta0, request, time, id
                 FROM dp_ledger WHERE refunds IS NULL AND id NOT IN (SELECT refunds FROM dp_ledger WHERE refunds IS NOT NULL);
             UPDATE dp_ledger SET hash = NULL, prev_hash = NULL",
            // A refund past the signed head, linked to the last row, with a
            // hash anyone can compute: the key is not anyone's.
            "INSERT INTO dp_ledger (id, refunds, principal, dataset, epsilon, delta, rho, delta0, request, time, prev_hash, hash)
                 SELECT 10, 2, principal, dataset, -epsilon, -delta, -rho, -delta0, request, time,
                        (SELECT hash FROM dp_ledger WHERE id = 9), randomblob(32)
                 FROM dp_ledger WHERE id = 2",
        ];
        for sql in cases {
            let (tmp, store) = ledger();
            store.conn.execute_batch(sql).unwrap();
            assert!(
                matches!(store.verify_ledger().unwrap(), LedgerReport::Broken { .. }),
                "{sql}"
            );
            drop(store);
            let err = crate::service::Service::open(tmp.path(), crate::service::AuditMode::Direct)
                .err()
                .expect("refused");
            assert!(matches!(err, StoreError::Integrity(_)), "{sql}: {err}");
            // Any command that opens the store refuses it too.
            assert!(
                matches!(Store::open(tmp.path()), Err(StoreError::Integrity(_))),
                "{sql}"
            );
        }
        // The end cut: the chain that is left is whole, but does not reach
        // the head it signed.
        for sql in [
            "DELETE FROM dp_ledger WHERE id >= 8",
            "DELETE FROM dp_ledger",
        ] {
            let (tmp, store) = ledger();
            store.conn.execute_batch(sql).unwrap();
            assert!(store.heads_problem().unwrap().is_some(), "{sql}");
            drop(store);
            let err = Store::open(tmp.path()).err().expect("refused");
            assert!(err.to_string().contains("privacy ledger"), "{sql}: {err}");
        }
    }
}
