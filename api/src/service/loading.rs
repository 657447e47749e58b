//! Loading the engine from the store: the active policy, the datasets whose
//! files are unchanged since registration, and the access states that block
//! some of them.

use veil_engine::{Dataset, Engine};

use crate::error::ServiceError;
use crate::store::{PrincipalRecord, PrincipalStatus, Store, StoreError};

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
    let access: std::collections::HashMap<String, String> =
        store.dataset_access()?.into_iter().collect();
    for d in store.datasets()? {
        if let Some(state) = access.get(&d.manifest.name) {
            engine.block(&d.manifest.name, access_reason(&d.manifest.name, state));
            continue;
        }
        let same_size = std::fs::metadata(&d.data_path).is_ok_and(|m| m.len() == d.file_size);
        if !same_size {
            skipped.push((
                d.manifest.name.clone(),
                "its data file changed or vanished since registration; register it again".into(),
            ));
            continue;
        }
        match Dataset::open(d.manifest.clone(), d.version, &d.data_path) {
            Ok(dataset) => engine.add_dataset(dataset.with_unique_units(d.unique_units)),
            Err(e) => skipped.push((d.manifest.name.clone(), e.to_string())),
        }
    }
    Ok(Loaded { engine, skipped })
}

/// Why a dataset in an access state may not be used, for refusals.
pub fn access_reason(dataset: &str, state: &str) -> String {
    match state {
        "suspended" => format!(
            "the opening of `{dataset}` is suspended while a complaint about it is handled (Art. 36)"
        ),
        "opening_withdrawn" => {
            format!("`{dataset}` was withdrawn from opening after a complaint (Art. 36)")
        }
        "sealed" => format!(
            "`{dataset}` is sealed: data collected in an emergency is not accessible (Art. 23)"
        ),
        "destroyed" => format!("`{dataset}` was destroyed (Art. 23)"),
        other => format!("`{dataset}` is {other}"),
    }
}

/// The named principal, when it exists and is not suspended.
pub fn active_principal(store: &Store, name: &str) -> Result<PrincipalRecord, ServiceError> {
    let record = store
        .principal(name)?
        .ok_or_else(|| ServiceError::not_found(format!("no principal named `{name}`")))?;
    if record.status != PrincipalStatus::Active {
        return Err(ServiceError::forbidden(format!("`{name}` is suspended")));
    }
    Ok(record)
}
