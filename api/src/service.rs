//! The service's shared parts: an engine built from the store, and one
//! query run as a principal, the same for the CLI and the HTTP API.

use chrono::Utc;
use serde_json::Value;
use veil_engine::{Dataset, Engine, QueryRequest};
use veil_policies::Role;

use crate::store::{AuditEntry, PrincipalStatus, Store, StoreError};
use crate::wire::{self, ApiError, ErrorCode};

/// An engine over the store's active policy and current datasets.
pub struct Loaded {
    pub engine: Engine,
    /// Datasets that could not be opened, with the reason. They are left
    /// out: a file that changed since registration is not trusted.
    pub skipped: Vec<(String, String)>,
}

pub fn load_engine(store: &Store) -> Result<Loaded, StoreError> {
    let active = store
        .active_policy()?
        .ok_or_else(|| StoreError::NotFound("no policy is loaded".into()))?;
    let master = store.data_dir().master_key()?;
    let mut engine = Engine::new(active.policy.clone(), active.label(), master);
    let mut skipped = Vec::new();
    for d in store.datasets()? {
        let same_size = std::fs::metadata(&d.data_path).is_ok_and(|m| m.len() == d.file_size);
        if !same_size {
            skipped.push((
                d.manifest.name.clone(),
                "its data file changed or vanished since registration; register it again".into(),
            ));
            continue;
        }
        match Dataset::open(d.manifest.clone(), d.version, &d.data_path) {
            Ok(dataset) => engine.add_dataset(dataset),
            Err(e) => skipped.push((d.manifest.name.clone(), e.to_string())),
        }
    }
    Ok(Loaded { engine, skipped })
}

/// Runs one query as the named principal and returns the answer JSON; the
/// query is audited like an HTTP one (refusals included) before the answer
/// is returned.
pub async fn query_as(
    store: &mut Store,
    engine: &Engine,
    name: &str,
    sql: &str,
    purpose: Option<&str>,
) -> Result<Value, ApiError> {
    let record = store
        .principal(name)
        .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no principal named `{name}`"))
        })?;
    if record.status != PrincipalStatus::Active {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("`{name}` is suspended"),
        ));
    }
    if !matches!(record.principal.role, Role::Consumer | Role::Modeler) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "queries are for consumers and modelers; `{name}` is a {}",
                record.principal.role
            ),
        ));
    }
    let signer = store
        .data_dir()
        .signer()
        .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?;
    let mut entry = AuditEntry {
        principal: name.to_owned(),
        role: record.principal.role.name().to_owned(),
        purpose: purpose.unwrap_or_default().to_owned(),
        endpoint: "veil query".into(),
        request: sql.to_owned(),
        privacy: "{}".into(),
        ..AuditEntry::default()
    };
    let request = QueryRequest {
        principal: &record.principal,
        purpose,
        sql,
        now: Utc::now(),
    };
    let outcome = match engine.prepare(&request) {
        Ok(prepared) => engine.run(&prepared).await.map(|answer| (prepared, answer)),
        Err(e) => Err(e),
    };
    let (prepared, answer) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            if let veil_engine::QueryError::Internal { detail } = &e {
                tracing::error!(principal = name, detail = %detail, "query failed while running");
            }
            let failure = ApiError::from(&e);
            entry.outcome = format!("refused:{}", failure.code.as_str());
            store
                .append_audit(&[entry], &signer)
                .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?;
            return Err(failure);
        }
    };
    let mut json = wire::answer(&prepared, &answer.schema, &answer.batches);
    entry.datasets = prepared.provenance.datasets.clone();
    entry.fields = prepared.fields.clone();
    entry.rows = Some(answer.batches.iter().map(|b| b.num_rows() as u64).sum());
    entry.privacy = json["privacy"].to_string();
    entry.outcome = "completed".into();
    let seq = store
        .append_audit(&[entry], &signer)
        .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?;
    json["audit_seq"] = serde_json::json!(seq.first());
    Ok(json)
}
