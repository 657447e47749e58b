//! Backups (Art. 43(7): disaster recovery): one file holding a consistent
//! snapshot of the store, the keys and the signed heads, with a manifest of
//! hashes; and the restore that checks all of it before a new data
//! directory is served from.
//!
//! The file is an SQLite database: the store as `VACUUM INTO` wrote it
//! (a snapshot taken inside one read transaction, while the server runs),
//! plus two tables of its own: `veil_backup` (each file of the data
//! directory that is not the store: name, mode, bytes, SHA-256) and
//! `veil_backup_manifest` (format, deployment, when, the heads, and each
//! registered dataset's file with its size and SHA-256 as registered).
//! The heads are read before the snapshot is taken, so the snapshot holds
//! every entry they name.
//!
//! The file holds the service's secrets: keep it as the data directory is
//! kept (it is written mode 0600). The datasets' own files are not in it:
//! they stay where they were registered, and a restore says which of them
//! are still there and unchanged.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::datadir::{DataDir, holds_deployment, set_mode, sync_dir, write_private};
use crate::signing::hex;
use crate::store::{AuditEntry, ChainReport, Store, StoreError};

const FORMAT: &str = "1";

/// The files of a data directory a backup carries besides the store, with
/// the mode each is restored with.
const FILES: &[(&str, u32)] = &[
    ("secrets/master.key", 0o600),
    ("secrets/signing.key", 0o600),
    ("public.key", 0o644),
    (crate::heads::FILE, 0o600),
];

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub deployment: String,
    pub audit_head: i64,
    pub ledger_head: i64,
    pub datasets: usize,
    pub seconds: f64,
}

/// What a restore found.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub deployment: String,
    pub taken_at: String,
    pub entries: i64,
    pub audit_head: i64,
    pub ledger_rows: i64,
    /// Registered dataset files still in place and unchanged.
    pub data_unchanged: Vec<String>,
    /// Registered dataset files missing or changed since the backup, with why.
    pub data_missing: Vec<(String, String)>,
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((bytes, hex(&hasher.finalize())))
}

fn conflict(message: impl Into<String>) -> StoreError {
    StoreError::Conflict(message.into())
}

