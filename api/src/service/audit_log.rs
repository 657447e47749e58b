//! Reading the audit log (Art. 30, 43): the data authority sees every
//! entry; an approver of a providing institution sees the entries that
//! touched the datasets it provides. And checking the log's hash chain and
//! signed checkpoints.

use veil_policies::{Principal, Role};

use super::{Service, ServiceError};
use crate::store::AuditFilter;
use crate::wire::admin::{AuditPage, AuditQuery, ChainView};

impl Service {
    /// The entries `query` selects that `caller` may read.
    pub fn search_audit(
        &self,
        caller: &Principal,
        query: &AuditQuery,
    ) -> Result<AuditPage, ServiceError> {
        if caller.role != Role::Approver {
            return Err(ServiceError::forbidden(
                "only an approver reads the audit log",
            ));
        }
        let engine = self.engine();
        let org = caller.org.clone().unwrap_or_default();
        let authority = engine
            .datasets()
            .any(|d| d.manifest.institutions.approving == org);
        let provided: Vec<String> = engine
            .datasets()
            .filter(|d| d.manifest.institutions.providing == org)
            .map(|d| d.manifest.name.clone())
            .collect();
        let filter = AuditFilter {
            principal: query.principal.as_deref(),
            dataset: query.dataset.as_deref(),
            since: query.since.as_deref(),
            outcome: query.outcome.as_deref(),
            limit: query.limit.unwrap_or(100),
        };
        let records = self.reader()?.search_audit(&filter)?;
        let entries = records
            .into_iter()
            .filter(|r| authority || r.entry.datasets.iter().any(|d| provided.contains(d)))
            .map(Into::into)
            .collect();
        Ok(AuditPage {
            entries,
            scope: if authority {
                "all"
            } else {
                "datasets your institution provides"
            },
        })
    }

    /// Whether the audit chain is intact, checked with the public key.
    pub fn check_audit_chain(&self) -> Result<ChainView, ServiceError> {
        let store = self.reader()?;
        let public = store
            .data_dir()
            .public_key()
            .map_err(ServiceError::internal)?;
        Ok(store.verify_audit(&public)?.into())
    }
}
