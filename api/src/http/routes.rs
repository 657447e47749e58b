//! The route table: every endpoint's method, path, who may call it, a
//! summary, and the types of its body, answer and query. The router
//! (`http/mod.rs`), the role check that runs before any body is read
//! (`auth::Caller`) and the OpenAPI document (`docs.rs`, its schemas made
//! by `utoipa` from the wire types) are all made from it, so they cannot
//! drift.

use std::borrow::Cow;

use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};
use veil_policies::Role;

use crate::wire::admin::{
    AuditPage, AuditQuery, Catalog, CatalogQuery, ChainView, DatasetVersions, KeyIssued,
    KeysRevoked, NewPrincipalBody, PolicyBody, PolicyVersions, PolicyView, PrincipalView,
    Principals, RegisterBody, Registered, StatusBody, StatusSet,
};
use crate::wire::models::{ScoreBody, TrainBody};
use crate::wire::query::{BudgetQuery, DeadlineQuery, QueryBody, VerifyBodyDoc};
use crate::wire::requests::{OpenBody, StepBody};

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

const PUBLIC: Access = Access::Public;
const EVERYONE: Access = Access::Roles(&[
    Role::Consumer,
    Role::Modeler,
    Role::Approver,
    Role::Admin,
    Role::Subject,
]);
/// Who can be a party to a request.
const PARTIES: Access =
    Access::Roles(&[Role::Consumer, Role::Modeler, Role::Approver, Role::Subject]);
const STEWARDS: Access = Access::Roles(&[Role::Approver, Role::Admin]);
const APPROVERS: Access = Access::Roles(&[Role::Approver]);
const ADMINS: Access = Access::Roles(&[Role::Admin]);
const ANALYSTS: Access = Access::Roles(&[Role::Consumer, Role::Modeler]);
const CONSUMERS: Access = Access::Roles(&[Role::Consumer]);
const MODELERS: Access = Access::Roles(&[Role::Modeler]);
const SUBJECTS: Access = Access::Roles(&[Role::Subject]);

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

/// A wire type's schema, for the OpenAPI document.
#[derive(Clone, Copy)]
pub struct Shape {
    pub name: fn() -> Cow<'static, str>,
    pub schema: fn() -> RefOr<Schema>,
    /// The schemas it refers to.
    pub refers: fn(&mut Vec<(String, RefOr<Schema>)>),
}

const fn shape<T: ToSchema>() -> Shape {
    Shape {
        name: T::name,
        schema: T::schema,
        refers: T::schemas,
    }
}

fn params<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

/// One endpoint.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Who may call it: checked from the key before the body is read.
    pub access: Access,
    /// The JSON body it takes: its type (when it has one) and an example.
    pub body: Option<(Option<Shape>, &'static str)>,
    /// The JSON answer's type, where the answer has one.
    pub answer: Option<Shape>,
    /// The query parameters it takes.
    pub params: Option<fn() -> Vec<Parameter>>,
    /// The success status, when not the usual one (200; 201 for a POST
    /// that answers a created thing).
    pub success: Option<&'static str>,
    /// The media types it answers with, when not JSON alone.
    pub media: Option<&'static [&'static str]>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        summary,
        access,
        body: None,
        answer: None,
        params: None,
        success: None,
        media: None,
    }
}

const fn get(path: &'static str, access: Access, summary: &'static str) -> Route {
    route("get", path, access, summary)
}

const fn post(path: &'static str, access: Access, summary: &'static str) -> Route {
    route("post", path, access, summary)
}

const fn put(path: &'static str, access: Access, summary: &'static str) -> Route {
    route("put", path, access, summary)
}

const fn delete(path: &'static str, access: Access, summary: &'static str) -> Route {
    route("delete", path, access, summary)
}

impl Route {
    const fn takes(mut self, shape: Shape, example: &'static str) -> Route {
        self.body = Some((Some(shape), example));
        self
    }

    const fn answers(mut self, shape: Shape) -> Route {
        self.answer = Some(shape);
        self
    }

    const fn params(mut self, params: fn() -> Vec<Parameter>) -> Route {
        self.params = Some(params);
        self
    }

    const fn succeeds_with(mut self, status: &'static str) -> Route {
        self.success = Some(status);
        self
    }

    const fn serves(mut self, media: &'static [&'static str]) -> Route {
        self.media = Some(media);
        self
    }
}

