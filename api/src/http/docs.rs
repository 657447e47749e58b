//! `/openapi.json`, generated from [`ROUTES`], and `/docs`, a self-contained
//! page that renders it and lets a caller try each endpoint with their key.
//! A test walks `ROUTES` against the router, so the two cannot drift apart.

use axum::Json;
use axum::response::{Html, IntoResponse};
use serde_json::{Map, Value, json};

/// One documented endpoint.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Roles that may call it; empty for public endpoints.
    pub roles: &'static [&'static str],
    /// An example JSON request body, when it takes one.
    pub body: Option<&'static str>,
    pub query: &'static [&'static str],
}

pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness.",
        roles: &[],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics.",
        roles: &[],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/openapi.json",
        summary: "This document.",
        roles: &[],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/catalog",
        summary: "The datasets visible to the caller, each field with its category, grade and the caller's disclosure level.",
        roles: &["consumer", "modeler", "approver", "admin", "subject"],
        body: None,
        query: &["purpose"],
    },
    Route {
        method: "get",
        path: "/v1/catalog/{dataset}/versions",
        summary: "Every registered version of a dataset's catalog entry.",
        roles: &["approver", "admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/datasets",
        summary: "Register a dataset from a catalog manifest; its file lies under the data directory's datasets/ folder.",
        roles: &["approver"],
        body: Some(r#"{"manifest": "format = 1\n[dataset]\n..."}"#),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/query",
        summary: "Run one SELECT under policy. Answers as application/json, text/csv or application/vnd.apache.arrow.stream (Accept), streamed, with provenance, privacy and a signed receipt. With `epsilon`, a differentially private aggregate (budget charged before release; `dry_run` prices it without spending).",
        roles: &["consumer", "modeler"],
        body: Some(
            r#"{"sql": "SELECT county_code, COUNT(*) FROM population GROUP BY county_code", "purpose": "social-assistance"}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/receipts/{request_id}",
        summary: "The signed receipt of a CSV or Arrow answer (JSON answers carry theirs inline).",
        roles: &["consumer", "modeler"],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/budget",
        summary: "Per dataset queryable under differential privacy: the budget, what was spent (basic composition and zCDP) and the ε left.",
        roles: &["consumer", "modeler"],
        body: None,
        query: &["purpose"],
    },
    Route {
        method: "post",
        path: "/v1/verify",
        summary: "Verify claims about a subject against data you never see: `match`/`mismatch` (or true/false for predicate products) per claim and nothing else; an unknown subject fails every claim. One `subject` with `claims`, or `items`: up to 10,000 of them. Identifiers are checked before any lookup; per-principal limits per minute and per subject per day; every verification is audited with a keyed digest of the subject.",
        roles: &["consumer"],
        body: Some(
            r#"{"product": "person_identity", "subject": "53010219900101001X", "claims": {"name": "张三", "birth_date": "1990-01-01"}}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/verify/products",
        summary: "The verification products: dataset, claims and how each compares, limits, and whether you may use it.",
        roles: &["consumer", "modeler", "approver", "admin", "subject"],
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/requests",
        summary: "Open a request: `sharing` and `open_data` (dataset, purpose, fields, days), `correction` (detail.record, detail.correction; `via_authority`), `complaint` (detail.complaint: suspends the dataset at once), `emergency_data`, `catalog_change` (detail.manifest), `qualification` (detail.organisation, detail.scope). Unconditional data is granted at once; not-shared or not-open data is refused with the article.",
        roles: &["consumer", "modeler", "approver", "subject"],
        body: Some(
            r#"{"kind": "sharing", "dataset": "social_insurance", "purpose": "social-assistance", "fields": ["month", "paid"]}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/requests",
        summary: "The requests you opened and those you act on as provider, collector or data authority, with their deadlines and next steps.",
        roles: &["consumer", "modeler", "approver", "subject"],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/requests/overdue",
        summary: "Open requests past their working-day deadline, for the data authority.",
        roles: &["approver", "admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/requests/{id}",
        summary: "One request and every step taken on it, for its parties.",
        roles: &["consumer", "modeler", "approver", "subject"],
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/requests/{id}/{action}",
        summary: "Take a step (approve, deliver, refuse with notes.legal_basis, withdraw, forward, extend, answer, restore, withdraw_opening, seal, destroy, grant, revoke, commit, reject) as the party it belongs to; deadlines follow the working-day calendar.",
        roles: &["consumer", "modeler", "approver", "subject"],
        body: Some(r#"{"notes": {"legal_basis": "Art. 27: ..."}}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/me/records",
        summary: "A subject principal's own records (Art. 24): in every dataset whose privacy unit is its identifier, the rows about it, with every field its grade lets out in any form; provenance per dataset; audited.",
        roles: &["subject"],
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/models",
        summary: "Train a model inside (Art. 32, 39), for a modeler holding a development qualification: `template` linear_regression, logistic_regression (with `above`), histogram or quantiles; `features` and `target` as `dataset.field` or {dataset, field, per_unit: mean|min|max}, datasets joined on their privacy unit; `epsilon`; `params` (iterations, learning_rate, l2, bins, quantiles). Only datasets that are open (Art. 38) and have the template enabled by the policy. Charges the budget, then releases parameters and metrics under differential privacy, with the noise, the provenance and the policy version.",
        roles: &["modeler"],
        body: Some(
            r#"{"template": "linear_regression", "features": ["tax.revenue", "utility_usage.usage"], "target": "tax.tax_paid", "epsilon": 1.0}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/models",
        summary: "Your models: spec, released parameters and metrics, privacy spent, lineage and policy version.",
        roles: &["modeler"],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/models/{id}",
        summary: "One of your models.",
        roles: &["modeler"],
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/models/{id}/score",
        summary: "Score inside with one of your regression models: `subjects` (identifiers of the privacy unit; needs a live grant for `purpose` covering every feature; a subject with no records scores null) or `rows` (feature values you supply, in the features' order, clamped to the bounds). Answers carry provenance; subjects are audited as keyed digests.",
        roles: &["modeler"],
        body: Some(r#"{"subjects": ["91110000600037341L"], "purpose": "credit-assessment"}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/calendar/deadline",
        summary: "The `days`-th working day after `from` on the State Council's calendar (holidays and make-up working days, 2024-2026); years without a published arrangement assume Monday to Friday and are listed in `assumed_years`.",
        roles: &["consumer", "modeler", "approver", "admin", "subject"],
        body: None,
        query: &["from", "days"],
    },
    Route {
        method: "get",
        path: "/v1/policy",
        summary: "The active policy and its text.",
        roles: &["approver", "admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/policy",
        summary: "Check a policy (as `veil policy check` does) and make it the active version.",
        roles: &["approver"],
        body: Some(r#"{"text": "format = 1\nname = \"default\"\n..."}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/policy/versions",
        summary: "Every policy version.",
        roles: &["approver", "admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/principals",
        summary: "Principals (never their keys).",
        roles: &["admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/principals",
        summary: "Create a principal; its API key appears in this answer only.",
        roles: &["admin"],
        body: Some(
            r#"{"name": "kunming-civil-affairs", "role": "consumer", "org": "昆明市民政局", "region": "530100"}"#,
        ),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/principals/{name}/keys",
        summary: "Issue one more key.",
        roles: &["admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "delete",
        path: "/v1/principals/{name}/keys",
        summary: "Revoke every key of a principal, effective on the next request.",
        roles: &["admin"],
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/principals/{name}/status",
        summary: "Suspend or reactivate a principal (Art. 47-48).",
        roles: &["admin"],
        body: Some(r#"{"status": "suspended"}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/audit",
        summary: "Search the audit log; a providing institution sees the use of its own data.",
        roles: &["approver"],
        body: None,
        query: &["principal", "dataset", "since", "outcome", "limit"],
    },
    Route {
        method: "get",
        path: "/v1/audit/verify",
        summary: "Whether the audit chain is intact.",
        roles: &["approver", "admin"],
        body: None,
        query: &[],
    },
];

const ERRORS: [(&str, &str); 11] = [
    ("400", "bad_request or invalid_sql"),
    ("401", "unauthenticated"),
    ("403", "forbidden, policy_denied or budget_exhausted"),
    ("404", "not_found"),
    ("409", "conflict"),
    ("413", "payload_too_large"),
    ("429", "rate_limited"),
    ("500", "internal"),
    ("200", "success"),
    ("201", "created"),
    ("default", "an error: {\"error\": {\"code\", \"message\"}}"),
];

/// The OpenAPI 3 document of every route.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut op = json!({
            "summary": r.summary,
            "responses": ERRORS.iter().map(|(code, what)| (code.to_string(), json!({"description": what}))).collect::<Map<String, Value>>(),
        });
        if !r.roles.is_empty() {
            op["security"] = json!([{"apiKey": []}]);
            op["description"] = json!(format!("Roles: {}.", r.roles.join(", ")));
        }
        let mut parameters: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(r.query.iter().map(|name| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}})));
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(example) = r.body {
            let example: Value = serde_json::from_str(example).unwrap_or(Value::Null);
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}, "example": example}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "veil", "version": env!("CARGO_PKG_VERSION"), "description": "Privacy-preserving public data: usable but not visible."},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}

pub async fn openapi() -> impl IntoResponse {
    Json(document())
}

pub async fn page() -> impl IntoResponse {
    Html(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>veil API</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
section{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.75rem 1rem}
code{background:#f4f4f4;padding:0 .25rem}.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}
textarea,input{width:100%;box-sizing:border-box;font-family:monospace}pre{background:#f8f8f8;overflow:auto;max-height:20rem}
</style></head>
<body><h1>veil API</h1>
<p>Every endpoint but the public ones takes <code>Authorization: Bearer &lt;key&gt;</code>.</p>
<label>API key <input id="key" placeholder="veil_..."></label>
<div id="routes">loading /openapi.json ...</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const root = document.getElementById('routes'); root.textContent = '';
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    const s = document.createElement('section');
    const body = op.requestBody ? JSON.stringify(op.requestBody.content['application/json'].example, null, 2) : '';
    s.innerHTML = `<div><span class="m">${method}</span><code>${path}</code></div><p>${op.summary} ${op.description || ''}</p>`
      + `<input class="path" value="${path}">` + (body ? `<textarea rows="4" class="body"></textarea>` : '')
      + `<button>Send</button><pre class="out"></pre>`;
    if (body) s.querySelector('.body').value = body;
    s.querySelector('button').onclick = async () => {
      const headers = {'Content-Type': 'application/json'};
      const key = document.getElementById('key').value.trim(); if (key) headers.Authorization = 'Bearer ' + key;
      const init = {method: method.toUpperCase(), headers};
      if (body) init.body = s.querySelector('.body').value;
      const r = await fetch(s.querySelector('.path').value, init);
      s.querySelector('.out').textContent = r.status + ' ' + r.statusText + '\n' + await r.text();
    };
    root.appendChild(s);
  }
});
</script></body></html>"#;
