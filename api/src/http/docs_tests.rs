//! The OpenAPI document checked by a real validator against the OpenAPI
//! 3.1 specification's own schema, and the `/docs` page served with the
//! files it loads.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{AppState, ServerConfig, app};

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_valid_openapi_and_its_schemas_are_the_wire_types() {
    let doc = super::docs::document();
    // The OpenAPI 3.1 specification's own JSON Schema, and a real validator.
    let spec: Value =
        serde_json::from_str(include_str!("../../tests/data/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&spec).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // The validator is live: a document without `info` fails it.
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!validator.is_valid(&broken));
    // Every component is a valid JSON Schema (2020-12) and every reference
    // resolves.
    let components = doc["components"]["schemas"].as_object().unwrap();
    for (name, schema) in components {
        assert!(
            jsonschema::meta::is_valid(schema),
            "{name} is not a JSON Schema"
        );
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} points outside the components"));
        assert!(components.contains_key(name), "{r} does not resolve");
    }
    // The schemas are the wire types: a body's documented fields are the
    // fields the endpoint takes.
    let query = &components["QueryBody"]["properties"];
    for field in [
        "sql",
        "purpose",
        "epsilon",
        "max_groups",
        "max_rows",
        "dry_run",
    ] {
        assert!(query.get(field).is_some(), "QueryBody lacks {field}");
    }
    assert_eq!(
        components["QueryBody"]["required"],
        serde_json::json!(["sql"])
    );
    let view = &components["DatasetView"]["properties"];
    assert!(view.get("providing_institution").is_some());
    assert!(components.contains_key("FieldView"));
}

#[tokio::test]
async fn the_docs_page_is_swagger_ui_with_its_files_built_in() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig::new(tmp.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    let state = AppState::open(config).unwrap();
    let page = app(state.clone())
        .oneshot(Request::get("/docs").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&html);
    // Every script and style sheet the page loads is served here.
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"] {
        assert!(html.contains(asset), "{html}");
        let response = app(state.clone())
            .oneshot(Request::get(asset).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.len() > 10_000, "{asset}");
    }
    assert!(
        !html.contains("//cdn") && !html.contains("https://"),
        "{html}"
    );
    assert!(html.contains("validatorUrl: null"));
    state.close(std::time::Duration::from_secs(5));
}
