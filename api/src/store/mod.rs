//! The embedded store: one SQLite file in the data directory holding the
//! policies, the catalog, principals with hashed API keys, and grants.
//!
//! Every write is one transaction; SQLite runs in WAL mode with full
//! synchronisation, so what a call reports as stored survives a crash.

mod audit;
mod budget;
mod catalog;
mod integrity;
mod models;
mod principals;
mod requests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use veil_policies::{Policy, Problem, Problems};

pub use audit::{AuditEntry, AuditFilter, AuditRecord, ChainReport};
pub use budget::{Charged, LedgerPoint, LedgerReport, Spent, fits};
pub use catalog::RegisteredDataset;
pub use integrity::RESTORE_HINT;
pub use models::ModelRecord;
pub use principals::{
    ApiKey, NewPrincipal, PrincipalRecord, PrincipalStatus, check_principal_name, key_hash,
};
pub use requests::{Apply, NewRequest, RequestRecord, StepRecord};

use crate::datadir::DataDir;

/// Migrations by schema version; `PRAGMA user_version` records the last one
/// applied.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the data directory is not usable: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(#[from] Problems),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BudgetExhausted(String),
    #[error("the store was written by a newer veil (schema {found}, this build knows {known})")]
    TooNew { found: i64, known: i64 },
    /// The data directory is not the deployment it was: a store missing or
    /// emptied, a chain cut short, a key swapped. Nothing is served over it.
    #[error("{0}")]
    Integrity(String),
}

pub struct Store {
    conn: Connection,
    dir: DataDir,
    /// The service's signing key; `None` on a read-only connection.
    signer: Option<Arc<crate::signing::Signer>>,
    /// Set when this connection found the audit log cut below its signed
    /// head while it ran: it acknowledges nothing more.
    cut: bool,
}

impl Store {
    /// Opens the store of a data directory, creating and initialising both
    /// when they do not exist yet: the schema, a master secret, the
    /// deployment's identity and signed heads, and the default policy
    /// preset as policy version 1.
    ///
    /// An existing deployment is checked first, and refused with
    /// [`StoreError::Integrity`] when it is not what it was: its store
    /// missing or empty, its signing key not the published one, its store
    /// another deployment's, or its audit log or ledger ending before the
    /// heads it signed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_checked(dir, true)
    }

    /// [`Store::open`] without checking that the audit log and the ledger
    /// reach their signed heads; a missing or empty store, another's, or the
    /// wrong key is still refused. For `veil audit verify`, which reports
    /// where a chain is cut instead of refusing it, and for the further
    /// connections of a service that has just opened, and so checked, the
    /// store with [`Store::open`].
    pub fn open_without_chain_checks(dir: &Path) -> Result<Store, StoreError> {
        Store::open_checked(dir, false)
    }

    fn open_checked(root: &Path, check_heads: bool) -> Result<Store, StoreError> {
        // Before anything is created: does a deployment live here?
        let existing = crate::datadir::holds_deployment(root);
        if existing && !root.join("veil.db").exists() {
            return Err(StoreError::Integrity(integrity::missing_store(root)));
        }
        let dir = DataDir::open(root)?;
        let fresh = !dir.store_path().exists();
        let mut conn = Connection::open(dir.store_path())?;
        if fresh {
            crate::datadir::set_mode(&dir.store_path(), 0o600)?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if existing && version == 0 {
            return Err(StoreError::Integrity(integrity::missing_store(root)));
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let from = migrate(&mut conn)?;
        let signer = Arc::new(dir.signer()?);
        let mut store = Store {
            conn,
            dir,
            signer: Some(signer),
            cut: false,
        };
        if store.active_policy()?.is_none() {
            store.load_policy(veil_policies::policy::DEFAULT_PRESET, "veil")?;
        }
        store.establish_identity(check_heads, from)?;
        Ok(store)
    }

    /// Opens another connection to a store [`Store::open`] has created, for
    /// reading only: no schema step, no preset, and SQLite refuses any write
    /// through it. Under WAL readers never wait for the writer.
    pub fn open_reader(dir: &Path) -> Result<Store, StoreError> {
        let dir = DataDir::open(dir)?;
        let conn = Connection::open_with_flags(
            dir.store_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Store {
            conn,
            dir,
            signer: None,
            cut: false,
        })
    }

    /// The service's signing key, which this connection's writes sign with.
    pub fn signer(&self) -> Result<&crate::signing::Signer, StoreError> {
        self.signer
            .as_deref()
            .ok_or_else(|| StoreError::Conflict("a read-only connection signs nothing".into()))
    }

    /// Stops this connection from copying the write-ahead log into the
    /// database when it commits: the audit writer's commits stay short, and
    /// [`Store::checkpoint`] does the copying from another thread.
    pub fn without_autocheckpoint(self) -> Result<Store, StoreError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(self)
    }

    /// Copies what it can of the write-ahead log into the database without
    /// waiting for readers or blocking writers.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// Writes a consistent snapshot of the whole store to a new file at
    /// `path` (`VACUUM INTO`: one read transaction, so writers go on).
    pub fn vacuum_into(&self, path: &Path) -> Result<(), StoreError> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Conflict("the backup's path is not UTF-8".into()))?;
        self.conn.execute("VACUUM INTO ?1", params![target])?;
        Ok(())
    }

    pub fn path(&self) -> PathBuf {
        self.dir.store_path()
    }

    /// The active policy: the latest version loaded.
    pub fn active_policy(&self) -> Result<Option<ActivePolicy>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT version, text FROM policies ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((version, text)) => {
                let policy = Policy::parse(&text)?;
                Ok(Some(ActivePolicy { version, policy }))
            }
        }
    }

    /// Checks and stores a policy as the next version, which becomes active.
    /// Its verification products must fit the datasets registered now.
    pub fn load_policy(&mut self, text: &str, by: &str) -> Result<ActivePolicy, StoreError> {
        let policy = self.check_policy(text)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO policies (name, digest, text, loaded_at, loaded_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![policy.name, policy.digest(), text, now_text(), by],
        )?;
        let version = tx.last_insert_rowid();
        tx.commit()?;
        Ok(ActivePolicy { version, policy })
    }
}

