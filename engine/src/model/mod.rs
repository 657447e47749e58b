//! In-domain models (Art. 32, 38, 39): a qualified modeler trains an
//! approved template on datasets joined on their privacy unit, and gets
//! parameters and metrics released under differential privacy; the rows
//! stay inside. A trained linear or logistic model also scores, inside, the
//! named subjects the caller holds grants for, or rows the caller supplies.
//!
//! The path of one training: [`Engine::prepare_model`] checks the spec
//! against the catalog, the policy and the caller (fail closed: anything it
//! does not accept is refused) and reads the per-unit training frame; the
//! service charges the budget; [`PreparedModel::fit`] then draws the noise
//! and releases. Nothing about the data leaves before the charge.
//!
//! Privacy unit and neighbouring datasets: each unit contributes at most one
//! row to the frame (its rows in each dataset are folded into one value per
//! feature, then datasets are inner-joined on the unit), so adding or
//! removing one unit adds or removes at most one row. Every template's
//! sensitivity below is for that change. Values are clamped to the
//! catalog's declared bounds before anything is computed.

mod fit;
mod frame;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use veil_policies::model::{Template, development_refusal};
use veil_policies::{FieldType, Level, Principal, decide};

use crate::dp::accounting::rho_for;
use crate::engine::{DpBudget, DpCost, Engine, Provenance};

pub use fit::Noise;

/// Finds the rows of named subjects (canonical identifiers) in a dataset
/// without reading it whole: their row positions in file order, or `None`
/// when the dataset has no index of its privacy unit (it is then scanned).
/// The rows found are still checked against the subjects as they are read.
pub type SubjectRows<'a> = dyn Fn(&crate::Dataset, &[String]) -> Option<Vec<u32>> + 'a;

/// The most features one model takes.
pub const MAX_FEATURES: usize = 32;
/// The most subjects or rows one scoring request names.
pub const MAX_SCORES: usize = 10_000;

/// How a unit's rows in one dataset become one value of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerUnit {
    Mean,
    Min,
    Max,
}

impl PerUnit {
    pub fn parse(text: &str) -> Option<PerUnit> {
        match text {
            "mean" => Some(PerUnit::Mean),
            "min" => Some(PerUnit::Min),
            "max" => Some(PerUnit::Max),
            _ => None,
        }
    }
}

/// One column of the training frame: a field of a dataset, folded per unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub dataset: String,
    pub field: String,
    pub per_unit: PerUnit,
    /// Narrower clamping bounds, inside the declared ones, that the modeler
    /// chooses (public): values beyond are clamped, and the release's
    /// noise is relative to this range, not the catalog's wider one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp: Option<(f64, f64)>,
}

impl Column {
    pub fn new(dataset: &str, field: &str) -> Column {
        Column {
            dataset: dataset.to_owned(),
            field: field.to_owned(),
            per_unit: PerUnit::Mean,
            clamp: None,
        }
    }

    pub fn label(&self) -> String {
        format!("{}.{}", self.dataset, self.field)
    }
}

/// Training hyper-parameters; each template reads the ones it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Logistic regression: Newton steps (each two noisy releases).
    pub iterations: u32,
    /// Logistic regression: the share of each Newton step taken (1 is a
    /// full step; smaller damps it).
    pub learning_rate: f64,
    /// Logistic regression: L2 penalty.
    pub l2: f64,
    /// Histogram bins; quantiles are read from this many bins.
    pub bins: u32,
    /// Quantiles: the probabilities asked for.
    pub quantiles: Vec<f64>,
}

impl Params {
    /// The defaults for `template`.
    pub fn for_template(template: Template) -> Params {
        Params {
            iterations: 8,
            learning_rate: 1.0,
            l2: 0.0,
            bins: if template == Template::Quantiles {
                128
            } else {
                10
            },
            quantiles: vec![0.25, 0.5, 0.75],
        }
    }
}

