//! What was acknowledged cannot vanish unnoticed (issue 18), end to end on
//! the real binary and the real store: a log cut after SIGKILL, a store
//! emptied, replaced or damaged, a swapped signing key and an edited
//! budget are each refused at start, with a reason and no service.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Starts `veil serve` and expects it to refuse: its stderr. A server that
/// starts after all is killed, and the test fails.
fn refused_start(dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["serve", "--data-dir", s(dir), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return stderr;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the server started over a tampered data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sql(dir: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(dir.join("veil.db")).unwrap();
    conn.execute_batch(statements).unwrap();
}

fn sql_file(file: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.execute_batch(statements).unwrap();
}

fn one(dir: &Path, query: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("veil.db")).unwrap();
    conn.query_row(query, [], |r| r.get(0)).unwrap()
}

fn audit_verify(dir: &Path) -> (bool, String) {
    let out = veil(&["audit", "verify", "--data-dir", s(dir)]);
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A deployment that answered queries, some under DP, and was killed.
fn used_and_killed(tmp: &Path) -> std::path::PathBuf {
    let (dir, carol, _root) = deployment(tmp);
    let mut server = Server::start(&dir, &[]);
    for i in 0..70 {
        let r = server.post_json(
            "/v1/query",
            Some(&carol),
            &json!({ "sql": format!("SELECT {i}") }),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for _ in 0..2 {
        let r = server.post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": "SELECT COUNT(*) FROM health_visits", "epsilon": 0.1}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // SIGKILL: no shutdown checkpoint is signed.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    dir
}

#[test]
fn a_cut_audit_log_is_refused_and_its_sequence_numbers_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = used_and_killed(tmp.path());
    let (ok, report) = audit_verify(&dir);
    assert!(ok, "{report}");
    let end = one(&dir, "SELECT MAX(seq) FROM audit_log");
    let signed = one(&dir, "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints");
    assert!(end > signed && signed >= 64, "{signed} < {end}");
    assert!(
        report.contains(&format!("signed head (entry {end})")),
        "{report}"
    );

    // Each cut, on a copy: the unsigned tail, the tail and its checkpoints,
    // everything.
    for (i, cut) in [
        format!("DELETE FROM audit_log WHERE seq > {signed}"),
        "DELETE FROM audit_log WHERE seq > 10; DELETE FROM audit_checkpoints WHERE seq > 10"
            .to_owned(),
        "DELETE FROM audit_log; DELETE FROM audit_checkpoints".to_owned(),
        // The last entry rewritten, its hash recomputed or not.
        format!("UPDATE audit_log SET request = 'SELECT 0' WHERE seq = {end}"),
    ]
    .iter()
    .enumerate()
    {
        let copy = tmp.path().join(format!("cut{i}"));
        copy_dir(&dir, &copy);
        sql(&copy, cut);
        let (ok, report) = audit_verify(&copy);
        assert!(!ok, "{cut}: {report}");
        assert!(report.contains("broken"), "{cut}: {report}");
        let stderr = refused_start(&copy);
        assert!(stderr.contains("restore"), "{cut}: {stderr}");
        // Nor does a command append over it.
        let before = one(&copy, "SELECT COUNT(*) FROM audit_log");
        let out = veil(&["principal", "list", "--data-dir", s(&copy)]);
        assert!(!out.status.success(), "{cut}");
        assert_eq!(
            one(&copy, "SELECT COUNT(*) FROM audit_log"),
            before,
            "{cut}"
        );
    }
    // Nor is a cut store backed up as if it were whole.
    let cut_copy = tmp.path().join("cut-backup");
    copy_dir(&dir, &cut_copy);
    sql(
        &cut_copy,
        &format!("DELETE FROM audit_log WHERE seq > {signed}"),
    );
    let file = tmp.path().join("cut.veil");
    let out = veil(&["backup", "--data-dir", s(&cut_copy), "--out", s(&file)]);
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(!file.exists());
    let stderr = refused_start(&{
        let copy = tmp.path().join("tail");
        copy_dir(&dir, &copy);
        sql(
            &copy,
            &format!("DELETE FROM audit_log WHERE seq > {signed}"),
        );
        copy
    });
    assert!(
        stderr.contains(&format!("signed head is entry {end}")),
        "{stderr}"
    );

    // The untouched directory serves again, numbering after the head.
    let server = Server::start(&dir, &[]);
    assert_eq!(server.get("/healthz", None).status, 200);
    drop(server);
    assert!(one(&dir, "SELECT MAX(seq) FROM audit_log") >= end);
}

#[test]
fn a_lost_replaced_or_damaged_store_or_key_is_not_a_new_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = used_and_killed(tmp.path());
    let other = tmp.path().join("other");
    init(&other);
    let fresh = |name: &str| {
        let copy = tmp.path().join(name);
        copy_dir(&dir, &copy);
        copy
    };
    let remove_store = |d: &Path| {
        for f in ["veil.db", "veil.db-wal", "veil.db-shm"] {
            let _ = std::fs::remove_file(d.join(f));
        }
    };
    // What was done, and what the refusal says. Every command refuses
    // each; the last, a damaged page, is found by the page check a service
    // runs at start (and `audit verify`), so a command that reads only the
    // principals may still run over it.
    type Tamper<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "zero-length store",
            Box::new(|d: &Path| {
                remove_store(d);
                std::fs::write(d.join("veil.db"), b"").unwrap();
            }),
            "missing or empty",
        ),
        (
            "store removed",
            Box::new(|d: &Path| remove_store(d)),
            "missing or empty",
        ),
        (
            "signing key swapped",
            Box::new(|d: &Path| {
                std::fs::copy(
                    other.join("secrets/signing.key"),
                    d.join("secrets/signing.key"),
                )
                .unwrap();
            }),
            "is not the key public.key publishes",
        ),
        (
            "another deployment's store",
            Box::new(|d: &Path| {
                remove_store(d);
                for f in ["veil.db", "veil.db-wal"] {
                    if other.join(f).exists() {
                        std::fs::copy(other.join(f), d.join(f)).unwrap();
                    }
                }
            }),
            "another deployment's store",
        ),
        (
            "the newest head damaged and the entry it names removed",
            Box::new(|d: &Path| {
                let mut bytes = std::fs::read(d.join("audit.head")).unwrap();
                // Whichever slot is newer; damaging both is no better.
                for at in [20, 512 + 20] {
                    bytes[at] ^= 1;
                    std::fs::write(d.join("audit.head"), &bytes).unwrap();
                    bytes[at] ^= 1;
                    if veil(&["principal", "list", "--data-dir", s(d)])
                        .status
                        .success()
                    {
                        panic!("a damaged head slot was skipped");
                    }
                }
                bytes[20] ^= 1;
                std::fs::write(d.join("audit.head"), &bytes).unwrap();
                sql(
                    d,
                    "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
                );
            }),
            "audit.head does not hold two heads",
        ),
        (
            "the signing key removed",
            Box::new(|d: &Path| std::fs::remove_file(d.join("secrets/signing.key")).unwrap()),
            "secrets/signing.key is missing",
        ),
        (
            "the master secret swapped",
            Box::new(|d: &Path| {
                std::fs::copy(
                    other.join("secrets/master.key"),
                    d.join("secrets/master.key"),
                )
                .unwrap();
            }),
            "master.key is not this deployment's",
        ),
        (
            "heads removed",
            Box::new(|d: &Path| std::fs::remove_file(d.join("audit.head")).unwrap()),
            "audit.head is missing",
        ),
        (
            "the last charge removed",
            Box::new(|d: &Path| {
                sql(
                    d,
                    "DELETE FROM dp_ledger WHERE id = (SELECT MAX(id) FROM dp_ledger)",
                )
            }),
            "privacy ledger",
        ),
        (
            "a budget given back by an edit",
            Box::new(|d: &Path| {
                sql(
                    d,
                    "UPDATE dp_ledger SET epsilon = 0, rho = 0, delta = 0 WHERE id = 1",
                )
            }),
            "privacy ledger",
        ),
        (
            "a damaged page",
            Box::new(|d: &Path| {
                sql(d, "PRAGMA wal_checkpoint(TRUNCATE)");
                let root = one(
                    d,
                    "SELECT rootpage FROM sqlite_master WHERE name = 'request_steps'",
                );
                let size = one(d, "PRAGMA page_size");
                let mut bytes = std::fs::read(d.join("veil.db")).unwrap();
                let at = ((root - 1) * size) as usize;
                bytes[at..at + 12].fill(0x5a);
                std::fs::write(d.join("veil.db"), bytes).unwrap();
            }),
            "",
        ),
    ];
    let full_checks_only = cases.len() - 1;
    for (i, (what, tamper, says)) in cases.iter().enumerate() {
        let copy = fresh(&format!("case{i}"));
        let published = std::fs::read(copy.join("public.key")).unwrap();
        tamper(&copy);
        let stderr = refused_start(&copy);
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        let query = veil(&[
            "query",
            "--data-dir",
            s(&copy),
            "--as",
            "carol",
            "--sql",
            "SELECT COUNT(*) FROM health_visits",
            "--epsilon",
            "0.1",
        ]);
        assert!(!query.status.success(), "{what}: {:?}", text(&query));
        // No command starts a new deployment over it either.
        if i < full_checks_only {
            let out = veil(&["principal", "list", "--data-dir", s(&copy)]);
            assert!(!out.status.success(), "{what}: {:?}", text(&out));
        }
        let (ok, report) = audit_verify(&copy);
        assert!(!ok, "{what}: {report}");
        assert!(!report.contains("entry 0"), "{what}: {report}");
        // A refused directory keeps the key it published.
        if !what.contains("swapped") {
            assert_eq!(
                std::fs::read(copy.join("public.key")).unwrap(),
                published,
                "{what}"
            );
        }
        if i < 2 {
            let len = std::fs::metadata(copy.join("veil.db")).map_or(0, |m| m.len());
            assert_eq!(len, 0, "{what}: a store was made");
        }
    }
    // Settings removed over a cut log, with the heads: refused, never a new
    // identity. Settings removed alone (or a first start that stopped
    // between its heads and its settings): the store reaches the heads,
    // and their identity is taken back.
    let cut = fresh("settings-and-heads");
    sql(
        &cut,
        "DROP TRIGGER settings_no_delete; DELETE FROM settings WHERE key IN ('deployment', 'public_key', 'master_key_id'); DELETE FROM audit_log WHERE seq > 10",
    );
    std::fs::remove_file(cut.join("audit.head")).unwrap();
    let stderr = refused_start(&cut);
    assert!(stderr.contains("no deployment identity"), "{stderr}");
    let mended = fresh("settings-only");
    sql(
        &mended,
        "DROP TRIGGER settings_no_delete; DELETE FROM settings WHERE key IN ('deployment', 'public_key', 'master_key_id')",
    );
    let out = veil(&["principal", "list", "--data-dir", s(&mended)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(audit_verify(&mended).0);

    // A new, empty directory is still made into a deployment.
    let new = tmp.path().join("new");
    let out = veil(&["principal", "list", "--data-dir", s(&new)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(audit_verify(&new).0);
}

#[test]
fn a_backup_taken_under_load_restores_with_its_chain_budgets_and_receipts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    // One client asks, one answer after another, plain and DP (ε = 0.1,
    // ρ = 0.005 each), as CSV so that each receipt is kept by request id.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (addr, key, stop) = (server.addr.clone(), carol.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let dp = i % 5 == 0;
                let body = if dp {
                    json!({"sql": "SELECT COUNT(*) FROM health_visits", "epsilon": 0.1})
                } else {
                    json!({ "sql": format!("SELECT {i}") })
                };
                let r = request(
                    &addr,
                    "POST",
                    "/v1/query",
                    Some(&key),
                    &[("Content-Type", "application/json"), ("Accept", "text/csv")],
                    Some(body.to_string().as_bytes()),
                );
                if r.status != 200 {
                    continue;
                }
                let id = r.header("veil-request-id").unwrap().to_owned();
                let receipt = request(
                    &addr,
                    "GET",
                    &format!("/v1/receipts/{id}"),
                    Some(&key),
                    &[],
                    None,
                );
                assert_eq!(receipt.status, 200, "{}", receipt.text());
                answers.push((id, receipt.json()["receipt"].clone(), dp));
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let file = tmp.path().join("backup.veil");
    let out = veil(&["backup", "--data-dir", s(&dir), "--out", s(&file)]);
    assert!(out.status.success(), "{:?}", text(&out));
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let answers = load.join().unwrap();
    drop(server);
    // The file holds the secrets: owner only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A backup is restored into a new directory only, after every check.
    let restored = tmp.path().join("restored");
    let refused = veil(&["restore", "--from", s(&file), "--data-dir", s(&dir)]);
    assert!(!refused.status.success());
    // What is not a whole backup is said so, and a backup whose store was
    // edited does not check.
    let not_backup = tmp.path().join("not-a-backup");
    std::fs::write(&not_backup, b"hello").unwrap();
    let truncated = tmp.path().join("truncated.veil");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let forged = tmp.path().join("forged.veil");
    std::fs::copy(&file, &forged).unwrap();
    sql_file(
        &forged,
        "UPDATE dp_ledger SET epsilon = 0, rho = 0 WHERE id = 1",
    );
    for (bad, says) in [
        (&not_backup, "is not a whole veil backup"),
        (&truncated, "backup"),
        (&forged, "the backup does not check: the privacy ledger"),
    ] {
        let target = tmp.path().join("nowhere");
        let out = veil(&["restore", "--from", s(bad), "--data-dir", s(&target)]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{}", bad.display());
        assert!(stderr.contains(says), "{}: {stderr}", bad.display());
        assert!(!stderr.contains("veil restore"), "{stderr}{stdout}");
        assert!(!target.exists(), "a refused restore left a directory");
    }
    let out = veil(&["restore", "--from", s(&file), "--data-dir", s(&restored)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("the audit chain is intact"), "{stdout}");
    let (ok, report) = audit_verify(&restored);
    assert!(ok, "{report}");

    // Receipts: the answers acknowledged before the snapshot are all there,
    // the same, and none after; the backup was taken mid-load.
    let server = Server::start(&restored, &[]);
    let kept: Vec<bool> = answers
        .iter()
        .map(|(id, receipt, _)| {
            let r = server.get(&format!("/v1/receipts/{id}"), Some(&carol));
            if r.status == 200 {
                assert_eq!(&r.json()["receipt"], receipt, "a receipt changed");
            }
            r.status == 200
        })
        .collect();
    let prefix = kept.iter().take_while(|k| **k).count();
    assert!(kept[prefix..].iter().all(|k| !k), "{kept:?}");
    assert!(
        prefix > 0 && prefix < answers.len(),
        "{prefix} of {}",
        answers.len()
    );

    // Budgets: what was spent up to the snapshot, to the charge in flight.
    let dp_before = answers[..prefix].iter().filter(|a| a.2).count() as f64;
    let budget = server.get("/v1/budget", Some(&carol)).json();
    let rho = budget["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["dataset"] == "health_visits")
        .unwrap()["spent"]["zcdp"]["rho"]
        .as_f64()
        .unwrap();
    assert!(
        rho >= 0.005 * dp_before - 1e-9 && rho <= 0.005 * (dp_before + 1.0) + 1e-9,
        "ρ spent {rho}, {dp_before} DP answers before the backup"
    );
    // The restore is on the record, and the restored service answers.
    let r = server.post_json("/v1/query", Some(&carol), &json!({"sql": "SELECT 1"}));
    assert_eq!(r.status, 200, "{}", r.text());
    drop(server);
    let conn = rusqlite::Connection::open(restored.join("veil.db")).unwrap();
    let restores: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE endpoint = 'veil restore'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(restores, 1);
    // No secret is left in the restored store's file.
    let key = std::fs::read(restored.join("secrets/master.key")).unwrap();
    let db = std::fs::read(restored.join("veil.db")).unwrap();
    assert!(!db.windows(key.len()).any(|w| w == key.as_slice()));
}
