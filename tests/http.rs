//! End-to-end tests of the HTTP API: the real binary on a real port, every
//! endpoint and every error code of contract.md.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

fn query(server: &Server, key: &str, sql: &str) -> Response {
    server.post_json("/v1/query", Some(key), &json!({"sql": sql}))
}

#[test]
fn errors_have_stable_codes_and_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);

    assert_eq!(server.get("/healthz", None).json()["status"], "ok");
    let cases: Vec<(Response, u16, &str)> = vec![
        (server.get("/v1/catalog", None), 401, "unauthenticated"),
        (
            server.get("/v1/catalog", Some("veil_0000")),
            401,
            "unauthenticated",
        ),
        (
            server.request(
                "GET",
                "/v1/catalog",
                None,
                &[("Authorization", "Basic abc")],
                None,
            ),
            401,
            "unauthenticated",
        ),
        (query(&server, &root, "SELECT 1"), 403, "forbidden"),
        (server.get("/v1/principals", Some(&carol)), 403, "forbidden"),
        (
            server.request(
                "POST",
                "/v1/query",
                Some(&carol),
                &[("Content-Type", "application/json")],
                Some(b"{not json"),
            ),
            400,
            "bad_request",
        ),
        (
            server.post_json("/v1/query", Some(&carol), &json!({"sql": 5})),
            400,
            "bad_request",
        ),
        (
            server.post_json(
                "/v1/query",
                Some(&carol),
                &json!({"sql": "SELECT 1", "limit": 5}),
            ),
            400,
            "bad_request",
        ),
        (
            server.request(
                "POST",
                "/v1/query",
                Some(&carol),
                &[],
                Some(b"{\"sql\": \"SELECT 1\"}"),
            ),
            400,
            "bad_request",
        ),
        (
            server.post_json(
                "/v1/query",
                Some(&carol),
                &json!({"sql": "SELECT COUNT(*) FROM health_visits", "epsilon": -1}),
            ),
            400,
            "bad_request",
        ),
        (query(&server, &carol, "SELEC 1"), 400, "invalid_sql"),
        (
            query(&server, &carol, "EXPLAIN SELECT * FROM population"),
            400,
            "invalid_sql",
        ),
        (
            query(&server, &carol, "SELECT * FROM no_such_table"),
            404,
            "not_found",
        ),
        (
            query(
                &server,
                &carol,
                "SELECT COUNT(*) FROM population WHERE phone = '13812345678'",
            ),
            403,
            "policy_denied",
        ),
        (
            server.get("/v1/nothing/here", Some(&carol)),
            404,
            "not_found",
        ),
        (
            server.get("/v1/catalog/no_such/versions", Some(&root)),
            404,
            "not_found",
        ),
        (
            server.post_json(
                "/v1/principals",
                Some(&root),
                &json!({"name": "carol", "role": "consumer"}),
            ),
            409,
            "conflict",
        ),
        (
            server.request(
                "POST",
                "/v1/query",
                Some(&carol),
                &[("Content-Type", "application/json")],
                Some(&vec![b' '; 2 << 20]),
            ),
            413,
            "payload_too_large",
        ),
        (
            server.request(
                "POST",
                "/v1/query",
                Some(&carol),
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "image/png"),
                ],
                Some(b"{\"sql\": \"SELECT 1\"}"),
            ),
            400,
            "bad_request",
        ),
    ];
    for (i, (response, status, code)) in cases.iter().enumerate() {
        assert_eq!(response.status, *status, "case {i}: {}", response.text());
        assert_eq!(response.code(), *code, "case {i}");
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            !message.is_empty() && !message.contains("13812345678"),
            "case {i}: {message}"
        );
    }

    // An execution failure is `internal` and says nothing about its cause.
    std::fs::remove_file(dir.join("datasets/sample/tax.parquet")).unwrap();
    let failed = query(
        &server,
        &carol,
        "SELECT year, COUNT(*) FROM tax GROUP BY year",
    );
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert_eq!(failed.code(), "internal");
    assert!(!failed.text().contains("tax.parquet"));
}

