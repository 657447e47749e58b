//! The HTTP service (contract.md): axum over the store and the engine.
//!
//! `app(state)` builds the router, so tests can drive it without a socket;
//! `serve` binds it to a listener and shuts down gracefully on SIGTERM or
//! Ctrl-C, signing the audit log's head on the way out.

mod admin;
mod answer;
pub mod auth;
mod body;
mod calendar;
pub mod console;
mod docs;
#[cfg(test)]
mod docs_tests;
mod error;
mod limits;
mod listener;
mod metrics;
mod models;
mod query;
mod records;
mod requests;
#[cfg(test)]
mod route_tests;
pub mod routes;
mod state;
mod verification;
mod wire_errors;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::json;
use tokio::net::TcpListener;

pub use state::{AppState, ServerConfig};

use crate::service::ServiceError;

/// The handler of one route of the table.
fn handler(route: &routes::Route) -> Option<MethodRouter<Arc<AppState>>> {
    Some(match (route.method, route.path) {
        ("get", "/healthz") => get(healthz),
        ("get", "/metrics") => get(render_metrics),
        ("get", "/openapi.json") => get(docs::openapi),
        ("get", "/docs") => get(docs::page),
        ("get", "/docs/swagger-ui.css") => get(docs::swagger_css),
        ("get", "/docs/swagger-ui-bundle.js") => get(docs::swagger_js),
        ("get", "/v1/catalog") => get(admin::catalog),
        ("get", "/v1/catalog/{dataset}/versions") => get(admin::catalog_versions),
        ("post", "/v1/datasets") => post(admin::register_dataset),
        ("post", "/v1/query") => post(query::query),
        ("get", "/v1/receipts/{request_id}") => get(query::receipt),
        ("get", "/v1/budget") => get(query::budget),
        ("post", "/v1/verify") => post(verification::verify),
        ("get", "/v1/verify/products") => get(verification::products),
        ("get", "/v1/calendar/deadline") => get(calendar::deadline),
        ("get", "/v1/me/records") => get(records::own_records),
        ("get", "/v1/models") => get(models::list),
        ("post", "/v1/models") => post(models::train),
        ("get", "/v1/models/{id}") => get(models::show),
        ("post", "/v1/models/{id}/score") => post(models::score),
        ("get", "/v1/requests") => get(requests::list),
        ("post", "/v1/requests") => post(requests::open),
        ("get", "/v1/requests/overdue") => get(requests::overdue),
        ("get", "/v1/requests/{id}") => get(requests::show),
        ("post", "/v1/requests/{id}/{action}") => post(requests::step),
        ("get", "/v1/policy") => get(admin::policy),
        ("put", "/v1/policy") => put(admin::update_policy),
        ("get", "/v1/policy/versions") => get(admin::policy_versions),
        ("get", "/v1/principals") => get(admin::principals),
        ("post", "/v1/principals") => post(admin::add_principal),
        ("post", "/v1/principals/{name}/keys") => post(admin::issue_key),
        ("delete", "/v1/principals/{name}/keys") => delete(admin::revoke_keys),
        ("put", "/v1/principals/{name}/status") => put(admin::set_status),
        ("get", "/v1/audit") => get(admin::audit_search),
        ("get", "/v1/audit/verify") => get(admin::audit_verify),
        _ => return None,
    })
}

/// The router, made from the route table: every route in it and no other.
/// Routes that are not public require an API key of one of their roles,
/// checked by their handlers' [`auth::Caller`] before any body is read.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<Arc<AppState>>> =
        std::collections::BTreeMap::new();
    for route in routes::ROUTES {
        let Some(mut method) = handler(route) else {
            // The table and `handler` are checked against each other by a
            // test; a route without a handler is not served.
            tracing::error!(
                path = route.path,
                method = route.method,
                "a route without a handler"
            );
            continue;
        };
        if route.path == "/v1/verify" {
            method = method.layer(DefaultBodyLimit::max(state.config.verify_body_limit));
        }
        let merged = match by_path.remove(route.path) {
            Some(existing) => existing.merge(method),
            None => method,
        };
        by_path.insert(route.path, merged);
    }
    let mut router = Router::new();
    for (path, method) in by_path {
        router = router.route(path, method);
    }
    router
        .merge(console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_body_size,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Counts every request by route, method and status, and times it.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A method outside the standard ones is the caller's text: counted,
    // but not as its own series.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .request(route, method, response.status().as_u16(), seconds);
    response
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render_text(state.service.audit_entries()),
    )
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn not_found() -> ServiceError {
    ServiceError::not_found("no such endpoint; see /openapi.json")
}

/// A path served with other methods: `405` in the contract's JSON, with
/// the `Allow` header axum adds.
async fn method_not_allowed() -> Response {
    let mut response = ServiceError::new(
        crate::wire::ErrorCode::BadRequest,
        "this endpoint does not take this method; see /openapi.json",
    )
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Refuses a declared body larger than the limit before reading it.
async fn guard_body_size(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let limit = if request.uri().path() == "/v1/verify" {
        state.config.verify_body_limit
    } else {
        state.config.body_limit
    };
    if declared.is_some_and(|n| n > limit) {
        return ServiceError::payload_too_large(limit).into_response();
    }
    next.run(request).await
}

/// Serves `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone());
    let result = listener::run(
        listener,
        router,
        &state.config,
        shutdown,
        Duration::from_secs(10),
    )
    .await;
    state.close(Duration::from_secs(5));
    result
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
