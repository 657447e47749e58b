//! The DP rewrite: every privacy unit's contribution is bounded before
//! anything is summed across units.
//!
//! ```text
//! Aggregate by keys: SUM(c), COUNT(*) AS units, SUM(s_j), SUM(n_j)       -- across units
//!   Projection: min(c, Linf), s_j and n_j scaled by min(1, Linf / c) -- at most Linf rows' worth
//!     VeilKeepGroups: per unit, its L0 groups of smallest keyed hash,   -- at most L0 groups per unit
//!                     each with COUNT(*) AS c, SUM(v_j) AS s_j, ...       (one pass, no sort)
//!       Filter: unit IS NOT NULL [AND keys in their public domains]     -- rows without a unit are dropped
//!         Projection: unit, keys, clamp(v_j) on the grid AS v_j
//!           the checked input
//! ```
//!
//! A unit with more than Linf rows in a group contributes what Linf of them
//! would in expectation: its count is Linf and its sums are scaled by
//! Linf / c, rounded to the grid and clamped to Linf rows' bound. That is a
//! deterministic function of the unit's own rows with the same sensitivity as
//! sampling rows, and it needs no sort of the rows. A unit keeps the L0
//! groups whose keyed hash under the query's fresh seed is smallest
//! ([`super::keep_groups`]: a hash table of units and their L0 slots, fed
//! by the rows hash-partitioned by unit). Values are
//! clamped to the catalog's bounds and put on a fixed-point grid of a power
//! of two, so every sum is an exact integer and the noise can be an exact
//! integer too (Mironov 2012). NULL values add nothing to SUM and AVG, and are
//! not counted by COUNT(field); COUNT(*) counts rows whatever they hold.

use arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, try_cast, when};
use datafusion::prelude::{col, lit};

use super::keep_groups::KeepGroups;
use crate::error::{QueryError, invalid};
use crate::policy::{DpChecked, DpKind, QUANTILE_BINS};

/// Bits of precision kept for a value relative to its bound.
const GRID_BITS: i32 = 20;

/// The statistics the bounded plan computes for one aggregate, by column.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    /// Column of the integer sum of the values on the grid (SUM, AVG) or of
    /// non-NULL counts (COUNT(field)).
    pub sum: Option<String>,
    /// Column of the count of non-NULL values (AVG, VAR).
    pub count: Option<String>,
    /// Column of the integer sum of the squared centred values on their
    /// own grid (VAR, STDDEV).
    pub squares: Option<String>,
    /// The grid: one integer unit is worth this much.
    pub grid: f64,
    /// Largest absolute value of one row on the grid.
    pub row_bound: f64,
    /// The grid of the squares, and one row's largest square on it.
    pub square_grid: f64,
    pub square_bound: f64,
    /// Columns of a quantile's histogram, one per bin, lowest first: a row
    /// adds 1 to the bin its clamped value falls in (none when NULL), so a
    /// unit's rows in a group add at most Linf across all of them.
    pub bins: Vec<String>,
    /// What one row adds to its bin: 1, or for a histogram of magnitudes
    /// [`super::approx_bounds::WEIGHT`], so that a unit whose rows spread
    /// over several bins still adds to each its share (on a grid of
    /// 1/WEIGHT) when its rows are scaled down to Linf.
    pub bin_weight: f64,
}

impl Stats {
    /// A count's statistics: one integer column (or none), one per row.
    pub(crate) fn plain(sum: Option<String>) -> Stats {
        Stats {
            sum,
            count: None,
            squares: None,
            grid: 1.0,
            row_bound: 1.0,
            square_grid: 1.0,
            square_bound: 0.0,
            bins: Vec::new(),
            bin_weight: 1.0,
        }
    }

    /// Each statistic column with the most one row adds to it.
    pub(crate) fn columns(&self) -> Vec<(&String, f64)> {
        let mut out = Vec::new();
        out.extend(self.sum.iter().map(|c| (c, self.row_bound)));
        out.extend(self.count.iter().map(|c| (c, 1.0)));
        out.extend(self.squares.iter().map(|c| (c, self.square_bound)));
        out.extend(self.bins.iter().map(|c| (c, self.bin_weight)));
        out
    }
}

