//! The regulation's requests over HTTP: open, list, read, take a step, and
//! the authority's overdue list. Every opening and step is audited; a step
//! with an effect on access takes hold before its answer returns.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use veil_policies::requests::Effect;

use super::auth::Caller;
use super::body::{JsonBody, OptionalJsonBody};
use super::state::AppState;
use crate::service::ServiceError;
use crate::service::requests::{self, OpenBody};
use crate::store::AuditEntry;

async fn audit(state: &AppState, entry: AuditEntry) -> Result<(), ServiceError> {
    state.audit(entry).await?;
    Ok(())
}

/// Audits an opening or a step and, when it was taken, makes its effect
/// hold before the answer leaves.
async fn settle(
    state: &AppState,
    entry: AuditEntry,
    outcome: Result<(crate::store::RequestRecord, Effect), ServiceError>,
) -> Result<crate::store::RequestRecord, ServiceError> {
    match outcome {
        Ok((record, effect)) => {
            follow(state, effect)?;
            audit(state, entry).await?;
            Ok(record)
        }
        Err(e) => {
            audit(state, entry).await?;
            Err(e)
        }
    }
}

/// Effects that change what the engine allows take hold now.
fn follow(state: &AppState, effect: Effect) -> Result<(), ServiceError> {
    match effect {
        Effect::None | Effect::Grant | Effect::Qualify | Effect::Disqualify => Ok(()),
        _ => state.reload_engine().map_err(ServiceError::from),
    }
}

/// `POST /v1/requests`.
pub async fn open(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Response, ServiceError> {
    let principal = &caller.0.principal;
    let outcome = requests::open(&mut state.store(), principal, &body, Utc::now());
    let what = match &outcome {
        Ok((r, _)) => format!("open {} {}", r.kind, r.id),
        Err(_) => format!("open {}", body.kind),
    };
    let entry = requests::audit_entry(
        principal,
        "POST /v1/requests",
        what,
        body.dataset.as_deref(),
        &outcome,
    );
    let record = settle(&state, entry, outcome).await?;
    Ok((
        StatusCode::CREATED,
        Json(requests::request_json(&record, None)),
    )
        .into_response())
}

/// `GET /v1/requests`: the caller's requests and those it acts on.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    let records = requests::visible(&state.store(), &caller.0.principal)?;
    let requests: Vec<_> = records
        .iter()
        .map(|r| requests::request_json(r, None))
        .collect();
    Ok(Json(json!({"requests": requests})).into_response())
}

/// `GET /v1/requests/overdue`: open requests past their deadline.
pub async fn overdue(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    let today = requests::today(Utc::now());
    let records = requests::overdue(&state.store(), &caller.0.principal, today)?;
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
    let store = state.store();
    let not_found = || ServiceError::not_found("no request of yours has this id");
    let record = store.request(&id)?.ok_or_else(not_found)?;
    if requests::parties(&store, &caller.0.principal, &record)?.is_empty() {
        return Err(not_found());
    }
    let steps = store.request_steps(&id)?;
    Ok(Json(requests::request_json(&record, Some(&steps))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    #[serde(default)]
    notes: BTreeMap<String, String>,
}

/// `POST /v1/requests/{id}/{action}`.
pub async fn step(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    OptionalJsonBody(body): OptionalJsonBody<StepBody>,
) -> Result<Response, ServiceError> {
    let Path((id, action)) = path?;
    let principal = &caller.0.principal;
    let outcome = requests::act(
        &mut state.store(),
        principal,
        &id,
        &action,
        &body.notes,
        Utc::now(),
    );
    let entry = requests::audit_entry(
        principal,
        "POST /v1/requests/{id}/{action}",
        format!("{action} {id}"),
        None,
        &outcome,
    );
    let record = settle(&state, entry, outcome).await?;
    Ok(Json(requests::request_json(&record, None)).into_response())
}
