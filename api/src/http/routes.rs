//! The route table: every endpoint's method, path, who may call it, a
//! summary and an example body. The router (`http/mod.rs`), the role check
//! that runs before any body is read (`auth::Caller`) and the OpenAPI
//! document (`docs.rs`) are all made from it, so they cannot drift.

use veil_policies::Role;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a key.
    Public,
    /// A caller with a key whose role is one of these.
    Roles(&'static [Role]),
}

impl Access {
    pub fn roles(self) -> &'static [Role] {
        match self {
            Access::Public => &[],
            Access::Roles(r) => r,
        }
    }
}

/// The route `method` and `path` (as the router matched it) name. The
/// router answers HEAD with the GET handler, so HEAD is the GET route and
/// its access: a HEAD request is checked exactly as a GET.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    let method = if method.eq_ignore_ascii_case("head") {
        "get"
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
}

/// One endpoint.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Who may call it: checked from the key before the body is read.
    pub access: Access,
    /// An example JSON request body, when it takes one.
    pub body: Option<&'static str>,
    pub query: &'static [&'static str],
}

pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness.",
        access: Access::Public,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics.",
        access: Access::Public,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/openapi.json",
        summary: "This document.",
        access: Access::Public,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/docs",
        summary: "An interactive page over this document: try each endpoint with your key.",
        access: Access::Public,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/catalog",
        summary: "The datasets visible to the caller, each field with its category, grade and the caller's disclosure level.",
        access: Access::Roles(&[
            Role::Consumer,
            Role::Modeler,
            Role::Approver,
            Role::Admin,
            Role::Subject,
        ]),
        body: None,
        query: &["purpose"],
    },
    Route {
        method: "get",
        path: "/v1/catalog/{dataset}/versions",
        summary: "Every registered version of a dataset's catalog entry.",
        access: Access::Roles(&[Role::Approver, Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/datasets",
        summary: "Register a dataset from a catalog manifest; its file lies under the data directory's datasets/ folder.",
        access: Access::Roles(&[Role::Approver]),
        body: Some(r#"{"manifest": "format = 1\n[dataset]\n..."}"#),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/query",
        summary: "Run one SELECT under policy. Answers as application/json, text/csv or application/vnd.apache.arrow.stream (Accept), streamed, with provenance, privacy and a signed receipt. With `epsilon`, a differentially private aggregate (budget charged before release; `dry_run` prices it without spending).",
        access: Access::Roles(&[Role::Consumer, Role::Modeler]),
        body: Some(
            r#"{"sql": "SELECT county_code, COUNT(*) FROM population GROUP BY county_code", "purpose": "social-assistance"}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/receipts/{request_id}",
        summary: "The signed receipt of a CSV or Arrow answer (JSON answers carry theirs inline).",
        access: Access::Roles(&[Role::Consumer, Role::Modeler]),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/budget",
        summary: "Per dataset queryable under differential privacy: the budget, what was spent (basic composition and zCDP) and the ε left.",
        access: Access::Roles(&[Role::Consumer, Role::Modeler]),
        body: None,
        query: &["purpose"],
    },
    Route {
        method: "post",
        path: "/v1/verify",
        summary: "Verify claims about a subject against data you never see: `match`/`mismatch` (or true/false for predicate products) per claim and nothing else; an unknown subject fails every claim. One `subject` with `claims`, or `items`: up to 10,000 of them. Identifiers are checked before any lookup; per-principal limits per minute and per subject per day; every verification is audited with a keyed digest of the subject.",
        access: Access::Roles(&[Role::Consumer]),
        body: Some(
            r#"{"product": "person_identity", "subject": "53010219900101001X", "claims": {"name": "张三", "birth_date": "1990-01-01"}}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/verify/products",
        summary: "The verification products: dataset, claims and how each compares, limits, and whether you may use it.",
        access: Access::Roles(&[
            Role::Consumer,
            Role::Modeler,
            Role::Approver,
            Role::Admin,
            Role::Subject,
        ]),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/requests",
        summary: "Open a request: `sharing` and `open_data` (dataset, purpose, fields, days), `correction` (detail.record, detail.correction; `via_authority`), `complaint` (detail.complaint: suspends the dataset at once), `emergency_data`, `catalog_change` (detail.manifest), `qualification` (detail.organisation, detail.scope). Unconditional data is granted at once; not-shared or not-open data is refused with the article.",
        access: Access::Roles(&[Role::Consumer, Role::Modeler, Role::Approver, Role::Subject]),
        body: Some(
            r#"{"kind": "sharing", "dataset": "social_insurance", "purpose": "social-assistance", "fields": ["month", "paid"]}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/requests",
        summary: "The requests you opened and those you act on as provider, collector or data authority, with their deadlines and next steps.",
        access: Access::Roles(&[Role::Consumer, Role::Modeler, Role::Approver, Role::Subject]),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/requests/overdue",
        summary: "Open requests past their working-day deadline, for the data authority.",
        access: Access::Roles(&[Role::Approver, Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/requests/{id}",
        summary: "One request and every step taken on it, for its parties.",
        access: Access::Roles(&[Role::Consumer, Role::Modeler, Role::Approver, Role::Subject]),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/requests/{id}/{action}",
        summary: "Take a step (approve, deliver, refuse with notes.legal_basis, withdraw, forward, extend, answer, restore, withdraw_opening, seal, destroy, grant, revoke, commit, reject) as the party it belongs to; deadlines follow the working-day calendar.",
        access: Access::Roles(&[Role::Consumer, Role::Modeler, Role::Approver, Role::Subject]),
        body: Some(r#"{"notes": {"legal_basis": "Art. 27: ..."}}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/me/records",
        summary: "A subject principal's own records (Art. 24): in every dataset whose privacy unit is its identifier, the rows about it, with every field its grade lets out in any form; provenance per dataset; audited.",
        access: Access::Roles(&[Role::Subject]),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/models",
        summary: "Train a model inside (Art. 32, 39), for a modeler holding a development qualification: `template` linear_regression, logistic_regression (with `above`), histogram or quantiles; `features` and `target` as `dataset.field` or {dataset, field, per_unit: mean|min|max}, datasets joined on their privacy unit; `epsilon`; `params` (iterations, learning_rate, l2, bins, quantiles). Only datasets that are open (Art. 38) and have the template enabled by the policy. Charges the budget, then releases parameters and metrics under differential privacy, with the noise, the provenance and the policy version.",
        access: Access::Roles(&[Role::Modeler]),
        body: Some(
            r#"{"template": "linear_regression", "features": ["tax.revenue", "utility_usage.usage"], "target": "tax.tax_paid", "epsilon": 1.0}"#,
        ),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/models",
        summary: "Your models: spec, released parameters and metrics, privacy spent, lineage and policy version.",
        access: Access::Roles(&[Role::Modeler]),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/models/{id}",
        summary: "One of your models.",
        access: Access::Roles(&[Role::Modeler]),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/models/{id}/score",
        summary: "Score inside with one of your regression models: `subjects` (identifiers of the privacy unit; needs a live grant for `purpose` covering every feature; a subject with no records scores null) or `rows` (feature values you supply, in the features' order, clamped to the bounds). Answers carry provenance; subjects are audited as keyed digests.",
        access: Access::Roles(&[Role::Modeler]),
        body: Some(r#"{"subjects": ["91110000600037341L"], "purpose": "credit-assessment"}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/calendar/deadline",
        summary: "The `days`-th working day after `from` on the State Council's calendar (holidays and make-up working days, 2024-2026); years without a published arrangement assume Monday to Friday and are listed in `assumed_years`.",
        access: Access::Roles(&[
            Role::Consumer,
            Role::Modeler,
            Role::Approver,
            Role::Admin,
            Role::Subject,
        ]),
        body: None,
        query: &["from", "days"],
    },
    Route {
        method: "get",
        path: "/v1/policy",
        summary: "The active policy and its text.",
        access: Access::Roles(&[Role::Approver, Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/policy",
        summary: "Check a policy (as `veil policy check` does) and make it the active version.",
        access: Access::Roles(&[Role::Approver]),
        body: Some(r#"{"text": "format = 1\nname = \"default\"\n..."}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/policy/versions",
        summary: "Every policy version.",
        access: Access::Roles(&[Role::Approver, Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/principals",
        summary: "Principals (never their keys).",
        access: Access::Roles(&[Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/principals",
        summary: "Create a principal; its API key appears in this answer only.",
        access: Access::Roles(&[Role::Admin]),
        body: Some(
            r#"{"name": "kunming-civil-affairs", "role": "consumer", "org": "昆明市民政局", "region": "530100"}"#,
        ),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/principals/{name}/keys",
        summary: "Issue one more key.",
        access: Access::Roles(&[Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "delete",
        path: "/v1/principals/{name}/keys",
        summary: "Revoke every key of a principal, effective on the next request.",
        access: Access::Roles(&[Role::Admin]),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/principals/{name}/status",
        summary: "Suspend or reactivate a principal (Art. 47-48).",
        access: Access::Roles(&[Role::Admin]),
        body: Some(r#"{"status": "suspended"}"#),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/audit",
        summary: "Search the audit log; a providing institution sees the use of its own data.",
        access: Access::Roles(&[Role::Approver]),
        body: None,
        query: &["principal", "dataset", "since", "outcome", "limit"],
    },
    Route {
        method: "get",
        path: "/v1/audit/verify",
        summary: "Whether the audit chain is intact.",
        access: Access::Roles(&[Role::Approver, Role::Admin]),
        body: None,
        query: &[],
    },
];
