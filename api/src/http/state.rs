//! What every request shares: the service (store, engine, audit sink,
//! signing key), and what only HTTP has: the configuration, limits,
//! metrics and the cache of callers by key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::limits::Limits;
use super::metrics::Metrics;
use crate::service::pool::QueryPool;
use crate::service::{AuditMode, Service};
use crate::store::{PrincipalRecord, StoreError};

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
    /// How long a connection may take to send a request's head, and stay
    /// idle between requests, before it is closed.
    pub idle_timeout: Duration,
    /// Connections open at once, in all (never more than the file
    /// descriptor limit leaves room for) and from one address.
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// Where Flight SQL is served, if anywhere.
    pub flight_sql: Option<SocketAddr>,
    /// How long a Flight SQL ticket waits for its `DoGet`.
    pub ticket_lifetime: Duration,
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
            idle_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_peer: 256,
            flight_sql: None,
            ticket_lifetime: crate::flight::tickets::TICKET_LIFETIME,
        }
    }
}

pub struct AppState {
    pub config: ServerConfig,
    pub service: Service,
    /// Where queries are planned and run, off the connection workers.
    pub queries: QueryPool,
    pub limits: Limits,
    pub metrics: Metrics,
    /// The console's sessions (in memory: a restart signs everyone out).
    pub console: super::console::session::Sessions,
    callers: Mutex<CallerCache>,
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

impl std::ops::Deref for AppState {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl AppState {
    pub fn open(config: ServerConfig) -> Result<Arc<AppState>, StoreError> {
        let service = Service::open(&config.data_dir, AuditMode::GroupCommit)?;
        for (name, why) in &service.skipped {
            tracing::warn!(dataset = %name, reason = %why, "dataset unavailable");
        }
        Ok(Arc::new(AppState {
            callers: Mutex::new(CallerCache::default()),
            limits: Limits::new(config.requests_per_minute, config.concurrency_per_principal),
            metrics: Metrics::default(),
            console: Default::default(),
            queries: QueryPool::new()?,
            service,
            config,
        }))
    }

    /// Runs `work` on a blocking thread: for use cases that read files or
    /// compute for long (registration, training, scoring).
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&AppState) -> T + Send + 'static,
    ) -> Result<T, crate::service::ServiceError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || work(&state))
            .await
            .map_err(crate::service::ServiceError::internal)
    }

    /// The principal holding the key with this hash, if any, suspended or
    /// not. One small read of the store per call: a change made anywhere
    /// (this service, the CLI) shows on the next call.
    pub fn caller(&self, key_hash: &[u8; 32]) -> Result<Option<Arc<PrincipalRecord>>, StoreError> {
        let generation = self.reader()?.access_generation()?;
        self.follow_dataset_access(generation)?;
        {
            let cache = self.callers.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation == generation
                && let Some(hit) = cache.callers.get(key_hash)
            {
                return Ok(hit.clone());
            }
        }
        let found = self.reader()?.authenticate_hash(key_hash)?.map(Arc::new);
        let mut cache = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if cache.generation != generation || cache.callers.len() >= CALLER_CACHE_SIZE {
            cache.callers.clear();
            cache.generation = generation;
        }
        cache.callers.insert(*key_hash, found.clone());
        Ok(found)
    }
}
