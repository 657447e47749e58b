//! The service's shared parts: an engine built from the store, and one
//! query run as a principal, the same for the CLI and the HTTP API.

use chrono::Utc;
use serde_json::Value;
use veil_engine::{Dataset, Engine, QueryRequest};
use veil_policies::Role;

use crate::store::{PrincipalStatus, Store, StoreError};
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

/// Runs one query as the named principal and returns the answer JSON.
pub async fn query_as(
    store: &Store,
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
    let request = QueryRequest {
        principal: &record.principal,
        purpose,
        sql,
        now: Utc::now(),
    };
    let prepared = engine.prepare(&request).map_err(|e| ApiError::from(&e))?;
    let answer = engine.run(&prepared).await.map_err(|e| {
        if let veil_engine::QueryError::Internal { detail } = &e {
            tracing::error!(principal = name, detail = %detail, "query failed while running");
        }
        ApiError::from(&e)
    })?;
    Ok(wire::answer(&prepared, &answer.schema, &answer.batches))
}
