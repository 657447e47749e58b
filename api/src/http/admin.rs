//! The catalog, policies, principals and the audit log over HTTP.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use veil_policies::{DatasetManifest, Level, Role};

use super::auth::Caller;
use super::body::JsonBody;
use super::state::AppState;
use crate::service::ServiceError;
use crate::store::{AuditEntry, AuditFilter, ChainReport, NewPrincipal, PrincipalStatus};

/// Records an administrative action in the audit log.
async fn audit_action(
    state: &AppState,
    caller: &Caller,
    endpoint: &str,
    request: String,
    datasets: Vec<String>,
    outcome: &str,
) -> Result<(), ServiceError> {
    let entry = AuditEntry {
        principal: caller.name().to_owned(),
        role: caller.role().name().to_owned(),
        endpoint: endpoint.to_owned(),
        request,
        datasets,
        privacy: "{}".into(),
        outcome: outcome.to_owned(),
        ..AuditEntry::default()
    };
    state.audit(entry).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    purpose: Option<String>,
}

fn manifest_json(m: &DatasetManifest, version: i64, levels: Option<&[(String, Level)]>) -> Value {
    let fields: Vec<Value> = m
        .fields
        .iter()
        .map(|f| {
            let mut v = json!({
                "name": f.name,
                "type": f.field_type.name(),
                "description": f.description,
                "category": f.category,
                "grade": f.grade,
                "identifier": f.identifier.map(|i| i.name()),
                "personal": f.personal,
                "sensitive": f.sensitive,
            });
            if let Some((lo, hi)) = f.bounds {
                v["bounds"] = json!([lo, hi]);
            }
            if let Some(d) = &f.domain {
                v["domain"] = json!(d);
            }
            if let Some(levels) = levels {
                let level = levels
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .map_or("deny".to_owned(), |(_, l)| l.to_string());
                v["level"] = json!(level);
            }
            v
        })
        .collect();
    json!({
        "name": m.name,
        "version": version,
        "title": m.title,
        "description": m.description,
        "database": m.database.name(),
        "providing_institution": m.institutions.providing,
        "collecting_institution": m.institutions.collecting,
        "approving_institution": m.institutions.approving,
        "data_form": m.data_form,
        "format": m.format.name(),
        "update_frequency": m.update_frequency.name(),
        "share": {"attribute": m.share.attribute.name(), "conditions": m.share.conditions, "scope": m.share.scope, "legal_basis": m.share.legal_basis},
        "open": {"attribute": m.open.attribute.name(), "conditions": m.open.conditions},
        "privacy_unit": m.privacy_unit,
        "region_field": m.region_field,
        "fields": fields,
    })
}

/// `GET /v1/catalog`: the datasets the caller may use, each field with the
/// caller's disclosure level. Approvers and admins see the whole catalog.
pub async fn catalog(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<CatalogQuery>, QueryRejection>,
) -> Result<Response, ServiceError> {
    let Query(q) = query?;
    let engine = state.engine();
    let levels = engine.levels(&caller.0.principal, q.purpose.as_deref(), Utc::now());
    let manages = matches!(caller.role(), Role::Approver | Role::Admin);
    let datasets: Vec<Value> = engine
        .datasets()
        .filter_map(|d| {
            let own = levels
                .iter()
                .find(|(n, _)| *n == d.manifest.name)
                .map(|(_, l)| l.as_slice())
                .unwrap_or(&[]);
            let usable = own.iter().any(|(_, l)| *l != Level::Deny);
            (usable || manages).then(|| manifest_json(&d.manifest, d.version, Some(own)))
        })
        .collect();
    Ok(
        Json(json!({"policy_version": engine.policy_version(), "datasets": datasets}))
            .into_response(),
    )
}

