//! The service's shared parts: an engine built from the store, and one
//! query run as a principal, the same for the CLI and the HTTP API.

use chrono::Utc;
use serde_json::Value;
use veil_engine::{Dataset, DpOptions, Engine, PreparedQuery, QueryRequest};
use veil_policies::Role;

use crate::store::{AuditEntry, PrincipalRecord, PrincipalStatus, Store, StoreError};
use crate::verify::VerifyBody;
use crate::wire::{self, ApiError, ErrorCode};

/// An engine over the store's active policy and current datasets.
pub struct Loaded {
    pub engine: Engine,
    /// Datasets that could not be opened, with the reason. They are left
    /// out: a file that changed since registration is not trusted.
    pub skipped: Vec<(String, String)>,
}

pub fn load_engine(store: &Store) -> Result<Loaded, StoreError> {
    let active = store
        .active_policy()?
        .ok_or_else(|| StoreError::NotFound("no policy is loaded".into()))?;
    let master = store.data_dir().master_key()?;
    let mut engine = Engine::new(active.policy.clone(), active.label(), master);
    let mut skipped = Vec::new();
    let access: std::collections::HashMap<String, String> =
        store.dataset_access()?.into_iter().collect();
    for d in store.datasets()? {
        if let Some(state) = access.get(&d.manifest.name) {
            engine.block(&d.manifest.name, access_reason(&d.manifest.name, state));
            continue;
        }
        let same_size = std::fs::metadata(&d.data_path).is_ok_and(|m| m.len() == d.file_size);
        if !same_size {
            skipped.push((
                d.manifest.name.clone(),
                "its data file changed or vanished since registration; register it again".into(),
            ));
            continue;
        }
        match Dataset::open(d.manifest.clone(), d.version, &d.data_path) {
            Ok(dataset) => engine.add_dataset(dataset.with_unique_units(d.unique_units)),
            Err(e) => skipped.push((d.manifest.name.clone(), e.to_string())),
        }
    }
    Ok(Loaded { engine, skipped })
}

/// Why a dataset in an access state may not be used, for refusals.
pub fn access_reason(dataset: &str, state: &str) -> String {
    match state {
        "suspended" => format!(
            "the opening of `{dataset}` is suspended while a complaint about it is handled (Art. 36)"
        ),
        "opening_withdrawn" => {
            format!("`{dataset}` was withdrawn from opening after a complaint (Art. 36)")
        }
        "sealed" => format!(
            "`{dataset}` is sealed: data collected in an emergency is not accessible (Art. 23)"
        ),
        "destroyed" => format!("`{dataset}` was destroyed (Art. 23)"),
        other => format!("`{dataset}` is {other}"),
    }
}

/// The named principal, when it exists and is not suspended.
pub fn active_principal(store: &Store, name: &str) -> Result<PrincipalRecord, ApiError> {
    let record = store
        .principal(name)
        .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no principal named `{name}`"))
        })?;
    if record.status != PrincipalStatus::Active {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("`{name}` is suspended"),
        ));
    }
    Ok(record)
}

