//! The regulation's requests: each opened and each step taken in one
//! transaction together with what the step sets (a grant, a qualification,
//! a dataset's access state), so a request never says "granted" without
//! its grant.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;
use veil_policies::calendar::Deadline;
use veil_policies::requests::{Kind, Moved};

use super::principals::{insert_grant, new_id};
use super::{Store, StoreError, now_text, parse_time};

/// A request as the applicant opens it.
pub struct NewRequest<'a> {
    pub kind: Kind,
    pub applicant: &'a str,
    pub dataset: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub fields: Option<&'a [String]>,
    pub days: Option<u32>,
    pub detail: &'a Value,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub id: String,
    pub kind: Kind,
    pub state: String,
    pub applicant: String,
    pub dataset: Option<String>,
    pub purpose: Option<String>,
    pub fields: Option<Vec<String>>,
    pub days: Option<u32>,
    pub detail: Value,
    pub due: Option<NaiveDate>,
    /// Years its deadline was counted Monday to Friday for.
    pub assumed: Vec<i32>,
    pub grant_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One step taken on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub n: i64,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor: String,
    pub notes: Value,
    pub at: DateTime<Utc>,
}

/// What a step writes besides the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Apply {
    Nothing,
    /// A grant to the applicant for the request's dataset, fields and
    /// purpose until `expires_at`.
    Grant {
        expires_at: DateTime<Utc>,
    },
    /// The applicant's development qualification.
    Qualify {
        agreement: String,
    },
    Disqualify,
    /// The request's dataset enters this access state (or leaves any).
    DatasetAccess(Option<&'static str>),
}

const COLUMNS: &str = "id, kind, state, applicant, dataset, purpose, fields, days, detail, due, assumed, grant_id, created_at, updated_at";

fn json_error(column: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<RequestRecord> {
    let kind: String = r.get(1)?;
    let fields: Option<String> = r.get(6)?;
    let due: Option<String> = r.get(9)?;
    let assumed: String = r.get(10)?;
    Ok(RequestRecord {
        id: r.get(0)?,
        kind: kind.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })?,
        state: r.get(2)?,
        applicant: r.get(3)?,
        dataset: r.get(4)?,
        purpose: r.get(5)?,
        fields: fields
            .map(|f| serde_json::from_str(&f).map_err(|e| json_error(6, e)))
            .transpose()?,
        days: r.get(7)?,
        detail: serde_json::from_str(&r.get::<_, String>(8)?).map_err(|e| json_error(8, e))?,
        due: due.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        assumed: serde_json::from_str(&assumed).map_err(|e| json_error(10, e))?,
        grant_id: r.get(11)?,
        created_at: parse_time(&r.get::<_, String>(12)?)?,
        updated_at: parse_time(&r.get::<_, String>(13)?)?,
    })
}

fn due_columns(due: &Option<Deadline>) -> (Option<String>, String) {
    match due {
        Some(d) => (
            Some(d.date.format("%Y-%m-%d").to_string()),
            serde_json::to_string(&d.assumed_years).unwrap_or_else(|_| "[]".into()),
        ),
        None => (None, "[]".into()),
    }
}

/// Writes what a step sets, inside its transaction.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    request: &RequestRecord,
    what: &Apply,
) -> Result<Option<String>, StoreError> {
    let missing = |what: &str| StoreError::Conflict(format!("the request has no {what}"));
    match what {
        Apply::Nothing => Ok(None),
        Apply::Grant { expires_at } => {
            let principal_id: i64 = tx
                .query_row(
                    "SELECT id FROM principals WHERE name = ?1",
                    params![request.applicant],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| missing("applicant"))?;
            let dataset = request
                .dataset
                .as_deref()
                .ok_or_else(|| missing("dataset"))?;
            let purpose = request
                .purpose
                .as_deref()
                .ok_or_else(|| missing("purpose"))?;
            insert_grant(
                tx,
                principal_id,
                dataset,
                request.fields.as_deref(),
                purpose,
                *expires_at,
            )
            .map(Some)
        }
        Apply::Qualify { agreement } => {
            tx.execute(
                "INSERT INTO qualifications (principal, request_id, agreement, granted_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (principal) DO UPDATE SET request_id = ?2, agreement = ?3, granted_at = ?4, revoked_at = NULL",
                params![request.applicant, request.id, agreement, now_text()],
            )?;
            Ok(None)
        }
        Apply::Disqualify => {
            tx.execute(
                "UPDATE qualifications SET revoked_at = ?2 WHERE principal = ?1",
                params![request.applicant, now_text()],
            )?;
            Ok(None)
        }
        Apply::DatasetAccess(state) => {
            let dataset = request
                .dataset
                .as_deref()
                .ok_or_else(|| missing("dataset"))?;
            match state {
                Some(state) => tx.execute(
                    "INSERT INTO dataset_access (dataset, state, request_id, since) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (dataset) DO UPDATE SET state = ?2, request_id = ?3, since = ?4",
                    params![dataset, state, request.id, now_text()],
                )?,
                None => tx.execute(
                    "DELETE FROM dataset_access WHERE dataset = ?1",
                    params![dataset],
                )?,
            };
            Ok(None)
        }
    }
}

