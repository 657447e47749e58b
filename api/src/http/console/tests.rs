//! The console through `app(state).oneshot(...)`: who may sign in, what a
//! session needs on every request (its cookie, an active principal, the
//! CSRF token on every post), which role sees which page, and the headers
//! every page carries. The flows are driven in a real browser by
//! `tests/console/`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use veil_policies::Role;

use super::session;
use crate::http::{AppState, ServerConfig, app};
use crate::store::{AuditFilter, NewPrincipal, Store};

const AUTHORITY: &str = "the data authority";

struct Deployment {
    state: Arc<AppState>,
    keys: Vec<(String, Role, String)>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .load_policy(veil_policies::policy::DEFAULT_PRESET, "test")
            .unwrap();
        store.set_authority(AUTHORITY).unwrap();
        let people = [
            ("consumer", Role::Consumer, "an institution"),
            ("modeler", Role::Modeler, "a developer"),
            ("subject", Role::Subject, "a resident"),
            ("approver", Role::Approver, AUTHORITY),
            ("provider", Role::Approver, "a provider"),
            ("admin", Role::Admin, "operations"),
            ("admin2", Role::Admin, "operations"),
        ];
        let keys = people
            .iter()
            .map(|&(name, role, org)| {
                let (_, key) = store
                    .add_principal(&NewPrincipal {
                        name,
                        role,
                        org: Some(org),
                        region: None,
                        subject: (role == Role::Subject).then_some("11010519491231002X"),
                    })
                    .unwrap();
                (name.to_owned(), role, key.expose().to_owned())
            })
            .collect();
        drop(store);
        let config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        Deployment {
            state: AppState::open(config).unwrap(),
            keys,
            _dir: dir,
        }
    }

    fn key(&self, name: &str) -> &str {
        &self.keys.iter().find(|(n, _, _)| n == name).unwrap().2
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut r = Request::get(path);
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        self.send(r.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: &str, form: &str) -> Reply {
        let r = Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .unwrap();
        self.send(r).await
    }

    /// Signs in with `name`'s key: the session cookie and the CSRF token
    /// its pages carry, or the refusal.
    async fn sign_in(&self, name: &str) -> Result<Session, Reply> {
        let form = self.get("/console", None).await;
        let token = cookie_of(&form, session::SIGN_IN_COOKIE).unwrap();
        let reply = self
            .post(
                "/console/sign-in",
                &format!("{}={token}", session::SIGN_IN_COOKIE),
                &format!("csrf={token}&key={}", self.key(name)),
            )
            .await;
        if reply.status != StatusCode::SEE_OTHER {
            return Err(reply);
        }
        let value = cookie_of(&reply, session::COOKIE).unwrap();
        let cookie = format!("{}={value}", session::COOKIE);
        let home = self.get("/console", Some(&cookie)).await;
        let csrf = home
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        Ok(Session { cookie, csrf })
    }

    fn audit_outcomes(&self, principal: &str, endpoint: &str) -> Vec<String> {
        let store = Store::open(self.state.data_dir()).unwrap();
        store
            .search_audit(&AuditFilter {
                principal: Some(principal),
                endpoint: Some(endpoint),
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.entry.outcome)
            .collect()
    }
}

#[derive(Debug)]
struct Session {
    cookie: String,
    csrf: String,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn cookie_of(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?;
            let (k, value) = first.split_once('=')?;
            (k == name && !value.is_empty()).then(|| value.to_owned())
        })
}

const PAGES: [(&str, &[Role]); 8] = [
    ("/console", &[Role::Approver, Role::Admin]),
    ("/console/catalog", &[Role::Approver, Role::Admin]),
    ("/console/policy", &[Role::Approver, Role::Admin]),
    ("/console/requests", &[Role::Approver]),
    ("/console/audit", &[Role::Approver]),
    ("/console/audit/chain", &[Role::Approver]),
    ("/console/budgets", &[Role::Approver]),
    ("/console/principals", &[Role::Admin]),
];

