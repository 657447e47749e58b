//! End-to-end tests of the `veil` binary: generation, registration with its
//! refusals, principals, policy checks, queries and the demo.

mod common;

use std::path::{Path, PathBuf};

use common::*;

#[test]
fn generate_gives_the_same_bytes_for_the_same_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for (dir, seed) in [(&a, "5"), (&b, "5"), (&c, "6")] {
        let out = veil(&[
            "datasets",
            "generate",
            "--out",
            s(dir),
            "--persons",
            "3000",
            "--seed",
            seed,
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let (stdout, _) = text(&veil(&[
        "datasets",
        "generate",
        "--out",
        s(&tmp.path().join("d")),
        "--persons",
        "3000",
        "--seed",
        "5",
    ]));
    assert!(
        stdout.contains("population") && stdout.contains("3000 rows"),
        "{stdout}"
    );
    for table in TABLES {
        for ext in ["parquet", "toml"] {
            let name = format!("{table}.{ext}");
            let bytes = std::fs::read(a.join(&name)).unwrap();
            assert_eq!(bytes, std::fs::read(b.join(&name)).unwrap(), "{name}");
            if ext == "parquet" {
                assert_ne!(bytes, std::fs::read(c.join(&name)).unwrap(), "{name}");
            }
        }
    }
}

/// A copy of the PUMS sample and its manifest in a fresh folder, with the
/// manifest edited by `edit`.
fn pums_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(repo("datasets/pums/PUMS_pid.csv"), dir.join("PUMS_pid.csv")).unwrap();
    let manifest = std::fs::read_to_string(repo("datasets/pums/pums_pid.toml")).unwrap();
    let path = dir.join("pums_pid.toml");
    std::fs::write(&path, edit(manifest)).unwrap();
    path
}

#[test]
fn pums_registers_and_broken_manifests_are_refused_with_a_message_per_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A data directory whose data authority is another refuses it.
    let elsewhere = tmp.path().join("elsewhere");
    let out = veil(&[
        "init",
        "--data-dir",
        s(&elsewhere),
        "--authority",
        "another bureau",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = veil(&[
        "datasets",
        "register",
        "--data-dir",
        s(&elsewhere),
        s(&repo("datasets/pums/pums_pid.toml")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("approving_institution"), "{stderr}");
    assert!(stderr.contains("`another bureau`"), "{stderr}");
    // Without one, the operator's registration is not checked against any.
    let out = veil(&[
        "datasets",
        "register",
        "--data-dir",
        s(&data),
        s(&repo("datasets/pums/pums_pid.toml")),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("registered pums_pid version 1 (1000 rows, 7 fields"),
        "{stdout}"
    );
    let again = text(&veil(&[
        "datasets",
        "register",
        "--data-dir",
        s(&data),
        s(&repo("datasets/pums/pums_pid.toml")),
    ]))
    .0;
    assert!(again.contains("unchanged"), "{again}");

    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "renamed",
            Box::new(|m| m.replacen("name = \"age\"", "name = \"agee\"", 1)),
            vec![
                "field `agee`: is declared but the file has no such column",
                "column `age`: is in the file but not in the manifest",
            ],
        ),
        (
            "grade",
            Box::new(|m| m.replacen("grade = \"L4\"", "grade = \"L9\"", 1)),
            vec!["field `age`: grade `L9` is not defined by the active policy"],
        ),
        (
            "unit",
            Box::new(|m| m.replace("privacy_unit = \"pid\"\n", "")),
            vec!["no `privacy_unit`"],
        ),
        (
            "unclassified",
            Box::new(|m| m.replacen("category = \"demographic\"\n", "", 1)),
            vec!["field `age`: is unclassified: `category` missing"],
        ),
        (
            "outside",
            Box::new(|m| m.replace("path = \"PUMS_pid.csv\"", "path = \"../data/veil.db.csv\"")),
            vec!["leaves the manifest's directory"],
        ),
        (
            "absolute",
            Box::new(|m| m.replace("path = \"PUMS_pid.csv\"", "path = \"/etc/passwd.csv\"")),
            vec!["not absolute"],
        ),
        (
            "type",
            Box::new(|m| m.replace("type = \"float\"", "type = \"integer\"")),
            vec![
                "field `income`: is declared `integer` but line 2 of the file holds a value that is not one",
            ],
        ),
        (
            "several",
            Box::new(|m| {
                m.replacen("grade = \"L4\"", "grade = \"L9\"", 1)
                    .replace("privacy_unit = \"pid\"\n", "")
                    .replace("attribute = \"not_open\"", "attribute = \"half_open\"")
            }),
            vec![
                "grade `L9`",
                "no `privacy_unit`",
                "not a known open attribute",
            ],
        ),
    ];
    for (name, edit, expected) in cases {
        let manifest = pums_copy(&tmp.path().join(name), edit);
        let out = veil(&["datasets", "register", "--data-dir", s(&data), s(&manifest)]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{name}: missing `{e}` in\n{stderr}");
        }
        assert!(!stderr.contains("17000"), "{name}: a cell value was echoed");
    }

    // A symbolic link that leads out of the manifest's folder.
    #[cfg(unix)]
    {
        let dir = tmp.path().join("link");
        let manifest = pums_copy(&dir, |m| {
            m.replace("path = \"PUMS_pid.csv\"", "path = \"data.csv\"")
        });
        std::os::unix::fs::symlink(
            tmp.path().join("renamed/PUMS_pid.csv"),
            dir.join("data.csv"),
        )
        .unwrap();
        let (_, stderr) = text(&veil(&[
            "datasets",
            "register",
            "--data-dir",
            s(&data),
            s(&manifest),
        ]));
        assert!(
            stderr.contains("leads outside the manifest's directory through a symbolic link"),
            "{stderr}"
        );
        // The operator may name the file explicitly.
        let out = veil(&[
            "datasets",
            "register",
            "--data-dir",
            s(&data),
            "--file",
            s(&dir.join("data.csv")),
            s(&manifest),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
}

#[test]
fn principals_get_a_key_once_and_revocation_takes_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = veil(&[
        "principal",
        "add",
        "--data-dir",
        s(&dir),
        "--name",
        "alice",
        "--role",
        "consumer",
        "--org",
        "Civil Affairs",
        "--region",
        "530100",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let key = stdout.lines().last().unwrap();
    assert!(key.starts_with("veil_") && key.len() == 69, "{key}");
    let listed = text(&veil(&["principal", "list", "--data-dir", s(&dir)])).0;
    assert!(listed.contains("alice") && listed.contains("530100") && !listed.contains(key));
    let dup = veil(&[
        "principal",
        "add",
        "--data-dir",
        s(&dir),
        "--name",
        "alice",
        "--role",
        "consumer",
    ]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(text(&dup).1.contains("already exists"));
    let bad = veil(&[
        "principal",
        "add",
        "--data-dir",
        s(&dir),
        "--name",
        "bob",
        "--role",
        "king",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).1.contains("unknown role `king`"));
    let revoked = veil(&[
        "principal",
        "revoke",
        "--data-dir",
        s(&dir),
        "--name",
        "alice",
    ]);
    assert!(text(&revoked).0.contains("revoked 1 key(s)"));
    let missing = veil(&[
        "principal",
        "revoke",
        "--data-dir",
        s(&dir),
        "--name",
        "nobody",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    let usage = veil(&["principal", "add", "--data-dir", s(&dir)]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "missing arguments are a usage error"
    );
}

#[test]
fn policy_check_reports_every_problem() {
    let preset = repo("policies/presets/default.toml");
    let out = veil(&[
        "policy",
        "check",
        s(&preset),
        s(&repo("datasets/manifests/population.toml")),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("ok (policy `default`, 6 grades"));
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "format = 1\nname = \"x\"\n[[grade]]\nname = \"L1\"\napprover = \"mayor\"\nk = 1\n",
    )
    .unwrap();
    let out = veil(&["policy", "check", s(&bad)]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    for e in [
        "unknown approver `mayor`",
        "`k` must be at least 2",
        "`grant_days` is required",
        "`epsilon` is required",
    ] {
        assert!(stderr.contains(e), "missing `{e}` in {stderr}");
    }
}

#[test]
fn query_prints_the_api_json_and_refusals_exit_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _) = deployment(tmp.path());
    let out = veil(&[
        "query",
        "--data-dir",
        s(&dir),
        "--as",
        "carol",
        "--sql",
        "SELECT name, county_code FROM population ORDER BY county_code LIMIT 3",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["columns"][0]["name"], "name");
    assert_eq!(answer["columns"][1]["type"], "Utf8");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 3);
    assert!(answer["rows"][0][0].as_str().unwrap().contains('*'));
    assert_eq!(answer["provenance"]["datasets"][0], "population");
    assert!(
        answer["provenance"]["providers"][0]
            .as_str()
            .unwrap()
            .contains("公安")
    );
    assert!(
        answer["provenance"]["retrieved_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(answer["privacy"]["mode"], "protected");
    assert_eq!(answer["privacy"]["epsilon_spent"], 0.0);
    assert!(
        answer["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("v1-")
    );

    let refusals = [
        (
            "carol",
            "SELECT COUNT(*) FROM population WHERE phone = '13800000000'",
            "policy_denied",
        ),
        ("carol", "EXPLAIN SELECT 1", "invalid_sql"),
        ("carol", "SELECT * FROM secrets", "not_found"),
        ("nobody", "SELECT 1", "not_found"),
        ("root", "SELECT 1", "forbidden"),
    ];
    for (who, sql, code) in refusals {
        let out = veil(&["query", "--data-dir", s(&dir), "--as", who, "--sql", sql]);
        let (stdout, _) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{sql}");
        let error: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{sql}: {stdout}"));
        assert_eq!(error["error"]["code"], code, "{sql}");
        assert!(
            !error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("13800000000")
        );
    }
}

#[test]
fn demo_sets_up_everything_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = veil(&[
        "demo",
        "--data-dir",
        s(&dir),
        "--persons",
        "2000",
        "--no-serve",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let keys = std::fs::read_to_string(dir.join("demo-keys.toml")).unwrap();
    assert_eq!(keys.matches("key = \"veil_").count(), 8, "{keys}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("demo-keys.toml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let listed = text(&veil(&["datasets", "list", "--data-dir", s(&dir)])).0;
    for name in ["population", "health_visits", "pums_pid"] {
        assert!(listed.contains(name), "{listed}");
    }
    // A second run changes nothing: same keys, same catalog versions.
    assert!(
        veil(&[
            "demo",
            "--data-dir",
            s(&dir),
            "--persons",
            "2000",
            "--no-serve"
        ])
        .status
        .success()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("demo-keys.toml")).unwrap(),
        keys
    );
    // The demo's sharing request for its provider is opened once.
    let requests = text(&veil(&["request", "list", "--data-dir", s(&dir)])).0;
    let sharing = requests
        .lines()
        .filter(|l| l.contains(" sharing ") && l.contains("social_insurance"))
        .count();
    assert_eq!(sharing, 1, "{requests}");
    assert!(
        text(&veil(&["datasets", "list", "--data-dir", s(&dir)]))
            .0
            .contains("v1 ")
    );
    let out = veil(&[
        "query",
        "--data-dir",
        s(&dir),
        "--as",
        "demo-kunming",
        "--sql",
        "SELECT DISTINCT county_code FROM population",
    ]);
    let answer: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let rows = answer["rows"].as_array().unwrap();
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r[0].as_str().unwrap().starts_with("5301"))
    );

    // Without --no-serve the demo serves the API with the keys it wrote.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["demo", "--data-dir", s(&dir), "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for _ in 0..40 {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.strip_prefix("Serving the API on http://") {
            addr = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let addr = addr.expect("the demo prints where it serves");
    let post_as = |principal: &str, path: &str, body: &[u8]| {
        let section = format!("[{principal}]");
        let key = keys
            .split(&section)
            .nth(1)
            .unwrap()
            .split('"')
            .nth(3)
            .unwrap();
        request(
            &addr,
            "POST",
            path,
            Some(key),
            &[("Content-Type", "application/json")],
            Some(body),
        )
    };
    let answer = post_as(
        "demo-consumer",
        "/v1/query",
        br#"{"sql": "SELECT COUNT(*) AS n FROM population"}"#,
    );
    // The demo modeler is qualified (Art. 39) and trains inside.
    let model = post_as(
        "demo-modeler",
        "/v1/models",
        br#"{"template": "linear_regression", "features": ["tax.revenue"], "target": "tax.tax_paid", "epsilon": 0.5}"#,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer.json()["rows"][0][0], 2000);
    assert_eq!(model.status, 201, "{}", model.text());
}

#[test]
fn calendar_deadlines_count_working_days_and_say_when_they_assume() {
    let out = veil(&[
        "calendar",
        "deadline",
        "--from",
        "2026-09-30",
        "--days",
        "5",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0.trim(), "2026-10-13");
    assert!(text(&out).1.is_empty());
    let out = veil(&[
        "calendar",
        "deadline",
        "--from",
        "2026-12-30",
        "--days",
        "3",
    ]);
    assert_eq!(text(&out).0.trim(), "2027-01-04");
    assert!(
        text(&out).1.contains("Monday to Friday assumed"),
        "{:?}",
        text(&out)
    );
    let out = veil(&[
        "calendar",
        "deadline",
        "--from",
        "2026-02-30",
        "--days",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
