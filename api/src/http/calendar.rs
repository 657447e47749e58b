//! `GET /v1/calendar/deadline`: the working-day arithmetic every workflow
//! deadline uses, for callers that plan around it.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde_json::json;
use veil_policies::calendar;

use super::auth::Caller;
use super::state::AppState;
use crate::service::ServiceError;
use crate::wire::query::DeadlineQuery;

/// The `days`-th working day after `from`, and the years the count had to
/// assume Monday to Friday for.
pub async fn deadline(
    State(_): State<Arc<AppState>>,
    _caller: Caller,
    query: Result<Query<DeadlineQuery>, QueryRejection>,
) -> Result<Response, ServiceError> {
    let Query(q) = query?;
    let from = NaiveDate::parse_from_str(&q.from, "%Y-%m-%d")
        .map_err(|_| ServiceError::bad_request("`from` must be a date as YYYY-MM-DD"))?;
    if q.days > 3660 {
        return Err(ServiceError::bad_request("`days` must be at most 3660"));
    }
    let d = calendar::add_working_days(from, q.days);
    let published: Vec<i32> = calendar::covered_years().collect();
    let note = if d.assumed_years.is_empty() {
        "counted on the State Council's published arrangements".to_owned()
    } else {
        format!(
            "no published arrangement for {}: Monday to Friday assumed there",
            d.assumed_years
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(Json(json!({
        "from": from.to_string(),
        "working_days": q.days,
        "deadline": d.date.to_string(),
        "assumed_years": d.assumed_years,
        "published_years": published,
        "note": note,
    }))
    .into_response())
}
