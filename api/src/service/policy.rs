//! The active policy, its history, and proposing a change: a new text is
//! checked as `veil policy check` checks it and becomes a `policy_change`
//! request; a second approver of the data authority makes it the next
//! version (`requests.rs`), and the engine follows before that answer
//! leaves.

use serde_json::Value;
use veil_policies::Principal;

use super::{Audited, Service, ServiceError};
use crate::wire::admin::{PolicyVersions, PolicyView};
use crate::wire::requests::OpenBody;

impl Service {
    /// The active policy and its text.
    pub fn policy(&self) -> Result<PolicyView, ServiceError> {
        let store = self.reader()?;
        let active = store
            .active_policy()?
            .ok_or_else(|| ServiceError::not_found("no policy is loaded"))?;
        let text = store.active_policy_text()?.unwrap_or_default();
        Ok(PolicyView {
            version: active.version,
            label: active.label(),
            name: active.policy.name,
            text,
        })
    }

    /// Every policy version, oldest first.
    pub fn policy_versions(&self) -> Result<PolicyVersions, ServiceError> {
        let versions = self.reader()?.policy_versions()?;
        Ok(PolicyVersions {
            versions: versions.into_iter().map(Into::into).collect(),
        })
    }

    /// Proposes `text` as the next policy, as `caller`: an approver of the
    /// data authority opens a `policy_change` request, checked as loading
    /// it would be; it becomes active when a second approver of the
    /// authority approves it (Art. 11).
    pub fn propose_policy(&self, caller: &Principal, text: &str, endpoint: &str) -> Audited<Value> {
        let body = OpenBody {
            kind: "policy_change".to_owned(),
            dataset: None,
            purpose: None,
            fields: None,
            days: None,
            detail: [("text".to_owned(), text.to_owned())].into(),
            via_authority: false,
        };
        self.open_request(caller, &body, endpoint)
    }
}

impl Service {
    /// The text of policy version `version`.
    pub fn policy_text(&self, version: i64) -> Result<String, ServiceError> {
        self.reader()?
            .policy_text(version)?
            .ok_or_else(|| ServiceError::not_found("no policy version has this number"))
    }

    /// What `veil policy check` finds wrong with `text` against the
    /// registered datasets: every problem, empty when there is none.
    /// Reads the datasets that products name: run it off the async workers.
    pub fn check_policy(&self, text: &str) -> Result<Vec<veil_policies::Problem>, ServiceError> {
        match self.reader()?.check_policy(text) {
            Ok(_) => Ok(Vec::new()),
            Err(crate::store::StoreError::Invalid(problems)) => Ok(problems.0),
            Err(e) => Err(e.into()),
        }
    }
}
