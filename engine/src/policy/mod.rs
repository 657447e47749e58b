//! The policy stage: every logical plan is checked and rewritten here before
//! DataFusion may optimise or run it. It is not an optimizer rule: it changes
//! what a query means, and it cannot be skipped. Anything it does not
//! understand is refused.
//!
//! One walk over the plan, subqueries included, computes for every output
//! column (and for the existence of rows) the protected source fields it
//! depends on, checks every use against the caller's disclosure level, and
//! rewrites the plan:
//! - [`protect_scan`]: masks, pseudonyms and generalisations replace the
//!   values at each scan; region row filters go under them.
//! - [`enforce_k`]: aggregates over aggregate-only fields keep only groups
//!   with at least k distinct privacy units.
//! - [`expr`]: error oracles closed in every expression.

mod aggregate_arguments;
mod check_dp;
mod conditions;
mod dp_charge;
mod dp_subqueries;
pub(crate) mod dp_units;
mod enforce_k;
mod expr;
#[cfg(test)]
mod k_property;
mod lineage;
mod protect_scan;
#[cfg(test)]
mod sensitivity;
#[cfg(test)]
pub(crate) mod testing;
mod units_at_least;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Operator};
use datafusion::logical_expr::{
    Distinct, Expr, Filter, Join, JoinType, LogicalPlan, Projection, Subquery, SubqueryAlias,
    Union, Window,
};
use datafusion::prelude::lit;
use veil_policies::{Level, Policy, Principal};

use crate::error::{QueryError, deny, invalid};
use crate::protect::PseudonymKey;
pub(crate) use check_dp::{DpChecked, DpKind, DpSource, QUANTILE_BINS, check_dp};
use lineage::Fields;
pub(crate) use lineage::Lineage;

/// Who asks, and what the stage needs to protect their answer.
pub(crate) struct Context<'a> {
    pub policy: &'a Policy,
    /// The manifests of the registered datasets (bounds, domains).
    pub manifests: &'a [&'a veil_policies::DatasetManifest],
    pub principal: &'a Principal,
    pub today: NaiveDate,
    /// The key of the caller's pseudonyms (principal and purpose).
    pub pseudonym_key: Arc<PseudonymKey>,
}

impl Context<'_> {
    /// Whether the grade lets MIN and MAX count as aggregates.
    fn allow_min_max(&self, grade: Option<&str>) -> bool {
        grade
            .and_then(|g| self.policy.grade(g))
            .is_some_and(|g| g.allow_min_max)
    }
}

/// A checked and rewritten plan, with what it touched.
#[derive(Debug)]
pub(crate) struct Checked {
    pub plan: LogicalPlan,
    pub datasets: BTreeSet<String>,
    /// Every field the query referenced, as `dataset.field`.
    pub fields: BTreeSet<String>,
    /// The largest k threshold applied, if any.
    pub k: Option<u32>,
    /// Whether any value was masked, pseudonymised or generalised.
    pub protected: bool,
    /// Columns that `SELECT *` would have returned but the caller may not
    /// see row by row.
    pub omitted: Vec<String>,
}