/// What to train.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub template: Template,
    /// Regressions: the features; histogram and quantiles: the one field.
    pub features: Vec<Column>,
    /// Regressions: what is predicted.
    pub target: Option<Column>,
    /// Logistic regression: the label is 1 when the target is above this.
    pub above: Option<f64>,
    /// The ε the release satisfies, at the datasets' δ.
    pub epsilon: f64,
    pub params: Params,
}

/// Who trains, for what purpose, and when.
#[derive(Debug, Clone, Copy)]
pub struct TrainRequest<'a> {
    pub principal: &'a Principal,
    pub purpose: Option<&'a str>,
    pub spec: &'a ModelSpec,
    pub now: DateTime<Utc>,
}

/// Why a model was not trained or did not score.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The spec is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A dataset it names is not in the catalog.
    #[error("{0}")]
    NotFound(String),
    /// The policy, the catalog or the regulation refuses it.
    #[error("{0}")]
    Denied(String),
    /// Reading the data failed; `detail` is for the log only.
    #[error("the model failed while reading its data; nothing was released")]
    Internal { detail: String },
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn denied(message: impl Into<String>) -> ModelError {
    ModelError::Denied(message.into())
}

/// A feature as the model keeps it: the column and its declared bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    #[serde(flatten)]
    pub column: Column,
    pub lower: f64,
    pub upper: f64,
}

impl Feature {
    pub fn clamp(&self, v: f64) -> f64 {
        v.clamp(self.lower, self.upper)
    }

    /// The value mapped onto [-1, 1].
    fn normalise(&self, v: f64) -> f64 {
        let half = (self.upper - self.lower) / 2.0;
        if half > 0.0 {
            ((self.clamp(v) - self.lower) / half - 1.0).clamp(-1.0, 1.0)
        } else {
            0.0
        }
    }
}

/// What a trained model released: the parameters and metrics, all computed
/// from noisy statistics only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Released {
    LinearRegression {
        intercept: f64,
        coefficients: Vec<f64>,
        /// Noisy count of units in the joined frame.
        units: f64,
        /// R² and RMSE in-sample, from the noisy statistics; `None` when
        /// the noise swamps them (the noisy residual sum is not positive).
        r2: Option<f64>,
        rmse: Option<f64>,
        /// The ridge added to the noisy Gram matrix so it can be solved.
        ridge: f64,
    },
    LogisticRegression {
        intercept: f64,
        coefficients: Vec<f64>,
        above: f64,
        units: f64,
        /// Share of units classified right at probability 0.5 (noisy count
        /// over noisy count).
        accuracy: f64,
        iterations: u32,
    },
    Histogram {
        edges: Vec<f64>,
        counts: Vec<i64>,
    },
    Quantiles {
        quantiles: Vec<(f64, f64)>,
        /// The width of the bins the quantiles were read from.
        resolution: f64,
        /// The noisy count of units.
        units: i64,
        /// Standard deviation of the noise on a cumulative count at the
        /// middle of the range, in units: how far in rank a quantile may be.
        rank_error: f64,
    },
}

/// A trained model: everything needed to describe and to score it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    #[serde(with = "template_name")]
    pub template: Template,
    pub features: Vec<Feature>,
    pub target: Option<Feature>,
    pub released: Released,
}

