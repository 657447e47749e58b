//! The active policy, its history, and changing it: a new text is checked
//! as `veil policy check` checks it and, when sound, becomes the next
//! version; the engine follows before the answer leaves.

use veil_policies::{Principal, Role};

use super::{Audited, Service, ServiceError};
use crate::wire::admin::{PolicyLoaded, PolicyVersions, PolicyView};

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

    /// Makes `text` the active policy, as `caller`.
    pub fn change_policy(
        &self,
        caller: &Principal,
        text: &str,
        endpoint: &str,
    ) -> Audited<PolicyLoaded> {
        let result = self.change_policy_now(caller, text);
        let request = match &result {
            Ok(loaded) => format!("load policy {}", loaded.label),
            Err(_) => "load policy".to_owned(),
        };
        Audited::action(caller, endpoint, request, vec![], result)
    }

    fn change_policy_now(
        &self,
        caller: &Principal,
        text: &str,
    ) -> Result<PolicyLoaded, ServiceError> {
        if !matches!(caller.role, Role::Approver | Role::Admin) {
            return Err(ServiceError::forbidden(
                "only an approver changes the policy",
            ));
        }
        let active = self.store().load_policy(text, &caller.name)?;
        self.reload_engine()?;
        Ok(PolicyLoaded {
            version: active.version,
            label: active.label(),
        })
    }
}
