//! `POST /v1/query`: one SELECT under policy, answered as JSON, CSV or an
//! Arrow IPC stream, streamed batch by batch.
//!
//! Order of events: the query is checked; refusals are audited and answered.
//! An accepted query's release is written to the audit log, durably, before
//! the first byte of data leaves; when the stream ends a second entry records
//! the rows released, and the receipt (which cites it) closes the answer.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use veil_engine::{DpOptions, PreparedQuery, QueryRequest};
use veil_policies::Role;

use super::auth::Caller;
use super::error::ApiFailure;
use super::state::AppState;
use crate::receipt::{self, Claims};
use crate::signing::hex;
use crate::store::AuditEntry;
use crate::wire::{self, ApiError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    sql: String,
    #[serde(default)]
    purpose: Option<String>,
    /// Asks for a differentially private answer that alone is ε-DP.
    #[serde(default)]
    epsilon: Option<f64>,
    /// L0: groups one privacy unit may contribute to (default 1).
    #[serde(default)]
    max_groups: Option<u64>,
    /// Linf: rows one privacy unit may contribute to a group (default 1).
    #[serde(default)]
    max_rows: Option<u64>,
    /// Return the cost and the expected error without running or spending.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl Format {
    /// The first supported type in `Accept`, JSON when absent or `*/*`.
    fn negotiate(headers: &HeaderMap) -> Result<Format, ApiFailure> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Ok(Format::Json);
        };
        for part in accept.split(',') {
            match part.split(';').next().unwrap_or("").trim() {
                "application/json" | "*/*" | "application/*" | "" => return Ok(Format::Json),
                "text/csv" | "text/*" => return Ok(Format::Csv),
                ARROW_STREAM => return Ok(Format::Arrow),
                _ => {}
            }
        }
        Err(ApiFailure::bad_request(format!(
            "answers come as application/json, text/csv or {ARROW_STREAM}"
        )))
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => ARROW_STREAM,
        }
    }
}

fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    hex(&bytes)
}