#[test]
fn answers_stream_as_json_csv_and_arrow_with_receipts_checkable_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    let names = query(&server, &carol, "SELECT name FROM population LIMIT 5").json();
    assert_eq!(names["privacy"]["mode"], "protected");
    assert!(
        names["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[0].as_str().unwrap().ends_with('*'))
    );
    let sql = "SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code ORDER BY county_code LIMIT 5";

    let answer = query(&server, &carol, sql);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json = answer.json();
    assert_eq!(json["columns"][1]["name"], "n");
    assert_eq!(json["columns"][1]["type"], "Int64");
    assert_eq!(json["rows"].as_array().unwrap().len(), 5);
    assert!(json["rows"][0][1].as_i64().unwrap() > 0);
    assert_eq!(json["provenance"]["datasets"][0], "population");
    assert_eq!(json["truncated"], false);
    assert!(json["policy_version"].as_str().unwrap().starts_with("v1-"));

    // The receipt checks out against the body, offline, and a changed body fails.
    let public = dir.join("public.key");
    let saved = tmp.path().join("answer.json");
    std::fs::write(&saved, &answer.body).unwrap();
    let out = veil(&[
        "receipt",
        "verify",
        "--public-key",
        s(&public),
        "--answer",
        s(&saved),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("valid receipt"));
    let forged = String::from_utf8(answer.body.clone())
        .unwrap()
        .replacen("\"530", "\"531", 1);
    std::fs::write(&saved, forged).unwrap();
    let out = veil(&[
        "receipt",
        "verify",
        "--public-key",
        s(&public),
        "--answer",
        s(&saved),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("does not match the receipt"));

    // CSV: the same rows; its receipt is fetched by request id.
    let csv = server.request(
        "POST",
        "/v1/query",
        Some(&carol),
        &[("Content-Type", "application/json"), ("Accept", "text/csv")],
        Some(json!({"sql": sql}).to_string().as_bytes()),
    );
    assert_eq!(csv.status, 200);
    let lines: Vec<String> = csv.text().lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "county_code,n");
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[1],
        format!(
            "{},{}",
            json["rows"][0][0].as_str().unwrap(),
            json["rows"][0][1]
        )
    );
    let id = csv.header("veil-request-id").unwrap().to_owned();
    let receipt = server
        .get(&format!("/v1/receipts/{id}"), Some(&carol))
        .json()["receipt"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = tmp.path().join("answer.csv");
    std::fs::write(&body, &csv.body).unwrap();
    assert!(
        veil(&[
            "receipt",
            "verify",
            "--public-key",
            s(&public),
            "--body",
            s(&body),
            &receipt
        ])
        .status
        .success()
    );
    assert_eq!(
        server
            .get(&format!("/v1/receipts/{id}"), Some("veil_wrong"))
            .status,
        401
    );

    // Arrow IPC stream: readable by any Arrow implementation.
    let arrow = server.request(
        "POST",
        "/v1/query",
        Some(&carol),
        &[("Content-Type", "application/json"), ("Accept", "application/vnd.apache.arrow.stream")],
        Some(json!({"sql": "SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code"}).to_string().as_bytes()),
    );
    assert_eq!(arrow.status, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.body.clone()), None)
            .unwrap();
    // Its schema says what the JSON answer says around the rows.
    let meta = reader.schema().metadata().clone();
    let provenance: Value = serde_json::from_str(&meta["veil.provenance"]).unwrap();
    assert_eq!(provenance["datasets"], json!(["population"]), "{meta:?}");
    let privacy: Value = serde_json::from_str(&meta["veil.privacy"]).unwrap();
    assert!(privacy["mode"].is_string(), "{meta:?}");
    assert!(meta["veil.policy_version"].starts_with('v'), "{meta:?}");
    assert_eq!(meta["veil.max_rows"], "100000");
    let id = meta["veil.request_id"].clone();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert!(rows > 50, "{rows}");
    let receipt = server.get(&format!("/v1/receipts/{id}"), Some(&carol));
    assert_eq!(receipt.status, 200, "{}", receipt.text());

    // Rows beyond the policy's limit are cut, and the answer says so.
    let policy = std::fs::read_to_string(repo("policies/presets/default.toml"))
        .unwrap()
        .replace("max_rows = 100000", "max_rows = 7");
    let proposer = add_principal(&dir, "appr", "approver", &["--org", AUTHORITY]);
    let reviewer = add_principal(&dir, "appr2", "approver", &["--org", AUTHORITY]);
    let loaded = change_policy(&server, &proposer, &reviewer, &policy);
    assert_eq!(loaded.json()["state"], "active", "{}", loaded.text());
    let cut = query(&server, &carol, "SELECT county_code FROM population");
    assert_eq!(cut.json()["rows"].as_array().unwrap().len(), 7);
    assert_eq!(cut.json()["truncated"], true);
}

