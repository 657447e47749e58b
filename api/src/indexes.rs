//! The subject index files, in one home: where each lives in the data
//! directory (`indexes/`), what it must have been built from (the dataset
//! version and its file's checksum), building the missing ones when a
//! dataset is registered or a policy loaded, handing them to the engine's
//! verification products, and opening the privacy units' indexes models
//! score named subjects through. The file format is the engine's
//! (`veil_engine::verification::SubjectIndex`, `IndexFile`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use veil_engine::verification::{IndexFile, SubjectIndex, subject_key};
use veil_engine::{Dataset, Engine};

use crate::datadir::DataDir;
use crate::store::{RegisteredDataset, Store, StoreError};

/// Why the subject indexes could not be built. Registration and policy
/// loads stand whatever it says: a missing index is built again when the
/// service loads.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a subject index cannot be built: {0}")]
    Build(String),
}

/// Where the subject index of `field` of a dataset version lives.
fn index_path(dir: &DataDir, d: &RegisteredDataset, field: &str) -> PathBuf {
    dir.root()
        .join("indexes")
        .join(format!("{}-v{}-{field}.idx", d.manifest.name, d.version))
}

/// What an index file must have been built from: the dataset version and
/// the exact bytes of its file.
fn index_tag(d: &RegisteredDataset, field: &str) -> String {
    format!(
        "{}\nv{}\n{field}\n{}",
        d.manifest.name, d.version, d.file_sha256
    )
}

/// The subject index of `field`: read from its file, or built from the data
/// and written when the file is missing or does not belong to this version.
pub fn subject_index(
    dir: &DataDir,
    registered: &RegisteredDataset,
    dataset: &Dataset,
    field: &str,
) -> Result<Arc<SubjectIndex>, String> {
    let path = index_path(dir, registered, field);
    let tag = index_tag(registered, field);
    match SubjectIndex::load(&path, &tag) {
        Ok(index) => return Ok(Arc::new(index)),
        Err(why) if path.exists() => {
            tracing::warn!(index = %path.display(), reason = %why, "rebuilding a subject index");
        }
        Err(_) => {}
    }
    let started = Instant::now();
    let index = SubjectIndex::build(dataset, field)?;
    // An index holds identifiers: private to the service, like the store.
    let folder = path.parent().expect("under the data directory");
    std::fs::create_dir_all(folder)
        .and_then(|()| crate::datadir::set_mode(folder, 0o700))
        .and_then(|()| index.save(&path, &tag))
        .and_then(|()| crate::datadir::set_mode(&path, 0o600))
        .map_err(|e| format!("the index cannot be written: {}", e.kind()))?;
    tracing::info!(
        dataset = %registered.manifest.name,
        field,
        subjects = index.subjects(),
        ms = started.elapsed().as_millis() as u64,
        "built a subject index"
    );
    remove_older_indexes(folder, registered, field);
    Ok(Arc::new(index))
}

/// Gives the engine's products (or just `only`) their tables, reading (or
/// building) the subject indexes kept in the data directory; tables of
/// `previous` that still fit are kept.
pub fn install_products(
    store: &Store,
    engine: &mut Engine,
    previous: Option<&Engine>,
    only: Option<&str>,
) -> Result<(), StoreError> {
    let registered: HashMap<String, RegisteredDataset> = store
        .datasets()?
        .into_iter()
        .map(|d| (d.manifest.name.clone(), d))
        .collect();
    let dir = store.data_dir();
    engine.install_products(
        &|dataset, field| {
            let r = registered
                .get(&dataset.manifest.name)
                .filter(|r| r.version == dataset.version)
                .ok_or_else(|| "its dataset is not registered".to_string())?;
            subject_index(dir, r, dataset, field)
        },
        previous,
        only,
    );
    for (name, table) in engine.products() {
        if let Err(why) = table {
            tracing::warn!(
                product = name,
                reason = why,
                "verification product unavailable"
            );
        }
    }
    Ok(())
}

