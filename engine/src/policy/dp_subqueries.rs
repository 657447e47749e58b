//! Rule: inside a differentially private query, no subquery (EXISTS, IN,
//! a scalar subquery, correlated or not) reads protected data.
//!
//! A subquery's result is the same for every row of the outer query, or
//! depends on other rows than the outer row's own: either way it lets one
//! unit's data choose or change the rows of every other unit, which no
//! per-unit bound covers. A per-row condition on the unit's own rows is
//! written as a WHERE on the outer query, or as a join on the unit. A
//! subquery over unprotected data (a plain dataset) is allowed: it is the
//! same for neighbouring datasets.

use super::{Out, Stage};
use crate::error::{QueryError, deny};

pub(crate) const RULE: &str = "dp-subquery";

impl Stage<'_> {
    /// Refuses a subquery over protected data below a DP aggregate.
    pub(super) fn dp_subquery(&self, subquery: &Out) -> Result<(), QueryError> {
        if self.fields.below_dp && subquery.protected {
            return Err(deny(
                None,
                RULE,
                "a subquery (EXISTS, IN or scalar) may not read data protected by differential privacy inside a differentially private query; filter the outer rows with WHERE, or join the datasets on their privacy units",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::testing::{accepts_dp, refused, refused_dp};

    #[test]
    fn subqueries_over_protected_data_are_refused_in_every_form() {
        for sql in [
            "SELECT diagnosis_category, COUNT(*) FROM health_visits WHERE EXISTS (SELECT 1 FROM health_visits h2 WHERE h2.id_number = '530102199001011234' AND h2.diagnosis_category = 'mental') GROUP BY diagnosis_category",
            "SELECT COUNT(*) FROM health_visits h WHERE EXISTS (SELECT 1 FROM health_visits h2 WHERE h2.id_number = h.id_number AND h2.diagnosis_category = 'mental')",
            "SELECT COUNT(*) FROM health_visits WHERE id_number IN (SELECT id_number FROM health_visits WHERE diagnosis_category = 'mental')",
            "SELECT COUNT(*) FROM health_visits WHERE cost > (SELECT AVG(cost) FROM health_visits)",
            "SELECT sex, COUNT(*) FROM population WHERE EXISTS (SELECT 1 FROM health_visits h WHERE h.diagnosis_category = 'mental') GROUP BY sex",
            "SELECT COUNT(*) FROM population p WHERE p.id_number NOT IN (SELECT id_number FROM health_visits)",
        ] {
            // A subquery with an aggregate inside is refused as soon as the
            // aggregate is met (`dp_units`); either rule keeps it out.
            let rule = refused_dp(sql);
            assert!(
                [super::RULE, crate::policy::dp_units::RULE].contains(&rule),
                "{sql}: {rule}"
            );
        }
    }

    #[test]
    fn a_subquery_over_unprotected_data_is_allowed() {
        accepts_dp(
            "SELECT COUNT(*) FROM health_visits WHERE county_code IN (SELECT county_code FROM legal_persons WHERE industry = 'manufacturing')",
        );
    }

    #[test]
    fn without_epsilon_the_query_is_a_dp_query_and_refused_alike() {
        // dp fields without `epsilon`: answered under DP at the default ε,
        // so the same rule refuses it.
        assert_eq!(
            refused(
                "SELECT COUNT(*) FROM legal_persons WHERE EXISTS (SELECT 1 FROM health_visits WHERE diagnosis_category = 'mental')"
            ),
            super::RULE
        );
    }
}
