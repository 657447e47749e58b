//! Principals, their API keys (kept only as SHA-256 hashes) and grants.

use std::fmt;

use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{OptionalExtension, Row, params};
use sha2::{Digest, Sha256};
use veil_policies::identifiers::{CitizenId, CreditCode};
use veil_policies::{Grant, Principal, RegionScope, Role};

use super::{Store, StoreError, now_text, parse_time, time_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalStatus {
    Active,
    /// Art. 47-48: access suspended until the misuse is corrected.
    Suspended,
}

impl PrincipalStatus {
    fn name(self) -> &'static str {
        match self {
            PrincipalStatus::Active => "active",
            PrincipalStatus::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrincipalRecord {
    pub id: i64,
    pub principal: Principal,
    pub status: PrincipalStatus,
    pub created_at: DateTime<Utc>,
}

/// A new API key: 256 random bits, shown once. Its `Debug` hides it.
pub struct ApiKey(String);

impl ApiKey {
    fn generate() -> Result<ApiKey, StoreError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| {
            StoreError::Io(std::io::Error::other("the system random source failed"))
        })?;
        Ok(ApiKey(format!("veil_{}", hex(&bytes))))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store keeps of an API key: its SHA-256.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Names principals may have: what a shell and a URL carry unquoted.
pub fn check_principal_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("a principal name is 1 to 64 letters, digits, `.`, `_`, `@` or `-`, starting with a letter or digit".into())
    }
}

const COLUMNS: &str = "id, name, role, org, region, subject, status, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<PrincipalRecord> {
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    };
    let role: Role = r.get::<_, String>(2)?.parse().map_err(|e| bad(2, e))?;
    let region = match r.get::<_, Option<String>>(4)? {
        Some(code) => Some(RegionScope::parse(&code).map_err(|e| bad(4, e))?),
        None => None,
    };
    let status = match r.get::<_, String>(6)?.as_str() {
        "active" => PrincipalStatus::Active,
        _ => PrincipalStatus::Suspended,
    };
    let mut principal = Principal::new(r.get::<_, String>(1)?, role);
    principal.org = r.get(3)?;
    principal.region = region;
    principal.subject = r.get(5)?;
    Ok(PrincipalRecord {
        id: r.get(0)?,
        principal,
        status,
        created_at: parse_time(&r.get::<_, String>(7)?)?,
    })
}

/// What `add_principal` needs to know.
#[derive(Debug, Clone)]
pub struct NewPrincipal<'a> {
    pub name: &'a str,
    pub role: Role,
    pub org: Option<&'a str>,
    pub region: Option<&'a str>,
    pub subject: Option<&'a str>,
}

