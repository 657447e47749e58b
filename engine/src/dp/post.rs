//! Post-processing of a DP answer: HAVING, ORDER BY, LIMIT, OFFSET, a
//! derived table's alias and any arithmetic over the released keys and
//! aggregates, run only on the noisy answer.
//!
//! Post-processing is free: whatever a function of an (ε, δ)-DP answer
//! computes without reading the data again is (ε, δ)-DP as well (Dwork and
//! Roth 2014, Proposition 2.1). So the rewrite guarantees, by construction,
//! that the nodes above the DP aggregate read nothing but the answer:
//!
//! - the query is split at its aggregate: the nodes above it (projections,
//!   filters, sorts, limits and aliases only) are kept aside, and only the
//!   aggregate and its input are bounded and noised;
//! - none of those nodes may hold a subquery, an aggregate or window
//!   function, an outer reference or a placeholder: anything that could
//!   read a table or act on rows other than the answer's is refused;
//! - after the noise, the kept nodes are rebuilt over an in-memory table of
//!   the released batch, which is then the plan's only leaf.
//!
//! A HAVING clause, for example, filters noisy aggregates, never the exact
//! ones, and an aggregate it names that the SELECT list does not is noised
//! (and paid for) like the others.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder};

use crate::error::{QueryError, invalid};

/// The nodes above a DP query's aggregate.
#[derive(Debug, Clone)]
pub(crate) struct PostProcessing {
    /// Top-down, each as planned over its original input.
    nodes: Vec<LogicalPlan>,
    /// The aggregate's output: the released columns, in order.
    released: DFSchemaRef,
    /// How many of them are keys (the rest are aggregates).
    groups: usize,
}

const NODES: &str = "above a differentially private aggregate only projections, HAVING, ORDER BY, LIMIT and OFFSET (and derived-table aliases) are available";

/// Splits `plan` at its DP aggregate: the post-processing above it, and the
/// aggregate. Refuses what post-processing may not hold.
pub(crate) fn split<'a>(
    plan: &'a LogicalPlan,
    shape: &'static str,
) -> Result<(PostProcessing, &'a Aggregate), QueryError> {
    let mut nodes = Vec::new();
    let mut node = plan;
    let aggregate = loop {
        match node {
            LogicalPlan::Aggregate(a) => break a,
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_) => {
                check_node(node)?;
                nodes.push(node.clone());
                let [input] = node.inputs()[..] else {
                    return Err(invalid(shape));
                };
                node = input;
            }
            LogicalPlan::Window(_) | LogicalPlan::Distinct(_) if !nodes.is_empty() => {
                return Err(invalid(NODES));
            }
            _ => return Err(invalid(shape)),
        }
    };
    Ok((
        PostProcessing {
            nodes,
            released: aggregate.schema.clone(),
            groups: aggregate.group_expr.len(),
        },
        aggregate,
    ))
}

/// A post-processing node may compute only on the values of its input row
/// (or sort and cut its input): nothing that reads a table or other rows.
fn check_node(node: &LogicalPlan) -> Result<(), QueryError> {
    let mut refused = None;
    node.apply_expressions(|e| {
        e.apply(|e| {
            let what = match e {
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                    Some("a subquery")
                }
                Expr::OuterReferenceColumn(..) => Some("an outer reference"),
                Expr::Placeholder(_) => Some("a parameter"),
                Expr::AggregateFunction(_) => Some("an aggregate"),
                Expr::WindowFunction(_) => Some("a window function"),
                Expr::Column(_)
                | Expr::Alias(_)
                | Expr::Literal(..)
                | Expr::BinaryExpr(_)
                | Expr::Like(_)
                | Expr::SimilarTo(_)
                | Expr::Not(_)
                | Expr::IsNotNull(_)
                | Expr::IsNull(_)
                | Expr::IsTrue(_)
                | Expr::IsFalse(_)
                | Expr::IsUnknown(_)
                | Expr::IsNotTrue(_)
                | Expr::IsNotFalse(_)
                | Expr::IsNotUnknown(_)
                | Expr::Negative(_)
                | Expr::Between(_)
                | Expr::Case(_)
                | Expr::Cast(_)
                | Expr::TryCast(_)
                | Expr::ScalarFunction(_)
                | Expr::InList(_) => None,
                _ => Some("an expression the post-processing does not know"),
            };
            Ok(match what {
                Some(w) => {
                    refused = Some(w);
                    TreeNodeRecursion::Stop
                }
                None => TreeNodeRecursion::Continue,
            })
        })
    })
    .map_err(|e| QueryError::Internal {
        detail: e.to_string(),
    })?;
    match refused {
        Some(what) => Err(invalid(format!(
            "{what} above a differentially private aggregate would read more than the noisy answer; post-processing (HAVING, ORDER BY, LIMIT, arithmetic) may use only the released keys and aggregates"
        ))),
        None => Ok(()),
    }
}

