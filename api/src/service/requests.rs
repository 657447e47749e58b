//! The regulation's requests in the service: who may open which kind, who
//! each caller is to a request (applicant, provider, collector, authority),
//! and the effects of steps (grants, qualifications, dataset access,
//! published catalog versions). The state machines are
//! `veil_policies::requests`; the store keeps requests and their steps.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};
use veil_policies::catalog::DatasetManifest;
use veil_policies::requests::{self as machine, Effect, Kind, Opening, Party, Refused};
use veil_policies::{Principal, Role};

use crate::service::ServiceError;
use crate::store::{Apply, AuditEntry, NewRequest, RequestRecord, Store};
use crate::wire::ErrorCode;
pub use crate::wire::requests::{OpenBody, StepBody};

/// The service's day (China Standard Time).
pub fn today(now: DateTime<Utc>) -> NaiveDate {
    veil_policies::calendar::service_day(now)
}

/// Whether `principal` is an approver of the data authority: its
/// organisation approves some registered dataset.
/// Whether `principal` is an approver of the data authority this
/// deployment was configured with (never derived from manifests).
pub fn is_authority(store: &Store, principal: &Principal) -> Result<bool, ServiceError> {
    if principal.role != Role::Approver {
        return Ok(false);
    }
    let Some(org) = principal.org.as_deref().filter(|o| !o.trim().is_empty()) else {
        return Ok(false);
    };
    Ok(store.authority()?.as_deref() == Some(org))
}

/// Who `principal` is to `request`.
pub fn parties(
    store: &Store,
    principal: &Principal,
    request: &RequestRecord,
) -> Result<Vec<Party>, ServiceError> {
    let mut parties = Vec::new();
    if principal.name == request.applicant {
        parties.push(Party::Applicant);
    }
    let manifest = match &request.dataset {
        Some(d) => store.dataset(d)?.map(|r| r.manifest),
        None => None,
    };
    parties.extend(institution_parties(store, principal, manifest.as_ref())?);
    Ok(parties)
}

/// What an approver's institution is to a dataset: its provider or
/// collector, and the data authority when it is the configured one.
fn institution_parties(
    store: &Store,
    principal: &Principal,
    manifest: Option<&DatasetManifest>,
) -> Result<Vec<Party>, ServiceError> {
    if principal.role != Role::Approver {
        return Ok(Vec::new());
    }
    let org = principal.org.as_deref().unwrap_or_default();
    let mut parties: Vec<Party> = match manifest {
        Some(m) => {
            let i = &m.institutions;
            [
                (Party::Provider, &i.providing),
                (Party::Collector, &i.collecting),
            ]
            .into_iter()
            .filter(|(_, of)| !org.is_empty() && *of == org)
            .map(|(party, _)| party)
            .collect()
        }
        None => Vec::new(),
    };
    if is_authority(store, principal)? {
        parties.push(Party::Authority);
    }
    Ok(parties)
}

/// The shortest grant any of the fields' grades allows, in days.
fn grant_days(
    policy: &veil_policies::Policy,
    m: &DatasetManifest,
    fields: Option<&[String]>,
) -> u32 {
    m.fields
        .iter()
        .filter(|f| fields.is_none_or(|fs| fs.contains(&f.name)))
        .filter_map(|f| policy.grade(&f.grade).map(|g| g.grant_days))
        .min()
        .unwrap_or(1)
}

fn require_detail(body: &OpenBody, keys: &[&str]) -> Result<(), ServiceError> {
    match keys
        .iter()
        .find(|k| body.detail.get(**k).is_none_or(|v| v.trim().is_empty()))
    {
        Some(k) => Err(ServiceError::bad_request(format!(
            "a {} request needs `detail.{k}`",
            body.kind
        ))),
        None => Ok(()),
    }
}

