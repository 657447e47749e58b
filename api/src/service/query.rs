//! One SELECT under policy, for every front end.
//!
//! Order of events: the caller's role and the input are checked; the query
//! is prepared by the policy stage; a DP answer is charged to every budget
//! it spends before it exists (a dry run only prices it); the plan starts.
//! A refusal at any step is audited and returned. An accepted query's
//! release entry is durable before the caller gets its [`Release`], so
//! before the first byte of data leaves; the front end streams the batches
//! and then [`Completion::finish`] records the rows released. A DP query
//! that fails after its charge keeps it (nothing was released, but whether
//! it failed may depend on the data).

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use veil_engine::{DpOptions, PreparedQuery, QueryRequest};
use veil_policies::{Principal, Role};

use super::{Service, ServiceError};
use crate::receipt::{self, Claims};
use crate::store::{AuditEntry, Spent};
use crate::wire;

/// What a caller asks.
#[derive(Debug, Clone, Default)]
pub struct QueryInput {
    pub sql: String,
    pub purpose: Option<String>,
    /// Asks for a differentially private answer that alone is ε-DP.
    pub epsilon: Option<f64>,
    /// L0: groups one privacy unit may contribute to (default 1).
    pub max_groups: Option<u64>,
    /// Linf: rows one privacy unit may contribute to a group (default 1).
    pub max_rows: Option<u64>,
    /// Price the query without running it or spending anything.
    pub dry_run: bool,
    /// With `dry_run`: the 95% half-width to find each column's ε for.
    pub target_ci95: Option<f64>,
    /// Estimate every aggregate's clamping bounds under DP (`bounds:
    /// "auto"`), declared ones too.
    pub auto_bounds: bool,
    /// Give each noisy cell a 95% interval.
    pub intervals: bool,
    /// The request id a front end gave this query when it checked it
    /// first (Flight SQL's `GetFlightInfo` says it before the run); a
    /// fresh one otherwise.
    pub request_id: Option<String>,
}

impl QueryInput {
    /// The DP options the input asks for, or why they do not fit together.
    fn dp(&self) -> Result<Option<DpOptions>, ServiceError> {
        if self.sql.trim().is_empty() {
            return Err(ServiceError::bad_request("`sql` is empty"));
        }
        if let Some(e) = self.epsilon
            && !veil_engine::dp::epsilon_allowed(e)
        {
            return Err(ServiceError::bad_request(
                veil_engine::dp::EPSILON_RANGE_TEXT,
            ));
        }
        for (what, v) in [("max_groups", self.max_groups), ("max_rows", self.max_rows)] {
            if v.is_some_and(|v| !(1..=1000).contains(&v)) {
                return Err(ServiceError::bad_request(format!(
                    "`{what}` must be between 1 and 1000"
                )));
            }
        }
        if let Some(t) = self.target_ci95 {
            if !self.dry_run {
                return Err(ServiceError::bad_request(
                    "`target_ci95` goes with `dry_run`: it prices a query, it runs none",
                ));
            }
            if !(t.is_finite() && t > 0.0) {
                return Err(ServiceError::bad_request(
                    "`target_ci95` must be a positive number",
                ));
            }
        }
        let dp_only = self.max_groups.is_some()
            || self.max_rows.is_some()
            || self.dry_run
            || self.auto_bounds
            || self.intervals;
        match (self.epsilon, dp_only) {
            (Some(epsilon), _) => Ok(Some(DpOptions {
                epsilon,
                max_groups: self.max_groups.unwrap_or(1),
                max_rows: self.max_rows.unwrap_or(1),
                auto_bounds: self.auto_bounds,
                intervals: self.intervals,
            })),
            (None, true) => Err(ServiceError::bad_request(
                "`max_groups`, `max_rows`, `bounds`, `intervals` and `dry_run` go with `epsilon`, for differentially private queries",
            )),
            (None, false) => Ok(None),
        }
    }

