//! Checks a differentially private query: one aggregate over a checked
//! input, whose keys and aggregates the DP rewrite
//! (`crate::dp::bound_contributions`) knows how to bound and noise, under
//! post-processing (HAVING, ORDER BY, LIMIT, arithmetic) that
//! `crate::dp::post` runs on the noisy answer only. Anything else is
//! refused.

use std::collections::BTreeSet;

use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use veil_policies::Level;

use super::lineage::Lineage;
use super::{Context, Scope, Stage, unalias};
use crate::dp::post::PostProcessing;
use crate::error::{QueryError, deny, invalid};

const SHAPE: &str = "a differentially private query is SELECT keys, aggregates FROM ... [WHERE ...] [GROUP BY keys] [HAVING ...] [ORDER BY ...] [LIMIT n] with COUNT(*), COUNT(field), COUNT(DISTINCT privacy unit), SUM(field), AVG(field), VAR(field), STDDEV(field) (and their _POP forms), MEDIAN(field) or PERCENTILE_CONT(field, p), and any arithmetic over them (applied to the noisy answer)";

/// A group key.
#[derive(Debug, Clone)]
pub(crate) struct DpKey {
    /// Over the checked input.
    pub expr: Expr,
    /// The declared public domain, when the key is a field that has one.
    pub domain: Option<Vec<String>>,
    /// The dataset and field a key without a declared domain reads
    /// unchanged: when the caller may read that column in the clear, its
    /// values are a public domain (Tumult's KeySets, ZetaSQL's public
    /// groups), read at run time (`Engine::public_domain`).
    pub column: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum DpKind {
    /// COUNT(*), or COUNT(field) when there is a value (non-NULL values).
    Count,
    /// COUNT(DISTINCT privacy unit).
    CountUnits,
    Sum {
        lo: f64,
        hi: f64,
    },
    Avg {
        lo: f64,
        hi: f64,
    },
    /// VAR_POP / VAR_SAMP (`sample`), or their square roots STDDEV_POP /
    /// STDDEV_SAMP (`root`).
    Variance {
        lo: f64,
        hi: f64,
        sample: bool,
        root: bool,
    },
    /// MEDIAN, PERCENTILE_CONT, APPROX_PERCENTILE_CONT: the `p` quantile,
    /// read from a noisy histogram of [`QUANTILE_BINS`] equal bins over the
    /// bounds.
    Quantile {
        lo: f64,
        hi: f64,
        p: f64,
    },
    /// Never asked for: the histogram of magnitudes that estimates an
    /// aggregate's automatic bounds (`crate::dp::approx_bounds`).
    Magnitudes,
}

/// Bins of a quantile's histogram: its resolution is a 32nd of the bounds.
/// More bins would sharpen the resolution and widen the rank error (a
/// cumulative count adds the noise of every bin below it).
pub(crate) const QUANTILE_BINS: usize = 32;

impl DpKind {
    /// How many noisy statistics this aggregate releases: a count or sum
    /// one, an average two (sum and count), a variance three (sum of
    /// squares, sum and count, all of values centred in their bounds), a
    /// quantile one histogram (one unit's rows in a group add at most Linf
    /// across its bins, as to a count, so each bin takes a count's noise).
    pub(crate) fn statistics(self) -> usize {
        match self {
            DpKind::Count
            | DpKind::CountUnits
            | DpKind::Sum { .. }
            | DpKind::Quantile { .. }
            | DpKind::Magnitudes => 1,
            DpKind::Avg { .. } => 2,
            DpKind::Variance { .. } => 3,
        }
    }

    /// The clamping bounds, for the aggregates that have them.
    pub(crate) fn bounds(self) -> Option<(f64, f64)> {
        match self {
            DpKind::Sum { lo, hi }
            | DpKind::Avg { lo, hi }
            | DpKind::Variance { lo, hi, .. }
            | DpKind::Quantile { lo, hi, .. } => Some((lo, hi)),
            DpKind::Count | DpKind::CountUnits | DpKind::Magnitudes => None,
        }
    }