/// Opens a request for `principal`, applying what opening sets (a grant at
/// once for unconditional sharing, a suspension for a complaint).
fn open(
    store: &mut Store,
    principal: &Principal,
    body: &OpenBody,
    now: DateTime<Utc>,
) -> Result<(RequestRecord, Effect), ServiceError> {
    let kind: Kind = body.kind.parse().map_err(ServiceError::bad_request)?;
    if body.days.is_some_and(|d| !(1..=3660).contains(&d)) {
        return Err(ServiceError::bad_request(
            "`days` is from 1 to 3660 (a grant lasts at most its grades' grant length)",
        ));
    }
    let policy = store
        .active_policy()?
        .ok_or_else(|| ServiceError::new(ErrorCode::Internal, ""))?
        .policy;
    let roles: &[Role] = match kind {
        Kind::Sharing | Kind::OpenData => &[Role::Consumer, Role::Modeler],
        Kind::Correction => &[Role::Subject, Role::Consumer, Role::Modeler],
        Kind::Complaint => &[Role::Subject, Role::Consumer, Role::Modeler],
        Kind::EmergencyData | Kind::CatalogChange | Kind::PolicyChange => &[Role::Approver],
        Kind::Qualification => &[Role::Modeler],
    };
    if !roles.contains(&principal.role) {
        let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        return Err(ServiceError::new(
            ErrorCode::Forbidden,
            format!(
                "{kind} requests are for {}; you are {}",
                names.join(" or "),
                principal.role.with_article()
            ),
        ));
    }
    // The dataset the request is about.
    let catalog_manifest = if kind == Kind::CatalogChange {
        require_detail(body, &["manifest"])?;
        let text = &body.detail["manifest"];
        Some(
            DatasetManifest::parse(text, &|g| policy.grade(g).is_some())
                .map_err(|p| ServiceError::bad_request(p.to_string()))?,
        )
    } else {
        None
    };
    let dataset = match (&catalog_manifest, &body.dataset) {
        (Some(m), _) => Some(m.name.clone()),
        (None, d) => d.clone(),
    };
    let registered = match &dataset {
        Some(d) => store.dataset(d)?,
        None => None,
    };
    let needs_dataset = !matches!(
        kind,
        Kind::Qualification | Kind::CatalogChange | Kind::PolicyChange
    );
    if needs_dataset && registered.is_none() {
        return Err(ServiceError::new(
            ErrorCode::NotFound,
            format!("a {kind} request names a registered `dataset`"),
        ));
    }
    let manifest = registered.as_ref().map(|r| &r.manifest);
    let mut purpose = None;
    let mut days = None;
    match kind {
        Kind::Sharing | Kind::OpenData => {
            let p = body
                .purpose
                .as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty());
            purpose = Some(p.ok_or_else(|| {
                ServiceError::bad_request("state the purpose: the application scenario (Art. 28)")
            })?);
            let m = manifest.expect("checked above");
            if let Some(f) = body.fields.iter().flatten().find(|f| m.field(f).is_none()) {
                return Err(ServiceError::bad_request(format!(
                    "`{}` has no field `{f}`",
                    m.name
                )));
            }
            let longest = grant_days(&policy, m, body.fields.as_deref());
            days = Some(body.days.unwrap_or(longest).clamp(1, longest));
        }
        Kind::Correction => require_detail(body, &["record", "correction"])?,
        Kind::Complaint => {
            require_detail(body, &["complaint"])?;
            // Art. 36 is about opened data; a complaint suspends at once, so
            // it must not reach data that is only shared (file a correction).
            let m = manifest.expect("checked above");
            if m.open.attribute == veil_policies::catalog::OpenAttribute::NotOpen {
                return Err(ServiceError::new(
                    ErrorCode::PolicyDenied,
                    format!(
                        "`{}` is not open data: a complaint (Art. 36) does not apply; file a correction (Art. 22)",
                        m.name
                    ),
                ));
            }
        }
        Kind::Qualification => require_detail(body, &["organisation", "scope"])?,
        Kind::PolicyChange => {
            // The grading rules are the data authority's (Art. 11).
            if !is_authority(store, principal)? {
                return Err(ServiceError::forbidden(format!(
                    "the classification and grading rules are the data authority's (Art. 11): only an approver of `{}` proposes a policy change",
                    store.require_authority()?
                )));
            }
            require_detail(body, &["text"])?;
            if body.dataset.is_some() || body.detail.len() != 1 {
                return Err(ServiceError::bad_request(
                    "a policy_change takes `detail.text` and nothing else",
                ));
            }
            store.check_policy(&body.detail["text"])?;
        }
        Kind::CatalogChange => {
            let m = catalog_manifest.as_ref().expect("parsed above");
            crate::registry::check_authority(store, m)?;
            // A provider changes only its own entries; a new entry names
            // the applicant's institution as its provider.
            let org = principal.org.as_deref().unwrap_or_default();
            let own = !org.is_empty() && m.institutions.providing == org;
            if registered.is_none() && !own && !is_authority(store, principal)? {
                return Err(ServiceError::forbidden(format!(
                    "an approver of `{org}` proposes catalog entries only for datasets `{org}` provides"
                )));
            }
        }
        Kind::EmergencyData => {}
    }
    // Emergency data is declared, and a registered dataset's catalog entry
    // changed, by its provider or the data authority.
    if kind == Kind::EmergencyData || (kind == Kind::CatalogChange && registered.is_some()) {
        let p = institution_parties(store, principal, manifest)?;
        if !p.contains(&Party::Provider) && !p.contains(&Party::Authority) {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                format!(
                    "a {kind} request about a dataset is its provider's or the data authority's"
                ),
            ));
        }
    }
    let opening = Opening {
        share: manifest.map(|m| m.share.attribute),
        open: manifest.map(|m| m.open.attribute),
        via_authority: body.via_authority,
    };
    let moved = machine::open(kind, opening, today(now)).map_err(|e| match e {
        Refused::NotAllowed(m) => ServiceError::new(ErrorCode::PolicyDenied, m),
        other => ServiceError::from(other),
    })?;
    let apply = effect_of(moved.effect, days, None, now);
    let mut detail = json!(body.detail);
    if kind == Kind::PolicyChange {
        // What the proposal was written against: approving it once the
        // policy has moved on would undo changes no one reviewed with it.
        let base = store.active_policy()?.map(|a| a.version).unwrap_or(0);
        detail["base_version"] = json!(base);
    }
    let record = store.open_request(
        &NewRequest {
            kind,
            applicant: &principal.name,
            dataset: dataset.as_deref(),
            purpose,
            fields: body.fields.as_deref(),
            days,
            detail: &detail,
        },
        &moved,
        &apply,
    )?;
    Ok((record, moved.effect))
}

