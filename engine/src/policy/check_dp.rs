//! Checks a differentially private query: one aggregate over a checked
//! input, whose keys and aggregates the DP rewrite (`crate::dp::rewrite`)
//! knows how to bound and noise. Anything else is refused: HAVING, ORDER BY
//! and LIMIT would act on exact values before the noise, and arithmetic on
//! aggregates would run before the noise too.

use std::collections::BTreeSet;

use datafusion::logical_expr::{Expr, LogicalPlan};
use veil_policies::Level;

use super::lineage::Lineage;
use super::{Context, Scope, Stage, unalias};
use crate::error::{QueryError, deny, invalid};

const SHAPE: &str = "a differentially private query is SELECT keys, aggregates FROM ... [WHERE ...] [GROUP BY keys] with COUNT(*), COUNT(field), COUNT(DISTINCT privacy unit), SUM(field) or AVG(field); HAVING, ORDER BY, LIMIT and arithmetic on aggregates are not available because they would act before the noise";

/// A group key.
#[derive(Debug, Clone)]
pub(crate) struct DpKey {
    /// Over the checked input.
    pub expr: Expr,
    /// The declared public domain, when the key is a field that has one.
    pub domain: Option<Vec<String>>,
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
}

#[derive(Debug, Clone)]
pub(crate) struct DpAggregate {
    pub kind: DpKind,
    /// The argument, over the checked input.
    pub value: Option<Expr>,
}

/// Where an answer column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DpSource {
    Key(usize),
    Aggregate(usize),
}

#[derive(Debug)]
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
    pub outputs: Vec<(String, DpSource)>,
    /// Datasets of every protected scan in the plan: their budgets pay.
    pub dp_datasets: Vec<String>,
    pub datasets: BTreeSet<String>,
    pub fields: BTreeSet<String>,
}

pub(crate) fn check_dp(ctx: &Context<'_>, plan: &LogicalPlan) -> Result<DpChecked, QueryError> {
    let (projection, agg) = match plan {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Aggregate(a) => (Some(p), a),
            _ => return Err(invalid(SHAPE)),
        },
        LogicalPlan::Aggregate(a) => (None, a),
        _ => return Err(invalid(SHAPE)),
    };
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
        let domain = match (unalias(g), lineage.uses()) {
            (Expr::Column(_), [u]) => {
                let f = stage.fields.get(u.field);
                let generalized = matches!(f.level, Level::Generalized(_));
                let spec = ctx_field(ctx, &f.dataset, &f.field);
                if generalized {
                    None
                } else {
                    spec.and_then(|s| s.domain.clone())
                }
            }
            _ => None,
        };
        keys.push(DpKey {
            expr: stage.rewrite(g, &scope)?,
            domain,
        });
    }

    let mut aggregates = Vec::with_capacity(agg.aggr_expr.len());
    for e in &agg.aggr_expr {
        let Expr::AggregateFunction(f) = unalias(e) else {
            return Err(invalid(SHAPE));
        };
        if f.params.filter.is_some() || !f.params.order_by.is_empty() {
            return Err(invalid(
                "FILTER and ORDER BY inside aggregates are not available under differential privacy",
            ));
        }
        let name = f.func.name();
        let [arg] = f.params.args.as_slice() else {
            return Err(invalid(SHAPE));
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
        let (kind, value) = match (name, f.params.distinct) {
            ("count", false) if literal => (DpKind::Count, None),
            ("count", false) => (DpKind::Count, Some(stage.rewrite(arg, &scope)?)),
            ("count", true) if field.as_ref().is_some_and(|f| f.unit) => (DpKind::CountUnits, None),
            ("sum" | "avg", false) => {
                let Some((lo, hi)) = bounds else {
                    return Err(deny(
                        field.map(|f| f.qualified()),
                        "dp",
                        format!(
                            "`{name}` under differential privacy needs a field with declared bounds; clamping to them bounds each person's contribution"
                        ),
                    ));
                };
                let kind = if name == "sum" {
                    DpKind::Sum { lo, hi }
                } else {
                    DpKind::Avg { lo, hi }
                };
                (kind, Some(stage.rewrite(arg, &scope)?))
            }
            _ => {
                return Err(deny(
                    field.map(|f| f.qualified()),
                    "dp",
                    format!(
                        "`{name}{}` is not available under differential privacy; use COUNT(*), COUNT(field), COUNT(DISTINCT privacy unit), SUM or AVG",
                        if f.params.distinct { " DISTINCT" } else { "" }
                    ),
                ));
            }
        };
        aggregates.push(DpAggregate { kind, value });
    }

    let groups = agg.group_expr.len();
    let mut outputs = Vec::new();
    match projection {
        Some(p) => {
            for (e, field) in p.expr.iter().zip(p.schema.fields()) {
                let Expr::Column(c) = unalias(e) else {
                    return Err(invalid(SHAPE));
                };
                let i = agg
                    .schema
                    .maybe_index_of_column(c)
                    .ok_or_else(|| invalid(SHAPE))?;
                let source = if i < groups {
                    DpSource::Key(i)
                } else {
                    DpSource::Aggregate(i - groups)
                };
                outputs.push((field.name().clone(), source));
            }
        }
        None => {
            for (i, field) in agg.schema.fields().iter().enumerate() {
                let source = if i < groups {
                    DpSource::Key(i)
                } else {
                    DpSource::Aggregate(i - groups)
                };
                outputs.push((field.name().clone(), source));
            }
        }
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
        dp_datasets,
        datasets: stage.datasets,
        fields: stage.touched,
    })
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