    /// This aggregate clamped to `lo` and `hi` instead.
    pub(crate) fn with_bounds(self, lo: f64, hi: f64) -> DpKind {
        match self {
            DpKind::Sum { .. } => DpKind::Sum { lo, hi },
            DpKind::Avg { .. } => DpKind::Avg { lo, hi },
            DpKind::Variance { sample, root, .. } => DpKind::Variance {
                lo,
                hi,
                sample,
                root,
            },
            DpKind::Quantile { p, .. } => DpKind::Quantile { lo, hi, p },
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DpAggregate {
    pub kind: DpKind,
    /// The argument, over the checked input.
    pub value: Option<Expr>,
    /// Whether the bounds of `kind` are to be estimated under DP when the
    /// query runs (`crate::dp::approx_bounds`): until then they are [0, 1].
    pub auto: bool,
}

/// Where an answer column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DpSource {
    Key(usize),
    Aggregate(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct DpChecked {
    /// The checked input, with its hidden unit columns.
    pub input: LogicalPlan,
    /// The hidden column holding the privacy unit of the protected dataset.
    pub unit: String,
    /// Whether that unit never repeats in the input: each unit then has one
    /// row, and bounding its contribution needs no work.
    pub unit_unique: bool,
    pub keys: Vec<DpKey>,
    pub aggregates: Vec<DpAggregate>,
    /// Every column the aggregate releases (keys, then aggregates), named
    /// as the answer names it where the answer passes it on unchanged.
    pub outputs: Vec<(String, DpSource)>,
    /// What runs on the noisy answer.
    pub post: PostProcessing,
    /// Datasets of every protected scan in the plan: their budgets pay.
    pub dp_datasets: Vec<String>,
    pub datasets: BTreeSet<String>,
    pub fields: BTreeSet<String>,
}

/// Checks `plan` as a DP query. With `auto_bounds`, every aggregate that
/// clamps estimates its bounds when the query runs, declared ones or not;
/// without, only those without declared bounds do.
pub(crate) fn check_dp(
    ctx: &Context<'_>,
    plan: &LogicalPlan,
    auto_bounds: bool,
) -> Result<DpChecked, QueryError> {
    let (post, agg) = crate::dp::post::split(plan, SHAPE)?;
    let mut stage = Stage::new(ctx);
    stage.fields.below_dp = true;
    let input = stage.plan(&agg.input, &[])?;
    let scope = Scope {
        schema: agg.input.schema(),
        cols: &input.cols,
    };

    let mut keys = Vec::with_capacity(agg.group_expr.len());
    for g in &agg.group_expr {
        if matches!(g, Expr::GroupingSet(_)) {
            return Err(invalid("ROLLUP, CUBE and GROUPING SETS are not supported"));
        }
        let lineage = stage.lineage(g, &scope, &[])?;
        stage.fields.check_influence(&lineage, "GROUP BY")?;
        stage.check_functions(g, &scope, &[], &Lineage::default())?;
        let (domain, column) = match (unalias(g), lineage.uses()) {
            (Expr::Column(_), [u]) => {
                let f = stage.fields.get(u.field);
                let generalized = matches!(f.level, Level::Generalized(_));
                let spec = ctx_field(ctx, &f.dataset, &f.field);
                if generalized {
                    (None, None)
                } else {
                    (
                        spec.and_then(|s| s.domain.clone()),
                        Some((f.dataset.clone(), f.field.clone())),
                    )
                }
            }
            _ => (None, None),
        };
        keys.push(DpKey {
            expr: stage.rewrite(g, &scope)?,
            domain,
            column,
        });
    }

    let mut aggregates = Vec::with_capacity(agg.aggr_expr.len());
    for e in &agg.aggr_expr {
        let Expr::AggregateFunction(f) = unalias(e) else {
            return Err(invalid(SHAPE));
        };
        let name = f.func.name();
        let quantile = matches!(
            name,
            "median" | "approx_median" | "percentile_cont" | "approx_percentile_cont"
        );
        // WITHIN GROUP (ORDER BY x) puts x first among the arguments and
        // in the ordering; no other ordering is understood.
        let ordered = f.params.order_by.as_slice();
        if f.params.filter.is_some()
            || !(ordered.is_empty()
                || quantile
                    && ordered.len() == 1
                    && f.params.args.first() == Some(&ordered[0].expr))
        {
            return Err(invalid(
                "FILTER and ORDER BY inside aggregates are not available under differential privacy",
            ));
        }
        let descending = ordered.first().is_some_and(|s| !s.asc);
        let (arg, p) = match (quantile, f.params.args.as_slice()) {
            (false, [arg]) => (arg, None),
            (true, [arg]) if name.ends_with("median") => (arg, Some(0.5)),
            // APPROX_PERCENTILE_CONT's third argument sizes its digest: the
            // histogram here has its own.
            (true, [arg, p] | [arg, p, Expr::Literal(..)]) if !name.ends_with("median") => {
                let p = quantile_level(p)?;
                (arg, Some(if descending { 1.0 - p } else { p }))
            }
            _ => return Err(invalid(SHAPE)),
        };
        let lineage = stage.lineage(arg, &scope, &[])?;
        stage.check_functions(arg, &scope, &[], &Lineage::default())?;
        let literal = matches!(arg, Expr::Literal(..));
        let field = match lineage.uses() {
            [u] if matches!(unalias(arg), Expr::Column(_)) => {
                Some(stage.fields.get(u.field).clone())
            }
            _ => None,
        };
        let bounds = field
            .as_ref()
            .and_then(|f| ctx_field(ctx, &f.dataset, &f.field))
            .and_then(|s| s.bounds);
        let mut estimated = false;
        let (kind, value) = match (name, f.params.distinct) {
            ("count", false) if literal => (DpKind::Count, None),
            ("count", false) => (DpKind::Count, Some(stage.rewrite(arg, &scope)?)),
            ("count", true) if field.as_ref().is_some_and(|f| f.unit) => (DpKind::CountUnits, None),
            (
                "sum"
                | "avg"
                | "var"
                | "var_samp"
                | "var_pop"
                | "stddev"
                | "stddev_samp"
                | "stddev_pop"
                | "median"
                | "approx_median"
                | "percentile_cont"
                | "approx_percentile_cont",
                false,
            ) => {
                // Declared bounds, unless the caller asks for automatic
                // ones; automatic ones for any other numeric argument.
                let (lo, hi, auto) = match bounds {
                    Some((lo, hi)) if !auto_bounds => (lo, hi, false),
                    _ => {
                        let numeric = arg
                            .get_type(agg.input.schema())
                            .is_ok_and(|t| t.is_numeric());
                        if !numeric {
                            return Err(deny(
                                field.map(|f| f.qualified()),
                                "dp",
                                format!("`{name}` under differential privacy needs a number"),
                            ));
                        }
                        (0.0, 1.0, true)
                    }
                };
                let kind = match (name, p) {
                    (_, Some(p)) => DpKind::Quantile { lo, hi, p },
                    ("sum", _) => DpKind::Sum { lo, hi },
                    ("avg", _) => DpKind::Avg { lo, hi },
                    _ => DpKind::Variance {
                        lo,
                        hi,
                        sample: !name.ends_with("_pop"),
                        root: name.starts_with("stddev"),
                    },
                };
                estimated = auto;
                (kind, Some(stage.rewrite(arg, &scope)?))
            }
            _ => {
                return Err(deny(
                    field.map(|f| f.qualified()),
                    "dp",
                    format!(
                        "`{name}{}` is not available under differential privacy; use COUNT(*), COUNT(field), COUNT(DISTINCT privacy unit), SUM, AVG, VAR, STDDEV, MEDIAN or PERCENTILE_CONT",
                        if f.params.distinct { " DISTINCT" } else { "" }
                    ),
                ));
            }
        };
        aggregates.push(DpAggregate {
            kind,
            value,
            auto: estimated,
        });
    }

    let groups = agg.group_expr.len();
    let outputs = post
        .names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let source = if i < groups {
                DpSource::Key(i)
            } else {
                DpSource::Aggregate(i - groups)
            };
            (name, source)
        })
        .collect();

    // A chain of joins on units multiplies one person's rows by their own
    // number at each link: two protected scans at most (`dp_units`).
    if input.units.iter().filter(|u| u.protected).count() > 2 {
        return Err(deny(
            None,
            super::dp_units::RULE,
            "at most two scans of data protected by differential privacy may meet in one query; each join on the privacy units multiplies one person's rows, and the query's running time with them",
        ));
    }
    let dp_datasets = stage.charged()?;
    // Every protected unit in the input is equal to this one on every row
    // (`dp_units`), and the first is never NULL where a row was kept.
    let (unit, unit_unique) = input
        .units
        .iter()
        .find(|u| u.protected)
        .map(|u| (u.name.clone(), u.unique))
        .ok_or_else(|| deny(None, super::dp_units::RULE, "the privacy unit cannot be followed to the aggregate; aggregate directly over the tables"))?;
    Ok(DpChecked {
        input: input.plan,
        unit,
        unit_unique,
        keys,
        aggregates,
        outputs,
        post,
        dp_datasets,
        datasets: stage.datasets,
        fields: stage.touched,
    })
}

impl DpChecked {
    /// The estimation of the automatic bounds: the same input without
    /// keys, one histogram of magnitudes per aggregate with automatic
    /// bounds (in their order); `None` when there is none.
    pub(crate) fn estimation(&self) -> Option<DpChecked> {
        let aggregates: Vec<DpAggregate> = self
            .aggregates
            .iter()
            .filter(|a| a.auto)
            .map(|a| DpAggregate {
                kind: DpKind::Magnitudes,
                value: a.value.clone(),
                auto: false,
            })
            .collect();
        if aggregates.is_empty() {
            return None;
        }
        Some(DpChecked {
            keys: Vec::new(),
            outputs: (0..aggregates.len())
                .map(|j| (format!("__veil_bounds{j}"), DpSource::Aggregate(j)))
                .collect(),
            aggregates,
            ..self.clone()
        })
    }

    /// This query with the automatic bounds set: `bounds` holds one pair per
    /// aggregate with automatic bounds, in their order.
    pub(crate) fn with_bounds(&self, bounds: &[(f64, f64)]) -> DpChecked {
        let mut out = self.clone();
        let mut next = bounds.iter();
        for a in out.aggregates.iter_mut().filter(|a| a.auto) {
            if let Some(&(lo, hi)) = next.next() {
                // A sum's noise follows the larger magnitude of its bounds,
                // so taking 0 in costs nothing and spares small values
                // being clamped up to the lowest bin's edge.
                let (lo, hi) = match a.kind {
                    DpKind::Sum { .. } | DpKind::Avg { .. } => (lo.min(0.0), hi.max(0.0)),
                    _ => (lo, hi),
                };
                a.kind = a.kind.with_bounds(lo, hi);
            }
        }
        out
    }
}

/// The level of a quantile: a literal number from 0 to 1.
fn quantile_level(p: &Expr) -> Result<f64, QueryError> {
    let level = match unalias(p) {
        Expr::Literal(v, _) => v.cast_to(&arrow::datatypes::DataType::Float64).ok(),
        _ => None,
    };
    match level {
        Some(datafusion::scalar::ScalarValue::Float64(Some(p))) if (0.0..=1.0).contains(&p) => {
            Ok(p)
        }
        _ => Err(invalid(
            "the level of a percentile under differential privacy must be a literal number from 0 to 1",
        )),
    }
}

fn ctx_field<'c>(
    ctx: &'c Context<'_>,
    dataset: &str,
    field: &str,
) -> Option<&'c veil_policies::FieldSpec> {
    ctx.manifests
        .iter()
        .find(|m| m.name == dataset)
        .and_then(|m| m.field(field))
}
