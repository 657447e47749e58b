//! `POST /v1/verify` and `GET /v1/verify/products`: translations of the
//! verification use case (`service/verification.rs`) to HTTP. A body that
//! cannot be read is still a refusal the use case audits.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::Caller;
use super::body::JsonBody;
use super::state::AppState;
use crate::service::ServiceError;
use crate::verification::HTTP_ENDPOINT;

pub async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<JsonBody<Value>, ServiceError>,
) -> Result<Response, ServiceError> {
    let _permit = state.limits.admit(caller.name())?;
    let body = body.map(|JsonBody(v)| v);
    let answer = state
        .service
        .verify(&caller.0.principal, HTTP_ENDPOINT, body)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer.0).into_response())
}

/// `GET /v1/verify/products`: the published products and whether the
/// caller may use each.
pub async fn products(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.service.products(&caller.0.principal)).into_response())
}
