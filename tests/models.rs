//! In-domain models end to end, on the real server: a qualified modeler
//! trains, lists and scores; every refusal path answers with its code and
//! reason; nothing a caller names as a subject comes back or reaches the
//! audit log.

mod common;

use common::*;
use serde_json::{Value, json};

const AUTHORITY: &str = "云南省数据局 (Yunnan Provincial Data Bureau)";

/// Qualifies `modeler` through the workflow; returns the request's id.
fn qualify(server: &Server, modeler: &str, authority: &str) -> String {
    let opened = server.post_json(
        "/v1/requests",
        Some(modeler),
        &json!({"kind": "qualification",
                "detail": {"organisation": "Dian Analytics", "scope": "credit models"}}),
    );
    assert_eq!(opened.status, 201, "{}", opened.text());
    let id = opened.json()["id"].as_str().unwrap().to_owned();
    let granted = server.post_json(
        &format!("/v1/requests/{id}/grant"),
        Some(authority),
        &json!({"notes": {"agreement": "DA-2026-31"}}),
    );
    assert_eq!(granted.json()["state"], "qualified", "{}", granted.text());
    id
}

fn linear() -> Value {
    json!({
        "template": "linear_regression",
        "features": ["tax.revenue", {"dataset": "legal_persons", "field": "registered_capital"}],
        "target": "tax.tax_paid",
        "epsilon": 1.0,
    })
}