mod template_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use veil_policies::model::Template;

    pub fn serialize<S: Serializer>(t: &Template, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Model {
    /// The score of one row of feature values in the features' order: the
    /// prediction (linear) or the probability of the label (logistic).
    /// Values are clamped to the bounds the model was trained within.
    pub fn score(&self, values: &[f64]) -> Option<f64> {
        let (intercept, coefficients, logistic) = match &self.released {
            Released::LinearRegression {
                intercept,
                coefficients,
                ..
            } => (*intercept, coefficients, false),
            Released::LogisticRegression {
                intercept,
                coefficients,
                ..
            } => (*intercept, coefficients, true),
            _ => return None,
        };
        if values.len() != self.features.len() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let linear = intercept
            + self
                .features
                .iter()
                .zip(coefficients)
                .zip(values)
                .map(|((f, c), v)| c * f.clamp(*v))
                .sum::<f64>();
        Some(if logistic {
            fit::sigmoid(linear)
        } else {
            linear
        })
    }

    /// Whether this model scores, and `n` subjects or rows are few enough.
    fn check_scoring(&self, n: usize) -> Result<(), ModelError> {
        if !self.template.scores() {
            return Err(invalid(format!(
                "a `{}` model releases a summary and scores nothing",
                self.template
            )));
        }
        if n > MAX_SCORES {
            return Err(invalid(format!(
                "at most {MAX_SCORES} subjects or rows per request"
            )));
        }
        Ok(())
    }

    /// Scores rows of feature values the caller supplies, each in the
    /// features' order; only the released parameters are used.
    pub fn score_rows(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        self.check_scoring(rows.len())?;
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                self.score(row).ok_or_else(|| {
                    invalid(format!(
                        "row #{} must hold {} finite numbers, one per feature in order",
                        i + 1,
                        self.features.len()
                    ))
                })
            })
            .collect()
    }

    /// The datasets the model reads, in first-use order.
    pub fn datasets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.features.iter().chain(&self.target) {
            if !out.contains(&f.column.dataset) {
                out.push(f.column.dataset.clone());
            }
        }
        out
    }
}

/// A training that passed every check, with its frame read; nothing is
/// released until [`PreparedModel::fit`].
pub struct PreparedModel {
    spec: ModelSpec,
    features: Vec<Feature>,
    target: Option<Feature>,
    frame: frame::Frame,
    /// What the training costs each dataset's budget.
    pub costs: Vec<DpCost>,
    pub provenance: Provenance,
    /// The fields read, as `dataset.field`.
    pub fields: Vec<String>,
    rho: f64,
    /// ε and δ of the release (δ is half the strictest budget's δ).
    pub epsilon: f64,
    pub delta: f64,
}

impl std::fmt::Debug for PreparedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedModel")
            .field("spec", &self.spec)
            .field("costs", &self.costs)
            .finish()
    }
}

/// A released model and how its release was noised.
#[derive(Debug, Clone)]
pub struct Trained {
    pub model: Model,
    pub noise: Vec<Noise>,
    pub rho: f64,
    pub epsilon: f64,
    pub delta: f64,
}

impl PreparedModel {
    /// Draws the noise and releases the model. Call only after the budget
    /// was charged.
    pub fn fit(self, entropy: &mut dyn crate::dp::sample::Entropy) -> Trained {
        let (released, noise) = match self.spec.template {
            Template::LinearRegression => fit::linear(
                &self.frame,
                &self.features,
                self.target.as_ref().expect("checked"),
                self.rho,
                entropy,
            ),
            Template::LogisticRegression => fit::logistic(
                &self.frame,
                &self.features,
                self.spec.above.expect("checked"),
                &self.spec.params,
                self.rho,
                entropy,
            ),
            Template::Histogram => fit::histogram(
                &self.frame,
                &self.features[0],
                self.spec.params.bins,
                self.rho,
                entropy,
            ),
            Template::Quantiles => fit::quantiles(
                &self.frame,
                &self.features[0],
                &self.spec.params,
                self.rho,
                entropy,
            ),
        };
        Trained {
            model: Model {
                template: self.spec.template,
                features: self.features,
                target: self.target,
                released,
            },
            noise,
            rho: self.rho,
            epsilon: self.epsilon,
            delta: self.delta,
        }
    }

    /// Rows in the joined frame. Exact, so for tests and benchmarks only:
    /// the service never releases it.
    pub fn exact_rows(&self) -> usize {
        self.frame.rows()
    }
}

