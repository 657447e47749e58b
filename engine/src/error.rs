//! What can go wrong with a query, by who is at fault. Messages of refusals
//! name fields and rules, never values; execution failures carry no detail
//! out of the engine at all (a message could echo a protected value).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The SQL is not a single read-only SELECT, or does not plan.
    #[error("{0}")]
    InvalidSql(String),
    /// The SQL names a table that is not in the catalog (or not visible).
    #[error("{0}")]
    UnknownTable(String),
    /// The policy stage refused the query.
    #[error("{0}")]
    Denied(Refusal),
    /// The query went past a limit one query has (its memory, its time):
    /// the message names the limit and nothing of the data.
    #[error("{0}")]
    Limit(String),
    /// Execution failed. `detail` is for the service's log only: it may
    /// echo a value, so it never reaches a caller.
    #[error("the query failed while running; nothing was released")]
    Internal { detail: String },
}

/// A policy refusal: the field (as `dataset.field`) and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: Option<String>,
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) fn deny(
    field: Option<String>,
    rule: &'static str,
    message: impl Into<String>,
) -> QueryError {
    QueryError::Denied(Refusal {
        field,
        rule,
        message: message.into(),
    })
}

pub(crate) fn invalid(message: impl Into<String>) -> QueryError {
    QueryError::InvalidSql(message.into())
}