impl PostProcessing {
    /// For each released column, the answer's name for it when a column of
    /// the answer is that column unchanged; otherwise its own name.
    pub(crate) fn names(&self) -> Vec<String> {
        self.passed_on()
            .into_iter()
            .zip(self.released.fields())
            .map(|(name, field)| name.unwrap_or_else(|| field.name().clone()))
            .collect()
    }

    /// For each released column, the answer's name for it when a column of
    /// the answer is that column unchanged.
    fn passed_on(&self) -> Vec<Option<String>> {
        self.released
            .fields()
            .iter()
            .map(|field| {
                let mut name = Some(field.name().clone());
                for node in self.nodes.iter().rev() {
                    let Some(current) = &name else { break };
                    if let LogicalPlan::Projection(p) = node {
                        name =
                            p.expr.iter().zip(p.schema.fields()).find_map(|(e, f)| {
                                match unalias(e) {
                                    Expr::Column(c) if &c.name == current => Some(f.name().clone()),
                                    _ => None,
                                }
                            });
                    }
                }
                name
            })
            .collect()
    }

    /// The post-processing as a plan over `released`, a batch with the
    /// released columns in order (their names are not used): its only leaf
    /// is an in-memory table of that batch. Columns of the batch past the
    /// released ones are each aggregate's intervals, `__veil_ci{j}_lo` and
    /// `_hi`, carried through every node: the answer names them
    /// `{column}_ci95_lo` and `_hi` after each aggregate it passes on
    /// unchanged, and drops those of aggregates it only computes with.
    pub(crate) fn plan_over(&self, released: RecordBatch) -> Result<LogicalPlan, QueryError> {
        let positional = |i: usize| format!("__veil_released_{i}");
        let width = self.released.fields().len();
        let schema: SchemaRef = Arc::new(Schema::new(
            released
                .schema()
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = if i < width {
                        positional(i)
                    } else {
                        f.name().clone()
                    };
                    Field::new(name, f.data_type().clone(), true)
                })
                .collect::<Vec<_>>(),
        ));
        let carried: Vec<String> = schema.fields()[width.min(schema.fields().len())..]
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let carry = || {
            carried
                .iter()
                .map(|c| Expr::Column(Column::new_unqualified(c)))
                .collect::<Vec<_>>()
        };
        let batch =
            RecordBatch::try_new(schema.clone(), released.columns().to_vec()).map_err(internal)?;
        let table = MemTable::try_new(schema, vec![vec![batch]]).map_err(internal)?;
        // The released columns under the aggregate's own (qualified) names,
        // so that the kept nodes' expressions resolve as they did.
        let mut renamed: Vec<Expr> = self
            .released
            .iter()
            .enumerate()
            .map(|(i, (qualifier, field))| {
                Expr::Column(Column::new_unqualified(positional(i)))
                    .alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        renamed.extend(carry());
        let mut plan =
            LogicalPlanBuilder::scan("__veil_released", provider_as_source(Arc::new(table)), None)
                .and_then(|b| b.project(renamed))
                .and_then(|b| b.build())
                .map_err(planning)?;
        for node in self.nodes.iter().rev() {
            let mut exprs = node.expressions();
            if matches!(node, LogicalPlan::Projection(_)) {
                exprs.extend(carry());
            }
            plan = node.with_new_exprs(exprs, vec![plan]).map_err(planning)?;
        }
        if carried.is_empty() {
            return Ok(plan);
        }
        // The answer's columns, then the intervals of those it passes on.
        let mut out: Vec<Expr> = plan
            .schema()
            .iter()
            .filter(|(_, f)| !carried.contains(f.name()))
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        let answer: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !carried.contains(n))
            .collect();
        let names = self.passed_on();
        for (j, name) in names[self.groups..].iter().enumerate() {
            let Some(name) = name
                .as_ref()
                .filter(|n| plan.schema().has_column_with_unqualified_name(n))
            else {
                continue;
            };
            for side in ["lo", "hi"] {
                let label = format!("{name}_ci95_{side}");
                if answer.contains(&label) {
                    return Err(invalid(crate::error::redact(&format!(
                        "the answer has a column `{label}` already: it would name an interval; rename it"
                    ))));
                }
                out.push(
                    Expr::Column(Column::new_unqualified(format!("__veil_ci{j}_{side}")))
                        .alias(label),
                );
            }
        }
        LogicalPlanBuilder::from(plan)
            .project(out)
            .and_then(|b| b.build())
            .map_err(planning)
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal {
        detail: e.to_string(),
    }
}

/// The caller's post-processing does not plan over the released columns:
/// a type error in their own SQL (the message names columns only).
fn planning(e: datafusion::error::DataFusionError) -> QueryError {
    invalid(crate::error::redact(&format!(
        "the post-processing of the noisy answer cannot be planned: {e}"
    )))
}