impl Store {
    /// Checks a policy text as loading it would (`veil policy check`, and
    /// its products against the registered datasets), loading nothing.
    pub fn check_policy(&self, text: &str) -> Result<Policy, StoreError> {
        let policy = Policy::parse(text)?;
        let mut problems = Vec::new();
        for product in &policy.products {
            if let Some(d) = self.dataset(&product.dataset)? {
                let found = product.check_against(&d.manifest);
                if found.is_empty() {
                    // On the data: no claim the subject's identifier decides.
                    let dataset =
                        veil_engine::Dataset::open(d.manifest.clone(), d.version, &d.data_path)
                            .map_err(|e| StoreError::Conflict(e.to_string()))?;
                    if let Err(why) =
                        veil_engine::verification::determined_claims(product, &dataset)
                    {
                        problems.push(veil_policies::Problem::new(
                            format!("product `{}`", product.name),
                            why,
                        ));
                    }
                }
                problems.extend(found);
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Invalid(Problems(problems)));
        }
        Ok(policy)
    }
}

/// One stored policy version.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    pub version: i64,
    pub name: String,
    pub digest: String,
    pub loaded_at: String,
    pub loaded_by: String,
}

impl Store {
    /// Every policy version, oldest first.
    pub fn policy_versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT version, name, digest, loaded_at, loaded_by FROM policies ORDER BY version",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PolicyVersion {
                    version: r.get(0)?,
                    name: r.get(1)?,
                    digest: r.get(2)?,
                    loaded_at: r.get(3)?,
                    loaded_by: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The text of the active policy.
    pub fn active_policy_text(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT text FROM policies ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The text of policy version `version`, if there is one.
    pub fn policy_text(&self, version: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT text FROM policies WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// The policy in force and its version number in this store.
#[derive(Debug, Clone)]
pub struct ActivePolicy {
    pub version: i64,
    pub policy: Policy,
}

impl ActivePolicy {
    /// How answers name the policy that decided them: `v3-1a2b3c4d5e6f`.
    pub fn label(&self) -> String {
        format!("v{}-{}", self.version, self.policy.digest())
    }
}

/// Applies the migrations not applied yet; returns the version the store
/// had (0: a new store).
fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(current)
}

impl Store {
    /// The data authority this deployment was set up with, if any.
    pub fn authority(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = 'authority'")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    /// Sets the data authority, once. Setting the same one again is a
    /// no-op; another one is a conflict that names the one set.
    pub fn set_authority(&mut self, name: &str) -> Result<(), StoreError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StoreError::Invalid(Problems(vec![Problem::new(
                "authority",
                "the data authority needs a name",
            )])));
        }
        match self.authority()? {
            Some(set) if set == name => Ok(()),
            Some(set) => Err(StoreError::Conflict(format!(
                "this data directory's data authority is already set, to `{set}`; it is set once"
            ))),
            None => {
                self.conn.execute(
                    "INSERT INTO settings (key, value, set_at) VALUES ('authority', ?1, ?2)",
                    params![name, now_text()],
                )?;
                Ok(())
            }
        }
    }

    /// The data authority, or a refusal that says how to set it.
    pub fn require_authority(&self) -> Result<String, StoreError> {
        self.authority()?.ok_or_else(|| {
            StoreError::Conflict(
                "no data authority is configured for this data directory: set it once with `veil init --authority NAME`".into(),
            )
        })
    }
}

