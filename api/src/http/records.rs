//! `GET /v1/me/records`: a subject principal's own records (Art. 24).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::error::ApiFailure;
use super::state::AppState;
use crate::store::AuditEntry;

const ENDPOINT: &str = "GET /v1/me/records";

pub async fn own_records(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiFailure> {
    let _permit = state.limits.admit(caller.name())?;
    let engine = state.engine();
    let principal = &caller.0.principal;
    match crate::service::own_records(&engine, principal, ENDPOINT).await {
        Ok((json, entry)) => {
            let seq = state.audit(entry).await.map_err(ApiFailure::internal)?;
            let mut json = json;
            json["audit_seq"] = serde_json::json!(seq);
            Ok(Json(json).into_response())
        }
        Err(e) => {
            let entry = AuditEntry {
                principal: principal.name.clone(),
                role: principal.role.name().to_owned(),
                endpoint: ENDPOINT.to_owned(),
                request: "own records".into(),
                privacy: "{}".into(),
                outcome: format!("refused:{}", e.code.as_str()),
                ..AuditEntry::default()
            };
            state.audit(entry).await.map_err(ApiFailure::internal)?;
            Err(e.into())
        }
    }
}
