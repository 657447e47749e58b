//! The regulation's requests over HTTP: open, list, read, take a step, and
//! the authority's overdue list. Every opening and step is audited; a step
//! with an effect on access takes hold before its answer returns.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::{JsonBody, OptionalJsonBody};
use super::state::AppState;
use crate::service::requests::{self, OpenBody, StepBody};
use crate::service::{Audited, ServiceError};

/// Writes the entry, then answers with `status`.
async fn settle(
    state: &AppState,
    audited: Audited<Value>,
    status: StatusCode,
) -> Result<Response, ServiceError> {
    let (json, _seq) = state.settle(audited).await?;
    Ok((status, Json(json)).into_response())
}

/// `POST /v1/requests`.
pub async fn open(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Response, ServiceError> {
    let audited = state.open_request(&caller.0.principal, &body, "POST /v1/requests");
    settle(&state, audited, StatusCode::CREATED).await
}

/// `GET /v1/requests`: the caller's requests and those it acts on.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.requests(&caller.0.principal)?).into_response())
}

/// `GET /v1/requests/overdue`: open requests past their deadline.
pub async fn overdue(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    let today = requests::today(Utc::now());
    let records = state.overdue_requests(&caller.0.principal, today)?;
    let requests: Vec<_> = records
        .iter()
        .map(|r| requests::request_json(r, None))
        .collect();
    Ok(Json(json!({"today": today.to_string(), "requests": requests})).into_response())
}

/// `GET /v1/requests/{id}`: a request and its steps, for its parties.
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ServiceError> {
    let Path(id) = id?;
    Ok(Json(state.request(&caller.0.principal, &id)?).into_response())
}

/// `POST /v1/requests/{id}/{action}`.
pub async fn step(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    OptionalJsonBody(body): OptionalJsonBody<StepBody>,
) -> Result<Response, ServiceError> {
    let Path((id, action)) = path?;
    let audited = state.act_on_request(
        &caller.0.principal,
        &id,
        &action,
        &body.notes,
        "POST /v1/requests/{id}/{action}",
    );
    settle(&state, audited, StatusCode::OK).await
}
