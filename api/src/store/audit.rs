//! The audit log (Art. 43): who asked what, for which purpose, what was
//! released. Append-only and hash-chained; the head is signed at checkpoints.
//!
//! Entry hash: SHA-256 over `prev_hash` (32 bytes), `seq` (8 bytes big
//! endian), then each text field as a 4-byte big-endian length and its UTF-8
//! bytes, in the order time, principal, role, purpose, endpoint, request,
//! datasets, fields, privacy, outcome, then `rows` as 8 bytes (-1 for none).
//! A checkpoint signs `"veil audit checkpoint v1" || seq || hash`.
//!
//! Appends run in `BEGIN IMMEDIATE` transactions that read the head inside
//! the lock, so several processes (the server and the CLI) extend one chain.
//! After each commit, and before it returns, the new head is signed into
//! `DIR/audit.head` ([`crate::heads`]): an entry acknowledged is an entry
//! the log must still reach.

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, now_text};
use crate::signing::{Signer, verify};

/// Checkpoint the head every this many entries.
pub const CHECKPOINT_EVERY: i64 = 64;

/// One event to record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    pub principal: String,
    pub role: String,
    pub purpose: String,
    pub endpoint: String,
    /// The SQL, the product, or what was changed.
    pub request: String,
    pub datasets: Vec<String>,
    pub fields: Vec<String>,
    pub rows: Option<u64>,
    /// JSON: the privacy released.
    pub privacy: String,
    /// `ok`, `refused:<code>` or `error`.
    pub outcome: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub time: String,
    pub entry: AuditEntry,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainReport {
    /// `head`: the entry the signed head names, which the log reaches;
    /// `ledger_rows`: the privacy ledger's rows, chained and reaching its
    /// signed head too.
    Intact {
        entries: i64,
        checkpoints: i64,
        head: i64,
        ledger_rows: i64,
    },
    Broken {
        seq: i64,
        reason: String,
    },
}

const GENESIS: [u8; 32] = [0u8; 32];

/// The columns of one link of the chain, in the order [`ChainRow::read`] reads.
const CHAIN_COLUMNS: &str = "seq, time, principal, role, purpose, endpoint, request, datasets, fields, rows, privacy, outcome, prev_hash, hash";

/// One stored link, with `datasets` and `fields` as the JSON text that was
/// hashed (the entry's own lists are left empty).
struct ChainRow {
    seq: i64,
    time: String,
    entry: AuditEntry,
    datasets: String,
    fields: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl ChainRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChainRow> {
        Ok(ChainRow {
            seq: r.get(0)?,
            time: r.get(1)?,
            entry: AuditEntry {
                principal: r.get(2)?,
                role: r.get(3)?,
                purpose: r.get(4)?,
                endpoint: r.get(5)?,
                request: r.get(6)?,
                datasets: Vec::new(),
                fields: Vec::new(),
                rows: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
                privacy: r.get(10)?,
                outcome: r.get(11)?,
            },
            datasets: r.get(7)?,
            fields: r.get(8)?,
            prev_hash: r.get(12)?,
            hash: r.get(13)?,
        })
    }
}

fn field(h: &mut Sha256, text: &str) {
    h.update((text.len() as u32).to_be_bytes());
    h.update(text.as_bytes());
}

fn entry_hash(
    prev: &[u8],
    seq: i64,
    time: &str,
    e: &AuditEntry,
    datasets: &str,
    fields: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    for text in [
        time,
        &e.principal,
        &e.role,
        &e.purpose,
        &e.endpoint,
        &e.request,
        datasets,
        fields,
        &e.privacy,
        &e.outcome,
    ] {
        field(&mut h, text);
    }
    h.update(e.rows.map_or(-1i64, |r| r as i64).to_be_bytes());
    h.finalize().into()
}

fn checkpoint_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    let mut m = b"veil audit checkpoint v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