pub const ROUTES: &[Route] = &[
    get("/healthz", PUBLIC, "Liveness."),
    get("/metrics", PUBLIC, "Prometheus metrics.").serves(&["text/plain"]),
    get("/openapi.json", PUBLIC, "This document."),
    get("/docs", PUBLIC, "Swagger UI over this document: try each endpoint with your key.").serves(&["text/html"]),
    get("/docs/swagger-ui.css", PUBLIC, "Swagger UI's style sheet, built in.").serves(&["text/css"]),
    get("/docs/swagger-ui-bundle.js", PUBLIC, "Swagger UI's script, built in.").serves(&["text/javascript"]),
    get("/v1/catalog", EVERYONE, "The datasets visible to the caller, each field with its category, grade and the caller's disclosure level.")
        .answers(shape::<Catalog>())
        .params(params::<CatalogQuery>),
    get("/v1/catalog/{dataset}/versions", STEWARDS, "Every registered version of a dataset's catalog entry.")
        .answers(shape::<DatasetVersions>()),
    post("/v1/datasets", APPROVERS, "Register a dataset from a catalog manifest; its file lies under the data directory's datasets/ folder. The manifest's approving institution is the configured data authority. A provider's approver registers only datasets its institution provides, and only versions that change nothing the authority reviews; a new entry (for a provider) and a change of grades, protections, share or open attributes go through a `catalog_change` request.")
        .takes(shape::<RegisterBody>(), r#"{"manifest": "format = 1\n[dataset]\n..."}"#)
        .answers(shape::<Registered>()),
    post("/v1/query", ANALYSTS, "Run one SELECT under policy. Answers as application/json, text/csv or application/vnd.apache.arrow.stream (Accept), streamed, with provenance, privacy and a signed receipt. With `epsilon`, a differentially private aggregate (budget charged before release; `dry_run` prices it without spending).")
        .takes(shape::<QueryBody>(), r#"{"sql": "SELECT county_code, COUNT(*) FROM population GROUP BY county_code", "purpose": "social-assistance"}"#)
        .serves(&["application/json", "text/csv", "application/vnd.apache.arrow.stream"]),
    get("/v1/receipts/{request_id}", ANALYSTS, "The signed receipt of a CSV or Arrow answer (JSON answers carry theirs inline)."),
    get("/v1/budget", ANALYSTS, "Per dataset queryable under differential privacy: the budget, what was spent (basic composition and zCDP) and the ε left.")
        .params(params::<BudgetQuery>),
    post("/v1/verify", CONSUMERS, "Verify claims about a subject against data you never see: `match`/`mismatch` (or true/false for predicate products) per claim and nothing else; an unknown subject fails every claim. One `subject` with `claims`, or `items`: up to 10,000 of them. Identifiers are checked before any lookup; per-principal limits per minute and per subject per day; every verification is audited with a keyed digest of the subject.")
        .takes(shape::<VerifyBodyDoc>(), r#"{"product": "person_identity", "subject": "53010219900101001X", "claims": {"name": "张三", "phone": "13800000000"}}"#),
    get("/v1/verify/products", EVERYONE, "The verification products: dataset, claims and how each compares, limits, and whether you may use it."),
    post("/v1/requests", PARTIES, "Open a request: `sharing` and `open_data` (dataset, purpose, fields, days), `correction` (detail.record, detail.correction; `via_authority`), `complaint` (detail.complaint: its provider verifies it and may suspend the opening at once), `emergency_data`, `catalog_change` (detail.manifest), `qualification` (detail.organisation, detail.scope), `policy_change` (detail.text; as `PUT /v1/policy`). Unconditional data is granted at once; not-shared or not-open data is refused with the article.")
        .takes(shape::<OpenBody>(), r#"{"kind": "sharing", "dataset": "social_insurance", "purpose": "social-assistance", "fields": ["month", "paid"]}"#)
        .succeeds_with("201"),
    get("/v1/requests", PARTIES, "The requests you opened and those you act on as provider, collector or data authority, with their deadlines and next steps."),
    get("/v1/requests/overdue", STEWARDS, "Open requests past their working-day deadline, for the data authority."),
    get("/v1/requests/{id}", PARTIES, "One request and every step taken on it, for its parties."),
    post("/v1/requests/{id}/{action}", PARTIES, "Take a step (approve, deliver, refuse with notes.legal_basis, withdraw, forward, extend, answer, restore, withdraw_opening, seal, destroy, grant, revoke, commit, reject) as the party it belongs to; deadlines follow the working-day calendar.")
        .takes(shape::<StepBody>(), r#"{"notes": {"legal_basis": "Art. 27: ..."}}"#),
    get("/v1/me/records", SUBJECTS, "A subject principal's own records (Art. 24): in every dataset whose privacy unit is its identifier, the rows about it, with every field its grade lets out in any form; provenance per dataset; audited."),
    post("/v1/models", MODELERS, "Train a model inside (Art. 32, 39), for a modeler holding a development qualification: `template` linear_regression, logistic_regression (with `above`), histogram or quantiles; `features` and `target` as `dataset.field` or {dataset, field, per_unit: mean|min|max}, datasets joined on their privacy unit; `epsilon`; `params` (iterations, learning_rate, l2, bins, quantiles). Only datasets that are open (Art. 38) and have the template enabled by the policy. Charges the budget, then releases parameters and metrics under differential privacy, with the noise, the provenance and the policy version.")
        .takes(shape::<TrainBody>(), r#"{"template": "linear_regression", "features": ["tax.revenue", "utility_usage.usage"], "target": "tax.tax_paid", "epsilon": 1.0}"#)
        .succeeds_with("201"),
    get("/v1/models", MODELERS, "Your models: spec, released parameters and metrics, privacy spent, lineage and policy version."),
    get("/v1/models/{id}", MODELERS, "One of your models."),
    post("/v1/models/{id}/score", MODELERS, "Score inside with one of your regression models: `subjects` (identifiers of the privacy unit; needs a live grant for `purpose` covering every feature; a subject with no records scores null) or `rows` (feature values you supply, in the features' order, clamped to the bounds). Answers carry provenance; subjects are audited as keyed digests.")
        .takes(shape::<ScoreBody>(), r#"{"subjects": ["91110000600037341L"], "purpose": "credit-assessment"}"#),
    get("/v1/calendar/deadline", EVERYONE, "The `days`-th working day after `from` on the State Council's calendar (holidays and make-up working days, 2024-2026); years without a published arrangement assume Monday to Friday and are listed in `assumed_years`.")
        .params(params::<DeadlineQuery>),
    get("/v1/policy", STEWARDS, "The active policy and its text.")
        .answers(shape::<PolicyView>()),
    put("/v1/policy", APPROVERS, "Propose a policy, checked as `veil policy check` checks it, for approvers of the data authority: it opens a `policy_change` request (202) that a second approver of the authority approves (`POST /v1/requests/{id}/approve`) to make it the active version; the audit keeps both names and the diff.")
        .takes(shape::<PolicyBody>(), r#"{"text": "format = 1\nname = \"default\"\n..."}"#)
        .succeeds_with("202"),
    get("/v1/policy/versions", STEWARDS, "Every policy version.")
        .answers(shape::<PolicyVersions>()),
    get("/v1/principals", ADMINS, "Principals (never their keys).")
        .answers(shape::<Principals>()),
    post("/v1/principals", ADMINS, "Create a principal; its API key appears in this answer only.")
        .takes(shape::<NewPrincipalBody>(), r#"{"name": "kunming-civil-affairs", "role": "consumer", "org": "昆明市民政局", "region": "530100"}"#)
        .answers(shape::<PrincipalView>()),
    post("/v1/principals/{name}/keys", ADMINS, "Issue one more key.")
        .answers(shape::<KeyIssued>()),
    delete("/v1/principals/{name}/keys", ADMINS, "Revoke every key of a principal, effective on the next request.")
        .answers(shape::<KeysRevoked>()),
    put("/v1/principals/{name}/status", ADMINS, "Suspend or reactivate a principal (Art. 47-48).")
        .takes(shape::<StatusBody>(), r#"{"status": "suspended"}"#)
        .answers(shape::<StatusSet>()),
    get("/v1/audit", APPROVERS, "Search the audit log; a providing institution sees the use of its own data.")
        .answers(shape::<AuditPage>())
        .params(params::<AuditQuery>),
    get("/v1/audit/verify", STEWARDS, "Whether the audit chain is intact.")
        .answers(shape::<ChainView>()),
];