/// `GET /v1/catalog/{dataset}/versions`: every registered version.
pub async fn catalog_versions(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ServiceError> {
    let history = state.store().dataset_history(&name)?;
    if history.is_empty() {
        return Err(ServiceError::not_found("no dataset has this name"));
    }
    let versions: Vec<Value> = history
        .iter()
        .map(|d| {
            json!({
                "version": d.version,
                "registered_at": d.registered_at.to_rfc3339(),
                "registered_by": d.registered_by,
                "rows": d.rows,
                "file_sha256": d.file_sha256,
                "manifest": d.manifest_text,
            })
        })
        .collect();
    Ok(Json(json!({"dataset": name, "versions": versions})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The manifest, as TOML text. Its `path` is relative to `DIR/datasets`.
    manifest: String,
}

/// `POST /v1/datasets`: registers a dataset whose file is already under the
/// data directory's `datasets/` folder.
pub async fn register_dataset(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, ServiceError> {
    let outcome = {
        let mut store = state.store();
        let dir = store.data_dir().datasets_dir();
        std::fs::create_dir_all(&dir).map_err(ServiceError::internal)?;
        let upload = dir.join(format!(".upload-{}.toml", std::process::id()));
        std::fs::write(&upload, &body.manifest).map_err(ServiceError::internal)?;
        let outcome = crate::registry::register(&mut store, &upload, None, caller.name());
        let _ = std::fs::remove_file(&upload);
        outcome
    };
    match outcome {
        Ok(registration) => {
            let d = &registration.dataset;
            state.reload_engine()?;
            audit_action(
                &state,
                &caller,
                "POST /v1/datasets",
                format!("register {} v{}", d.manifest.name, d.version),
                vec![d.manifest.name.clone()],
                "ok",
            )
            .await?;
            let status = if registration.changed {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(json!({"dataset": d.manifest.name, "version": d.version, "rows": d.rows, "changed": registration.changed}))).into_response())
        }
        Err(e) => {
            audit_action(
                &state,
                &caller,
                "POST /v1/datasets",
                "register".into(),
                vec![],
                "refused:bad_request",
            )
            .await?;
            Err(e.into())
        }
    }
}

/// `GET /v1/policy`: the active policy.
pub async fn policy(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    let store = state.store();
    let active = store
        .active_policy()?
        .ok_or_else(|| ServiceError::not_found("no policy is loaded"))?;
    let text = store.active_policy_text()?.unwrap_or_default();
    Ok(Json(json!({"version": active.version, "label": active.label(), "name": active.policy.name, "text": text})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The policy file, as TOML text.
    text: String,
}

/// `PUT /v1/policy`: checks a policy like `veil policy check` and makes it
/// the active version.
pub async fn update_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<PolicyBody>,
) -> Result<Response, ServiceError> {
    let loaded = state.store().load_policy(&body.text, caller.name());
    match loaded {
        Ok(active) => {
            state.reload_engine()?;
            audit_action(
                &state,
                &caller,
                "PUT /v1/policy",
                format!("load policy {}", active.label()),
                vec![],
                "ok",
            )
            .await?;
            Ok((
                StatusCode::CREATED,
                Json(json!({"version": active.version, "label": active.label()})),
            )
                .into_response())
        }
        Err(e) => {
            audit_action(
                &state,
                &caller,
                "PUT /v1/policy",
                "load policy".into(),
                vec![],
                "refused:bad_request",
            )
            .await?;
            Err(e.into())
        }
    }
}

/// `GET /v1/policy/versions`: the history of policies.
pub async fn policy_versions(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    let versions: Vec<Value> = state
        .store()
        .policy_versions()?
        .into_iter()
        .map(|v| json!({"version": v.version, "name": v.name, "digest": v.digest, "loaded_at": v.loaded_at, "loaded_by": v.loaded_by}))
        .collect();
    Ok(Json(json!({"versions": versions})).into_response())
}

fn principal_json(r: &crate::store::PrincipalRecord) -> Value {
    let p = &r.principal;
    json!({
        "name": p.name,
        "role": p.role.name(),
        "org": p.org,
        "region": p.region.as_ref().map(|s| s.code()),
        "status": if r.status == PrincipalStatus::Active { "active" } else { "suspended" },
        "grants": p.grants.iter().map(|g| json!({"id": g.id, "dataset": g.dataset, "fields": g.fields, "purpose": g.purpose, "expires_at": g.expires_at.to_rfc3339()})).collect::<Vec<_>>(),
        "created_at": r.created_at.to_rfc3339(),
    })
}

/// `GET /v1/principals`.
pub async fn principals(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    let list: Vec<Value> = state
        .store()
        .principals()?
        .iter()
        .map(principal_json)
        .collect();
    Ok(Json(json!({"principals": list})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipalBody {
    name: String,
    role: String,
    org: Option<String>,
    region: Option<String>,
    subject: Option<String>,
}

/// `POST /v1/principals`: creates a principal; its key is in this answer only.
pub async fn add_principal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewPrincipalBody>,
) -> Result<Response, ServiceError> {
    let role: Role = body.role.parse().map_err(ServiceError::bad_request)?;
    let created = state.store().add_principal(&NewPrincipal {
        name: &body.name,
        role,
        org: body.org.as_deref(),
        region: body.region.as_deref(),
        subject: body.subject.as_deref(),
    });
    let outcome = if created.is_ok() { "ok" } else { "refused" };
    audit_action(
        &state,
        &caller,
        "POST /v1/principals",
        format!("add principal {} ({})", body.name, body.role),
        vec![],
        outcome,
    )
    .await?;
    let (record, key) = created?;
    let mut out = principal_json(&record);
    out["api_key"] = json!(key.expose());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `POST /v1/principals/{name}/keys`: one more key.
pub async fn issue_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ServiceError> {
    let key = state.store().issue_key(&name)?;
    audit_action(
        &state,
        &caller,
        "POST /v1/principals/{name}/keys",
        format!("issue key for {name}"),
        vec![],
        "ok",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "api_key": key.expose()})),
    )
        .into_response())
}

/// `DELETE /v1/principals/{name}/keys`: revokes every key at once (Art. 45).
pub async fn revoke_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ServiceError> {
    let n = state.store().revoke_keys(&name)?;
    audit_action(
        &state,
        &caller,
        "DELETE /v1/principals/{name}/keys",
        format!("revoke keys of {name}"),
        vec![],
        "ok",
    )
    .await?;
    Ok(Json(json!({"name": name, "revoked": n})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    status: String,
}

/// `PUT /v1/principals/{name}/status`: `active` or `suspended` (Art. 47-48).
pub async fn set_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StatusBody>,
) -> Result<Response, ServiceError> {
    let status = match body.status.as_str() {
        "active" => PrincipalStatus::Active,
        "suspended" => PrincipalStatus::Suspended,
        _ => {
            return Err(ServiceError::bad_request(
                "`status` is `active` or `suspended`",
            ));
        }
    };
    state.store().set_status(&name, status)?;
    audit_action(
        &state,
        &caller,
        "PUT /v1/principals/{name}/status",
        format!("{name} -> {}", body.status),
        vec![],
        "ok",
    )
    .await?;
    Ok(Json(json!({"name": name, "status": body.status})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    principal: Option<String>,
    dataset: Option<String>,
    since: Option<String>,
    outcome: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/audit`: searches the log. An approver of a providing institution
/// sees how its own data was used (Art. 30); the data authority sees all.
pub async fn audit_search(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ServiceError> {
    let Query(q) = query?;
    let engine = state.engine();
    let org = caller.0.principal.org.clone().unwrap_or_default();
    let authority = engine
        .datasets()
        .any(|d| d.manifest.institutions.approving == org);
    let provided: Vec<String> = engine
        .datasets()
        .filter(|d| d.manifest.institutions.providing == org)
        .map(|d| d.manifest.name.clone())
        .collect();
    let filter = AuditFilter {
        principal: q.principal.as_deref(),
        dataset: q.dataset.as_deref(),
        since: q.since.as_deref(),
        outcome: q.outcome.as_deref(),
        limit: q.limit.unwrap_or(100),
    };
    let records = state.store().search_audit(&filter)?;
    let visible: Vec<Value> = records
        .into_iter()
        .filter(|r| authority || r.entry.datasets.iter().any(|d| provided.contains(d)))
        .map(|r| {
            let e = r.entry;
            json!({
                "seq": r.seq, "time": r.time, "principal": e.principal, "role": e.role, "purpose": e.purpose,
                "endpoint": e.endpoint, "request": e.request, "datasets": e.datasets, "fields": e.fields,
                "rows": e.rows, "privacy": serde_json::from_str::<Value>(&e.privacy).unwrap_or(Value::Null), "outcome": e.outcome,
            })
        })
        .collect();
    Ok(Json(json!({"entries": visible, "scope": if authority { "all" } else { "datasets your institution provides" }})).into_response())
}

/// `GET /v1/audit/verify`: whether the chain is intact.
pub async fn audit_verify(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Response, ServiceError> {
    let store = state.store();
    let public = store
        .data_dir()
        .public_key()
        .map_err(ServiceError::internal)?;
    let report = store.verify_audit(&public)?;
    let body = match report {
        ChainReport::Intact {
            entries,
            checkpoints,
        } => json!({"intact": true, "entries": entries, "checkpoints": checkpoints}),
        ChainReport::Broken { seq, reason } => {
            json!({"intact": false, "first_bad_entry": seq, "reason": reason})
        }
    };
    Ok(Json(body).into_response())
}