/// What a step's effect writes in the store.
fn effect_of(
    effect: Effect,
    days: Option<u32>,
    notes: Option<&BTreeMap<String, String>>,
    now: DateTime<Utc>,
) -> Apply {
    match effect {
        Effect::Grant => Apply::Grant {
            expires_at: now + Duration::days(i64::from(days.unwrap_or(1))),
        },
        Effect::Qualify => Apply::Qualify {
            agreement: notes
                .and_then(|n| n.get("agreement"))
                .cloned()
                .unwrap_or_default(),
        },
        Effect::Disqualify => Apply::Disqualify,
        Effect::SuspendOpening => Apply::DatasetAccess(Some("suspended")),
        Effect::ResumeOpening => Apply::DatasetAccess(None),
        Effect::WithdrawOpening => Apply::DatasetAccess(Some("opening_withdrawn")),
        Effect::Seal => Apply::DatasetAccess(Some("sealed")),
        Effect::Destroy => Apply::DatasetAccess(Some("destroyed")),
        Effect::PublishCatalog | Effect::LoadPolicy | Effect::None => Apply::Nothing,
    }
}

/// Takes `action` on request `id` as `principal`. A request the caller is
/// no party to is not found (its existence is not revealed).
fn act(
    store: &mut Store,
    principal: &Principal,
    id: &str,
    action: &str,
    notes: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(RequestRecord, Effect, Option<String>), ServiceError> {
    let not_found = || ServiceError::not_found("no request of yours has this id");
    let request = store.request(id)?.ok_or_else(not_found)?;
    let parties = parties(store, principal, &request)?;
    if parties.is_empty() {
        return Err(not_found());
    }
    // Four eyes: the approver who proposed a change of the rules or of a
    // catalog entry does not approve it too.
    if action == "approve"
        && matches!(request.kind, Kind::PolicyChange | Kind::CatalogChange)
        && request.applicant == principal.name
    {
        return Err(ServiceError::forbidden(format!(
            "a {} is approved by a second approver of the data authority, not by the one who proposed it",
            request.kind
        )));
    }
    let moved = machine::act(
        request.kind,
        &request.state,
        request.due,
        action,
        &parties,
        notes,
        today(now),
    )?;
    let what = match moved.effect {
        Effect::PublishCatalog => Some(publish_catalog(store, &request, &principal.name)?),
        Effect::LoadPolicy => Some(load_policy(store, &request, &principal.name)?),
        _ => None,
    };
    let apply = effect_of(moved.effect, request.days, Some(notes), now);
    let record = store.step_request(
        id,
        &request.state,
        action,
        &principal.name,
        notes,
        &moved,
        &apply,
    )?;
    Ok((record, moved.effect, what))
}

/// Registers the manifest of an approved catalog change as the dataset's
/// next version; its data file must already be under `DIR/datasets`, and
/// a new version's path is read from where the entry's file is now.
/// Says, for the audit, what changed from the version before.
fn publish_catalog(
    store: &mut Store,
    request: &RequestRecord,
    by: &str,
) -> Result<String, ServiceError> {
    let text = request
        .detail
        .get("manifest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let before = match &request.dataset {
        Some(d) => store.dataset(d)?,
        None => None,
    };
    // A manifest names its file relative to itself: one sent to the API
    // as relative to `DIR/datasets`, one registered from a directory (the
    // demo's, in `datasets/sample/`) as relative to that. A new version of
    // a registered entry is read where its path names a file: under
    // `DIR/datasets`, else beside the file the entry has now.
    let root = store.data_dir().datasets_dir();
    let named = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
        t.get("dataset")?
            .get("path")?
            .as_str()
            .map(std::path::PathBuf::from)
    });
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let beside = before
        .as_ref()
        .and_then(|b| b.data_path.parent().map(std::path::Path::to_path_buf))
        .filter(|d| {
            canonical(d)
                .zip(canonical(&root))
                .is_some_and(|(d, root)| d.starts_with(root))
        });
    let resolves = |dir: &std::path::Path| named.as_ref().is_some_and(|p| dir.join(p).is_file());
    let dir = match beside {
        Some(b) if !resolves(&root) && resolves(&b) => b,
        _ => root,
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(".catalog-{}.toml", request.id));
    std::fs::write(&path, text)?;
    let outcome = crate::registry::register(store, &path, None, by);
    let _ = std::fs::remove_file(&path);
    let published = outcome?.dataset;
    let changes = match &before {
        Some(b) => crate::registry::reviewable_changes(&b.manifest, &published.manifest),
        None => vec!["a new entry".to_owned()],
    };
    Ok(format!(
        "{} v{} -> v{}, proposed by {}, approved by {by}; changes: {}",
        published.manifest.name,
        before.map_or(0, |b| b.version),
        published.version,
        request.applicant,
        if changes.is_empty() {
            "none reviewable".to_owned()
        } else {
            changes.join("; ")
        }
    ))
}

