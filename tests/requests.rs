//! End-to-end requests: the real server and CLI, sharing to a grant the
//! policy stage uses, refusals, complaints their provider suspends at once,
//! qualifications, the overdue list.

mod common;

use common::*;
use serde_json::{Value, json};
use veil_policies::calendar::add_working_days;

const LABOUR: &str =
    "云南省人力资源和社会保障厅 (Yunnan Department of Human Resources and Social Security)";
const MARKET: &str = "云南省市场监督管理局 (Yunnan Administration for Market Regulation)";
const AUTHORITY: &str = "云南省数据局 (Yunnan Provincial Data Bureau)";

fn query(server: &Server, key: &str, sql: &str, purpose: Option<&str>) -> Response {
    let mut body = json!({"sql": sql});
    if let Some(p) = purpose {
        body["purpose"] = json!(p);
    }
    server.post_json("/v1/query", Some(key), &body)
}

fn step(server: &Server, key: &str, id: &str, action: &str, notes: Value) -> Response {
    server.post_json(
        &format!("/v1/requests/{id}/{action}"),
        Some(key),
        &json!({"notes": notes}),
    )
}

#[test]
fn a_conditional_sharing_request_becomes_a_grant_for_its_purpose_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let provider = add_principal(&dir, "labour", "approver", &["--org", LABOUR]);
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    let server = Server::start(&dir, &[]);
    let sql = "SELECT id_number, paid FROM social_insurance ORDER BY id_number LIMIT 1";
    assert_eq!(
        query(&server, &carol, sql, Some("benefits")).code(),
        "policy_denied"
    );

    let opened = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "sharing", "dataset": "social_insurance", "purpose": "benefits", "fields": ["id_number", "paid", "month"], "days": 30}),
    );
    assert_eq!(opened.status, 201, "{}", opened.text());
    let request = opened.json();
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["state"], "submitted");
    let today = veil_api::service::requests::today(chrono::Utc::now());
    assert_eq!(request["due"], add_working_days(today, 5).date.to_string());

    // Steps out of turn, by the wrong party, or without a legal basis.
    assert_eq!(
        step(&server, &carol, &id, "approve", json!({})).code(),
        "forbidden"
    );
    assert_eq!(
        step(&server, &provider, &id, "deliver", json!({})).code(),
        "conflict"
    );
    assert_eq!(
        step(&server, &provider, &id, "refuse", json!({})).code(),
        "bad_request"
    );
    let stranger = add_principal(&dir, "market", "approver", &["--org", MARKET]);
    assert_eq!(
        step(&server, &stranger, &id, "approve", json!({})).code(),
        "not_found"
    );

    let approved = step(&server, &provider, &id, "approve", json!({}));
    assert_eq!(approved.json()["state"], "approved", "{}", approved.text());
    let delivered = step(&server, &provider, &id, "deliver", json!({})).json();
    assert_eq!(delivered["state"], "granted");
    assert!(delivered["grant"].as_str().unwrap().starts_with("g-"));

    // The grant is the policy stage's: plain for the purpose, not for another.
    let granted = query(&server, &carol, sql, Some("benefits"));
    assert_eq!(granted.status, 200, "{}", granted.text());
    assert_eq!(
        query(&server, &carol, sql, Some("marketing")).code(),
        "policy_denied"
    );

    // The history, for the parties; the authority sees every request.
    let shown = server
        .get(&format!("/v1/requests/{id}"), Some(&provider))
        .json();
    let actions: Vec<&str> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["open", "approve", "deliver"]);
    assert_eq!(
        server
            .get(&format!("/v1/requests/{id}"), Some(&stranger))
            .code(),
        "not_found"
    );
    let all = server.get("/v1/requests", Some(&authority)).json();
    assert_eq!(all["requests"].as_array().unwrap().len(), 1);
    assert!(
        server.get("/v1/requests", Some(&stranger)).json()["requests"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Unconditional data is granted at once; data that is not open cannot
    // be applied for.
    let at_once = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "sharing", "dataset": "legal_persons", "purpose": "licensing"}),
    );
    assert_eq!(at_once.json()["state"], "granted");
    let closed = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "open_data", "dataset": "population", "purpose": "research"}),
    );
    assert_eq!(closed.code(), "policy_denied");
    assert!(closed.text().contains("not open (Art. 32)"));
    let no_purpose = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "sharing", "dataset": "tax"}),
    );
    assert_eq!(no_purpose.code(), "bad_request");

    // Open data: the provider approves, the applicant commits, then the grant.
    let market = add_principal(&dir, "market-approver", "approver", &["--org", MARKET]);
    let application = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "open_data", "dataset": "legal_persons", "purpose": "research"}),
    );
    assert_eq!(
        application.json()["state"],
        "submitted",
        "{}",
        application.text()
    );
    let oid = application.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        step(&server, &market, &oid, "approve", json!({})).json()["state"],
        "awaiting_commitment"
    );
    let half = step(
        &server,
        &carol,
        &oid,
        "commit",
        json!({"security_commitment": "signed"}),
    );
    assert_eq!(half.code(), "bad_request");
    assert!(half.text().contains("usage_agreement"));
    let committed = step(
        &server,
        &carol,
        &oid,
        "commit",
        json!({"security_commitment": "signed 2026-11-27", "usage_agreement": "UA-42"}),
    );
    assert_eq!(committed.json()["state"], "granted", "{}", committed.text());
    assert!(committed.json()["grant"].as_str().is_some());

    // Every opening and step is in the audit log.
    let log = server.get("/v1/audit?limit=1000", Some(&authority)).json();
    let steps: Vec<String> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["endpoint"]
                .as_str()
                .unwrap()
                .starts_with("POST /v1/requests")
        })
        .map(|e| {
            format!(
                "{} {}",
                e["request"].as_str().unwrap().split(' ').next().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "open ok:submitted",
        "approve refused:forbidden",
        "deliver refused:conflict",
        "approve ok:approved",
        "deliver ok:granted",
        "open refused:policy_denied",
    ] {
        assert!(
            steps.contains(&expected.to_owned()),
            "missing `{expected}` in {steps:?}"
        );
    }
}

#[test]
fn a_complaint_is_suspended_by_its_provider_at_once_until_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let provider = add_principal(&dir, "market", "approver", &["--org", MARKET]);
    let server = Server::start(&dir, &[]);
    let sql = "SELECT industry, COUNT(*) AS n FROM legal_persons GROUP BY industry";
    assert_eq!(query(&server, &carol, sql, None).status, 200);
    let complaint = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "complaint", "dataset": "legal_persons", "detail": {"complaint": "a revoked company is listed as active"}}),
    );
    // A complaint switches nothing off by itself (Art. 36: the provider
    // verifies and suspends when necessary): anyone could otherwise stop a
    // dataset.
    let opened = complaint.json();
    assert_eq!(opened["state"], "submitted", "{}", complaint.text());
    assert!(opened["due"].is_string());
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(query(&server, &carol, sql, None).status, 200);
    assert_eq!(
        step(&server, &carol, &id, "suspend", json!({"reason": "now"})).code(),
        "forbidden",
        "the complainant does not suspend"
    );
    let shared_only = server.post_json(
        "/v1/requests",
        Some(&carol),
        &json!({"kind": "complaint", "dataset": "population", "detail": {"complaint": "suspend it"}}),
    );
    assert_eq!(
        shared_only.code(),
        "policy_denied",
        "not open data: no complaint applies"
    );
    assert_eq!(
        step(&server, &provider, &id, "suspend", json!({})).code(),
        "bad_request",
        "a reason is required"
    );
    let suspended = step(
        &server,
        &provider,
        &id,
        "suspend",
        json!({"reason": "the record is being checked"}),
    )
    .json();
    assert_eq!(suspended["state"], "suspended");
    // The complaint's deadline stands.
    assert_eq!(suspended["due"], opened["due"]);
    let refused = query(&server, &carol, sql, None);
    assert_eq!(refused.code(), "policy_denied");
    assert!(
        refused
            .text()
            .contains("suspended while a complaint about it is handled (Art. 36)"),
        "{}",
        refused.text()
    );
    let verification = server.post_json("/v1/verify", Some(&carol), &json!({"product": "legal_representative", "subject": "91350100M000100Y43", "claims": {"name": "x"}}));
    assert_eq!(verification.code(), "policy_denied");

    assert_eq!(
        step(&server, &provider, &id, "restore", json!({})).code(),
        "bad_request",
        "a finding is required"
    );
    let restored = step(
        &server,
        &provider,
        &id,
        "restore",
        json!({"finding": "the status was corrected"}),
    );
    assert_eq!(restored.json()["state"], "restored");
    assert_eq!(query(&server, &carol, sql, None).status, 200);

    // A seal made with the CLI holds in the running server from the next request.
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    let _ = authority;
    let out = veil(&[
        "request",
        "open",
        "--data-dir",
        s(&dir),
        "--as",
        "authority",
        "--kind",
        "emergency_data",
        "--dataset",
        "legal_persons",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let opened: Value = serde_json::from_str(&text(&out).0).unwrap();
    let emergency = opened["id"].as_str().unwrap();
    let out = veil(&[
        "request",
        "act",
        "--data-dir",
        s(&dir),
        "--as",
        "authority",
        "--id",
        emergency,
        "--action",
        "seal",
        "--note",
        "reason=the emergency is over",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let sealed = query(&server, &carol, sql, None);
    assert_eq!(sealed.code(), "policy_denied");
    assert!(sealed.text().contains("is sealed"), "{}", sealed.text());
}

#[test]
fn qualifications_corrections_and_the_overdue_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, root) = deployment(tmp.path());
    add_principal(&dir, "dev", "modeler", &["--org", "Kunming Analytics"]);
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    add_principal(&dir, "labour", "approver", &["--org", LABOUR]);
    let person = add_principal(
        &dir,
        "resident",
        "subject",
        &["--subject", "11010519491231002X"],
    );
    let server = Server::start(&dir, &[]);

    let cli = |args: &[&str]| {
        let mut all = vec!["request"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", s(&dir)]);
        let out = veil(&all);
        (out.status.code(), text(&out))
    };
    let (code, (out, _)) = cli(&[
        "open",
        "--as",
        "dev",
        "--kind",
        "qualification",
        "--detail",
        "organisation=Kunming Analytics",
        "--detail",
        "scope=credit models",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let application: Value = serde_json::from_str(&out).unwrap();
    let id = application["id"].as_str().unwrap().to_owned();
    let (code, (out, _)) = cli(&[
        "act",
        "--as",
        "dev",
        "--id",
        &id,
        "--action",
        "grant",
        "--note",
        "agreement=self-signed",
    ]);
    assert_eq!(code, Some(1), "the applicant cannot grant itself: {out}");
    assert!(out.contains("forbidden"));
    let granted = step(
        &server,
        &authority,
        &id,
        "grant",
        json!({"agreement": "DA-2026-17"}),
    );
    assert_eq!(granted.json()["state"], "qualified", "{}", granted.text());
    let store = veil_api::Store::open(&dir).unwrap();
    assert!(store.qualified("dev").unwrap());
    assert!(!store.qualified("carol").unwrap());
    drop(store);

    // A correction filed with the authority, forwarded, then overdue.
    let correction = server.post_json(
        "/v1/requests",
        Some(&person),
        &json!({"kind": "correction", "dataset": "social_insurance", "via_authority": true,
                "detail": {"record": "2025-03 contribution", "correction": "it was paid"}}),
    );
    assert_eq!(
        correction.json()["state"],
        "with_authority",
        "{}",
        correction.text()
    );
    let cid = correction.json()["id"].as_str().unwrap().to_owned();
    let forwarded = step(&server, &authority, &cid, "forward", json!({}));
    assert_eq!(forwarded.json()["state"], "submitted");

    assert!(
        server.get("/v1/requests/overdue", Some(&authority)).json()["requests"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        server.get("/v1/requests/overdue", Some(&person)).code(),
        "forbidden"
    );
    let later = (chrono::Utc::now() + chrono::Duration::days(60))
        .date_naive()
        .to_string();
    let (code, (out, _)) = cli(&["overdue", "--today", &later]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&cid) && out.contains("correction"), "{out}");
    assert!(
        !out.contains(&id),
        "a finished request is never overdue: {out}"
    );
    let (_, (listed, _)) = cli(&["list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let _ = root;
}

#[test]
fn an_approved_catalog_change_publishes_a_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let market = add_principal(&dir, "market", "approver", &["--org", MARKET]);
    let labour = add_principal(&dir, "labour", "approver", &["--org", LABOUR]);
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    let server = Server::start(&dir, &[]);
    let manifest = std::fs::read_to_string(dir.join("datasets/sample/legal_persons.toml"))
        .unwrap()
        .replace(
            "path = \"legal_persons.parquet\"",
            "path = \"sample/legal_persons.parquet\"",
        )
        .replace(
            "update_frequency = \"daily\"",
            "update_frequency = \"weekly\"",
        );
    let body = json!({"kind": "catalog_change", "detail": {"manifest": manifest}});
    assert_eq!(
        server
            .post_json("/v1/requests", Some(&labour), &body)
            .code(),
        "forbidden",
        "not its dataset"
    );
    assert_eq!(
        server.post_json("/v1/requests", Some(&carol), &body).code(),
        "forbidden"
    );
    let change = server.post_json("/v1/requests", Some(&market), &body);
    assert_eq!(change.json()["state"], "submitted", "{}", change.text());
    assert_eq!(change.json()["dataset"], "legal_persons");
    let id = change.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        step(&server, &market, &id, "approve", json!({})).code(),
        "forbidden",
        "the authority reviews"
    );
    let published = step(&server, &authority, &id, "approve", json!({}));
    assert_eq!(
        published.json()["state"],
        "published",
        "{}",
        published.text()
    );
    let versions = server
        .get("/v1/catalog/legal_persons/versions", Some(&authority))
        .json();
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "every version is kept");
    let catalog = server.get("/v1/catalog", Some(&carol)).json();
    let current = catalog["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "legal_persons")
        .unwrap()
        .clone();
    assert_eq!(current["version"], 2, "{current}");
}
