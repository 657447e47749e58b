//! The engine: a DataFusion session, the registered datasets, and the path
//! of one query: parse, plan against the caller's views, check and rewrite
//! in the policy stage, then run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::TableSource;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionConfig;
use futures::TryStreamExt;
use veil_policies::budget_period::BudgetPeriod;
use veil_policies::{Level, Policy, Principal, decide};

use crate::error::{QueryError, deny};
use crate::policy::{self, Checked};
use crate::protect::PseudonymKey;
pub use crate::provenance::Provenance;
use crate::tables::{Dataset, View, ViewColumn};

/// One question: who asks, for what purpose, what SQL, and when.
#[derive(Debug, Clone, Copy)]
pub struct QueryRequest<'a> {
    pub principal: &'a Principal,
    pub purpose: Option<&'a str>,
    pub sql: &'a str,
    pub now: DateTime<Utc>,
    /// Asks for a differentially private answer.
    pub dp: Option<DpOptions>,
}

/// What a differentially private query spends and how it bounds
/// contributions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpOptions {
    /// The ε this answer alone satisfies (at the dataset's δ).
    pub epsilon: f64,
    /// L0: groups one privacy unit may contribute to.
    pub max_groups: u64,
    /// Linf: rows one privacy unit may contribute to one group.
    pub max_rows: u64,
    /// Estimate every aggregate's clamping bounds under DP from a share of
    /// ε, declared bounds or not (those without declared bounds always are).
    pub auto_bounds: bool,
    /// Give each noisy cell a 95% interval: columns `{column}_ci95_lo` and
    /// `{column}_ci95_hi` after each aggregate the answer passes on.
    pub intervals: bool,
}

impl DpOptions {
    pub fn new(epsilon: f64) -> Self {
        DpOptions {
            epsilon,
            max_groups: 1,
            max_rows: 1,
            auto_bounds: false,
            intervals: false,
        }
    }
}

/// What a DP query costs one dataset's budget.
#[derive(Debug, Clone, PartialEq)]
pub struct DpCost {
    pub dataset: String,
    /// ε and δ spent under basic composition.
    pub epsilon: f64,
    pub delta: f64,
    /// ρ spent under zCDP, and the δ₀ outside zCDP (partition selection).
    pub rho: f64,
    pub delta0: f64,
    /// The policy's budget for this principal and dataset.
    pub budget: DpBudget,
}

/// A dataset's differential-privacy budget for one caller: the strictest of
/// the grades of the fields it protects for them (the smallest ε and δ, the
/// longest period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpBudget {
    pub epsilon: f64,
    pub delta: f64,
    /// When spending starts again from zero; `None`: never.
    pub period: Option<BudgetPeriod>,
}

impl DpBudget {
    fn of(budget: &veil_policies::policy::Budget) -> DpBudget {
        DpBudget {
            epsilon: budget.epsilon,
            delta: budget.delta,
            period: budget.period,
        }
    }

    /// The stricter of two budgets, field by field.
    fn stricter(self, other: DpBudget) -> DpBudget {
        DpBudget {
            epsilon: self.epsilon.min(other.epsilon),
            delta: self.delta.min(other.delta),
            period: BudgetPeriod::stricter(self.period, other.period),
        }
    }

    /// The strictest of `budgets`; `None` when there are none.
    pub fn strictest<'a>(
        budgets: impl IntoIterator<Item = &'a veil_policies::policy::Budget>,
    ) -> Option<DpBudget> {
        budgets
            .into_iter()
            .map(DpBudget::of)
            .reduce(DpBudget::stricter)
    }
}

/// What is left of one dataset's budget once an answer was charged, for
/// the answer to say.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLeft {
    pub dataset: String,
    pub budget: DpBudget,
    /// The ε left at the budget's δ, under the tighter accountant.
    pub epsilon_left: f64,
    /// When the budget renews; `None`: never.
    pub renews: Option<DateTime<Utc>>,
}

/// The differentially private part of a prepared query.
pub struct DpPrepared {
    pub(crate) release: crate::dp::release::DpRelease,
    /// What runs on the noisy answer (HAVING, ORDER BY, LIMIT, arithmetic).
    pub(crate) post: crate::dp::post::PostProcessing,
    pub costs: Vec<DpCost>,
    pub options: DpOptions,
    pub noise: Vec<crate::dp::release::ColumnNoise>,
    /// The noisy-count threshold of partition selection, when keys have no
    /// public domain.
    pub selection_threshold: Option<i64>,
    /// Per key without a declared domain, the caller's own plain query of
    /// the distinct values of the column it reads, when it has one: when
    /// every key has a domain, declared or read so, the answer enumerates
    /// them instead of selecting partitions.
    pub(crate) key_domains: Vec<KeyDomain>,
    pub mechanism: crate::dp::release::Mechanism,
    /// What each budget holds once this answer was charged: empty until
    /// the service charges it, then said in the answer.
    pub budget_left: Vec<BudgetLeft>,
    /// The estimation of automatic bounds, until it has run
    /// ([`Engine::resolve_bounds`]).
    pub(crate) auto: Option<AutoBounds>,
    /// Set when the estimation ran and failed: the query never runs.
    pub(crate) estimation_failed: bool,
}

/// What estimating a query's automatic bounds needs: the checked query
/// (rebuilt with the bounds once known), the bounded plan of its
/// histograms of magnitudes, and the seed of the group choice.
pub(crate) struct AutoBounds {
    checked: crate::policy::DpChecked,
    estimation: crate::dp::bound_contributions::Bounded,
    seed: u64,
}

/// Where the groups of one key of a DP answer come from.
#[derive(Debug)]
pub(crate) enum KeyDomain {
    /// Declared in the catalog.
    Declared(Vec<String>),
    /// The distinct values of a column the caller may read in the clear:
    /// `dataset.field`, and the caller's query of them.
    Column(String, Box<PreparedQuery>),
    /// None: groups go through partition selection.
    None,
}

