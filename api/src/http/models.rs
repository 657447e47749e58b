//! `POST /v1/models`, `GET /v1/models`, `GET /v1/models/{id}` and
//! `POST /v1/models/{id}/score`: in-domain models (Art. 32, 39). Training
//! and scoring run off the async workers; their audit entry is durable
//! before the answer leaves.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::Caller;
use super::body::JsonBody;
use super::state::AppState;
use crate::service::models::{ScoreBody, TrainBody};
use crate::service::{Audited, ServiceError};

/// Writes the entry, then answers with the entry's sequence number.
async fn settle(
    state: &AppState,
    audited: Audited<Value>,
    status: StatusCode,
) -> Result<Response, ServiceError> {
    let (mut json, seq) = state.settle(audited).await?;
    json["audit_seq"] = serde_json::json!(seq);
    Ok((status, Json(json)).into_response())
}

/// `POST /v1/models`: trains a model from a spec.
pub async fn train(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<TrainBody>,
) -> Result<Response, ServiceError> {
    let _permit = state.limits.admit(caller.name())?;
    let principal = caller.0.principal.clone();
    let audited = state
        .blocking(move |state| state.train(&principal, &body, "POST /v1/models"))
        .await?;
    settle(&state, audited, StatusCode::CREATED).await
}

/// `GET /v1/models`: the caller's models.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.models(&caller.0.principal)?).into_response())
}

/// `GET /v1/models/{id}`: one of the caller's models.
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ServiceError> {
    let Path(id) = id?;
    Ok(Json(state.model(&caller.0.principal, &id)?).into_response())
}

/// `POST /v1/models/{id}/score`: scores named subjects or supplied rows.
pub async fn score(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<ScoreBody>,
) -> Result<Response, ServiceError> {
    let Path(id) = id?;
    let _permit = state.limits.admit(caller.name())?;
    let principal = caller.0.principal.clone();
    let audited = state
        .blocking(move |state| state.score(&principal, &id, &body, "POST /v1/models/{id}/score"))
        .await?;
    settle(&state, audited, StatusCode::OK).await
}
