//! The deployment's identity and the checks made before anything is served
//! over a data directory.
//!
//! A deployment is born with its store: a random deployment id and the
//! public key go into the store's settings, and the first signed heads
//! ([`crate::heads`]) into `DIR/audit.head`. Every open then checks that
//! the signing key is the one `public.key` publishes, that the store is
//! this deployment's (same id, same key), and that the audit log and the
//! ledger reach the heads last signed. [`Store::check_pages`] runs SQLite's
//! own check of every page, once per process.

use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_text};
use crate::heads::{self, Heads};
use crate::signing::hex;

/// How to say that a deployment's store is gone.
pub(super) fn missing_store(root: &Path) -> String {
    format!(
        "{} holds a deployment (its keys and signed heads) but its store veil.db is missing or empty: it is not started as a new one. Restore the directory from a backup (`veil restore`); if it was never used, remove it and start again",
        root.display()
    )
}

/// What a connection that found a chain cut says from then on.
pub(super) const CUT: &str = "the audit log or the ledger was cut below its signed head while the service ran: these entries are not acknowledged, and nothing more is";

/// The schema version whose stores are made with an identity and heads.
const IDENTITY_SCHEMA: i64 = 9;

/// What every refusal of a deployment's directory advises.
pub const RESTORE_HINT: &str =
    "nothing is served over it: restore the data directory from a backup (`veil restore`)";

fn restore_hint() -> &'static str {
    RESTORE_HINT
}