/// Applies what a step sets and commits its transaction.
fn commit(
    tx: rusqlite::Transaction<'_>,
    record: &RequestRecord,
    what: &Apply,
) -> Result<(), StoreError> {
    if let Some(grant) = apply(&tx, record, what)? {
        tx.execute(
            "UPDATE requests SET grant_id = ?2 WHERE id = ?1",
            params![record.id, grant],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens a request in the state `moved` gives, applying what opening
    /// sets, in one transaction.
    pub fn open_request(
        &mut self,
        new: &NewRequest<'_>,
        moved: &Moved,
        what: &Apply,
    ) -> Result<RequestRecord, StoreError> {
        let id = new_id("r-")?;
        let now = now_text();
        let (due, assumed) = due_columns(&moved.due);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            &format!("INSERT INTO requests ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, ?12)"),
            params![
                id,
                new.kind.name(),
                moved.state,
                new.applicant,
                new.dataset,
                new.purpose,
                new.fields.map(|f| serde_json::to_string(f).unwrap_or_else(|_| "[]".into())),
                new.days,
                new.detail.to_string(),
                due,
                assumed,
                now,
            ],
        )?;
        tx.execute(
            "INSERT INTO request_steps (request_id, n, action, from_state, to_state, actor, notes, at) VALUES (?1, 1, 'open', NULL, ?2, ?3, '{}', ?4)",
            params![id, moved.state, new.applicant, now],
        )?;
        let record = tx.query_row(
            &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
            params![id],
            from_row,
        )?;
        commit(tx, &record, what)?;
        self.request(&record.id)?
            .ok_or_else(|| StoreError::NotFound("the request vanished".into()))
    }

    /// Takes a step on request `id`, which must still be in `from` (another
    /// step taken meanwhile is a conflict), applying what it sets.
    #[allow(clippy::too_many_arguments)]
    pub fn step_request(
        &mut self,
        id: &str,
        from: &str,
        action: &str,
        actor: &str,
        notes: &BTreeMap<String, String>,
        moved: &Moved,
        what: &Apply,
    ) -> Result<RequestRecord, StoreError> {
        let now = now_text();
        let (due, assumed) = due_columns(&moved.due);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let record = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
                params![id],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no request `{id}`")))?;
        if record.state != from {
            return Err(StoreError::Conflict(format!(
                "request `{id}` is {} now, not {from}",
                record.state
            )));
        }
        tx.execute(
            "UPDATE requests SET state = ?2, due = ?3, assumed = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, moved.state, due, assumed, now],
        )?;
        let n: i64 = tx.query_row(
            "SELECT COALESCE(MAX(n), 0) + 1 FROM request_steps WHERE request_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO request_steps (request_id, n, action, from_state, to_state, actor, notes, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id,
                n,
                action,
                from,
                moved.state,
                actor,
                serde_json::to_string(notes).unwrap_or_else(|_| "{}".into()),
                now
            ],
        )?;
        commit(tx, &record, what)?;
        self.request(&record.id)?
            .ok_or_else(|| StoreError::NotFound("the request vanished".into()))
    }

    pub fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
                params![id],
                from_row,
            )
            .optional()?)
    }

    /// Every request, newest first.
    pub fn requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM requests ORDER BY created_at DESC, id"
        ))?;
        let records = stmt
            .query_map([], from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(records)
    }

    /// The steps taken on a request, in order.
    pub fn request_steps(&self, id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT n, action, from_state, to_state, actor, notes, at FROM request_steps WHERE request_id = ?1 ORDER BY n",
        )?;
        let steps = stmt
            .query_map(params![id], |r| {
                Ok(StepRecord {
                    n: r.get(0)?,
                    action: r.get(1)?,
                    from_state: r.get(2)?,
                    to_state: r.get(3)?,
                    actor: r.get(4)?,
                    notes: serde_json::from_str(&r.get::<_, String>(5)?)
                        .map_err(|e| json_error(5, e))?,
                    at: parse_time(&r.get::<_, String>(6)?)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(steps)
    }

    /// Whether `principal` holds a development qualification (Art. 39).
    pub fn qualified(&self, principal: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM qualifications WHERE principal = ?1 AND revoked_at IS NULL",
                params![principal],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Datasets whose access a request has changed: (dataset, state).
    pub fn dataset_access(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT dataset, state FROM dataset_access ORDER BY dataset")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