/// Runs one verification as the named principal, like `POST /v1/verify`:
/// checked, held to the product's daily limit per subject (counted from
/// today's audit log), audited, answered.
pub fn verify_as(
    store: &mut Store,
    engine: &Engine,
    name: &str,
    body: &VerifyBody,
) -> Result<Value, ApiError> {
    use crate::verify::{self, CLI_ENDPOINT};
    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(cause = %e, "verification failed");
        ApiError::new(ErrorCode::Internal, "")
    }
    let record = active_principal(store, name)?;
    let principal = &record.principal;
    let signer = store.data_dir().signer().map_err(internal)?;
    let digest = verify::SubjectDigest::new(&store.data_dir().master_key().map_err(internal)?);
    let now = Utc::now();
    let quotas = verify::Quotas::from_audit(store, engine.policy(), now).map_err(internal)?;
    let checked = verify::check(engine, principal, body, &digest, now).and_then(|v| {
        quotas
            .admit(name, v.checked.product(), &v.digests, now)
            .map(|()| v)
    });
    let verification = match checked {
        Ok(v) => v,
        Err(e) => {
            let outcome = format!("refused:{}", e.code.as_str());
            let entry = verify::audit_entry(principal, CLI_ENDPOINT, Some(body), None, outcome);
            store.append_audit(&[entry], &signer).map_err(internal)?;
            return Err(e);
        }
    };
    let answers = verification.checked.answer();
    let entry = verify::audit_entry(
        principal,
        CLI_ENDPOINT,
        Some(body),
        Some(&verification),
        "ok".into(),
    );
    let seq = store.append_audit(&[entry], &signer).map_err(internal)?;
    let answer = verify::AnswerBody::new(
        &verification.checked,
        &answers,
        body.single,
        engine.policy_version(),
        seq.first().copied().unwrap_or_default(),
    );
    serde_json::to_value(answer).map_err(internal)
}

/// Runs one query as the named principal and returns the answer JSON; the
/// query is audited like an HTTP one (refusals included) before the answer
/// is returned.
pub async fn query_as(
    store: &mut Store,
    engine: &Engine,
    name: &str,
    sql: &str,
    purpose: Option<&str>,
    dp: Option<(DpOptions, bool)>,
) -> Result<Value, ApiError> {
    let internal = |_| ApiError::new(ErrorCode::Internal, "");
    let record = active_principal(store, name)?;
    if !matches!(record.principal.role, Role::Consumer | Role::Modeler) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "queries are for consumers and modelers; `{name}` is a {}",
                record.principal.role
            ),
        ));
    }
    let signer = store
        .data_dir()
        .signer()
        .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?;
    let mut entry = AuditEntry {
        principal: name.to_owned(),
        role: record.principal.role.name().to_owned(),
        purpose: purpose.unwrap_or_default().to_owned(),
        endpoint: "veil query".into(),
        request: sql.to_owned(),
        privacy: "{}".into(),
        ..AuditEntry::default()
    };
    let request = QueryRequest {
        principal: &record.principal,
        purpose,
        sql,
        now: Utc::now(),
        dp: dp.map(|(options, _)| options),
    };
    let dry_run = dp.is_some_and(|(_, dry)| dry);
    let mut charged = Vec::new();
    let outcome = match engine.prepare(&request) {
        Ok(mut prepared) => {
            if let Some(costs) = prepared.dp.as_ref().map(|dp| dp.costs.clone()) {
                if dry_run {
                    entry.outcome = "dry_run".into();
                    entry.datasets = prepared.provenance.datasets.clone();
                    store.append_audit(&[entry], &signer).map_err(internal)?;
                    return Ok(dry_run_json(store, name, &prepared));
                }
                match store.charge(name, &costs, sql) {
                    Ok(c) => {
                        charged = c.ids;
                        prepared.say_budget_left(c.left);
                    }
                    Err(e) => {
                        let failure = match e {
                            StoreError::BudgetExhausted(m) => {
                                ApiError::new(ErrorCode::BudgetExhausted, m)
                            }
                            _ => ApiError::new(ErrorCode::Internal, ""),
                        };
                        entry.outcome = format!("refused:{}", failure.code.as_str());
                        store.append_audit(&[entry], &signer).map_err(internal)?;
                        return Err(failure);
                    }
                }
            }
            engine.run(&prepared).await.map(|answer| (prepared, answer))
        }
        Err(e) => Err(e),
    };
    if outcome.is_err() && !charged.is_empty() {
        store.refund(&charged).map_err(internal)?;
    }
    let (prepared, answer) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            if let veil_engine::QueryError::Internal { detail } = &e {
                tracing::error!(principal = name, detail = %detail, "query failed while running");
            }
            let failure = ApiError::from(&e);
            entry.outcome = format!("refused:{}", failure.code.as_str());
            store
                .append_audit(&[entry], &signer)
                .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?;
            return Err(failure);
        }
    };
    let mut json = wire::answer(&prepared, &answer.schema, &answer.batches);
    entry.datasets = prepared.provenance.datasets.clone();
    entry.fields = prepared.fields.clone();
    entry.rows = Some(answer.batches.iter().map(|b| b.num_rows() as u64).sum());
    entry.privacy = json["privacy"].to_string();
    entry.outcome = "completed".into();
    let seq = store
        .append_audit(&[entry], &signer)
        .map_err(|_| ApiError::new(ErrorCode::Internal, ""))?;
    json["audit_seq"] = serde_json::json!(seq.first());
    Ok(json)
}