/// Makes a proposed policy the active version; says, for the audit, who
/// proposed and approved it and how its text differs from the one before.
fn load_policy(
    store: &mut Store,
    request: &RequestRecord,
    by: &str,
) -> Result<String, ServiceError> {
    let text = request
        .detail
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let base = request.detail.get("base_version").and_then(Value::as_i64);
    let current = store.active_policy()?.map(|a| a.version);
    if base != current {
        return Err(ServiceError::conflict(
            "the active policy changed since this proposal was made: reject it and propose again against the current version",
        ));
    }
    let before = store.active_policy_text()?.unwrap_or_default();
    let active = store.load_policy(text, by)?;
    Ok(format!(
        "policy {} proposed by {}, approved by {by}; diff:\n{}",
        active.label(),
        request.applicant,
        crate::diff::lines(&before, text)
    ))
}

/// The requests `principal` is a party to, newest first.
fn visible(store: &Store, principal: &Principal) -> Result<Vec<RequestRecord>, ServiceError> {
    let mut out = Vec::new();
    for r in store.requests()? {
        if !parties(store, principal, &r)?.is_empty() {
            out.push(r);
        }
    }
    Ok(out)
}

/// Every open request past its deadline on `today`, for the data authority.
fn overdue(
    store: &Store,
    principal: &Principal,
    today: NaiveDate,
) -> Result<Vec<RequestRecord>, ServiceError> {
    if !is_authority(store, principal)? && principal.role != Role::Admin {
        return Err(ServiceError::new(
            ErrorCode::Forbidden,
            "the overdue list is for the data authority's approvers and admins",
        ));
    }
    Ok(store
        .requests()?
        .into_iter()
        .filter(|r| machine::overdue(r.kind, &r.state, r.due, today))
        .collect())
}

