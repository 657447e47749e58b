//! The bodies of `POST /v1/requests` and `POST /v1/requests/{id}/{action}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

/// A request as a caller opens it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    #[schema(
        pattern = "^(sharing|open_data|correction|complaint|emergency_data|catalog_change|qualification|policy_change)$"
    )]
    pub kind: String,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Days a grant lasts, at most the shortest grant length of the
    /// fields' grades (the answer says what was granted).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3660)]
    pub days: Option<u32>,
    /// What the applicant writes: the record and the correction, the
    /// complaint, the manifest of a catalog change, the organisation.
    #[serde(default)]
    pub detail: BTreeMap<String, String>,
    /// A correction filed with the data authority (forwarded in 2 days).
    #[serde(default)]
    pub via_authority: bool,
}

/// A step's body: what it records (`legal_basis`, `answer`, `agreement`, ...).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}
