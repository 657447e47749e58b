//! `POST /v1/verify`: `match`/`mismatch` (or true/false) per claim about
//! one subject or a batch of up to 10,000, and `GET /v1/verify/products`.
//!
//! Order of events: the body is read and the request checked (product,
//! role, purpose, levels, every identifier and claim) before any lookup;
//! the product's quotas admit it; the answer is computed; the audit entry
//! (principal, purpose, claims, a keyed digest per subject) is on disk
//! before the answer leaves. Refusals are audited too.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use super::auth::Caller;
use super::error::ApiFailure;
use super::state::AppState;
use crate::verify::{self, HTTP_ENDPOINT, VerifyBody};

pub async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiFailure> {
    let _permit = state.limits.admit(caller.name())?;
    let principal = &caller.0.principal;
    let parsed = body
        .map_err(ApiFailure::from)
        .and_then(|Json(v)| VerifyBody::parse(&v).map_err(ApiFailure::from));
    let body = match parsed {
        Ok(b) => b,
        Err(failure) => {
            let outcome = format!("refused:{}", failure.0.code.as_str());
            let entry = verify::audit_entry(principal, HTTP_ENDPOINT, None, None, outcome);
            state.audit(entry).await.map_err(ApiFailure::internal)?;
            return Err(failure);
        }
    };
    let engine = state.engine();
    let now = Utc::now();
    let checked = verify::check(&engine, principal, &body, &state.digest, now).and_then(|v| {
        state
            .quotas
            .admit(caller.name(), v.checked.product(), &v.digests, now)
            .map(|()| v)
    });
    let verification = match checked {
        Ok(v) => v,
        Err(e) => {
            let outcome = format!("refused:{}", e.code.as_str());
            let entry = verify::audit_entry(principal, HTTP_ENDPOINT, Some(&body), None, outcome);
            state.audit(entry).await.map_err(ApiFailure::internal)?;
            return Err(e.into());
        }
    };
    let answers = verification.checked.answer();
    let entry = verify::audit_entry(
        principal,
        HTTP_ENDPOINT,
        Some(&body),
        Some(&verification),
        "ok".into(),
    );
    let seq = state.audit(entry).await.map_err(ApiFailure::internal)?;
    let answer = verify::AnswerBody::new(
        &verification.checked,
        &answers,
        body.single,
        engine.policy_version(),
        seq,
    );
    Ok(Json(answer).into_response())
}

/// `GET /v1/verify/products`: the published products and whether the
/// caller may use each.
pub async fn products(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiFailure> {
    Ok(Json(verify::products_json(&state.engine(), caller.role())).into_response())
}
