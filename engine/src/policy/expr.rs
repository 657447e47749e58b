//! Expressions under the policy: their lineage, the functions that may touch
//! protected values, and the rewrites that close error oracles.
//!
//! An error that happens only for some values is an oracle: one query, one
//! bit about a protected value. Casts therefore become TRY_CAST (NULL instead
//! of an error), divisors become NULLIF(divisor, 0), integer arithmetic over
//! protected values is refused (it can overflow), and only total functions,
//! with literal secondary arguments, may be applied to protected values,
//! including inside CASE branches chosen by a protected condition.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{Cast, InSubquery, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator, Subquery, cast, try_cast,
};
use datafusion::prelude::lit;
use datafusion::scalar::ScalarValue;

use super::lineage::Lineage;
use super::{Scope, Stage};
use crate::error::{QueryError, deny, invalid};

/// Functions that never fail, whatever the value of their first argument,
/// when their other arguments are literals.
const TOTAL_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "trunc",
    "signum",
    "isnan",
    "iszero",
    "lower",
    "upper",
    "btrim",
    "ltrim",
    "rtrim",
    "character_length",
    "octet_length",
    "bit_length",
    "reverse",
    "initcap",
    "left",
    "right",
    "substr",
    "strpos",
    "starts_with",
    "ends_with",
    "replace",
    "date_part",
    "date_trunc",
    "concat",
    "concat_ws",
    "coalesce",
    "nullif",
    "nvl",
    "greatest",
    "least",
];

/// Functions whose every argument may be protected (they combine values).
const VARIADIC: &[&str] = &["concat", "coalesce", "nullif", "nvl", "greatest", "least"];

