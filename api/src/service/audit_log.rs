//! Reading the audit log (Art. 30, 43): the configured data authority sees
//! every entry; an approver of a providing institution sees the entries
//! that touched the datasets it provides, with the text of requests other
//! institutions made withheld. And checking the log's hash chain and
//! signed checkpoints.

use veil_policies::{Principal, Role};

use super::{Service, ServiceError};
use crate::store::AuditFilter;
use crate::wire::admin::{AuditEntryView, AuditPage, AuditQuery, ChainView};

/// What a provider reads instead of another institution's request text.
pub const WITHHELD: &str = "(withheld: a request made by another institution)";

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
        // Times are compared as the log writes them (UTC, milliseconds), so
        // one given with an offset is converted, and one that is not a time
        // is refused rather than matching everything or nothing.
        let since = query
            .since
            .as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t.trim())
                    .map(|t| crate::store::time_text(t.with_timezone(&chrono::Utc)))
                    .map_err(|_| {
                        ServiceError::bad_request(
                            "since: not an RFC 3339 time, such as 2026-12-01T08:00:00+08:00",
                        )
                    })
            })
            .transpose()?;
        let store = self.reader()?;
        let org = caller.org.clone().unwrap_or_default();
        let authority = super::requests::is_authority(&store, caller)?;
        let provided: Vec<String> = store
            .datasets()?
            .into_iter()
            .filter(|d| !org.is_empty() && d.manifest.institutions.providing == org)
            .map(|d| d.manifest.name)
            .collect();
        let filter = AuditFilter {
            principal: query.principal.as_deref(),
            dataset: query.dataset.as_deref(),
            since: since.as_deref(),
            outcome: query.outcome.as_deref(),
            limit: query.limit.unwrap_or(100),
            // A provider's page is made of its own entries: the limit
            // counts nothing else.
            within: (!authority).then_some(provided.as_slice()),
        };
        let records = store.search_audit(&filter)?;
        if authority {
            return Ok(AuditPage {
                entries: records.into_iter().map(Into::into).collect(),
                scope: "all",
            });
        }
        // A provider sees how its own data was used (Art. 30): the entries
        // that touched its datasets, and the text of a request only when
        // its own institution made it. Another institution's query may
        // carry identifiers typed into it.
        let orgs: std::collections::HashMap<String, Option<String>> = store
            .principals()?
            .into_iter()
            .map(|r| (r.principal.name, r.principal.org))
            .collect();
        let entries = records
            .into_iter()
            .filter(|r| r.entry.datasets.iter().any(|d| provided.contains(d)))
            .map(|r| {
                let own = orgs
                    .get(&r.entry.principal)
                    .is_some_and(|o| o.as_deref() == Some(org.as_str()));
                let mut view = AuditEntryView::from(r);
                if !own {
                    // What another institution asked, why, of which other
                    // data and with what budget left is its own.
                    view.request = WITHHELD.to_owned();
                    view.purpose = WITHHELD.to_owned();
                    view.privacy = serde_json::Value::Null;
                    view.fields.retain(|f| {
                        f.split_once('.')
                            .is_some_and(|(d, _)| provided.iter().any(|p| p == d))
                    });
                    view.datasets.retain(|d| provided.contains(d));
                }
                view
            })
            .collect();
        Ok(AuditPage {
            entries,
            scope: "datasets your institution provides",
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
