//! Who is calling: the principal behind the `Authorization: Bearer` key,
//! looked up on every request so revocation and suspension take effect on
//! the next one, and checked against the route table: every handler of a
//! route that is not public takes a [`Caller`], whose extraction runs
//! before any body is read (the route tests check that each such route
//! refuses a request without a key).

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use veil_policies::Role;

use super::routes::{self, Access};
use super::state::AppState;
use crate::service::ServiceError;
use crate::store::{PrincipalRecord, PrincipalStatus};
use crate::wire::ErrorCode;

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
    // The scheme is case-insensitive (RFC 9110 §11.1); the key is not.
    let Some(key) = header
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
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
        Some(r) => active(r).map(Caller),
    }
}

/// The principal, unless it is suspended: every front end (the API, the
/// console's sign-in) refuses a suspended principal with these words.
pub fn active(r: Arc<PrincipalRecord>) -> Result<Arc<PrincipalRecord>, ServiceError> {
    if r.status == PrincipalStatus::Suspended {
        return Err(ServiceError::forbidden(format!(
            "`{}` is suspended (Art. 48); ask an administrator",
            r.principal.name
        )));
    }
    Ok(r)
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ServiceError;

    /// Authenticates the caller and checks its role against the route
    /// table's entry for the matched route. axum runs this before the
    /// handler's body extractor (which must come last), so a caller who
    /// may not use an endpoint learns nothing of its body. A route outside
    /// the table, or a public one, has no callers: refused.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|p| routes::find(parts.method.as_str(), p.as_str()));
        let Some(route) = route else {
            return Err(ServiceError::forbidden(
                "this endpoint is not in the route table",
            ));
        };
        let Access::Roles(roles) = route.access else {
            return Err(ServiceError::forbidden(
                "this endpoint is public and takes no caller",
            ));
        };
        let caller = authenticate(parts, state)?;
        if !roles.contains(&caller.role()) {
            let allowed: Vec<&str> = roles.iter().map(|r| r.name()).collect();
            return Err(ServiceError::forbidden(format!(
                "{} {} is for {}; you are {}",
                route.method.to_uppercase(),
                route.path,
                allowed.join(" or "),
                caller.role().with_article()
            )));
        }
        Ok(caller)
    }
}
