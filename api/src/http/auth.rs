//! Who is calling: the principal behind the `Authorization: Bearer` key,
//! looked up on every request so revocation and suspension take effect on
//! the next one.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use veil_policies::Role;

use super::error::ApiFailure;
use super::state::AppState;
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

    /// Refuses callers whose role is not among `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiFailure> {
        if roles.contains(&self.role()) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        Err(ApiFailure::forbidden(format!(
            "{what} is for {}; you are a {}",
            allowed.join(" or "),
            self.role()
        )))
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(key) = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Err(ApiFailure::new(
                ErrorCode::Unauthenticated,
                "send your API key as `Authorization: Bearer <key>`",
            ));
        };
        let record = state.caller(&crate::store::key_hash(key))?;
        match record {
            None => Err(ApiFailure::new(
                ErrorCode::Unauthenticated,
                "this API key is unknown or revoked",
            )),
            Some(r) if r.status == PrincipalStatus::Suspended => {
                Err(ApiFailure::forbidden(format!(
                    "`{}` is suspended (Art. 48); ask an administrator",
                    r.principal.name
                )))
            }
            Some(r) => Ok(Caller(r)),
        }
    }
}