/// Checks `plan` for the caller in `ctx` and rewrites it. With `wildcard`
/// (the outer SELECT list has `*`), columns that may not be returned are left
/// out rather than refused.
pub(crate) fn check(
    ctx: &Context<'_>,
    plan: &LogicalPlan,
    wildcard: bool,
) -> Result<Checked, QueryError> {
    let mut stage = Stage::new(ctx);
    let out = stage.plan(plan, &[])?;
    let out = stage.strip_units(out)?;
    stage.fields.check_output(&out.rows, "returning its rows")?;
    let mut keep = Vec::new();
    let mut omitted = Vec::new();
    let mut first_refusal = None;
    for (i, (field, lineage)) in plan.schema().fields().iter().zip(&out.cols).enumerate() {
        match stage
            .fields
            .check_output(lineage, &format!("returning column `{}`", field.name()))
        {
            Ok(()) => keep.push(i),
            Err(refusal) if wildcard => {
                omitted.push(field.name().clone());
                first_refusal.get_or_insert(refusal);
            }
            Err(refusal) => return Err(refusal),
        }
    }
    let plan = match (keep.is_empty(), first_refusal) {
        (true, Some(refusal)) => return Err(refusal),
        (false, Some(_)) => {
            let columns = out.plan.schema().columns();
            let exprs: Vec<Expr> = keep
                .iter()
                .map(|&i| Expr::Column(columns[i].clone()))
                .collect();
            LogicalPlan::Projection(
                Projection::try_new(exprs, Arc::new(out.plan)).map_err(plan_error)?,
            )
        }
        _ => out.plan,
    };
    let protected = out.cols.iter().any(|l| stage.fields.shows_protected(l));
    Ok(Checked {
        plan,
        datasets: stage.datasets,
        fields: stage.touched,
        k: stage.k,
        protected,
        omitted,
    })
}

/// The columns of a plan in scope of an expression, with their lineage.
pub(crate) struct Scope<'p> {
    pub schema: &'p DFSchema,
    pub cols: &'p [Lineage],
}

/// A hidden column carrying the privacy unit of one scan up to the
/// aggregates that count distinct units.
#[derive(Debug, Clone)]
struct Unit {
    name: String,
    dataset: String,
    /// No unit value repeats in the rows carrying this column: true from a
    /// scan of a dataset with one row per unit, false past any join.
    unique: bool,
    /// The scan it comes from (numbered from 1 in the walk).
    scan: usize,
    /// Whether a join may have repeated this scan's rows: false until a
    /// join whose other side is matched on its own unique unit.
    repeated: bool,
    /// The identifier kind of the unit (identity number, credit code).
    kind: Option<veil_policies::catalog::IdentifierKind>,
    /// Whether the scan is protected under differential privacy: its
    /// dataset has dp or aggregate-only fields for the caller, so a DP query
    /// over it bounds this unit's rows and charges its budget.
    protected: bool,
}

/// A rewritten plan node. `cols` follows the *original* node's schema; the
/// rewritten plan may carry hidden unit columns after those.
struct Out {
    plan: LogicalPlan,
    cols: Vec<Lineage>,
    /// What the existence of a row depends on.
    rows: Lineage,
    units: Vec<Unit>,
    /// Per column of the original schema: the scan whose privacy unit the
    /// column holds unchanged, if it does.
    unit_of: Vec<Option<usize>>,
    /// Whether a protected scan is below this node (see [`Unit::protected`]).
    protected: bool,
}

impl<'a> Stage<'a> {
    fn new(ctx: &'a Context<'a>) -> Self {
        Stage {
            ctx,
            fields: Fields::default(),
            subqueries: HashMap::new(),
            scans: 0,
            touched: BTreeSet::new(),
            datasets: BTreeSet::new(),
            protected_datasets: BTreeSet::new(),
            k: None,
        }
    }
}

impl Out {
    /// A node over this one that keeps its columns, rows and units.
    fn wrap(
        self,
        build: impl FnOnce(LogicalPlan) -> datafusion::error::Result<LogicalPlan>,
    ) -> Result<Out, QueryError> {
        let plan = build(self.plan).map_err(plan_error)?;
        Ok(Out { plan, ..self })
    }
}

pub(crate) struct Stage<'a> {
    ctx: &'a Context<'a>,
    fields: Fields,
    /// Checked subquery plans by the address of the original, with lineage.
    subqueries: HashMap<usize, (LogicalPlan, Lineage)>,
    scans: usize,
    touched: BTreeSet<String>,
    datasets: BTreeSet<String>,
    /// Datasets of protected scans anywhere in the plan: a DP query charges
    /// every one of them.
    protected_datasets: BTreeSet<String>,
    k: Option<u32>,
}

const UNIT_PREFIX: &str = "__veil_unit_";

