//! The router through `app(state).oneshot(...)`, without a socket: every
//! route of the table is served and documented, every route that is not
//! public checks the key and the role before it reads a body, and errors
//! come as contract.md's JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use veil_policies::Role;

use super::routes::{Access, ROUTES};
use super::{AppState, ServerConfig, app};
use crate::store::{NewPrincipal, Store};

const ROLES: [Role; 5] = [
    Role::Consumer,
    Role::Modeler,
    Role::Approver,
    Role::Admin,
    Role::Subject,
];

/// A data directory with the default policy and one principal per role;
/// their keys by role.
fn deployment(dir: &std::path::Path) -> Vec<(Role, String)> {
    let mut store = Store::open(dir).unwrap();
    store
        .load_policy(veil_policies::policy::DEFAULT_PRESET, "test")
        .unwrap();
    ROLES
        .iter()
        .map(|&role| {
            let name = format!("p-{}", role.name());
            let (_, key) = store
                .add_principal(&NewPrincipal {
                    name: &name,
                    role,
                    org: Some("an institution"),
                    region: None,
                    subject: (role == Role::Subject).then_some("11010519491231002X"),
                })
                .unwrap();
            (role, key.expose().to_owned())
        })
        .collect()
}

/// The service over a fresh deployment, and its keys by role.
fn serve(dir: &std::path::Path) -> (Arc<AppState>, Vec<(Role, String)>) {
    let keys = deployment(dir);
    let config = ServerConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    (AppState::open(config).unwrap(), keys)
}

/// The path with each `{parameter}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(path);
    if let Some(k) = key {
        request = request.header("Authorization", format!("Bearer {k}"));
    }
    if body.is_some() {
        request = request.header("Content-Type", "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn every_route_checks_the_key_and_the_role_before_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, keys) = serve(tmp.path());
    // A body that no endpoint takes, carrying a value that must not come
    // back in any error.
    let garbage = r#"{"not a field": "53010219900101001X"#;
    for route in ROUTES {
        let path = concrete(route.path);
        let Access::Roles(allowed) = route.access else {
            let (status, _) = call(&state, route.method, &path, None, None).await;
            assert_eq!(status, StatusCode::OK, "{} {}", route.method, route.path);
            continue;
        };
        let (status, body) = call(&state, route.method, &path, None, Some(garbage)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{} {} without a key",
            route.method,
            route.path
        );
        let (status, body) = call(
            &state,
            route.method,
            &path,
            Some("veil_unknown"),
            Some(garbage),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{} {}: {body}",
            route.method,
            route.path
        );
        for (role, key) in &keys {
            let (status, body) = call(&state, route.method, &path, Some(key), Some(garbage)).await;
            let text = body.to_string();
            assert!(
                !text.contains("5301021990"),
                "{} {}: {text}",
                route.method,
                route.path
            );
            if !allowed.contains(role) && route.method == "get" {
                // The router runs the GET handler for HEAD: the same check.
                let (status, _) = call(&state, "head", &path, Some(key), None).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "HEAD {} as {role}",
                    route.path
                );
            }
            if allowed.contains(role) {
                // Past the role check: whatever the endpoint says of this
                // input, it is a stable code, never a crash or a 401/403 of
                // the role check.
                assert!(
                    status.is_client_error() || status.is_success(),
                    "{} {} as {role}: {status} {text}",
                    route.method,
                    route.path
                );
                assert_ne!(status, StatusCode::UNAUTHORIZED);
            } else {
                assert_eq!(
                    (status, code(&body)),
                    (StatusCode::FORBIDDEN, "forbidden"),
                    "{} {} as {role}: {text}",
                    route.method,
                    route.path
                );
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("you are a"), "{message}");
            }
        }
    }
    state.close(std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn the_router_serves_what_the_document_lists_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, keys) = serve(tmp.path());
    // Every route of the table has a handler.
    for route in ROUTES {
        assert!(
            super::handler(route).is_some(),
            "{} {} has no handler",
            route.method,
            route.path
        );
    }
    // The document lists exactly the table, with the roles it checks.
    let doc = super::docs::document();
    let mut listed = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            listed += 1;
            let route =
                super::routes::find(method, path).expect("a documented route is in the table");
            let roles: Vec<&str> = route.access.roles().iter().map(|r| r.name()).collect();
            let documented: Vec<&str> = op["x-roles"]
                .as_array()
                .map(|a| a.iter().map(|r| r.as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(roles, documented, "{method} {path}");
        }
    }
    assert_eq!(listed, ROUTES.len());
    // A path outside the table, and a method a path does not take, are
    // refused in the contract's JSON.
    let admin = &keys.iter().find(|(r, _)| *r == Role::Admin).unwrap().1;
    let (status, body) = call(&state, "get", "/v1/nothing-here", Some(admin), None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = call(&state, "delete", "/v1/query", Some(admin), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A made-up method is counted, but its text makes no metric series.
    let (status, _) = call(&state, "X53010219900101001X", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let metrics = app(state.clone()).oneshot(request).await.unwrap();
    let text = metrics.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains(r#"method="other",status="405""#), "{text}");
    assert!(!text.contains("5301021990"), "{text}");
    state.close(std::time::Duration::from_secs(5));
}