fn list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Appends entries in one durable transaction and returns their sequence
    /// numbers. When it returns, the entries are on disk.
    pub fn append_audit(
        &mut self,
        entries: &[AuditEntry],
        signer: &Signer,
    ) -> Result<Vec<i64>, StoreError> {
        let (seqs, hash) = self.append_audit_unsigned(entries, signer)?;
        if let Some(&seq) = seqs.last() {
            self.sign_head(crate::heads::Advance::Audit { seq, hash: &hash }, signer)?;
        }
        Ok(seqs)
    }

    /// [`Store::append_audit`] without signing the new head: the entries
    /// are durable but not acknowledged until [`Store::sign_head`] has
    /// signed a head at or past them. Returns their sequence numbers
    /// and the last one's hash.
    pub fn append_audit_unsigned(
        &mut self,
        entries: &[AuditEntry],
        signer: &Signer,
    ) -> Result<(Vec<i64>, [u8; 32]), StoreError> {
        if self.cut {
            return Err(StoreError::Integrity(super::integrity::CUT.into()));
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (mut seq, mut prev): (i64, Vec<u8>) = tx
            .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_vec()));
        let mut seqs = Vec::with_capacity(entries.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_log (seq, time, principal, role, purpose, endpoint, request, datasets, fields, rows, privacy, outcome, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut checkpoint = tx.prepare_cached("INSERT INTO audit_checkpoints (seq, hash, time, signature) VALUES (?1, ?2, ?3, ?4)")?;
            for e in entries {
                seq += 1;
                let time = now_text();
                let (datasets, fields) = (list(&e.datasets), list(&e.fields));
                let hash = entry_hash(&prev, seq, &time, e, &datasets, &fields);
                insert.execute(params![
                    seq,
                    time,
                    e.principal,
                    e.role,
                    e.purpose,
                    e.endpoint,
                    e.request,
                    datasets,
                    fields,
                    e.rows.map(|r| r as i64),
                    e.privacy,
                    e.outcome,
                    prev,
                    hash.as_slice()
                ])?;
                if seq % CHECKPOINT_EVERY == 0 {
                    checkpoint.execute(params![
                        seq,
                        hash.as_slice(),
                        time,
                        signer.sign(&checkpoint_message(seq, &hash))
                    ])?;
                }
                prev = hash.to_vec();
                seqs.push(seq);
            }
        }
        tx.commit()?;
        let last: [u8; 32] = prev.as_slice().try_into().unwrap_or([0; 32]);
        Ok((seqs, last))
    }

    /// Entry `seq`'s hash recomputed from what it holds now (and its stored
    /// link), or `None` when there is no such entry.
    pub(super) fn entry_hash_now(&self, seq: i64) -> Result<Option<[u8; 32]>, StoreError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {CHAIN_COLUMNS} FROM audit_log WHERE seq = ?1"
            ))?
            .query_row(params![seq], ChainRow::read)
            .optional()?;
        Ok(row.map(|r| {
            entry_hash(
                &r.prev_hash,
                r.seq,
                &r.time,
                &r.entry,
                &r.datasets,
                &r.fields,
            )
        }))
    }

    /// The last signed checkpoint: the entry it signs and when.
    pub fn last_checkpoint(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, time FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Signs the current head, if it is not signed yet (at shutdown, say).
    pub fn checkpoint_audit(&mut self, signer: &Signer) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let head: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((seq, hash)) = head {
            tx.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, time, signature) VALUES (?1, ?2, ?3, ?4)",
                params![seq, hash, now_text(), signer.sign(&checkpoint_message(seq, &hash))],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Recomputes the chain and checks every checkpoint signature: any edited,
    /// deleted, inserted or reordered entry breaks it, and the first bad
    /// entry is named. Then the log must reach the head it signed last in
    /// `DIR/audit.head` (so a cut end, even past the last checkpoint, or an
    /// emptied log, is broken), and the privacy ledger must be intact and
    /// reach its head too.
    pub fn verify_audit(&self, public_key: &[u8]) -> Result<ChainReport, StoreError> {
        match self.check_pages() {
            Err(StoreError::Integrity(reason)) => {
                return Ok(ChainReport::Broken { seq: 0, reason });
            }
            other => other?,
        }
        // The chain and its checkpoints are read in one snapshot, so that a
        // writer's commit in between does not look like a removal; the
        // heads are checked after it, against what is committed then.
        let snapshot = self.conn.unchecked_transaction()?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CHAIN_COLUMNS} FROM audit_log ORDER BY rowid"
        ))?;
        let mut rows = stmt.query([])?;
        let mut expected_seq = 0i64;
        let mut prev = GENESIS.to_vec();
        while let Some(r) = rows.next()? {
            let ChainRow {
                seq,
                time,
                entry,
                datasets,
                fields,
                prev_hash: stored_prev,
                hash: stored_hash,
            } = ChainRow::read(r)?;
            expected_seq += 1;
            if seq != expected_seq {
                return Ok(ChainReport::Broken {
                    seq,
                    reason: format!(
                        "expected entry {expected_seq} here: entries were deleted, inserted or reordered"
                    ),
                });
            }
            if stored_prev != prev {
                return Ok(ChainReport::Broken {
                    seq,
                    reason: "its link to the previous entry does not match".into(),
                });
            }
            let hash = entry_hash(&prev, seq, &time, &entry, &datasets, &fields);
            if stored_hash != hash {
                return Ok(ChainReport::Broken {
                    seq,
                    reason: "its contents were changed after it was written".into(),
                });
            }
            prev = hash.to_vec();
        }
        let entries = expected_seq;
        let mut stmt = self
            .conn
            .prepare("SELECT seq, hash, signature FROM audit_checkpoints ORDER BY seq")?;
        let checkpoints: Vec<(i64, Vec<u8>, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (seq, hash, signature) in &checkpoints {
            if !verify(public_key, &checkpoint_message(*seq, hash), signature) {
                return Ok(ChainReport::Broken {
                    seq: *seq,
                    reason: "the checkpoint's signature does not verify".into(),
                });
            }
            if *seq > entries {
                return Ok(ChainReport::Broken {
                    seq: *seq,
                    reason: format!(
                        "a signed checkpoint covers entry {seq} but the log ends at {entries}: entries were removed"
                    ),
                });
            }
            let stored: Option<Vec<u8>> = self
                .conn
                .query_row(
                    "SELECT hash FROM audit_log WHERE seq = ?1",
                    params![seq],
                    |r| r.get(0),
                )
                .optional()?;
            if stored.as_deref() != Some(hash.as_slice()) {
                return Ok(ChainReport::Broken {
                    seq: *seq,
                    reason: "the entry differs from the one its signed checkpoint covers".into(),
                });
            }
        }
        drop(stmt);
        snapshot.rollback()?;
        if let Some((seq, reason)) = self.heads_problem()? {
            return Ok(ChainReport::Broken { seq, reason });
        }
        let ledger_rows = match self.verify_ledger()? {
            super::LedgerReport::Intact { rows } => rows,
            super::LedgerReport::Broken { id, reason } => {
                return Ok(ChainReport::Broken {
                    seq: 0,
                    reason: format!("the privacy ledger is broken at row {id}: {reason}"),
                });
            }
        };
        let public = self.dir.public_key()?;
        let head = crate::heads::read(self.dir.root(), &public)
            .ok()
            .flatten()
            .map_or(0, |h| h.audit_seq);
        Ok(ChainReport::Intact {
            entries,
            checkpoints: checkpoints.len() as i64,
            head,
            ledger_rows,
        })
    }

    /// The first sequence number written at or after `since` (an RFC 3339
    /// time), found by binary search over the chain: entries are appended
    /// in time order, so this reads O(log n) rows, not the whole log.
    fn first_seq_since(&self, since: &str) -> Result<i64, StoreError> {
        let mut time_of = self
            .conn
            .prepare_cached("SELECT time FROM audit_log WHERE seq = ?1")?;
        let last: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| {
                    r.get(0)
                })?;
        let (mut lo, mut hi) = (1i64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let time: Option<String> = time_of.query_row(params![mid], |r| r.get(0)).optional()?;
            if time.is_some_and(|t| t.as_str() < since) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The principal and request of every successful entry at one of
    /// `endpoints` since `since` (an RFC 3339 time), oldest first.
    pub fn successes_since(
        &self,
        since: &str,
        endpoints: &[&str],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.first_seq_since(since)?;
        let places = (0..endpoints.len())
            .map(|i| format!("?{}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT principal, request FROM audit_log
             WHERE seq >= ?1 AND time >= ?2 AND outcome = 'ok' AND endpoint IN ({places})
             ORDER BY seq"
        ))?;
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&first, &since];
        values.extend(endpoints.iter().map(|e| e as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(values.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Entries matching a filter, newest first.
    pub fn search_audit(&self, filter: &AuditFilter<'_>) -> Result<Vec<AuditRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CHAIN_COLUMNS} FROM audit_log
             WHERE (?1 IS NULL OR principal = ?1)
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(datasets) WHERE json_each.value = ?2))
               AND (?3 IS NULL OR time >= ?3)
               AND (?4 IS NULL OR outcome LIKE ?4 || '%')
               AND (?6 IS NULL OR EXISTS (SELECT 1 FROM json_each(datasets)
                    WHERE json_each.value IN (SELECT value FROM json_each(?6))))
               AND (?7 IS NULL OR endpoint = ?7)
               AND (?8 IS NULL OR time < ?8)
               AND (?9 IS NULL OR seq < ?9)
             ORDER BY seq DESC LIMIT ?5"
        ))?;
        let records = stmt
            .query_map(
                params![
                    filter.principal,
                    filter.dataset,
                    filter.since,
                    filter.outcome,
                    filter.limit.clamp(1, 10_000) as i64,
                    filter
                        .within
                        .map(|w| serde_json::to_string(w).unwrap_or_default()),
                    filter.endpoint,
                    filter.until,
                    filter.before,
                ],
                ChainRow::read,
            )?
            .map(|row| {
                row.map(|mut c| {
                    c.entry.datasets = serde_json::from_str(&c.datasets).unwrap_or_default();
                    c.entry.fields = serde_json::from_str(&c.fields).unwrap_or_default();
                    AuditRecord {
                        seq: c.seq,
                        time: c.time,
                        entry: c.entry,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(records)
    }
}

impl Store {
    pub fn save_receipt(
        &mut self,
        request_id: &str,
        principal: &str,
        receipt: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO receipts (request_id, principal, receipt, time) VALUES (?1, ?2, ?3, ?4)",
            params![request_id, principal, receipt, now_text()],
        )?;
        Ok(())
    }

    /// The receipt of a request, for the principal who made it.
    pub fn receipt(&self, request_id: &str, principal: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT receipt FROM receipts WHERE request_id = ?1 AND principal = ?2",
                params![request_id, principal],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// What to look for in the log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub principal: Option<&'a str>,
    pub dataset: Option<&'a str>,
    pub since: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub limit: usize,
    /// Only entries about at least one of these datasets, when given: the
    /// limit counts only them.
    pub within: Option<&'a [String]>,
    /// Only entries of this endpoint, exactly.
    pub endpoint: Option<&'a str>,
    /// Only entries before this time.
    pub until: Option<&'a str>,
    /// Only entries before this sequence number: the next page.
    pub before: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            principal: format!("p{i}"),
            role: "consumer".into(),
            purpose: String::new(),
            endpoint: "POST /v1/query".into(),
            request: format!("SELECT {i}"),
            datasets: vec!["population".into()],
            fields: vec!["population.name".into()],
            rows: Some(i as u64),
            privacy: "{}".into(),
            outcome: "ok".into(),
        }
    }

    fn filled(n: usize) -> (tempfile::TempDir, Store, Signer, Vec<u8>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let signer = store.data_dir().signer().unwrap();
        let public = store.data_dir().public_key().unwrap();
        let entries: Vec<AuditEntry> = (1..=n).map(entry).collect();
        for chunk in entries.chunks(7) {
            store.append_audit(chunk, &signer).unwrap();
        }
        (tmp, store, signer, public)
    }

    fn tamper(tmp: &tempfile::TempDir, sql: &str) {
        let conn = Connection::open(tmp.path().join("veil.db")).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    #[test]
    fn successes_since_a_time_read_only_the_tail_of_the_log() {
        let (_tmp, mut store, signer, _) = filled(20);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let since = crate::store::now_text();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let verification = |i: usize| AuditEntry {
            endpoint: "POST /v1/verify".into(),
            request: format!("{{\"product\":\"p\",\"subjects\":[\"{i:032x}\"]}}"),
            ..entry(i)
        };
        let tail: Vec<AuditEntry> = (21..=30).map(verification).collect();
        store.append_audit(&tail, &signer).unwrap();
        assert_eq!(store.first_seq_since(&since).unwrap(), 21);
        let found = store.successes_since(&since, &["POST /v1/verify"]).unwrap();
        assert_eq!(found.len(), 10);
        assert_eq!(found[0], ("p21".to_owned(), tail[0].request.clone()));
        // Only the endpoints asked for.
        assert!(
            store
                .successes_since(&since, &["veil verify"])
                .unwrap()
                .is_empty()
        );
        assert!(store.successes_since(&since, &[]).unwrap().is_empty());
        assert_eq!(
            store
                .successes_since("2000-01-01T00:00:00.000Z", &["POST /v1/verify"])
                .unwrap()
                .len(),
            10
        );
        assert!(
            store
                .successes_since("2999-01-01T00:00:00.000Z", &["POST /v1/verify"])
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.first_seq_since("2999-01-01T00:00:00.000Z").unwrap(),
            31
        );
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_tmp, mut store, signer, public) = filled(130);
        assert_eq!(
            store.verify_audit(&public).unwrap(),
            ChainReport::Intact {
                entries: 130,
                checkpoints: 2,
                head: 130,
                ledger_rows: 0,
            }
        );
        store.checkpoint_audit(&signer).unwrap();
        assert_eq!(
            store.verify_audit(&public).unwrap(),
            ChainReport::Intact {
                entries: 130,
                checkpoints: 3,
                head: 130,
                ledger_rows: 0,
            }
        );
        let found = store
            .search_audit(&AuditFilter {
                principal: Some("p5"),
                dataset: Some("population"),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entry, entry(5));
    }

    #[test]
    fn edits_deletions_insertions_and_reorders_are_detected() {
        let cases = [
            (
                "UPDATE audit_log SET request = 'SELECT 0' WHERE seq = 40",
                40,
            ),
            ("UPDATE audit_log SET rows = 999 WHERE seq = 7", 7),
            ("DELETE FROM audit_log WHERE seq = 50", 51),
            (
                "UPDATE audit_log SET seq = seq + 1000 WHERE seq = 20; UPDATE audit_log SET seq = 20 WHERE seq = 21; UPDATE audit_log SET seq = 21 WHERE seq = 1020",
                20,
            ),
            (
                "INSERT INTO audit_log SELECT 1000, time, principal, role, purpose, endpoint, request, datasets, fields, rows, privacy, outcome, prev_hash, hash FROM audit_log WHERE seq = 10",
                1000,
            ),
            ("DELETE FROM audit_log WHERE seq > 100", 128),
            // The unsigned tail, past the last checkpoint: the signed head
            // still names entry 130.
            ("DELETE FROM audit_log WHERE seq > 128", 130),
            (
                "DELETE FROM audit_log WHERE seq > 100; DELETE FROM audit_checkpoints WHERE seq > 100",
                130,
            ),
            ("DELETE FROM audit_log; DELETE FROM audit_checkpoints", 130),
        ];
        for (sql, first_bad) in cases {
            let (tmp, store, _, public) = filled(130);
            tamper(&tmp, sql);
            match store.verify_audit(&public).unwrap() {
                ChainReport::Broken { seq, .. } => assert_eq!(seq, first_bad, "{sql}"),
                intact => panic!("{sql}: {intact:?}"),
            }
            // And nothing is served over a log cut short of its head.
            drop(store);
            if first_bad == 130 {
                let err = Store::open(tmp.path()).err().expect("refused");
                assert!(matches!(err, StoreError::Integrity(_)), "{sql}: {err}");
                assert!(err.to_string().contains("entry 130"), "{err}");
                assert!(Store::open_without_chain_checks(tmp.path()).is_ok());
            }
        }
    }

    #[test]
    fn sequence_numbers_are_never_handed_out_twice() {
        // A writer that opened the store before the cut got past the start
        // check, but entries 9 and 10 are not acknowledged twice, however
        // the next batch falls: below the head, on it, or past it.
        for batch in [1usize, 2, 3, 5] {
            let (tmp, mut store, signer, _) = filled(10);
            tamper(&tmp, "DELETE FROM audit_log WHERE seq > 8");
            let again: Vec<AuditEntry> = (9..9 + batch).map(entry).collect();
            let err = store.append_audit(&again, &signer).unwrap_err();
            assert!(matches!(err, StoreError::Integrity(_)), "{batch}: {err}");
            // Nor is anything after: the head is never moved past the cut.
            assert!(store.append_audit(&[entry(20)], &signer).is_err());
            assert!(matches!(
                store.verify_audit(&signer.public_key()).unwrap(),
                ChainReport::Broken { .. }
            ));
            drop(store);
            assert!(matches!(
                Store::open(tmp.path()),
                Err(StoreError::Integrity(_))
            ));
        }
    }

    #[test]
    fn a_recomputed_chain_is_caught_by_the_signed_checkpoints() {
        let (tmp, store, _, public) = filled(70);
        // Rewrite entry 3 and recompute every hash after it, as a careful
        // forger with database access but without the signing key would.
        let conn = Connection::open(tmp.path().join("veil.db")).unwrap();
        conn.execute("UPDATE audit_log SET request = 'forged' WHERE seq = 3", [])
            .unwrap();
        let mut prev = GENESIS.to_vec();
        for seq in 1..=70i64 {
            let row = conn
                .query_row(
                    &format!("SELECT {CHAIN_COLUMNS} FROM audit_log WHERE seq = ?1"),
                    [seq],
                    ChainRow::read,
                )
                .unwrap();
            let (time, datasets, fields, e) = (row.time, row.datasets, row.fields, row.entry);
            let hash = entry_hash(&prev, seq, &time, &e, &datasets, &fields);
            conn.execute(
                "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                params![prev, hash.as_slice(), seq],
            )
            .unwrap();
            prev = hash.to_vec();
        }
        drop(conn);
        assert!(matches!(
            store.verify_audit(&public).unwrap(),
            ChainReport::Broken { seq: 64, .. }
        ));
    }
}
