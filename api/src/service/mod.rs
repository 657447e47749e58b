//! The use cases, one file each, shared by every front end: the HTTP API,
//! the CLI, and those to come (the console, Flight SQL). A front end only
//! translates: it reads its input into the use case's input type, calls the
//! use case on a [`Service`] with the caller, and writes the typed result
//! out. Each use case checks the caller's role itself, writes its audit
//! entries (refusals included) through the service's [`AuditSink`] before
//! anything leaves, and fails with one [`ServiceError`].
//!
//! - [`query`]: one SELECT under policy, DP charging, dry runs, budgets.
//! - [`verification`]: verification products.
//! - [`models`]: in-domain training and scoring.
//! - [`records`]: a subject's own records.
//! - [`requests`]: the regulation's requests and their steps.
//! - [`catalog`]: the catalog as each caller sees it, and registration.
//! - [`grading`]: the decision table per field, and proposing a grade.
//! - [`policy`]: the active policy, its history, and changing it.
//! - [`principals`]: principals, keys and suspension.
//! - [`audit_log`]: searching the audit log and checking its chain.
//! - [`spending`]: privacy spending as approvers oversee it.
//! - [`loading`]: the engine built from the store.
//! - [`pool`]: the runtime queries are planned and run on.
//!
//! Reads go through [`Service::reader`], a connection per reader; writes
//! through [`Service::store`], the one writer connection.

pub mod audit_log;
pub mod audit_sink;
pub mod catalog;
pub mod grading;
pub mod loading;
pub mod models;
pub mod policy;
pub mod pool;
pub mod principals;
pub mod query;
pub mod readers;
pub mod records;
pub mod requests;
pub mod spending;
pub mod verification;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use veil_engine::Engine;

pub use crate::error::ServiceError;
pub use audit_sink::AuditSink;
pub use loading::{Loaded, access_reason, active_principal, load_engine};

use crate::indexes::{UnitIndexes, install_products};
use crate::signing::Signer;
use crate::store::{AuditEntry, Store, StoreError};
use crate::verification::{Quotas, SubjectDigest};

/// How a service writes its audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// Group commit on a writer thread, for a server.
    GroupCommit,
    /// One transaction per entry, for one command.
    Direct,
}

/// Which verification products' tables a service loads at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products<'a> {
    All,
    /// One command's product only.
    Only(&'a str),
    /// None: a command that verifies nothing (no tables, no quotas).
    None,
}

/// What every use case works with: the store, the engine, the audit sink,
/// the signing key, and the verification products' quotas and digests.
pub struct Service {
    data_dir: PathBuf,
    store: Mutex<Store>,
    readers: readers::Readers,
    engine: RwLock<Arc<Engine>>,
    audit: Box<dyn AuditSink>,
    audit_entries: AtomicU64,
    pub signer: Arc<Signer>,
    /// Per-principal limits of verification products.
    pub quotas: Quotas,
    /// Keyed digests of verified subjects.
    pub digest: SubjectDigest,
    /// Unit index files models score named subjects through.
    pub unit_indexes: UnitIndexes,
    /// The access generation the engine was last checked against.
    engine_generation: AtomicI64,
    /// Datasets that could not be opened when the engine was first built.
    pub skipped: Vec<(String, String)>,
    /// The verification lock, held while this service counts verifications.
    _counting: Option<std::fs::File>,
}

