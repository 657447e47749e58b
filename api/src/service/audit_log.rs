//! Reading the audit log (Art. 30, 43): the configured data authority sees
//! every entry; an approver of a providing institution sees the entries
//! that touched the datasets it provides, with the text of requests other
//! institutions made withheld. And checking the log's hash chain and
//! signed checkpoints.

use veil_policies::{Principal, Role};

use super::{Service, ServiceError};
use crate::store::AuditFilter;
use crate::wire::admin::{AuditEntryView, AuditPage, AuditQuery, ChainView};

/// The datasets `caller`'s institution provides.
pub(super) fn provided_by(
    store: &crate::store::Store,
    caller: &Principal,
) -> Result<Vec<String>, ServiceError> {
    let org = caller.org.as_deref().unwrap_or_default();
    Ok(store
        .datasets()?
        .into_iter()
        .filter(|d| !org.is_empty() && d.manifest.institutions.providing == org)
        .map(|d| d.manifest.name)
        .collect())
}

/// A time bound of a search as the log writes times (UTC, milliseconds),
/// so one given with an offset is converted; one that is not a time is
/// refused rather than matching everything or nothing.
fn log_time(name: &str, text: &str) -> Result<String, ServiceError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| crate::store::time_text(t.with_timezone(&chrono::Utc)))
        .map_err(|_| {
            ServiceError::bad_request(format!(
                "{name}: not an RFC 3339 time, such as 2026-12-01T08:00:00+08:00"
            ))
        })
}

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
        let since = query
            .since
            .as_deref()
            .map(|t| log_time("since", t))
            .transpose()?;
        let until = query
            .until
            .as_deref()
            .map(|t| log_time("until", t))
            .transpose()?;
        let store = self.reader()?;
        let org = caller.org.clone().unwrap_or_default();
        let authority = super::requests::is_authority(&store, caller)?;
        let provided = provided_by(&store, caller)?;
        // A provider filters only within its own datasets: a filter on
        // another institution's dataset would tell which of the entries it
        // sees also touched that one.
        if !authority
            && let Some(d) = query.dataset.as_deref()
            && !provided.iter().any(|p| p == d)
        {
            return Ok(AuditPage {
                entries: Vec::new(),
                scope: "datasets your institution provides",
            });
        }
        let filter = AuditFilter {
            principal: query.principal.as_deref(),
            dataset: query.dataset.as_deref(),
            since: since.as_deref(),
            outcome: query.outcome.as_deref(),
            limit: query.limit.unwrap_or(100),
            // A provider's page is made of its own entries: the limit
            // counts nothing else.
            within: (!authority).then_some(provided.as_slice()),
            endpoint: query.endpoint.as_deref().filter(|e| !e.is_empty()),
            until: until.as_deref(),
            before: query.before,
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
                    // The rows of an answer that also read other data
                    // count that data too.
                    if view.datasets.iter().any(|d| !provided.contains(d)) {
                        view.rows = None;
                    }
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

    /// The last signed checkpoint of the audit log: the entry it signs and
    /// when it was signed.
    pub fn last_audit_checkpoint(&self) -> Result<Option<(i64, String)>, ServiceError> {
        Ok(self.reader()?.last_checkpoint()?)
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