/// Checks a spec's shape, before any dataset is looked at.
fn check_shape(spec: &ModelSpec) -> Result<(), ModelError> {
    let p = &spec.params;
    if !crate::dp::epsilon_allowed(spec.epsilon) {
        return Err(invalid(crate::dp::EPSILON_RANGE_TEXT));
    }
    match spec.template {
        Template::LinearRegression | Template::LogisticRegression => {
            if spec.features.is_empty() || spec.features.len() > MAX_FEATURES {
                return Err(invalid(format!(
                    "a regression takes 1 to {MAX_FEATURES} `features`"
                )));
            }
            if spec.target.is_none() {
                return Err(invalid("a regression needs a `target`"));
            }
        }
        Template::Histogram | Template::Quantiles => {
            if spec.features.len() != 1 || spec.target.is_some() {
                return Err(invalid(format!(
                    "`{}` takes exactly one field in `features` and no `target`",
                    spec.template
                )));
            }
        }
    }
    if spec.template == Template::LogisticRegression {
        if !spec.above.is_some_and(f64::is_finite) {
            return Err(invalid(
                "a logistic regression needs `above`: the label is 1 when the target is above it",
            ));
        }
    } else if spec.above.is_some() {
        return Err(invalid("`above` belongs to logistic regression only"));
    }
    // The optimiser's settings are checked whatever the template, so that
    // a value out of range is never silently ignored. Newton converges in
    // a handful of steps; the cap bounds the work one request can ask for
    // (each step is a pass over the frame).
    if !(1..=25).contains(&p.iterations) {
        return Err(invalid(
            "`iterations` (Newton steps) must be between 1 and 25",
        ));
    }
    if !(p.learning_rate.is_finite() && p.learning_rate > 0.0 && p.learning_rate <= 1.0) {
        return Err(invalid(
            "`learning_rate` (the share of a Newton step) must be above 0 and at most 1",
        ));
    }
    if !(p.l2.is_finite() && (0.0..=10.0).contains(&p.l2)) {
        return Err(invalid("`l2` must be between 0 and 10"));
    }
    if !(1..=10_000).contains(&p.bins) {
        return Err(invalid("`bins` must be between 1 and 10,000"));
    }
    if spec.template == Template::Quantiles
        && (p.quantiles.is_empty()
            || p.quantiles.len() > 99
            || p.quantiles.iter().any(|q| !(*q > 0.0 && *q < 1.0)))
    {
        return Err(invalid(
            "`quantiles` lists 1 to 99 probabilities, each above 0 and below 1",
        ));
    }
    let mut seen = Vec::new();
    for c in spec.features.iter().chain(&spec.target) {
        for name in [&c.dataset, &c.field] {
            if !veil_policies::is_plain_name(name) {
                return Err(invalid(
                    "dataset and field names are lower-case letters, digits and `_`",
                ));
            }
        }
        if seen.contains(&(&c.dataset, &c.field, c.per_unit)) {
            return Err(invalid(format!("`{}` is named twice", c.label())));
        }
        seen.push((&c.dataset, &c.field, c.per_unit));
    }
    Ok(())
}

