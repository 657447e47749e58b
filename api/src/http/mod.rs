//! The HTTP service (contract.md): axum over the store and the engine.
//!
//! `app(state)` builds the router, so tests can drive it without a socket;
//! `serve` binds it to a listener and shuts down gracefully on SIGTERM or
//! Ctrl-C, signing the audit log's head on the way out.

mod admin;
mod auth;
mod calendar;
mod docs;
mod error;
mod limits;
mod metrics;
mod models;
mod query;
mod records;
mod requests;
mod state;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use tokio::net::TcpListener;

pub use error::ApiFailure;
pub use state::{AppState, ServerConfig};

/// The router. Every route but `/healthz`, `/metrics`, `/openapi.json` and
/// `/docs` requires an API key.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(docs::openapi))
        .route("/docs", get(docs::page))
        .route("/v1/catalog", get(admin::catalog))
        .route(
            "/v1/catalog/{dataset}/versions",
            get(admin::catalog_versions),
        )
        .route("/v1/datasets", post(admin::register_dataset))
        .route("/v1/query", post(query::query))
        .route("/v1/receipts/{request_id}", get(query::receipt))
        .route("/v1/budget", get(query::budget))
        .route(
            "/v1/verify",
            post(verify::verify).layer(DefaultBodyLimit::max(state.config.verify_body_limit)),
        )
        .route("/v1/verify/products", get(verify::products))
        .route("/v1/calendar/deadline", get(calendar::deadline))
        .route("/v1/me/records", get(records::own_records))
        .route("/v1/models", get(models::list).post(models::train))
        .route("/v1/models/{id}", get(models::show))
        .route("/v1/models/{id}/score", post(models::score))
        .route("/v1/requests", get(requests::list).post(requests::open))
        .route("/v1/requests/overdue", get(requests::overdue))
        .route("/v1/requests/{id}", get(requests::show))
        .route("/v1/requests/{id}/{action}", post(requests::step))
        .route("/v1/policy", get(admin::policy).put(admin::update_policy))
        .route("/v1/policy/versions", get(admin::policy_versions))
        .route(
            "/v1/principals",
            get(admin::principals).post(admin::add_principal),
        )
        .route(
            "/v1/principals/{name}/keys",
            post(admin::issue_key).delete(admin::revoke_keys),
        )
        .route("/v1/principals/{name}/status", put(admin::set_status))
        .route("/v1/audit", get(admin::audit_search))
        .route("/v1/audit/verify", get(admin::audit_verify))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_body_size,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiFailure {
    ApiFailure::not_found("no such endpoint; see /openapi.json")
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
        return ApiFailure::payload_too_large(limit).into_response();
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
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
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