impl DpPrepared {
    /// The columns whose values the answer's groups may be enumerated from.
    pub fn public_key_columns(&self) -> Vec<&str> {
        self.key_domains
            .iter()
            .filter_map(|d| match d {
                KeyDomain::Column(c, _) => Some(c.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Per noisy column (as in `noise`), the smallest ε at which its 95%
    /// half-width is at most `target`, the query otherwise unchanged;
    /// `None` where no ε allowed reaches it. Nothing is spent.
    pub fn epsilon_for(&self, target: f64) -> Vec<Option<f64>> {
        // A column whose bounds are not estimated yet has no known noise.
        self.release
            .epsilon_for(target)
            .into_iter()
            .zip(&self.noise)
            .map(|(e, n)| e.filter(|_| n.std.is_finite()))
            .collect()
    }

    /// Whether some aggregate's bounds are still to be estimated (or their
    /// estimation failed).
    pub fn bounds_pending(&self) -> bool {
        self.auto.is_some() || self.estimation_failed
    }
}

impl PreparedQuery {
    /// Records what each budget holds once the service charged this
    /// answer, for the answer to say; nothing when it is not DP.
    pub fn say_budget_left(&mut self, left: Vec<BudgetLeft>) {
        if let Some(dp) = &mut self.dp {
            dp.budget_left = left;
        }
    }
}

impl std::fmt::Debug for DpPrepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpPrepared")
            .field("costs", &self.costs)
            .field("options", &self.options)
            .finish()
    }
}

/// How an answer was protected.
#[derive(Debug, Clone, PartialEq)]
pub struct Privacy {
    /// `plain`, `protected` (masked, pseudonymised or generalised values) or
    /// `aggregate` (k threshold applied).
    pub mode: &'static str,
    pub k: Option<u32>,
    pub epsilon_spent: f64,
    pub delta_spent: f64,
}

/// A query that passed the policy stage, ready to run.
#[derive(Debug)]
pub struct PreparedQuery {
    pub(crate) checked: Checked,
    pub provenance: Provenance,
    pub privacy: Privacy,
    pub policy_version: String,
    /// Every field the query referenced, as `dataset.field`.
    pub fields: Vec<String>,
    /// Columns `SELECT *` left out because the caller may not see them row
    /// by row.
    pub omitted: Vec<String>,
    /// Set for differentially private queries: the cost to charge before
    /// running, and the noise.
    pub dp: Option<DpPrepared>,
}

impl PreparedQuery {
    /// The rewritten plan, as text: what will run.
    pub fn plan_text(&self) -> String {
        self.checked.plan.display_indent().to_string()
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

pub struct Engine {
    state: SessionState,
    datasets: BTreeMap<String, Arc<Dataset>>,
    policy: Arc<Policy>,
    policy_version: String,
    master_key: [u8; 32],
    /// Verification products, or why one is unavailable.
    products: BTreeMap<String, Result<Arc<crate::verification::ProductTable>, String>>,
    /// Datasets no one may use now, with the reason (a complaint, a seal).
    blocked: BTreeMap<String, String>,
    /// The memory one query's operators may hold at once.
    query_memory: usize,
}

/// The memory the operators of one query (hash tables, sorts, joins, the
/// per-unit pre-aggregation of DP) may hold at once, unless set otherwise:
/// past it the query fails with [`QueryError::Limit`], and the process
/// does not grow without bound.
pub const QUERY_MEMORY: usize = 2 << 30;

/// How a failure while running is answered: a memory limit reached is
/// said, naming the limit; anything else is internal (its detail may echo a
/// value).
fn execution_error(e: datafusion::error::DataFusionError, limit: usize) -> QueryError {
    if matches!(
        e.find_root(),
        datafusion::error::DataFusionError::ResourcesExhausted(_)
    ) {
        let size = if limit >= 1 << 20 {
            format!("{} MiB", limit >> 20)
        } else {
            format!("{} KiB", limit >> 10)
        };
        return QueryError::Limit(format!(
            "the query needs more memory than one query may hold ({size}); nothing was released: filter first, or group by fewer keys"
        ));
    }
    QueryError::Internal {
        detail: e.to_string(),
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("datasets", &self.datasets.keys())
            .field("policy_version", &self.policy_version)
            .finish()
    }
}

/// The service's local time zone (China Standard Time), for "today".
fn today(now: DateTime<Utc>) -> NaiveDate {
    veil_policies::calendar::service_day(now)
}

impl Engine {
    /// An engine deciding with `policy` (named `policy_version` in answers).
    /// `master_key` roots the pseudonym keys.
    pub fn new(policy: Policy, policy_version: impl Into<String>, master_key: [u8; 32]) -> Engine {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_batch_size(8192);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_query_planner(Arc::new(crate::dp::keep_groups::QueryPlanner))
            .build();
        Engine {
            state,
            datasets: BTreeMap::new(),
            policy: Arc::new(policy),
            policy_version: policy_version.into(),
            master_key,
            products: BTreeMap::new(),
            blocked: BTreeMap::new(),
            query_memory: QUERY_MEMORY,
        }
    }

    /// Sets the memory one query's operators may hold at once.
    pub fn set_query_memory(&mut self, bytes: usize) {
        self.query_memory = bytes;
    }

    /// A task context for one query: the session's, with a memory pool of
    /// the query's own, so that one query's limit is not another's.
    fn query_task_ctx(&self) -> Arc<datafusion::execution::TaskContext> {
        let shared = self.state.runtime_env();
        let runtime = datafusion::execution::runtime_env::RuntimeEnv {
            memory_pool: Arc::new(datafusion::execution::memory_pool::GreedyMemoryPool::new(
                self.query_memory,
            )),
            ..shared.as_ref().clone()
        };
        Arc::new(
            datafusion::execution::TaskContext::from(&self.state).with_runtime(Arc::new(runtime)),
        )
    }

    pub fn add_dataset(&mut self, dataset: Dataset) {
        self.datasets
            .insert(dataset.manifest.name.clone(), Arc::new(dataset));
    }

    /// Refuses every use of `dataset` with `reason` (it must not also be
    /// added): queries naming it and verifications over it are denied.
    pub fn block(&mut self, dataset: &str, reason: impl Into<String>) {
        self.datasets.remove(dataset);
        self.blocked.insert(dataset.to_owned(), reason.into());
    }

    /// The blocked datasets and why.
    pub fn blocked(&self) -> &BTreeMap<String, String> {
        &self.blocked
    }

    /// The dataset named `name`, shared.
    pub fn dataset(&self, name: &str) -> Option<Arc<Dataset>> {
        self.datasets.get(name).cloned()
    }

    /// Installs a verification product's table, or the reason it has none.
    pub fn add_product(
        &mut self,
        name: &str,
        table: Result<Arc<crate::verification::ProductTable>, String>,
    ) {
        self.products.insert(name.to_owned(), table);
    }

    /// Gives every product of the policy its table, or the reason it has
    /// none: its dataset is not loaded, or does not have the fields the
    /// product names. `index` finds (or builds) the subject index of a
    /// dataset's field; tables of `previous` built from the same product
    /// over the same dataset version are kept, not rebuilt. With `only`,
    /// just that product is installed (a one-off verification needs one).
    pub fn install_products(
        &mut self,
        index: &crate::verification::IndexSource<'_>,
        previous: Option<&Engine>,
        only: Option<&str>,
    ) {
        let mut indexes: HashMap<(String, String), Arc<crate::verification::SubjectIndex>> =
            HashMap::new();
        let products = self.policy.products.clone();
        for product in products.iter().filter(|p| only.is_none_or(|o| o == p.name)) {
            let table = (|| {
                let dataset = self.datasets.get(&product.dataset).ok_or_else(|| {
                    format!("its dataset `{}` is not registered", product.dataset)
                })?;
                if let Some(problem) = product.check_against(&dataset.manifest).first() {
                    return Err(problem.to_string());
                }
                if let Some(kept) = previous
                    .and_then(|e| e.product_table(&product.name))
                    .filter(|t| t.is_for(product, dataset))
                {
                    return Ok(kept.clone());
                }
                let key = (product.dataset.clone(), product.subject.clone());
                let subject_index = match indexes.get(&key) {
                    Some(i) => i.clone(),
                    None => {
                        let i = index(dataset, &product.subject)?;
                        indexes.insert(key, i.clone());
                        i
                    }
                };
                crate::verification::ProductTable::build(product, dataset.clone(), &subject_index)
                    .map(Arc::new)
            })();
            self.products.insert(product.name.clone(), table);
        }
    }

    /// The table of a product, when it has one.
    pub fn product_table(&self, name: &str) -> Option<&Arc<crate::verification::ProductTable>> {
        self.products.get(name).and_then(|t| t.as_ref().ok())
    }

    /// The products of the policy, each with its table or the reason it is
    /// unavailable.
    pub fn products(
        &self,
    ) -> impl Iterator<Item = (&str, Result<&Arc<crate::verification::ProductTable>, &str>)> {
        self.products
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_ref().map_err(String::as_str)))
    }

    /// Checks a verification request against the product, the caller and
    /// the policy; the result answers it.
    pub fn verify(
        &self,
        request: &crate::verification::VerifyRequest<'_>,
    ) -> Result<crate::verification::Checked<'_>, crate::verification::VerifyError> {
        use crate::verification::VerifyError;
        let Some(product) = self.policy.product(request.product) else {
            let known: Vec<&str> = self
                .policy
                .products
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(VerifyError::NotFound(if known.is_empty() {
                "the policy publishes no verification product".into()
            } else {
                format!(
                    "no product by that name; the products are {}",
                    known.join(", ")
                )
            }));
        };
        if let Some(reason) = self.blocked.get(&product.dataset) {
            return Err(VerifyError::Denied(reason.clone()));
        }
        match self.products.get(request.product) {
            Some(Ok(table)) => table.check(request, &self.policy),
            Some(Err(why)) => Err(VerifyError::NotFound(format!(
                "product `{}` is unavailable: {why}",
                request.product
            ))),
            None => Err(VerifyError::NotFound(format!(
                "product `{}` is unavailable: its dataset is not loaded",
                request.product
            ))),
        }
    }

    /// Where an answer over `datasets` came from (Art. 40).
    pub(crate) fn provenance<'a>(
        &self,
        datasets: impl IntoIterator<Item = &'a String>,
        now: DateTime<Utc>,
    ) -> Provenance {
        let used: Vec<&Arc<Dataset>> = datasets
            .into_iter()
            .filter_map(|d| self.datasets.get(d))
            .collect();
        let mut providers: Vec<String> = used
            .iter()
            .map(|d| d.manifest.institutions.providing.clone())
            .collect();
        providers.sort();
        providers.dedup();
        Provenance {
            datasets: used.iter().map(|d| d.manifest.name.clone()).collect(),
            providers,
            versions: used
                .iter()
                .map(|d| (d.manifest.name.clone(), d.version))
                .collect(),
            retrieved_at: now,
        }
    }

