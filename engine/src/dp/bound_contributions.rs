//! The DP rewrite: every privacy unit's contribution is bounded before
//! anything is summed across units.
//!
//! ```text
//! Aggregate by keys: SUM(c), COUNT(*) AS units, SUM(s_j), SUM(n_j)       -- across units
//!   Filter: group_rank <= L0                                             -- at most L0 groups per unit
//!     Window: row_number() OVER (PARTITION BY unit ORDER BY hash(seed, unit, keys))
//!       Projection: min(c, Linf), s_j and n_j scaled by min(1, Linf / c) -- at most Linf rows' worth
//!         Aggregate by (unit, keys): COUNT(*) AS c, SUM(v_j) AS s_j, ...   -- per unit first
//!           Filter: unit IS NOT NULL                                     -- rows without a unit are dropped
//!             Projection: unit, keys, clamp(v_j) on the grid AS v_j
//!               the checked input
//! ```
//!
//! A unit with more than Linf rows in a group contributes what Linf of them
//! would in expectation: its count is Linf and its sums are scaled by
//! Linf / c, rounded to the grid and clamped to Linf rows' bound. That is a
//! deterministic function of the unit's own rows with the same sensitivity as
//! sampling rows, and it needs a hash aggregate instead of a sort of all rows.
//! A unit keeps the L0 groups whose keyed hash under the query's fresh seed is
//! smallest (a window over the per-unit rows), and no choice is made when the
//! keys' public domains have no more tuples than L0. Values are
//! clamped to the catalog's bounds and put on a fixed-point grid of a power
//! of two, so every sum is an exact integer and the noise can be an exact
//! integer too (Mironov 2012). NULL values add nothing to SUM and AVG, and are
//! not counted by COUNT(field); COUNT(*) counts rows whatever they hold.

use arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, cast, try_cast, when,
};
use datafusion::prelude::{col, lit};

use super::selection_hash::selection_hash;
use crate::error::{QueryError, invalid};
use crate::policy::{DpChecked, DpKind};

/// Bits of precision kept for a value relative to its bound.
const GRID_BITS: i32 = 20;

/// The statistics the bounded plan computes for one aggregate, by column.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    /// Column of the integer sum of the values on the grid (SUM, AVG) or of
    /// non-NULL counts (COUNT(field)).
    pub sum: Option<String>,
    /// Column of the count of non-NULL values (AVG).
    pub count: Option<String>,
    /// The grid: one integer unit is worth this much.
    pub grid: f64,
    /// Largest absolute value of one row on the grid.
    pub row_bound: f64,
}

pub(crate) struct Bounded {
    pub plan: LogicalPlan,
    /// Key columns of `plan`, in the order of the query's keys.
    pub keys: Vec<String>,
    pub rows_column: String,
    pub units_column: String,
    pub stats: Vec<Stats>,
}

impl Bounded {
    /// The bounded plan, whose statistics across units are the `_s` columns
    /// of the per-row ones.
    fn new(plan: LogicalPlan, keys: Vec<String>, stats: Vec<Stats>) -> Bounded {
        let stats = stats
            .into_iter()
            .map(|s| Stats {
                sum: s.sum.map(|v| format!("{v}_s")),
                count: s.count.map(|n| format!("{n}_s")),
                ..s
            })
            .collect();
        Bounded {
            plan,
            keys,
            rows_column: "__veil_rows".into(),
            units_column: "__veil_units".into(),
            stats,
        }
    }
}

fn plan_error(e: datafusion::error::DataFusionError) -> QueryError {
    invalid(format!(
        "the differentially private plan cannot be built: {e}"
    ))
}

/// The power of two that keeps `GRID_BITS` bits of a value bounded by `bound`.
pub(crate) fn grid_for(bound: f64) -> f64 {
    let bound = bound.max(f64::MIN_POSITIVE);
    2f64.powi(bound.log2().ceil() as i32 - GRID_BITS)
}

/// A unit's groups in the order of their keyed hash under `seed`; the keys
/// themselves break ties, so the order is a function of the unit's own rows.
fn selection_order(seed: u64, unit: &str, keys: &[String]) -> Vec<SortExpr> {
    let mut columns = vec![col(unit)];
    columns.extend(keys.iter().map(|k| col(k.as_str())));
    let mut order = vec![selection_hash(seed, columns).sort(true, false)];
    order.extend(keys.iter().map(|k| col(k.as_str()).sort(true, false)));
    order
}

