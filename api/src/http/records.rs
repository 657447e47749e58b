//! `GET /v1/me/records`: a subject principal's own records (Art. 24),
//! through `service/records.rs`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::state::AppState;
use crate::service::ServiceError;

const ENDPOINT: &str = "GET /v1/me/records";

pub async fn own_records(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    let _permit = state.limits.admit(caller.name())?;
    let json = state
        .service
        .own_records(&caller.0.principal, ENDPOINT)
        .await?;
    Ok(Json(json).into_response())
}
