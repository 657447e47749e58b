//! The wire format of contract.md: answers and errors as JSON. Domain types
//! stay free of serde; this module is where they become JSON.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
pub mod admin;
pub mod body;
pub mod models;
pub mod query;
pub mod requests;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use veil_engine::{DpBudget, DpCost, PreparedQuery};

use crate::store::{Spent, fits, time_text};

pub use crate::error::ErrorCode;

/// The columns of an answer: name and Arrow type. Strings are `Utf8`
/// whatever their physical layout.
pub fn columns(schema: &SchemaRef) -> Value {
    Value::Array(
        portable_schema(schema)
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect(),
    )
}

/// The answer's schema with string views and large strings as plain `Utf8`,
/// which every Arrow reader knows.
pub fn portable_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
}

/// A batch in [`portable_schema`].
pub fn portable(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = portable_schema(&batch.schema());
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// Rows of a batch as JSON arrays: numbers as numbers, dates as ISO text.
pub fn rows(batch: &RecordBatch) -> Vec<Value> {
    let cells: Vec<Vec<Value>> = batch.columns().iter().map(column_values).collect();
    (0..batch.num_rows())
        .map(|r| Value::Array(cells.iter().map(|c| c[r].clone()).collect()))
        .collect()
}

fn column_values(array: &ArrayRef) -> Vec<Value> {
    use arrow::datatypes::*;
    let n = array.len();
    let number = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    let values: Vec<Value> = match array.data_type() {
        DataType::Int8 => array
            .as_primitive::<Int8Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::Int16 => array
            .as_primitive::<Int16Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::UInt8 => array
            .as_primitive::<UInt8Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::UInt16 => array
            .as_primitive::<UInt16Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::UInt32 => array
            .as_primitive::<UInt32Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::UInt64 => array
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| json!(x)))
            .collect(),
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, |x| number(f64::from(x))))
            .collect(),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, number))
            .collect(),
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_owned())))
            .collect(),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_owned())))
            .collect(),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_owned())))
            .collect(),
        DataType::Decimal128(_, 0) => array
            .as_primitive::<Decimal128Type>()
            .iter()
            .map(|v| match v {
                None => Value::Null,
                Some(x) => {
                    i64::try_from(x).map_or_else(|_| Value::String(x.to_string()), |x| json!(x))
                }
            })
            .collect(),
        _ => {
            let options = FormatOptions::default().with_null("");
            match ArrayFormatter::try_new(array.as_ref(), &options) {
                Ok(f) => (0..n)
                    .map(|i| {
                        if array.is_null(i) {
                            Value::Null
                        } else {
                            Value::String(f.value(i).to_string())
                        }
                    })
                    .collect(),
                Err(_) => vec![Value::Null; n],
            }
        }
    };
    values
}

