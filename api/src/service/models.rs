//! In-domain models over the service (Art. 32, 38, 39), the same for the
//! HTTP API and the CLI: the training request as JSON, the checks only the
//! store can make (role, development qualification), the budget charge
//! before the release, the stored model with its lineage, and scoring.
//!
//! Each operation returns its answer and the audit entry that records it,
//! refusals included; the caller writes the entry (the HTTP server through
//! its audit writer, the CLI directly) before the answer leaves.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use veil_engine::Engine;
use veil_engine::dp::sample::SecureEntropy;
use veil_engine::model::{
    Column, Model, ModelSpec, Params, PerUnit, PreparedModel, TrainRequest, Trained,
};
use veil_policies::model::Template;
use veil_policies::{Principal, Role};

use crate::service::ServiceError;
use crate::store::{AuditEntry, ModelRecord, Store};
use crate::verification::SubjectDigest;
pub use crate::wire::models::{ColumnBody, ParamsBody, ScoreBody, TrainBody};
use crate::wire::{self, ErrorCode};

/// What models work with: the store (taken for short moments) and the
/// engine.
#[derive(Clone, Copy)]
struct Inside<'a> {
    pub store: &'a Mutex<Store>,
    pub engine: &'a Engine,
    /// The unit indexes that let scoring read only the subjects' rows.
    pub indexes: &'a crate::indexes::UnitIndexes,
}

/// A purpose the caller named; a blank one names none.
fn named(purpose: &Option<String>) -> Option<&str> {
    purpose.as_deref().filter(|p| !p.trim().is_empty())
}

impl ColumnBody {
    fn column(&self) -> Result<Column, ServiceError> {
        match self {
            ColumnBody::Short(text) => {
                let (dataset, field) = text.split_once('.').ok_or_else(|| {
                    ServiceError::bad_request(
                        "a column is `dataset.field`, or {\"dataset\", \"field\", \"per_unit\"}",
                    )
                })?;
                Ok(Column::new(dataset, field))
            }
            ColumnBody::Full {
                dataset,
                field,
                per_unit,
                clamp,
            } => {
                let per_unit = match per_unit.as_deref() {
                    None => PerUnit::Mean,
                    Some(p) => PerUnit::parse(p).ok_or_else(|| {
                        ServiceError::bad_request("`per_unit` is mean, min or max")
                    })?,
                };
                Ok(Column {
                    dataset: dataset.clone(),
                    field: field.clone(),
                    per_unit,
                    clamp: clamp.map(|[l, u]| (l, u)),
                })
            }
        }
    }
}

impl TrainBody {
    /// The engine's spec; the engine checks the rest.
    pub fn spec(&self) -> Result<ModelSpec, ServiceError> {
        let template: Template = self.template.parse().map_err(ServiceError::bad_request)?;
        let defaults = Params::for_template(template);
        let p = &self.params;
        Ok(ModelSpec {
            template,
            features: self
                .features
                .iter()
                .map(ColumnBody::column)
                .collect::<Result<_, _>>()?,
            target: self.target.as_ref().map(ColumnBody::column).transpose()?,
            above: self.above,
            epsilon: self.epsilon,
            params: Params {
                iterations: p.iterations.unwrap_or(defaults.iterations),
                learning_rate: p.learning_rate.unwrap_or(defaults.learning_rate),
                l2: p.l2.unwrap_or(defaults.l2),
                bins: p.bins.unwrap_or(defaults.bins),
                quantiles: p.quantiles.clone().unwrap_or(defaults.quantiles),
            },
        })
    }

    fn purpose(&self) -> Option<&str> {
        named(&self.purpose)
    }
}

/// The spec as it is stored and audited, defaults filled in, with the
/// parameters its template reads.
fn spec_json(spec: &ModelSpec, purpose: Option<&str>) -> Value {
    let p = &spec.params;
    let params = match spec.template {
        Template::LinearRegression => json!({}),
        Template::LogisticRegression => {
            json!({"iterations": p.iterations, "learning_rate": p.learning_rate, "l2": p.l2})
        }
        Template::Histogram => json!({"bins": p.bins}),
        Template::Quantiles => json!({"bins": p.bins, "quantiles": p.quantiles}),
    };
    json!({
        "template": spec.template.name(),
        "features": spec.features,
        "target": spec.target,
        "above": spec.above,
        "epsilon": spec.epsilon,
        "purpose": purpose,
        "params": params,
    })
}

fn require_modeler(principal: &Principal) -> Result<(), ServiceError> {
    if principal.role == Role::Modeler {
        return Ok(());
    }
    Err(ServiceError::new(
        ErrorCode::Forbidden,
        format!(
            "models are trained and scored by modelers; you are {}",
            principal.role.with_article()
        ),
    ))
}

