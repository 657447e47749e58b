//! Rule: a differentially private answer is charged to every dataset that a
//! protected scan reads, wherever the scan stands in the plan (the FROM
//! list, either side of a join, a CTE or a derived table; subqueries over
//! protected data are refused by `dp_subqueries`), whichever of its fields
//! the query names: in SELECT, WHERE, JOIN or GROUP BY, or none at all.
//! Dry runs report the same set, since they prepare the same plan.

use super::Stage;
use crate::error::{QueryError, invalid};

impl Stage<'_> {
    /// The datasets a DP answer over this walk's plan pays for, sorted; a
    /// plan with no protected scan needs no differential privacy.
    pub(super) fn charged(&self) -> Result<Vec<String>, QueryError> {
        if self.protected_datasets.is_empty() {
            return Err(invalid(
                "this query reads nothing that needs differential privacy; send it without `epsilon`",
            ));
        }
        Ok(self.protected_datasets.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::testing::{charged, refused_dp};

    #[test]
    fn every_protected_dataset_in_the_plan_is_charged() {
        // Read only in a join and a filter, health visits still pay.
        assert_eq!(
            charged(
                "SELECT p.sex, COUNT(*) FROM population p JOIN health_visits h ON p.id_number = h.id_number WHERE h.diagnosis_category = 'mental' GROUP BY p.sex"
            ),
            ["health_visits", "population"]
        );
        // Read only through a CTE's filter.
        assert_eq!(
            charged(
                "WITH m AS (SELECT id_number FROM health_visits WHERE diagnosis_category = 'mental') SELECT COUNT(*) FROM m"
            ),
            ["health_visits"]
        );
        // No field of it is named at all.
        assert_eq!(
            charged("SELECT COUNT(*) FROM health_visits"),
            ["health_visits"]
        );
    }

    #[test]
    fn a_query_with_nothing_protected_is_not_a_dp_query() {
        assert_eq!(
            refused_dp("SELECT industry, COUNT(*) FROM legal_persons GROUP BY industry"),
            "invalid"
        );
    }
}