impl Store {
    /// Creates a principal with one API key.
    pub fn add_principal(
        &mut self,
        new: &NewPrincipal<'_>,
    ) -> Result<(PrincipalRecord, ApiKey), StoreError> {
        let mut problems = Vec::new();
        if let Err(e) = check_principal_name(new.name) {
            problems.push(veil_policies::Problem::new("name", e));
        }
        if let Some(region) = new.region
            && let Err(e) = RegionScope::parse(region)
        {
            problems.push(veil_policies::Problem::new("region", e));
        }
        match (new.role, new.subject) {
            (Role::Subject, None) => problems.push(veil_policies::Problem::new(
                "subject",
                "a subject principal needs the identity number or credit code it stands for",
            )),
            (Role::Subject, Some(s))
                if CitizenId::parse(s).is_err() && CreditCode::parse(s).is_err() =>
            {
                problems.push(veil_policies::Problem::new(
                    "subject",
                    "is neither a valid identity number nor a valid credit code",
                ))
            }
            (Role::Subject, Some(_)) | (_, None) => {}
            (_, Some(_)) => problems.push(veil_policies::Problem::new(
                "subject",
                "only principals with the subject role have one",
            )),
        }
        if let Some(org) = new.org
            && (org.trim().is_empty() || org.chars().count() > 200)
        {
            problems.push(veil_policies::Problem::new(
                "org",
                "an organisation name is 1 to 200 characters",
            ));
        }
        if !problems.is_empty() {
            return Err(StoreError::Invalid(veil_policies::Problems(problems)));
        }
        let key = ApiKey::generate()?;
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM principals WHERE name = ?1)",
            params![new.name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::Conflict(format!(
                "a principal named `{}` already exists",
                new.name
            )));
        }
        let now = now_text();
        tx.execute(
            "INSERT INTO principals (name, role, org, region, subject, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![new.name, new.role.name(), new.org, new.region, new.subject, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO api_keys (principal_id, key_hash, created_at) VALUES (?1, ?2, ?3)",
            params![id, key_hash(key.expose()), now],
        )?;
        tx.commit()?;
        let record = self
            .principal(new.name)?
            .ok_or_else(|| StoreError::NotFound(new.name.to_owned()))?;
        Ok((record, key))
    }

    /// Issues one more key for an existing principal.
    pub fn issue_key(&mut self, name: &str) -> Result<ApiKey, StoreError> {
        let record = self.principal(name)?.ok_or_else(not_found)?;
        let key = ApiKey::generate()?;
        self.conn.execute(
            "INSERT INTO api_keys (principal_id, key_hash, created_at) VALUES (?1, ?2, ?3)",
            params![record.id, key_hash(key.expose()), now_text()],
        )?;
        Ok(key)
    }

    /// Revokes every key of a principal at once (Art. 45); returns how many
    /// keys were still live.
    pub fn revoke_keys(&mut self, name: &str) -> Result<usize, StoreError> {
        let record = self.principal(name)?.ok_or_else(not_found)?;
        let n = self.conn.execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE principal_id = ?2 AND revoked_at IS NULL",
            params![now_text(), record.id],
        )?;
        Ok(n)
    }

    pub fn set_status(&mut self, name: &str, status: PrincipalStatus) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE principals SET status = ?1 WHERE name = ?2",
            params![status.name(), name],
        )?;
        if n == 0 { Err(not_found()) } else { Ok(()) }
    }

    /// A principal with its live grants.
    pub fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>, StoreError> {
        let record = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM principals WHERE name = ?1"),
                params![name],
                from_row,
            )
            .optional()?;
        record.map(|r| self.with_grants(r)).transpose()
    }

    pub fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM principals ORDER BY name"))?;
        let records = stmt
            .query_map([], from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        records.into_iter().map(|r| self.with_grants(r)).collect()
    }

    /// The active principal holding a live `key`, if any. Revocation and
    /// suspension take effect on the next call.
    pub fn authenticate(&self, key: &str) -> Result<Option<PrincipalRecord>, StoreError> {
        Ok(self
            .authenticate_any(key)?
            .filter(|r| r.status == PrincipalStatus::Active))
    }

    /// Advances with every change to principals, keys and grants, from any
    /// process: while it stands still, an authenticated caller is the same.
    pub fn access_generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT n FROM access_generation WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
    }

    /// The principal holding a live `key`, suspended or not.
    pub fn authenticate_any(&self, key: &str) -> Result<Option<PrincipalRecord>, StoreError> {
        self.authenticate_hash(&key_hash(key))
    }

    /// The principal holding the live key with this hash, suspended or not.
    pub fn authenticate_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<PrincipalRecord>, StoreError> {
        let record = self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM principals p JOIN api_keys k ON k.principal_id = p.id
                     WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("p.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?
            .query_row(params![hash.as_slice()], from_row)
            .optional()?;
        record.map(|r| self.with_grants(r)).transpose()
    }

    /// Records a grant: access to `fields` (all when `None`) of `dataset` for
    /// `purpose` until `expires_at`.
    pub fn add_grant(
        &mut self,
        principal: &str,
        dataset: &str,
        fields: Option<&[String]>,
        purpose: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Grant, StoreError> {
        let record = self.principal(principal)?.ok_or_else(not_found)?;
        if self.dataset(dataset)?.is_none() {
            return Err(StoreError::NotFound("no dataset has this name".into()));
        }
        let id = insert_grant(&self.conn, record.id, dataset, fields, purpose, expires_at)?;
        Ok(Grant {
            id,
            dataset: dataset.to_owned(),
            fields: fields.map(<[String]>::to_vec),
            purpose: purpose.to_owned(),
            expires_at,
        })
    }

    fn with_grants(&self, mut record: PrincipalRecord) -> Result<PrincipalRecord, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, dataset, fields, purpose, expires_at FROM grants WHERE principal_id = ?1 AND revoked_at IS NULL ORDER BY granted_at",
        )?;
        let grants = stmt
            .query_map(params![record.id], |r| {
                let fields: Option<String> = r.get(2)?;
                let fields = match fields {
                    None => None,
                    Some(text) => {
                        Some(serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                2,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?)
                    }
                };
                Ok(Grant {
                    id: r.get(0)?,
                    dataset: r.get(1)?,
                    fields,
                    purpose: r.get(3)?,
                    expires_at: parse_time(&r.get::<_, String>(4)?)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        record.principal.grants = grants;
        Ok(record)
    }
}

/// A random identifier with a prefix: `g-` grants, `r-` requests.
pub(crate) fn new_id(prefix: &str) -> Result<String, StoreError> {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Io(std::io::Error::other("the system random source failed")))?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// Inserts a grant on `conn` (a transaction, when the caller has one) and
/// returns its id.
pub(crate) fn insert_grant(
    conn: &rusqlite::Connection,
    principal_id: i64,
    dataset: &str,
    fields: Option<&[String]>,
    purpose: &str,
    expires_at: DateTime<Utc>,
) -> Result<String, StoreError> {
    let id = new_id("g-")?;
    let fields_json = fields.map(|f| serde_json::to_string(f).unwrap_or_else(|_| "[]".into()));
    conn.execute(
        "INSERT INTO grants (id, principal_id, dataset, fields, purpose, granted_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, principal_id, dataset, fields_json, purpose, now_text(), time_text(expires_at)],
    )?;
    Ok(id)
}

/// Not found, without repeating the name asked for: it is the caller's text.
fn not_found() -> StoreError {
    StoreError::NotFound("no principal has this name".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str) -> NewPrincipal<'_> {
        NewPrincipal {
            name,
            role: Role::Consumer,
            org: Some("Kunming Civil Affairs"),
            region: Some("530100"),
            subject: None,
        }
    }

    #[test]
    fn keys_authenticate_until_revoked_and_are_stored_hashed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let (record, key) = store.add_principal(&consumer("alice")).unwrap();
        assert_eq!(record.principal.region.as_ref().unwrap().prefix(), "5301");
        assert!(key.expose().starts_with("veil_") && key.expose().len() == 5 + 64);
        assert_eq!(format!("{key:?}"), "ApiKey(..)");
        assert_eq!(
            store
                .authenticate(key.expose())
                .unwrap()
                .unwrap()
                .principal
                .name,
            "alice"
        );
        assert!(store.authenticate("veil_wrong").unwrap().is_none());

        // The key itself is nowhere in the database file.
        let db = std::fs::read(store.path()).unwrap();
        let wal = std::fs::read(store.path().with_extension("db-wal")).unwrap_or_default();
        let needle = key.expose().as_bytes();
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }

        let second = store.issue_key("alice").unwrap();
        assert_eq!(store.revoke_keys("alice").unwrap(), 2);
        assert!(store.authenticate(key.expose()).unwrap().is_none());
        assert!(store.authenticate(second.expose()).unwrap().is_none());
        let third = store.issue_key("alice").unwrap();
        assert!(store.authenticate(third.expose()).unwrap().is_some());
        store
            .set_status("alice", PrincipalStatus::Suspended)
            .unwrap();
        assert!(store.authenticate(third.expose()).unwrap().is_none());
    }

    #[test]
    fn bad_principals_are_refused_with_every_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let bad = NewPrincipal {
            name: "-bob",
            role: Role::Subject,
            org: Some(" "),
            region: Some("53"),
            subject: Some("123"),
        };
        let StoreError::Invalid(problems) = store.add_principal(&bad).unwrap_err() else {
            panic!()
        };
        let text = problems.to_string();
        for place in ["name:", "region:", "subject:", "org:"] {
            assert!(text.contains(place), "{text}");
        }
        assert!(!text.contains("123"), "the subject is not echoed: {text}");
        store.add_principal(&consumer("carol")).unwrap();
        assert!(matches!(
            store.add_principal(&consumer("carol")),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.revoke_keys("nobody"),
            Err(StoreError::NotFound(_))
        ));
        let subject = NewPrincipal {
            name: "zhang",
            role: Role::Subject,
            org: None,
            region: None,
            subject: Some("11010519491231002X"),
        };
        assert!(store.add_principal(&subject).is_ok());
    }
}
