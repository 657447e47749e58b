//! The one place a [`ServiceError`] becomes an HTTP response: its code's
//! status and contract.md's JSON. Rejections of axum's extractors become
//! service errors here too; their text never carries a value sent.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::ServiceError;

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.to_json())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<PathRejection> for ServiceError {
    fn from(_: PathRejection) -> Self {
        ServiceError::bad_request("a path parameter is not of the kind this endpoint takes")
    }
}

impl From<QueryRejection> for ServiceError {
    fn from(e: QueryRejection) -> Self {
        // serde_urlencoded names the field it could not read, never the
        // value; an unknown parameter is named by the caller, so not repeated.
        let text = e.body_text();
        let what = if text.contains("unknown field") {
            "a query parameter this endpoint does not take".to_owned()
        } else if let Some(missing) = text.split("missing field ").nth(1) {
            format!("the query parameter {missing} is required")
        } else {
            "a query parameter has the wrong type".to_owned()
        };
        ServiceError::bad_request(format!(
            "the query string is not what this endpoint takes: {what}"
        ))
    }
}
