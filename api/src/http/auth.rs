//! Who is calling: the principal behind the `Authorization: Bearer` key,
//! looked up on every request so revocation and suspension take effect on
//! the next one. [`authorize`] runs before any handler, and so before any
//! body is read: it finds the route in the route table, and for every
//! route that is not public it authenticates the caller and checks the
//! role. A caller who may not use an endpoint learns nothing of its body.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use veil_policies::Role;

use super::routes::{self, Access};
use super::state::AppState;
use crate::service::ServiceError;
use crate::store::{PrincipalRecord, PrincipalStatus};
use crate::wire::ErrorCode;

#[derive(Clone)]
pub struct Caller(pub Arc<PrincipalRecord>);

impl Caller {
    pub fn name(&self) -> &str {
        &self.0.principal.name
    }

    pub fn role(&self) -> Role {
        self.0.principal.role
    }
}

/// The caller behind the request's key, active.
fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ServiceError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(key) = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Err(ServiceError::new(
            ErrorCode::Unauthenticated,
            "send your API key as `Authorization: Bearer <key>`",
        ));
    };
    match state.caller(&crate::store::key_hash(key))? {
        None => Err(ServiceError::new(
            ErrorCode::Unauthenticated,
            "this API key is unknown or revoked",
        )),
        Some(r) if r.status == PrincipalStatus::Suspended => Err(ServiceError::forbidden(format!(
            "`{}` is suspended (Art. 48); ask an administrator",
            r.principal.name
        ))),
        Some(r) => Ok(Caller(r)),
    }
}

/// Authenticates and checks the role of every call to a route that is not
/// public, from the route table, before the handler (and its body reader)
/// runs; the caller goes to the handler in the request's extensions.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| routes::find(request.method().as_str(), p.as_str()));
    // Only a method the route does not take is outside the table; the
    // router answers it 405 without running a handler.
    let Some(route) = route else {
        return next.run(request).await;
    };
    let Access::Roles(roles) = route.access else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let caller = match authenticate(&parts, &state) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !roles.contains(&caller.role()) {
        let allowed: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        return ServiceError::forbidden(format!(
            "{} {} is for {}; you are a {}",
            route.method.to_uppercase(),
            route.path,
            allowed.join(" or "),
            caller.role()
        ))
        .into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(c) => Ok(c.clone()),
            None => authenticate(parts, state),
        }
    }
}