fn require_qualified(store: &Store, principal: &Principal) -> Result<(), ServiceError> {
    if store
        .qualified(&principal.name)
        .map_err(ServiceError::internal)?
    {
        return Ok(());
    }
    Err(ServiceError::new(
        ErrorCode::Forbidden,
        "models need a live development qualification (Art. 39): open a `qualification` request with the data authority",
    ))
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn entry(principal: &Principal, endpoint: &str, purpose: Option<&str>) -> AuditEntry {
    AuditEntry {
        principal: principal.name.clone(),
        role: principal.role.name().to_owned(),
        purpose: purpose.unwrap_or_default().to_owned(),
        endpoint: endpoint.to_owned(),
        privacy: "{}".into(),
        ..AuditEntry::default()
    }
}

fn settle(entry: &mut AuditEntry, result: &Result<Value, ServiceError>, done: &str) {
    entry.outcome = match result {
        Ok(_) => done.to_owned(),
        Err(e) => e.outcome(),
    };
}

/// The privacy a training spent and how it was noised.
fn privacy_json(left: &[veil_engine::BudgetLeft], trained: &Trained) -> Value {
    json!({
        "mode": "dp",
        "mechanism": "discrete Gaussian, exact integer sampling (Canonne, Kamath, Steinke 2020)",
        "epsilon_spent": trained.epsilon,
        "delta_spent": trained.delta,
        "rho_spent": trained.rho,
        "budgets": left.iter().map(wire::budget_left).collect::<Vec<_>>(),
        "noise": trained.noise,
        "accounting": "zCDP: the release's statistics share ρ and compose by adding; (ε, δ) = (ρ + 2√(ρ ln 1/δ), δ) (Bun and Steinke 2016, Prop. 1.3); each unit adds at most one row to the joined frame",
    })
}

/// A stored model as the API shows it.
pub fn model_json(record: &ModelRecord) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "id": record.id,
        "template": record.template,
        "created_at": record.created_at,
        "spec": parse(&record.spec),
        "model": parse(&record.model),
        "privacy": parse(&record.privacy),
        "provenance": parse(&record.lineage),
        "policy_version": record.policy_version,
    })
}

/// Trains a model for a qualified modeler: checked, charged, released,
/// stored. Returns the answer and its audit entry.
fn train(
    Inside { store, engine, .. }: Inside<'_>,
    principal: &Principal,
    body: &TrainBody,
    endpoint: &str,
    now: DateTime<Utc>,
) -> (Result<Value, ServiceError>, AuditEntry) {
    let purpose = body.purpose();
    let mut audit = entry(principal, endpoint, purpose);
    audit.request = format!("train {}", body.template);
    let result = (|| {
        require_modeler(principal)?;
        require_qualified(&lock(store), principal)?;
        let spec = body.spec()?;
        let spec_text = spec_json(&spec, purpose).to_string();
        audit.request = spec_text.clone();
        let prepared: PreparedModel = engine.prepare_model(&TrainRequest {
            principal,
            purpose,
            spec: &spec,
            now,
        })?;
        audit.datasets = prepared.provenance.datasets.clone();
        audit.fields = prepared.fields.clone();
        // Paid before it exists: the noise is drawn after the charge.
        let charged = lock(store).charge(&principal.name, &prepared.costs, &spec_text)?;
        let ledger = charged.ids;
        let lineage = wire::provenance(&prepared.provenance);
        // A fit that fails (it should not: the spec's ranges are checked)
        // released no model, but its failure may depend on the data: that
        // is a bit of an answer, so the charge stands, as for a DP query.
        let fitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prepared.fit(&mut SecureEntropy::new())
        }));
        let Ok(trained) = fitted else {
            tracing::error!("a model fit failed after the charge; the charge stands");
            return Err(ServiceError::internal("the fit failed"));
        };
        let privacy = privacy_json(&charged.left, &trained);
        audit.privacy = privacy.to_string();
        let record = ModelRecord {
            id: String::new(),
            owner: principal.name.clone(),
            template: spec.template.name().to_owned(),
            spec: spec_text,
            model: serde_json::to_string(&trained.model).map_err(ServiceError::internal)?,
            privacy: privacy.to_string(),
            lineage: lineage.to_string(),
            policy_version: engine.policy_version().to_owned(),
            created_at: String::new(),
        };
        let mut store = lock(store);
        match store.insert_model(&record, &ledger) {
            Ok(stored) => {
                audit.request = format!("model {}: {}", stored.id, audit.request);
                Ok(model_json(&stored))
            }
            Err(e) => {
                // Nothing left the service: give the budget back.
                store.refund(&ledger).map_err(ServiceError::internal)?;
                Err(ServiceError::internal(e))
            }
        }
    })();
    settle(&mut audit, &result, "trained");
    (result, audit)
}

/// The caller's models, newest first.
fn list(store: &Store, principal: &Principal) -> Result<Value, ServiceError> {
    let models = store
        .models_of(&principal.name)
        .map_err(ServiceError::internal)?;
    Ok(json!({"models": models.iter().map(model_json).collect::<Vec<_>>()}))
}

/// One of the caller's models; another principal's model is not found.
fn find(store: &Store, principal: &Principal, id: &str) -> Result<ModelRecord, ServiceError> {
    store
        .model_of(&principal.name, id)
        .map_err(ServiceError::internal)?
        .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "you have no model with that id"))
}