/// Removes the index files of this field from earlier versions of the
/// dataset: they are derived data nothing reads any more.
fn remove_older_indexes(folder: &std::path::Path, registered: &RegisteredDataset, field: &str) {
    let prefix = format!("{}-v", registered.manifest.name);
    let suffix = format!("-{field}.idx");
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let version = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
            .and_then(|v| v.parse::<i64>().ok());
        if version.is_some_and(|v| v < registered.version) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Builds the missing subject indexes of the active policy's products, for
/// one dataset or all: registration and policy loads call it, so the
/// service finds them ready.
pub fn build_indexes(store: &Store, only: Option<&str>) -> Result<(), IndexError> {
    let Some(active) = store.active_policy()? else {
        return Ok(());
    };
    // (dataset, field) pairs: each product's subject field, and the privacy
    // unit of each dataset whose models score named subjects.
    let mut wanted: Vec<(RegisteredDataset, String)> = Vec::new();
    let skip = |dataset: &str| only.is_some_and(|d| d != dataset);
    for product in &active.policy.products {
        if skip(&product.dataset) {
            continue;
        }
        let Some(registered) = store.dataset(&product.dataset)? else {
            continue;
        };
        if product.check_against(&registered.manifest).is_empty() {
            wanted.push((registered, product.subject.clone()));
        }
    }
    for (name, templates) in &active.policy.models {
        if skip(name) || !templates.iter().any(|t| t.scores()) {
            continue;
        }
        let Some(registered) = store.dataset(name)? else {
            continue;
        };
        if registered.manifest.format == veil_policies::catalog::FileFormat::Parquet
            && veil_policies::model::development_refusal(&registered.manifest).is_none()
        {
            let unit = registered.manifest.privacy_unit.clone();
            wanted.push((registered, unit));
        }
    }
    let mut done: Vec<(String, String)> = Vec::new();
    for (registered, field) in wanted {
        let key = (registered.manifest.name.clone(), field);
        if done.contains(&key) {
            continue;
        }
        let dataset = Dataset::open(
            registered.manifest.clone(),
            registered.version,
            &registered.data_path,
        )
        .map_err(|e| IndexError::Build(e.to_string()))?;
        subject_index(store.data_dir(), &registered, &dataset, &key.1)
            .map_err(IndexError::Build)?;
        done.push(key);
    }
    Ok(())
}

/// The index files of datasets' privacy units, opened (and checked against
/// their checksum) once, then looked up in place: scoring named subjects
/// reads only their rows. A dataset without a usable index is scanned.
#[derive(Default)]
pub struct UnitIndexes {
    open: Mutex<HashMap<PathBuf, Arc<IndexFile>>>,
}

impl UnitIndexes {
    fn file(&self, path: &std::path::Path, tag: &str) -> Option<Arc<IndexFile>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(path) {
            return Some(f.clone());
        }
        match IndexFile::open(path, tag) {
            Ok(f) => {
                let f = Arc::new(f);
                open.insert(path.to_path_buf(), f.clone());
                Some(f)
            }
            Err(why) => {
                if path.exists() {
                    tracing::warn!(index = %path.display(), reason = %why, "unit index unusable; scanning");
                }
                None
            }
        }
    }

    /// Finds named subjects' rows through the unit indexes of the store's
    /// current dataset versions.
    pub fn finder<'a>(
        &'a self,
        store: &Store,
    ) -> Result<impl Fn(&Dataset, &[String]) -> Option<Vec<u32>> + 'a, StoreError> {
        let locations: HashMap<String, (i64, PathBuf, String)> = store
            .datasets()?
            .into_iter()
            .map(|d| {
                let unit = d.manifest.privacy_unit.clone();
                let at = (
                    d.version,
                    index_path(store.data_dir(), &d, &unit),
                    index_tag(&d, &unit),
                );
                (d.manifest.name.clone(), at)
            })
            .collect();
        Ok(move |dataset: &Dataset, subjects: &[String]| {
            let (version, path, tag) = locations.get(&dataset.manifest.name)?;
            if *version != dataset.version {
                return None;
            }
            let file = self.file(path, tag)?;
            let mut rows = Vec::new();
            for s in subjects {
                rows.extend(file.rows(subject_key(s)?).ok()?);
            }
            rows.sort_unstable();
            rows.dedup();
            Some(rows)
        })
    }
}