impl Store {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?)
    }

    /// This deployment's id.
    pub fn deployment(&self) -> Result<String, StoreError> {
        self.setting("deployment")?
            .ok_or_else(|| StoreError::Integrity("the store has no deployment id".into()))
    }

    /// Makes a new deployment's identity, or checks an existing one's.
    /// Writes the deployment's identity into the settings, once.
    fn record_identity(&mut self, id: &str, public: &[u8]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        write_identity(&tx, &self.dir, id, public)?;
        tx.commit()?;
        Ok(())
    }

    /// `from`: the store's schema version when it was opened (0: new).
    pub(super) fn establish_identity(
        &mut self,
        check_heads: bool,
        from: i64,
    ) -> Result<(), StoreError> {
        let signer = self.signer()?;
        let public = self.dir.public_key()?;
        if signer.public_key() != public {
            return Err(StoreError::Integrity(format!(
                "secrets/signing.key is not the key public.key publishes: receipts and checkpoints would not verify; {}",
                restore_hint()
            )));
        }
        if self.setting("deployment")?.is_none() {
            match heads::read(self.dir.root(), &public).map_err(super::heads_error)? {
                // Signed heads, but no identity in the store: a first start
                // that stopped between the two, or settings removed. The
                // heads are this key's; when the store reaches them, their
                // identity is the store's, and nothing is lost by taking it.
                Some(found) => {
                    if let Some((_, reason)) = self.problem_with(&found)? {
                        return Err(StoreError::Integrity(format!(
                            "the store has no deployment identity, and it does not reach the heads signed beside it: {reason}; {}",
                            restore_hint()
                        )));
                    }
                    self.record_identity(&found.deployment, &public)?;
                    return self.establish_identity(check_heads, from);
                }
                // No heads and no identity: only a new store, or one from
                // before identities (schema 8 or older), is given one. A
                // store of this schema that lost both is refused.
                None if from >= IDENTITY_SCHEMA => {
                    return Err(StoreError::Integrity(format!(
                        "the store has no deployment identity and {} is missing: its settings and heads were removed (a first start that stopped before its heads were written also leaves this: if the directory was never used, remove it and start again); {}",
                        heads::FILE,
                        restore_hint()
                    )));
                }
                None => {}
            }
            // Only here, before there are heads, is a ledger without hashes
            // (schema 8 or older) chained: with heads, rows are never remade.
            self.chain_old_ledger()?;
            let signer = self.signer.clone().expect("a writer has its key");
            // One process makes the identity: the write lock is held from
            // the check to the commit. The heads are written first, inside
            // it: a stop before the commit is mended at the next start
            // (above), since the store reaches them.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM settings WHERE key = 'deployment')",
                [],
                |r| r.get(0),
            )?;
            if !taken {
                let mut id = [0u8; 16];
                SystemRandom::new()
                    .fill(&mut id)
                    .map_err(|_| StoreError::Conflict("the system random source failed".into()))?;
                let id = hex(&id);
                let (audit_seq, audit_hash) = audit_end(&tx)?;
                let (ledger_id, ledger_hash) = super::budget::ledger_end(&tx)?;
                heads::create(
                    self.dir.root(),
                    &signer,
                    &Heads {
                        deployment: id.clone(),
                        audit_seq,
                        audit_hash,
                        ledger_id,
                        ledger_hash,
                        ..Heads::default()
                    },
                )?;
                write_identity(&tx, &self.dir, &id, &public)?;
            }
            tx.commit()?;
            return Ok(());
        }
        if self.setting("public_key")?.as_deref() != Some(hex(&public).as_str()) {
            return Err(StoreError::Integrity(format!(
                "the store was made for another signing key than this directory's: it is another deployment's store; {}",
                restore_hint()
            )));
        }
        if self.setting("master_key_id")?.as_deref() != Some(master_key_id(&self.dir)?.as_str()) {
            return Err(StoreError::Integrity(format!(
                "secrets/master.key is not this deployment's master secret: pseudonyms, digests and the ledger would not be its own; {}",
                restore_hint()
            )));
        }
        if check_heads {
            if let Some((_, reason)) = self.heads_problem()? {
                return Err(StoreError::Integrity(format!(
                    "{reason}; {}",
                    restore_hint()
                )));
            }
            // Every row, since a budget is decided by sums over all of them.
            if let super::LedgerReport::Broken { id, reason } = self.verify_ledger()? {
                return Err(StoreError::Integrity(format!(
                    "the privacy ledger is broken at row {id}: {reason}; {}",
                    restore_hint()
                )));
            }
        }
        Ok(())
    }

    /// Signs one chain's new end into `DIR/audit.head`, durably. Under the
    /// heads' lock the store must still hold both heads signed so far
    /// (whoever signed them, [`super::holds_heads`]): otherwise a chain was
    /// cut below them while this connection ran, sequence numbers or
    /// ledger ids were handed out before, and nothing more is signed or
    /// acknowledged through this connection.
    pub fn sign_head(
        &mut self,
        to: heads::Advance<'_>,
        signer: &crate::signing::Signer,
    ) -> Result<(), StoreError> {
        if self.cut {
            return Err(StoreError::Integrity(CUT.into()));
        }
        let conn = &self.conn;
        let holds = |h: &Heads| super::holds_heads(conn, h);
        match heads::advance(self.dir.root(), signer, to, &holds) {
            Ok(_) => Ok(()),
            Err(heads::HeadsError::Cut) => {
                self.cut = true;
                tracing::error!("a chain was cut below its signed head while the service ran");
                Err(StoreError::Integrity(CUT.into()))
            }
            Err(e) => Err(super::heads_error(e)),
        }
    }

    /// Whether the audit log and the ledger reach their signed heads: the
    /// place and reason of the first problem, or `None`.
    pub fn heads_problem(&self) -> Result<Option<(i64, String)>, StoreError> {
        let public = self.dir.public_key()?;
        let heads = match heads::read(self.dir.root(), &public) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Ok(Some((
                    0,
                    format!(
                        "{} is missing: where the audit log and the ledger end cannot be checked",
                        heads::FILE
                    ),
                )));
            }
            Err(heads::HeadsError::Io(e)) => return Err(e.into()),
            Err(e) => return Ok(Some((0, e.to_string()))),
        };
        if heads.deployment != self.deployment()? {
            return Ok(Some((
                0,
                format!("{} is another deployment's", heads::FILE),
            )));
        }
        self.problem_with(&heads)
    }

    /// Whether the store reaches `heads`: the first problem, or `None`.
    pub(crate) fn problem_with(&self, heads: &Heads) -> Result<Option<(i64, String)>, StoreError> {
        // The entries the heads name, as they are now: an entry removed,
        // or its contents changed (its hash recomputed or not), shows here.
        if heads.audit_seq > 0 {
            let now = self.entry_hash_now(heads.audit_seq)?;
            if now.as_ref().map(|h| h.as_slice()) != Some(heads.audit_hash.as_slice()) {
                let end = audit_end(&self.conn)?.0;
                let reason = match now {
                    None => format!(
                        "the audit log ends at entry {end} but its signed head is entry {}: acknowledged entries were removed",
                        heads.audit_seq
                    ),
                    Some(_) => format!(
                        "audit entry {} is not the one its signed head names: the log was rewritten",
                        heads.audit_seq
                    ),
                };
                return Ok(Some((heads.audit_seq, reason)));
            }
        }
        if heads.ledger_id > 0 {
            let now = self.ledger_hash_now(heads.ledger_id)?;
            if now.as_ref().map(|h| h.as_slice()) != Some(heads.ledger_hash.as_slice()) {
                return Ok(Some((
                    0,
                    format!(
                        "the privacy ledger does not reach its signed head, row {}: charges were removed or rewritten",
                        heads.ledger_id
                    ),
                )));
            }
        }
        Ok(None)
    }

    /// SQLite's check of every page and index of the store (`PRAGMA
    /// quick_check`): a damaged page is reported before it is served from.
    pub fn check_pages(&self) -> Result<(), StoreError> {
        let problems: Vec<String> = self
            .conn
            .prepare("PRAGMA quick_check(5)")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if problems.iter().all(|p| p == "ok") {
            return Ok(());
        }
        tracing::error!(?problems, "the store's pages do not check");
        Err(StoreError::Integrity(format!(
            "the store veil.db is damaged (SQLite's page check fails); {}",
            restore_hint()
        )))
    }
}

/// Writes a deployment's identity (its id, the public key, the master
/// secret's identifier) into the settings, where none is yet.
fn write_identity(
    conn: &rusqlite::Connection,
    dir: &crate::datadir::DataDir,
    id: &str,
    public: &[u8],
) -> Result<(), StoreError> {
    let master_id = master_key_id(dir)?;
    for (key, value) in [
        ("deployment", id),
        ("public_key", &hex(public)),
        ("master_key_id", &master_id),
    ] {
        conn.execute(
            "INSERT OR IGNORE INTO settings (key, value, set_at) VALUES (?1, ?2, ?3)",
            params![key, value, now_text()],
        )?;
    }
    Ok(())
}

/// A short identifier of the master secret, kept in the settings so that a
/// swapped secret is found at start.
fn master_key_id(dir: &crate::datadir::DataDir) -> Result<String, StoreError> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &dir.master_key()?);
    Ok(hex(
        &ring::hmac::sign(&key, b"veil master key id v1").as_ref()[..16]
    ))
}

/// The audit log's last entry: its sequence number (0 when empty) and hash.
pub(super) fn audit_end(conn: &rusqlite::Connection) -> Result<(i64, Vec<u8>), StoreError> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, vec![0u8; 32])))
}