/// Scores named subjects (with a grant) or supplied rows with one of the
/// caller's models, inside. Subjects are audited as keyed digests only.
fn score(
    Inside {
        store,
        engine,
        indexes,
    }: Inside<'_>,
    principal: &Principal,
    id: &str,
    body: &ScoreBody,
    digest: &SubjectDigest,
    endpoint: &str,
    now: DateTime<Utc>,
) -> (Result<Value, ServiceError>, AuditEntry) {
    let purpose = named(&body.purpose);
    let mut audit = entry(principal, endpoint, purpose);
    audit.request = format!("score {id}");
    let result = (|| {
        require_modeler(principal)?;
        let record = find(&lock(store), principal, id)?;
        // A revoked qualification stops the use of models already trained.
        require_qualified(&lock(store), principal)?;
        let model: Model = serde_json::from_str(&record.model).map_err(ServiceError::internal)?;
        audit.datasets = model.datasets();
        audit.fields = model.features.iter().map(|f| f.column.label()).collect();
        let (scores, provenance, supplied) = match (&body.subjects, &body.rows) {
            (Some(subjects), None) => {
                let canonical = canonical_subjects(engine, &model, subjects)?;
                let digests: Vec<String> = canonical
                    .iter()
                    .map(|s| format!("{:032x}", digest.digest(s)))
                    .collect();
                audit.request = json!({"model": id, "subjects": digests}).to_string();
                let finder = indexes
                    .finder(&lock(store))
                    .map_err(ServiceError::internal)?;
                let (scores, provenance) = engine.score_subjects(
                    &model,
                    principal,
                    purpose,
                    &canonical,
                    Some(&finder),
                    now,
                )?;
                (scores, wire::provenance(&provenance), false)
            }
            (None, Some(rows)) => {
                audit.request = json!({"model": id, "rows": rows.len()}).to_string();
                let scores = model.score_rows(rows)?;
                let scores = scores.into_iter().map(Some).collect();
                let lineage = serde_json::from_str(&record.lineage).unwrap_or(Value::Null);
                (scores, lineage, true)
            }
            _ => {
                return Err(ServiceError::bad_request(
                    "send either `subjects` or `rows`",
                ));
            }
        };
        audit.rows = Some(scores.len() as u64);
        Ok(json!({
            "model": id,
            "scores": scores,
            "score": match model.template {
                Template::LogisticRegression => "probability that the target is above the model's threshold",
                _ => "predicted target",
            },
            "features": audit.fields,
            "rows_supplied": supplied,
            "provenance": provenance,
            "policy_version": engine.policy_version(),
            "model_policy_version": record.policy_version,
        }))
    })();
    settle(&mut audit, &result, "scored");
    (result, audit)
}

/// Subjects in canonical form, each checked against the identifier kind of
/// the model's privacy unit. A bad one is named by its place, not its text.
fn canonical_subjects(
    engine: &Engine,
    model: &Model,
    subjects: &[String],
) -> Result<Vec<String>, ServiceError> {
    if subjects.is_empty() || subjects.len() > veil_engine::model::MAX_SCORES {
        return Err(ServiceError::bad_request(format!(
            "`subjects` lists 1 to {} identifiers",
            veil_engine::model::MAX_SCORES
        )));
    }
    let kind = engine.unit_identifier(model);
    subjects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let canonical = veil_policies::verification::canonical_identifier(s);
            if canonical.is_empty() {
                return Err(ServiceError::bad_request(format!(
                    "subject #{} is empty",
                    i + 1
                )));
            }
            if let Some(kind) = kind {
                veil_policies::verification::check_identifier(kind, &canonical)
                    .map_err(|e| ServiceError::bad_request(format!("subject #{}: {e}", i + 1)))?;
            }
            Ok(canonical)
        })
        .collect()
}

impl super::Service {
    /// Trains a model for a qualified modeler. Blocking: run it off the
    /// async workers.
    pub fn train(
        &self,
        principal: &Principal,
        body: &TrainBody,
        endpoint: &str,
    ) -> super::Audited<Value> {
        let engine = self.engine();
        let (result, entry) = train(self.inside(&engine), principal, body, endpoint, Utc::now());
        super::Audited::new(entry, result)
    }

    /// Scores with one of the caller's models. Blocking: run it off the
    /// async workers.
    pub fn score(
        &self,
        principal: &Principal,
        id: &str,
        body: &ScoreBody,
        endpoint: &str,
    ) -> super::Audited<Value> {
        let engine = self.engine();
        let (result, entry) = score(
            self.inside(&engine),
            principal,
            id,
            body,
            &self.digest,
            endpoint,
            Utc::now(),
        );
        super::Audited::new(entry, result)
    }

    /// The caller's models, newest first.
    pub fn models(&self, principal: &Principal) -> Result<Value, ServiceError> {
        list(&*self.reader()?, principal)
    }

    /// One of the caller's models.
    pub fn model(&self, principal: &Principal, id: &str) -> Result<Value, ServiceError> {
        Ok(model_json(&find(&*self.reader()?, principal, id)?))
    }

    fn inside<'a>(&'a self, engine: &'a Engine) -> Inside<'a> {
        Inside {
            store: self.store_lock(),
            engine,
            indexes: &self.unit_indexes,
        }
    }
}