/// Rewrites the checked input into the bounded statistics. `seed` keys the
/// choice of each unit's groups (see [`selection_hash`]).
pub(crate) fn bound_contributions(
    checked: &DpChecked,
    max_groups: u64,
    max_rows: u64,
    seed: u64,
) -> Result<Bounded, QueryError> {
    let unit = "__veil_u";
    let keys: Vec<String> = (0..checked.keys.len())
        .map(|i| format!("__veil_k{i}"))
        .collect();
    let key_cols = || keys.iter().map(|k| col(k.as_str())).collect::<Vec<_>>();

    let mut project = vec![cast(col(checked.unit.as_str()), DataType::Utf8).alias(unit)];
    for (k, name) in checked.keys.iter().zip(&keys) {
        project.push(k.expr.clone().alias(name));
    }
    let mut stats = Vec::with_capacity(checked.aggregates.len());
    let mut per_unit = vec![count(lit(1)).alias("__veil_c")];
    // Each per-unit statistic's column and the bound of one row in it.
    let mut per_unit_columns: Vec<(String, f64)> = Vec::new();
    let mut across = vec![
        sum(col("__veil_c")).alias("__veil_rows"),
        count(lit(1)).alias("__veil_units"),
    ];
    for (j, a) in checked.aggregates.iter().enumerate() {
        let v = format!("__veil_v{j}");
        let n = format!("__veil_n{j}");
        let present = |e: &Expr| when(e.clone().is_null(), lit(0i64)).otherwise(lit(1i64));
        let s = match (a.kind, &a.value) {
            (DpKind::Count, Some(value)) => {
                project.push(present(value).map_err(plan_error)?.alias(&v));
                Stats {
                    sum: Some(v.clone()),
                    count: None,
                    grid: 1.0,
                    row_bound: 1.0,
                }
            }
            (DpKind::Count | DpKind::CountUnits, _) => Stats {
                sum: None,
                count: None,
                grid: 1.0,
                row_bound: 1.0,
            },
            (DpKind::Sum { lo, hi } | DpKind::Avg { lo, hi }, Some(value)) => {
                let bound = lo.abs().max(hi.abs());
                let grid = grid_for(bound);
                let x = try_cast(value.clone(), DataType::Float64);
                let clamped = when(x.clone().lt(lit(lo)), lit(lo))
                    .when(x.clone().gt(lit(hi)), lit(hi))
                    .otherwise(x)
                    .map_err(plan_error)?;
                let scaled =
                    datafusion::functions::math::expr_fn::round(vec![clamped * lit(1.0 / grid)]);
                project.push(cast(scaled, DataType::Int64).alias(&v));
                let avg = matches!(a.kind, DpKind::Avg { .. });
                if avg {
                    project.push(present(value).map_err(plan_error)?.alias(&n));
                }
                Stats {
                    sum: Some(v.clone()),
                    count: avg.then(|| n.clone()),
                    grid,
                    row_bound: (bound / grid).ceil(),
                }
            }
            (DpKind::Sum { .. } | DpKind::Avg { .. }, None) => {
                return Err(invalid("SUM and AVG need an argument"));
            }
        };
        let columns = s.sum.iter().map(|v| (v, s.row_bound));
        for (column, row_bound) in columns.chain(s.count.iter().map(|n| (n, 1.0))) {
            let u = format!("{column}_u");
            per_unit.push(sum(col(column.as_str())).alias(&u));
            across.push(sum(col(u.as_str())).alias(format!("{column}_s")));
            per_unit_columns.push((u, row_bound));
        }
        stats.push(s);
    }

    let mut unit_and_keys = vec![col(unit)];
    unit_and_keys.extend(key_cols());
    let group_rank = datafusion::functions_window::expr_fn::row_number()
        .partition_by(vec![col(unit)])
        .order_by(selection_order(seed, unit, &keys))
        .build()
        .map_err(plan_error)?
        .alias("__veil_group_rank");

    // With one row per unit, every unit is in one group with one row: the
    // bounds hold already, and the statistics are plain aggregates by key.
    if checked.unit_unique {
        let mut direct = vec![
            count(lit(1)).alias("__veil_rows"),
            count(lit(1)).alias("__veil_units"),
        ];
        for s in &stats {
            if let Some(v) = &s.sum {
                direct.push(sum(col(v.as_str())).alias(format!("{v}_s")));
            }
            if let Some(n) = &s.count {
                direct.push(sum(col(n.as_str())).alias(format!("{n}_s")));
            }
        }
        let plan = LogicalPlanBuilder::from(checked.input.clone())
            .project(project)
            .and_then(|b| b.filter(col(unit).is_not_null()))
            .and_then(|b| b.aggregate(key_cols(), direct))
            .and_then(|b| b.build())
            .map_err(plan_error)?;
        return Ok(Bounded::new(plan, keys, stats));
    }
    // Linf: a unit's rows in one group count as at most Linf rows. Its
    // statistics there are scaled by min(1, Linf / n): the expected value of
    // keeping Linf of its n rows at random, without sorting any rows. Each
    // scaled statistic is an integer within Linf times the row bound (clamped
    // again, so that no float rounding can exceed it).
    let scale = |column: &str, row_bound: f64| -> Result<Expr, QueryError> {
        let limit = max_rows as f64 * row_bound;
        let x = cast(col(column), DataType::Float64) * col("__veil_factor");
        let x = datafusion::functions::math::expr_fn::round(vec![x]);
        let x = when(x.clone().gt(lit(limit)), lit(limit))
            .when(x.clone().lt(lit(-limit)), lit(-limit))
            .otherwise(x)
            .map_err(plan_error)?;
        Ok(cast(x, DataType::Int64).alias(column))
    };
    let mut scaled = unit_and_keys.clone();
    scaled.push(
        when(
            col("__veil_c").gt(lit(max_rows as i64)),
            lit(max_rows as i64),
        )
        .otherwise(col("__veil_c"))
        .map_err(plan_error)?
        .alias("__veil_c"),
    );
    for (column, row_bound) in &per_unit_columns {
        scaled.push(scale(column, *row_bound)?);
    }
    let factor = when(
        col("__veil_c").gt(lit(max_rows as i64)),
        lit(max_rows as f64) / cast(col("__veil_c"), DataType::Float64),
    )
    .otherwise(lit(1.0))
    .map_err(plan_error)?
    .alias("__veil_factor");
    let mut with_factor = unit_and_keys.clone();
    with_factor.push(col("__veil_c"));
    with_factor.extend(per_unit_columns.iter().map(|(c, _)| col(c.as_str())));
    with_factor.push(factor);

    // L0: a unit keeps at most L0 of its groups, chosen by the keyed hash. When
    // every key has a public domain and there are no more key tuples than
    // L0, no unit can exceed it: rows outside the domains (never released)
    // are dropped and the choice is skipped.
    let domains: Option<Vec<&Vec<String>>> =
        checked.keys.iter().map(|k| k.domain.as_ref()).collect();
    let tuples = domains.as_ref().map(|ds| {
        ds.iter()
            .try_fold(1u64, |a, d| a.checked_mul(d.len() as u64))
            .unwrap_or(u64::MAX)
    });
    let within_domains = match (&domains, tuples) {
        (Some(ds), Some(t)) if t <= max_groups => Some(
            ds.iter()
                .zip(&keys)
                .map(|(d, k)| {
                    cast(col(k.as_str()), DataType::Utf8)
                        .in_list(d.iter().map(|v| lit(v.as_str())).collect(), false)
                })
                .reduce(Expr::and)
                .unwrap_or(lit(true)),
        ),
        _ => None,
    };
    let mut builder = LogicalPlanBuilder::from(checked.input.clone())
        .project(project)
        .and_then(|b| b.filter(col(unit).is_not_null()))
        .map_err(plan_error)?;
    if let Some(within) = &within_domains {
        builder = builder.filter(within.clone()).map_err(plan_error)?;
    }
    builder = builder
        .aggregate(unit_and_keys, per_unit)
        .and_then(|b| b.project(with_factor))
        .and_then(|b| b.project(scaled))
        .map_err(plan_error)?;
    if within_domains.is_none() {
        builder = builder
            .window(vec![group_rank])
            .and_then(|b| b.filter(col("__veil_group_rank").lt_eq(lit(max_groups as i64))))
            .map_err(plan_error)?;
    }
    let plan = builder
        .aggregate(key_cols(), across)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    Ok(Bounded::new(plan, keys, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_keep_twenty_bits() {
        assert_eq!(grid_for(1.0), 2f64.powi(-20));
        assert_eq!(grid_for(10_000.0), 2f64.powi(14 - 20));
        assert_eq!(grid_for(500_000.0), 2f64.powi(19 - 20));
        assert!((10_000.0 / grid_for(10_000.0)) <= 2f64.powi(20));
    }
}
