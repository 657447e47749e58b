//! Rule: under differential privacy, protected scans meet only through a
//! join of their privacy units, and nothing mixes units before the bounding.
//!
//! A scan is *protected* in a DP query when its dataset has dp or
//! aggregate-only fields for the caller (see `protect_scan`). The DP rewrite
//! bounds what one privacy unit contributes by grouping the input rows on
//! one hidden unit column. That bounds adding or removing one unit only if
//! every input row belongs to exactly one unit of every protected dataset,
//! and that unit is the one grouped on. So, below the DP aggregate:
//!
//! - two inputs that both hold protected scans meet only through an
//!   equi-join `a.unit = b.unit` whose two sides are privacy units of scans
//!   on the two sides (never a column compared with itself) and of the same
//!   identifier kind; the stage then joins on the hidden unit columns
//!   instead, so the equality holds of the raw units whatever form the
//!   caller's columns have (a masked identity number included). A FULL join of two protected inputs is refused
//!   (one side's unit would be NULL where the other's is not);
//! - a semi- or anti-join, or a mark join, may not keep unprotected rows by
//!   protected ones: the rows kept would depend on other units' data;
//! - a join of a protected input with an unprotected one must not repeat
//!   the protected rows: it looks up at most one row of the other side per
//!   protected row, by an equality that holds the other side's unique unit
//!   (a scan of a dataset with one row per unit, not joined since), or it
//!   keeps only the protected rows (a semi- or anti-join). Otherwise the
//!   join's fan-out multiplies the rows a filter on one person's values
//!   lets through, and the query's running time reads out the filter's
//!   truth (a constant equality such as `substr(a, 1, 0) = substr(b, 1, 0)`
//!   is a cross join);
//! - at most two protected scans meet in one query, so that a chain of joins
//!   on units cannot multiply one person's rows by more than their own
//!   number;
//! - UNION, DISTINCT, windows, LIMIT and nested aggregates over protected
//!   rows are refused: each makes a row depend on other units' rows.
//!
//! Subqueries are the rule in `dp_subqueries`.

use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, JoinType, Operator};

use super::{Out, Stage, unalias};
use crate::error::{QueryError, deny};

/// The rule's name in refusals.
pub(crate) const RULE: &str = "dp-units";

