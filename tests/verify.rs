//! End-to-end verification (`POST /v1/verify` on the real server and
//! `veil verify`) and subject access (`GET /v1/me/records`), against the
//! generated sample.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// `veil verify --data-dir DIR --as carol --product person_identity ARGS`.
fn cli_verify(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "verify",
        "--data-dir",
        s(dir),
        "--as",
        "carol",
        "--product",
        "person_identity",
    ];
    all.extend_from_slice(args);
    veil(&all)
}

/// People of the sample in plain text, read through a granted query (the
/// test plays the data owner).
fn people(dir: &Path) -> Vec<Vec<String>> {
    add_principal(dir, "owner", "consumer", &[]);
    let grant = veil(&[
        "grant",
        "add",
        "--data-dir",
        s(dir),
        "--principal",
        "owner",
        "--dataset",
        "population",
        "--purpose",
        "test-oracle",
    ]);
    assert!(grant.status.success(), "{:?}", text(&grant));
    let out = veil(&[
        "query",
        "--data-dir",
        s(dir),
        "--as",
        "owner",
        "--purpose",
        "test-oracle",
        "--sql",
        "SELECT id_number, name, CAST(birth_date AS VARCHAR), phone FROM population ORDER BY id_number",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let answer: Value = serde_json::from_str(&text(&out).0).unwrap();
    answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .collect()
}

/// The default preset with `insured_in_month` held to 4 subjects a minute
/// and 2 verifications of a subject a day.
fn tight_policy(dir: &Path) {
    let preset = std::fs::read_to_string(repo("policies/presets/default.toml")).unwrap();
    let marker = "name = \"insured_in_month\"";
    let at = preset.find(marker).unwrap();
    let tail = preset[at..].replacen(
        "per_minute = 12000\ndaily_per_subject = 10",
        "per_minute = 4\ndaily_per_subject = 2",
        1,
    );
    let path = dir.join("tight.toml");
    std::fs::write(&path, format!("{}{tail}", &preset[..at])).unwrap();
    let out = veil(&["policy", "load", "--data-dir", s(dir), s(&path)]);
    assert!(out.status.success(), "{:?}", text(&out));
}

fn verify(server: &Server, key: &str, body: Value) -> Response {
    server.post_json("/v1/verify", Some(key), &body)
}

#[test]
fn verification_answers_bits_refuses_bad_input_and_enforces_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let people = people(&dir);
    tight_policy(&dir);
    let authority = add_principal(
        &dir,
        "authority",
        "approver",
        &["--org", "云南省数据局 (Yunnan Provincial Data Bureau)"],
    );
    let modeler = add_principal(&dir, "mo", "modeler", &[]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let indexes: Vec<_> = std::fs::read_dir(dir.join("indexes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // One per product's subject field, and tax's unit for models that
        // score named companies (the other scoring datasets share theirs).
        assert_eq!(indexes.len(), 5, "{indexes:?}");
        for path in indexes {
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600,
                "{path:?}"
            );
        }
    }
    let server = Server::start(&dir, &["--concurrency", "64"]);
    let p = people.iter().find(|p| !p[3].is_empty()).unwrap();
    let (id, name, born, phone) = (&p[0], &p[1], &p[2], &p[3]);

    // The truth matches, in the forms people type it; nothing else comes back.
    let r = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "subject": id.to_lowercase(),
        "claims": {"name": format!(" {name} "), "phone": phone}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    // One bit for all the claims (the default preset's `answer = "all"`).
    assert_eq!(answer["results"], json!({"all": "match"}));
    assert_eq!(answer["provenance"]["datasets"], json!(["population"]));
    assert!(answer["audit_seq"].as_i64().unwrap() > 0);
    for secret in [id, name, born, phone] {
        assert!(
            !r.text().contains(secret.as_str()),
            "the answer echoes a value"
        );
    }

    // Wrong claims and unknown subjects answer alike.
    let other = people
        .iter()
        .find(|o| o[1] != *name && o[2] != *born)
        .unwrap();
    let wrong = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "subject": id,
        "claims": {"name": other[1], "phone": phone}}),
    );
    assert_eq!(
        wrong.json()["results"],
        json!({"all": "mismatch"}),
        "one wrong claim of two: nothing says which"
    );
    let stranger = "11010519491231002X";
    assert!(people.iter().all(|p| p[0] != stranger));
    let unknown = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "subject": stranger,
        "claims": {"name": name}}),
    );
    assert_eq!(unknown.json()["results"], json!({"all": "mismatch"}));

    // A batch answers in order.
    let batch = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "items": [
            {"subject": people[1][0], "claims": {"name": people[1][1]}},
            {"subject": people[2][0], "claims": {"name": people[1][1]}},
            {"subject": stranger, "claims": {"name": people[1][1]}},
        ]}),
    );
    let results = batch.json()["results"].clone();
    assert_eq!(results[0]["all"], "match");
    assert_eq!(
        results[1]["all"],
        if people[2][1] == people[1][1] {
            "match"
        } else {
            "mismatch"
        }
    );
    assert_eq!(results[2]["all"], "mismatch");

    // Bad input is refused before any lookup, without repeating it.
    let mut bad_id = id[..17].to_owned();
    bad_id.push(if id.ends_with('0') { '1' } else { '0' });
    for (body, code) in [
        (
            json!({"product": "person_identity", "subject": bad_id, "claims": {"name": name}}),
            "bad_request",
        ),
        (
            json!({"product": "person_identity", "subject": id, "claims": {"salary": "1"}}),
            "bad_request",
        ),
        (
            json!({"product": "person_identity", "subject": id, "claims": {"birth_date": name}}),
            "bad_request",
        ),
        (
            json!({"product": "person_identity", "subject": 530102, "claims": {"name": name}}),
            "bad_request",
        ),
        (
            json!({"product": "person_identity", "subject": id, "claims": {"name": name}, "items": []}),
            "bad_request",
        ),
        (
            json!({"product": "person_identity", "subject": id}),
            "bad_request",
        ),
        (
            json!({"product": "no_such_product", "subject": id, "claims": {"name": name}}),
            "not_found",
        ),
        (
            json!({"product": id, "subject": id, "claims": {"name": name}}),
            "not_found",
        ),
    ] {
        let r = verify(&server, &carol, body);
        assert_eq!(r.code(), code, "{}", r.text());
        for secret in [id.as_str(), name, bad_id.as_str()] {
            assert!(
                !r.text().contains(secret),
                "the refusal echoes a value: {}",
                r.text()
            );
        }
    }
    let r = verify(
        &server,
        &modeler,
        json!({"product": "person_identity", "subject": id, "claims": {"name": name}}),
    );
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));

    // A full batch is larger than the 1 MiB body limit of other endpoints.
    let items: Vec<Value> = (0..10_000)
        .map(|n| {
            let p = &people[n % people.len()];
            let mut claims = json!({"name": p[1]});
            if !p[3].is_empty() {
                claims["phone"] = json!(p[3]);
            }
            json!({"subject": p[0], "claims": claims})
        })
        .collect();
    let body = json!({"product": "person_identity", "items": items});
    // Pretty-printed, as some clients send it.
    let body = serde_json::to_string_pretty(&body).unwrap();
    assert!(body.len() > 1 << 20, "{}", body.len());
    let r = server.request(
        "POST",
        "/v1/verify",
        Some(&carol),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", &r.text()[..200.min(r.text().len())]);
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 10_000);
    assert!(
        results
            .iter()
            .all(|r| r.as_object().unwrap().values().all(|v| v == "match"))
    );

    let mut too_many = json!({"product": "person_identity"});
    too_many["items"] = json!(vec![
        json!({"subject": id, "claims": {"name": name}});
        10_001
    ]);
    assert_eq!(verify(&server, &carol, too_many).code(), "bad_request");

    // Concurrent requests cannot slip past the daily limit of a subject.
    let out = veil(&[
        "query",
        "--data-dir",
        s(&dir),
        "--as",
        "carol",
        "--sql",
        "SELECT uscc FROM legal_persons ORDER BY uscc LIMIT 1",
    ]);
    let company: Value = serde_json::from_str(&text(&out).0).unwrap();
    let uscc = company["rows"][0][0].as_str().unwrap().to_owned();
    // Nobody made up is anybody's legal representative: every answer is a
    // mismatch, and two a day about one subject are all an institution gets.
    let body = json!({"product": "legal_representative", "subject": uscc,
        "claims": {"legal_representative": stranger}})
    .to_string();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..30)
            .map(|_| {
                scope.spawn(|| {
                    request(
                        &server.addr,
                        "POST",
                        "/v1/verify",
                        Some(&carol),
                        &[("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                    )
                    .status
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        28,
        "{statuses:?}"
    );

    // Enumeration: one subject at most twice a day, four subjects a minute.
    let insured = |subject: &str| {
        verify(
            &server,
            &carol,
            json!({"product": "insured_in_month", "subject": subject, "claims": {"insured_in": "2025-03"}}),
        )
    };
    assert_eq!(insured(&people[0][0]).status, 200);
    assert!(insured(&people[0][0]).json()["results"]["insured_in"].is_boolean());
    let capped = insured(&people[0][0]);
    assert_eq!(
        (capped.status, capped.code().as_str()),
        (429, "rate_limited")
    );
    assert!(capped.text().contains("daily limit") && !capped.text().contains(&people[0][0]));
    assert_eq!(insured(&people[1][0]).status, 200);
    assert_eq!(insured(&people[2][0]).status, 200);
    let fast = insured(&people[3][0]);
    assert_eq!(
        fast.code(),
        "rate_limited",
        "a fifth subject within the minute"
    );
    assert!(
        fast.text().contains("4 subjects a minute"),
        "{}",
        fast.text()
    );

    // The audit log has a keyed digest per subject, never the identifier.
    let log = server
        .get("/v1/audit?principal=carol&limit=1000", Some(&authority))
        .json();
    let entries: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == "POST /v1/verify")
        .collect();
    assert!(entries.len() >= 14, "{}", entries.len());
    assert!(
        entries
            .iter()
            .any(|e| e["outcome"] == "refused:rate_limited")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["outcome"] == "refused:bad_request")
    );
    let first_ok = entries.iter().rev().find(|e| e["outcome"] == "ok").unwrap();
    let request: Value = serde_json::from_str(first_ok["request"].as_str().unwrap()).unwrap();
    assert_eq!(request["product"], "person_identity");
    assert_eq!(request["claims"], json!(["name", "phone"]));
    assert_eq!(request["subjects"][0].as_str().unwrap().len(), 32);
    let all = log.to_string();
    assert!(
        !all.contains(id.as_str()),
        "the audit log holds an identifier"
    );
    for p in &people[..5] {
        assert!(
            !all.contains(&p[0]) && !all.contains(&p[1]),
            "the audit log holds a value"
        );
    }
    // The same subject has the same digest, whatever its spelling.
    let again = entries
        .iter()
        .rev()
        .filter(|e| e["outcome"] == "ok")
        .nth(1)
        .unwrap();
    let second: Value = serde_json::from_str(again["request"].as_str().unwrap()).unwrap();
    assert_eq!(second["subjects"][0], request["subjects"][0]);

    // A restart keeps today's counts: they are read back from the audit log.
    drop(server);
    let server = Server::start(&dir, &[]);
    let r = verify(
        &server,
        &carol,
        json!({"product": "insured_in_month", "subject": people[0][0], "claims": {"insured_in": "2025-03"}}),
    );
    assert_eq!(r.code(), "rate_limited", "{}", r.text());
    let products = server.get("/v1/verify/products", Some(&carol)).json();
    let names: Vec<&str> = products["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "person_identity",
            "insured_in_month",
            "utility_arrears",
            "legal_representative"
        ]
    );
    assert!(
        products["products"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["available"] == true && p["usable_by_you"] == true)
    );
}

#[test]
fn the_cli_verifies_like_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, _root) = deployment(tmp.path());
    let people = people(&dir);
    let p = &people[7];
    let out = cli_verify(
        &dir,
        &[
            "--subject",
            &p[0],
            "--claim",
            &format!("name={}", p[1]),
            "--claim",
            "phone=13800000000",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let answer: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(answer["results"], json!({"all": "mismatch"}));

    let items = tmp.path().join("items.json");
    std::fs::write(&items, json!([{"subject": p[0], "claims": {"name": p[1]}}, {"subject": people[8][0], "claims": {"name": p[1]}}]).to_string()).unwrap();
    let out = cli_verify(&dir, &["--items", s(&items)]);
    assert!(out.status.success(), "{:?}", text(&out));
    let answer: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(answer["results"][0]["all"], "match");

    let out = cli_verify(&dir, &["--subject", "123", "--claim", "name=x"]);
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(error["error"]["code"], "bad_request");
    let audit = veil(&["audit", "verify", "--data-dir", s(&dir)]);
    assert!(audit.status.success(), "{:?}", text(&audit));
}

#[test]
fn re_registering_a_dataset_rebuilds_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, _root) = deployment(tmp.path());
    let before = people(&dir);
    let other = tmp.path().join("other");
    let out = veil(&[
        "datasets",
        "generate",
        "--out",
        s(&other),
        "--persons",
        "1500",
        "--seed",
        "4",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let manifest = dir.join("datasets/sample/population.toml");
    let out = veil(&[
        "datasets",
        "register",
        "--data-dir",
        s(&dir),
        "--file",
        s(&other.join("population.parquet")),
        s(&manifest),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let indexes: Vec<String> = std::fs::read_dir(dir.join("indexes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("population-"))
        .collect();
    assert_eq!(
        indexes,
        ["population-v2-id_number.idx"],
        "the old version's index is gone"
    );

    let out = veil(&[
        "query",
        "--data-dir",
        s(&dir),
        "--as",
        "owner",
        "--purpose",
        "test-oracle",
        "--sql",
        "SELECT id_number, name FROM population ORDER BY id_number",
    ]);
    let after: Value = serde_json::from_str(&text(&out).0).unwrap();
    let after: Vec<(String, String)> = after["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(after.len(), 1500);
    let verify = |id: &str, name: &str| {
        let out = cli_verify(&dir, &["--subject", id, "--claim", &format!("name={name}")]);
        assert!(out.status.success(), "{:?}", text(&out));
        let answer: Value = serde_json::from_str(&text(&out).0).unwrap();
        answer["results"]["all"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        verify(&after[3].0, &after[3].1),
        "match",
        "the new data answers"
    );
    let gone = before
        .iter()
        .find(|p| !after.iter().any(|(id, name)| *id == p[0] && *name == p[1]))
        .unwrap();
    assert_eq!(
        verify(&gone[0], &gone[1]),
        "mismatch",
        "the old data does not"
    );
}

#[test]
fn subjects_read_their_own_records_and_nobody_elses() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let people = people(&dir);
    let me = &people[5];
    let subject = add_principal(&dir, "me", "subject", &["--subject", &me[0]]);
    let authority = add_principal(
        &dir,
        "authority",
        "approver",
        &["--org", "云南省数据局 (Yunnan Provincial Data Bureau)"],
    );
    let server = Server::start(&dir, &[]);
    let r = server.get("/v1/me/records", Some(&subject));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let records = answer["records"].as_array().unwrap();
    let population = records
        .iter()
        .find(|r| r["dataset"] == "population")
        .unwrap();
    assert_eq!(population["rows"].as_array().unwrap().len(), 1);
    assert_eq!(population["rows"][0][0], me[0].as_str());
    assert_eq!(
        population["rows"][0][1],
        me[1].as_str(),
        "their own name, in full"
    );
    for r in records {
        for row in r["rows"].as_array().unwrap() {
            assert!(
                row.as_array().unwrap().iter().any(|v| v == me[0].as_str()),
                "{}: a row not about the subject",
                r["dataset"]
            );
        }
    }
    assert!(answer["audit_seq"].as_i64().unwrap() > 0);
    for other in [&carol, &authority] {
        assert_eq!(
            server.get("/v1/me/records", Some(other)).code(),
            "forbidden"
        );
    }
    let log = server
        .get("/v1/audit?principal=me", Some(&authority))
        .json();
    let entry = &log["entries"][0];
    assert_eq!(entry["endpoint"], "GET /v1/me/records");
    assert_eq!(entry["outcome"], "ok");
    assert!(entry["rows"].as_u64().unwrap() >= 1);
}

/// Issue 17's first two attempts, against the ground truth of the sample:
/// a claim the identity number predicts cannot be published, and a
/// threshold outside the field's bounds is refused instead of telling
/// members from strangers.
#[test]
fn no_existence_oracle_through_predicted_claims_or_thresholds() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    // A policy whose person_identity claims the birth date again.
    let preset = std::fs::read_to_string(repo("policies/presets/default.toml")).unwrap();
    let with_birth_date = preset.replacen(
        "[[product.claim]]\nfield = \"name\"\ncompare = \"normalized\"\n",
        "[[product.claim]]\nfield = \"name\"\ncompare = \"normalized\"\n\n[[product.claim]]\nfield = \"birth_date\"\ncompare = \"date\"\n",
        1,
    );
    assert_ne!(with_birth_date, preset);
    let path = tmp.path().join("birth_date.toml");
    std::fs::write(&path, &with_birth_date).unwrap();
    let out = veil(&["policy", "load", "--data-dir", s(&dir), s(&path)]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("claim `birth_date` is predicted"),
        "{stderr}"
    );
    assert!(stderr.contains("birth date"), "{stderr}");

    // The default preset's product: one bit for name and phone. With the
    // number and every date of a birth year, nothing tells a real number
    // from a made-up one but the name, which a guesser does not know.
    let people = people(&dir);
    let server = Server::start(&dir, &[]);
    let p = &people[3];
    let wrong_name = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "subject": p[0], "claims": {"name": "张三丰"}}),
    );
    assert_eq!(wrong_name.json()["results"], json!({"all": "mismatch"}));
    let unknown_claim = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "subject": p[0], "claims": {"birth_date": p[2]}}),
    );
    assert_eq!(unknown_claim.code(), "bad_request");

    // Membership through a threshold below every value.
    // (`over = "latest"` sums the latest month's accounts: no upper bound.)
    for (y, expect) in [
        (-1.0, "bad_request"),
        (-0.01, "bad_request"),
        (100.0, ""),
        (50_000.0, ""),
    ] {
        let r = verify(
            &server,
            &carol,
            json!({"product": "utility_arrears", "subject": p[0], "claims": {"arrears_above": y}}),
        );
        assert_eq!(r.code(), expect, "{y}: {}", r.text());
        if !expect.is_empty() {
            assert!(r.text().contains("declared bounds"), "{}", r.text());
        }
    }
}

