//! The body of `POST /v1/query`, the query of `GET /v1/budget` and of
//! `GET /v1/calendar/deadline`. The
//! answers themselves stream (JSON, CSV or Arrow) and are written by
//! [`super::answer`] and the HTTP answer writer.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/query`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    pub sql: String,
    #[serde(default)]
    pub purpose: Option<String>,
    /// Asks for a differentially private answer that alone is ε-DP.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// L0: groups one privacy unit may contribute to (default 1).
    #[serde(default)]
    pub max_groups: Option<u64>,
    /// Linf: rows one privacy unit may contribute to a group (default 1).
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Return the cost and the expected error without running or spending.
    #[serde(default)]
    pub dry_run: bool,
}

/// `GET /v1/budget`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BudgetQuery {
    pub purpose: Option<String>,
}

/// `GET /v1/calendar/deadline`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadlineQuery {
    /// The day the count starts from, YYYY-MM-DD.
    pub from: String,
    /// Working days to count, at most 3660.
    pub days: u32,
}