    /// The engine's request for this input by `caller`, now.
    fn request<'a>(&'a self, caller: &'a Principal, dp: Option<DpOptions>) -> QueryRequest<'a> {
        QueryRequest {
            principal: caller,
            purpose: self.purpose(),
            sql: &self.sql,
            now: Utc::now(),
            dp,
        }
    }

    fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref().filter(|p| !p.trim().is_empty())
    }
}

/// A query checked and not run: its answer's schema, and what the
/// answer's schema will say about it (as of the check: a DP answer's
/// budgets left and automatic bounds are known once it runs).
pub struct Planned {
    pub schema: arrow::datatypes::SchemaRef,
    pub metadata: std::collections::HashMap<String, String>,
}

/// What a query came to.
pub enum QueryOutcome {
    /// The price of a DP query, nothing spent.
    DryRun(Value),
    /// An answer to stream.
    Released(Box<Release>),
}

/// An accepted query whose release is on record: the batches to send, and
/// the completion to record once they are sent.
pub struct Release {
    pub prepared: PreparedQuery,
    pub stream: veil_engine::RecordStream,
    /// The most rows the answer may carry; longer answers are cut there.
    pub max_rows: u64,
    pub completion: Completion,
}

/// `batch`, cut to what fits under `max_rows` after `sent` rows; sets
/// `truncated` when it had to cut.
pub fn cut(
    batch: arrow::array::RecordBatch,
    sent: u64,
    max_rows: u64,
    truncated: &mut bool,
) -> arrow::array::RecordBatch {
    let room = max_rows.saturating_sub(sent) as usize;
    if batch.num_rows() > room {
        *truncated = true;
        batch.slice(0, room)
    } else {
        batch
    }
}

/// A whole answer, read to its end (or to `max_rows`) and on record.
pub struct WholeAnswer {
    pub prepared: PreparedQuery,
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<arrow::array::RecordBatch>,
    /// Whether the answer was cut at the policy's `max_rows`.
    pub truncated: bool,
    pub claims: Claims,
}

impl Release {
    /// Reads every batch, cut at `max_rows`, and records the completion:
    /// for front ends that answer in one piece.
    pub async fn collect(self, service: &Service) -> Result<WholeAnswer, ServiceError> {
        use futures::StreamExt;
        let schema = self.stream.schema();
        let mut stream = self.stream;
        let (mut batches, mut rows, mut truncated, mut failed) = (Vec::new(), 0u64, false, false);
        while let Some(next) = stream.next().await {
            let Ok(batch) = next else {
                failed = true;
                break;
            };
            let batch = cut(batch, rows, self.max_rows, &mut truncated);
            rows += batch.num_rows() as u64;
            batches.push(batch);
            if truncated {
                break;
            }
        }
        let claims = self
            .completion
            .finish(service, &self.prepared, rows, failed)
            .await;
        if failed {
            return Err(ServiceError::internal("the query failed while running"));
        }
        Ok(WholeAnswer {
            prepared: self.prepared,
            schema,
            batches,
            truncated,
            claims,
        })
    }
}

/// The release's second audit entry and its receipt, once the stream ends.
pub struct Completion {
    pub request_id: String,
    request_digest: String,
    entry: AuditEntry,
}

impl Completion {
    /// Records how the release ended (`rows` sent, or `failed` while
    /// running) and returns the receipt's claims, citing the entry. A
    /// completion entry that cannot be written is logged: the release entry
    /// already stands.
    pub async fn finish(
        self,
        service: &Service,
        prepared: &PreparedQuery,
        rows: u64,
        failed: bool,
    ) -> Claims {
        let mut done = self.entry;
        done.rows = Some(rows);
        done.outcome = if failed { "failed" } else { "completed" }.into();
        let seq = match service.audit(done).await {
            Ok(seq) => Some(seq),
            Err(_) => {
                tracing::error!(request = %self.request_id, "the completion entry could not be written");
                None
            }
        };
        Claims {
            request_id: self.request_id,
            request_sha256: self.request_digest,
            result_sha256: String::new(),
            policy_version: prepared.policy_version.clone(),
            privacy: wire::privacy(prepared),
            time: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            audit_seq: seq,
            key_id: service.signer.key_id(),
        }
    }
}

