//! The contract's error codes, and one error for every use case: a stable
//! code (contract.md) and a message for the caller. It sits below the
//! service, the wire format and the verification module, which all speak
//! it. Every lower error becomes one here, in one place; HTTP
//! turns it into a status (`http/error.rs`), the CLI into an exit code
//! (`src/cli/mod.rs`). An internal failure is logged with its cause and
//! says nothing: its message is fixed.

use serde_json::{Value, json};
use veil_engine::QueryError;
use veil_engine::model::ModelError;
use veil_engine::verification::VerifyError;
use veil_policies::requests::Refused;

use crate::store::StoreError;

/// A stable error code and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    InvalidSql,
    Unauthenticated,
    Forbidden,
    PolicyDenied,
    BudgetExhausted,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Internal,
    /// The service is at its connection or work limits: try again shortly.
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidSql,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::PolicyDenied,
        ErrorCode::BudgetExhausted,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidSql => "invalid_sql",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PolicyDenied => "policy_denied",
            ErrorCode::BudgetExhausted => "budget_exhausted",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidSql => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden | ErrorCode::PolicyDenied | ErrorCode::BudgetExhausted => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl ServiceError {
    /// The error as contract.md's JSON.
    pub fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(seconds) = self.retry_after {
            error["retry_after_seconds"] = json!(seconds);
        }
        json!({ "error": error })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    /// For `rate_limited`: seconds until trying again can succeed.
    pub retry_after: Option<u64>,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = if code == ErrorCode::Internal {
            "the service failed; the failure is logged and nothing was released".to_owned()
        } else {
            message.into()
        };
        ServiceError {
            code,
            message,
            retry_after: None,
        }
    }

    /// `rate_limited`, with the seconds after which a retry can succeed.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        ServiceError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PolicyDenied, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// A failure of ours: logged with its cause, answered without detail.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(ErrorCode::Internal, "")
    }

    /// The audit outcome of a refusal with this error.
    pub fn outcome(&self) -> String {
        format!("refused:{}", self.code.as_str())
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(p) => Self::bad_request(p.to_string()),
            StoreError::Conflict(m) => Self::conflict(m),
            StoreError::NotFound(m) => Self::not_found(m),
            StoreError::BudgetExhausted(m) => Self::new(ErrorCode::BudgetExhausted, m),
            other => Self::internal(other),
        }
    }
}

impl From<&QueryError> for ServiceError {
    fn from(e: &QueryError) -> Self {
        let code = match e {
            QueryError::InvalidSql(_) => ErrorCode::InvalidSql,
            QueryError::UnknownTable(_) => ErrorCode::NotFound,
            QueryError::Denied(_) => ErrorCode::PolicyDenied,
            QueryError::Limit(_) => ErrorCode::BadRequest,
            QueryError::Internal { detail } => return Self::internal(detail),
        };
        Self::new(code, e.to_string())
    }
}

impl From<QueryError> for ServiceError {
    fn from(e: QueryError) -> Self {
        Self::from(&e)
    }
}

impl From<ModelError> for ServiceError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid(m) => Self::bad_request(m),
            ModelError::NotFound(m) => Self::not_found(m),
            ModelError::Denied(m) => Self::denied(m),
            ModelError::Internal { detail } => Self::internal(detail),
        }
    }
}

impl From<&VerifyError> for ServiceError {
    fn from(e: &VerifyError) -> Self {
        let code = match e {
            VerifyError::BadRequest(_) => ErrorCode::BadRequest,
            VerifyError::NotFound(_) => ErrorCode::NotFound,
            VerifyError::Forbidden(_) => ErrorCode::Forbidden,
            VerifyError::Denied(_) => ErrorCode::PolicyDenied,
        };
        Self::new(code, e.to_string())
    }
}

impl From<Refused> for ServiceError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::NotAllowed(m) => Self::conflict(m),
            Refused::NotYours(m) => Self::forbidden(m),
            Refused::Incomplete(m) => Self::bad_request(m),
        }
    }
}

impl From<std::io::Error> for ServiceError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_error_has_one_code_and_internal_ones_say_nothing() {
        let cases = [
            (StoreError::Conflict("taken".into()), ErrorCode::Conflict),
            (StoreError::NotFound("gone".into()), ErrorCode::NotFound),
            (
                StoreError::BudgetExhausted("spent".into()),
                ErrorCode::BudgetExhausted,
            ),
            (
                StoreError::Io(std::io::Error::other("disk full at /secret/path")),
                ErrorCode::Internal,
            ),
            (
                StoreError::TooNew { found: 9, known: 7 },
                ErrorCode::Internal,
            ),
        ];
        for (store, code) in cases {
            let e = ServiceError::from(store);
            assert_eq!(e.code, code);
            if code == ErrorCode::Internal {
                assert!(
                    !e.message.contains("secret") && !e.message.contains('9'),
                    "{e}"
                );
            }
        }
        let e = ServiceError::from(&QueryError::Internal {
            detail: "the file /data/tax.parquet changed".into(),
        });
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("tax"), "{e}");
    }
}