fn is_withheld(result: &Value) -> bool {
    result.as_str() == Some("rate_limited")
}

/// A valid identity number (its check character computed) for a region,
/// a birth date and a sequence.
fn identity_number(region: &str, born: &str, sequence: u32) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{born}{sequence:03}");
    let sum: u32 = body
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap() * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// Issue 17's third attempt and its variants, against the ground truth:
/// ten guessed names per known number in one batch, then the same guesses
/// through a second key of the same institution, then a sweep of made-up
/// numbers. Each subject yields at most what two wrong guesses allow; a capped item is `rate_limited`, never an answer; the
/// caps survive a restart.
#[test]
fn guessing_costs_more_than_it_yields() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let people = people(&dir);
    let a = add_principal(&dir, "bank-a", "consumer", &["--org", "Some Bank"]);
    let b = add_principal(&dir, "bank-b", "consumer", &["--org", "Some Bank"]);
    let server = Server::start(&dir, &[]);
    let targets: Vec<&Vec<String>> = people.iter().step_by(97).take(20).collect();
    // Nine wrong names and the right one, at a position that varies.
    let decoys: Vec<&str> = people
        .iter()
        .map(|p| p[1].as_str())
        .filter(|n| targets.iter().all(|t| t[1] != *n))
        .take(9)
        .collect();
    let guesses = |t: usize| -> Vec<&str> {
        let mut g = decoys.clone();
        g.insert((t * 7) % 10, targets[t][1].as_str());
        g
    };
    let mut items = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        for name in guesses(t) {
            items.push(json!({"subject": target[0], "claims": {"name": name}}));
        }
    }
    let r = verify(
        &server,
        &a,
        json!({"product": "person_identity", "items": items}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let results = answer["results"].as_array().unwrap();
    let mut recovered = 0;
    for t in 0..targets.len() {
        let right = (t * 7) % 10;
        let mut wrong_answers = 0;
        for (g, name) in guesses(t).into_iter().enumerate() {
            let result = &results[t * 10 + g];
            if is_withheld(result) {
                continue;
            }
            let truth = if name == targets[t][1] {
                "match"
            } else {
                "mismatch"
            };
            assert_eq!(result["all"], truth, "an answer that is not the truth");
            if truth == "match" {
                recovered += 1;
            } else {
                wrong_answers += 1;
            }
        }
        assert!(wrong_answers <= 2, "{wrong_answers} wrong guesses answered");
        // The right name is found only when it came within two guesses:
        // after two wrong answers, nothing more about the subject.
        let found = !is_withheld(&results[t * 10 + right]);
        assert_eq!(found, right <= 1, "subject {t}, right name at {right}");
    }
    let expected = (0..targets.len()).filter(|t| (t * 7) % 10 <= 1).count();
    assert_eq!(recovered, expected);
    assert!(
        recovered * 3 < targets.len(),
        "{recovered} of {}",
        targets.len()
    );
    let withheld = answer["withheld"]["items"].as_array().unwrap();
    assert_eq!(
        withheld.len(),
        results.iter().filter(|r| is_withheld(r)).count()
    );
    assert!(answer["withheld"]["retry_after_seconds"].as_u64().unwrap() > 0);

    // Another key of the same institution gets nothing more about them,
    // not even with the right name; the refusal says nothing of whom.
    let missed: Vec<usize> = (0..targets.len()).filter(|t| (t * 7) % 10 > 1).collect();
    for &t in &missed {
        let r = verify(
            &server,
            &b,
            json!({"product": "person_identity", "subject": targets[t][0],
                "claims": {"name": targets[t][1]}}),
        );
        assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
        assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
        assert!(!r.text().contains(&targets[t][0]) && !r.text().contains(&targets[t][1]));
    }
    // Another institution's caller is answered: the caps are per institution.
    let r = verify(
        &server,
        &carol,
        json!({"product": "person_identity", "subject": targets[missed[0]][0],
            "claims": {"name": targets[missed[0]][1]}}),
    );
    assert_eq!(r.json()["results"], json!({"all": "match"}));

    // A sweep of made-up numbers (real ones among them) stops at the
    // principal's daily cap of mismatching answers: 100 by default.
    let real: Vec<&Vec<String>> = people.iter().skip(1).step_by(53).take(20).collect();
    let mut sweep = Vec::new();
    for (n, p) in real.iter().enumerate() {
        for day in 1..=15u32 {
            let id = identity_number("110105", &format!("199001{day:02}"), n as u32);
            assert!(people.iter().all(|q| q[0] != id));
            sweep.push(json!({"subject": id, "claims": {"name": p[1]}}));
        }
        sweep.push(json!({"subject": p[0], "claims": {"name": p[1]}}));
    }
    let r = verify(
        &server,
        &b,
        json!({"product": "person_identity", "items": sweep}),
    );
    let results = r.json()["results"].as_array().unwrap().clone();
    let answered: Vec<&Value> = results.iter().filter(|r| !is_withheld(r)).collect();
    let mismatches = answered.iter().filter(|r| r["all"] == "mismatch").count();
    assert_eq!(mismatches, 100);
    let matches = answered.iter().filter(|r| r["all"] == "match").count();
    assert!(matches <= 100 / 15 + 1, "{matches} real numbers found");
    let r = verify(
        &server,
        &b,
        json!({"product": "person_identity", "subject": real[19][0], "claims": {"name": real[19][1]}}),
    );
    assert_eq!(r.code(), "rate_limited", "{}", r.text());
    assert!(r.text().contains("mismatches today"), "{}", r.text());

    // A restart keeps every count: they are read back from the audit log.
    drop(server);
    let server = Server::start(&dir, &[]);
    let r = verify(
        &server,
        &b,
        json!({"product": "person_identity", "subject": real[19][0], "claims": {"name": real[19][1]}}),
    );
    assert_eq!(r.code(), "rate_limited", "{}", r.text());
    let r = verify(
        &server,
        &a,
        json!({"product": "person_identity", "subject": targets[missed[0]][0],
            "claims": {"name": targets[missed[0]][1]}}),
    );
    assert_eq!(r.code(), "rate_limited", "{}", r.text());
    let r = verify(
        &server,
        &a,
        json!({"product": "person_identity", "subject": real[0][0], "claims": {"name": real[0][1]}}),
    );
    assert_eq!(r.json()["results"], json!({"all": "match"}), "{}", r.text());
}
