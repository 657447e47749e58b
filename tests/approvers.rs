//! Approver powers bound to their institution (Art. 6-7, 11-13, 27, 36, 39,
//! 43), tried as the tax office's approver would against the real server:
//! it cannot become the data authority through a manifest, grant a
//! qualification, change the policy, or re-grade another institution's
//! dataset; it reads only the audit of its own data, without other
//! institutions' request text. The authority's changes take two approvers.

mod common;

use common::*;
use serde_json::{Value, json};

const TAX: &str = "国家税务总局云南省税务局 (Yunnan Provincial Tax Service)";
const POLICE: &str = "云南省公安厅 (Yunnan Provincial Public Security Department)";

struct World {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    server: Server,
    carol: String,
    tax: String,
    police: String,
    a1: String,
    a2: String,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let tax = add_principal(&dir, "tax-office", "approver", &["--org", TAX]);
    let police = add_principal(&dir, "police", "approver", &["--org", POLICE]);
    let a1 = add_principal(&dir, "bureau-1", "approver", &["--org", AUTHORITY]);
    let a2 = add_principal(&dir, "bureau-2", "approver", &["--org", AUTHORITY]);
    let server = Server::start(&dir, &[]);
    World {
        _tmp: tmp,
        dir,
        server,
        carol,
        tax,
        police,
        a1,
        a2,
    }
}

/// A sample manifest as a body of `POST /v1/datasets`, its file path
/// relative to `DIR/datasets`, edited by `edit`.
fn manifest(w: &World, table: &str, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(w.dir.join(format!("datasets/sample/{table}.toml")))
        .unwrap()
        .replace(
            &format!("path = \"{table}.parquet\""),
            &format!("path = \"sample/{table}.parquet\""),
        );
    edit(text)
}

/// Every field at L1 (plain for everyone).
fn all_plain(text: String) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("grade = ") {
                "grade = \"L1\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn register(w: &World, key: &str, manifest: &str) -> Response {
    w.server
        .post_json("/v1/datasets", Some(key), &json!({"manifest": manifest}))
}

