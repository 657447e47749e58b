//! The approvers' console at `/console`: server-rendered pages over the
//! same use cases as the API (`service/`), never a second path to the data.
//!
//! - Sign-in exchanges an API key for a session ([`session`]); every page
//!   looks the principal up again, so revocation and suspension bite at the
//!   next click. Approvers and admins only; every other role is refused at
//!   sign-in, audited.
//! - Every action is a use case called with the signed-in principal, which
//!   writes its audit entry as the API's would (the endpoint names the
//!   console's route). Every form carries the session's CSRF token.
//! - Pages are maud templates (every value escaped), in Chinese first and
//!   English ([`i18n`]); the only script is the vendored htmx, served from
//!   the binary, under a Content-Security-Policy without inline scripts.
//!   Charts are SVG drawn here.

// A page's refusal is the response itself, made once per request and
// returned at once: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod audit;
mod budgets;
mod catalog;
mod chart;
mod i18n;
mod layout;
mod policy;
mod principals;
mod requests;
pub mod session;
mod signin;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use veil_policies::Role;

use super::state::AppState;
use crate::service::ServiceError;
use crate::store::{PrincipalRecord, PrincipalStatus};
pub use i18n::Lang;

/// What every console response carries: no script but the console's own
/// files, no framing, no caching of pages that show the audit or a key.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, merged into the service's router.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(signin::home))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/sign-in", post(signin::sign_in))
        .route("/console/sign-out", post(signin::sign_out))
        .route("/console/lang/{lang}", get(signin::language))
        .route("/console/assets/htmx.min.js", get(htmx))
        .route("/console/assets/console.css", get(css))
        .route("/console/catalog", get(catalog::list))
        .route("/console/catalog/{dataset}", get(catalog::show))
        .route("/console/catalog/{dataset}/grade", post(catalog::grade))
        .route("/console/policy", get(policy::show))
        .route("/console/policy/propose", post(policy::propose))
        .route("/console/requests", get(requests::queue))
        .route("/console/requests/{id}", get(requests::show))
        .route("/console/requests/{id}/{action}", post(requests::act))
        .route("/console/audit", get(audit::search))
        .route("/console/audit/chain", get(audit::chain))
        .route("/console/budgets", get(budgets::show))
        .route(
            "/console/principals",
            get(principals::list).post(principals::add),
        )
        .route(
            "/console/principals/{name}/{action}",
            post(principals::change),
        )
        .layer(middleware::from_fn(headers))
}

async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("assets/console.css");

async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

fn asset(kind: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Whether the request came over TLS (directly or through a proxy that
/// says so): the cookie is then `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn cookie_header(headers: &HeaderMap) -> &str {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The language of the request: the `veil_lang` cookie, Chinese by default.
fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::from_cookie(session::cookie(cookie_header(headers), i18n::COOKIE))
}

/// The signed-in approver or admin behind a console request.
pub struct Signed {
    pub record: Arc<PrincipalRecord>,
    pub csrf: String,
    pub lang: Lang,
    /// An approver of the data authority.
    pub authority: bool,
    /// The path asked for, for the navigation.
    pub path: String,
    /// The request asks for a fragment (htmx), not a page.
    pub fragment: bool,
}

impl Signed {
    pub fn principal(&self) -> &veil_policies::Principal {
        &self.record.principal
    }

    pub fn role(&self) -> Role {
        self.record.principal.role
    }

    /// Refuses the page unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Response> {
        if roles.contains(&self.role()) {
            return Ok(());
        }
        let l = self.lang;
        Err(self.error(
            StatusCode::FORBIDDEN,
            &format!("{} ({})", l.t("page_not_for_role"), self.role().name()),
        ))
    }

    /// A page of its own with an error message.
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        let body = layout::notice(self.lang, message, true);
        (status, layout::page(self, self.lang.t("error"), body)).into_response()
    }

    /// A use case's refusal on a page of its own, with the contract's code
    /// and message (which never carry a protected value or what the caller
    /// sent).
    pub fn refusal(&self, e: &ServiceError) -> Response {
        let (status, _) = self.refused(e);
        self.error(status, &refusal_text(e))
    }

    /// A use case's refusal as the status and the notice a page shows
    /// above itself.
    pub fn refused(&self, e: &ServiceError) -> (StatusCode, Markup) {
        let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, layout::notice(self.lang, &refusal_text(e), true))
    }

    /// A posted form, read, with its CSRF token checked, from a caller of
    /// one of `roles`; else the refusal to answer with.
    pub fn accept(
        &self,
        form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
        roles: &[Role],
    ) -> Result<Fields, Response> {
        let form = fields(self, form)?;
        self.check(&form)?;
        self.require(roles)?;
        Ok(form)
    }

    /// The page: the whole page, or only `body` for an htmx request.
    pub fn render(&self, title: &str, body: Markup) -> Response {
        if self.fragment {
            return body.into_response();
        }
        layout::page(self, title, body).into_response()
    }

    /// Checks a posted form's CSRF token against the session's.
    pub fn check(&self, form: &Fields) -> Result<(), Response> {
        if session::same(form.get("csrf"), &self.csrf) {
            return Ok(());
        }
        Err(self.error(StatusCode::FORBIDDEN, self.lang.t("csrf_refused")))
    }
}