    /// The session every plan runs in.
    pub(crate) fn session_state(&self) -> SessionState {
        self.state.clone()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values().map(|d| d.as_ref())
    }

    /// Each field's level for `principal` and `purpose`, per dataset.
    pub fn levels(
        &self,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<(String, Vec<(String, Level)>)> {
        self.datasets
            .values()
            .map(|d| {
                let levels = d
                    .manifest
                    .fields
                    .iter()
                    .map(|f| {
                        (
                            f.name.clone(),
                            decide(&self.policy, &d.manifest, f, principal, purpose, now).level,
                        )
                    })
                    .collect();
                (d.manifest.name.clone(), levels)
            })
            .collect()
    }

    fn view(
        &self,
        dataset: &Arc<Dataset>,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<View> {
        let raw = dataset.raw_schema();
        let mut columns = Vec::new();
        let mut hidden = Vec::new();
        let mut fields = Vec::new();
        for spec in &dataset.manifest.fields {
            let level = decide(
                &self.policy,
                &dataset.manifest,
                spec,
                principal,
                purpose,
                now,
            )
            .level;
            let Ok(raw_index) = raw.index_of(&spec.name) else {
                continue;
            };
            if matches!(level, Level::Compare | Level::Deny) {
                hidden.push((spec.name.clone(), level));
                continue;
            }
            fields.push(raw.field(raw_index).clone());
            columns.push(ViewColumn {
                name: spec.name.clone(),
                raw_index,
                level,
            });
        }
        if columns.is_empty() {
            return None;
        }
        Some(View {
            dataset: dataset.clone(),
            schema: Arc::new(Schema::new(fields)),
            columns,
            hidden,
        })
    }

    /// Parses, plans and checks a query; nothing runs yet.
    /// The registered datasets a statement names, for the audit entry of a
    /// refusal: names outside the catalog (a CTE, a typo) are left out, so
    /// nothing the caller typed is recorded as a dataset.
    pub fn datasets_named(&self, sql: &str) -> Vec<String> {
        use datafusion::sql::sqlparser::ast::visit_relations;
        let Ok(statement) = crate::sql::parse_select(sql) else {
            return Vec::new();
        };
        let mut named = Vec::new();
        let _ = visit_relations(&statement, |relation| {
            if let Some(last) = relation.0.last().and_then(|p| p.as_ident()) {
                let name = if last.quote_style.is_some() {
                    last.value.clone()
                } else {
                    last.value.to_lowercase()
                };
                if self.datasets.contains_key(&name) && !named.contains(&name) {
                    named.push(name);
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        named
    }

    pub fn prepare(&self, request: &QueryRequest<'_>) -> Result<PreparedQuery, QueryError> {
        use crate::dp::sample::Entropy;
        self.prepare_seeded(request, crate::dp::sample::SecureEntropy::new().next_u64())
    }

    /// [`Engine::prepare`] with the seed of the DP group choice fixed, so
    /// that tests can compare the bounded statistics of neighbouring
    /// datasets.
    pub(crate) fn prepare_seeded(
        &self,
        request: &QueryRequest<'_>,
        seed: u64,
    ) -> Result<PreparedQuery, QueryError> {
        self.prepare_with(request, seed, true)
    }

    /// [`Engine::prepare_seeded`]; without `dp_default`, a query that needs
    /// DP and names no ε is refused rather than answered at the default.
    fn prepare_with(
        &self,
        request: &QueryRequest<'_>,
        seed: u64,
        dp_default: bool,
    ) -> Result<PreparedQuery, QueryError> {
        let statement = crate::sql::parse_select(request.sql)?;
        let wildcard = crate::sql::selects_wildcard(&statement);
        let mut views = HashMap::new();
        let mut hidden: Vec<(String, String, Level)> = Vec::new();
        for (name, dataset) in &self.datasets {
            if let Some(view) = self.view(dataset, request.principal, request.purpose, request.now)
            {
                hidden.extend(
                    view.hidden
                        .iter()
                        .map(|(f, l)| (name.clone(), f.clone(), l.clone())),
                );
                views.insert(
                    name.clone(),
                    provider_as_source(Arc::new(view)) as Arc<dyn TableSource>,
                );
            }
        }
        let tables = crate::sql::Tables {
            state: &self.state,
            tables: &views,
        };
        let plan = crate::sql::plan(&tables, statement).map_err(|e| match e {
            QueryError::UnknownTable(m) => match self
                .blocked
                .iter()
                .find(|(name, _)| m.contains(&format!("`{name}`")))
            {
                Some((name, reason)) => deny(Some(name.clone()), "blocked", reason.clone()),
                None => QueryError::UnknownTable(m),
            },
            e => explain_hidden(e, &hidden),
        })?;
        let key = PseudonymKey::derive(
            &self.master_key,
            &request.principal.name,
            request.purpose.unwrap_or(""),
        );
        let manifests: Vec<&veil_policies::DatasetManifest> =
            self.datasets.values().map(|d| &d.manifest).collect();
        let ctx = policy::Context {
            policy: &self.policy,
            manifests: &manifests,
            principal: request.principal,
            today: today(request.now),
            pseudonym_key: Arc::new(key),
        };
        if let Some(options) = request.dp {
            return self.prepare_dp(&ctx, &plan, Some(options), request, seed);
        }
        match policy::check(&ctx, &plan, wildcard) {
            Ok(checked) => Ok(self.prepared(checked, request.now)),
            // Fields the caller may read only under differential privacy:
            // the query is a DP query at its grades' default ε, when they
            // have one. A refusal by a DP rule says more than the first
            // refusal; otherwise (not a DP shape, no default) the first one
            // stands.
            Err(QueryError::Denied(first)) if first.rule == "dp" && dp_default => {
                match self.prepare_dp(&ctx, &plan, None, request, seed) {
                    Ok(prepared) => Ok(prepared),
                    Err(QueryError::Denied(r)) if r.rule != NO_DEFAULT => {
                        Err(QueryError::Denied(r))
                    }
                    Err(_) => Err(QueryError::Denied(first)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The ε a query over `dataset` spends when it names none: the smallest
    /// default of the grades of the fields a DP query over it protects;
    /// `None` when one of them has no default (the caller must name ε).
    pub fn query_epsilon(
        &self,
        dataset: &str,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<f64> {
        let mut out: Option<f64> = None;
        for grade in self.protected_grades(dataset, principal, purpose, now)? {
            let q = grade?.budget.query_epsilon?;
            out = Some(out.map_or(q, |o| o.min(q)));
        }
        out
    }

    /// The grades of the fields of `dataset` that a DP query over it
    /// protects for a caller (dp or aggregate-only for them); `None` for an
    /// unknown grade.
    fn protected_grades(
        &self,
        dataset: &str,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Vec<Option<&veil_policies::policy::Grade>>> {
        let d = self.datasets.get(dataset)?;
        Some(
            d.manifest
                .fields
                .iter()
                .filter(|f| {
                    matches!(
                        decide(&self.policy, &d.manifest, f, principal, purpose, now).level,
                        Level::Dp | Level::Aggregate { .. }
                    )
                })
                .map(|f| self.policy.grade(&f.grade))
                .collect(),
        )
    }

    /// The differential-privacy budget of `dataset` for a caller: the
    /// strictest grade among its fields that a DP query over it protects
    /// (dp or aggregate-only for them); `None` when no field is.
    pub fn dp_budget(
        &self,
        dataset: &str,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<DpBudget> {
        let grades = self.protected_grades(dataset, principal, purpose, now)?;
        DpBudget::strictest(grades.into_iter().flatten().map(|g| &g.budget))
    }

    fn prepare_dp(
        &self,
        ctx: &policy::Context<'_>,
        plan: &datafusion::logical_expr::LogicalPlan,
        options: Option<DpOptions>,
        request: &QueryRequest<'_>,
        seed: u64,
    ) -> Result<PreparedQuery, QueryError> {
        use crate::dp::{bound_contributions, release};
        let checked = policy::check_dp(ctx, plan, options.is_some_and(|o| o.auto_bounds))?;
        // Without options, the grades' default ε and the tightest bounds.
        let options = match options {
            Some(o) => o,
            None => {
                let defaults: Option<Vec<f64>> = checked
                    .dp_datasets
                    .iter()
                    .map(|d| self.query_epsilon(d, request.principal, request.purpose, request.now))
                    .collect();
                let epsilon = defaults
                    .and_then(|d| d.into_iter().reduce(f64::min))
                    .ok_or_else(|| {
                        deny(
                            None,
                            NO_DEFAULT,
                            "this query needs differential privacy and its fields' grades set no default ε; send `epsilon`",
                        )
                    })?;
                DpOptions::new(epsilon)
            }
        };
        if !crate::dp::epsilon_allowed(options.epsilon) {
            return Err(crate::error::invalid(crate::dp::EPSILON_RANGE_TEXT));
        }
        for (what, v) in [
            ("max_groups", options.max_groups),
            ("max_rows", options.max_rows),
        ] {
            if !(1..=1000).contains(&v) {
                return Err(crate::error::invalid(format!(
                    "`{what}` must be between 1 and 1000"
                )));
            }
        }
        let mut budgets = Vec::new();
        for name in &checked.dp_datasets {
            let budget = self
                .dp_budget(name, request.principal, request.purpose, request.now)
                .unwrap_or(DpBudget {
                    epsilon: 0.0,
                    delta: 0.0,
                    period: None,
                });
            if budget.delta <= 0.0 || budget.epsilon <= 0.0 {
                return Err(deny(
                    None,
                    "dp",
                    format!(
                        "`{name}` has no differential-privacy budget with δ > 0 for you; zCDP accounting needs one"
                    ),
                ));
            }
            budgets.push((name.clone(), budget));
        }
        let delta_b = budgets
            .iter()
            .map(|b| b.1.delta)
            .fold(f64::INFINITY, f64::min);
        let domains: Option<Vec<Vec<String>>> =
            checked.keys.iter().map(|k| k.domain.clone()).collect();
        if let Some(ds) = &domains {
            let cells = ds
                .iter()
                .map(Vec::len)
                .try_fold(1usize, |a, n| a.checked_mul(n))
                .unwrap_or(usize::MAX);
            let kinds: Vec<_> = checked.aggregates.iter().map(|a| a.kind).collect();
            if !release::enumerable(cells, &kinds) {
                return Err(crate::error::invalid(format!(
                    "the keys' public domains make {cells} groups of {} noisy values each; at most {} groups and {} noisy values are released in one answer: group by fewer keys, or ask fewer aggregates",
                    release::draws_per_group(&kinds),
                    release::MAX_DOMAIN_GROUPS,
                    release::MAX_NOISY_VALUES,
                )));
            }
        }
        let bounded = bound_contributions::bound_contributions(
            &checked,
            options.max_groups,
            options.max_rows,
            seed,
        )?;
        let kinds = checked.aggregates.iter().map(|a| a.kind).collect();
        // Automatic bounds: one histogram of magnitudes per aggregate that
        // has them, over the same input with no keys, at one share of ε.
        let auto = match checked.estimation() {
            Some(estimation) => Some(AutoBounds {
                estimation: bound_contributions::bound_contributions(
                    &estimation,
                    1,
                    options.max_rows,
                    seed,
                )?,
                checked: checked.clone(),
                seed,
            }),
            None => None,
        };
        let mut release = release::calibrate(
            bounded,
            checked.outputs.clone(),
            kinds,
            domains,
            release::Spend {
                epsilon: options.epsilon,
                delta: delta_b,
                max_groups: options.max_groups,
                max_rows: options.max_rows,
                estimates: auto.as_ref().map_or(0, |a| a.estimation.stats.len()),
            },
        );
        release.intervals = options.intervals;
        // Until the bounds are estimated, their columns' noise is unknown.
        for n in &mut release.noise {
            if checked.aggregates[n.aggregate].auto {
                n.auto_bounds = true;
                n.bounds = None;
                (n.scale, n.std, n.ci95) = (f64::NAN, f64::NAN, f64::NAN);
            }
        }
        let cost = release.cost;
        let costs = budgets
            .into_iter()
            .map(|(dataset, budget)| DpCost {
                dataset,
                epsilon: cost.epsilon,
                delta: cost.delta,
                rho: cost.rho,
                delta0: cost.delta0,
                budget,
            })
            .collect();
        let noise = release.noise.clone();
        // The post-processing must plan over the released columns now, so
        // that a type error in it is refused before anything is spent.
        let released = release::released_schema(&release, &self.key_types(&release));
        let probe = checked.post.plan_over(RecordBatch::new_empty(released))?;
        self.state.optimize(&probe).map_err(|e| {
            crate::error::invalid(crate::error::redact(&format!(
                "the post-processing of the noisy answer cannot be planned: {}",
                e.strip_backtrace()
            )))
        })?;
        let selection_threshold = release.selection.map(|s| s.threshold);
        let mechanism = release.mechanism;
        // A public column's values may name the groups only when its
        // dataset is none the answer protects: the released groups then
        // depend on no protected row at all.
        let key_domains = checked
            .keys
            .iter()
            .map(|k| match (&k.domain, &k.column) {
                (Some(d), _) => KeyDomain::Declared(d.clone()),
                (None, Some((dataset, field)))
                    if release.selection.is_some() && !checked.dp_datasets.contains(dataset) =>
                {
                    self.public_domain(dataset, field, request)
                        .map_or(KeyDomain::None, |q| {
                            KeyDomain::Column(format!("{dataset}.{field}"), Box::new(q))
                        })
                }
                _ => KeyDomain::None,
            })
            .collect();
        let run = Checked {
            plan: release.bounded.plan.clone(),
            datasets: checked.datasets,
            fields: checked.fields,
            k: None,
            protected: false,
            omitted: Vec::new(),
        };
        let mut prepared = self.prepared(run, request.now);
        prepared.privacy = Privacy {
            mode: "dp",
            k: None,
            epsilon_spent: cost.epsilon,
            delta_spent: cost.delta,
        };
        prepared.dp = Some(DpPrepared {
            release,
            post: checked.post,
            costs,
            options,
            noise,
            selection_threshold,
            mechanism,
            key_domains,
            budget_left: Vec::new(),
            auto,
            estimation_failed: false,
        });
        Ok(prepared)
    }

    /// Estimates a DP query's automatic bounds, when it has some, and sets
    /// them: the answer's noise then says them and its scales. Spends
    /// the estimation's share of the ε charged for the answer, so it runs
    /// only after the charge, once: a query whose bounds are set is left
    /// as it is, and [`Engine::stream`] refuses one whose bounds are not
    /// set (or whose estimation failed).
    pub async fn resolve_bounds(&self, query: &mut PreparedQuery) -> Result<(), QueryError> {
        let Some(dp) = &mut query.dp else {
            return Ok(());
        };
        let Some(auto) = dp.auto.take() else {
            return Ok(());
        };
        // Taken before it runs: it spends, so it never runs twice, and a
        // query whose estimation failed is never released.
        dp.estimation_failed = true;
        let release = self.with_estimated_bounds(dp, &auto).await?;
        dp.estimation_failed = false;
        dp.noise = release.noise.clone();
        query.checked.plan = release.bounded.plan.clone();
        dp.release = release;
        Ok(())
    }

    /// The release of `dp` with its automatic bounds estimated now.
    async fn with_estimated_bounds(
        &self,
        dp: &DpPrepared,
        auto: &AutoBounds,
    ) -> Result<crate::dp::release::DpRelease, QueryError> {
        use crate::dp::{bound_contributions, release};
        let physical = self.physical_plan(&auto.estimation.plan).await?;
        let batches = datafusion::physical_plan::collect(physical, self.query_task_ctx())
            .await
            .map_err(|e| execution_error(e, self.query_memory))?;
        let mut entropy = crate::dp::sample::SecureEntropy::new();
        let estimated =
            release::estimate_bounds(&dp.release, &auto.estimation, &batches, &mut entropy)?;
        let estimated_columns = dp.noise.iter().filter(|n| n.auto_bounds);
        let mut bounds = Vec::with_capacity(estimated.len());
        for (b, column) in estimated.into_iter().zip(estimated_columns) {
            bounds.push(b.ok_or_else(|| {
                QueryError::Limit(crate::error::redact(&format!(
                    "the automatic bounds of `{}` found no range of values that stands out of the noise at this ε (too few rows for it); declare bounds for the field or ask a larger ε. The ε of this answer stays spent",
                    column.column
                )))
            })?);
        }
        let checked = auto.checked.with_bounds(&bounds);
        let options = dp.options;
        let bounded = bound_contributions::bound_contributions(
            &checked,
            options.max_groups,
            options.max_rows,
            auto.seed,
        )?;
        let mut out = release::calibrate(
            bounded,
            dp.release.outputs.clone(),
            checked.aggregates.iter().map(|a| a.kind).collect(),
            dp.release.domains.clone(),
            dp.release.spend,
        );
        out.intervals = dp.release.intervals;
        for n in &mut out.noise {
            n.auto_bounds = checked.aggregates[n.aggregate].auto;
        }
        // What was charged is what the calibration with the bounds spends.
        if out.cost != dp.release.cost || out.mechanism != dp.release.mechanism {
            return Err(QueryError::Internal {
                detail: "the cost changed with the automatic bounds".into(),
            });
        }
        Ok(out)
    }

    /// The caller's own query of the distinct values of `dataset.field`,
    /// when the stage answers it in the clear (plain: no mask, no k, no
    /// DP, within the caller's regions and purpose). Its answer depends on
    /// nothing the caller may not read, so it may name a DP answer's groups.
    fn public_domain(
        &self,
        dataset: &str,
        field: &str,
        request: &QueryRequest<'_>,
    ) -> Option<PreparedQuery> {
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let sql = format!("SELECT DISTINCT {} FROM {}", quote(field), quote(dataset));
        let prepared = self
            .prepare_with(
                &QueryRequest {
                    principal: request.principal,
                    purpose: request.purpose,
                    sql: &sql,
                    now: request.now,
                    dp: None,
                },
                0,
                false,
            )
            .ok()?;
        (prepared.privacy.mode == "plain" && prepared.dp.is_none() && prepared.omitted.is_empty())
            .then_some(prepared)
    }

    /// The values of every key of a DP answer, when each has a domain and
    /// together they make few enough groups to enumerate
    /// ([`crate::dp::release::enumerable`]): the declared ones, and the
    /// distinct non-NULL values of the public columns, read now. Whether
    /// they do depends on public values only.
    async fn key_values(&self, dp: &DpPrepared) -> Result<Option<Vec<Vec<String>>>, QueryError> {
        use crate::dp::release::{MAX_DOMAIN_GROUPS, enumerable};
        use arrow::array::AsArray;
        let mut out = Vec::with_capacity(dp.key_domains.len());
        let mut cells = 1usize;
        for domain in &dp.key_domains {
            let values = match domain {
                KeyDomain::Declared(values) => values.clone(),
                KeyDomain::Column(_, query) => {
                    let physical = self.physical_plan(&query.checked.plan).await?;
                    let batches =
                        datafusion::physical_plan::collect(physical, self.query_task_ctx())
                            .await
                            .map_err(|e| execution_error(e, self.query_memory))?;
                    let mut values = std::collections::BTreeSet::new();
                    for batch in &batches {
                        let text = arrow::compute::cast(
                            batch.column(0),
                            &arrow::datatypes::DataType::Utf8,
                        )
                        .map_err(|e| QueryError::Internal {
                            detail: e.to_string(),
                        })?;
                        values.extend(text.as_string::<i32>().iter().flatten().map(str::to_owned));
                        if values.len() > MAX_DOMAIN_GROUPS {
                            return Ok(None);
                        }
                    }
                    values.into_iter().collect()
                }
                KeyDomain::None => return Ok(None),
            };
            cells = cells.saturating_mul(values.len());
            if !enumerable(cells, &dp.release.kinds) {
                return Ok(None);
            }
            out.push(values);
        }
        Ok(Some(out))
    }

    fn prepared(&self, checked: Checked, now: DateTime<Utc>) -> PreparedQuery {
        let provenance = self.provenance(&checked.datasets, now);
        let mode = match (checked.k, checked.protected) {
            (Some(_), _) => "aggregate",
            (None, true) => "protected",
            (None, false) => "plain",
        };
        let privacy = Privacy {
            mode,
            k: checked.k,
            epsilon_spent: 0.0,
            delta_spent: 0.0,
        };
        let fields = checked.fields.iter().cloned().collect();
        let omitted = checked.omitted.clone();
        PreparedQuery {
            checked,
            provenance,
            privacy,
            policy_version: self.policy_version.clone(),
            fields,
            omitted,
            dp: None,
        }
    }

    /// The exact, bounded statistics of a prepared DP query, before any
    /// noise, or with `estimation` those of its histograms of magnitudes
    /// for automatic bounds (`None` when it has none): for the tests that
    /// check sensitivities. They never leave the engine otherwise.
    #[cfg(test)]
    pub(crate) async fn exact_statistics<'q>(
        &self,
        query: &'q PreparedQuery,
        estimation: bool,
    ) -> Result<
        Option<(
            Vec<RecordBatch>,
            &'q crate::dp::bound_contributions::Bounded,
        )>,
        QueryError,
    > {
        let dp = query.dp.as_ref().ok_or_else(|| QueryError::Internal {
            detail: "not a DP query".into(),
        })?;
        let bounded = match (estimation, &dp.auto) {
            (false, _) => &dp.release.bounded,
            (true, Some(auto)) => &auto.estimation,
            (true, None) => return Ok(None),
        };
        let physical = self.physical_plan(&bounded.plan).await?;
        let batches = datafusion::physical_plan::collect(physical, self.query_task_ctx())
            .await
            .map_err(|e| execution_error(e, self.query_memory))?;
        Ok(Some((batches, bounded)))
    }

    /// The physical plan of a checked plan. DataFusion's type coercion adds
    /// casts after the policy stage has rewritten every CAST the caller
    /// wrote into TRY_CAST: those are made TRY_CAST too, so that no value
    /// can make a coercion fail (an error would be an oracle; a NULL is not).
    async fn physical_plan(
        &self,
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>, QueryError> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::Expr;
        use datafusion::logical_expr::expr::{Cast, TryCast};
        let analyzed = self
            .state
            .analyzer()
            .execute_and_check(plan.clone(), self.state.config_options(), |_, _| {})
            .map_err(planning_error)?;
        let total = analyzed
            .transform_up_with_subqueries(|node| {
                // The expressions of a node are over its inputs' columns.
                let mut input = datafusion::common::DFSchema::empty();
                for i in node.inputs() {
                    input.merge(i.schema());
                }
                let node = node.map_expressions(|e| {
                    e.transform_up(|e| {
                        Ok(match e {
                            Expr::Cast(Cast { expr, field })
                                if !cast_cannot_fail(&expr, field.data_type(), &input) =>
                            {
                                Transformed::yes(Expr::TryCast(TryCast { expr, field }))
                            }
                            other => Transformed::no(other),
                        })
                    })
                })?;
                // A child's schema may have changed (TRY_CAST is nullable).
                node.data.recompute_schema().map(Transformed::yes)
            })
            .map_err(planning_error)?
            .data;
        self.state
            .create_physical_plan(&total)
            .await
            .map_err(planning_error)
    }

    /// Runs a prepared query as a stream of batches.
    pub async fn stream(
        &self,
        query: &PreparedQuery,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        for name in &query.provenance.datasets {
            if let Some(dataset) = self.datasets.get(name) {
                dataset
                    .check_file()
                    .map_err(|detail| QueryError::Internal { detail })?;
            }
        }
        let Some(dp) = &query.dp else {
            let physical = self.physical_plan(&query.checked.plan).await?;
            return execute_stream(physical, self.query_task_ctx())
                .map_err(|e| execution_error(e, self.query_memory));
        };
        // Automatic bounds are estimated once, by `resolve_bounds`, after
        // the charge: a query without them set does not run.
        if dp.bounds_pending() {
            return Err(QueryError::Internal {
                detail: "a DP query with automatic bounds ran before `resolve_bounds` set them"
                    .into(),
            });
        }
        let release = &dp.release;
        let physical = self.physical_plan(&release.bounded.plan).await?;
        let exact = execute_stream(physical, self.query_task_ctx())
            .map_err(|e| execution_error(e, self.query_memory))?;
        // A DP plan yields exact statistics per group: they never leave
        // here. The noise is drawn now, after the caller charged the budget,
        // and the post-processing runs on the noisy answer alone.
        let key_types = self.key_types(release);
        let batches = exact
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| execution_error(e, self.query_memory))?;
        // Keys whose values are all public are enumerated, empty groups
        // included, instead of selected (the selection's δ stays charged).
        let public = match dp.release.selection {
            Some(_) => self.key_values(dp).await?,
            None => None,
        };
        let mut entropy = crate::dp::sample::SecureEntropy::new();
        let batch = crate::dp::release::release(
            release,
            &key_types,
            &batches,
            public.as_deref(),
            &mut entropy,
        )?;
        let post = dp.post.plan_over(batch)?;
        let physical = self
            .state
            .create_physical_plan(&post)
            .await
            .map_err(planning_error)?;
        execute_stream(physical, self.query_task_ctx())
            .map_err(|e| execution_error(e, self.query_memory))
    }

    /// The schema of the answer a prepared query streams (the DP
    /// post-processing's, for a DP query).
    pub fn answer_schema(&self, query: &PreparedQuery) -> Result<SchemaRef, QueryError> {
        let plan = match &query.dp {
            None => query.checked.plan.clone(),
            Some(dp) => {
                let released =
                    crate::dp::release::released_schema(&dp.release, &self.key_types(&dp.release));
                dp.post.plan_over(RecordBatch::new_empty(released))?
            }
        };
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }

    /// The datasets a caller may query now, each with the columns it may
    /// reference (at any level but `compare` and `deny`), in the types of
    /// the data.
    pub fn visible_tables(
        &self,
        principal: &Principal,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<(String, SchemaRef)> {
        self.datasets
            .iter()
            .filter(|(name, _)| !self.blocked.contains_key(*name))
            .filter_map(|(name, d)| {
                self.view(d, principal, purpose, now)
                    .map(|v| (name.clone(), v.schema.clone()))
            })
            .collect()
    }

    /// The types of a DP query's keys, as its bounded plan computes them.
    pub(crate) fn key_types(
        &self,
        release: &crate::dp::release::DpRelease,
    ) -> Vec<arrow::datatypes::DataType> {
        release
            .bounded
            .plan
            .schema()
            .fields()
            .iter()
            .take(release.bounded.keys.len())
            .map(|f| f.data_type().clone())
            .collect()
    }

    /// Runs a prepared query to completion.
    pub async fn run(&self, query: &PreparedQuery) -> Result<Answer, QueryError> {
        let stream = self.stream(query).await?;
        let schema = stream.schema();
        let batches = stream
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| execution_error(e, self.query_memory))?;
        Ok(Answer { schema, batches })
    }

    /// Prepares and runs in one call.
    pub async fn query(
        &self,
        request: &QueryRequest<'_>,
    ) -> Result<(PreparedQuery, Answer), QueryError> {
        let mut prepared = self.prepare(request)?;
        self.resolve_bounds(&mut prepared).await?;
        let answer = self.run(&prepared).await?;
        Ok((prepared, answer))
    }
}

/// Whether casting `expr` to `to` succeeds for every value: to its own
/// type, between string types, from a null, or widening a number to a
/// 64-bit integer or float. Other casts become TRY_CAST (they stay casts
/// here so that the optimizer can still remove them).
fn cast_cannot_fail(
    expr: &datafusion::logical_expr::Expr,
    to: &arrow::datatypes::DataType,
    input: &datafusion::common::DFSchema,
) -> bool {
    use arrow::datatypes::DataType as T;
    use datafusion::logical_expr::ExprSchemable;
    let Ok(from) = expr.get_type(input) else {
        return false;
    };
    let text = |t: &T| matches!(t, T::Utf8 | T::LargeUtf8 | T::Utf8View);
    let narrow_int = |t: &T| {
        matches!(
            t,
            T::Int8 | T::Int16 | T::Int32 | T::UInt8 | T::UInt16 | T::UInt32
        )
    };
    from == *to
        || from == T::Null
        || (text(&from) && text(to))
        || (narrow_int(&from) && matches!(to, T::Int64 | T::Float64))
        || (matches!(from, T::Int64 | T::UInt64 | T::Float32) && *to == T::Float64)
}

/// The rule of the refusal when a query needs DP and no default ε applies.
const NO_DEFAULT: &str = "dp-default";

/// Optimising or physically planning the checked plan failed: a type error
/// in the query, most often. Only the caller's own SQL is described.
fn planning_error(e: datafusion::error::DataFusionError) -> QueryError {
    let message = e.to_string();
    let message = message
        .strip_prefix("Error during planning: ")
        .unwrap_or(&message);
    QueryError::InvalidSql(crate::error::redact(&format!(
        "the query cannot be planned: {message}"
    )))
}

/// A reference to a field the caller may not see reads as "no such field" to
/// the planner; say which rule hides it instead.
fn explain_hidden(e: QueryError, hidden: &[(String, String, Level)]) -> QueryError {
    let QueryError::InvalidSql(message) = &e else {
        return e;
    };
    let Some(rest) = message.split("No field named ").nth(1) else {
        return e;
    };
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '"')
        .collect();
    let field = name
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or("")
        .trim_matches('"')
        .to_owned();
    match hidden.iter().find(|(_, f, _)| *f == field) {
        Some((dataset, f, level)) => {
            let rule = if *level == Level::Compare {
                "compare"
            } else {
                "deny"
            };
            let why = if rule == "compare" {
                "may only be verified (match or mismatch), never queried"
            } else {
                "is not available to you in any form"
            };
            deny(
                Some(format!("{dataset}.{f}")),
                if rule == "compare" { "compare" } else { "deny" },
                format!("field `{dataset}.{f}` {why}"),
            )
        }
        None => e,
    }
}
