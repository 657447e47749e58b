//! `POST /v1/query`, `GET /v1/budget` and `GET /v1/receipts/{request_id}`:
//! translations of the query use case (`service/query.rs`) to HTTP. The
//! answer streams batch by batch in the negotiated format; the release is
//! on record before the first byte leaves, and the receipt closes it.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::answer::{AnswerWriter, Format};
use super::auth::Caller;
use super::body::JsonBody;
use super::state::AppState;
use crate::service::ServiceError;
use crate::service::query::{QueryInput, QueryOutcome};
use crate::wire;
use crate::wire::query::{BudgetQuery, QueryBody};

impl From<QueryBody> for QueryInput {
    fn from(b: QueryBody) -> Self {
        QueryInput {
            sql: b.sql,
            purpose: b.purpose,
            epsilon: b.epsilon,
            max_groups: b.max_groups,
            max_rows: b.max_rows,
            dry_run: b.dry_run,
            target_ci95: b.target_ci95,
            auto_bounds: b.bounds == Some(crate::wire::query::Bounds::Auto),
            intervals: b.intervals,
            request_id: None,
        }
    }
}

const ENDPOINT: &str = "POST /v1/query";

pub async fn query(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QueryBody>,
) -> Result<Response, ServiceError> {
    let permit = state.limits.admit(caller.name())?;
    let format = Format::negotiate(&headers)?;
    let input = QueryInput::from(body);
    // Planned and run on the query pool: deep statements and long scans
    // stay off the workers that serve connections.
    let task = state.clone();
    let principal = caller.0.principal.clone();
    let outcome = state
        .queries
        .run(async move {
            task.service
                .query(&principal, ENDPOINT, &input, task.config.timeout)
                .await
        })
        .await??;
    let release = match outcome {
        QueryOutcome::DryRun(price) => return Ok(Json(price).into_response()),
        QueryOutcome::Released(r) => *r,
    };
    let request_id = release.completion.request_id.clone();
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let task_state = state.clone();
    let principal = caller.name().to_owned();
    state.queries.spawn(async move {
        let _permit = permit;
        let mut writer = AnswerWriter::new(format, release.stream.schema(), sender).with_metadata(
            crate::wire::stream_metadata(
                &release.prepared,
                &release.completion.request_id,
                release.max_rows,
            ),
        );
        let mut stream = release.stream;
        let deadline = tokio::time::Instant::now() + task_state.config.timeout;
        let mut failed = false;
        let id = release.completion.request_id.clone();
        loop {
            let batch = match tokio::time::timeout_at(deadline, stream.next()).await {
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
            if !writer.write(batch, release.max_rows).await {
                return; // the client went away; the release entry stands
            }
            if writer.truncated {
                break;
            }
        }
        task_state.metrics.rows_released(writer.rows);
        let claims = release
            .completion
            .finish(&task_state.service, &release.prepared, writer.rows, failed)
            .await;
        writer
            .finish(
                &release.prepared,
                (&id, &principal),
                claims,
                failed,
                &task_state,
            )
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
    if let Ok(v) = HeaderValue::from_str(state.engine().policy_version()) {
        h.insert("veil-policy-version", v);
    }
    Ok(response)
}

/// `GET /v1/receipts/{request_id}`: the receipt of a CSV or Arrow answer.
pub async fn receipt(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    let found = state.store().receipt(&id, caller.name())?;
    match found {
        Some(r) => Ok(Json(json!({"request_id": id, "receipt": r})).into_response()),
        None => Err(ServiceError::not_found(
            "no receipt for this request (JSON answers carry theirs inline)",
        )),
    }
}

/// `GET /v1/budget`: per dataset the caller may query under differential
/// privacy, the budget, what was spent and what is left.
pub async fn budget(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<BudgetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ServiceError> {
    let Query(q) = query?;
    let views = state
        .service
        .budgets(&caller.0.principal, q.purpose.as_deref())?;
    Ok(Json(wire::budgets(&views)).into_response())
}
