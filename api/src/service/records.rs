//! A subject's own records (Art. 24): every record about the principal's
//! own identifier, with what is withheld and why, audited.

use chrono::Utc;
use serde_json::Value;
use veil_engine::Engine;
use veil_policies::{Principal, Role};

use super::{Service, ServiceError};
use crate::store::AuditEntry;
use crate::wire;

impl Service {
    /// The records about `caller`, a subject principal; refusals audited.
    pub async fn own_records(
        &self,
        caller: &Principal,
        endpoint: &str,
    ) -> Result<Value, ServiceError> {
        match own_records(&self.engine(), caller, endpoint).await {
            Ok((mut json, entry)) => {
                let seq = self.audit(entry).await?;
                json["audit_seq"] = serde_json::json!(seq);
                Ok(json)
            }
            Err(e) => {
                let entry = AuditEntry {
                    principal: caller.name.clone(),
                    role: caller.role.name().to_owned(),
                    endpoint: endpoint.to_owned(),
                    request: "own records".into(),
                    privacy: "{}".into(),
                    ..AuditEntry::default()
                };
                Err(self.refuse(entry, e).await)
            }
        }
    }
}

/// The records about a subject principal (Art. 24) as JSON, and the audit
/// entry that records the access. Only the principal's own identifier is
/// ever looked up.
async fn own_records(
    engine: &Engine,
    principal: &Principal,
    endpoint: &str,
) -> Result<(Value, AuditEntry), ServiceError> {
    if principal.role != Role::Subject {
        return Err(ServiceError::forbidden(format!(
            "own records are for subject principals; you are {}",
            principal.role.with_article()
        )));
    }
    let Some(subject) = principal.subject.as_deref() else {
        return Err(ServiceError::forbidden(
            "this principal stands for no subject",
        ));
    };
    let records = engine.records_of(subject).await?;
    let now = Utc::now();
    let mut datasets = Vec::new();
    let mut total = 0u64;
    let json_records: Vec<Value> = records
        .iter()
        .map(|r| {
            datasets.push(r.dataset.clone());
            let rows: Vec<Value> = r.answer.batches.iter().flat_map(wire::rows).collect();
            total += rows.len() as u64;
            serde_json::json!({
                "dataset": r.dataset,
                "provider": r.provider,
                "version": r.version,
                "columns": wire::columns(&r.answer.schema),
                "rows": rows,
                "withheld": r.withheld,
            })
        })
        .collect();
    let entry = AuditEntry {
        principal: principal.name.clone(),
        role: principal.role.name().to_owned(),
        endpoint: endpoint.to_owned(),
        request: "own records".into(),
        datasets,
        rows: Some(total),
        privacy: serde_json::json!({"mode": "own_records"}).to_string(),
        outcome: "ok".into(),
        ..AuditEntry::default()
    };
    let json = serde_json::json!({
        "records": json_records,
        "retrieved_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "policy_version": engine.policy_version(),
    });
    Ok((json, entry))
}
