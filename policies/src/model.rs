//! In-domain models (Art. 32, 38, 39): the model templates approvers enable
//! per dataset, and whether a dataset may be developed at all.
//!
//! A policy's `[models]` table names, per dataset, the templates a
//! qualified modeler may train on it. Whatever the policy says, data whose
//! open attribute is `not_open` cannot be licensed for development
//! (Art. 38), so it is never used by a model.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::catalog::{DatasetManifest, OpenAttribute, token_enum};
use crate::problem::{Problem, is_plain_name};

token_enum!(
    /// A model template: what is trained and what it releases, always under
    /// differential privacy.
    Template, "model template" {
        /// Least squares from noisy sufficient statistics over clamped
        /// features; releases coefficients and fit metrics.
        LinearRegression = "linear_regression",
        /// Noisy Newton steps on the logistic loss, with per-unit gradients
        /// and Hessians bounded by construction; releases coefficients and
        /// accuracy.
        LogisticRegression = "logistic_regression",
        /// Noisy counts of units per equal-width bin of one bounded field.
        Histogram = "histogram",
        /// Quantiles of one bounded field, read from a fine noisy histogram.
        Quantiles = "quantiles",
    }
);

impl Template {
    /// Whether a trained model of this template scores subjects or rows.
    pub fn scores(self) -> bool {
        matches!(
            self,
            Template::LinearRegression | Template::LogisticRegression
        )
    }
}

/// Why `manifest` may not be used for development, if it may not: Art. 38.
pub fn development_refusal(manifest: &DatasetManifest) -> Option<String> {
    (manifest.open.attribute == OpenAttribute::NotOpen).then(|| {
        format!(
            "`{}` is not open data, and data that is not open cannot be licensed for development (Art. 38)",
            manifest.name
        )
    })
}

/// Checks the raw `[models]` table: dataset name to template names.
pub(crate) fn check_models(
    raw: BTreeMap<String, Vec<String>>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Vec<Template>> {
    let mut out = BTreeMap::new();
    for (dataset, names) in raw {
        let loc = format!("models.{dataset}");
        if !is_plain_name(&dataset) {
            problems.push(Problem::new(
                &loc,
                "a dataset name is letters, digits and `_`",
            ));
            continue;
        }
        let mut templates = Vec::new();
        for name in &names {
            match name.parse::<Template>() {
                Ok(t) if templates.contains(&t) => {
                    problems.push(Problem::new(&loc, format!("`{t}` is listed twice")))
                }
                Ok(t) => templates.push(t),
                Err(e) => problems.push(Problem::new(&loc, e)),
            }
        }
        out.insert(dataset, templates);
    }
    out
}