#[tokio::test]
async fn only_approvers_and_admins_sign_in_and_every_refusal_is_audited() {
    let d = Deployment::new();
    for name in ["consumer", "modeler", "subject"] {
        let refused = d.sign_in(name).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name}");
        assert!(
            refused
                .body
                .contains("the console is for approvers and admins"),
            "{name}"
        );
        assert!(cookie_of(&refused, session::COOKIE).is_none(), "{name}");
        assert_eq!(
            d.audit_outcomes(name, "POST /console/sign-in"),
            ["refused:forbidden"],
            "{name}"
        );
        // Its key does not open a page either way.
        let page = d
            .get(
                "/console/requests",
                Some(&format!("{}={}", session::COOKIE, d.key(name))),
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
    for name in ["approver", "provider", "admin"] {
        d.sign_in(name).await.unwrap();
        assert_eq!(d.audit_outcomes(name, "POST /console/sign-in"), ["ok"]);
    }
    // An unknown key, and a sign-in without its form token, are refused;
    // neither page echoes the key sent.
    let form = d.get("/console", None).await;
    let token = cookie_of(&form, session::SIGN_IN_COOKIE).unwrap();
    let cookie = format!("{}={token}", session::SIGN_IN_COOKIE);
    let unknown = d
        .post(
            "/console/sign-in",
            &cookie,
            &format!("csrf={token}&key=veil_made_up_5301021990"),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(!unknown.body.contains("5301021990"));
    let key = d.key("approver");
    let tokenless = d
        .post("/console/sign-in", &cookie, &format!("key={key}"))
        .await;
    assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
    let other = d
        .post("/console/sign-in", "", &format!("csrf={token}&key={key}"))
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert!(!other.body.contains(key) && !tokenless.body.contains(key));
}

#[tokio::test]
async fn each_role_sees_its_pages_and_no_others() {
    let d = Deployment::new();
    for page in PAGES.iter().map(|(p, _)| p) {
        let r = d.get(page, None).await;
        if *page == "/console" {
            assert_eq!(r.status, StatusCode::OK);
            assert!(r.body.contains("type=\"password\""));
        } else {
            assert_eq!(
                (r.status, r.location()),
                (StatusCode::SEE_OTHER, "/console"),
                "{page}"
            );
        }
    }
    for (name, role) in [
        ("approver", Role::Approver),
        ("provider", Role::Approver),
        ("admin", Role::Admin),
    ] {
        let s = d.sign_in(name).await.unwrap();
        for (page, roles) in PAGES {
            let r = d.get(page, Some(&s.cookie)).await;
            let expected = if roles.contains(&role) {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(r.status, expected, "{name} on {page}: {}", r.body);
            // Every page: the CSP, no framing, no caching, and no inline
            // script or style for it to allow.
            let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("unsafe"),
                "{csp}"
            );
            assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
            assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
            for script in r.body.split("<script").skip(1) {
                assert!(
                    script.trim_start().starts_with("src=\"/console/assets/"),
                    "{page}: {script}"
                );
            }
            assert!(
                !r.body.contains(" style=") && !r.body.contains(" onclick="),
                "{page}"
            );
        }
    }
}

#[tokio::test]
async fn a_post_without_the_sessions_token_or_from_another_site_is_refused() {
    let d = Deployment::new();
    let s = d.sign_in("admin").await.unwrap();
    let add = "name=newcomer&role=consumer&org=x";
    for form in [
        add.to_owned(),
        format!("{add}&csrf="),
        format!("{add}&csrf=x{}", s.csrf),
    ] {
        let r = d.post("/console/principals", &s.cookie, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form}");
    }
    // The right token from another site's page.
    let r = d
        .send(
            Request::post("/console/principals")
                .header(header::COOKIE, &s.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body(Body::from(format!("{add}&csrf={}", s.csrf)))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = d
        .send(
            Request::post("/console/principals")
                .header(header::COOKIE, &s.cookie)
                .header(header::HOST, "veil.example")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("{add}&csrf={}", s.csrf)))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let store = Store::open(d.state.data_dir()).unwrap();
    assert!(store.principal("newcomer").unwrap().is_none());
    drop(store);
    // With it, the principal is added, its key shown once, audited.
    let r = d
        .post(
            "/console/principals",
            &s.cookie,
            &format!("{add}&csrf={}", s.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body.contains("data-testid=\"new-key\""));
    assert_eq!(
        d.audit_outcomes("admin", "POST /console/principals"),
        ["ok"]
    );
    let again = d.get("/console/principals", Some(&s.cookie)).await;
    assert!(!again.body.contains("data-testid=\"new-key\""));
}

#[tokio::test]
async fn revoking_or_suspending_ends_a_session_at_its_next_request() {
    let d = Deployment::new();
    let admin = d.sign_in("admin").await.unwrap();
    let approver = d.sign_in("approver").await.unwrap();
    let provider = d.sign_in("provider").await.unwrap();
    assert_eq!(
        d.get("/console/audit", Some(&approver.cookie)).await.status,
        StatusCode::OK
    );
    // The admin revokes the approver's keys and suspends the provider,
    // from the console.
    let r = d
        .post(
            "/console/principals/approver/revoke",
            &admin.cookie,
            &format!("csrf={}", admin.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = d
        .post(
            "/console/principals/provider/suspend",
            &admin.cookie,
            &format!("csrf={}", admin.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for s in [&approver, &provider] {
        let r = d.get("/console/audit", Some(&s.cookie)).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::SEE_OTHER, "/console")
        );
    }
    // The suspended principal cannot sign in again, and is told why.
    let refused = d.sign_in("provider").await.unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("suspended"));
    // Signing out ends the admin's session; the old cookie opens nothing.
    let r = d
        .post(
            "/console/sign-out",
            &admin.cookie,
            &format!("csrf={}", admin.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = d.get("/console/principals", Some(&admin.cookie)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(d.audit_outcomes("admin", "POST /console/sign-out"), ["ok"]);
}

#[tokio::test]
async fn a_step_on_a_request_the_approver_is_no_party_to_is_not_found_and_audited() {
    let d = Deployment::new();
    let s = d.sign_in("provider").await.unwrap();
    let r = d
        .post(
            "/console/requests/r-nosuch/approve",
            &s.cookie,
            &format!("csrf={}&note.comment=5301021990", s.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(!r.body.contains("5301021990"));
    assert_eq!(
        d.audit_outcomes("provider", "POST /console/requests/{id}/{action}"),
        ["refused:not_found"]
    );
}

#[tokio::test]
async fn the_language_switch_goes_back_only_within_the_console() {
    let d = Deployment::new();
    let r = d.get("/console/lang/en?back=/console/audit", None).await;
    assert_eq!(r.location(), "/console/audit");
    assert!(cookie_of(&r, super::i18n::COOKIE).is_some_and(|v| v == "en"));
    for back in [
        "https://evil.example",
        "//evil.example",
        "/console//evil",
        "/v1/query",
    ] {
        let r = d.get(&format!("/console/lang/zh?back={back}"), None).await;
        assert_eq!(r.location(), "/console", "{back}");
    }
    let page = d.get("/console", Some("veil_lang=en")).await;
    assert!(page.body.contains("Sign in to the veil console"));
    let page = d.get("/console", None).await;
    assert!(page.body.contains("登录 veil 审批台"));
}