#[derive(Clone)]
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
                squares: s.squares.map(|q| format!("{q}_s")),
                bins: s.bins.iter().map(|b| format!("{b}_s")).collect(),
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

/// `value` as a float clamped to [lo, hi] (NULL stays NULL).
fn clamp(value: &Expr, lo: f64, hi: f64) -> Result<Expr, QueryError> {
    let x = try_cast(value.clone(), DataType::Float64);
    when(x.clone().lt(lit(lo)), lit(lo))
        .when(x.clone().gt(lit(hi)), lit(hi))
        .otherwise(x)
        .map_err(plan_error)
}

/// A bounded float as an integer number of `grid` steps.
fn on_grid(x: Expr, grid: f64) -> Expr {
    let scaled = datafusion::functions::math::expr_fn::round(vec![x * lit(1.0 / grid)]);
    cast(scaled, DataType::Int64)
}

/// Replaces each quantile's bin-index column by one 0/1 column per bin.
fn expand_bins(
    builder: LogicalPlanBuilder,
    histograms: &[(String, Vec<String>, i64)],
) -> datafusion::error::Result<LogicalPlanBuilder> {
    if histograms.is_empty() {
        return Ok(builder);
    }
    let mut columns = Vec::new();
    for field in builder.schema().fields() {
        let name = field.name();
        match histograms.iter().find(|(index, ..)| index == name) {
            Some((index, bins, weight)) => {
                for (i, bin) in bins.iter().enumerate() {
                    let indicator = cast(col(index.as_str()).eq(lit(i as f64)), DataType::Int64);
                    let weighted = if *weight == 1 {
                        indicator
                    } else {
                        indicator * lit(*weight)
                    };
                    columns.push(weighted.alias(bin));
                }
            }
            None => columns.push(col(name.as_str())),
        }
    }
    builder.project(columns)
}

