//! `/openapi.json`, generated from the route table ([`super::routes`]), and
//! `/docs`, a self-contained page that renders it and lets a caller try each
//! endpoint with their key.

use axum::Json;
use axum::response::{Html, IntoResponse};
use serde_json::{Map, Value, json};

use super::routes::ROUTES;

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
        let roles = r.access.roles();
        if !roles.is_empty() {
            let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
            op["security"] = json!([{"apiKey": []}]);
            op["description"] = json!(format!("Roles: {}.", names.join(", ")));
            op["x-roles"] = json!(names);
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