/// Where an answer's data came from (Art. 40).
pub fn provenance(p: &veil_engine::Provenance) -> Value {
    json!({
        "datasets": p.datasets,
        "providers": p.providers,
        "catalog_versions": p.versions.iter().map(|(d, v)| (d.clone(), json!(v))).collect::<Map<String, Value>>(),
        "retrieved_at": p.retrieved_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

/// What one budget holds after an answer: the budget, the ε left in its
/// period and when it renews (`null`: never).
pub fn budget_left(left: &veil_engine::BudgetLeft) -> Value {
    json!({
        "dataset": left.dataset,
        "epsilon": left.budget.epsilon,
        "delta": left.budget.delta,
        "period": left.budget.period.map(|p| p.name()),
        "epsilon_left": left.epsilon_left,
        "renews": left.renews.map(time_text),
    })
}

/// The provenance, privacy and policy parts of an answer.
pub fn answer_meta(prepared: &PreparedQuery) -> Map<String, Value> {
    let p = &prepared.provenance;
    let privacy = &prepared.privacy;
    let mut privacy_json = json!({
        "mode": privacy.mode,
        "epsilon_spent": privacy.epsilon_spent,
        "delta_spent": privacy.delta_spent,
        "noise": "none",
    });
    if let Some(dp) = &prepared.dp {
        privacy_json["noise"] = json!(format!(
            "{}, exact integer sampling (Canonne, Kamath, Steinke 2020); budgets account the tighter of basic composition and zCDP",
            dp.mechanism.name()
        ));
        privacy_json["mechanism"] = json!(dp.mechanism.name());
        privacy_json["rho_spent"] = json!(dp.costs.first().map_or(0.0, |c| c.rho));
        privacy_json["bounds"] = json!({"max_groups_per_unit": dp.options.max_groups, "max_rows_per_group": dp.options.max_rows});
        privacy_json["columns"] = Value::Array(
            dp.noise
                .iter()
                .map(|n| {
                    let mut column = json!({"column": n.column, "statistic": n.statistic, "scale": n.scale, "std": n.std, "ci95_half_width": n.ci95});
                    if let Some(width) = n.resolution {
                        column["ci95_of"] = json!("rank (rows)");
                        column["resolution"] = json!(width);
                    }
                    match (n.bounds, n.auto_bounds) {
                        (Some((lo, hi)), false) => {
                            column["clamp"] = json!({"lower": lo, "upper": hi, "source": "declared"});
                        }
                        (Some((lo, hi)), true) => {
                            column["clamp"] = json!({"lower": lo, "upper": hi, "source": "automatic", "note": "estimated under DP from a share of this answer's ε: a noisy log-scale histogram of the values, its lowest and highest bins above the noise (ApproxBounds)"});
                        }
                        (None, true) => {
                            column["clamp"] = json!({"source": "automatic", "note": "estimated when the query runs, from a share of its ε; the noise scale follows from them"});
                        }
                        (None, false) => {}
                    }
                    column
                })
                .collect(),
        );
        if !dp.budget_left.is_empty() {
            privacy_json["budgets"] = dp.budget_left.iter().map(budget_left).collect();
        }
        if dp.options.intervals {
            privacy_json["intervals"] = json!(
                "each noisy aggregate the answer passes on has columns `{column}_ci95_lo` and `{column}_ci95_hi`: for counts, sums, averages and variances an interval that holds the statistic without noise (after clamping and bounding contributions) with probability at least 95%, from tail bounds of the noise; for quantiles an approximate one (normal approximation of the rank's noise, widened to bin edges). Rows kept or ordered by noisy values (HAVING, ORDER BY ... LIMIT) are chosen with their noise, and their intervals cover less often"
            );
        }
        let public = dp.public_key_columns();
        if !public.is_empty() {
            privacy_json["public_keys"] = json!({"columns": public, "note": "when every key has a public domain (declared, or the distinct values of a column you may read in the clear), every combination is released, empty ones included, and no group is selected by its count (up to 100000 groups)"});
        }
        if let Some(t) = dp.selection_threshold {
            privacy_json["partition_selection"] = json!({"threshold_units": t, "note": "groups without a public domain appear only when their noisy count of privacy units reaches the threshold"});
        }
    }
    if let Some(k) = privacy.k {
        privacy_json["k"] = json!(k);
        privacy_json["suppression"] = json!(format!(
            "groups with fewer than {k} distinct privacy units are not released"
        ));
    }
    if !prepared.omitted.is_empty() {
        privacy_json["omitted_columns"] = json!(prepared.omitted);
    }
    let mut meta = Map::new();
    meta.insert("provenance".into(), provenance(p));
    meta.insert("privacy".into(), privacy_json);
    meta.insert("policy_version".into(), json!(prepared.policy_version));
    meta
}

/// What an Arrow answer's schema says about it, as JSON texts under
/// `veil.*` keys: the request id, the policy version, the provenance and
/// the privacy (as the JSON answer has them), and the row cap the answer
/// is cut at (an answer of exactly that many rows may have been cut; its
/// receipt, `GET /v1/receipts/{request_id}`, is kept when it ends).
pub fn stream_metadata(
    prepared: &PreparedQuery,
    request_id: &str,
    max_rows: u64,
) -> std::collections::HashMap<String, String> {
    let mut out: std::collections::HashMap<String, String> = answer_meta(prepared)
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (format!("veil.{k}"), text)
        })
        .collect();
    out.insert("veil.request_id".into(), request_id.to_owned());
    out.insert("veil.max_rows".into(), max_rows.to_string());
    out
}

/// The privacy part of an answer.
pub fn privacy(prepared: &PreparedQuery) -> Value {
    answer_meta(prepared)
        .remove("privacy")
        .unwrap_or(Value::Null)
}

/// A budget's period and renewal as JSON, `null`s when it never renews.
fn period(budget: &DpBudget, now: DateTime<Utc>) -> (Value, Value, Value) {
    match budget.period {
        None => (Value::Null, Value::Null, Value::Null),
        Some(p) => (
            json!(p.name()),
            json!(time_text(p.start(now))),
            json!(time_text(p.renews(now))),
        ),
    }
}

/// The price of a DP query: per dataset charged, the cost, the budget and
/// what is left of it before the query, and whether the query fits.
pub fn dry_run(
    prepared: &PreparedQuery,
    costs: &[(DpCost, Option<Spent>)],
    target_ci95: Option<f64>,
    now: DateTime<Utc>,
) -> Value {
    let costs: Vec<Value> = costs
        .iter()
        .map(|(c, spent)| {
            let (period, _, renews) = period(&c.budget, now);
            json!({
                "dataset": c.dataset,
                "rho": c.rho,
                "delta0": c.delta0,
                "budget": {
                    "epsilon": c.budget.epsilon,
                    "delta": c.budget.delta,
                    "period": period,
                    "renews": renews,
                },
                "epsilon_left_before": spent.map(|s| s.epsilon_left(&c.budget)),
                "fits": spent.is_some_and(|s| fits(s, c)),
            })
        })
        .collect();
    let mut privacy = privacy(prepared);
    // Per noisy column, the ε that would reach the caller's target width.
    if let (Some(target), Some(dp), Some(Value::Array(columns))) =
        (target_ci95, &prepared.dp, privacy.get_mut("columns"))
    {
        for (column, epsilon) in columns.iter_mut().zip(dp.epsilon_for(target)) {
            column["target_ci95"] = json!(target);
            column["epsilon_for_target"] = json!(epsilon);
        }
    }
    json!({"dry_run": true, "privacy": privacy, "costs": costs})
}

/// One dataset's budget for a caller, as `GET /v1/budget` shows it.
pub struct BudgetView {
    pub dataset: String,
    pub budget: DpBudget,
    /// What was spent in the budget's current period.
    pub spent: Spent,
    pub now: DateTime<Utc>,
}

/// `GET /v1/budget`'s answer.
pub fn budgets(views: &[BudgetView]) -> Value {
    let budgets: Vec<Value> = views
        .iter()
        .map(|v| {
            let (period, start, renews) = period(&v.budget, v.now);
            let s = &v.spent;
            json!({
                "dataset": v.dataset,
                "budget": {"epsilon": v.budget.epsilon, "delta": v.budget.delta},
                "period": period,
                "period_start": start,
                "renews": renews,
                "spent": {"epsilon": s.epsilon(v.budget.delta), "basic": {"epsilon": s.epsilon, "delta": s.delta}, "zcdp": {"rho": s.rho, "delta0": s.delta0}},
                "remaining_epsilon": s.epsilon_left(&v.budget),
                "epsilon_left": s.epsilon_left(&v.budget),
            })
        })
        .collect();
    json!({
        "budgets": budgets,
        "accounting": "per dataset, the tighter of basic composition and zCDP over every answer released to you in the budget's period (for ever, when it has none)",
    })
}

/// A whole answer as one JSON object.
pub fn answer(prepared: &PreparedQuery, schema: &SchemaRef, batches: &[RecordBatch]) -> Value {
    let mut out = Map::new();
    out.insert("columns".into(), columns(schema));
    out.insert(
        "rows".into(),
        Value::Array(batches.iter().flat_map(rows).collect()),
    );
    out.extend(answer_meta(prepared));
    Value::Object(out)
}
