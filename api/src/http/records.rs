//! `GET /v1/me/records`: a subject principal's own records (Art. 24),
//! through `service/records.rs`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::state::AppState;
use crate::service::ServiceError;

const ENDPOINT: &str = "GET /v1/me/records";

pub async fn own_records(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ServiceError> {
    if query.is_some_and(|q| !q.is_empty()) {
        return Err(ServiceError::bad_request(
            "GET /v1/me/records takes no query parameters: it answers all of your own records",
        ));
    }
    let _permit = state.limits.admit(caller.name())?;
    let json = state
        .service
        .own_records(&caller.0.principal, ENDPOINT)
        .await?;
    Ok(Json(json).into_response())
}
