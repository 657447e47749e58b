//! Where an answer's data came from (Art. 40): shared by queries, models
//! and verification, so none of them depends on another for it.

use chrono::{DateTime, Utc};

/// Where an answer's data came from and the catalog versions used.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub datasets: Vec<String>,
    pub providers: Vec<String>,
    pub versions: Vec<(String, i64)>,
    pub retrieved_at: DateTime<Utc>,
}
