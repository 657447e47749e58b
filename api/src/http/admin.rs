//! The catalog, policies, principals and the audit log over HTTP: each
//! handler reads its input, calls the use case in `service/`, and writes
//! the typed answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::Caller;
use super::body::JsonBody;
use super::state::AppState;
use crate::service::{Audited, ServiceError};
use crate::wire::admin::{
    AuditQuery, CatalogQuery, NewPrincipalBody, PolicyBody, RegisterBody, StatusBody,
};

/// Writes the entry, then answers with `status`.
async fn settle<T: Serialize>(
    state: &AppState,
    audited: Audited<T>,
    status: StatusCode,
) -> Result<Response, ServiceError> {
    let (value, _seq) = state.settle(audited).await?;
    Ok((status, Json(value)).into_response())
}

/// `GET /v1/catalog`.
pub async fn catalog(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<CatalogQuery>, QueryRejection>,
) -> Result<Response, ServiceError> {
    let Query(q) = query?;
    Ok(Json(state.catalog(&caller.0.principal, q.purpose.as_deref())).into_response())
}

/// `GET /v1/catalog/{dataset}/versions`.
pub async fn catalog_versions(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ServiceError> {
    let Path(name) = name?;
    Ok(Json(state.catalog_versions(&name)?).into_response())
}

/// `POST /v1/datasets`: registration reads the whole file, so it runs off
/// the async workers.
pub async fn register_dataset(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, ServiceError> {
    let principal = caller.0.principal.clone();
    let audited = state
        .blocking(move |state| state.register(&principal, &body.manifest, "POST /v1/datasets"))
        .await?;
    let (registered, _seq) = state.settle(audited).await?;
    let status = if registered.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registered)).into_response())
}

/// `GET /v1/policy`.
pub async fn policy(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.policy()?).into_response())
}

/// `PUT /v1/policy`: a proposal, active once a second approver of the
/// data authority approves it.
pub async fn update_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<PolicyBody>,
) -> Result<Response, ServiceError> {
    let audited = state.propose_policy(&caller.0.principal, &body.text, "PUT /v1/policy");
    settle(&state, audited, StatusCode::ACCEPTED).await
}

/// `GET /v1/policy/versions`.
pub async fn policy_versions(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.policy_versions()?).into_response())
}

/// `GET /v1/principals`.
pub async fn principals(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.principals(&caller.0.principal)?).into_response())
}

/// `POST /v1/principals`.
pub async fn add_principal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewPrincipalBody>,
) -> Result<Response, ServiceError> {
    let audited = state.add_principal(&caller.0.principal, &body, "POST /v1/principals");
    settle(&state, audited, StatusCode::CREATED).await
}

/// `POST /v1/principals/{name}/keys`.
pub async fn issue_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ServiceError> {
    let Path(name) = name?;
    let audited = state.issue_key(
        &caller.0.principal,
        &name,
        "POST /v1/principals/{name}/keys",
    );
    settle(&state, audited, StatusCode::CREATED).await
}

/// `DELETE /v1/principals/{name}/keys`.
pub async fn revoke_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ServiceError> {
    let Path(name) = name?;
    let audited = state.revoke_keys(
        &caller.0.principal,
        &name,
        "DELETE /v1/principals/{name}/keys",
    );
    settle(&state, audited, StatusCode::OK).await
}

/// `PUT /v1/principals/{name}/status`.
pub async fn set_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<StatusBody>,
) -> Result<Response, ServiceError> {
    let Path(name) = name?;
    let audited = state.set_status(
        &caller.0.principal,
        &name,
        &body,
        "PUT /v1/principals/{name}/status",
    );
    settle(&state, audited, StatusCode::OK).await
}

/// `GET /v1/audit`.
pub async fn audit_search(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ServiceError> {
    let Query(q) = query?;
    Ok(Json(state.search_audit(&caller.0.principal, &q)?).into_response())
}

/// `GET /v1/audit/verify`.
pub async fn audit_verify(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    Ok(Json(state.check_audit_chain()?).into_response())
}
