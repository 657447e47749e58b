//! Aggregates over aggregate-only fields: only COUNT, SUM and AVG (MIN and
//! MAX where the grade allows), and only groups with at least k distinct
//! privacy units are released. Units are counted, not rows, so self-joins
//! and UNION ALL cannot multiply one person into a crowd; rows whose privacy
//! unit is NULL do not count and are left out.
//!
//! ```text
//! Projection: the original columns
//!   Filter: __veil_k_1 >= k AND ...
//!     Aggregate: groups, aggregates, veil_units_at_least(__veil_unit_N) AS __veil_k_1, ...
//!       Filter: __veil_unit_N IS NOT NULL AND ...
//! ```
//!
//! `veil_units_at_least` counts distinct units only up to k. A unit column
//! straight from a dataset with one row per unit (and no join since) needs
//! neither: the rows are counted, and no row lacks a unit.

use std::sync::Arc;

use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, Filter, LogicalPlan, Projection, utils::conjunction,
};
use datafusion::prelude::{col, lit};
use veil_policies::Level;

use super::lineage::Lineage;
use super::units_at_least::units_at_least;
use super::{Out, Scope, Stage, plan_error, unalias};
use crate::error::{QueryError, deny, invalid};

const ALWAYS_ALLOWED: [&str; 3] = ["count", "sum", "avg"];