/// Rewrites the checked input into the bounded statistics. `seed` keys the
/// choice of each unit's groups (see [`super::keep_groups`]).
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
    // Each quantile's bin-index column and the indicator columns of its bins.
    let mut histograms: Vec<(String, Vec<String>, i64)> = Vec::new();
    // Each per-row statistic column, in the order the group choice sums
    // them; and each per-unit sum's column with the bound of one row in it.
    let mut sources: Vec<String> = Vec::new();
    // A histogram's bins are scaled down with floor, so that their sum
    // stays within Linf; every other statistic is rounded.
    let mut per_unit_columns: Vec<(String, f64, bool)> = Vec::new();
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
                Stats::plain(Some(v.clone()))
            }
            (DpKind::Count | DpKind::CountUnits, _) => Stats::plain(None),
            (DpKind::Sum { lo, hi } | DpKind::Avg { lo, hi }, Some(value)) => {
                let bound = lo.abs().max(hi.abs());
                let grid = grid_for(bound);
                let clamped = clamp(value, lo, hi)?;
                project.push(on_grid(clamped, grid).alias(&v));
                let avg = matches!(a.kind, DpKind::Avg { .. });
                if avg {
                    project.push(present(value).map_err(plan_error)?.alias(&n));
                }
                Stats {
                    count: avg.then(|| n.clone()),
                    grid,
                    row_bound: (bound / grid).ceil(),
                    ..Stats::plain(Some(v.clone()))
                }
            }
            (DpKind::Variance { lo, hi, .. }, Some(value)) => {
                // Values centred in their bounds: |x - m| <= r, so a row adds
                // at most r to the sum and r² to the sum of squares.
                let (m, r) = ((lo + hi) / 2.0, ((hi - lo) / 2.0).max(f64::MIN_POSITIVE));
                let (grid, square_grid) = (grid_for(r), grid_for(r * r));
                let centred = clamp(value, lo, hi)? - lit(m);
                let q = format!("__veil_q{j}");
                project.push(on_grid(centred.clone(), grid).alias(&v));
                project.push(present(value).map_err(plan_error)?.alias(&n));
                project.push(on_grid(centred.clone() * centred, square_grid).alias(&q));
                Stats {
                    sum: Some(v.clone()),
                    count: Some(n.clone()),
                    squares: Some(q),
                    grid,
                    row_bound: (r / grid).ceil(),
                    square_grid,
                    square_bound: (r * r / square_grid).ceil(),
                    bins: Vec::new(),
                    bin_weight: 1.0,
                }
            }
            (DpKind::Quantile { lo, hi, .. }, Some(value)) => {
                let width = (hi - lo) / QUANTILE_BINS as f64;
                let x = clamp(value, lo, hi)?;
                let bin = if width > 0.0 {
                    let floor = datafusion::functions::math::expr_fn::floor(
                        (x.clone() - lit(lo)) * lit(1.0 / width),
                    );
                    let last = lit((QUANTILE_BINS - 1) as f64);
                    when(floor.clone().gt(last.clone()), last)
                        .otherwise(floor)
                        .map_err(plan_error)?
                } else {
                    x * lit(0.0)
                };
                // The bin index here (-1 for NULL, in no bin), its
                // indicators one projection up: each then reads one column
                // instead of the clamping.
                let bin = datafusion::functions::core::expr_fn::coalesce(vec![bin, lit(-1.0)]);
                project.push(bin.alias(&v));
                let bins: Vec<String> = (0..QUANTILE_BINS)
                    .map(|i| format!("__veil_v{j}_b{i}"))
                    .collect();
                histograms.push((v.clone(), bins.clone(), 1));
                Stats {
                    bins,
                    ..Stats::plain(None)
                }
            }
            (DpKind::Magnitudes, Some(value)) => {
                use super::approx_bounds::{BINS, HIGHEST, LOWEST, WEIGHT, ZERO};
                use datafusion::functions::math::expr_fn::{abs, floor, isnan, log2};
                // The bin of each value's magnitude (`approx_bounds`); NaN
                // and NULL are -1, in no bin.
                let x = try_cast(value.clone(), DataType::Float64);
                let m = abs(x.clone());
                let level = when(
                    m.clone().gt_eq(lit(2f64.powi(HIGHEST))),
                    lit(HIGHEST as f64),
                )
                .otherwise(floor(log2(m.clone())))
                .map_err(plan_error)?;
                let offset = level - lit(LOWEST as f64);
                let bin = when(isnan(x.clone()), lit(-1.0))
                    .when(m.lt(lit(2f64.powi(LOWEST))), lit(ZERO as f64))
                    .when(x.gt(lit(0.0)), lit((ZERO + 1) as f64) + offset.clone())
                    .otherwise(lit((ZERO - 1) as f64) - offset)
                    .map_err(plan_error)?;
                let bin = datafusion::functions::core::expr_fn::coalesce(vec![bin, lit(-1.0)]);
                project.push(bin.alias(&v));
                let bins: Vec<String> = (0..BINS).map(|i| format!("__veil_v{j}_b{i}")).collect();
                histograms.push((v.clone(), bins.clone(), WEIGHT as i64));
                Stats {
                    bins,
                    bin_weight: WEIGHT,
                    ..Stats::plain(None)
                }
            }
            (
                DpKind::Sum { .. }
                | DpKind::Avg { .. }
                | DpKind::Variance { .. }
                | DpKind::Quantile { .. }
                | DpKind::Magnitudes,
                None,
            ) => {
                return Err(invalid(
                    "SUM, AVG, VAR, STDDEV and percentiles need an argument",
                ));
            }
        };
        for (column, row_bound) in s.columns() {
            let u = format!("{column}_u");
            sources.push(column.clone());
            across.push(sum(col(u.as_str())).alias(format!("{column}_s")));
            per_unit_columns.push((u, row_bound, s.bins.contains(column)));
        }
        stats.push(s);
    }

    // With one row per unit, every unit is in one group with one row: the
    // bounds hold already, and the statistics are plain aggregates by key.
    if checked.unit_unique {
        let mut direct = vec![
            count(lit(1)).alias("__veil_rows"),
            count(lit(1)).alias("__veil_units"),
        ];
        for s in &stats {
            for (c, _) in s.columns() {
                direct.push(sum(col(c.as_str())).alias(format!("{c}_s")));
            }
        }
        let plan = LogicalPlanBuilder::from(checked.input.clone())
            .project(project)
            .and_then(|b| expand_bins(b, &histograms))
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
    let scale = |column: &str, row_bound: f64, floor: bool| -> Result<Expr, QueryError> {
        let limit = max_rows as f64 * row_bound;
        let x = cast(col(column), DataType::Float64) * col("__veil_factor");
        let x = if floor {
            // Exact values are count · Linf / c: an integer, or at least 1/c
            // from one; the nudge undoes the float error of the product
            // (1/49 · 49 < 1) and never reaches the next integer.
            datafusion::functions::math::expr_fn::floor(x + lit(1e-9))
        } else {
            datafusion::functions::math::expr_fn::round(vec![x])
        };
        let x = when(x.clone().gt(lit(limit)), lit(limit))
            .when(x.clone().lt(lit(-limit)), lit(-limit))
            .otherwise(x)
            .map_err(plan_error)?;
        Ok(cast(x, DataType::Int64).alias(column))
    };
    let mut scaled = key_cols();
    scaled.push(
        when(
            col("__veil_c").gt(lit(max_rows as i64)),
            lit(max_rows as i64),
        )
        .otherwise(col("__veil_c"))
        .map_err(plan_error)?
        .alias("__veil_c"),
    );
    for (column, row_bound, floor) in &per_unit_columns {
        scaled.push(scale(column, *row_bound, *floor)?);
    }
    let factor = when(
        col("__veil_c").gt(lit(max_rows as i64)),
        lit(max_rows as f64) / cast(col("__veil_c"), DataType::Float64),
    )
    .otherwise(lit(1.0))
    .map_err(plan_error)?
    .alias("__veil_factor");
    let mut with_factor = key_cols();
    with_factor.push(col("__veil_c"));
    with_factor.extend(per_unit_columns.iter().map(|(c, ..)| col(c.as_str())));
    with_factor.push(factor);

    // L0: a unit keeps at most L0 of its groups, those of smallest keyed
    // hash, in one pass that also counts and sums each kept group's rows
    // (`keep_groups`). When every key has a public domain, rows outside the
    // domains (never released) are dropped first.
    let domains: Option<Vec<&Vec<String>>> =
        checked.keys.iter().map(|k| k.domain.as_ref()).collect();
    let within_domains = domains.as_ref().map(|ds| {
        ds.iter()
            .zip(&keys)
            .map(|(d, k)| {
                cast(col(k.as_str()), DataType::Utf8)
                    .in_list(d.iter().map(|v| lit(v.as_str())).collect(), false)
            })
            .reduce(Expr::and)
            .unwrap_or(lit(true))
    });
    let mut chosen = vec![col(unit)];
    chosen.extend(key_cols());
    chosen.extend(sources.iter().map(|c| col(c.as_str())));
    let mut builder = LogicalPlanBuilder::from(checked.input.clone())
        .project(project)
        .and_then(|b| expand_bins(b, &histograms))
        .and_then(|b| b.filter(col(unit).is_not_null()))
        .map_err(plan_error)?;
    if let Some(within) = within_domains {
        builder = builder.filter(within).map_err(plan_error)?;
    }
    let input = builder
        .project(chosen)
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let kept = KeepGroups::plan(input, keys.len(), max_groups, seed).map_err(plan_error)?;
    let plan = LogicalPlanBuilder::from(kept)
        .project(with_factor)
        .and_then(|b| b.project(scaled))
        .and_then(|b| b.aggregate(key_cols(), across))
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
