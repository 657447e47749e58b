//! Rule: an exact aggregate over aggregate-only data aggregates the field
//! itself, over every row of its group, and its group is released only when
//! at least k units have a value in it.
//!
//! The guarantee is "no released value is made by fewer than k units". A
//! group of thousands whose value one row makes (`SUM(CASE WHEN uscc = '…'
//! THEN revenue END)`, `SUM(revenue) FILTER (WHERE …)`, a TRY_CAST that is
//! NULL for all but small values) would break it while passing any
//! threshold on the group. So the argument of COUNT, SUM or AVG (and MIN or
//! MAX where a grade allows them) over an aggregate-only field is the field,
//! perhaps cast to a floating-point type, negated, or combined with
//! constants (a unit conversion); no condition, no other field, no function,
//! no FILTER. Conditions belong in WHERE or GROUP BY, where the threshold
//! counts the units they leave. `enforce_k` then counts, for every such
//! aggregate, the units whose argument is not NULL in the group.

use arrow::datatypes::DataType;
use datafusion::logical_expr::expr::{AggregateFunction, Cast, TryCast};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;

use veil_policies::Level;

use super::Stage;
use super::lineage::{FieldInfo, Lineage};
use crate::error::{QueryError, deny};

pub(crate) const RULE: &str = "aggregate-argument";

impl Stage<'_> {
    /// Checks aggregate `f`, which consumes the aggregate-only `field`.
    pub(super) fn check_aggregate_argument(
        &self,
        f: &AggregateFunction,
        field: &FieldInfo,
    ) -> Result<(), QueryError> {
        let name = f.func.name();
        let refuse = |what: &str| {
            Err(deny(
                Some(field.qualified()),
                RULE,
                format!(
                    "field `{}` is aggregate-only for you: {what} would let a few rows make the value of a large group; write `{name}({})` and choose the rows with WHERE or GROUP BY, where the threshold counts them",
                    field.qualified(),
                    field.field
                ),
            ))
        };
        if f.params.filter.is_some() {
            return refuse(&format!("a FILTER on `{name}`"));
        }
        for a in &f.params.args {
            if !value_preserving(a, MAX_STEPS) {
                return refuse(&format!("this argument of `{name}`"));
            }
        }
        Ok(())
    }
}

/// Arithmetic steps an argument may take.
const MAX_STEPS: usize = 3;

/// The field itself, through casts to floating point, negation and at most
/// `steps` steps of arithmetic with moderate constants (a unit conversion
/// or an offset). Large factors are refused: enough of them make every
/// value infinite, and the sign or NaN of a sum of infinities tells the
/// smallest and largest values apart.
fn value_preserving(e: &Expr, steps: usize) -> bool {
    let moderate = |c: &Expr, op: Operator| {
        let Expr::Literal(v, _) = c else {
            return false;
        };
        let Ok(ScalarValue::Float64(Some(x))) = v.cast_to(&DataType::Float64) else {
            return false;
        };
        match op {
            Operator::Multiply | Operator::Divide => (1e-9..=1e9).contains(&x.abs()),
            _ => x.abs() <= 1e12,
        }
    };
    match e {
        Expr::Column(_) => true,
        Expr::Alias(a) => value_preserving(&a.expr, steps),
        Expr::Negative(inner) => value_preserving(inner, steps),
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            matches!(field.data_type(), DataType::Float64 | DataType::Float32)
                && value_preserving(expr, steps)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if steps > 0 => {
            let (value, constant) = match (left.as_ref(), right.as_ref()) {
                (c @ Expr::Literal(..), other) if *op != Operator::Divide => (other, c),
                (other, c @ Expr::Literal(..)) => (other, c),
                _ => return false,
            };
            matches!(
                op,
                Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide
            ) && moderate(constant, *op)
                && value_preserving(value, steps - 1)
        }
        _ => false,
    }
}