impl Stage<'_> {
    pub(super) fn enforce_k(
        &mut self,
        agg: &Aggregate,
        outer: &[Scope<'_>],
    ) -> Result<Out, QueryError> {
        let input = self.plan(&agg.input, outer)?;
        self.dp_keeps_units(&input, "an aggregate below the differentially private one")?;
        let scope = Scope {
            schema: agg.input.schema(),
            cols: &input.cols,
        };
        let mut cols = Vec::with_capacity(agg.group_expr.len() + agg.aggr_expr.len());
        let mut group = Vec::with_capacity(agg.group_expr.len());
        for g in &agg.group_expr {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err(invalid("ROLLUP, CUBE and GROUPING SETS are not supported"));
            }
            let lineage = self.lineage(g, &scope, outer)?;
            self.fields.check_influence(&lineage, "GROUP BY")?;
            self.check_functions(g, &scope, outer, &Lineage::default())?;
            cols.push(lineage);
            group.push(self.rewrite(g, &scope)?);
        }

        // The aggregate-only uses this aggregate consumes: from its arguments
        // and from the existence of its input rows.
        let mut consumed = input.rows.clone();
        let mut aggregates = Vec::with_capacity(agg.aggr_expr.len());
        // Per aggregate over aggregate-only fields: its rewritten argument
        // and the datasets of those fields, whose units must have a value.
        let mut valued: Vec<(Expr, Vec<String>)> = Vec::new();
        for e in &agg.aggr_expr {
            let Expr::AggregateFunction(f) = unalias(e) else {
                return Err(invalid(
                    "an aggregate expression this version does not understand",
                ));
            };
            let name = f.func.name().to_owned();
            let mut args = Lineage::default();
            for a in &f.params.args {
                args.extend(&self.lineage(a, &scope, outer)?);
            }
            let mut keys = Lineage::default();
            if let Some(filter) = &f.params.filter {
                keys.extend(&self.lineage(filter, &scope, outer)?);
            }
            for s in &f.params.order_by {
                keys.extend(&self.lineage(&s.expr, &scope, outer)?);
            }
            self.fields
                .check_influence(&keys, &format!("the FILTER or ORDER BY of `{name}`"))?;
            if f.params.filter.is_some()
                && let Some(field) = input
                    .rows
                    .raw()
                    .map(|id| self.fields.get(id))
                    .find(|f| matches!(f.level, Level::Aggregate { .. }))
            {
                return Err(deny(
                    Some(field.qualified()),
                    super::aggregate_arguments::RULE,
                    format!(
                        "the rows of `{}` are aggregate-only for you: a FILTER on `{name}` would let a few of them make the value of a large group; choose the rows with WHERE",
                        field.dataset
                    ),
                ));
            }
            let mut datasets: Vec<String> = Vec::new();
            for id in args.raw() {
                let field = self.fields.get(id);
                if !matches!(field.level, Level::Aggregate { .. }) {
                    continue;
                }
                self.check_aggregate_argument(f, field)?;
                if input
                    .units
                    .iter()
                    .any(|u| u.dataset == field.dataset && u.repeated)
                {
                    return Err(self.refuse_repeated(field));
                }
                if !datasets.contains(&field.dataset) {
                    datasets.push(field.dataset.clone());
                }
                let min_max = matches!(name.as_str(), "min" | "max") && field.allow_min_max;
                if !(ALWAYS_ALLOWED.contains(&name.as_str()) || min_max) {
                    return Err(deny(
                        Some(field.qualified()),
                        "aggregate",
                        format!(
                            "field `{}` is aggregate-only for you: `{name}` cannot aggregate it (allowed: COUNT, SUM, AVG{})",
                            field.qualified(),
                            if field.allow_min_max {
                                ", MIN, MAX"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                if name == "count" && f.params.distinct && field.identifier {
                    return Err(deny(
                        Some(field.qualified()),
                        "aggregate",
                        format!(
                            "COUNT(DISTINCT) of identifier `{}` is not released",
                            field.qualified()
                        ),
                    ));
                }
            }
            self.check_functions(e, &scope, outer, &Lineage::default())?;
            if let (false, [arg, ..]) = (datasets.is_empty(), f.params.args.as_slice()) {
                valued.push((self.rewrite_unnamed(arg, &scope)?, datasets));
            }
            consumed.extend(&args);
            cols.push(args.aggregated());
            aggregates.push(self.rewrite(e, &scope)?);
        }

        let mut k = None;
        let mut needs: Vec<String> = Vec::new();
        for id in consumed.raw() {
            let field = self.fields.get(id);
            match field.level {
                Level::Aggregate { k: field_k } => {
                    k = Some(k.unwrap_or(0).max(field_k));
                    if !needs.contains(&field.dataset) {
                        needs.push(field.dataset.clone());
                    }
                }
                Level::Dp => {
                    return Err(deny(
                        Some(field.qualified()),
                        "dp",
                        format!(
                            "field `{}` is available to you only through differential privacy, which this query does not request (send `epsilon`)",
                            field.qualified()
                        ),
                    ));
                }
                _ => {}
            }
        }
        let rows = Lineage::union([
            &input.rows.aggregated(),
            &Lineage::union(cols[..group.len()].iter()),
        ]);

        let Some(k) = k else {
            let plan = LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::new(input.plan), group, aggregates).map_err(plan_error)?,
            );
            let unit_of = vec![None; cols.len()];
            return Ok(Out {
                plan,
                cols,
                rows,
                units: Vec::new(),
                unit_of,
                protected: input.protected,
            });
        };
        for dataset in &needs {
            if !input.units.iter().any(|u| &u.dataset == dataset) {
                return Err(deny(
                    None,
                    "aggregate",
                    format!(
                        "the k threshold on `{dataset}` cannot be enforced through UNION or DISTINCT; aggregate each part directly over its table"
                    ),
                ));
            }
        }
        self.k = Some(self.k.unwrap_or(0).max(k));
        // Rows without a unit are left out of every aggregate. A unique unit
        // column has none: its dataset was checked to have a unit in every row.
        let known = conjunction(
            input
                .units
                .iter()
                .filter(|u| !u.unique)
                .map(|u| col(u.name.as_str()).is_not_null()),
        );
        let filtered = match known {
            Some(known) => LogicalPlan::Filter(
                Filter::try_new(known, Arc::new(input.plan)).map_err(plan_error)?,
            ),
            None => input.plan,
        };
        let mut counts: Vec<String> = (0..input.units.len())
            .map(|i| format!("__veil_k_{}", i + 1))
            .collect();
        for (u, name) in input.units.iter().zip(&counts) {
            // Where every row has its own unit, counting rows counts units;
            // otherwise distinct units are counted, up to k.
            let units = if u.unique {
                count(lit(1i64))
            } else {
                units_at_least(k).call(vec![col(u.name.as_str())])
            };
            aggregates.push(units.alias(name));
        }
        // Each value is made only by the units with a value in its
        // argument: they, too, must be at least k (`aggregate_arguments`).
        for (j, (arg, datasets)) in valued.iter().enumerate() {
            for (i, u) in input.units.iter().enumerate() {
                if !datasets.contains(&u.dataset) {
                    continue;
                }
                let name = format!("__veil_k_{}_{}", i + 1, j + 1);
                let units = if u.unique {
                    count(arg.clone())
                } else {
                    units_at_least(k)
                        .call(vec![col(u.name.as_str())])
                        .filter(arg.clone().is_not_null())
                        .build()
                        .map_err(plan_error)?
                };
                aggregates.push(units.alias(&name));
                counts.push(name);
            }
        }
        let aggregated = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::new(filtered), group, aggregates).map_err(plan_error)?,
        );
        let enough = conjunction(
            counts
                .iter()
                .map(|c| col(c.as_str()).gt_eq(lit(i64::from(k)))),
        )
        .unwrap_or(lit(true));
        let released =
            LogicalPlan::Filter(Filter::try_new(enough, Arc::new(aggregated)).map_err(plan_error)?);
        let original: Vec<Expr> = agg.schema.columns().into_iter().map(Expr::Column).collect();
        let plan = LogicalPlan::Projection(
            Projection::try_new(original, Arc::new(released)).map_err(plan_error)?,
        );
        let unit_of = vec![None; cols.len()];
        Ok(Out {
            plan,
            cols,
            rows,
            units: Vec::new(),
            unit_of,
            protected: input.protected,
        })
    }
}
