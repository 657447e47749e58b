//! Subject access (Art. 24): a person or an organisation reads the records
//! about itself, across datasets: the rows whose privacy unit is its
//! identifier, every field its grade lets out in any form. Nobody else's
//! rows: the filter is on the unit, and only the subject's own identifier
//! (from its principal, never from the request) is compared.

use datafusion::execution::context::SessionContext;
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use veil_policies::catalog::IdentifierKind;
use veil_policies::verification::{canonical_identifier, check_identifier};

use crate::engine::{Answer, Engine};
use crate::error::QueryError;

/// One dataset's rows about the subject.
pub struct OwnRecords {
    pub dataset: String,
    pub provider: String,
    pub version: i64,
    pub answer: Answer,
    /// Fields left out: their grade lets them out to nobody (core data).
    pub withheld: Vec<String>,
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal {
        detail: e.to_string(),
    }
}

impl Engine {
    /// The rows about `subject` (an identity number or a credit code) in
    /// every dataset whose privacy unit is that kind of identifier.
    pub async fn records_of(&self, subject: &str) -> Result<Vec<OwnRecords>, QueryError> {
        let subject = canonical_identifier(subject);
        let mut out = Vec::new();
        for dataset in self.datasets() {
            let manifest = &dataset.manifest;
            let Some(unit) = manifest.field(&manifest.privacy_unit) else {
                continue;
            };
            match unit.identifier {
                Some(IdentifierKind::Other) | None => continue,
                Some(kind) if check_identifier(kind, &subject).is_err() => continue,
                Some(_) => {}
            }
            let (released, withheld): (Vec<_>, Vec<_>) = manifest.fields.iter().partition(|f| {
                self.policy()
                    .grade(&f.grade)
                    .is_some_and(|g| g.releases_anything())
            });
            let released: Vec<&str> = released.iter().map(|f| f.name.as_str()).collect();
            if !released.contains(&unit.name.as_str()) {
                continue;
            }
            dataset
                .check_file()
                .map_err(|detail| QueryError::Internal { detail })?;
            let ctx = SessionContext::new_with_state(self.session_state());
            let frame = ctx
                .read_table(dataset.raw.clone())
                .and_then(|f| f.filter(col(unit.name.as_str()).eq(lit(subject.clone()))))
                .and_then(|f| f.select_columns(&released))
                .map_err(internal)?;
            let stream = frame.execute_stream().await.map_err(internal)?;
            let schema = stream.schema();
            let batches: Vec<_> = stream.try_collect().await.map_err(internal)?;
            out.push(OwnRecords {
                dataset: manifest.name.clone(),
                provider: manifest.institutions.providing.clone(),
                version: dataset.version,
                answer: Answer { schema, batches },
                withheld: withheld.iter().map(|f| f.name.clone()).collect(),
            });
        }
        Ok(out)
    }
}