impl Stage<'_> {
    /// Outside a DP query, an aggregate-only value passes through a
    /// projection (a derived table, a CTE) only unchanged: computed there,
    /// it would reach the aggregate as a plain column whatever it is
    /// (`CASE WHEN uscc = '…' THEN revenue END AS x`, then `SUM(x)`).
    pub(super) fn check_passthrough(&self, e: &Expr, lineage: &Lineage) -> Result<(), QueryError> {
        if self.fields.below_dp || matches!(super::unalias(e), Expr::Column(_)) {
            return Ok(());
        }
        match lineage
            .raw()
            .map(|id| self.fields.get(id))
            .find(|f| matches!(f.level, Level::Aggregate { .. }))
        {
            Some(field) => Err(deny(
                Some(field.qualified()),
                RULE,
                format!(
                    "field `{}` is aggregate-only for you: it may pass through a derived table or CTE only unchanged; compute on it inside the aggregate, as in `SUM({} * 10000)`",
                    field.qualified(),
                    field.field
                ),
            )),
            None => Ok(()),
        }
    }

    /// A join may have repeated the rows of `field`'s dataset: one unit's
    /// rows, repeated, would make the value of a large group.
    pub(super) fn refuse_repeated(&self, field: &FieldInfo) -> QueryError {
        deny(
            Some(field.qualified()),
            RULE,
            format!(
                "field `{}` is aggregate-only for you: a join here may repeat its rows, so a few units could make the value of a large group; join `{}` only on the unique key of the other side (such as its privacy unit, one row per unit)",
                field.qualified(),
                field.dataset
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::testing::{granted_modeler, prepare, rule_of};

    fn refused_for_granted(sql: &str) -> &'static str {
        rule_of(prepare(&granted_modeler("tax"), sql, None), sql)
    }

    #[test]
    fn conditions_inside_an_aggregate_are_refused() {
        for sql in [
            "SELECT SUM(CASE WHEN uscc = '91530100MA6K000001' AND year = 2024 THEN revenue ELSE 0 END) FROM tax",
            "SELECT SUM(revenue) FILTER (WHERE uscc = '91530100MA6K000001') FROM tax",
            "SELECT AVG(NULLIF(revenue, 0)) FROM tax",
            "SELECT SUM(COALESCE(revenue, tax_paid)) FROM tax",
            "SELECT SUM(TRY_CAST(revenue AS TINYINT)) FROM tax",
            "SELECT SUM(revenue * year) FROM tax",
            "SELECT SUM(GREATEST(revenue, 1000)) FROM tax",
            "SELECT SUM((revenue - 16.71) * 1e308 * 1e308) FROM tax WHERE year = 2024",
            "SELECT SUM(revenue * 1e20) FROM tax",
            "SELECT SUM(t.revenue) FROM tax t JOIN legal_persons l ON t.uscc = l.uscc OR t.uscc = '91530100MA6K000001'",
            "SELECT SUM(t.revenue) FROM tax t JOIN legal_persons l ON t.county_code = l.county_code",
            "SELECT SUM(t1.revenue) FROM tax t1 JOIN tax t2 ON t1.uscc = t2.uscc",
            // Computed in a derived table or a CTE, then aggregated.
            "SELECT SUM(x) FROM (SELECT CASE WHEN uscc = '91530100MA6K000001' THEN revenue ELSE 0 END AS x FROM tax WHERE year = 2024) t",
            "WITH x AS (SELECT revenue * CAST(uscc = '91530100MA6K000001' AS DOUBLE) AS v FROM tax) SELECT SUM(v) FROM x",
            "SELECT SUM(x) FROM (SELECT revenue * 1e9 AS x FROM tax) t",
            "SELECT SUM(x) FROM (SELECT TRY_CAST(revenue AS TINYINT) AS x FROM tax) t",
            "SELECT county_code, SUM(revenue * CAST(uscc = '91530100MA6K000001' AS DOUBLE)) FROM tax GROUP BY county_code",
        ] {
            assert_eq!(refused_for_granted(sql), super::RULE, "{sql}");
        }
    }

    #[test]
    fn the_field_itself_and_unit_conversions_are_aggregated() {
        for sql in [
            "SELECT county_code, SUM(revenue) FROM tax GROUP BY county_code",
            "SELECT county_code, AVG(revenue * 10000) AS yuan FROM tax GROUP BY county_code",
            "SELECT year, SUM(CAST(tax_paid AS DOUBLE) / 100), COUNT(*) FROM tax GROUP BY year",
            "SELECT l.industry, SUM(t.revenue) FROM legal_persons l JOIN tax t ON l.uscc = t.uscc GROUP BY l.industry",
            "SELECT SUM(r) FROM (SELECT revenue AS r, year FROM tax WHERE year = 2024) t",
        ] {
            prepare(&granted_modeler("tax"), sql, None).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    }
}
