//! Trained models, kept with their spec, what they released, the policy
//! version that decided them and their lineage (schema v7).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_text};

/// A model as stored; the JSON columns are kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub id: String,
    pub owner: String,
    pub template: String,
    pub spec: String,
    pub model: String,
    pub privacy: String,
    pub lineage: String,
    pub policy_version: String,
    pub created_at: String,
}

const COLUMNS: &str =
    "id, owner, template, spec, model, privacy, lineage, policy_version, created_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelRecord> {
    Ok(ModelRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        template: r.get(2)?,
        spec: r.get(3)?,
        model: r.get(4)?,
        privacy: r.get(5)?,
        lineage: r.get(6)?,
        policy_version: r.get(7)?,
        created_at: r.get(8)?,
    })
}

impl Store {
    /// Keeps a trained model; `ledger` names the budget rows it was charged.
    /// The id and `created_at` are set here.
    pub fn insert_model(
        &mut self,
        m: &ModelRecord,
        ledger: &[i64],
    ) -> Result<ModelRecord, StoreError> {
        let created_at = now_text();
        let id = super::principals::new_id("m-")?;
        let ledger = serde_json::to_string(ledger).expect("a list of integers");
        self.conn.execute(
            "INSERT INTO models (id, owner, template, spec, model, privacy, lineage, policy_version, ledger, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![id, m.owner, m.template, m.spec, m.model, m.privacy, m.lineage, m.policy_version, ledger, created_at],
        )?;
        Ok(ModelRecord {
            id,
            created_at,
            ..m.clone()
        })
    }

    /// The models `owner` trained, newest first.
    pub fn models_of(&self, owner: &str) -> Result<Vec<ModelRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM models WHERE owner = ?1 ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map(params![owner], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The model `id`, when `owner` trained it.
    pub fn model_of(&self, owner: &str, id: &str) -> Result<Option<ModelRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM models WHERE owner = ?1 AND id = ?2"),
                params![owner, id],
                record,
            )
            .optional()?)
    }
}
