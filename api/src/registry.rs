//! Registering a dataset: read its manifest, check it against the active
//! policy and against the data file, and store it as the next version.

use std::path::Path;

use veil_policies::catalog::FieldSpec;
use veil_policies::{DatasetManifest, Problem, Problems};

use crate::store::{RegisteredDataset, Store, StoreError};

/// The outcome of a registration.
#[derive(Debug)]
pub struct Registration {
    pub dataset: RegisteredDataset,
    /// False when the same manifest over the same file was registered before.
    pub changed: bool,
}

/// A manifest names the deployment's configured data authority as its
/// approving institution: the authority is configuration, never taken from
/// a manifest, so registering one cannot make anyone the authority. A
/// data directory without a configured authority has none: nobody holds
/// the authority's powers there, and the operator's own registrations
/// (`veil datasets register`) are not checked against one.
pub fn check_authority(store: &Store, manifest: &DatasetManifest) -> Result<(), StoreError> {
    let Some(authority) = store.authority()? else {
        return Ok(());
    };
    if manifest.institutions.approving != authority {
        return Err(StoreError::Invalid(Problems(vec![Problem::new(
            "dataset.approving_institution",
            format!(
                "must be this deployment's data authority, `{authority}`: the authority is set when the data directory is created (`veil init`), not by a manifest"
            ),
        )])));
    }
    Ok(())
}

/// A data file is one institution's: a manifest may not describe a file
/// (the same path, or the same bytes elsewhere) that another institution's
/// registered dataset is made of, so no one republishes another's data
/// under its own name and grades.
fn check_file_owner(
    store: &Store,
    manifest: &DatasetManifest,
    source: &veil_engine::source::CheckedSource,
) -> Result<(), StoreError> {
    let taken = store.datasets()?.into_iter().any(|d| {
        d.manifest.institutions.providing != manifest.institutions.providing
            && (d.data_path == source.path || d.file_sha256 == source.sha256)
    });
    if taken {
        return Err(StoreError::Invalid(Problems(vec![Problem::new(
            "dataset.path",
            "this file is a dataset another institution provides: an institution registers only its own data",
        )])));
    }
    Ok(())
}

/// What a new version changes that the data authority reviews (Art. 12,
/// 13): a field's grade, category or presence, and the share and open
/// attributes and conditions. Empty when nothing reviewable changed.
pub fn reviewable_changes(old: &DatasetManifest, new: &DatasetManifest) -> Vec<String> {
    let mut changes = Vec::new();
    if old.institutions.providing != new.institutions.providing {
        changes.push("providing_institution".to_owned());
    }
    if old.database != new.database {
        changes.push(format!(
            "database: {} -> {}",
            old.database.name(),
            new.database.name()
        ));
    }
    if old.share.attribute != new.share.attribute
        || old.share.conditions != new.share.conditions
        || old.share.scope != new.share.scope
        || old.share.legal_basis != new.share.legal_basis
    {
        changes.push(format!(
            "share: {} -> {}",
            old.share.attribute.name(),
            new.share.attribute.name()
        ));
    }
    if old.open.attribute != new.open.attribute || old.open.conditions != new.open.conditions {
        changes.push(format!(
            "open: {} -> {}",
            old.open.attribute.name(),
            new.open.attribute.name()
        ));
    }
    if old.privacy_unit != new.privacy_unit || old.region_field != new.region_field {
        changes.push("privacy_unit or region_field".to_owned());
    }
    for f in &new.fields {
        match old.fields.iter().find(|o| o.name == f.name) {
            None => changes.push(format!("{}: added at {}", f.name, f.grade)),
            Some(o) if o.grade != f.grade || o.category != f.category => {
                changes.push(format!("{}: {} -> {}", f.name, o.grade, f.grade))
            }
            // Anything but the description: type, identifier, personal and
            // sensitive marks, bounds, domain, mask, generalisation.
            Some(o)
                if *o
                    != FieldSpec {
                        description: o.description.clone(),
                        ..f.clone()
                    } =>
            {
                changes.push(format!("{}: protection attributes", f.name))
            }
            Some(_) => {}
        }
    }
    for o in &old.fields {
        if !new.fields.iter().any(|f| f.name == o.name) {
            changes.push(format!("{}: removed", o.name));
        }
    }
    changes
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
    check_authority(store, &manifest)?;
    let dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let source = veil_engine::source::check_source(&manifest, dir, file)?;
    check_file_owner(store, &manifest, &source)?;
    let (dataset, changed) = store.register_dataset(&text, &manifest, &source, by)?;
    // The registration stands whatever happens here: a missing index is
    // built again when the service loads.
    if let Err(e) = crate::indexes::build_indexes(store, Some(&dataset.manifest.name)) {
        tracing::warn!(dataset = %dataset.manifest.name, error = %e, "the subject indexes could not be built");
    }
    Ok(Registration { dataset, changed })
}