/// Takes the data directory's verification lock: the daily caps are
/// counted in memory by one process, so a second server, or `veil verify`
/// beside a running server, would count apart and give every cap twice.
/// The lock is released when the process ends, however it ends.
fn lock_verification(data_dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = data_dir.join("verification.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Conflict(
            "another veil process verifies over this data directory (a server, or `veil verify`): the daily caps are counted in one process, so verify through it".into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl Service {
    /// Opens the service over a data directory, for a server.
    pub fn open(data_dir: &Path, mode: AuditMode) -> Result<Service, StoreError> {
        Service::open_with(data_dir, mode, Products::All)
    }

    /// Opens the service with only some products' tables, for a command.
    pub fn open_with(
        data_dir: &Path,
        mode: AuditMode,
        products: Products<'_>,
    ) -> Result<Service, StoreError> {
        // Store::open checked the deployment's identity, the ledger, and
        // that the audit log and the ledger reach their signed heads; here,
        // once per process, every page.
        let store = Store::open(data_dir)?;
        store.check_pages()?;
        let mut loaded = load_engine(&store)?;
        match products {
            Products::All => install_products(&store, &mut loaded.engine, None, None)?,
            Products::Only(p) => install_products(&store, &mut loaded.engine, None, Some(p))?,
            Products::None => {}
        }
        let signer = Arc::new(store.data_dir().signer()?);
        let audit: Box<dyn AuditSink> = match mode {
            AuditMode::GroupCommit => Box::new(audit_sink::GroupCommit::start(
                Store::open_without_chain_checks(data_dir)?.without_autocheckpoint()?,
                Store::open_without_chain_checks(data_dir)?,
                Store::open_without_chain_checks(data_dir)?,
                signer.clone(),
            )),
            AuditMode::Direct => Box::new(audit_sink::Direct::new(
                Store::open_without_chain_checks(data_dir)?,
                signer.clone(),
            )),
        };
        let digest = SubjectDigest::new(&store.data_dir().master_key()?);
        // Today's verifications count toward the quotas; a service without
        // products verifies nothing and skips reading them. The counts live
        // in one process: the one holding the data directory's verification
        // lock, which it takes before reading them back.
        let (quotas, counting) = match products {
            Products::None => (Quotas::default(), None),
            _ => {
                let lock = lock_verification(data_dir)?;
                let quotas =
                    Quotas::from_audit(&store, loaded.engine.policy(), chrono::Utc::now())?;
                (quotas, Some(lock))
            }
        };
        let generation = store.access_generation()?;
        Ok(Service {
            data_dir: data_dir.to_owned(),
            readers: readers::Readers::new(data_dir.to_owned()),
            engine_generation: AtomicI64::new(generation),
            quotas,
            digest,
            unit_indexes: UnitIndexes::default(),
            store: Mutex::new(store),
            engine: RwLock::new(Arc::new(loaded.engine)),
            audit,
            audit_entries: AtomicU64::new(0),
            signer,
            skipped: loaded.skipped,
            _counting: counting,
        })
    }

    /// The store, for short operations. A poisoned lock (a panic elsewhere)
    /// still gives access: the store itself is transactional.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection for reading, which waits for no writer.
    pub fn reader(&self) -> Result<readers::Reader<'_>, StoreError> {
        self.readers.get()
    }

    /// The data directory the service runs over.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The store's lock itself, for work that takes the store for short
    /// moments between longer steps (training a model).
    pub fn store_lock(&self) -> &Mutex<Store> {
        &self.store
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rebuilds the engine after the catalog or the policy changed.
    pub fn reload_engine(&self) -> Result<(), StoreError> {
        let store = self.store();
        let mut loaded = load_engine(&store)?;
        install_products(&store, &mut loaded.engine, Some(&self.engine()), None)?;
        *self.engine.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded.engine);
        Ok(())
    }

    /// Rebuilds the engine when a dataset's access changed (a complaint
    /// suspended it, the authority sealed it), here or in another process,
    /// so the change holds from the next request on.
    pub fn follow_dataset_access(&self, generation: i64) -> Result<(), StoreError> {
        if self.engine_generation.swap(generation, Ordering::AcqRel) == generation {
            return Ok(());
        }
        let expected: std::collections::BTreeMap<String, String> = self
            .reader()?
            .dataset_access()?
            .into_iter()
            .map(|(d, state)| {
                let reason = access_reason(&d, &state);
                (d, reason)
            })
            .collect();
        if &expected != self.engine().blocked() {
            self.reload_engine()?;
        }
        Ok(())
    }

    /// Appends an audit entry and waits until it is on disk. Use cases
    /// call it; a failure to write is internal and releases nothing.
    pub async fn audit(&self, entry: AuditEntry) -> Result<i64, ServiceError> {
        let seq = self
            .audit
            .append(entry)
            .await
            .map_err(ServiceError::internal)?;
        self.audit_entries.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Writes `audited`'s entry, then gives its result with the entry's
    /// sequence number: nothing leaves before its entry is durable.
    pub async fn settle<T>(&self, audited: Audited<T>) -> Result<(T, i64), ServiceError> {
        let seq = self.audit(audited.entry).await?;
        audited.result.map(|value| (value, seq))
    }

    /// Audit entries written since the service opened.
    pub fn audit_entries(&self) -> u64 {
        self.audit_entries.load(Ordering::Relaxed)
    }

    /// Stops the audit sink and signs the head of the log.
    pub fn close(&self, wait: Duration) {
        self.audit.close(wait);
    }
}

/// A use case's result and the audit entry that records it, refusals
/// included. [`Service::settle`] writes the entry before the result can be
/// had: a front end cannot release the one without the other.
#[must_use = "the entry is written and the result released by Service::settle"]
pub struct Audited<T> {
    result: Result<T, ServiceError>,
    entry: AuditEntry,
}

impl<T> Audited<T> {
    pub fn new(entry: AuditEntry, result: Result<T, ServiceError>) -> Self {
        Audited { result, entry }
    }

    /// The entry of an administrative action by `caller`.
    pub fn action(
        caller: &veil_policies::Principal,
        endpoint: &str,
        request: String,
        datasets: Vec<String>,
        result: Result<T, ServiceError>,
    ) -> Self {
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("refused:{}", e.code.as_str()),
        };
        let entry = AuditEntry {
            principal: caller.name.clone(),
            role: caller.role.name().to_owned(),
            endpoint: endpoint.to_owned(),
            request,
            datasets,
            privacy: "{}".into(),
            outcome,
            ..AuditEntry::default()
        };
        Audited { result, entry }
    }

    /// The result, mapped, keeping the entry.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Audited<U> {
        Audited {
            result: self.result.map(f),
            entry: self.entry,
        }
    }
}
