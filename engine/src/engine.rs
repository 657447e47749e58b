//! The engine: a DataFusion session, the registered datasets, and the path
//! of one query: parse, plan against the caller's views, check and rewrite
//! in the policy stage, then run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::TableSource;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionConfig;
use futures::TryStreamExt;
use veil_policies::{Level, Policy, Principal, decide};

use crate::error::{QueryError, deny};
use crate::policy::{self, Checked};
use crate::protect::PseudonymKey;
use crate::tables::{Dataset, View, ViewColumn};

/// One question: who asks, for what purpose, what SQL, and when.
#[derive(Debug, Clone, Copy)]
pub struct QueryRequest<'a> {
    pub principal: &'a Principal,
    pub purpose: Option<&'a str>,
    pub sql: &'a str,
    pub now: DateTime<Utc>,
}

/// Where an answer's data came from (Art. 40) and the catalog versions used.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub datasets: Vec<String>,
    pub providers: Vec<String>,
    pub versions: Vec<(String, i64)>,
    pub retrieved_at: DateTime<Utc>,
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
    checked: Checked,
    pub provenance: Provenance,
    pub privacy: Privacy,
    pub policy_version: String,
    /// Every field the query referenced, as `dataset.field`.
    pub fields: Vec<String>,
    /// Columns `SELECT *` left out because the caller may not see them row
    /// by row.
    pub omitted: Vec<String>,
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
    let cst = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    now.with_timezone(&cst).date_naive()
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
            .build();
        Engine {
            state,
            datasets: BTreeMap::new(),
            policy: Arc::new(policy),
            policy_version: policy_version.into(),
            master_key,
        }
    }

    pub fn add_dataset(&mut self, dataset: Dataset) {
        self.datasets
            .insert(dataset.manifest.name.clone(), Arc::new(dataset));
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
    pub fn prepare(&self, request: &QueryRequest<'_>) -> Result<PreparedQuery, QueryError> {
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
        let plan = crate::sql::plan(&tables, statement).map_err(|e| explain_hidden(e, &hidden))?;
        let key = PseudonymKey::derive(
            &self.master_key,
            &request.principal.name,
            request.purpose.unwrap_or(""),
        );
        let ctx = policy::Context {
            policy: &self.policy,
            principal: request.principal,
            today: today(request.now),
            pseudonym_key: Arc::new(key),
        };
        let checked = policy::check(&ctx, &plan, wildcard)?;
        Ok(self.prepared(checked, request.now))
    }

    fn prepared(&self, checked: Checked, now: DateTime<Utc>) -> PreparedQuery {
        let used: Vec<&Arc<Dataset>> = checked
            .datasets
            .iter()
            .filter_map(|d| self.datasets.get(d))
            .collect();
        let mut providers: Vec<String> = used
            .iter()
            .map(|d| d.manifest.institutions.providing.clone())
            .collect();
        providers.sort();
        providers.dedup();
        let provenance = Provenance {
            datasets: used.iter().map(|d| d.manifest.name.clone()).collect(),
            providers,
            versions: used
                .iter()
                .map(|d| (d.manifest.name.clone(), d.version))
                .collect(),
            retrieved_at: now,
        };
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
        }
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
        let physical = self
            .state
            .create_physical_plan(&query.checked.plan)
            .await
            .map_err(planning_error)?;
        execute_stream(physical, self.state.task_ctx()).map_err(|e| QueryError::Internal {
            detail: e.to_string(),
        })
    }

    /// Runs a prepared query to completion.
    pub async fn run(&self, query: &PreparedQuery) -> Result<Answer, QueryError> {
        let stream = self.stream(query).await?;
        let schema = stream.schema();
        let batches = stream
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| QueryError::Internal {
                detail: e.to_string(),
            })?;
        Ok(Answer { schema, batches })
    }

    /// Prepares and runs in one call.
    pub async fn query(
        &self,
        request: &QueryRequest<'_>,
    ) -> Result<(PreparedQuery, Answer), QueryError> {
        let prepared = self.prepare(request)?;
        let answer = self.run(&prepared).await?;
        Ok((prepared, answer))
    }
}

/// Optimising or physically planning the checked plan failed: a type error
/// in the query, most often. Only the caller's own SQL is described.
fn planning_error(e: datafusion::error::DataFusionError) -> QueryError {
    let message = e.to_string();
    let message = message
        .strip_prefix("Error during planning: ")
        .unwrap_or(&message);
    QueryError::InvalidSql(format!("the query cannot be planned: {message}"))
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
