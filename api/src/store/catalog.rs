//! Catalog entries in the store: every registration kept, the latest current.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use veil_engine::source::CheckedSource;
use veil_policies::DatasetManifest;

use super::{Store, StoreError, now_text, parse_time};

/// A dataset as registered: its manifest and the file it was checked against.
#[derive(Debug, Clone)]
pub struct RegisteredDataset {
    pub manifest: DatasetManifest,
    pub manifest_text: String,
    pub version: i64,
    pub data_path: PathBuf,
    pub file_size: u64,
    pub file_sha256: String,
    pub rows: u64,
    /// One row per privacy unit, checked on the file at registration.
    pub unique_units: bool,
    pub registered_at: DateTime<Utc>,
    pub registered_by: String,
}

const COLUMNS: &str = "name, version, manifest, data_path, file_size, file_sha256, rows, registered_at, registered_by, unique_units";

fn from_row(r: &Row<'_>) -> rusqlite::Result<RegisteredDataset> {
    let text: String = r.get(2)?;
    // Stored manifests were checked at registration. Grades are not checked
    // again here: a grade the current policy lacks is decided as deny.
    let manifest = DatasetManifest::parse(&text, &|_| true).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(RegisteredDataset {
        manifest,
        manifest_text: text,
        version: r.get(1)?,
        data_path: PathBuf::from(r.get::<_, String>(3)?),
        file_size: r.get::<_, i64>(4)? as u64,
        file_sha256: r.get(5)?,
        rows: r.get::<_, i64>(6)? as u64,
        registered_at: parse_time(&r.get::<_, String>(7)?)?,
        registered_by: r.get(8)?,
        unique_units: r.get(9)?,
    })
}

impl Store {
    /// Stores a checked manifest and source as the dataset's next version.
    /// Registering the same manifest over the same file again changes
    /// nothing and returns the current entry.
    pub fn register_dataset(
        &mut self,
        manifest_text: &str,
        manifest: &DatasetManifest,
        source: &CheckedSource,
        by: &str,
    ) -> Result<(RegisteredDataset, bool), StoreError> {
        if let Some(current) = self.dataset(&manifest.name)?
            && current.manifest_text == manifest_text
            && current.file_sha256 == source.sha256
            && current.data_path == source.path
        {
            return Ok((current, false));
        }
        let path = source
            .path
            .to_str()
            .ok_or_else(|| StoreError::Conflict("the data path is not valid UTF-8".into()))?;
        let tx = self.conn.transaction()?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM datasets WHERE name = ?1",
            params![manifest.name],
            |r| r.get(0),
        )?;
        tx.execute(
            &format!(
                "INSERT INTO datasets ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                manifest.name,
                version,
                manifest_text,
                path,
                source.size as i64,
                source.sha256,
                source.rows as i64,
                now_text(),
                by,
                source.unique_units
            ],
        )?;
        tx.commit()?;
        let stored = self
            .dataset(&manifest.name)?
            .ok_or_else(|| StoreError::NotFound(manifest.name.clone()))?;
        Ok((stored, true))
    }

    /// The current entry of every dataset, by name.
    pub fn datasets(&self) -> Result<Vec<RegisteredDataset>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM datasets d WHERE version = (SELECT MAX(version) FROM datasets WHERE name = d.name) ORDER BY name"
        ))?;
        let rows = stmt
            .query_map([], from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn dataset(&self, name: &str) -> Result<Option<RegisteredDataset>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM datasets WHERE name = ?1 ORDER BY version DESC LIMIT 1"
                ),
                params![name],
                from_row,
            )
            .optional()?)
    }

    /// Every registered version of a dataset, oldest first.
    pub fn dataset_history(&self, name: &str) -> Result<Vec<RegisteredDataset>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM datasets WHERE name = ?1 ORDER BY version"
        ))?;
        let rows = stmt
            .query_map(params![name], from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