#[test]
fn a_qualified_modeler_trains_lists_and_scores_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let dev = add_principal(&dir, "dev", "modeler", &["--org", "Dian Analytics"]);
    let other = add_principal(&dir, "other", "modeler", &[]);
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    let server = Server::start(&dir, &[]);

    // Only modelers, and only qualified ones (Art. 39).
    let r = server.post_json("/v1/models", Some(&carol), &linear());
    assert_eq!(r.code(), "forbidden", "{}", r.text());
    let r = server.post_json("/v1/models", Some(&dev), &linear());
    assert_eq!(r.code(), "forbidden");
    assert!(
        r.text().contains("development qualification (Art. 39)"),
        "{}",
        r.text()
    );
    assert_eq!(server.post_json("/v1/models", None, &linear()).status, 401);
    let qualification = qualify(&server, &dev, &authority);

    let trained = server.post_json("/v1/models", Some(&dev), &linear());
    assert_eq!(trained.status, 201, "{}", trained.text());
    let m = trained.json();
    let id = m["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("m-"));
    let released = &m["model"]["released"];
    assert_eq!(released["kind"], "linear_regression");
    assert_eq!(released["coefficients"].as_array().unwrap().len(), 2);
    // A sample of a few hundred companies is mostly noise at this ε, so
    // only the shape is checked here; engine/tests/models.rs checks the
    // statistics with seeded noise.
    let intercept = released["intercept"].as_f64().unwrap();
    let coefficients: Vec<f64> = released["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect();
    assert_eq!(m["privacy"]["mode"], "dp");
    assert_eq!(m["privacy"]["epsilon_spent"], 1.0);
    // What the training left of tax's monthly L3 budget (ε = 2), and when it
    // renews.
    let tax = m["privacy"]["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["dataset"] == "tax")
        .unwrap();
    assert_eq!(
        (&tax["epsilon"], &tax["period"]),
        (&json!(2.0), &json!("month"))
    );
    let left = tax["epsilon_left"].as_f64().unwrap();
    assert!((0.9..2.0).contains(&left), "{tax}");
    assert!(
        tax["renews"].as_str().unwrap().ends_with("T16:00:00.000Z"),
        "{tax}"
    );
    assert!(m["privacy"]["noise"][0]["sigma"].as_f64().unwrap() > 0.0);
    assert_eq!(m["provenance"]["datasets"], json!(["tax", "legal_persons"]));
    assert_eq!(m["provenance"]["catalog_versions"]["tax"], 1);
    assert!(m["policy_version"].as_str().is_some());
    assert!(m["audit_seq"].as_i64().is_some());
    assert_eq!(
        m["spec"]["params"],
        json!({}),
        "a linear regression has no parameters"
    );
    assert_eq!(
        m["spec"]["features"][0]["per_unit"], "mean",
        "defaults are kept with the spec"
    );

    // The budget was charged: tax's L3 fields allow ε = 2.
    let budget = server.get("/v1/budget", Some(&dev)).json();
    assert!(budget.to_string().contains("tax"), "{budget}");
    let mut greedy = linear();
    greedy["epsilon"] = json!(5.0);
    let r = server.post_json("/v1/models", Some(&dev), &greedy);
    assert_eq!(r.code(), "budget_exhausted", "{}", r.text());

    // Logistic regression and a histogram over utility usage.
    let logistic = server.post_json(
        "/v1/models",
        Some(&dev),
        &json!({"template": "logistic_regression",
                "features": ["utility_usage.usage", "utility_usage.amount_billed"],
                "target": {"dataset": "utility_usage", "field": "arrears", "per_unit": "max"},
                "above": 0.0, "epsilon": 0.5, "params": {"iterations": 20}}),
    );
    assert_eq!(logistic.status, 201, "{}", logistic.text());
    let accuracy = logistic.json()["model"]["released"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    let histogram = server.post_json(
        "/v1/models",
        Some(&dev),
        &json!({"template": "histogram", "features": ["utility_usage.usage"], "epsilon": 0.2,
                "params": {"bins": 4}}),
    );
    assert_eq!(histogram.status, 201, "{}", histogram.text());
    assert_eq!(histogram.json()["spec"]["params"], json!({"bins": 4}));
    let hist_id = histogram.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        histogram.json()["model"]["released"]["counts"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Listing shows the caller's models only.
    let mine = server.get("/v1/models", Some(&dev)).json();
    assert_eq!(mine["models"].as_array().unwrap().len(), 3);
    assert!(
        server.get("/v1/models", Some(&other)).json()["models"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        server.get(&format!("/v1/models/{id}"), Some(&dev)).json()["id"],
        id
    );
    let score_path = format!("/v1/models/{id}/score");
    assert_eq!(
        server.get(&format!("/v1/models/{id}"), Some(&other)).code(),
        "not_found"
    );
    let r = server.post_json(&score_path, Some(&other), &json!({"rows": [[1.0, 1.0]]}));
    assert_eq!(r.code(), "not_found");

    // Rows the caller supplies score with the released parameters.
    let scored = server.post_json(
        &score_path,
        Some(&dev),
        &json!({"rows": [[100.0, 50.0], [1e12, 50.0]]}),
    );
    assert_eq!(scored.status, 200, "{}", scored.text());
    let answer = scored.json();
    let (a, b) = (
        answer["scores"][0].as_f64().unwrap(),
        answer["scores"][1].as_f64().unwrap(),
    );
    let capped = server.post_json(
        &score_path,
        Some(&dev),
        &json!({"rows": [[100000.0, 50.0]]}),
    );
    // The released parameters, applied to the rows clamped to the bounds.
    let expect = |revenue: f64| intercept + coefficients[0] * revenue + coefficients[1] * 50.0;
    assert!(
        (a - expect(100.0)).abs() < 1e-9 * expect(100.0).abs().max(1.0),
        "{answer}"
    );
    assert!(
        (b - expect(100_000.0)).abs() < 1e-9 * expect(100_000.0).abs().max(1.0),
        "{answer}"
    );
    assert_eq!(
        capped.json()["scores"][0].as_f64().unwrap(),
        b,
        "values clamp to the bounds"
    );
    assert_eq!(
        answer["provenance"]["datasets"],
        json!(["tax", "legal_persons"])
    );
    let r = server.post_json(&score_path, Some(&dev), &json!({"rows": [[1.0]]}));
    assert!(
        r.text().contains("row #1 must hold 2 finite numbers"),
        "{}",
        r.text()
    );
    let r = server.post_json(
        &format!("/v1/models/{hist_id}/score"),
        Some(&dev),
        &json!({"rows": [[1.0]]}),
    );
    assert_eq!(r.code(), "bad_request");

    // Named subjects need a grant on every feature for the purpose. Their
    // rows are found through the unit indexes built at registration.
    for index in ["tax-v1-uscc.idx", "legal_persons-v1-uscc.idx"] {
        assert!(dir.join("indexes").join(index).exists(), "{index}");
    }
    let sample = dir.join("datasets/sample");
    let company = veil_datasets::first_value(&sample, "tax", "uscc").unwrap();
    let subjects = json!({"subjects": [company, "91110000600037341L"], "purpose": "credit"});
    let audited = || {
        let metrics = server.get("/metrics", None).text();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("veil_audit_entries_total "))
            .unwrap()
            .to_owned();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let before = audited();
    let r = server.post_json(&score_path, Some(&dev), &subjects);
    assert_eq!(r.code(), "policy_denied", "{}", r.text());
    assert_eq!(audited(), before + 1, "a refusal's audit entry is counted");
    assert!(
        r.text().contains("needs a live grant on `tax`"),
        "{}",
        r.text()
    );
    for (dataset, fields) in [("tax", "revenue"), ("legal_persons", "registered_capital")] {
        let out = veil(&[
            "grant",
            "add",
            "--data-dir",
            s(&dir),
            "--principal",
            "dev",
            "--dataset",
            dataset,
            "--purpose",
            "credit",
            "--fields",
            fields,
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    // Issue 17's fourth attempt: revenue stays aggregate-only to a modeler
    // under its grant, and a score gives it back (two scored rows give the
    // line, the line inverts), so named subjects are not scored.
    let r = server.post_json(&score_path, Some(&dev), &subjects);
    assert_eq!(r.code(), "policy_denied", "{}", r.text());
    assert!(
        r.text().contains("gives back its own values") && r.text().contains("`tax.revenue`"),
        "{}",
        r.text()
    );
    // A model of what the modeler may read row by row (registered capital,
    // L2) scores named companies.
    let capital = server.post_json(
        "/v1/models",
        Some(&dev),
        &json!({"template": "linear_regression",
                "features": ["legal_persons.registered_capital"],
                "target": "tax.tax_paid", "epsilon": 0.5}),
    );
    assert_eq!(capital.status, 201, "{}", capital.text());
    let capital_path = format!(
        "/v1/models/{}/score",
        capital.json()["id"].as_str().unwrap()
    );
    let r = server.post_json(&capital_path, Some(&dev), &subjects);
    assert_eq!(r.status, 200, "{}", r.text());
    let scores = r.json()["scores"].clone();
    assert!(scores[0].as_f64().is_some(), "{scores}");
    assert!(
        scores[1].is_null(),
        "a company with no records scores null: {scores}"
    );
    assert!(
        !r.text().contains(&company),
        "the answer does not repeat the subject"
    );
    // A bad identifier is named by its place, never echoed.
    let r = server.post_json(
        &capital_path,
        Some(&dev),
        &json!({"subjects": [company, "91530102XYZ"], "purpose": "credit"}),
    );
    assert_eq!(r.code(), "bad_request");
    assert!(r.text().contains("subject #2"), "{}", r.text());
    assert!(!r.text().contains("XYZ") && !r.text().contains(&company));
    let raw = format!(r#"{{"rows": [["{company}"]]}}"#);
    let r = server.request(
        "POST",
        &score_path,
        Some(&dev),
        &[("Content-Type", "application/json")],
        Some(raw.as_bytes()),
    );
    assert_eq!(r.code(), "bad_request");
    assert!(!r.text().contains(&company), "{}", r.text());

    // The audit log holds every training and scoring, refusals included,
    // and subjects only as keyed digests.
    let audit = server
        .get("/v1/audit?principal=dev&limit=100", Some(&authority))
        .json();
    let entries = audit["entries"].as_array().unwrap();
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"trained") && outcomes.contains(&"scored"),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&"refused:budget_exhausted"),
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&"refused:policy_denied"), "{outcomes:?}");
    assert!(!audit.to_string().contains(&company));

    // A revoked qualification stops training and scoring; the models stay
    // listed with their lineage.
    let revoked = server.post_json(
        &format!("/v1/requests/{qualification}/revoke"),
        Some(&authority),
        &json!({"notes": {"reason": "misuse (Art. 48)"}}),
    );
    assert_eq!(revoked.json()["state"], "revoked", "{}", revoked.text());
    let r = server.post_json(&score_path, Some(&dev), &json!({"rows": [[1.0, 1.0]]}));
    assert_eq!(r.code(), "forbidden", "{}", r.text());
    assert_eq!(
        server.post_json("/v1/models", Some(&dev), &linear()).code(),
        "forbidden"
    );
    assert_eq!(
        server.get("/v1/models", Some(&dev)).json()["models"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn data_that_is_not_open_is_never_developed() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, _root) = deployment(tmp.path());
    let dev = add_principal(&dir, "dev", "modeler", &[]);
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    let server = Server::start(&dir, &[]);
    qualify(&server, &dev, &authority);
    let cases = [
        (
            json!({"template": "histogram", "features": ["population.birth_date"], "epsilon": 1.0}),
            "policy_denied",
            "`population` is not open data, and data that is not open cannot be licensed for development (Art. 38)",
        ),
        (
            json!({"template": "linear_regression", "features": ["tax.revenue"], "target": "health_visits.cost", "epsilon": 1.0}),
            "policy_denied",
            "(Art. 38)",
        ),
        (
            json!({"template": "histogram", "features": ["legal_persons.registered_capital"], "epsilon": 1.0, "params": {"bins": 0}}),
            "bad_request",
            "`bins` must be between 1 and 10,000",
        ),
        (
            json!({"template": "deep_net", "features": [], "epsilon": 1.0}),
            "bad_request",
            "not a known model template",
        ),
        (
            json!({"template": "histogram", "features": ["nowhere.x"], "epsilon": 1.0}),
            "not_found",
            "no dataset named `nowhere`",
        ),
        (
            json!({"template": "histogram", "features": ["tax.revenue"], "epsilon": 1.0, "colour": "red"}),
            "bad_request",
            "a field this endpoint does not take; expected one of `template`",
        ),
    ];
    for (body, code, reason) in cases {
        let r = server.post_json("/v1/models", Some(&dev), &body);
        assert_eq!(r.code(), code, "{body}: {}", r.text());
        assert!(r.text().contains(reason), "{body}: {}", r.text());
    }
    // A key the endpoint does not take is not repeated: it could be
    // anyone's identifier.
    let r = server.post_json(
        "/v1/models",
        Some(&dev),
        &json!({"template": "histogram", "features": ["tax.revenue"], "epsilon": 1.0, "53010219900101001X": 1}),
    );
    assert_eq!(r.code(), "bad_request");
    assert!(!r.text().contains("5301021990"), "{}", r.text());
    assert!(
        server.get("/v1/models", Some(&dev)).json()["models"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_cli_trains_lists_and_scores_like_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, _root) = deployment(tmp.path());
    add_principal(&dir, "dev", "modeler", &[]);
    let authority = add_principal(&dir, "authority", "approver", &["--org", AUTHORITY]);
    let cli = |args: &[&str]| {
        let mut all = vec!["model"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", s(&dir)]);
        let out = veil(&all);
        (out.status.code(), text(&out).0)
    };
    let spec = tmp.path().join("spec.json");
    std::fs::write(&spec, linear().to_string()).unwrap();
    let (code, out) = cli(&["train", "--as", "dev", "--spec", s(&spec)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("\"forbidden\"") && out.contains("qualification"),
        "{out}"
    );
    {
        let server = Server::start(&dir, &[]);
        let dev_key = add_principal(&dir, "dev2", "modeler", &[]);
        qualify(&server, &dev_key, &authority);
    }
    let (code, out) = cli(&["train", "--as", "dev2", "--spec", s(&spec)]);
    assert_eq!(code, Some(0), "{out}");
    let model: Value = serde_json::from_str(&out).unwrap();
    let id = model["id"].as_str().unwrap();
    assert!(model["audit_seq"].as_i64().is_some());
    let (code, out) = cli(&["list", "--as", "dev2"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(id));
    let rows = tmp.path().join("rows.json");
    std::fs::write(&rows, "[[100.0, 50.0]]").unwrap();
    let (code, out) = cli(&["score", "--as", "dev2", "--id", id, "--rows", s(&rows)]);
    assert_eq!(code, Some(0), "{out}");
    let scored: Value = serde_json::from_str(&out).unwrap();
    assert!(scored["scores"][0].as_f64().is_some(), "{out}");
    let (code, out) = cli(&["score", "--as", "dev", "--id", id, "--rows", s(&rows)]);
    assert_eq!(code, Some(1));
    assert!(out.contains("not_found"), "{out}");
    // The CLI's work is in the same audit chain.
    let store = veil_api::Store::open(&dir).unwrap();
    let entries = store
        .search_audit(&veil_api::store::AuditFilter {
            principal: Some("dev2"),
            dataset: None,
            since: None,
            outcome: None,
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let endpoints: Vec<&str> = entries.iter().map(|e| e.entry.endpoint.as_str()).collect();
    assert!(
        endpoints.contains(&"veil model train") && endpoints.contains(&"veil model score"),
        "{endpoints:?}"
    );
}
