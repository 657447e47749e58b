//! `/openapi.json`, made from the route table ([`super::routes`]) with the
//! schemas `utoipa` derives from the wire types, and `/docs`, Swagger UI
//! over it. Swagger UI's files are vendored in `api/assets/swagger-ui` and
//! built into the binary: nothing is fetched from elsewhere at run time.

use axum::Json;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use serde_json::{Map, Value, json};
use utoipa::openapi::{RefOr, Schema};

use super::routes::{ROUTES, Shape};

/// The statuses every operation may answer with besides its success.
const ERRORS: [(&str, &str); 8] = [
    ("400", "bad_request or invalid_sql"),
    ("401", "unauthenticated"),
    ("403", "forbidden, policy_denied or budget_exhausted"),
    ("404", "not_found"),
    ("409", "conflict"),
    ("413", "payload_too_large"),
    ("429", "rate_limited"),
    ("500", "internal"),
];

fn reference(shape: &Shape, schemas: &mut Vec<(String, RefOr<Schema>)>) -> Value {
    let name = (shape.name)().into_owned();
    (shape.refers)(schemas);
    schemas.push((name.clone(), (shape.schema)()));
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The OpenAPI 3.1 document of every route.
pub fn document() -> Value {
    let mut schemas = Vec::new();
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = Map::new();
    for r in ROUTES {
        let success = r
            .success
            .unwrap_or(if r.method == "post" && r.answer.is_some() {
                "201"
            } else {
                "200"
            });
        let content = match r.media {
            Some(media) => media
                .iter()
                .map(|&m| {
                    let schema = if m == "application/json" {
                        json!({"type": "object"})
                    } else if m.starts_with("text/") {
                        json!({"type": "string"})
                    } else {
                        json!({"type": "string", "contentMediaType": m})
                    };
                    (m.to_owned(), json!({ "schema": schema }))
                })
                .collect::<Map<String, Value>>()
                .into(),
            None => json_content(
                r.answer
                    .as_ref()
                    .map_or_else(|| json!({"type": "object"}), |s| reference(s, &mut schemas)),
            ),
        };
        let mut responses = Map::new();
        responses.insert(
            success.into(),
            json!({"description": "success", "content": content}),
        );
        for (code, what) in ERRORS {
            responses.insert(
                code.into(),
                json!({"description": what, "content": json_content(error.clone())}),
            );
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.'], "_")),
            "responses": responses,
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
        if let Some(params) = r.params {
            parameters.extend(
                params()
                    .iter()
                    .map(|p| serde_json::to_value(p).unwrap_or_default()),
            );
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some((shape, example)) = &r.body {
            let schema = shape
                .as_ref()
                .map_or_else(|| json!({"type": "object"}), |s| reference(s, &mut schemas));
            let example: Value = serde_json::from_str(example).unwrap_or(Value::Null);
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema, "example": example}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let mut components: Map<String, Value> = schemas
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default()))
        .collect();
    components.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every refusal and error: a stable code and a message that never repeats a protected value or what the caller sent.",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": crate::wire::ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()},
                    "message": {"type": "string"},
                },
            }},
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "veil",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Privacy-preserving public data: usable but not visible.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
        "paths": paths,
    })
}

pub async fn openapi() -> impl IntoResponse {
    Json(document())
}

pub async fn page() -> impl IntoResponse {
    Html(DOCS_PAGE)
}

pub async fn swagger_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../assets/swagger-ui/swagger-ui.css"),
    )
}

pub async fn swagger_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    )
}

/// Swagger UI over `/openapi.json`. The validator badge is off: it would
/// send the document to validator.swagger.io.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>veil API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  validatorUrl: null,
  queryConfigEnabled: false,
  tryItOutEnabled: true,
  persistAuthorization: false,
});
</script></body></html>"#;