impl Engine {
    /// Checks a training request and reads its frame; see the module
    /// documentation. Refusals name datasets, fields and rules, never
    /// values.
    pub fn prepare_model(&self, request: &TrainRequest<'_>) -> Result<PreparedModel, ModelError> {
        let spec = request.spec;
        check_shape(spec)?;
        let columns: Vec<&Column> = spec.features.iter().chain(&spec.target).collect();
        let mut features = Vec::new();
        // Per dataset: its model budget for the caller.
        let mut budgets: BTreeMap<String, DpBudget> = BTreeMap::new();
        let mut datasets: Vec<String> = Vec::new();
        for column in &columns {
            let dataset = self.developable(&column.dataset, spec.template)?;
            let manifest = &dataset.manifest;
            let label = column.label();
            let field = manifest.field(&column.field).ok_or_else(|| {
                invalid(format!(
                    "`{}` has no field `{}`",
                    manifest.name, column.field
                ))
            })?;
            let (lower, upper) = self.readable_bounds(
                manifest,
                field,
                request.principal,
                request.purpose,
                request.now,
            )?;
            let (lower, upper) = match column.clamp {
                None => (lower, upper),
                Some((l, u))
                    if l.is_finite() && u.is_finite() && lower <= l && l < u && u <= upper =>
                {
                    (l, u)
                }
                Some(_) => {
                    return Err(invalid(format!(
                        "`{label}`: `clamp` is [lower, upper] with lower below upper, inside the declared bounds [{lower}, {upper}]"
                    )));
                }
            };
            if !budgets.contains_key(&manifest.name) {
                let budget = self
                    .model_budget(
                        &manifest.name,
                        request.principal,
                        request.purpose,
                        request.now,
                    )
                    .unwrap_or(DpBudget {
                        epsilon: 0.0,
                        delta: 0.0,
                        period: None,
                    });
                budgets.insert(manifest.name.clone(), budget);
            }
            if !datasets.contains(&manifest.name) {
                datasets.push(manifest.name.clone());
            }
            features.push(Feature {
                column: (*column).clone(),
                lower,
                upper,
            });
        }
        if let Some((name, _)) = budgets
            .iter()
            .find(|(_, b)| b.delta <= 0.0 || b.epsilon <= 0.0)
        {
            return Err(denied(format!(
                "`{name}` has no differential-privacy budget with δ > 0 for these fields; zCDP accounting needs one"
            )));
        }
        let all: Vec<&Feature> = features.iter().collect();
        let frame = frame::read(self, request.principal, &all, None)?;
        let target = spec
            .target
            .as_ref()
            .map(|_| features.pop().expect("pushed"));
        let delta_b = budgets
            .values()
            .map(|b| b.delta)
            .fold(f64::INFINITY, f64::min);
        let (epsilon, delta) = (spec.epsilon, delta_b / 2.0);
        let rho = rho_for(epsilon, delta);
        let costs = budgets
            .into_iter()
            .map(|(dataset, budget)| DpCost {
                dataset,
                epsilon,
                delta,
                rho,
                delta0: 0.0,
                budget,
            })
            .collect();
        Ok(PreparedModel {
            spec: spec.clone(),
            features,
            target,
            frame,
            costs,
            provenance: self.provenance(&datasets, request.now),
            fields: columns.iter().map(|c| c.label()).collect(),
            rho,
            epsilon,
            delta,
        })
    }