impl Stage<'_> {
    fn plan(&mut self, plan: &LogicalPlan, outer: &[Scope<'_>]) -> Result<Out, QueryError> {
        match plan {
            LogicalPlan::TableScan(scan) => self.protect_scan(scan),
            LogicalPlan::Projection(p) => {
                let input = self.plan(&p.input, outer)?;
                let scope = Scope {
                    schema: p.input.schema(),
                    cols: &input.cols,
                };
                let mut cols = Vec::with_capacity(p.expr.len());
                let mut unit_of = Vec::with_capacity(p.expr.len());
                let mut exprs = Vec::with_capacity(p.expr.len() + input.units.len());
                for e in &p.expr {
                    unit_of.push(unit_column(e, p.input.schema(), &input.unit_of));
                    let lineage = self.lineage(e, &scope, outer)?;
                    self.check_passthrough(e, &lineage)?;
                    cols.push(lineage);
                    self.check_functions(e, &scope, outer, &Lineage::default())?;
                    exprs.push(self.rewrite(e, &scope)?);
                }
                exprs.extend(
                    input
                        .units
                        .iter()
                        .map(|u| Expr::Column(u.name.as_str().into())),
                );
                let plan = LogicalPlan::Projection(
                    Projection::try_new(exprs, Arc::new(input.plan)).map_err(plan_error)?,
                );
                Ok(Out {
                    plan,
                    cols,
                    rows: input.rows,
                    units: input.units,
                    unit_of,
                    protected: input.protected,
                })
            }
            LogicalPlan::Filter(f) => {
                let input = self.plan(&f.input, outer)?;
                let scope = Scope {
                    schema: f.input.schema(),
                    cols: &input.cols,
                };
                self.check_condition(&f.predicate, &scope, outer, "a filter (WHERE or HAVING)")?;
                self.check_functions(&f.predicate, &scope, outer, &Lineage::default())?;
                let predicate = self.rewrite(&f.predicate, &scope)?;
                input.wrap(|p| Filter::try_new(predicate, Arc::new(p)).map(LogicalPlan::Filter))
            }
            LogicalPlan::Aggregate(agg) => self.enforce_k(agg, outer),
            LogicalPlan::Window(w) => {
                let input = self.plan(&w.input, outer)?;
                self.dp_keeps_units(&input, "a window function")?;
                let scope = Scope {
                    schema: w.input.schema(),
                    cols: &input.cols,
                };
                let mut cols = input.cols.clone();
                let mut exprs = Vec::with_capacity(w.window_expr.len());
                for e in &w.window_expr {
                    let Expr::WindowFunction(wf) = unalias(e) else {
                        return Err(invalid(
                            "a window expression this version does not understand",
                        ));
                    };
                    let mut value = Lineage::default();
                    for a in &wf.params.args {
                        value.extend(&self.lineage(a, &scope, outer)?);
                    }
                    if let Some(f) = value
                        .raw()
                        .map(|id| self.fields.get(id))
                        .find(|f| matches!(f.level, Level::Aggregate { .. } | Level::Dp))
                    {
                        return Err(deny(
                            Some(f.qualified()),
                            "window",
                            format!(
                                "window function `{}` cannot read field `{}`: it would reveal single records",
                                wf.fun.name(),
                                f.qualified()
                            ),
                        ));
                    }
                    let mut keys = Lineage::default();
                    for p in &wf.params.partition_by {
                        keys.extend(&self.lineage(p, &scope, outer)?);
                    }
                    for s in &wf.params.order_by {
                        keys.extend(&self.lineage(&s.expr, &scope, outer)?);
                    }
                    if let Some(filter) = &wf.params.filter {
                        keys.extend(&self.lineage(filter, &scope, outer)?);
                    }
                    self.fields
                        .check_influence(&keys, "a window's PARTITION BY, ORDER BY or FILTER")?;
                    self.check_functions(e, &scope, outer, &Lineage::default())?;
                    value.extend(&keys);
                    cols.push(value);
                    exprs.push(self.rewrite(e, &scope)?);
                }
                let plan = LogicalPlan::Window(
                    Window::try_new(exprs, Arc::new(input.plan)).map_err(plan_error)?,
                );
                let mut unit_of = input.unit_of;
                unit_of.resize(cols.len(), None);
                Ok(Out {
                    plan,
                    cols,
                    rows: input.rows,
                    units: input.units,
                    unit_of,
                    protected: input.protected,
                })
            }
            LogicalPlan::Sort(s) => {
                let input = self.plan(&s.input, outer)?;
                let scope = Scope {
                    schema: s.input.schema(),
                    cols: &input.cols,
                };
                let mut exprs = Vec::with_capacity(s.expr.len());
                for sort in &s.expr {
                    let lineage = self.lineage(&sort.expr, &scope, outer)?;
                    self.fields.check_influence(&lineage, "ORDER BY")?;
                    self.check_functions(&sort.expr, &scope, outer, &Lineage::default())?;
                    exprs.push(self.rewrite(&sort.expr, &scope)?);
                }
                input.wrap(|p| plan.with_new_exprs(exprs, vec![p]))
            }
            LogicalPlan::Limit(l) => {
                let input = self.plan(&l.input, outer)?;
                self.dp_keeps_units(&input, "LIMIT or OFFSET")?;
                for e in l.skip.iter().chain(l.fetch.iter()) {
                    if !matches!(e.as_ref(), Expr::Literal(..)) {
                        return Err(invalid("LIMIT and OFFSET take literal numbers"));
                    }
                }
                input.wrap(|p| plan.with_new_exprs(plan.expressions(), vec![p]))
            }
            LogicalPlan::Join(join) => self.join(join, outer),
            LogicalPlan::SubqueryAlias(a) => {
                let input = self.plan(&a.input, outer)?;
                input.wrap(|p| {
                    SubqueryAlias::try_new(Arc::new(p), a.alias.clone())
                        .map(LogicalPlan::SubqueryAlias)
                })
            }
            LogicalPlan::Union(u) => {
                let mut inputs = Vec::with_capacity(u.inputs.len());
                let mut cols = vec![Lineage::default(); u.schema.fields().len()];
                let mut rows = Lineage::default();
                let mut protected = false;
                for input in &u.inputs {
                    let out = self.plan(input, outer)?;
                    self.dp_keeps_units(&out, "UNION")?;
                    protected |= out.protected;
                    let out = self.strip_units(out)?;
                    for (c, l) in cols.iter_mut().zip(&out.cols) {
                        c.extend(l);
                    }
                    rows.extend(&out.rows);
                    inputs.push(Arc::new(out.plan));
                }
                let plan = LogicalPlan::Union(
                    Union::try_new_with_loose_types(inputs).map_err(plan_error)?,
                );
                let unit_of = vec![None; cols.len()];
                Ok(Out {
                    plan,
                    cols,
                    rows,
                    units: Vec::new(),
                    unit_of,
                    protected,
                })
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let out = self.plan(input, outer)?;
                self.dp_keeps_units(&out, "SELECT DISTINCT")?;
                let out = self.strip_units(out)?;
                let all = Lineage::union(out.cols.iter());
                self.fields.check_influence(&all, "SELECT DISTINCT")?;
                let plan = LogicalPlan::Distinct(Distinct::All(Arc::new(out.plan)));
                Ok(Out {
                    plan,
                    cols: out.cols,
                    rows: out.rows,
                    units: Vec::new(),
                    unit_of: out.unit_of,
                    protected: out.protected,
                })
            }
            LogicalPlan::Distinct(Distinct::On(_)) => {
                Err(invalid("DISTINCT ON is not supported; use GROUP BY"))
            }
            LogicalPlan::Values(v) => {
                let scope_schema = DFSchema::empty();
                let scope = Scope {
                    schema: &scope_schema,
                    cols: &[],
                };
                let mut cols = vec![Lineage::default(); v.schema.fields().len()];
                for row in &v.values {
                    for (c, e) in cols.iter_mut().zip(row) {
                        c.extend(&self.lineage(e, &scope, outer)?);
                    }
                }
                let exprs = plan
                    .expressions()
                    .iter()
                    .map(|e| self.rewrite(e, &scope))
                    .collect::<Result<Vec<_>, _>>()?;
                let plan = plan.with_new_exprs(exprs, vec![]).map_err(plan_error)?;
                let unit_of = vec![None; cols.len()];
                Ok(Out {
                    plan,
                    cols,
                    rows: Lineage::default(),
                    units: Vec::new(),
                    unit_of,
                    protected: false,
                })
            }
            LogicalPlan::EmptyRelation(e) => Ok(Out {
                plan: plan.clone(),
                cols: vec![Lineage::default(); e.schema.fields().len()],
                rows: Lineage::default(),
                units: Vec::new(),
                unit_of: vec![None; e.schema.fields().len()],
                protected: false,
            }),
            LogicalPlan::Subquery(sq) => {
                let inner = self.plan(&sq.subquery, outer)?;
                let plan = LogicalPlan::Subquery(Subquery {
                    subquery: Arc::new(inner.plan),
                    outer_ref_columns: sq.outer_ref_columns.clone(),
                    spans: sq.spans.clone(),
                });
                Ok(Out {
                    plan,
                    cols: inner.cols,
                    rows: inner.rows,
                    units: inner.units,
                    unit_of: inner.unit_of,
                    protected: inner.protected,
                })
            }
            LogicalPlan::RecursiveQuery(_) => Err(invalid("recursive queries are not supported")),
            LogicalPlan::Unnest(_) => Err(invalid("UNNEST is not supported")),
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Err(invalid(
                "EXPLAIN is not available: plans reveal exact statistics of the data",
            )),
            LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_) => Err(invalid("only SELECT queries are accepted")),
            LogicalPlan::Repartition(_) | LogicalPlan::Extension(_) => {
                Err(invalid("this query shape is not supported"))
            }
        }
    }

    fn join(&mut self, join: &Join, outer: &[Scope<'_>]) -> Result<Out, QueryError> {
        let left = self.plan(&join.left, outer)?;
        let right = self.plan(&join.right, outer)?;
        let left_scope = Scope {
            schema: join.left.schema(),
            cols: &left.cols,
        };
        let right_scope = Scope {
            schema: join.right.schema(),
            cols: &right.cols,
        };
        let mut exprs = Vec::with_capacity(join.on.len() * 2 + 1);
        let mut keys = Lineage::default();
        let combined_schema = join
            .left
            .schema()
            .join(join.right.schema())
            .map_err(plan_error)?;
        // Whether a condition equates the units of protected scans on the
        // two sides; each such equality joins the raw units (`dp_units`).
        let mut on_units = false;
        for (l, r) in &join.on {
            let ll = self.lineage(l, &left_scope, outer)?;
            let rl = self.lineage(r, &right_scope, outer)?;
            if let Some((hl, hr)) = self.dp_unit_pair(l, r, &combined_schema, &left, &right) {
                on_units = true;
                keys.extend(&ll);
                keys.extend(&rl);
                exprs.push(Expr::Column(hl.into()));
                exprs.push(Expr::Column(hr.into()));
                continue;
            }
            self.check_functions(l, &left_scope, outer, &Lineage::default())?;
            self.check_functions(r, &right_scope, outer, &Lineage::default())?;
            if !(self.fields.is_single_token(&ll) && self.fields.is_single_token(&rl)) {
                let both = Lineage::union([&ll, &rl]);
                self.fields.check_influence(&both, "a JOIN condition")?;
            }
            keys.extend(&ll);
            keys.extend(&rl);
            exprs.push(self.rewrite(l, &left_scope)?);
            exprs.push(self.rewrite(r, &right_scope)?);
        }
        let mut combined_cols = left.cols.clone();
        combined_cols.extend(right.cols.iter().cloned());
        if let Some(filter) = &join.filter {
            let scope = Scope {
                schema: &combined_schema,
                cols: &combined_cols,
            };
            let mut conjuncts = Vec::new();
            for conjunct in split_conjunction(filter) {
                if let Expr::BinaryExpr(BinaryExpr {
                    left: l,
                    op: Operator::Eq,
                    right: r,
                }) = conjunct
                    && let Some((hl, hr)) = self.dp_unit_pair(l, r, &combined_schema, &left, &right)
                {
                    on_units = true;
                    keys.extend(&self.lineage(conjunct, &scope, outer)?);
                    conjuncts.push(Expr::Column(hl.into()).eq(Expr::Column(hr.into())));
                    continue;
                }
                keys.extend(&self.check_condition(conjunct, &scope, outer, "a JOIN condition")?);
                self.check_functions(conjunct, &scope, outer, &Lineage::default())?;
                conjuncts.push(self.rewrite_unnamed(conjunct, &scope)?);
            }
            exprs
                .push(datafusion::logical_expr::utils::conjunction(conjuncts).unwrap_or(lit(true)));
        }
        // Each row of one side meets at most one row of the other when an
        // equality of the join holds the other side's unique unit.
        let (left_once, right_once) = matched_once(join, &combined_schema, &left, &right);
        self.dp_join(join, &left, &right, on_units, (left_once, right_once))?;
        let keeps_rows = matches!(
            join.join_type,
            JoinType::LeftSemi
                | JoinType::LeftAnti
                | JoinType::LeftMark
                | JoinType::RightSemi
                | JoinType::RightAnti
                | JoinType::RightMark
        );
        // A join can repeat rows: no unit column is unique past it, and a
        // side's rows are repeated unless each meets at most one other row.
        let past_join = |units: &[Unit], once: bool| {
            units
                .iter()
                .map(|u| Unit {
                    unique: false,
                    repeated: u.repeated || !(once || keeps_rows),
                    ..u.clone()
                })
                .collect::<Vec<_>>()
        };
        let (left_units, right_units) = (
            past_join(&left.units, left_once),
            past_join(&right.units, right_once),
        );
        let both = |first: &[Unit], second: &[Unit]| [first, second].concat();
        let mut combined_unit_of = left.unit_of.clone();
        combined_unit_of.extend(right.unit_of.iter().copied());
        let marked = |unit_of: &[Option<usize>]| [unit_of, &[None]].concat();
        // The side whose rows a join keeps comes first: its units are never
        // NULL, and a DP query bounds the first protected unit.
        let (cols, units, unit_of) = match join.join_type {
            JoinType::Inner | JoinType::Left | JoinType::Full => (
                combined_cols,
                both(&left_units, &right_units),
                combined_unit_of,
            ),
            JoinType::Right => (
                combined_cols,
                both(&right_units, &left_units),
                combined_unit_of,
            ),
            JoinType::LeftSemi | JoinType::LeftAnti => {
                (left.cols.clone(), left_units, left.unit_of.clone())
            }
            JoinType::RightSemi | JoinType::RightAnti => {
                (right.cols.clone(), right_units, right.unit_of.clone())
            }
            JoinType::LeftMark => {
                let mut cols = left.cols.clone();
                cols.push(Lineage::union([&keys, &right.rows]));
                (cols, left_units, marked(&left.unit_of))
            }
            JoinType::RightMark => {
                let mut cols = right.cols.clone();
                cols.push(Lineage::union([&keys, &left.rows]));
                (cols, right_units, marked(&right.unit_of))
            }
        };
        let rows = Lineage::union([&left.rows, &right.rows]);
        let protected = left.protected || right.protected;
        let plan = LogicalPlan::Join(join.clone())
            .with_new_exprs(exprs, vec![left.plan, right.plan])
            .map_err(plan_error)?;
        Ok(Out {
            plan,
            cols,
            rows,
            units,
            unit_of,
            protected,
        })
    }

    /// Checks a condition conjunct by conjunct: equality of two pseudonym
    /// tokens is a join on tokens and allowed; everything else must be
    /// allowed to influence results.
    fn check_condition(
        &mut self,
        e: &Expr,
        scope: &Scope<'_>,
        outer: &[Scope<'_>],
        position: &str,
    ) -> Result<Lineage, QueryError> {
        let mut all = Lineage::default();
        for conjunct in split_conjunction(e) {
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = conjunct
            {
                let l = self.lineage(left, scope, outer)?;
                let r = self.lineage(right, scope, outer)?;
                if self.fields.is_single_token(&l) && self.fields.is_single_token(&r) {
                    all.extend(&l);
                    all.extend(&r);
                    continue;
                }
            }
            let lineage = self.lineage(conjunct, scope, outer)?;
            self.fields.check_influence(&lineage, position)?;
            all.extend(&lineage);
        }
        Ok(all)
    }

    /// Drops the hidden unit columns, restoring the original columns.
    fn strip_units(&self, out: Out) -> Result<Out, QueryError> {
        if out.units.is_empty() {
            return Ok(out);
        }
        let exprs: Vec<Expr> = out
            .plan
            .schema()
            .columns()
            .into_iter()
            .filter(|c| !c.name.starts_with(UNIT_PREFIX))
            .map(Expr::Column)
            .collect();
        let plan = LogicalPlan::Projection(
            Projection::try_new(exprs, Arc::new(out.plan)).map_err(plan_error)?,
        );
        Ok(Out {
            plan,
            units: Vec::new(),
            ..out
        })
    }
}

/// Whether each row of the left side meets at most one row of the right,
/// and the other way round: an equality of the join (an ON pair, or an AND
/// conjunct of its filter) holds, on the other side, the unit of a scan
/// with one row per unit and no join since.
fn matched_once(join: &Join, combined: &DFSchema, left: &Out, right: &Out) -> (bool, bool) {
    let width = left.unit_of.len();
    let unique = |out: &Out, scan: Option<usize>| {
        scan.is_some_and(|s| out.units.iter().any(|u| u.scan == s && u.unique))
    };
    // (is on the left, is a unique unit there) of a column of the combined schema.
    let side = |e: &Expr| -> Option<(bool, bool)> {
        let Expr::Column(c) = unalias(e) else {
            return None;
        };
        let i = combined.maybe_index_of_column(c)?;
        Some(if i < width {
            (true, unique(left, left.unit_of[i]))
        } else {
            (false, unique(right, right.unit_of[i - width]))
        })
    };
    let (mut left_once, mut right_once) = (false, false);
    let mut pairs: Vec<(&Expr, &Expr)> = join.on.iter().map(|(l, r)| (l, r)).collect();
    if let Some(filter) = &join.filter {
        for c in split_conjunction(filter) {
            if let Expr::BinaryExpr(BinaryExpr {
                left: l,
                op: Operator::Eq,
                right: r,
            }) = c
            {
                pairs.push((l, r));
            }
        }
    }
    for (a, b) in pairs {
        match (side(a), side(b)) {
            (Some((true, a_unique)), Some((false, b_unique)))
            | (Some((false, b_unique)), Some((true, a_unique))) => {
                left_once |= b_unique;
                right_once |= a_unique;
            }
            _ => {}
        }
    }
    (left_once, right_once)
}

/// The scan whose privacy unit `e` is, unchanged: a column (perhaps
/// renamed) that holds one.
pub(super) fn unit_column(e: &Expr, schema: &DFSchema, unit_of: &[Option<usize>]) -> Option<usize> {
    match unalias(e) {
        Expr::Column(c) => schema.maybe_index_of_column(c).and_then(|i| unit_of[i]),
        _ => None,
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// A rewritten plan that does not build is the stage's fault, not the
/// caller's; its message names columns only.
fn plan_error(e: datafusion::error::DataFusionError) -> QueryError {
    invalid(crate::error::redact(&format!(
        "the query cannot be planned under the policy: {e}"
    )))
}
