//! The JSON body extractor every endpoint uses: the body limit answers 413,
//! a body that is not JSON of the endpoint's shape answers 400 through
//! [`crate::wire::body::read_json`], which never echoes a value.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;

use crate::service::ServiceError;
use crate::wire::body::read_json;

pub struct JsonBody<T>(pub T);

/// A body that may be left out: without a `Content-Type` the default.
pub struct OptionalJsonBody<T>(pub T);

fn is_json(request: &Request) -> Option<bool> {
    let value = request.headers().get(header::CONTENT_TYPE)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json")),
    )
}

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ServiceError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if is_json(&request).is_none() {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(body) = JsonBody::from_request(request, state).await?;
        Ok(OptionalJsonBody(body))
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ServiceError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if is_json(&request) != Some(true) {
            return Err(ServiceError::bad_request(
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ServiceError::new(
                    crate::wire::ErrorCode::PayloadTooLarge,
                    "the request body is too large",
                )
            } else {
                ServiceError::bad_request("the request body could not be read")
            }
        })?;
        read_json(&bytes).map(JsonBody)
    }
}