/// Where an unsigned request goes: the sign-in page, or, for a fragment, a
/// refusal htmx shows.
fn to_sign_in(parts: &Parts) -> Response {
    if parts.headers.contains_key("hx-request") {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/console"));
        return r;
    }
    Redirect::to("/console").into_response()
}

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let lang = lang_of(&parts.headers);
        // A post from another site is refused before anything else, even
        // with the cookie (SameSite=Strict keeps it off in browsers that
        // honour it; this keeps it off in those that do not).
        if parts.method == axum::http::Method::POST && cross_site(&parts.headers) {
            return Err((StatusCode::FORBIDDEN, lang.t("csrf_refused").to_owned()).into_response());
        }
        let token = session::cookie(cookie_header(&parts.headers), session::COOKIE)
            .unwrap_or("")
            .to_owned();
        let Some(live) = state.console.get(&token) else {
            return Err(to_sign_in(parts));
        };
        let record = match state.caller(&live.key_hash) {
            Ok(Some(r)) if r.status == PrincipalStatus::Active => r,
            Ok(_) => {
                // Revoked or suspended since sign-in: the session is over.
                state.console.end(&token);
                return Err(to_sign_in(parts));
            }
            Err(e) => {
                let e = ServiceError::from(e);
                return Err((
                    StatusCode::from_u16(e.code.status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    e.message,
                )
                    .into_response());
            }
        };
        if !console_role(record.principal.role) {
            state.console.end(&token);
            return Err(to_sign_in(parts));
        }
        let authority = match state.reader() {
            Ok(store) => {
                crate::service::requests::is_authority(&store, &record.principal).unwrap_or(false)
            }
            Err(_) => false,
        };
        Ok(Signed {
            record,
            csrf: live.csrf,
            lang,
            authority,
            path: parts.uri.path().to_owned(),
            fragment: parts.headers.contains_key("hx-request"),
        })
    }
}

/// The roles the console serves.
fn console_role(role: Role) -> bool {
    matches!(role, Role::Approver | Role::Admin)
}

/// A request a browser says came from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
        return true;
    }
    // An Origin that names another host than the one asked.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let bare = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or(origin);
            bare != host
        }
        _ => false,
    }
}

/// A posted form's fields.
#[derive(Debug, Default)]
pub struct Fields(BTreeMap<String, String>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// A field's value, trimmed; `None` when empty.
    pub fn value(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The fields whose names start with `prefix`, without it.
    pub fn prefixed(&self, prefix: &str) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_owned(), v.clone())))
            .collect()
    }
}

/// Reads a form body; one that is not a form is refused (without echoing
/// it).
pub fn fields(
    signed: &Signed,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Fields, Response> {
    match form {
        Ok(axum::Form(pairs)) => Ok(Fields(pairs.into_iter().collect())),
        Err(_) => Err(signed.error(StatusCode::BAD_REQUEST, signed.lang.t("bad_form"))),
    }
}

/// A refusal as the console shows it: the contract's code and message.
pub fn refusal_text(e: &ServiceError) -> String {
    format!("{}: {}", e.code.as_str(), e.message)
}

/// The service's shared state, for handlers.
pub type St = State<Arc<AppState>>;