/// Takes a backup of the deployment in `data_dir` into `out`, which must
/// not exist yet. The server may be running and answering meanwhile.
pub fn backup(data_dir: &Path, out: &Path) -> Result<BackupReport, StoreError> {
    let started = Instant::now();
    if !holds_deployment(data_dir) {
        return Err(conflict(format!(
            "{} holds no deployment to back up",
            data_dir.display()
        )));
    }
    if out.exists() {
        return Err(conflict(format!(
            "{} exists already: a backup is written to a new file",
            out.display()
        )));
    }
    // A store that a start would refuse (cut, edited, another's) is not
    // backed up as if it were whole.
    drop(Store::open(data_dir)?);
    let dir = DataDir::open(data_dir)?;
    // The heads first: everything they name is committed, so the snapshot
    // taken after them holds it.
    // Read once, under the heads' shared lock: the bytes kept are the
    // bytes whose heads were checked.
    let (heads, head_bytes) = crate::heads::read_with_bytes(dir.root(), &dir.public_key()?)
        .map_err(crate::store::heads_error)?
        .ok_or_else(|| StoreError::Integrity(format!("{} is missing", crate::heads::FILE)))?;
    let files: Vec<(&str, u32, Vec<u8>)> = FILES
        .iter()
        .map(|(name, mode)| {
            let bytes = if *name == crate::heads::FILE {
                head_bytes.clone()
            } else {
                fs::read(dir.root().join(name))?
            };
            Ok((*name, *mode, bytes))
        })
        .collect::<std::io::Result<_>>()?;
    let store = Store::open_reader(data_dir)?;
    let datasets = store.datasets()?;
    let partial = out.with_extension("partial");
    let _ = fs::remove_file(&partial);
    store.vacuum_into(&partial)?;
    drop(store);
    set_mode(&partial, 0o600)?;
    let mut conn = Connection::open(&partial)?;
    // The snapshot holds everything the heads read before it name.
    if !crate::store::holds_heads(&conn, &heads).map_err(StoreError::Conflict)? {
        drop(conn);
        let _ = fs::remove_file(&partial);
        return Err(StoreError::Integrity(
            "the store's snapshot does not reach the heads signed before it was taken: the store was cut; nothing was backed up".into(),
        ));
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE veil_backup (name TEXT PRIMARY KEY, mode INTEGER NOT NULL, data BLOB NOT NULL, sha256 TEXT NOT NULL);
         CREATE TABLE veil_backup_manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE veil_backup_data (path TEXT PRIMARY KEY, dataset TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL);",
    )?;
    for (name, mode, data) in &files {
        tx.execute(
            "INSERT INTO veil_backup (name, mode, data, sha256) VALUES (?1, ?2, ?3, ?4)",
            params![name, mode, data, hex(&Sha256::digest(data))],
        )?;
    }
    for d in &datasets {
        tx.execute(
            "INSERT OR IGNORE INTO veil_backup_data (path, dataset, bytes, sha256) VALUES (?1, ?2, ?3, ?4)",
            params![
                d.data_path.to_string_lossy(),
                d.manifest.name,
                d.file_size as i64,
                d.file_sha256
            ],
        )?;
    }
    let taken_at = crate::store::now_text();
    for (key, value) in [
        ("format", FORMAT.to_owned()),
        ("deployment", heads.deployment.clone()),
        ("taken_at", taken_at),
        ("audit_head", heads.audit_seq.to_string()),
        ("ledger_head", heads.ledger_id.to_string()),
        ("veil", env!("CARGO_PKG_VERSION").to_owned()),
    ] {
        tx.execute(
            "INSERT INTO veil_backup_manifest (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
    }
    tx.commit()?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    drop(conn);
    fs::File::open(&partial)?.sync_all()?;
    fs::rename(&partial, out)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(BackupReport {
        file: out.to_owned(),
        bytes: fs::metadata(out)?.len(),
        deployment: heads.deployment,
        audit_head: heads.audit_seq,
        ledger_head: heads.ledger_id,
        datasets: datasets.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn manifest(conn: &Connection, key: &str) -> Result<String, StoreError> {
    conn.query_row(
        "SELECT value FROM veil_backup_manifest WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::Integrity(format!("the backup's manifest has no `{key}`")))
}

/// Checks the backup in `from` and rebuilds a data directory from it in
/// `data_dir`, which must not hold a deployment. Nothing is left there
/// unless every check passed: the file's pages, every member's hash, the
/// store's identity and heads, the ledger and the whole audit chain.
pub fn restore(from: &Path, data_dir: &Path) -> Result<RestoreReport, StoreError> {
    if holds_deployment(data_dir) || data_dir.join("veil.db").exists() {
        return Err(conflict(format!(
            "{} already holds a deployment: restore into a new directory",
            data_dir.display()
        )));
    }
    if fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(conflict(format!(
            "{} is not empty: restore into a new directory",
            data_dir.display()
        )));
    }
    let bad = |why: String| StoreError::Integrity(format!("the backup does not check: {why}"));
    let not_a_backup = || {
        StoreError::Integrity(format!(
            "{} is not a whole veil backup (`veil backup` writes one)",
            from.display()
        ))
    };
    if !from.is_file() {
        return Err(not_a_backup());
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let pages: String = conn
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(|_| not_a_backup())?;
    if pages != "ok" {
        return Err(bad("its pages are damaged".into()));
    }
    let is_backup: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'veil_backup_manifest')",
            [],
            |r| r.get(0),
        )
        .map_err(|_| not_a_backup())?;
    if !is_backup {
        return Err(not_a_backup());
    }
    let format = manifest(&conn, "format")?;
    if format != FORMAT {
        return Err(bad(format!("format {format} is not one this build reads")));
    }
    let deployment = manifest(&conn, "deployment")?;
    let taken_at = manifest(&conn, "taken_at")?;
    let mut members = Vec::new();
    for (name, mode) in FILES {
        let (data, sha): (Vec<u8>, String) = conn
            .query_row(
                "SELECT data, sha256 FROM veil_backup WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| bad(format!("it holds no {name}")))?;
        if hex(&Sha256::digest(&data)) != sha {
            return Err(bad(format!("{name} is not the file it was")));
        }
        members.push((*name, *mode, data));
    }
    let data_files: Vec<(String, String, i64, String)> = conn
        .prepare("SELECT path, dataset, bytes, sha256 FROM veil_backup_data ORDER BY dataset")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    drop(conn);

    // Rebuilt in a directory beside the target, moved into place once whole.
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let staged = parent.join(format!(".veil-restore-{}-{nonce}", std::process::id()));
    let result = rebuild(&staged, &members, from, &deployment, bad);
    let (entries, audit_head, ledger_rows) = match result {
        Ok(found) => found,
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            // What a start would say, without its advice to restore.
            return Err(match e {
                StoreError::Integrity(m) => bad(m
                    .replace(crate::store::RESTORE_HINT, "")
                    .trim_end_matches([';', ' '])
                    .to_owned()),
                other => other,
            });
        }
    };

    let (mut data_unchanged, mut data_missing) = (Vec::new(), Vec::new());
    for (path, dataset, bytes, sha) in data_files {
        match sha256_file(Path::new(&path)) {
            Ok((b, s)) if b as i64 == bytes && s == sha => data_unchanged.push(dataset),
            Ok(_) => data_missing.push((dataset, format!("{path} changed since the backup"))),
            Err(_) => data_missing.push((dataset, format!("{path} is not there"))),
        }
    }
    if let Err(e) = fs::rename(&staged, data_dir) {
        let _ = fs::remove_dir_all(&staged);
        return Err(e.into());
    }
    sync_dir(parent)?;
    // The restore itself is on the record: entries after `audit_head` were
    // not in the backup, and their numbers are given out again from here.
    let mut store = Store::open(data_dir)?;
    let signer = store.data_dir().signer()?;
    store.append_audit(
        &[AuditEntry {
            principal: "cli".into(),
            role: "operator".into(),
            endpoint: "veil restore".into(),
            request: serde_json::json!({
                "backup_taken_at": taken_at,
                "audit_head": audit_head,
                "entries": entries,
            })
            .to_string(),
            privacy: "{}".into(),
            outcome: "ok".into(),
            ..Default::default()
        }],
        &signer,
    )?;
    Ok(RestoreReport {
        deployment,
        taken_at,
        entries,
        audit_head,
        ledger_rows,
        data_unchanged,
        data_missing,
    })
}

/// Writes the data directory into `root` and runs every check a start
/// makes, and the whole chain: the entries, the head and the ledger rows.
fn rebuild(
    root: &Path,
    members: &[(&str, u32, Vec<u8>)],
    from: &Path,
    deployment: &str,
    bad: impl Fn(String) -> StoreError,
) -> Result<(i64, i64, i64), StoreError> {
    fs::create_dir(root)?;
    set_mode(root, 0o700)?;
    fs::create_dir_all(root.join("secrets"))?;
    set_mode(&root.join("secrets"), 0o700)?;
    for (name, mode, data) in members {
        let path = root.join(name);
        write_private(&path, data)?;
        set_mode(&path, *mode)?;
    }
    let store_path = root.join("veil.db");
    fs::copy(from, &store_path)?;
    set_mode(&store_path, 0o600)?;
    {
        let conn = Connection::open(&store_path)?;
        // The secrets leave the store's own file: dropped, then the pages
        // they were on rewritten.
        conn.execute_batch(
            "DROP TABLE veil_backup; DROP TABLE veil_backup_manifest; DROP TABLE veil_backup_data; VACUUM;",
        )?;
    }
    fs::File::open(&store_path)?.sync_all()?;
    sync_dir(root)?;
    let store = Store::open(root)?;
    if store.deployment()? != deployment {
        return Err(bad("its store is another deployment's".into()));
    }
    store.check_pages()?;
    match store.verify_audit(&store.data_dir().public_key()?)? {
        ChainReport::Intact {
            entries,
            head,
            ledger_rows,
            ..
        } => Ok((entries, head, ledger_rows)),
        ChainReport::Broken { seq, reason } => Err(bad(format!(
            "its audit chain is broken at entry {seq}: {reason}"
        ))),
    }
}
