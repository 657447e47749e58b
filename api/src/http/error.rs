//! One error type for every handler: 4xx explain themselves with a stable
//! code; 5xx say nothing and are logged.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;
use crate::wire::{ApiError, ErrorCode};

#[derive(Debug)]
pub struct ApiFailure(pub ApiError);

impl ApiFailure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiFailure(ApiError::new(code, message))
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
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.to_json())).into_response()
    }
}

impl From<ApiError> for ApiFailure {
    fn from(e: ApiError) -> Self {
        ApiFailure(e)
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(p) => Self::bad_request(p.to_string()),
            StoreError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            StoreError::NotFound(m) => Self::not_found(m),
            StoreError::BudgetExhausted(m) => Self::new(ErrorCode::BudgetExhausted, m),
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiFailure {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            }
            JsonRejection::MissingJsonContentType(_) => {
                Self::bad_request("send the body as JSON with `Content-Type: application/json`")
            }
            other => Self::bad_request(format!(
                "the body is not the JSON this endpoint takes: {}",
                other.body_text()
            )),
        }
    }
}

impl From<PathRejection> for ApiFailure {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<QueryRejection> for ApiFailure {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}