    /// The budget models spend on `dataset` for a caller: the
    /// strictest grade among the fields a model may read for them (bounded
    /// numeric fields they are not denied), whichever fields one model
    /// reads, so every model on the dataset is held to one budget. `None`
    /// when no field may be read.
    pub fn model_budget(
        &self,
        dataset: &str,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<DpBudget> {
        let d = self.dataset(dataset)?;
        let m = &d.manifest;
        DpBudget::strictest(
            m.fields
                .iter()
                .filter(|f| self.readable_bounds(m, f, principal, purpose, now).is_ok())
                .filter_map(|f| self.policy().grade(&f.grade))
                .map(|g| &g.budget),
        )
    }

    /// The declared bounds of `field` when a model may read it for the
    /// caller, or why not: never an identifier, never a field denied or
    /// verification-only to the caller, and only numeric fields with
    /// declared bounds, or booleans.
    fn readable_bounds(
        &self,
        manifest: &veil_policies::DatasetManifest,
        field: &veil_policies::FieldSpec,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(f64, f64), ModelError> {
        let label = format!("{}.{}", manifest.name, field.name);
        if field.identifier.is_some() || field.name == manifest.privacy_unit {
            return Err(denied(format!(
                "`{label}` identifies a subject: identifiers are not features (datasets are joined on their privacy unit)"
            )));
        }
        match decide(self.policy(), manifest, field, principal, purpose, now).level {
            Level::Deny => {
                return Err(denied(format!("`{label}` is denied to you by its grade")));
            }
            Level::Compare => {
                return Err(denied(format!(
                    "`{label}` can only be verified, not used in a model"
                )));
            }
            _ => {}
        }
        let bounds = match field.field_type {
            FieldType::Boolean => Some((0.0, 1.0)),
            t if t.is_numeric() => field.bounds,
            _ => {
                return Err(invalid(format!(
                    "`{label}` is a {} field; models take numeric fields",
                    field.field_type
                )));
            }
        };
        bounds.ok_or_else(|| {
            denied(format!(
                "`{label}` declares no bounds in the catalog; a model needs them to bound each unit's influence"
            ))
        })
    }

    /// Scores named subjects with a trained model, inside: the caller must
    /// hold a live grant for `purpose` covering every field the model reads,
    /// and see each of them plain under it.
    /// `subjects` are canonical identifiers; a subject with no rows in
    /// every dataset (or outside the caller's region) scores `None`. With
    /// `rows`, datasets with an index of their unit are read only where the
    /// subjects are.
    pub fn score_subjects(
        &self,
        model: &Model,
        principal: &Principal,
        purpose: Option<&str>,
        subjects: &[String],
        rows: Option<&SubjectRows<'_>>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Option<f64>>, Provenance), ModelError> {
        model.check_scoring(subjects.len())?;
        let mut columns = Vec::new();
        for f in &model.features {
            let dataset = self.developable(&f.column.dataset, model.template)?;
            let manifest = &dataset.manifest;
            let field = manifest.field(&f.column.field).ok_or_else(|| {
                denied(format!(
                    "`{}` no longer has the field `{}`",
                    manifest.name, f.column.field
                ))
            })?;
            let granted = principal
                .grants
                .iter()
                .any(|g| g.covers(&manifest.name, &field.name, purpose, now));
            let level = decide(self.policy(), manifest, field, principal, purpose, now).level;
            if !granted {
                return Err(denied(format!(
                    "scoring named subjects reads their records: it needs a live grant on `{}` covering `{}` for the purpose you name",
                    manifest.name, field.name
                )));
            }
            // A score is a function of the subject's own values: two scored
            // rows give a linear model's line, and the line gives back the
            // value. So a subject's score is released only to a caller who
            // may read every feature of it as it is.
            if level != Level::Plain {
                return Err(denied(format!(
                    "a named subject's score gives back its own values, and your grant shows `{}.{}` only as {}: score supplied rows instead, or ask for a grant that shows it plain",
                    manifest.name,
                    field.name,
                    level.kind().name()
                )));
            }
            columns.push(f);
        }
        let only = frame::Only { subjects, rows };
        let frame = frame::read(self, principal, &columns, Some(&only))?;
        let by_unit = frame.rows_by_unit();
        let scores = subjects
            .iter()
            .map(|s| {
                by_unit.get(&frame.key(s)).and_then(|&r| {
                    let row: Vec<f64> = (0..columns.len()).map(|c| frame.value(c, r)).collect();
                    model.score(&row)
                })
            })
            .collect();
        Ok((scores, self.provenance(&model.datasets(), now)))
    }

    /// The identifier kind of the privacy unit shared by a model's datasets,
    /// to check subjects named for scoring.
    pub fn unit_identifier(&self, model: &Model) -> Option<veil_policies::catalog::IdentifierKind> {
        let first = model.features.first()?;
        let d = self.dataset(&first.column.dataset)?;
        d.manifest.field(&d.manifest.privacy_unit)?.identifier
    }

    /// The dataset, when it is loaded, may be developed (Art. 38) and has
    /// `template` enabled by the policy.
    fn developable(
        &self,
        name: &str,
        template: Template,
    ) -> Result<std::sync::Arc<crate::Dataset>, ModelError> {
        if let Some(reason) = self.blocked().get(name) {
            return Err(denied(reason.clone()));
        }
        let dataset = self
            .dataset(name)
            .ok_or_else(|| ModelError::NotFound(format!("no dataset named `{name}`")))?;
        if let Some(reason) = development_refusal(&dataset.manifest) {
            return Err(denied(reason));
        }
        let enabled = self.policy().templates(name);
        if !enabled.contains(&template) {
            let names: Vec<&str> = enabled.iter().map(|t| t.name()).collect();
            return Err(denied(if names.is_empty() {
                format!("approvers have enabled no model template on `{name}`")
            } else {
                format!(
                    "approvers have not enabled `{template}` on `{name}`; enabled: {}",
                    names.join(", ")
                )
            }));
        }
        Ok(dataset)
    }
}