pub async fn query(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<QueryBody>, JsonRejection>,
) -> Result<Response, ApiFailure> {
    caller.require(&[Role::Consumer, Role::Modeler], "POST /v1/query")?;
    let permit = state.limits.admit(caller.name())?;
    let Json(body) = body?;
    if body.sql.trim().is_empty() {
        return Err(ApiFailure::bad_request("`sql` is empty"));
    }
    if let Some(e) = body.epsilon
        && !(e.is_finite() && e > 0.0 && e <= 100.0)
    {
        return Err(ApiFailure::bad_request(
            "`epsilon` must be a number above 0 and at most 100",
        ));
    }
    for (what, v) in [("max_groups", body.max_groups), ("max_rows", body.max_rows)] {
        if v.is_some_and(|v| !(1..=1000).contains(&v)) {
            return Err(ApiFailure::bad_request(format!(
                "`{what}` must be between 1 and 1000"
            )));
        }
    }
    let dp = match (
        body.epsilon,
        body.max_groups.is_some() || body.max_rows.is_some() || body.dry_run,
    ) {
        (Some(epsilon), _) => Some(DpOptions {
            epsilon,
            max_groups: body.max_groups.unwrap_or(1),
            max_rows: body.max_rows.unwrap_or(1),
        }),
        (None, true) => {
            return Err(ApiFailure::bad_request(
                "`max_groups`, `max_rows` and `dry_run` go with `epsilon`, for differentially private queries",
            ));
        }
        (None, false) => None,
    };
    let format = Format::negotiate(&headers)?;
    let purpose = body.purpose.clone().filter(|p| !p.trim().is_empty());
    let request_id = random_id();
    let request_json = json!({"sql": body.sql, "purpose": purpose});
    let engine = state.engine();
    let mut entry = AuditEntry {
        principal: caller.name().to_owned(),
        role: caller.role().name().to_owned(),
        purpose: purpose.clone().unwrap_or_default(),
        endpoint: "POST /v1/query".into(),
        request: body.sql.clone(),
        privacy: "{}".into(),
        ..AuditEntry::default()
    };
    let request = QueryRequest {
        principal: &caller.0.principal,
        purpose: purpose.as_deref(),
        sql: &body.sql,
        now: Utc::now(),
        dp,
    };
    let mut checked = engine.prepare(&request);
    // A DP answer is paid before it exists: the charge is atomic, and the
    // noise is drawn after it. A dry run only reports the price.
    let mut charged = Vec::new();
    if let Ok(prepared) = &mut checked
        && let Some(costs) = prepared.dp.as_ref().map(|dp| dp.costs.clone())
    {
        if body.dry_run {
            entry.outcome = "dry_run".into();
            entry.datasets = prepared.provenance.datasets.clone();
            entry.privacy = privacy_json(prepared).to_string();
            state.audit(entry).await.map_err(ApiFailure::internal)?;
            return Ok(Json(crate::service::dry_run_json(
                &state.store(),
                caller.name(),
                prepared,
            ))
            .into_response());
        }
        let charge = state.store().charge(caller.name(), &costs, &body.sql);
        match charge {
            Ok(c) => {
                charged = c.ids;
                prepared.say_budget_left(c.left);
            }
            Err(e) => {
                let failure = ApiFailure::from(e);
                entry.outcome = format!("refused:{}", failure.0.code.as_str());
                state.audit(entry).await.map_err(ApiFailure::internal)?;
                return Err(failure);
            }
        }
    }
    let stream = match &checked {
        Ok(prepared) => tokio::time::timeout(state.config.timeout, engine.stream(prepared))
            .await
            .unwrap_or(Err(veil_engine::QueryError::Internal {
                detail: "planning timed out".into(),
            })),
        Err(e) => Err(e.clone()),
    };
    let (prepared, stream) = match (checked, stream) {
        (Ok(p), Ok(s)) => (p, s),
        (_, Err(e)) => {
            if let veil_engine::QueryError::Internal { detail } = &e {
                tracing::error!(principal = caller.name(), detail = %detail, "query failed before streaming");
            }
            if !charged.is_empty() {
                state.store().refund(&charged)?;
            }
            let failure = ApiError::from(&e);
            entry.outcome = format!("refused:{}", failure.code.as_str());
            state.audit(entry).await.map_err(ApiFailure::internal)?;
            return Err(failure.into());
        }
        (Err(e), Ok(_)) => return Err(ApiError::from(&e).into()),
    };
    entry.datasets = prepared.provenance.datasets.clone();
    entry.fields = prepared.fields.clone();
    entry.privacy = privacy_json(&prepared).to_string();
    entry.outcome = "released".into();
    state
        .audit(entry.clone())
        .await
        .map_err(ApiFailure::internal)?;

    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let max_rows = engine.policy().max_rows;
    let task_state = state.clone();
    let request_digest = receipt::request_digest(caller.name(), "POST /v1/query", &request_json);
    let id = request_id.clone();
    let principal = caller.name().to_owned();
    let schema = stream.schema();
    tokio::spawn(async move {
        let _permit = permit;
        let mut writer = AnswerWriter::new(format, schema, sender);
        let mut stream = stream;
        let deadline = tokio::time::Instant::now() + task_state.config.timeout;
        let mut failed = false;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next()).await;
            let batch = match next {
                Ok(Some(Ok(batch))) => batch,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::error!(request = %id, detail = %e, "query failed while streaming");
                    failed = true;
                    break;
                }
                Err(_) => {
                    tracing::error!(request = %id, "query timed out while streaming");
                    failed = true;
                    break;
                }
            };
            if !writer.write(batch, max_rows).await {
                return; // the client went away; the release entry stands
            }
            if writer.truncated {
                break;
            }
        }
        task_state.metrics.rows_released(writer.rows);
        let mut done = entry;
        done.rows = Some(writer.rows);
        done.outcome = if failed {
            "failed".into()
        } else {
            "completed".into()
        };
        let seq = match task_state.audit(done).await {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(request = %id, error = %e, "the completion entry could not be written");
                None
            }
        };
        let claims = Claims {
            request_id: id.clone(),
            request_sha256: request_digest,
            result_sha256: String::new(),
            policy_version: prepared.policy_version.clone(),
            privacy: privacy_json(&prepared),
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            audit_seq: seq,
            key_id: task_state.signer.key_id(),
        };
        writer
            .finish(&prepared, (&id, &principal), claims, failed, &task_state)
            .await;
    });

    let mut response = Body::from_stream(ReceiverStream::new(receiver)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("veil-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&prepared_policy(&state)) {
        h.insert("veil-policy-version", v);
    }
    Ok(response)
}

