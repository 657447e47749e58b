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
    #[schema(min_length = 1)]
    pub sql: String,
    #[serde(default)]
    pub purpose: Option<String>,
    /// Asks for a differentially private answer that alone is ε-DP.
    #[serde(default)]
    #[schema(minimum = 0.001, maximum = 100.0)]
    pub epsilon: Option<f64>,
    /// L0: groups one privacy unit may contribute to (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_groups: Option<u64>,
    /// Linf: rows one privacy unit may contribute to a group (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_rows: Option<u64>,
    /// Return the cost and the expected error without running or spending.
    #[serde(default)]
    pub dry_run: bool,
    /// With `dry_run`: a 95% half-width to reach; each noisy column then
    /// says the smallest ε that reaches it (`epsilon_for_target`).
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0)]
    pub target_ci95: Option<f64>,
    /// `auto`: estimate every aggregate's clamping bounds under DP from a
    /// share of ε, declared ones too (aggregates of numbers without
    /// declared bounds always are); `declared` (the default) otherwise.
    #[serde(default)]
    pub bounds: Option<Bounds>,
    /// Give each noisy cell a 95% interval: columns `{column}_ci95_lo` and
    /// `{column}_ci95_hi` after each aggregate the answer passes on.
    #[serde(default)]
    pub intervals: bool,
}

/// Where a DP answer's clamping bounds come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bounds {
    Declared,
    Auto,
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
    #[param(format = Date)]
    pub from: String,
    /// Working days to count, at most 3660.
    #[param(maximum = 3660)]
    pub days: u32,
}

/// `POST /v1/verify`'s body as the document states it. The service reads
/// the body by hand (`verification::VerifyBody`), so that no parser message
/// can repeat a value; this type only describes it. One `subject` with its
/// `claims`, or `items`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifyBodyDoc {
    #[schema(min_length = 1)]
    pub product: String,
    pub purpose: Option<String>,
    pub subject: Option<String>,
    /// Claim name to claimed value.
    #[schema(value_type = Option<Object>)]
    pub claims: Option<serde_json::Value>,
    /// Up to 10,000 subjects with their claims.
    #[schema(max_items = 10000)]
    pub items: Option<Vec<VerifyItemDoc>>,
}

/// One subject of a batch and its claims.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifyItemDoc {
    pub subject: String,
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
}