impl Stage<'_> {
    /// Refuses `what` over protected rows below a DP aggregate.
    pub(super) fn dp_keeps_units(&self, input: &Out, what: &str) -> Result<(), QueryError> {
        if self.fields.below_dp && input.protected {
            return Err(deny(
                None,
                RULE,
                format!(
                    "{what} over data protected by differential privacy would make one person's rows depend on other people's; aggregate directly over the tables"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a join below a DP aggregate: two protected sides meet on their
    /// units. `on_units` says whether a condition of the join equates them
    /// (`dp_unit_pair` found it, and the join turned it into an equality of
    /// the raw units).
    pub(super) fn dp_join(
        &self,
        join: &Join,
        left: &Out,
        right: &Out,
        on_units: bool,
        (left_once, right_once): (bool, bool),
    ) -> Result<(), QueryError> {
        if !self.fields.below_dp || !(left.protected || right.protected) {
            return Ok(());
        }
        let refuse = |why: &str| Err(deny(None, RULE, why.to_owned()));
        if !equates_sides(join) {
            return refuse(
                "a join of data protected by differential privacy needs an equality of a column of each side; a cross join would multiply one person's rows (and the time the query takes)",
            );
        }
        if !(left.protected && right.protected) {
            let dropped_is_protected = match join.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => right.protected,
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => left.protected,
                _ => false,
            };
            if dropped_is_protected {
                return refuse(
                    "rows may not be chosen by the rows of data protected by differential privacy (EXISTS, IN, a semi-join) unless both sides are joined on their privacy units",
                );
            }
            // The protected side's rows each meet at most one other row, or
            // only they are kept.
            let protected_once = match join.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => true,
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => true,
                _ if left.protected => left_once,
                _ => right_once,
            };
            if !protected_once {
                return refuse(
                    "a join of data protected by differential privacy with other data must look up at most one row per protected row: equate the other side's unique key (the privacy unit of a dataset with one row per unit, not joined before); a join that repeats one person's rows would let the query's running time reveal them",
                );
            }
            return Ok(());
        }
        if join.join_type == JoinType::Full {
            return refuse(
                "a FULL JOIN of two datasets protected by differential privacy is not available; use an inner or outer join on their privacy units",
            );
        }
        let (Some(lu), Some(ru)) = (
            left.units.iter().find(|u| u.protected),
            right.units.iter().find(|u| u.protected),
        ) else {
            return refuse(
                "the privacy unit cannot be followed through this join; aggregate directly over the tables",
            );
        };
        if !on_units {
            return refuse(
                "datasets protected by differential privacy may be joined only on their privacy units, one side's unit equal to the other's (`JOIN b ON a.unit = b.unit`)",
            );
        }
        if lu.kind != ru.kind {
            return refuse(
                "datasets protected by differential privacy may be joined only on privacy units of the same kind (an identity number to an identity number)",
            );
        }
        Ok(())
    }

    /// When `l = r` below a DP aggregate equates the privacy units of a
    /// protected scan on each side of a join: the hidden unit columns of
    /// the two scans, left side first, to join on instead.
    pub(super) fn dp_unit_pair(
        &self,
        l: &Expr,
        r: &Expr,
        combined: &DFSchema,
        left: &Out,
        right: &Out,
    ) -> Option<(String, String)> {
        if !(self.fields.below_dp && left.protected && right.protected) {
            return None;
        }
        let width = left.unit_of.len();
        // The hidden unit column of the protected scan whose unit a column
        // of the combined schema holds, and whether it is on the left.
        let side_unit = |e: &Expr| -> Option<(bool, String)> {
            let Expr::Column(c) = unalias(e) else {
                return None;
            };
            let i = combined.maybe_index_of_column(c)?;
            let (out, scan) = if i < width {
                (left, left.unit_of[i]?)
            } else {
                (right, right.unit_of[i - width]?)
            };
            let unit = out.units.iter().find(|u| u.protected && u.scan == scan)?;
            Some((i < width, unit.name.clone()))
        };
        match (side_unit(l)?, side_unit(r)?) {
            ((true, a), (false, b)) | ((false, b), (true, a)) => Some((a, b)),
            _ => None,
        }
    }
}

/// Whether a condition of the join equates an expression over the left
/// side's columns with one over the right side's.
fn equates_sides(join: &Join) -> bool {
    if !join.on.is_empty() {
        return true;
    }
    let side = |e: &Expr| -> Option<bool> {
        let columns = e.column_refs();
        let left = columns.iter().all(|c| join.left.schema().has_column(c));
        let right = columns.iter().all(|c| join.right.schema().has_column(c));
        match (columns.is_empty(), left, right) {
            (false, true, false) => Some(true),
            (false, false, true) => Some(false),
            _ => None,
        }
    };
    join.filter.as_ref().is_some_and(|f| {
        split_conjunction(f).into_iter().any(|c| match c {
            Expr::BinaryExpr(BinaryExpr {
                left: l,
                op: Operator::Eq,
                right: r,
            }) => matches!((side(l), side(r)), (Some(a), Some(b)) if a != b),
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::testing::{accepts_dp, refused_dp};

    #[test]
    fn a_unit_compared_with_itself_is_not_a_unit_join() {
        for sql in [
            "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h1.id_number = h1.id_number",
            "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h2.id_number = h2.id_number WHERE h2.diagnosis_category = 'mental'",
            "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h1.diagnosis_category = h2.diagnosis_category",
            "SELECT COUNT(*) FROM health_visits h1 CROSS JOIN health_visits h2",
            "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h1.id_number = h2.id_number OR h1.hospital = h2.hospital",
            "SELECT COUNT(*) FROM health_visits h1 FULL JOIN health_visits h2 ON h1.id_number = h2.id_number",
        ] {
            assert_eq!(refused_dp(sql), super::RULE, "{sql}");
        }
    }

    #[test]
    fn protected_scans_join_on_their_units_on_either_side() {
        accepts_dp(
            "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h1.id_number = h2.id_number WHERE h2.diagnosis_category = 'mental'",
        );
        accepts_dp(
            "SELECT h1.diagnosis_category, COUNT(*) FROM health_visits h1 LEFT JOIN health_visits h2 ON h2.id_number = h1.id_number AND h1.hospital = h2.hospital GROUP BY h1.diagnosis_category",
        );
        accepts_dp(
            "WITH t AS (SELECT id_number, cost FROM health_visits WHERE cost > 100) SELECT SUM(t.cost) FROM t JOIN health_visits h ON t.id_number = h.id_number",
        );
    }

    #[test]
    fn nothing_mixes_units_before_the_bounding() {
        for sql in [
            "SELECT COUNT(*) FROM (SELECT id_number FROM health_visits UNION ALL SELECT id_number FROM health_visits) u",
            "SELECT COUNT(*) FROM (SELECT DISTINCT diagnosis_category FROM health_visits) d",
            "SELECT COUNT(*) FROM (SELECT id_number FROM health_visits ORDER BY cost LIMIT 10) t",
            "SELECT COUNT(*) FROM (SELECT id_number, ROW_NUMBER() OVER (ORDER BY cost) AS r FROM health_visits) t WHERE r = 1",
            "SELECT COUNT(*) FROM (SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category) t",
        ] {
            assert_eq!(refused_dp(sql), super::RULE, "{sql}");
        }
    }

    #[test]
    fn unprotected_rows_are_not_kept_by_protected_ones() {
        // legal_persons is plain for consumers: which of its rows are counted
        // may not depend on health visits.
        assert_eq!(
            refused_dp(
                "SELECT COUNT(*) FROM legal_persons l LEFT SEMI JOIN health_visits h ON l.county_code = h.county_code"
            ),
            super::RULE
        );
        // A cross join with a plain table multiplies one person's rows.
        for sql in [
            "SELECT COUNT(*) FROM health_visits h CROSS JOIN legal_persons a CROSS JOIN legal_persons b WHERE h.diagnosis_category = 'mental'",
            "SELECT COUNT(*) FROM health_visits h JOIN legal_persons a ON 1 = 1",
            "SELECT COUNT(*) FROM health_visits h JOIN legal_persons a ON h.cost > 10",
        ] {
            assert_eq!(refused_dp(sql), super::RULE, "{sql}");
        }
    }

    /// The timing attack that read a diagnosis and a cost: joins that fan
    /// one person's rows out over a plain table, disguised as equalities.
    #[test]
    fn no_join_repeats_a_protected_row() {
        for sql in [
            "SELECT COUNT(*) FROM health_visits h JOIN legal_persons a ON h.county_code = a.county_code",
            "SELECT COUNT(*) FROM health_visits h JOIN legal_persons l1 ON substr(l1.uscc, 1, 0) = substr(h.id_number, 1, 0) WHERE h.diagnosis_category = 'mental'",
            "SELECT COUNT(*) FROM health_visits h JOIN legal_persons l1 ON l1.county_code = h.county_code JOIN legal_persons l2 ON l2.county_code = l1.county_code WHERE h.cost < 100",
            "SELECT COUNT(*) FROM legal_persons l LEFT JOIN health_visits h ON l.county_code = h.county_code WHERE h.cost < 100",
            "SELECT COUNT(*) FROM health_visits h JOIN (SELECT a.uscc FROM legal_persons a JOIN legal_persons b ON a.county_code = b.county_code) x ON x.uscc = h.id_number",
            "SELECT COUNT(*) FROM tax t JOIN legal_persons l ON l.county_code = t.county_code",
            // Three protected scans chained on their units.
            "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h1.id_number = h2.id_number JOIN health_visits h3 ON h2.id_number = h3.id_number WHERE h1.cost < 100",
        ] {
            assert_eq!(refused_dp(sql), super::RULE, "{sql}");
        }
        // A lookup of one row per protected row, and a semi-join that keeps
        // only protected rows, are answered.
        accepts_dp(
            "SELECT l.industry, COUNT(*) FROM tax t JOIN legal_persons l ON l.uscc = t.uscc GROUP BY l.industry",
        );
        accepts_dp(
            "SELECT COUNT(*) FROM health_visits h WHERE h.county_code IN (SELECT county_code FROM legal_persons WHERE status = 'active')",
        );
    }
}
