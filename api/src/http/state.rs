//! What every request shares: the store, the engine, the audit writer, the
//! signing key, limits and metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use veil_engine::Engine;

use super::limits::Limits;
use super::metrics::Metrics;
use crate::service::load_engine;
use crate::signing::Signer;
use crate::store::{AuditEntry, PrincipalRecord, Store, StoreError};
use crate::verify::{Quotas, SubjectDigest, install_products};

/// Settings of a running service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long a request may take before it is abandoned.
    pub timeout: Duration,
    /// Requests one principal may have in flight at once.
    pub concurrency_per_principal: usize,
    /// Requests one principal may start per minute.
    pub requests_per_minute: u32,
    /// Largest `POST /v1/verify` body: a batch of 10,000 subjects.
    pub verify_body_limit: usize,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            listen,
            body_limit: 1 << 20,
            timeout: Duration::from_secs(120),
            concurrency_per_principal: 8,
            requests_per_minute: 6_000,
            verify_body_limit: 16 << 20,
        }
    }
}

pub struct AppState {
    pub config: ServerConfig,
    store: Mutex<Store>,
    engine: RwLock<Arc<Engine>>,
    audit: AuditWriter,
    pub signer: Arc<Signer>,
    pub limits: Limits,
    pub metrics: Metrics,
    /// Per-principal limits of verification products.
    pub quotas: Quotas,
    /// Keyed digests of verified subjects.
    pub digest: SubjectDigest,
    /// Unit index files models score named subjects through.
    pub unit_indexes: crate::verify::UnitIndexes,
    callers: Mutex<CallerCache>,
    /// The access generation the engine was last checked against.
    engine_generation: std::sync::atomic::AtomicI64,
}

/// Callers by the hash of their key, valid while the store's access
/// generation stands still.
#[derive(Default)]
struct CallerCache {
    generation: i64,
    callers: HashMap<[u8; 32], Option<Arc<PrincipalRecord>>>,
}

/// Keys remembered at most; unknown keys count too, so a flood of made-up
/// keys cannot grow the cache without bound.
const CALLER_CACHE_SIZE: usize = 10_000;

impl AppState {
    pub fn open(config: ServerConfig) -> Result<Arc<AppState>, StoreError> {
        let store = Store::open(&config.data_dir)?;
        let mut loaded = load_engine(&store)?;
        for (name, why) in &loaded.skipped {
            tracing::warn!(dataset = %name, reason = %why, "dataset unavailable");
        }
        install_products(&store, &mut loaded.engine, None, None)?;
        let signer = Arc::new(store.data_dir().signer()?);
        let audit = AuditWriter::start(
            Store::open(&config.data_dir)?.without_autocheckpoint()?,
            Store::open(&config.data_dir)?,
            signer.clone(),
        );
        let digest = SubjectDigest::new(&store.data_dir().master_key()?);
        let quotas = Quotas::from_audit(&store, loaded.engine.policy(), chrono::Utc::now())?;
        let generation = store.access_generation()?;
        Ok(Arc::new(AppState {
            engine_generation: std::sync::atomic::AtomicI64::new(generation),
            callers: Mutex::new(CallerCache::default()),
            quotas,
            digest,
            unit_indexes: crate::verify::UnitIndexes::default(),
            limits: Limits::new(config.requests_per_minute, config.concurrency_per_principal),
            metrics: Metrics::default(),
            store: Mutex::new(store),
            engine: RwLock::new(Arc::new(loaded.engine)),
            audit,
            signer,
            config,
        }))
    }

    /// The store, for short operations. A poisoned lock (a panic elsewhere)
    /// still gives access: the store itself is transactional.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's lock itself, for work that takes the store for short
    /// moments between longer steps (training a model).
    pub fn store_lock(&self) -> &Mutex<Store> {
        &self.store
    }

