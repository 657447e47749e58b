//! Rule: protected values never decide which rows count.
//!
//! A field that the caller may not filter on (masked, pseudonymised,
//! aggregate-only, dp outside a DP query, verification-only) may not stand
//! in any condition: WHERE, JOIN ON, HAVING, GROUP BY, ORDER BY, a window's
//! PARTITION BY and ORDER BY, an aggregate's FILTER (checked where each is
//! met, through `Fields::check_influence`), and, here, the conditions
//! inside expressions: CASE (its operand and every WHEN) and NULLIF, in the
//! outer query or a subquery, directly or through any expression. A masked
//! identity number inside `CASE WHEN` would otherwise pick one person's row
//! out of an aggregate, as it cannot out of WHERE. Pseudonyms are joined on
//! their tokens only (`check_condition`); generalised fields arrive at the
//! condition already generalised (`protect_scan`).

use super::Stage;
use super::lineage::Lineage;
use crate::error::QueryError;

impl Stage<'_> {
    /// Checks the lineage of a condition inside an expression.
    pub(super) fn check_inner_condition(
        &self,
        lineage: &Lineage,
        what: &str,
    ) -> Result<(), QueryError> {
        self.fields.check_influence(lineage, what)
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::testing::{accepts, granted_modeler, prepare, refused, rule_of};

    #[test]
    fn masked_values_decide_nothing_inside_an_expression() {
        for sql in [
            "SELECT SUM(CASE WHEN id_number = '5301**********1234' THEN 1 ELSE 0 END) FROM population",
            "SELECT COUNT(CASE WHEN name = '张*' AND phone LIKE '138%' THEN 1 END) FROM population",
            "SELECT CASE id_number WHEN '5301**********1234' THEN 'x' END FROM population",
            "SELECT NULLIF(phone, '138****0000') FROM population",
            "SELECT sex, COUNT(*) FROM population WHERE CASE WHEN name LIKE '张%' THEN true ELSE false END GROUP BY sex",
        ] {
            assert_eq!(refused(sql), "masked", "{sql}");
        }
    }

    #[test]
    fn aggregate_only_values_decide_nothing_either() {
        let sql = "SELECT county_code, COUNT(CASE WHEN revenue > 1000 THEN 1 END) FROM tax GROUP BY county_code";
        let rule = rule_of(prepare(&granted_modeler("tax"), sql, None), sql);
        // Refused as a condition, or first as a condition inside an
        // aggregate's argument: either way it decides nothing.
        assert!(
            ["aggregate", "aggregate-argument"].contains(&rule),
            "{rule}"
        );
    }

    #[test]
    fn plain_conditions_stay_available() {
        accepts(
            "SELECT CASE WHEN sex = 'F' THEN 'woman' ELSE 'man' END AS s, COUNT(*) FROM population GROUP BY 1",
        );
        accepts(
            "SELECT industry, SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END) FROM legal_persons GROUP BY industry",
        );
    }
}