/// The price of a DP query and the error to expect, without running it or
/// spending anything.
pub fn dry_run_json(store: &Store, principal: &str, prepared: &PreparedQuery) -> Value {
    let now = Utc::now();
    let costs: Vec<Value> = prepared
        .dp
        .iter()
        .flat_map(|dp| &dp.costs)
        .map(|c| {
            let spent = store.spent(principal, &c.dataset, &c.budget, now).ok();
            let left = spent.map(|s| s.epsilon_left(&c.budget));
            serde_json::json!({
                "dataset": c.dataset,
                "rho": c.rho,
                "delta0": c.delta0,
                "budget": {
                    "epsilon": c.budget.epsilon,
                    "delta": c.budget.delta,
                    "period": c.budget.period.map(|p| p.name()),
                    "renews": c.budget.period.map(|p| crate::store::time_text(p.renews(now))),
                },
                "epsilon_left_before": left,
                "fits": spent.is_some_and(|s| crate::store::fits(s, c)),
            })
        })
        .collect();
    let privacy = wire::answer_meta(prepared)
        .get("privacy")
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::json!({"dry_run": true, "privacy": privacy, "costs": costs})
}

/// The records about a subject principal (Art. 24) as JSON, and the audit
/// entry that records the access. Only the principal's own identifier is
/// ever looked up.
pub async fn own_records(
    engine: &Engine,
    principal: &veil_policies::Principal,
    endpoint: &str,
) -> Result<(Value, AuditEntry), ApiError> {
    if principal.role != Role::Subject {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "own records are for subject principals; you are a {}",
                principal.role
            ),
        ));
    }
    let Some(subject) = principal.subject.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this principal stands for no subject",
        ));
    };
    let records = engine.records_of(subject).await.map_err(|e| {
        if let veil_engine::QueryError::Internal { detail } = &e {
            tracing::error!(detail = %detail, "own records failed");
        }
        ApiError::from(&e)
    })?;
    let now = Utc::now();
    let mut datasets = Vec::new();
    let mut total = 0u64;
    let json_records: Vec<Value> = records
        .iter()
        .map(|r| {
            datasets.push(r.dataset.clone());
            let rows: Vec<Value> = r.answer.batches.iter().flat_map(wire::rows).collect();
            total += rows.len() as u64;
            serde_json::json!({
                "dataset": r.dataset,
                "provider": r.provider,
                "version": r.version,
                "columns": wire::columns(&r.answer.schema),
                "rows": rows,
                "withheld": r.withheld,
            })
        })
        .collect();
    let entry = AuditEntry {
        principal: principal.name.clone(),
        role: principal.role.name().to_owned(),
        endpoint: endpoint.to_owned(),
        request: "own records".into(),
        datasets,
        rows: Some(total),
        privacy: serde_json::json!({"mode": "own_records"}).to_string(),
        outcome: "ok".into(),
        ..AuditEntry::default()
    };
    let json = serde_json::json!({
        "records": json_records,
        "retrieved_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "policy_version": engine.policy_version(),
    });
    Ok((json, entry))
}