    /// The principal holding the key with this hash, if any, suspended or
    /// not. One small read of the store per call: a change made anywhere
    /// (this service, the CLI) shows on the next call.
    pub fn caller(&self, key_hash: &[u8; 32]) -> Result<Option<Arc<PrincipalRecord>>, StoreError> {
        let generation = self.store().access_generation()?;
        self.follow_dataset_access(generation)?;
        {
            let cache = self.callers.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation == generation
                && let Some(hit) = cache.callers.get(key_hash)
            {
                return Ok(hit.clone());
            }
        }
        let found = self.store().authenticate_hash(key_hash)?.map(Arc::new);
        let mut cache = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation != generation || cache.callers.len() >= CALLER_CACHE_SIZE {
            cache.callers.clear();
            cache.generation = generation;
        }
        cache.callers.insert(*key_hash, found.clone());
        Ok(found)
    }

    /// Rebuilds the engine when a dataset's access changed (a complaint
    /// suspended it, the authority sealed it), here or in another process,
    /// so the change holds from the next request on.
    fn follow_dataset_access(&self, generation: i64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.engine_generation.swap(generation, Ordering::AcqRel) == generation {
            return Ok(());
        }
        let expected: std::collections::BTreeMap<String, String> = self
            .store()
            .dataset_access()?
            .into_iter()
            .map(|(d, state)| {
                let reason = crate::service::access_reason(&d, &state);
                (d, reason)
            })
            .collect();
        let same = &expected == self.engine().blocked();
        if !same {
            self.reload_engine()?;
        }
        Ok(())
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

    /// Appends an audit entry, waits until it is on disk, and counts it in
    /// `veil_audit_entries_total`.
    pub async fn audit(&self, entry: AuditEntry) -> Result<i64, StoreError> {
        let seq = self.audit.append(entry).await?;
        self.metrics.audit_entry();
        Ok(seq)
    }

    /// Stops the audit writer and signs the head of the log.
    pub fn close(&self, wait: Duration) {
        self.audit.close(wait);
    }
}

type Pending = (AuditEntry, oneshot::Sender<Result<i64, String>>);

/// Appends audit entries on its own thread with group commit: entries that
/// arrive while a transaction commits go into the next one, so one fsync
/// covers many requests and each request still waits for its own durability.
///
/// The writer's own commits do not copy the write-ahead log back into the
/// database (a copy can take milliseconds and every waiting request would
/// wait for it); a second thread does that every 250 ms, passively.
struct AuditWriter {
    sender: Mutex<Option<mpsc::Sender<Pending>>>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
    /// Dropped to stop the checkpointer.
    stop_checkpoints: Mutex<Option<mpsc::Sender<()>>>,
}

impl AuditWriter {
    fn start(mut store: Store, checkpoints: Store, signer: Arc<Signer>) -> AuditWriter {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_millis(250))
                {
                    if let Err(e) = checkpoints.checkpoint() {
                        tracing::warn!(error = %e, "the write-ahead log could not be checkpointed");
                    }
                }
                let _ = checkpoints.checkpoint();
            })
            .expect("the checkpoint thread starts");
        let (sender, receiver) = mpsc::channel::<Pending>();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let (mut entries, mut replies) = (vec![first.0], vec![first.1]);
                    while entries.len() < 1024 {
                        match receiver.try_recv() {
                            Ok((entry, reply)) => {
                                entries.push(entry);
                                replies.push(reply);
                            }
                            Err(_) => break,
                        }
                    }
                    match store.append_audit(&entries, &signer) {
                        Ok(seqs) => {
                            for (reply, seq) in replies.into_iter().zip(seqs) {
                                let _ = reply.send(Ok(seq));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the audit log could not be written");
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
                if let Err(e) = store.checkpoint_audit(&signer) {
                    tracing::error!(error = %e, "the audit head could not be signed at shutdown");
                }
                let _ = done_tx.send(());
            })
            .expect("the audit writer thread starts");
        AuditWriter {
            sender: Mutex::new(Some(sender)),
            done: Mutex::new(Some(done_rx)),
            stop_checkpoints: Mutex::new(Some(stop)),
        }
    }

    async fn append(&self, entry: AuditEntry) -> Result<i64, StoreError> {
        let (reply, wait) = oneshot::channel();
        let sent = match self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(sender) => sender.send((entry, reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Conflict("the service is shutting down".into()));
        }
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(StoreError::Conflict(format!(
                "the audit log could not be written: {e}"
            ))),
            Err(_) => Err(StoreError::Conflict("the audit writer stopped".into())),
        }
    }

    fn close(&self, wait: Duration) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = done.recv_timeout(wait);
        }
        self.stop_checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
