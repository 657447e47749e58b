//! The catalog as each caller sees it, its history, and registering a
//! dataset. Registration checks the file and builds the subject indexes on
//! a connection of its own: it holds no lock other callers wait on.

use chrono::Utc;
use veil_policies::{Level, Principal, Role};

use super::{Audited, Service, ServiceError};
use veil_policies::DatasetManifest;

use crate::store::{RegisteredDataset, Store, StoreError};
use crate::wire::admin::{Catalog, DatasetVersionView, DatasetVersions, DatasetView, Registered};

impl Service {
    /// The datasets `caller` may use under `purpose`, each field with the
    /// caller's level. Approvers and admins see the whole catalog.
    pub fn catalog(&self, caller: &Principal, purpose: Option<&str>) -> Catalog {
        let engine = self.engine();
        let levels = engine.levels(caller, purpose, Utc::now());
        let manages = matches!(caller.role, Role::Approver | Role::Admin);
        let datasets = engine
            .datasets()
            .filter_map(|d| {
                let own = levels
                    .iter()
                    .find(|(n, _)| *n == d.manifest.name)
                    .map(|(_, l)| l.as_slice())
                    .unwrap_or(&[]);
                let usable = own.iter().any(|(_, l)| *l != Level::Deny);
                (usable || manages).then(|| DatasetView::new(&d.manifest, d.version, Some(own)))
            })
            .collect();
        Catalog {
            policy_version: engine.policy_version().to_owned(),
            datasets,
        }
    }

    /// Every registered version of the dataset `name`.
    pub fn catalog_versions(&self, name: &str) -> Result<DatasetVersions, ServiceError> {
        let history = self.reader()?.dataset_history(name)?;
        if history.is_empty() {
            return Err(ServiceError::not_found("no dataset has this name"));
        }
        let versions = history
            .into_iter()
            .map(|d| DatasetVersionView {
                version: d.version,
                registered_at: d.registered_at.to_rfc3339(),
                registered_by: d.registered_by,
                rows: d.rows,
                file_sha256: d.file_sha256,
                manifest: d.manifest_text,
            })
            .collect();
        Ok(DatasetVersions {
            dataset: name.to_owned(),
            versions,
        })
    }

    /// Registers the dataset `manifest` (TOML text) describes, its file
    /// under the data directory's `datasets/`, as `caller`. Blocking: it
    /// reads the whole file; run it off the async workers.
    pub fn register(
        &self,
        caller: &Principal,
        manifest: &str,
        endpoint: &str,
    ) -> Audited<Registered> {
        let result = self.register_now(caller, manifest);
        let (request, datasets) = match &result {
            Ok((r, changes)) => (
                format!(
                    "register {} v{} ({})",
                    r.dataset,
                    r.version,
                    describe(changes)
                ),
                vec![r.dataset.clone()],
            ),
            Err(_) => ("register".to_owned(), vec![]),
        };
        Audited::action(caller, endpoint, request, datasets, result.map(|(r, _)| r))
    }

    fn register_now(
        &self,
        caller: &Principal,
        manifest: &str,
    ) -> Result<(Registered, Vec<String>), ServiceError> {
        // A connection of its own: the file check and the index build take
        // seconds on a large file, and hold SQLite's write lock only for
        // the insert.
        let mut store = Store::open(self.data_dir())?;
        let parsed = {
            let policy = store
                .active_policy()?
                .ok_or_else(|| ServiceError::not_found("no policy is loaded"))?
                .policy;
            DatasetManifest::parse(manifest, &|g| policy.grade(g).is_some())
                .map_err(StoreError::from)?
        };
        let before = store.dataset(&parsed.name)?;
        let changes = may_register(&store, caller, &parsed, before.as_ref())?;
        let dir = store.data_dir().datasets_dir();
        std::fs::create_dir_all(&dir).map_err(ServiceError::internal)?;
        let upload = tempfile_in(&dir, manifest)?;
        let outcome = crate::registry::register(&mut store, &upload, None, &caller.name);
        let _ = std::fs::remove_file(&upload);
        let registration = outcome?;
        self.reload_engine()?;
        let d = &registration.dataset;
        Ok((
            Registered {
                dataset: d.manifest.name.clone(),
                version: d.version,
                rows: d.rows,
                changed: registration.changed,
            },
            changes,
        ))
    }
}

/// Whether `caller` may register `new` directly, and the changes from the
/// version `before` it makes (none that the authority reviews, or a first
/// version by the authority). Each institution is responsible for its own
/// catalog; the data authority reviews catalogs (Art. 12, 13): a provider's
/// approver registers only what its institution provides, and a new entry
/// or a change of grades, share or open attributes goes through a
/// `catalog_change` request that a second approver of the authority
/// approves.
fn may_register(
    store: &Store,
    caller: &Principal,
    new: &DatasetManifest,
    before: Option<&RegisteredDataset>,
) -> Result<Vec<String>, ServiceError> {
    if caller.role != Role::Approver {
        return Err(ServiceError::forbidden(
            "only an approver registers datasets",
        ));
    }
    if let Some(authority) = store.authority()?
        && new.institutions.approving != authority
    {
        return Err(ServiceError::forbidden(format!(
            "the approving institution of every catalog entry is this deployment's data authority, `{authority}` (Art. 6, 12): it is configured, and no manifest names another"
        )));
    }
    let org = caller.org.as_deref().unwrap_or_default();
    let authority = super::requests::is_authority(store, caller)?;
    let provides = |m: &DatasetManifest| !org.is_empty() && m.institutions.providing == org;
    if !authority && (!provides(new) || before.is_some_and(|b| !provides(&b.manifest))) {
        return Err(ServiceError::forbidden(format!(
            "an approver of `{org}` registers only datasets `{org}` provides (Art. 12)"
        )));
    }
    let Some(before) = before else {
        if authority {
            return Ok(vec!["a new entry".to_owned()]);
        }
        return Err(ServiceError::forbidden(
            "a new catalog entry is reviewed by the data authority (Art. 12, 13): open a `catalog_change` request with the manifest",
        ));
    };
    let changes = crate::registry::reviewable_changes(&before.manifest, new);
    if !changes.is_empty() {
        return Err(ServiceError::forbidden(
            "this version changes what the data authority reviews (grades, categories, protections, share or open attributes; Art. 12, 13): open a `catalog_change` request with the manifest, which a second approver of the authority approves",
        ));
    }
    Ok(changes)
}

fn describe(changes: &[String]) -> String {
    if changes.is_empty() {
        "no reviewable change".to_owned()
    } else {
        changes.join("; ")
    }
}

/// Writes the manifest next to the files it names, under a name no other
/// registration in flight uses.
fn tempfile_in(dir: &std::path::Path, text: &str) -> Result<std::path::PathBuf, ServiceError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".upload-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).map_err(ServiceError::internal)?;
    Ok(path)
}