/// Whether the store still holds both heads signed now: the audit entry and
/// the ledger row they name, with their hashes. Asked before any head is
/// signed, so that a cut of either chain stops every writer: a service
/// whose ledger was cut acknowledges no audit entry either.
pub(crate) fn holds_heads(conn: &Connection, h: &crate::heads::Heads) -> Result<bool, String> {
    let stored = |sql: &str, key: i64| -> Result<Option<Vec<u8>>, String> {
        conn.prepare_cached(sql)
            .and_then(|mut s| {
                s.query_row(params![key], |r| r.get::<_, Option<Vec<u8>>>(0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(|e| e.to_string())
    };
    let audit = h.audit_seq == 0
        || stored("SELECT hash FROM audit_log WHERE seq = ?1", h.audit_seq)?.as_deref()
            == Some(h.audit_hash.as_slice());
    let ledger = h.ledger_id == 0
        || stored("SELECT hash FROM dp_ledger WHERE id = ?1", h.ledger_id)?.as_deref()
            == Some(h.ledger_hash.as_slice());
    Ok(audit && ledger)
}

/// A failure of the signed heads as a store error: damage or a cut is an
/// integrity failure, a disk that fails is not.
pub(crate) fn heads_error(e: crate::heads::HeadsError) -> StoreError {
    match e {
        crate::heads::HeadsError::Io(io) => StoreError::Io(io),
        crate::heads::HeadsError::Check(m) => StoreError::Conflict(m),
        other => StoreError::Integrity(other.to_string()),
    }
}

pub(crate) fn now_text() -> String {
    time_text(Utc::now())
}

pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_authority_is_set_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.authority().unwrap(), None);
        assert!(store.require_authority().is_err());
        assert!(store.set_authority("  ").is_err());
        store.set_authority("the bureau").unwrap();
        store.set_authority("the bureau").unwrap();
        let err = store.set_authority("the tax office").unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.require_authority().unwrap(), "the bureau");
        // Not even SQL changes it.
        assert!(
            store
                .conn
                .execute("UPDATE settings SET value = 'the tax office'", [])
                .is_err()
        );
        assert!(store.conn.execute("DELETE FROM settings", []).is_err());
        assert_eq!(store.authority().unwrap().as_deref(), Some("the bureau"));
    }

    #[test]
    fn a_new_directory_is_initialised_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new/deeper");
        let store = Store::open(&dir).unwrap();
        let first = store.active_policy().unwrap().unwrap();
        assert_eq!(first.version, 1);
        assert_eq!(first.policy.name, "default");
        assert!(first.label().starts_with("v1-"));
        drop(store);
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.active_policy().unwrap().unwrap().version, 1);
    }

    #[test]
    fn a_bad_policy_is_refused_and_the_old_one_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let err = store.load_policy("format = 1\n", "tester").unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(store.active_policy().unwrap().unwrap().version, 1);
        let text = veil_policies::policy::DEFAULT_PRESET
            .replace("name = \"default\"", "name = \"stricter\"");
        let v2 = store.load_policy(&text, "tester").unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(
            store.active_policy().unwrap().unwrap().policy.name,
            "stricter"
        );
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let conn = Connection::open(tmp.path().join("veil.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(tmp.path()),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn a_store_from_before_chained_ledgers_is_upgraded_with_its_refunds() {
        let tmp = tempfile::tempdir().unwrap();
        // A data directory as an earlier build left it: schema 8, keys, no
        // deployment identity or heads, a charge refunded by its flag.
        DataDir::open(tmp.path()).unwrap();
        let mut conn = Connection::open(tmp.path().join("veil.db")).unwrap();
        for (i, sql) in MIGRATIONS[..8].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        let tx = conn.transaction().unwrap();
        for (who, refunded) in [("alice", 0), ("alice", 1), ("bob", 0)] {
            tx.execute(
                "INSERT INTO dp_ledger (principal, dataset, epsilon, delta, rho, delta0, request, time, refunded)
                 VALUES (?1, 'health_visits', 0.3, 0, 0.045, 0, 'q', '2026-11-30T00:00:00.000Z', ?2)",
                params![who, refunded],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        drop(conn);
        let _ = std::fs::remove_file(tmp.path().join(crate::heads::FILE));

        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(
            store.verify_ledger().unwrap(),
            LedgerReport::Intact { rows: 4 },
            "three charges and the refund that was a flag"
        );
        let budget = veil_engine::DpBudget {
            epsilon: 1.0,
            delta: 1e-7,
            period: None,
        };
        let spent = store
            .spent("alice", "health_visits", &budget, Utc::now())
            .unwrap();
        assert!((spent.epsilon - 0.3).abs() < 1e-12, "{spent:?}");
        assert!(store.heads_problem().unwrap().is_none());
        let first = store.deployment().unwrap();
        drop(store);
        // Opened again, it is the same deployment, and the heads hold.
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.deployment().unwrap(), first);
        assert!(matches!(
            store
                .verify_audit(&store.data_dir().public_key().unwrap())
                .unwrap(),
            ChainReport::Intact { ledger_rows: 4, .. }
        ));
    }
}
