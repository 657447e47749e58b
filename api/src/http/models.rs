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
use chrono::Utc;
use serde_json::Value;

use super::auth::Caller;
use super::body::JsonBody;
use super::state::AppState;
use crate::service::ServiceError;
use crate::service::models::{self, Inside, ScoreBody, TrainBody};
use crate::store::AuditEntry;

/// Writes the entry, then answers.
async fn settle(
    state: &AppState,
    (result, entry): (Result<Value, ServiceError>, AuditEntry),
    status: StatusCode,
) -> Result<Response, ServiceError> {
    let seq = state.audit(entry).await?;
    let mut json = result?;
    json["audit_seq"] = serde_json::json!(seq);
    Ok((status, Json(json)).into_response())
}

/// Runs `work` on a blocking thread with the state and the engine.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce(&AppState, &veil_engine::Engine) -> T + Send + 'static,
) -> Result<T, ServiceError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let engine = state.engine();
        work(&state, &engine)
    })
    .await
    .map_err(ServiceError::internal)
}

/// `POST /v1/models`: trains a model from a spec.
pub async fn train(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<TrainBody>,
) -> Result<Response, ServiceError> {
    let _permit = state.limits.admit(caller.name())?;
    let principal = caller.0.principal.clone();
    let outcome = blocking(&state, move |state, engine| {
        models::train(
            Inside {
                store: state.store_lock(),
                engine,
                indexes: &state.unit_indexes,
            },
            &principal,
            &body,
            "POST /v1/models",
            Utc::now(),
        )
    })
    .await?;
    settle(&state, outcome, StatusCode::CREATED).await
}

/// `GET /v1/models`: the caller's models.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    let json = models::list(&state.store(), &caller.0.principal)?;
    Ok(Json(json).into_response())
}

/// `GET /v1/models/{id}`: one of the caller's models.
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ServiceError> {
    let Path(id) = id?;
    let record = models::find(&state.store(), &caller.0.principal, &id)?;
    Ok(Json(models::model_json(&record)).into_response())
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
    let outcome = blocking(&state, move |state, engine| {
        models::score(
            Inside {
                store: state.store_lock(),
                engine,
                indexes: &state.unit_indexes,
            },
            &principal,
            &id,
            &body,
            &state.digest,
            "POST /v1/models/{id}/score",
            Utc::now(),
        )
    })
    .await?;
    settle(&state, outcome, StatusCode::OK).await
}
