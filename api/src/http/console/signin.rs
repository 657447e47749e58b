//! Signing in and out, the language switch, and the home page.
//!
//! Signing in takes an API key in a form and starts a session; the form is
//! protected by a double-submit token (a cookie and a field that must
//! match), as there is no session yet. A key of a role the console does
//! not serve, or of a suspended principal, is refused, and the refusal is
//! audited under that principal; an unknown key is refused with the same
//! words as the API's.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use veil_policies::Role;
use veil_policies::requests::{finished, overdue};

use super::{Lang, Signed, layout, session};
use crate::http::state::AppState;
use crate::service::requests::today;
use crate::service::{Audited, ServiceError};

/// `GET /console`: the home page, or the sign-in form.
pub async fn home(
    State(state): State<Arc<AppState>>,
    signed: Result<Signed, Response>,
    headers: HeaderMap,
) -> Response {
    match signed {
        Ok(s) => dashboard(&state, &s),
        Err(_) => sign_in_form(&state, super::lang_of(&headers), None, StatusCode::OK),
    }
}

fn sign_in_form(state: &AppState, l: Lang, error: Option<&str>, status: StatusCode) -> Response {
    let token = state.console.token();
    let body = html! {
        section.signin {
            h1 { (l.t("sign_in_title")) }
            p { (l.t("sign_in_intro")) }
            @if let Some(e) = error { (layout::notice(l, e, true)) }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(token);
                label for="key" { (l.t("api_key")) }
                input #key type="password" name="key" autocomplete="off" required autofocus;
                button type="submit" { (l.t("sign_in")) }
            }
            p.hint { (l.t("sign_in_hint")) }
        }
    };
    let mut response = (status, layout::bare(l, l.t("sign_in_title"), body)).into_response();
    let cookie = session::set_cookie(session::SIGN_IN_COOKIE, &token, false, Some(600));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `POST /console/sign-in`.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let l = super::lang_of(&headers);
    let refuse =
        |state: &AppState, message: &str, status| sign_in_form(state, l, Some(message), status);
    if super::cross_site(&headers) {
        return refuse(&state, l.t("csrf_refused"), StatusCode::FORBIDDEN);
    }
    let Ok(axum::Form(pairs)) = form else {
        return refuse(&state, l.t("bad_form"), StatusCode::BAD_REQUEST);
    };
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let expected = session::cookie(super::cookie_header(&headers), session::SIGN_IN_COOKIE);
    if !expected.is_some_and(|e| session::same(field("csrf"), e)) {
        return refuse(&state, l.t("csrf_refused"), StatusCode::FORBIDDEN);
    }
    let key_hash = crate::store::key_hash(field("key").trim());
    let record = match state.caller(&key_hash) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refuse(&state, l.t("key_unknown"), StatusCode::UNAUTHORIZED);
        }
        Err(e) => {
            let e = ServiceError::from(e);
            return refuse(&state, &e.message, StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let principal = &record.principal;
    let result = crate::http::auth::active(record.clone()).and_then(|_| {
        if super::console_role(principal.role) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "the console is for approvers and admins; you are {}: use the API",
                principal.role.with_article()
            )))
        }
    });
    let audited = Audited::action(
        principal,
        "POST /console/sign-in",
        String::new(),
        Vec::new(),
        result,
    );
    if let Err(e) = state.settle(audited).await {
        let message = super::refusal_text(&e);
        return refuse(&state, &message, StatusCode::FORBIDDEN);
    }
    let (token, _csrf) = state.console.start(key_hash);
    let secure = super::over_tls(&headers);
    let mut response = Redirect::to("/console").into_response();
    let h = response.headers_mut();
    for cookie in [
        session::set_cookie(session::COOKIE, &token, secure, None),
        session::set_cookie(session::SIGN_IN_COOKIE, "", secure, Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `POST /console/sign-out`: ends the session, audited.
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(r) = signed.accept(form, &[Role::Approver, Role::Admin]) {
        return r;
    }
    if let Some(token) = session::cookie(super::cookie_header(&headers), session::COOKIE) {
        state.console.end(token);
    }
    let audited = Audited::action(
        signed.principal(),
        "POST /console/sign-out",
        String::new(),
        Vec::new(),
        Ok(()),
    );
    if let Err(e) = state.settle(audited).await {
        return signed.refusal(&e);
    }
    let mut response = Redirect::to("/console").into_response();
    let cookie = session::set_cookie(session::COOKIE, "", super::over_tls(&headers), Some(0));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// `GET /console/lang/{zh|en}?back=PATH`: sets the language and goes back
/// to a console page (never elsewhere).
pub async fn language(Path(code): Path<String>, Query(back): Query<Back>) -> Response {
    let lang = Lang::from_code(&code);
    let back = back
        .back
        .filter(|b| {
            b.starts_with("/console")
                && !b.contains("//")
                && !b.contains('\\')
                && b.chars().all(|c| c.is_ascii_graphic())
        })
        .unwrap_or_else(|| "/console".to_owned());
    let mut response = Redirect::to(&back).into_response();
    let cookie = format!(
        "{}={}; Path=/console; SameSite=Strict; Max-Age=31536000",
        super::i18n::COOKIE,
        lang.code()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The home page: what waits on the signed-in principal.
fn dashboard(state: &AppState, s: &Signed) -> Response {
    match summary(state, s) {
        Ok(body) => s.render(s.lang.t("nav_home"), body),
        Err(e) => s.refusal(&e),
    }
}

fn summary(state: &AppState, s: &Signed) -> Result<Markup, ServiceError> {
    let l = s.lang;
    let p = s.principal();
    let day = today(Utc::now());
    let (open, late) = if p.role == veil_policies::Role::Approver {
        let records = state.request_records(p)?;
        let open: Vec<_> = records
            .iter()
            .filter(|r| !finished(r.kind, &r.state))
            .collect();
        let late = open
            .iter()
            .filter(|r| overdue(r.kind, &r.state, r.due, day))
            .count();
        (Some(open.len()), late)
    } else {
        (None, 0)
    };
    let catalog = state.catalog(p, None);
    let policy = state.policy().ok();
    Ok(html! {
        p.lead { (l.t("home_intro")) }
        div.cards {
            @if let Some(n) = open {
                a.card href="/console/requests" data-testid="open-requests" {
                    span.big { (n) } span { (l.t("open_requests")) }
                    @if late > 0 { span.badge.late { (late) " " (l.t("overdue")) } }
                }
            }
            a.card href="/console/catalog" {
                span.big { (catalog.datasets.len()) } span { (l.t("datasets")) }
            }
            @if let Some(policy) = &policy {
                a.card href="/console/policy" {
                    span.big { "v" (policy.version) } span { (l.t("active_policy")) " " (policy.name) }
                }
            }
            @if p.role == veil_policies::Role::Admin {
                a.card href="/console/principals" {
                    span.big { (state.principals(p).map(|v| v.principals.len()).unwrap_or(0)) }
                    span { (l.t("nav_principals")) }
                }
            }
        }
        p.hint { (l.t("today_is")) " " (day.to_string()) " · " (l.t("session_idle")) }
    })
}