/// A request as JSON, with its next steps and, when given, its history.
pub fn request_json(r: &RequestRecord, steps: Option<&[crate::store::StepRecord]>) -> Value {
    let next: Vec<Value> = machine::next_steps(r.kind, &r.state)
        .into_iter()
        .map(|(action, by)| json!({"action": action, "by": by.name()}))
        .collect();
    let mut out = json!({
        "id": r.id,
        "kind": r.kind.name(),
        "state": r.state,
        "applicant": r.applicant,
        "dataset": r.dataset,
        "purpose": r.purpose,
        "fields": r.fields,
        "days": r.days,
        "detail": r.detail,
        "due": r.due.map(|d| d.to_string()),
        "due_assumes_monday_to_friday_in": r.assumed,
        "grant": r.grant_id,
        "next_steps": next,
        "created_at": r.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "updated_at": r.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(steps) = steps {
        out["steps"] = steps
            .iter()
            .map(|s| {
                json!({"n": s.n, "action": s.action, "from": s.from_state, "to": s.to_state, "by": s.actor, "notes": s.notes,
                       "at": s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
            })
            .collect();
    }
    out
}

/// The audit entry of an opening or a step: what was asked (`what`, never a
/// note's text), on which dataset, and the state it led to or the refusal.
fn audit_entry(
    principal: &Principal,
    endpoint: &str,
    what: String,
    dataset: Option<&str>,
    outcome: &Result<(RequestRecord, Effect), ServiceError>,
) -> AuditEntry {
    let (dataset, outcome) = match outcome {
        Ok((r, _)) => (r.dataset.as_deref(), format!("ok:{}", r.state)),
        Err(e) => (dataset, e.outcome()),
    };
    AuditEntry {
        principal: principal.name.clone(),
        role: principal.role.name().to_owned(),
        endpoint: endpoint.to_owned(),
        request: what,
        datasets: dataset.map(|d| vec![d.to_owned()]).unwrap_or_default(),
        privacy: "{}".into(),
        outcome,
        ..AuditEntry::default()
    }
}

impl super::Service {
    /// Opens a request as `principal`. A step with an effect on access
    /// (a complaint suspends the dataset) holds before the answer leaves.
    pub fn open_request(
        &self,
        principal: &Principal,
        body: &OpenBody,
        endpoint: &str,
    ) -> super::Audited<Value> {
        let outcome = open(&mut self.store(), principal, body, Utc::now());
        // A refused request is recorded by what it is, never as typed: an
        // unknown kind or dataset name could be anything the caller holds.
        let what = match &outcome {
            Ok((r, _)) => format!("open {} {}", r.kind, r.id),
            Err(_) => match body.kind.parse::<Kind>() {
                Ok(kind) => format!("open {kind}"),
                Err(_) => "open (a kind that does not exist)".to_owned(),
            },
        };
        let dataset = body.dataset.as_deref().filter(|d| {
            self.reader()
                .is_ok_and(|r| r.dataset(d).is_ok_and(|found| found.is_some()))
        });
        let entry = audit_entry(principal, endpoint, what, dataset, &outcome);
        super::Audited::new(entry, self.follow(outcome))
    }

    /// Takes `action` on request `id` as `principal`.
    pub fn act_on_request(
        &self,
        principal: &Principal,
        id: &str,
        action: &str,
        notes: &BTreeMap<String, String>,
        endpoint: &str,
    ) -> super::Audited<Value> {
        let outcome = act(&mut self.store(), principal, id, action, notes, Utc::now());
        let what = match &outcome {
            Ok((_, _, Some(what))) => format!("{action} {id}: {what}"),
            _ => format!("{action} {id}"),
        };
        let outcome = outcome.map(|(record, effect, _)| (record, effect));
        let entry = audit_entry(principal, endpoint, what, None, &outcome);
        super::Audited::new(entry, self.follow(outcome))
    }

    /// Effects that change what the engine allows take hold now.
    fn follow(
        &self,
        outcome: Result<(RequestRecord, Effect), ServiceError>,
    ) -> Result<Value, ServiceError> {
        let (record, effect) = outcome?;
        match effect {
            Effect::None | Effect::Grant | Effect::Qualify | Effect::Disqualify => {}
            _ => self.reload_engine()?,
        }
        Ok(request_json(&record, None))
    }

    /// The requests `principal` opened or acts on, newest first.
    pub fn requests(&self, principal: &Principal) -> Result<Value, ServiceError> {
        let records = self.request_records(principal)?;
        let requests: Vec<Value> = records.iter().map(|r| request_json(r, None)).collect();
        Ok(json!({"requests": requests}))
    }

    /// The requests `principal` opened or is a party to, as records.
    pub fn request_records(
        &self,
        principal: &Principal,
    ) -> Result<Vec<RequestRecord>, ServiceError> {
        visible(&*self.reader()?, principal)
    }

    /// One request and its steps, for its parties; to anyone else it does
    /// not exist.
    pub fn request(&self, principal: &Principal, id: &str) -> Result<Value, ServiceError> {
        let (record, steps, _) = self.request_record(principal, id)?;
        Ok(request_json(&record, Some(&steps)))
    }

    /// One request, its steps, and what `principal` is to it, for its
    /// parties only.
    pub fn request_record(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(RequestRecord, Vec<crate::store::StepRecord>, Vec<Party>), ServiceError> {
        let store = self.reader()?;
        let not_found = || ServiceError::not_found("no request of yours has this id");
        let record = store.request(id)?.ok_or_else(not_found)?;
        let parties = parties(&store, principal, &record)?;
        if parties.is_empty() {
            return Err(not_found());
        }
        let steps = store.request_steps(id)?;
        Ok((record, steps, parties))
    }

    /// Open requests past their deadline on `today`, for the authority.
    pub fn overdue_requests(
        &self,
        principal: &Principal,
        today: NaiveDate,
    ) -> Result<Vec<RequestRecord>, ServiceError> {
        overdue(&*self.reader()?, principal, today)
    }
}