fn first_id_number(w: &World) -> String {
    let r = w.server.post_json(
        "/v1/query",
        Some(&w.carol),
        &json!({"sql": "SELECT id_number FROM population LIMIT 1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["rows"][0][0].as_str().unwrap().to_owned()
}

fn versions(w: &World, dataset: &str) -> usize {
    w.server
        .get(&format!("/v1/catalog/{dataset}/versions"), Some(&w.a1))
        .json()["versions"]
        .as_array()
        .unwrap()
        .len()
}

fn step(w: &World, key: &str, id: &str, action: &str, notes: Value) -> Response {
    w.server.post_json(
        &format!("/v1/requests/{id}/{action}"),
        Some(key),
        &json!({"notes": notes}),
    )
}

#[test]
fn a_manifest_cannot_make_its_registrant_the_data_authority() {
    let w = world();
    let ours = manifest(&w, "tax", |m| {
        m.replace("name = \"tax\"", "name = \"tax_mine\"").replace(
            "approving_institution = \"云南省数据局 (Yunnan Provincial Data Bureau)\"",
            &format!("approving_institution = \"{TAX}\""),
        )
    });
    let refused = register(&w, &w.tax, &ours);
    assert_eq!(refused.code(), "forbidden", "{}", refused.text());
    assert!(refused.text().contains(AUTHORITY), "{}", refused.text());
    assert!(
        refused.text().contains("data authority"),
        "{}",
        refused.text()
    );
    // Even naming the real authority, a provider's new entry is reviewed.
    let reviewed = register(
        &w,
        &w.tax,
        &manifest(&w, "tax", |m| {
            m.replace("name = \"tax\"", "name = \"tax_mine\"")
        }),
    );
    assert_eq!(reviewed.code(), "forbidden", "{}", reviewed.text());
    assert!(reviewed.text().contains("catalog_change"));
    // Nothing was registered and the tax office is no authority: its audit
    // is its own data's, and a qualification is not its to grant.
    assert_eq!(
        w.server
            .get("/v1/catalog/tax_mine/versions", Some(&w.a1))
            .code(),
        "not_found"
    );
    let audit = w.server.get("/v1/audit", Some(&w.tax)).json();
    assert_eq!(audit["scope"], "datasets your institution provides");
}

#[test]
fn only_the_authority_grants_a_development_qualification() {
    let w = world();
    let modeler = add_principal(&w.dir, "dev", "modeler", &["--org", "a developer"]);
    let opened = w.server.post_json(
        "/v1/requests",
        Some(&modeler),
        &json!({"kind": "qualification", "detail": {"organisation": "a developer", "scope": "credit models"}}),
    );
    assert_eq!(opened.status, 201, "{}", opened.text());
    let id = opened.json()["id"].as_str().unwrap().to_owned();
    let notes = json!({"agreement": "an agreement"});
    for key in [&w.tax, &w.police] {
        assert_eq!(
            step(&w, key, &id, "grant", notes.clone()).code(),
            "not_found",
            "a provider is no party to a qualification"
        );
    }
    let granted = step(&w, &w.a1, &id, "grant", notes);
    assert_eq!(granted.json()["state"], "qualified", "{}", granted.text());
}

#[test]
fn policy_changes_are_the_authoritys_and_take_two_approvers() {
    let w = world();
    let policy = w.server.get("/v1/policy", Some(&w.tax));
    assert_eq!(policy.status, 200, "a provider may read the policy");
    let policy = policy.json();
    let version = policy["version"].as_i64().unwrap();
    // L3 plain for consumers without a grant.
    let text = policy["text"].as_str().unwrap().to_owned();
    let lax =
        text.replacen("name = \"default\"", "name = \"lax\"", 1) + "\n# proposed by a provider\n";
    let put = |key: &str, text: &str| {
        w.server.request(
            "PUT",
            "/v1/policy",
            Some(key),
            &[("Content-Type", "application/json")],
            Some(json!({"text": text}).to_string().as_bytes()),
        )
    };
    let refused = put(&w.tax, &lax);
    assert_eq!(refused.code(), "forbidden", "{}", refused.text());
    assert!(
        refused.text().contains("data authority"),
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("Art. 11"));
    // The authority proposes; nothing changes until a second approves.
    let proposed = put(&w.a1, &lax);
    assert_eq!(proposed.status, 202, "{}", proposed.text());
    let id = proposed.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(proposed.json()["state"], "submitted");
    let current = || w.server.get("/v1/policy", Some(&w.a1)).json()["version"].as_i64();
    assert_eq!(current(), Some(version));
    let same = step(&w, &w.a1, &id, "approve", json!({}));
    assert_eq!(same.code(), "forbidden", "four eyes: {}", same.text());
    assert_eq!(
        step(&w, &w.tax, &id, "approve", json!({})).code(),
        "not_found",
        "a provider is no party to a policy change"
    );
    assert_eq!(current(), Some(version));
    let approved = step(&w, &w.a2, &id, "approve", json!({}));
    assert_eq!(approved.json()["state"], "active", "{}", approved.text());
    assert_eq!(current(), Some(version + 1));
    // The audit keeps both names and the diff.
    let audit = w
        .server
        .get("/v1/audit?principal=bureau-2", Some(&w.a1))
        .json();
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["request"]
                .as_str()
                .unwrap()
                .starts_with(&format!("approve {id}"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("{audit}"));
    let request = entry["request"].as_str().unwrap();
    assert!(
        request.contains("proposed by bureau-1, approved by bureau-2"),
        "{request}"
    );
    assert!(request.contains("+ name = \"lax\""), "{request}");
    assert!(request.contains("- name = \"default\""), "{request}");
    assert!(request.contains("+ # proposed by a provider"), "{request}");
    // A policy that does not check is refused before it is proposed.
    let bad = put(&w.a1, "format = 1\n");
    assert_eq!(bad.code(), "bad_request");
}

#[test]
fn a_provider_changes_only_its_own_catalog_entries_and_the_authority_reviews_grades() {
    let w = world();
    let masked = |id: &str| id.contains('*');
    assert!(
        masked(&first_id_number(&w)),
        "masked for a consumer without a grant"
    );
    // The tax office re-grades the public security department's dataset.
    let plain_population = manifest(&w, "population", all_plain);
    let refused = register(&w, &w.tax, &plain_population);
    assert_eq!(refused.code(), "forbidden", "{}", refused.text());
    assert!(refused.text().contains(TAX), "{}", refused.text());
    // Its own provider may not re-grade it directly either.
    let refused = register(&w, &w.police, &plain_population);
    assert_eq!(refused.code(), "forbidden", "{}", refused.text());
    assert!(
        refused.text().contains("catalog_change"),
        "{}",
        refused.text()
    );
    assert_eq!(versions(&w, "population"), 1);
    assert!(masked(&first_id_number(&w)), "nothing changed");
    // A version that changes nothing reviewable is the provider's to make.
    let described = manifest(&w, "population", |m| {
        m.replace(
            "description = \"One row per resident person",
            "description = \"Updated: one row per resident person",
        )
    });
    let ok = register(&w, &w.police, &described);
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(versions(&w, "population"), 2);

    // A change of grades goes through a catalog change that the authority
    // approves, and only the authority: the proposer's own institution
    // cannot.
    let stricter = manifest(&w, "population", |m| {
        m.replacen("grade = \"L3\"", "grade = \"L4\"", 1)
    });
    assert_ne!(stricter, manifest(&w, "population", |m| m));
    let body = json!({"kind": "catalog_change", "detail": {"manifest": stricter}});
    assert_eq!(
        w.server
            .post_json("/v1/requests", Some(&w.tax), &body)
            .code(),
        "forbidden",
        "not the tax office's dataset"
    );
    let change = w.server.post_json("/v1/requests", Some(&w.police), &body);
    assert_eq!(change.status, 201, "{}", change.text());
    let id = change.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        step(&w, &w.police, &id, "approve", json!({})).code(),
        "forbidden"
    );
    assert_eq!(versions(&w, "population"), 2, "not before the review");
    let published = step(&w, &w.a1, &id, "approve", json!({}));
    assert_eq!(
        published.json()["state"],
        "published",
        "{}",
        published.text()
    );
    assert_eq!(versions(&w, "population"), 3);
    let audit = w
        .server
        .get("/v1/audit?principal=bureau-1", Some(&w.a2))
        .json();
    let request = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"].as_str().unwrap().to_owned())
        .find(|r| r.starts_with(&format!("approve {id}")))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(request.contains("population v2 -> v3"), "{request}");
    assert!(
        request.contains("proposed by police, approved by bureau-1"),
        "{request}"
    );
    assert!(request.contains("L3 -> L4"), "{request}");

    // The authority's own change of grades takes a second approver too.
    let body = json!({"kind": "catalog_change", "detail": {"manifest": plain_population}});
    let change = w.server.post_json("/v1/requests", Some(&w.a1), &body);
    assert_eq!(change.status, 201, "{}", change.text());
    let id = change.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        register(&w, &w.a1, &plain_population).code(),
        "forbidden",
        "no direct re-grade for the authority either"
    );
    assert_eq!(
        step(&w, &w.a1, &id, "approve", json!({})).code(),
        "forbidden"
    );
    let rejected = step(&w, &w.a2, &id, "reject", json!({"reason": "no"}));
    assert_eq!(rejected.json()["state"], "rejected", "{}", rejected.text());
    assert_eq!(versions(&w, "population"), 3);
}

#[test]
fn a_provider_reads_the_audit_of_its_own_data_without_others_request_text() {
    let w = world();
    let id_number = "53010219900101001X";
    // Carol (another institution) asks about the tax data with an
    // identifier in the text, and about the population.
    for sql in [
        format!(
            "SELECT year, COUNT(*) FROM tax WHERE year > 2000 OR '{id_number}' = 'x' GROUP BY year"
        ),
        format!("SELECT COUNT(*) FROM population WHERE id_number = '{id_number}'"),
    ] {
        w.server
            .post_json("/v1/query", Some(&w.carol), &json!({"sql": sql}));
    }
    let own = w.server.get("/v1/audit", Some(&w.tax));
    assert_eq!(own.status, 200);
    assert!(!own.text().contains(id_number), "{}", own.text());
    assert!(!own.text().contains("5301021990"), "{}", own.text());
    let entries = own.json()["entries"].as_array().unwrap().clone();
    assert!(!entries.is_empty());
    for e in &entries {
        assert!(
            e["datasets"].as_array().unwrap().iter().any(|d| d == "tax"),
            "{e}"
        );
        if e["principal"] == "carol" {
            assert_eq!(
                e["request"],
                "(withheld: a request made by another institution)"
            );
        }
    }
    // Carol joins the tax data with the population: the provider of tax
    // sees the entry, but not that it touched the population, by any
    // filter, nor its rows (which count the other data too).
    w.server.post_json(
        "/v1/query",
        Some(&w.carol),
        &json!({"sql": "SELECT t.year, COUNT(*) AS n FROM tax t JOIN population p ON t.uscc = p.id_number GROUP BY t.year"}),
    );
    let other = w.server.get("/v1/audit?dataset=population", Some(&w.tax));
    assert_eq!(other.status, 200);
    assert_eq!(other.json()["entries"], json!([]), "{}", other.text());
    let own = w.server.get("/v1/audit?principal=carol", Some(&w.tax));
    let joined = own.json()["entries"][0].clone();
    assert_eq!(joined["datasets"], json!(["tax"]), "{joined}");
    assert!(joined["rows"].is_null(), "{joined}");
    // The authority reads everything, text included.
    let all = w.server.get("/v1/audit?principal=carol", Some(&w.a1));
    assert!(all.text().contains(id_number));
    assert_eq!(all.json()["scope"], "all");
}

#[test]
fn an_admin_key_cannot_make_authority_approvers_and_stale_or_misplaced_proposals_fail() {
    let w = world();
    let root = add_principal(&w.dir, "root2", "admin", &[]);
    // Two identities of the authority from one admin key would pass the
    // four-eyes rule alone.
    let made = w.server.post_json(
        "/v1/principals",
        Some(&root),
        &json!({"name": "sock", "role": "approver", "org": AUTHORITY}),
    );
    assert_eq!(made.code(), "forbidden", "{}", made.text());
    let key = w.server.request(
        "POST",
        "/v1/principals/bureau-2/keys",
        Some(&root),
        &[],
        None,
    );
    assert_eq!(key.code(), "forbidden", "{}", key.text());
    // Other principals are still the admin's to make.
    let ok = w.server.post_json(
        "/v1/principals",
        Some(&root),
        &json!({"name": "analyst", "role": "consumer", "org": TAX}),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());

    // A proposal names no dataset (its provider would read it) and carries
    // only its text.
    let text = w.server.get("/v1/policy", Some(&w.a1)).json()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in [
        json!({"kind": "policy_change", "dataset": "tax", "detail": {"text": text}}),
        json!({"kind": "policy_change", "detail": {"text": text, "approved_by": "bureau-2"}}),
    ] {
        let r = w.server.post_json("/v1/requests", Some(&w.a1), &body);
        assert_eq!(r.code(), "bad_request", "{}", r.text());
    }
    // A proposal written against an older version is not approved once the
    // policy moved on.
    let open = |text: &str| {
        let r = w.server.post_json(
            "/v1/requests",
            Some(&w.a1),
            &json!({"kind": "policy_change", "detail": {"text": text}}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let old = open(&text.replacen("name = \"default\"", "name = \"first\"", 1));
    let newer = open(&text.replacen("name = \"default\"", "name = \"second\"", 1));
    let approved = step(&w, &w.a2, &newer, "approve", json!({}));
    assert_eq!(approved.json()["state"], "active", "{}", approved.text());
    let stale = step(&w, &w.a2, &old, "approve", json!({}));
    assert_eq!(stale.code(), "conflict", "{}", stale.text());
}

#[test]
fn another_institutions_file_cannot_be_republished_and_provider_pages_hold_its_own_entries() {
    let w = world();
    // The tax office describes the health commission's file as its own.
    let stolen = manifest(&w, "health_visits", |m| {
        all_plain(m)
            .replace("name = \"health_visits\"", "name = \"tax_visits\"")
            .replace(
                "providing_institution = \"云南省卫生健康委员会 (Yunnan Health Commission)\"",
                &format!("providing_institution = \"{TAX}\""),
            )
    });
    let body = json!({"kind": "catalog_change", "detail": {"manifest": stolen}});
    let change = w.server.post_json("/v1/requests", Some(&w.tax), &body);
    assert_eq!(change.status, 201, "{}", change.text());
    let id = change.json()["id"].as_str().unwrap().to_owned();
    let published = step(&w, &w.a1, &id, "approve", json!({}));
    assert_eq!(published.code(), "bad_request", "{}", published.text());
    assert!(
        published.text().contains("another institution provides"),
        "{}",
        published.text()
    );
    assert_eq!(
        w.server
            .get("/v1/catalog/tax_visits/versions", Some(&w.a1))
            .code(),
        "not_found"
    );

    // The provider's page counts only its own entries: others' activity
    // neither fills it nor can be counted through `limit`.
    w.server.post_json(
        "/v1/query",
        Some(&w.carol),
        &json!({"sql": "SELECT year, COUNT(*) FROM tax GROUP BY year", "purpose": "a secret purpose"}),
    );
    for _ in 0..5 {
        w.server.post_json(
            "/v1/query",
            Some(&w.carol),
            &json!({"sql": "SELECT sex, COUNT(*) FROM population GROUP BY sex"}),
        );
    }
    let page = w.server.get("/v1/audit?limit=1", Some(&w.tax));
    let entries = page.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{}", page.text());
    assert_eq!(entries[0]["datasets"], json!(["tax"]));
    assert!(!page.text().contains("a secret purpose"), "{}", page.text());
    assert_eq!(entries[0]["privacy"], Value::Null);
}