fn prepared_policy(state: &AppState) -> String {
    state.engine().policy_version().to_owned()
}

fn privacy_json(prepared: &PreparedQuery) -> Value {
    wire::answer_meta(prepared)
        .get("privacy")
        .cloned()
        .unwrap_or(Value::Null)
}

/// Encodes batches in the negotiated format, hashing every byte it sends
/// for the receipt.
struct AnswerWriter {
    format: Format,
    schema: SchemaRef,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    digest: Sha256,
    rows: u64,
    truncated: bool,
    started: bool,
    arrow: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
}

impl AnswerWriter {
    fn new(
        format: Format,
        schema: SchemaRef,
        sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> Self {
        AnswerWriter {
            format,
            schema: wire::portable_schema(&schema),
            sender,
            digest: Sha256::new(),
            rows: 0,
            truncated: false,
            started: false,
            arrow: None,
        }
    }

    async fn send(&mut self, bytes: Vec<u8>, digested: bool) -> bool {
        if digested {
            self.digest.update(&bytes);
        }
        self.sender.send(Ok(Bytes::from(bytes))).await.is_ok()
    }

    async fn start(&mut self) -> bool {
        self.started = true;
        match self.format {
            Format::Json => {
                let head = format!("{{\"columns\":{},\"rows\":[", wire::columns(&self.schema));
                self.send(head.into_bytes(), true).await
            }
            Format::Csv => {
                let mut out = Vec::new();
                let ok = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out)
                    .write(&RecordBatch::new_empty(self.schema.clone()))
                    .is_ok();
                ok && self.send(out, true).await
            }
            Format::Arrow => {
                match arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &self.schema) {
                    Ok(mut w) => {
                        let head = std::mem::take(w.get_mut());
                        self.arrow = Some(w);
                        self.send(head, true).await
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// Writes one batch, cut at `max_rows`; false when the client is gone.
    async fn write(&mut self, batch: RecordBatch, max_rows: u64) -> bool {
        if !self.started && !self.start().await {
            return false;
        }
        let room = max_rows.saturating_sub(self.rows) as usize;
        let batch = if batch.num_rows() > room {
            self.truncated = true;
            batch.slice(0, room)
        } else {
            batch
        };
        if batch.num_rows() == 0 {
            return true;
        }
        let Ok(batch) = wire::portable(&batch) else {
            return false;
        };
        let out = match self.format {
            Format::Json => {
                let mut out = Vec::new();
                for (i, row) in wire::rows(&batch).iter().enumerate() {
                    if self.rows > 0 || i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut out, row);
                }
                out
            }
            Format::Csv => {
                let mut out = Vec::new();
                let _ = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .build(&mut out)
                    .write(&batch);
                out
            }
            Format::Arrow => match self.arrow.as_mut() {
                Some(w) => {
                    let _ = w.write(&batch);
                    std::mem::take(w.get_mut())
                }
                None => Vec::new(),
            },
        };
        self.rows += batch.num_rows() as u64;
        self.send(out, true).await
    }

    /// Closes the answer: for JSON, the metadata and the receipt; for CSV and
    /// Arrow, the end of the stream, with the receipt kept for
    /// `GET /v1/receipts/{id}`.
    async fn finish(
        mut self,
        prepared: &PreparedQuery,
        (id, principal): (&str, &str),
        mut claims: Claims,
        failed: bool,
        state: &AppState,
    ) {
        if !self.started && !self.start().await {
            return;
        }
        match self.format {
            Format::Json => {
                let mut tail = serde_json::Map::new();
                tail.insert("truncated".into(), json!(self.truncated));
                tail.extend(wire::answer_meta(prepared));
                tail.insert("request_id".into(), json!(id));
                if failed {
                    tail.insert(
                        "error".into(),
                        ApiError::new(crate::wire::ErrorCode::Internal, "").to_json()["error"]
                            .clone(),
                    );
                }
                let tail = Value::Object(tail).to_string();
                let mut bytes = b"]".to_vec();
                bytes.push(b',');
                bytes.extend_from_slice(&tail.as_bytes()[1..tail.len() - 1]);
                if !self.send(bytes, true).await {
                    return;
                }
                claims.result_sha256 = hex(&self.digest.clone().finalize());
                let receipt = receipt::issue(&state.signer, &claims);
                let _ = self
                    .send(format!(",\"receipt\":\"{receipt}\"}}").into_bytes(), false)
                    .await;
            }
            Format::Csv | Format::Arrow => {
                if let Some(mut w) = self.arrow.take() {
                    let _ = w.finish();
                    let end = std::mem::take(w.get_mut());
                    if !self.send(end, true).await {
                        return;
                    }
                }
                claims.result_sha256 = hex(&self.digest.clone().finalize());
                let receipt = receipt::issue(&state.signer, &claims);
                if let Err(e) = state.store().save_receipt(id, principal, &receipt) {
                    tracing::error!(error = %e, "a receipt could not be stored");
                }
                if failed {
                    let _ = self
                        .sender
                        .send(Err(std::io::Error::other("the query failed while running")))
                        .await;
                }
            }
        }
    }
}

/// `GET /v1/receipts/{request_id}`: the receipt of a CSV or Arrow answer.
pub async fn receipt(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiFailure> {
    let found = state.store().receipt(&id, caller.name())?;
    match found {
        Some(r) => Ok(Json(json!({"request_id": id, "receipt": r})).into_response()),
        None => Err(ApiFailure::not_found(
            "no receipt for this request (JSON answers carry theirs inline)",
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetQuery {
    purpose: Option<String>,
}

/// `GET /v1/budget`: per dataset the caller may query under differential
/// privacy, the budget, what was spent and what is left.
pub async fn budget(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<axum::extract::Query<BudgetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    caller.require(&[Role::Consumer, Role::Modeler], "GET /v1/budget")?;
    let axum::extract::Query(q) = query?;
    let engine = state.engine();
    let now = Utc::now();
    let mut budgets = Vec::new();
    for d in engine.datasets() {
        let name = &d.manifest.name;
        let principal = &caller.0.principal;
        let purpose = q.purpose.as_deref();
        // Datasets with dp fields, and those models have spent on.
        let budget = match engine.dp_budget(name, principal, purpose, now) {
            Some(b) => b,
            None => match engine.model_budget(name, principal, purpose, now) {
                Some(b) if state.store().spent(caller.name(), name, &b, now)?.any() => b,
                _ => continue,
            },
        };
        let spent = state.store().spent(caller.name(), name, &budget, now)?;
        let used = spent.epsilon(budget.delta);
        budgets.push(json!({
            "dataset": name,
            "budget": {"epsilon": budget.epsilon, "delta": budget.delta},
            "period": budget.period.map(|p| p.name()),
            "period_start": budget.period.map(|p| crate::store::time_text(p.start(now))),
            "renews": budget.period.map(|p| crate::store::time_text(p.renews(now))),
            "spent": {"epsilon": used, "basic": {"epsilon": spent.epsilon, "delta": spent.delta}, "zcdp": {"rho": spent.rho, "delta0": spent.delta0}},
            "remaining_epsilon": spent.epsilon_left(&budget),
        }));
    }
    Ok(Json(json!({
        "budgets": budgets,
        "accounting": "per dataset, the tighter of basic composition and zCDP over every answer released to you in the budget's period (for ever, when it has none)",
    }))
    .into_response())
}