impl Stage<'_> {
    /// The lineage of `e` over `input`: every tracked field any column,
    /// outer reference or subquery in it depends on. Subqueries are checked
    /// and rewritten on the way, once.
    pub(super) fn lineage(
        &mut self,
        e: &Expr,
        input: &Scope<'_>,
        outer: &[Scope<'_>],
    ) -> Result<Lineage, QueryError> {
        let mut nodes: Vec<&Expr> = Vec::new();
        let _ = e.apply(|node| {
            nodes.push(node);
            Ok(TreeNodeRecursion::Continue)
        });
        let mut out = Lineage::default();
        for node in nodes {
            match node {
                Expr::Column(c) => match input.schema.maybe_index_of_column(c) {
                    Some(i) => out.extend(&input.cols[i]),
                    None => return Err(invalid(format!("column `{c}` cannot be resolved"))),
                },
                Expr::OuterReferenceColumn(_, c) => {
                    let scope = outer
                        .iter()
                        .find_map(|s| s.schema.maybe_index_of_column(c).map(|i| &s.cols[i]));
                    match scope {
                        Some(l) => out.extend(l),
                        None => {
                            return Err(invalid(format!("outer column `{c}` cannot be resolved")));
                        }
                    }
                }
                Expr::ScalarSubquery(sq) => out.extend(&self.subquery(sq, input, outer)?),
                Expr::InSubquery(InSubquery { subquery, .. }) => {
                    out.extend(&self.subquery(subquery, input, outer)?)
                }
                Expr::Exists(x) => out.extend(&self.subquery(&x.subquery, input, outer)?),
                Expr::SetComparison(x) => out.extend(&self.subquery(&x.subquery, input, outer)?),
                Expr::Placeholder(_) => {
                    return Err(invalid(
                        "query parameters ($1, ?) are not supported; write the values in the SQL",
                    ));
                }
                Expr::ScalarVariable(..) => return Err(invalid("variables are not supported")),
                Expr::Unnest(_) => return Err(invalid("UNNEST is not supported")),
                Expr::HigherOrderFunction(_) | Expr::Lambda(_) | Expr::LambdaVariable(_) => {
                    return Err(invalid("lambda functions are not supported"));
                }
                _ => {}
            }
        }
        for u in out.uses() {
            self.touched.insert(self.fields.get(u.field).qualified());
        }
        Ok(out)
    }

    fn subquery(
        &mut self,
        sq: &Subquery,
        input: &Scope<'_>,
        outer: &[Scope<'_>],
    ) -> Result<Lineage, QueryError> {
        let key = Arc::as_ptr(&sq.subquery) as usize;
        if let Some((_, lineage)) = self.subqueries.get(&key) {
            return Ok(lineage.clone());
        }
        let mut scopes = Vec::with_capacity(outer.len() + 1);
        scopes.push(Scope {
            schema: input.schema,
            cols: input.cols,
        });
        scopes.extend(outer.iter().map(|s| Scope {
            schema: s.schema,
            cols: s.cols,
        }));
        let out = self.plan(&sq.subquery, &scopes)?;
        self.dp_subquery(&out)?;
        let out = self.strip_units(out)?;
        let mut lineage = Lineage::union(out.cols.iter());
        lineage.extend(&out.rows);
        self.subqueries.insert(key, (out.plan, lineage.clone()));
        Ok(lineage)
    }

    /// Checks every function and operator in `e` that touches protected
    /// values. `context` is the lineage of enclosing CASE conditions: a
    /// branch chosen by a protected condition is treated as touching it.
    pub(super) fn check_functions(
        &mut self,
        e: &Expr,
        input: &Scope<'_>,
        outer: &[Scope<'_>],
        context: &Lineage,
    ) -> Result<(), QueryError> {
        match e {
            Expr::ScalarFunction(f) => {
                let mut lin = context.clone();
                for a in &f.args {
                    lin.extend(&self.lineage(a, input, outer)?);
                }
                if f.func.name() == "nullif" {
                    self.check_inner_condition(&lin, "NULLIF, which compares it")?;
                }
                // Below a DP aggregate, whether a row reaches a function
                // depends on protected values: every function must be total.
                if self.fields.is_protected(&lin) || self.fields.below_dp {
                    self.check_function(f, &lin, input, outer)?;
                }
            }
            Expr::Case(case) => {
                let mut chosen_by = context.clone();
                if let Some(base) = &case.expr {
                    let lineage = self.lineage(base, input, outer)?;
                    self.check_inner_condition(&lineage, "a CASE condition")?;
                    chosen_by.extend(&lineage);
                    self.check_functions(base, input, outer, context)?;
                }
                for (when, _) in &case.when_then_expr {
                    let lineage = self.lineage(when, input, outer)?;
                    self.check_inner_condition(&lineage, "a CASE condition")?;
                    chosen_by.extend(&lineage);
                    self.check_functions(when, input, outer, context)?;
                }
                for (_, then) in &case.when_then_expr {
                    self.check_functions(then, input, outer, &chosen_by)?;
                }
                if let Some(other) = &case.else_expr {
                    self.check_functions(other, input, outer, &chosen_by)?;
                }
                return Ok(());
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_regex(*op) => {
                let mut lin = context.clone();
                lin.extend(&self.lineage(left, input, outer)?);
                lin.extend(&self.lineage(right, input, outer)?);
                if self.fields.is_protected(&lin) || self.fields.below_dp {
                    return Err(self.refuse_partial("a regular expression (`~`)", &lin));
                }
            }
            Expr::Like(like) => {
                let mut lin = context.clone();
                lin.extend(&self.lineage(&like.expr, input, outer)?);
                lin.extend(&self.lineage(&like.pattern, input, outer)?);
                let literal = matches!(like.pattern.as_ref(), Expr::Literal(..));
                if !literal && (self.fields.is_protected(&lin) || self.fields.below_dp) {
                    return Err(
                        self.refuse_partial("LIKE with a pattern that is not a literal", &lin)
                    );
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_arithmetic(*op) => {
                let mut lin = context.clone();
                lin.extend(&self.lineage(left, input, outer)?);
                lin.extend(&self.lineage(right, input, outer)?);
                if matches!(op, Operator::Divide | Operator::Modulo) {
                    // A divisor becomes NULLIF(divisor, 0): a condition.
                    let divisor = self.lineage(right, input, outer)?;
                    self.check_inner_condition(
                        &divisor,
                        "a divisor (a zero divisor is a condition)",
                    )?;
                }
                if self.fields.is_protected(&lin) && integer_typed(e, input) {
                    return Err(self.refuse_arithmetic(&lin));
                }
                // DECIMAL and date or time arithmetic can overflow and fail,
                // and so can integer division (i64::MIN / -1); below a DP
                // aggregate any row may reach them.
                let partial = self.fields.is_protected(&lin) || self.fields.below_dp;
                if partial && decimal_typed(e, input) {
                    return Err(self.refuse_partial(
                        "DECIMAL arithmetic (it can overflow; CAST to DOUBLE first)",
                        &lin,
                    ));
                }
                if partial
                    && [e, left.as_ref(), right.as_ref()]
                        .iter()
                        .any(|x| temporal_typed(x, input))
                {
                    return Err(
                        self.refuse_partial("date and time arithmetic (it can overflow)", &lin)
                    );
                }
                if self.fields.below_dp
                    && matches!(op, Operator::Divide | Operator::Modulo)
                    && integer_typed(e, input)
                {
                    return Err(self.refuse_partial(
                        "integer division (it can overflow; CAST to DOUBLE first)",
                        &lin,
                    ));
                }
            }
            Expr::Negative(inner) => {
                let mut lin = context.clone();
                lin.extend(&self.lineage(inner, input, outer)?);
                if self.fields.is_protected(&lin) && integer_typed(e, input) {
                    return Err(self.refuse_arithmetic(&lin));
                }
            }
            Expr::SimilarTo(like) => {
                let mut lin = context.clone();
                lin.extend(&self.lineage(&like.expr, input, outer)?);
                lin.extend(&self.lineage(&like.pattern, input, outer)?);
                if self.fields.below_dp {
                    return Err(self.refuse_partial("SIMILAR TO", &lin));
                }
                if let Some(f) = self.fields.first_raw(&lin) {
                    return Err(deny(
                        Some(f.qualified()),
                        "function",
                        format!(
                            "SIMILAR TO cannot be applied to protected field `{}`; use LIKE",
                            f.qualified()
                        ),
                    ));
                }
            }
            // Subqueries were checked when their plans were visited.
            Expr::ScalarSubquery(_) | Expr::Exists(_) => return Ok(()),
            Expr::InSubquery(x) => return self.check_functions(&x.expr, input, outer, context),
            Expr::SetComparison(x) => return self.check_functions(&x.expr, input, outer, context),
            _ => {}
        }
        let mut children: Vec<&Expr> = Vec::new();
        let _ = e.apply_children(|c| {
            children.push(c);
            Ok(TreeNodeRecursion::Continue)
        });
        for c in children {
            self.check_functions(c, input, outer, context)?;
        }
        Ok(())
    }

    fn check_function(
        &mut self,
        f: &ScalarFunction,
        lin: &Lineage,
        input: &Scope<'_>,
        outer: &[Scope<'_>],
    ) -> Result<(), QueryError> {
        let name = f.func.name();
        let field = self
            .fields
            .first_raw(lin)
            .map(|f| f.qualified())
            .unwrap_or_default();
        if !TOTAL_FUNCTIONS.contains(&name) {
            let over = if field.is_empty() {
                "in a differentially private query (whether a row reaches it depends on protected data, and a failure would tell)".to_owned()
            } else {
                format!("to protected field `{field}`")
            };
            return Err(deny(
                (!field.is_empty()).then(|| field.clone()),
                "function",
                format!(
                    "function `{name}` cannot be applied {over}; allowed there: {}",
                    TOTAL_FUNCTIONS.join(", ")
                ),
            ));
        }
        if VARIADIC.contains(&name) {
            return Ok(());
        }
        for a in f.args.iter().skip(1) {
            let literal =
                matches!(a, Expr::Literal(..)) && self.lineage(a, input, outer)?.is_empty();
            let negative = matches!(a, Expr::Literal(v, _) if is_negative(v));
            if !literal || (name == "substr" && negative) {
                return Err(deny(
                    Some(field.clone()),
                    "function",
                    format!(
                        "over protected field `{field}`, the arguments of `{name}` after the first must be literal (and not negative)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An operation that can fail for some values, over protected values or
    /// below a DP aggregate: refused, since its error would be an oracle.
    fn refuse_partial(&self, what: &str, lin: &Lineage) -> QueryError {
        let field = self.fields.first_raw(lin).map(|f| f.qualified());
        let over = match &field {
            Some(f) => format!("over protected field `{f}`"),
            None => "in a differentially private query".to_owned(),
        };
        deny(
            field,
            "function",
            format!("{what} can fail for some values and is not available {over}"),
        )
    }

    fn refuse_arithmetic(&self, lin: &Lineage) -> QueryError {
        let field = self
            .fields
            .first_raw(lin)
            .map(|f| f.qualified())
            .unwrap_or_default();
        deny(
            Some(field.clone()),
            "arithmetic",
            format!(
                "integer arithmetic over protected field `{field}` could overflow for some values; CAST it to DOUBLE first"
            ),
        )
    }

    /// The rewrites that close error oracles, and the substitution of each
    /// subquery by its checked plan. The output keeps the original name.
    pub(super) fn rewrite(&self, e: &Expr, input: &Scope<'_>) -> Result<Expr, QueryError> {
        let name = e.schema_name().to_string();
        let rewritten = self.rewrite_unnamed(e, input)?;
        Ok(
            if rewritten.schema_name().to_string() == name || matches!(e, Expr::Alias(_)) {
                rewritten
            } else {
                rewritten.alias(name)
            },
        )
    }

    /// [`Stage::rewrite`] without keeping the name: for parts of a larger
    /// expression.
    pub(super) fn rewrite_unnamed(&self, e: &Expr, input: &Scope<'_>) -> Result<Expr, QueryError> {
        let rewritten = e
            .clone()
            .transform_up(|node| {
                Ok(match node {
                    Expr::Cast(Cast { expr, field }) => {
                        Transformed::yes(Expr::TryCast(TryCast { expr, field }))
                    }
                    Expr::BinaryExpr(BinaryExpr {
                        op: Operator::Plus | Operator::Minus | Operator::Multiply,
                        ..
                    })
                    | Expr::Negative(_)
                        if node.get_type(input.schema).is_ok_and(|t| t.is_integer()) =>
                    {
                        Transformed::yes(checked_integer(node, input)?)
                    }
                    // abs(i64::MIN) fails on integers: computed wide too.
                    Expr::ScalarFunction(ref f)
                        if f.func.name() == "abs"
                            && node.get_type(input.schema).is_ok_and(|t| t.is_integer()) =>
                    {
                        let t = node.get_type(input.schema)?;
                        let Expr::ScalarFunction(mut f) = node else {
                            unreachable!("matched a scalar function")
                        };
                        f.args = f.args.into_iter().map(|a| cast(a, WIDE.clone())).collect();
                        Transformed::yes(try_cast(Expr::ScalarFunction(f), t))
                    }
                    Expr::AggregateFunction(mut f)
                        if f.func.name() == "sum" && integer_args(&f.params.args, input) =>
                    {
                        f.params.args = f
                            .params
                            .args
                            .into_iter()
                            .map(|a| cast(a, WIDE.clone()))
                            .collect();
                        Transformed::yes(Expr::AggregateFunction(f))
                    }
                    Expr::WindowFunction(mut w)
                        if w.fun.name() == "sum" && integer_args(&w.params.args, input) =>
                    {
                        w.params.args = w
                            .params
                            .args
                            .into_iter()
                            .map(|a| cast(a, WIDE.clone()))
                            .collect();
                        Transformed::yes(Expr::WindowFunction(w))
                    }
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: op @ (Operator::Divide | Operator::Modulo),
                        right,
                    }) if numeric_or_unknown(&right, input) => {
                        let guarded = datafusion::functions::expr_fn::nullif(*right, lit(0i64));
                        Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                            left,
                            op,
                            right: Box::new(guarded),
                        }))
                    }
                    Expr::ScalarSubquery(sq) => {
                        Transformed::yes(Expr::ScalarSubquery(self.checked(sq)))
                    }
                    Expr::InSubquery(mut x) => {
                        x.subquery = self.checked(x.subquery);
                        Transformed::yes(Expr::InSubquery(x))
                    }
                    Expr::Exists(mut x) => {
                        x.subquery = self.checked(x.subquery);
                        Transformed::yes(Expr::Exists(x))
                    }
                    Expr::SetComparison(mut x) => {
                        x.subquery = self.checked(x.subquery);
                        Transformed::yes(Expr::SetComparison(x))
                    }
                    other => Transformed::no(other),
                })
            })
            .map_err(|e| invalid(e.to_string()))?
            .data;
        Ok(rewritten)
    }

    fn checked(&self, mut sq: Subquery) -> Subquery {
        let key = Arc::as_ptr(&sq.subquery) as usize;
        if let Some((plan, _)) = self.subqueries.get(&key) {
            sq.subquery = Arc::new(plan.clone());
        } else {
            // Every subquery is visited before rewriting; one that was not
            // cannot run, because it still scans an unchecked view.
            sq.subquery = Arc::new(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: sq.subquery.schema().clone(),
                },
            ));
        }
        sq
    }
}

/// Integers are summed and combined in DECIMAL(38, 0), which holds any sum
/// or product of two 64-bit values: no wraparound.
const WIDE: DataType = DataType::Decimal128(38, 0);

fn integer_args(args: &[Expr], input: &Scope<'_>) -> bool {
    args.first()
        .is_some_and(|a| a.get_type(input.schema).is_ok_and(|t| t.is_integer()))
}

/// `a + b` over integers, computed wide and narrowed back with TRY_CAST:
/// a result that does not fit is NULL, never a wrapped number, never an
/// error (an error would be an oracle).
fn checked_integer(e: Expr, input: &Scope<'_>) -> datafusion::common::Result<Expr> {
    let t = e.get_type(input.schema)?;
    let wide = match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => Expr::BinaryExpr(BinaryExpr {
            left: Box::new(cast(*left, WIDE.clone())),
            op,
            right: Box::new(cast(*right, WIDE.clone())),
        }),
        Expr::Negative(inner) => Expr::Negative(Box::new(cast(*inner, WIDE.clone()))),
        other => return Ok(other),
    };
    Ok(try_cast(wide, t))
}

fn is_regex(op: Operator) -> bool {
    matches!(
        op,
        Operator::RegexMatch
            | Operator::RegexIMatch
            | Operator::RegexNotMatch
            | Operator::RegexNotIMatch
    )
}

fn is_arithmetic(op: Operator) -> bool {
    matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
    )
}

fn integer_typed(e: &Expr, input: &Scope<'_>) -> bool {
    // A type that cannot be worked out is treated as integer: fail closed.
    e.get_type(input.schema).map_or(true, |t| t.is_integer())
}

fn temporal_typed(e: &Expr, input: &Scope<'_>) -> bool {
    // A type that cannot be worked out is treated as temporal: fail closed.
    e.get_type(input.schema).map_or(true, |t| {
        t.is_temporal() || matches!(t, DataType::Interval(_) | DataType::Duration(_))
    })
}

fn decimal_typed(e: &Expr, input: &Scope<'_>) -> bool {
    // A type that cannot be worked out is treated as decimal: fail closed.
    e.get_type(input.schema).map_or(true, |t| {
        matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
    })
}

fn numeric_or_unknown(e: &Expr, input: &Scope<'_>) -> bool {
    e.get_type(input.schema).map_or(true, |t| t.is_numeric())
}

fn is_negative(v: &ScalarValue) -> bool {
    match v {
        ScalarValue::Int8(Some(x)) => *x < 0,
        ScalarValue::Int16(Some(x)) => *x < 0,
        ScalarValue::Int32(Some(x)) => *x < 0,
        ScalarValue::Int64(Some(x)) => *x < 0,
        ScalarValue::Float32(Some(x)) => *x < 0.0,
        ScalarValue::Float64(Some(x)) => *x < 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{DpOptions, QueryRequest};
    use crate::policy::testing::{consumer, engine, now, refused, refused_dp, runtime};

    /// Runs `sql` as a DP query of a consumer; panics when it fails.
    fn run_dp(sql: &str) {
        let principal = consumer();
        let answer = runtime().block_on(engine().query(&QueryRequest {
            principal: &principal,
            purpose: None,
            sql,
            now: now(),
            dp: Some(DpOptions::new(1.0)),
        }));
        assert!(answer.is_ok(), "{sql}: {answer:?}");
    }

    #[test]
    fn operations_that_can_fail_are_refused_below_a_dp_aggregate() {
        for sql in [
            // A failing regular expression chosen by one person's diagnosis.
            "SELECT COUNT(*) FROM health_visits WHERE 'a' ~ CASE WHEN diagnosis_category = 'mental' THEN '(' ELSE 'a' END",
            "SELECT COUNT(*) FROM health_visits WHERE hospital SIMILAR TO '%a%'",
            "SELECT COUNT(*) FROM health_visits WHERE hospital LIKE CASE WHEN cost > 10 THEN '%a' ELSE 'b%' END",
            // A partial function over plain values, on rows that protected
            // data chose.
            "SELECT COUNT(x.y) FROM (SELECT to_timestamp(l.name) AS y FROM tax t JOIN legal_persons l ON l.uscc = t.uscc WHERE t.revenue > 1000) x",
        ] {
            assert_eq!(refused_dp(sql), "function", "{sql}");
        }
    }

    #[test]
    fn casts_the_planner_adds_never_fail() {
        // DataFusion coerces the CASE to a date after the policy stage; the
        // coercion is a TRY_CAST too, so the rows with 'garbage' compare as
        // NULL instead of failing the query.
        run_dp(
            "SELECT COUNT(*) FROM health_visits WHERE visit_date > CASE WHEN diagnosis_category = 'mental' THEN 'garbage' ELSE '2000-01-01' END",
        );
    }

    #[test]
    fn arithmetic_that_can_overflow_is_widened_or_refused() {
        // abs(i64::MIN) is computed wide: no error whatever rows reach it.
        run_dp(
            "SELECT COUNT(*) FROM health_visits WHERE diagnosis_category = 'mental' AND abs(-9223372036854775807 - 1) > 0",
        );
        assert_eq!(
            refused_dp(
                "SELECT COUNT(x) FROM (SELECT CAST(cost AS DECIMAL(38,0)) * CAST('10' AS DECIMAL(38,0)) AS x FROM health_visits WHERE diagnosis_category = 'mental') t"
            ),
            "function"
        );
    }

    #[test]
    fn date_arithmetic_and_integer_division_are_refused_below_dp() {
        for sql in [
            "SELECT COUNT(*) FROM health_visits WHERE diagnosis_category = 'mental' AND CAST(visit_date AS TIMESTAMP) + INTERVAL '300 years' IS NOT NULL",
            "SELECT COUNT(*) FROM health_visits WHERE diagnosis_category = 'mental' AND CAST(visit_date AS TIMESTAMP) - TIMESTAMP '1730-01-01 00:00:00' IS NOT NULL",
            "SELECT COUNT(*) FROM health_visits WHERE (CASE WHEN diagnosis_category = 'mental' THEN visit_date + INTERVAL '2147483647 months' END) IS NOT NULL",
            "SELECT COUNT(*) FROM health_visits WHERE diagnosis_category = 'mental' AND (-9223372036854775807 - 1) / -1 > 0",
            "SELECT COUNT(*) FROM health_visits WHERE diagnosis_category = 'mental' AND (-9223372036854775807 - 1) % -1 = 0",
        ] {
            assert_eq!(refused_dp(sql), "function", "{sql}");
        }
    }

    #[test]
    fn a_protected_divisor_is_a_condition() {
        assert_eq!(
            refused(
                "SELECT sex, COUNT(1.0 / CAST(id_number LIKE '5301%' AS DOUBLE)) FROM population GROUP BY sex"
            ),
            "masked"
        );
    }
}