#[test]
fn keys_roles_and_administration_take_effect_on_the_next_request() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);

    let created = server.post_json(
        "/v1/principals",
        Some(&root),
        &json!({"name": "dora", "role": "consumer", "region": "530100"}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let dora = created.json()["api_key"].as_str().unwrap().to_owned();
    let listed = server.get("/v1/principals", Some(&root));
    assert!(listed.text().contains("dora") && !listed.text().contains(&dora));
    let counties = query(
        &server,
        &dora,
        "SELECT DISTINCT county_code FROM population",
    )
    .json();
    assert!(
        counties["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[0].as_str().unwrap().starts_with("5301"))
    );

    let suspend = server.request(
        "PUT",
        "/v1/principals/dora/status",
        Some(&root),
        &[("Content-Type", "application/json")],
        Some(br#"{"status": "suspended"}"#),
    );
    assert_eq!(suspend.status, 200);
    assert_eq!(query(&server, &dora, "SELECT 1").code(), "forbidden");
    server.request(
        "PUT",
        "/v1/principals/dora/status",
        Some(&root),
        &[("Content-Type", "application/json")],
        Some(br#"{"status": "active"}"#),
    );
    assert_eq!(query(&server, &dora, "SELECT 1").status, 200);
    let second = server
        .request("POST", "/v1/principals/dora/keys", Some(&root), &[], None)
        .json()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server
            .request("DELETE", "/v1/principals/dora/keys", Some(&root), &[], None)
            .json()["revoked"],
        2
    );
    assert_eq!(query(&server, &dora, "SELECT 1").code(), "unauthenticated");
    assert_eq!(
        query(&server, &second, "SELECT 1").code(),
        "unauthenticated"
    );

    // An admin does not lock the administration out: not itself, and not
    // the last active admin; with a second admin, one may suspend the other.
    let status = |key: &str, name: &str, to: &str| {
        server.request(
            "PUT",
            &format!("/v1/principals/{name}/status"),
            Some(key),
            &[("Content-Type", "application/json")],
            Some(format!(r#"{{"status": "{to}"}}"#).as_bytes()),
        )
    };
    assert_eq!(status(&root, "root", "suspended").code(), "conflict");
    let revoke_self = server.request("DELETE", "/v1/principals/root/keys", Some(&root), &[], None);
    assert_eq!(revoke_self.code(), "conflict");
    let other = server.post_json(
        "/v1/principals",
        Some(&root),
        &json!({"name": "root2", "role": "admin"}),
    );
    let root2 = other.json()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(status(&root2, "root", "suspended").status, 200);
    assert_eq!(status(&root2, "root2", "suspended").code(), "conflict");
    assert_eq!(status(&root2, "root", "active").status, 200);
    assert_eq!(server.get("/v1/principals", Some(&root)).status, 200);

    // Revoking from the CLI, while the server runs, takes effect at once too.
    assert_eq!(query(&server, &carol, "SELECT 1").status, 200);
    assert!(
        veil(&[
            "principal",
            "revoke",
            "--data-dir",
            s(&dir),
            "--name",
            "carol"
        ])
        .status
        .success()
    );
    assert_eq!(query(&server, &carol, "SELECT 1").code(), "unauthenticated");

    // The catalog is filtered per caller, with the caller's level per field.
    let fresh = server
        .post_json(
            "/v1/principals",
            Some(&root),
            &json!({"name": "erin", "role": "consumer"}),
        )
        .json()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let catalog = server.get("/v1/catalog", Some(&fresh)).json();
    let population = catalog["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "population")
        .unwrap()
        .clone();
    let level = |f: &str| {
        population["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == f)
            .unwrap()["level"]
            .clone()
    };
    assert_eq!(level("name"), "masked(name)");
    assert_eq!(level("ethnicity"), "dp");
    assert_eq!(level("county_code"), "plain");
    let subject = server
        .post_json(
            "/v1/principals",
            Some(&root),
            &json!({"name": "sam", "role": "subject", "subject": "11010519491231002X"}),
        )
        .json()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server.get("/v1/catalog", Some(&subject)).json()["datasets"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn approvers_manage_policies_and_datasets_and_read_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, root) = deployment(tmp.path());
    let authority = veil(&[
        "principal",
        "add",
        "--data-dir",
        s(&dir),
        "--name",
        "authority",
        "--role",
        "approver",
        "--org",
        "云南省数据局 (Yunnan Provincial Data Bureau)",
    ]);
    let authority = text(&authority).0.lines().last().unwrap().to_owned();
    let tax_office = veil(&[
        "principal",
        "add",
        "--data-dir",
        s(&dir),
        "--name",
        "taxoffice",
        "--role",
        "approver",
        "--org",
        "国家税务总局云南省税务局 (Yunnan Provincial Tax Service)",
    ]);
    let tax_office = text(&tax_office).0.lines().last().unwrap().to_owned();
    let server = Server::start(&dir, &[]);

    let policy = server.get("/v1/policy", Some(&authority)).json();
    assert_eq!(policy["version"], 1);
    let bad = server.request(
        "PUT",
        "/v1/policy",
        Some(&authority),
        &[("Content-Type", "application/json")],
        Some(br#"{"text": "format = 1\nname = \"x\"\n[[grade]]\nname = \"L1\"\nk = 1\n"}"#),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("`k` must be at least 2")
            && bad.text().contains("`approver` is required")
    );
    assert_eq!(
        server
            .request(
                "PUT",
                "/v1/policy",
                Some(&carol),
                &[("Content-Type", "application/json")],
                Some(b"{\"text\": \"\"}")
            )
            .status,
        403
    );
    let text_v2 = policy["text"]
        .as_str()
        .unwrap()
        .replace("name = \"default\"", "name = \"default-v2\"");
    let reviewer = add_principal(&dir, "reviewer", "approver", &["--org", AUTHORITY]);
    let loaded = change_policy(&server, &authority, &reviewer, &text_v2);
    assert_eq!(loaded.json()["state"], "active", "{}", loaded.text());
    assert_eq!(
        server.get("/v1/policy/versions", Some(&root)).json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        query(&server, &carol, "SELECT 1").json()["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("v2-")
    );

    // Register a copy of a sample table under the data directory.
    let manifest = std::fs::read_to_string(dir.join("datasets/sample/tax.toml"))
        .unwrap()
        .replace("name = \"tax\"", "name = \"tax_copy\"")
        .replace("path = \"tax.parquet\"", "path = \"sample/tax.parquet\"");
    let registered = server.post_json(
        "/v1/datasets",
        Some(&authority),
        &json!({"manifest": manifest}),
    );
    assert_eq!(registered.status, 201, "{}", registered.text());
    assert_eq!(
        query(&server, &carol, "SELECT COUNT(*) FROM tax_copy").status,
        200
    );
    let outside = manifest.replace(
        "path = \"sample/tax.parquet\"",
        "path = \"../veil.db.parquet\"",
    );
    let refused = server.post_json(
        "/v1/datasets",
        Some(&authority),
        &json!({"manifest": outside}),
    );
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("leaves the manifest's directory"));
    assert_eq!(
        server
            .get("/v1/catalog/tax_copy/versions", Some(&root))
            .json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The authority sees all use; the tax office only the use of its data.
    query(
        &server,
        &carol,
        "SELECT year, COUNT(*) FROM tax GROUP BY year",
    );
    query(
        &server,
        &carol,
        "SELECT sex, COUNT(*) FROM population GROUP BY sex",
    );
    let all = server
        .get("/v1/audit?principal=carol", Some(&authority))
        .json();
    let requests: Vec<String> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"].as_str().unwrap().to_owned())
        .collect();
    assert!(requests.iter().any(|r| r.contains("FROM population")));
    let own = server
        .get("/v1/audit?principal=carol", Some(&tax_office))
        .json();
    let entries = own["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| {
        e["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "tax" || d == "tax_copy")
    }));
    assert_eq!(server.get("/v1/audit", Some(&root)).status, 403);
    let verify = server.get("/v1/audit/verify", Some(&root)).json();
    assert_eq!(verify["intact"], true);
    assert!(verify["entries"].as_i64().unwrap() >= 8);
}

#[test]
fn docs_metrics_and_every_documented_route_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    let doc = server.get("/openapi.json", None).json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{dataset}", "population")
                .replace("{name}", "nobody")
                .replace("{request_id}", "x")
                .replace("{id}", "r-0")
                .replace("{action}", "approve");
            let r = server.request(
                &method.to_uppercase(),
                &concrete,
                Some(&root),
                &[("Content-Type", "application/json")],
                Some(b"{}"),
            );
            assert!(
                !r.text().contains("no such endpoint"),
                "{method} {path} is documented but not served"
            );
        }
    }
    let deadline = server
        .get("/v1/calendar/deadline?from=2026-09-30&days=5", Some(&root))
        .json();
    assert_eq!(deadline["deadline"], "2026-10-13");
    assert_eq!(deadline["assumed_years"], serde_json::json!([]));
    let later = server
        .get("/v1/calendar/deadline?from=2026-12-30&days=3", Some(&root))
        .json();
    assert_eq!(later["deadline"], "2027-01-04");
    assert_eq!(later["assumed_years"], serde_json::json!([2027]));
    assert!(
        later["note"]
            .as_str()
            .unwrap()
            .contains("Monday to Friday assumed")
    );
    for bad in ["from=2026-13-01&days=1", "from=2026-01-01", "days=2"] {
        let r = server.get(&format!("/v1/calendar/deadline?{bad}"), Some(&root));
        assert_eq!(r.code(), "bad_request", "{bad}");
    }
    let page = server.get("/docs", None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/openapi.json"));
    let metrics = server.get("/metrics", None).text();
    assert!(
        metrics.contains(
            "veil_http_requests_total{route=\"/openapi.json\",method=\"GET\",status=\"200\"}"
        ),
        "{metrics}"
    );
}

#[test]
fn rate_and_concurrency_limits_answer_rate_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _) = deployment(tmp.path());
    let server = Server::start(&dir, &["--requests-per-minute", "5"]);
    let statuses: Vec<u16> = (0..8)
        .map(|_| query(&server, &carol, "SELECT 1").status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "{statuses:?}"
    );
    let limited = query(&server, &carol, "SELECT 1");
    assert_eq!(
        (limited.status, limited.code().as_str()),
        (429, "rate_limited")
    );
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully_and_signs_the_audit_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, root) = deployment(tmp.path());
    let mut server = Server::start(&dir, &[]);
    for _ in 0..3 {
        assert_eq!(query(&server, &carol, "SELECT 1").status, 200);
    }
    let before = server.get("/v1/audit/verify", Some(&root)).json()["checkpoints"]
        .as_i64()
        .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let out = veil(&["audit", "verify", "--data-dir", s(&dir)]);
    assert!(out.status.success(), "{:?}", text(&out));
    let after: i64 = text(&out)
        .0
        .split(", ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, before + 1);
}

/// Acknowledged audit entries survive SIGKILL under load: every answer that
/// arrived with its receipt cites an entry that is in the log afterwards,
/// every answer whose head arrived has its release entry, and the chain is
/// intact.
#[cfg(unix)]
#[test]
fn acknowledged_audit_entries_survive_sigkill_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _) = deployment(tmp.path());
    let server = Server::start(&dir, &["--concurrency", "64"]);
    let addr = server.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let (addr, key, stop) = (addr.clone(), carol.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let tag = w * 100_000 + i;
                    let sql = format!("SELECT {tag} AS tag, county_code FROM population LIMIT 3");
                    let result = std::panic::catch_unwind(|| {
                        request(
                            &addr,
                            "POST",
                            "/v1/query",
                            Some(&key),
                            &[("Content-Type", "application/json")],
                            Some(json!({"sql": sql}).to_string().as_bytes()),
                        )
                    });
                    let Ok(r) = result else { break };
                    if r.status == 200 {
                        let seq = serde_json::from_slice::<serde_json::Value>(&r.body)
                            .ok()
                            .and_then(|j| {
                                let receipt = j["receipt"].as_str()?.to_owned();
                                Some(receipt)
                            });
                        acknowledged.push((sql, seq));
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<(String, Option<String>)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 20,
        "only {} requests were answered under load",
        acknowledged.len()
    );

    let out = veil(&["audit", "verify", "--data-dir", s(&dir)]);
    assert!(out.status.success(), "the chain survives: {:?}", text(&out));
    let log = audit_requests(&dir);
    for (sql, receipt) in &acknowledged {
        assert!(
            log.iter()
                .any(|(request, outcome)| request == sql && outcome == "released"),
            "release of `{sql}` lost"
        );
        if receipt.is_some() {
            assert!(
                log.iter()
                    .any(|(request, outcome)| request == sql && outcome == "completed"),
                "completion of `{sql}` lost"
            );
        }
    }
}

/// The (request, outcome) pairs of carol's audit entries, read through a
/// fresh server on the same data directory (the killed one is gone).
fn audit_requests(dir: &Path) -> Vec<(String, String)> {
    let server = Server::start(dir, &[]);
    let out = veil(&[
        "principal",
        "add",
        "--data-dir",
        s(dir),
        "--name",
        "auditor",
        "--role",
        "approver",
        "--org",
        "云南省数据局 (Yunnan Provincial Data Bureau)",
    ]);
    let key = text(&out).0.lines().last().unwrap().to_owned();
    let entries = server
        .get("/v1/audit?principal=carol&limit=10000", Some(&key))
        .json();
    entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["request"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn dp_budgets_cannot_be_overspent_by_concurrent_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _) = deployment(tmp.path());
    let server = Server::start(&dir, &["--concurrency", "32"]);
    let sql =
        "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category";

    // A dry run prices the query and spends nothing.
    let dry = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": sql, "epsilon": 0.25, "dry_run": true}),
        )
        .json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["costs"][0]["dataset"], "health_visits");
    assert_eq!(dry["costs"][0]["fits"], true);
    // Accuracy before spending: the ε that reaches a target half-width,
    // which a dry run at that ε confirms.
    let width = dry["privacy"]["columns"][0]["ci95_half_width"]
        .as_f64()
        .unwrap();
    let target = width / 4.0;
    let priced = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": sql, "epsilon": 0.25, "dry_run": true, "target_ci95": target}),
        )
        .json();
    let column = &priced["privacy"]["columns"][0];
    assert_eq!(column["target_ci95"], target, "{priced}");
    let needed = column["epsilon_for_target"].as_f64().unwrap();
    assert!(needed > 0.25 && needed < 100.0, "{priced}");
    let at_needed = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": sql, "epsilon": needed, "dry_run": true}),
        )
        .json();
    let reached = at_needed["privacy"]["columns"][0]["ci95_half_width"]
        .as_f64()
        .unwrap();
    assert!(reached <= target * 1.0001, "{reached} > {target}");
    let out_of_reach = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": sql, "epsilon": 0.25, "dry_run": true, "target_ci95": 1e-9}),
        )
        .json();
    assert!(out_of_reach["privacy"]["columns"][0]["epsilon_for_target"].is_null());
    // A quantile's interval is of its rank, beside the bins' resolution.
    let median = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": "SELECT MEDIAN(cost) AS m FROM health_visits", "epsilon": 0.25, "dry_run": true, "target_ci95": 10.0}),
        )
        .json();
    let column = &median["privacy"]["columns"][0];
    assert_eq!(column["column"], "m", "{median}");
    assert_eq!(column["ci95_of"], "rank (rows)", "{median}");
    assert!(column["resolution"].as_f64().unwrap() > 0.0, "{median}");
    assert!(
        column["epsilon_for_target"].as_f64().unwrap() > 0.25,
        "{median}"
    );
    // Keys from a column the caller reads in the clear are said so.
    let dated = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": "SELECT l.established_date, COUNT(*) FROM tax t JOIN legal_persons l ON t.uscc = l.uscc GROUP BY l.established_date", "epsilon": 0.25, "dry_run": true}),
        )
        .json();
    assert_eq!(
        dated["privacy"]["public_keys"]["columns"],
        json!(["legal_persons.established_date"]),
        "{dated}"
    );
    for body in [
        json!({"sql": sql, "epsilon": 0.25, "target_ci95": 3.0}),
        json!({"sql": sql, "epsilon": 0.25, "dry_run": true, "target_ci95": -1.0}),
    ] {
        let refused = server.post_json("/v1/query", Some(&carol), &body);
        assert_eq!(refused.status, 400, "{body}");
        assert_eq!(refused.json()["error"]["code"], "bad_request");
    }
    let remaining = |server: &Server| {
        let budget = server.get("/v1/budget", Some(&carol)).json();
        budget["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["dataset"] == "health_visits")
            .unwrap()["remaining_epsilon"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(remaining(&server), 1.0);

    // The health budget is ε = 1; sixteen racing answers at ε = 0.25: four fit.
    let body = json!({"sql": sql, "epsilon": 0.25}).to_string();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (addr, key, body) = (server.addr.clone(), carol.clone(), body.clone());
            std::thread::spawn(move || {
                request(
                    &addr,
                    "POST",
                    "/v1/query",
                    Some(&key),
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                )
            })
        })
        .collect();
    let responses: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let answered: Vec<&Response> = responses.iter().filter(|r| r.status == 200).collect();
    let exhausted = responses
        .iter()
        .filter(|r| r.status == 403 && r.code() == "budget_exhausted")
        .count();
    assert_eq!(
        (answered.len(), exhausted),
        (4, 12),
        "{:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let answer = answered[0].json();
    assert_eq!(answer["privacy"]["mode"], "dp");
    assert_eq!(answer["privacy"]["epsilon_spent"], 0.25);
    assert_eq!(answer["rows"].as_array().unwrap().len(), 18);
    assert!(
        answer["privacy"]["columns"][0]["ci95_half_width"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(remaining(&server) < 1e-9);
    // Every answer says what it left, at least what basic composition leaves
    // after it (0.75, 0.5, 0.25, 0) and falling with each, down to what
    // `/v1/budget` says; the health budget never renews.
    let mut lefts: Vec<f64> = answered
        .iter()
        .map(|r| {
            let b = &r.json()["privacy"]["budgets"][0];
            assert_eq!(b["dataset"], "health_visits");
            assert_eq!(b["period"], Value::Null);
            assert_eq!(b["renews"], Value::Null);
            b["epsilon_left"].as_f64().unwrap()
        })
        .collect();
    lefts.sort_by(|a, b| b.total_cmp(a));
    for (n, left) in lefts.iter().enumerate() {
        let basic = 1.0 - 0.25 * (n + 1) as f64;
        assert!(*left >= basic - 1e-9 && *left < 1.0, "{lefts:?}");
    }
    assert!(lefts.windows(2).all(|w| w[1] < w[0]), "{lefts:?}");
    assert!((lefts[3] - remaining(&server)).abs() < 1e-9, "{lefts:?}");

    // A refused query costs nothing and is refused for its own reason.
    let bad = server.post_json(
        "/v1/query",
        Some(&carol),
        &json!({"sql": "SELECT MIN(cost) FROM health_visits", "epsilon": 0.1}),
    );
    assert_eq!(bad.code(), "policy_denied");
    assert_eq!(
        server
            .post_json(
                "/v1/query",
                Some(&carol),
                &json!({"sql": "SELECT 1", "dry_run": true})
            )
            .code(),
        "bad_request"
    );
}

/// Automatic bounds and per-cell intervals over HTTP: the dry run says the
/// bounds are estimated when the query runs, the answer says them and
/// carries each cell's interval; what the options do not allow is a
/// `bad_request`.
#[test]
fn dp_answers_estimate_bounds_and_carry_intervals_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    let sql =
        "SELECT diagnosis_category, SUM(cost) AS s FROM health_visits GROUP BY diagnosis_category";
    let dry = server
        .post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": sql, "epsilon": 0.5, "bounds": "auto", "dry_run": true}),
        )
        .json();
    let column = &dry["privacy"]["columns"][0];
    assert_eq!(column["clamp"]["source"], "automatic", "{dry}");
    assert!(
        column["scale"].is_null() && column["clamp"]["lower"].is_null(),
        "{dry}"
    );

    let answer = server.post_json(
        "/v1/query",
        Some(&carol),
        &json!({"sql": sql, "epsilon": 0.5, "bounds": "auto", "intervals": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let names: Vec<&str> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["diagnosis_category", "s", "s_ci95_lo", "s_ci95_hi"]);
    for row in json["rows"].as_array().unwrap() {
        let (lo, s, hi) = (
            row[2].as_f64().unwrap(),
            row[1].as_f64().unwrap(),
            row[3].as_f64().unwrap(),
        );
        assert!(lo <= s && s <= hi, "{row}");
    }
    let column = &json["privacy"]["columns"][0];
    assert_eq!(column["clamp"]["source"], "automatic", "{json}");
    let (lower, upper) = (
        column["clamp"]["lower"].as_f64().unwrap(),
        column["clamp"]["upper"].as_f64().unwrap(),
    );
    assert!(
        lower < upper && column["scale"].as_f64().unwrap() > 0.0,
        "{column}"
    );
    assert!(json["privacy"]["intervals"].is_string(), "{json}");

    for body in [
        json!({"sql": sql, "epsilon": 0.5, "bounds": "sideways"}),
        json!({"sql": sql, "intervals": true}),
        json!({"sql": sql, "bounds": "auto"}),
    ] {
        let refused = server.post_json("/v1/query", Some(&carol), &body);
        assert_eq!(refused.status, 400, "{body}");
        assert_eq!(refused.json()["error"]["code"], "bad_request", "{body}");
    }
}
