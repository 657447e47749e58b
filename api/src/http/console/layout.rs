//! The page shell: head, navigation by role, language switch, sign-out.

use maud::{DOCTYPE, Markup, html};
use veil_policies::Role;

use super::{Lang, Signed};

/// The navigation: (path, label key, roles that see it).
const NAV: &[(&str, &str, &[Role])] = &[
    ("/console", "nav_home", &[Role::Approver, Role::Admin]),
    (
        "/console/catalog",
        "nav_catalog",
        &[Role::Approver, Role::Admin],
    ),
    (
        "/console/policy",
        "nav_policy",
        &[Role::Approver, Role::Admin],
    ),
    ("/console/requests", "nav_requests", &[Role::Approver]),
    ("/console/audit", "nav_audit", &[Role::Approver]),
    ("/console/budgets", "nav_budgets", &[Role::Approver]),
    ("/console/principals", "nav_principals", &[Role::Admin]),
];

/// The head every page shares.
fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx without eval and without the style element it would
            // otherwise insert (the CSP allows neither).
            meta name="htmx-config" content=r#"{"allowEval":false,"includeIndicatorStyles":false,"allowScriptTags":false}"#;
            title { (title) " · " (lang.t("app_name")) }
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/htmx.min.js" defer {}
        }
    }
}

/// A page for a signed-in principal.
pub fn page(s: &Signed, title: &str, body: Markup) -> Markup {
    let l = s.lang;
    let p = s.principal();
    let current = |path: &str| {
        if path == "/console" {
            s.path == "/console"
        } else {
            s.path.starts_with(path)
        }
    };
    let scope = if s.authority {
        l.t("scope_authority")
    } else if p.role == Role::Admin {
        l.t("scope_admin")
    } else {
        l.t("scope_provider")
    };
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            (head(l, title))
            body {
                header.top {
                    a.brand href="/console" { (l.t("app_name")) }
                    nav {
                        @for (path, key, roles) in NAV {
                            @if roles.contains(&p.role) {
                                a href=(path) aria-current=[current(path).then_some("page")] { (l.t(key)) }
                            }
                        }
                    }
                    div.who {
                        span.name data-testid="who" { (p.name) }
                        " · "
                        span.role { (l.t(p.role.name())) }
                        @if let Some(org) = &p.org { " · " span.org { (org) } }
                        " · " span.scope { (scope) }
                        (language_links(l, &s.path))
                        form.inline method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { (l.t("sign_out")) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page with no one signed in (the sign-in form).
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, title))
            body.bare {
                header.top {
                    span.brand { (lang.t("app_name")) }
                    div.who { (language_links(lang, "/console")) }
                }
                main { (body) }
            }
        }
    }
}

fn language_links(l: Lang, back: &str) -> Markup {
    html! {
        span.lang {
            @for other in [Lang::Zh, Lang::En] {
                @if other == l {
                    span.current { (other.label()) }
                } @else {
                    a href={ "/console/lang/" (other.code()) "?back=" (back) } { (other.label()) }
                }
            }
        }
    }
}

/// A message box; `error` marks a refusal.
pub fn notice(l: Lang, message: &str, error: bool) -> Markup {
    html! {
        div.notice.error[error].ok[!error] role=(if error { "alert" } else { "status" }) data-testid="notice" {
            strong { (if error { l.t("refused") } else { l.t("done") }) } " " (message)
        }
    }
}

/// A hidden CSRF field for a form.
pub fn csrf(s: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}