/// Refuses callers who are not consumers or modelers, saying `what` is
/// theirs.
fn require_querier(caller: &Principal, what: &str) -> Result<(), ServiceError> {
    if matches!(caller.role, Role::Consumer | Role::Modeler) {
        return Ok(());
    }
    Err(ServiceError::forbidden(format!(
        "{what} are for consumers and modelers; you are {}",
        caller.role.with_article()
    )))
}

/// The audit entry of a query by `caller`, before anything is known of it.
fn audit_entry(caller: &Principal, purpose: Option<&str>, endpoint: &str, sql: &str) -> AuditEntry {
    AuditEntry {
        principal: caller.name.clone(),
        role: caller.role.name().to_owned(),
        purpose: purpose.unwrap_or_default().to_owned(),
        endpoint: endpoint.to_owned(),
        request: sql.to_owned(),
        privacy: "{}".into(),
        ..AuditEntry::default()
    }
}

/// A fresh request id: 96 random bits in hex.
pub fn request_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    crate::signing::hex(&bytes)
}

impl Service {
    /// Runs one query as `caller`, under `endpoint`'s name in the audit
    /// log; planning gives up after `timeout`.
    pub async fn query(
        &self,
        caller: &Principal,
        endpoint: &str,
        input: &QueryInput,
        timeout: Duration,
    ) -> Result<QueryOutcome, ServiceError> {
        require_querier(caller, "queries")?;
        let dp = input.dp()?;
        let purpose = input.purpose();
        let engine = self.engine();
        let mut entry = audit_entry(caller, purpose, endpoint, &input.sql);
        let request = input.request(caller, dp);
        let mut prepared = match engine.prepare(&request) {
            Ok(p) => p,
            Err(e) => {
                // A refused query still says which data it was aimed at
                // (Art. 30): the provider sees the attempt.
                entry.datasets = engine.datasets_named(&input.sql);
                return Err(self.refuse(entry, ServiceError::from(&e)).await);
            }
        };
        // A DP answer is paid before it exists: the charge is atomic, and
        // the noise is drawn after it. A dry run only reports the price.
        if let Some(costs) = prepared.dp.as_ref().map(|dp| dp.costs.clone()) {
            if input.dry_run {
                entry.outcome = "dry_run".into();
                entry.datasets = prepared.provenance.datasets.clone();
                entry.privacy = wire::privacy(&prepared).to_string();
                self.audit(entry).await?;
                return Ok(QueryOutcome::DryRun(self.dry_run(
                    &caller.name,
                    &prepared,
                    input.target_ci95,
                )));
            }
            let charge = self.store().charge(&caller.name, &costs, &input.sql);
            match charge {
                Ok(c) => prepared.say_budget_left(c.left),
                Err(e) => return Err(self.refuse(entry, e.into()).await),
            }
        }
        // Automatic bounds are estimated first, from the ε just charged, so
        // that the audit entry and the answer say them.
        let stream = tokio::time::timeout(timeout, async {
            engine.resolve_bounds(&mut prepared).await?;
            engine.stream(&prepared).await
        })
        .await
            .unwrap_or_else(|_| {
                Err(veil_engine::QueryError::Limit(format!(
                    "the query ran past the {} s one query may take; nothing was released: filter first, or group by fewer keys",
                    timeout.as_secs()
                )))
            });
        // A DP query that was charged keeps its charge when it fails: it
        // failed while reading the data (a DP answer's statistics are
        // computed before its stream starts), so whether it fails, or runs
        // out of time or memory, may depend on the data, and a refund would
        // make that a free bit about it.
        let stream = match stream {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(entry, ServiceError::from(&e)).await),
        };
        entry.datasets = prepared.provenance.datasets.clone();
        entry.fields = prepared.fields.clone();
        entry.privacy = wire::privacy(&prepared).to_string();
        entry.outcome = "released".into();
        self.audit(entry.clone()).await?;
        let request_json = json!({"sql": input.sql, "purpose": purpose});
        Ok(QueryOutcome::Released(Box::new(Release {
            max_rows: engine.policy().max_rows,
            stream,
            completion: Completion {
                request_id: input.request_id.clone().unwrap_or_else(request_id),
                request_digest: receipt::request_digest(&caller.name, endpoint, &request_json),
                entry,
            },
            prepared,
        })))
    }

    /// Checks a query as [`Service::query`] would, without charging or
    /// running it: the schema of its answer, or the refusal, audited as
    /// `query` audits it. For front ends that check first and run later
    /// (Flight SQL's `GetFlightInfo`); the run checks it all again.
    pub async fn plan(
        &self,
        caller: &Principal,
        endpoint: &str,
        input: &QueryInput,
    ) -> Result<Planned, ServiceError> {
        require_querier(caller, "queries")?;
        let dp = input.dp()?;
        let purpose = input.purpose();
        let engine = self.engine();
        let request = input.request(caller, dp);
        let planned = engine.prepare(&request).and_then(|p| {
            let schema = engine.answer_schema(&p)?;
            let id = input.request_id.as_deref().unwrap_or_default();
            let mut metadata = wire::stream_metadata(&p, id, engine.policy().max_rows);
            if id.is_empty() {
                metadata.remove("veil.request_id");
            }
            Ok(Planned { schema, metadata })
        });
        let mut entry = audit_entry(caller, purpose, endpoint, &input.sql);
        entry.datasets = engine.datasets_named(&input.sql);
        match planned {
            // Accepted: on record too (what the policy allows is itself
            // something the caller learnt), as a dry run is.
            Ok(planned) => {
                entry.outcome = "checked".into();
                self.audit(entry).await?;
                Ok(planned)
            }
            Err(e) => Err(self.refuse(entry, ServiceError::from(&e)).await),
        }
    }

    /// Audits a refusal and returns its error; an entry that cannot be
    /// written turns the refusal into an internal failure.
    pub(crate) async fn refuse(&self, mut entry: AuditEntry, e: ServiceError) -> ServiceError {
        entry.outcome = e.outcome();
        match self.audit(entry).await {
            Ok(_) => e,
            Err(failure) => failure,
        }
    }

    /// The price of a DP query and the error to expect, without running it
    /// or spending anything.
    fn dry_run(&self, principal: &str, prepared: &PreparedQuery, target: Option<f64>) -> Value {
        let now = Utc::now();
        let store = self.store();
        let costs: Vec<(veil_engine::DpCost, Option<Spent>)> = prepared
            .dp
            .iter()
            .flat_map(|dp| &dp.costs)
            .map(|c| {
                let spent = store.spent(principal, &c.dataset, &c.budget, now).ok();
                (c.clone(), spent)
            })
            .collect();
        wire::dry_run(prepared, &costs, target, now)
    }

    /// Per dataset the caller may query under differential privacy or has
    /// spent on through models: the budget, its period, what was spent in
    /// it and what is left.
    pub fn budgets(
        &self,
        caller: &Principal,
        purpose: Option<&str>,
    ) -> Result<Vec<wire::BudgetView>, ServiceError> {
        require_querier(caller, "budgets")?;
        let engine = self.engine();
        let now = Utc::now();
        let store = self.store();
        let mut budgets = Vec::new();
        for d in engine.datasets() {
            let name = &d.manifest.name;
            // Datasets with dp fields, and those models have spent on.
            let budget = match engine.dp_budget(name, caller, purpose, now) {
                Some(b) => b,
                None => match engine.model_budget(name, caller, purpose, now) {
                    Some(b) if store.spent(&caller.name, name, &b, now)?.any() => b,
                    _ => continue,
                },
            };
            let spent = store.spent(&caller.name, name, &budget, now)?;
            budgets.push(wire::BudgetView {
                dataset: name.clone(),
                budget,
                spent,
                now,
            });
        }
        Ok(budgets)
    }
}
