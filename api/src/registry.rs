//! Registering a dataset: read its manifest, check it against the active
//! policy and against the data file, and store it as the next version.

use std::path::Path;

use veil_policies::{DatasetManifest, Problem, Problems};

use crate::store::{RegisteredDataset, Store, StoreError};

/// The outcome of a registration.
#[derive(Debug)]
pub struct Registration {
    pub dataset: RegisteredDataset,
    /// False when the same manifest over the same file was registered before.
    pub changed: bool,
}

/// Registers the dataset described by the manifest at `manifest_path`. The
/// data file is the one the manifest names next to itself, or `file` when the
/// operator gives one explicitly.
pub fn register(
    store: &mut Store,
    manifest_path: &Path,
    file: Option<&Path>,
    by: &str,
) -> Result<Registration, StoreError> {
    let text = std::fs::read_to_string(manifest_path).map_err(|e| {
        StoreError::Invalid(Problems(vec![Problem::new(
            "manifest",
            format!("cannot be read: {}", e.kind()),
        )]))
    })?;
    let policy = store
        .active_policy()?
        .ok_or_else(|| StoreError::NotFound("no policy is loaded".into()))?
        .policy;
    let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some())?;
    let dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let source = veil_engine::source::check_source(&manifest, dir, file)?;
    let (dataset, changed) = store.register_dataset(&text, &manifest, &source, by)?;
    // The registration stands whatever happens here: a missing index is
    // built again when the service loads.
    if let Err(e) = crate::indexes::build_indexes(store, Some(&dataset.manifest.name)) {
        tracing::warn!(dataset = %dataset.manifest.name, error = %e, "the subject indexes could not be built");
    }
    Ok(Registration { dataset, changed })
}
