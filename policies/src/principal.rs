//! Who asks: principals with a role, an organisation, an optional region
//! scope and the grants their approved requests earned.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Consumer,
    Modeler,
    Approver,
    Admin,
    Subject,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Consumer,
        Role::Modeler,
        Role::Approver,
        Role::Admin,
        Role::Subject,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Modeler => "modeler",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Subject => "subject",
        }
    }

    /// The role with its article, for sentences: "a consumer", "an admin".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Consumer => "a consumer",
            Role::Modeler => "a modeler",
            Role::Approver => "an approver",
            Role::Admin => "an admin",
            Role::Subject => "a subject",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role `{s}` (expected consumer, modeler, approver, admin or subject)"
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A region scope: the rows a principal may see are those whose county code
/// starts with `prefix`. Built from a division code: `530000` is the whole
/// province (`53`), `530100` Kunming (`5301`), `530102` one district.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegionScope {
    code: String,
    prefix: String,
}

impl RegionScope {
    pub fn parse(code: &str) -> Result<Self, String> {
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a region is a 6-digit division code such as 530100".into());
        }
        let mut prefix = code;
        for _ in 0..2 {
            match prefix.strip_suffix("00") {
                Some(p) if p.len() >= 2 => prefix = p,
                _ => break,
            }
        }
        if prefix.len() < 2 || prefix.starts_with("00") {
            return Err("a region code must name a province, prefecture or county".into());
        }
        Ok(RegionScope {
            code: code.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// County codes in scope start with this.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn contains(&self, county_code: &str) -> bool {
        county_code.starts_with(&self.prefix)
    }
}

/// An approved request: access to fields of one dataset, for one purpose,
/// until it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: String,
    pub dataset: String,
    /// `None` covers every field of the dataset.
    pub fields: Option<Vec<String>>,
    pub purpose: String,
    pub expires_at: DateTime<Utc>,
}

impl Grant {
    pub fn covers(
        &self,
        dataset: &str,
        field: &str,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> bool {
        self.dataset == dataset
            && purpose == Some(self.purpose.as_str())
            && now < self.expires_at
            && self
                .fields
                .as_ref()
                .is_none_or(|fs| fs.iter().any(|f| f == field))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub org: Option<String>,
    pub region: Option<RegionScope>,
    /// For the `subject` role: the identifier of the person or organisation.
    pub subject: Option<String>,
    pub grants: Vec<Grant>,
}

impl Principal {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Principal {
            name: name.into(),
            role,
            org: None,
            region: None,
            subject: None,
            grants: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_scopes_reduce_to_prefixes() {
        assert_eq!(RegionScope::parse("530000").unwrap().prefix(), "53");
        assert_eq!(RegionScope::parse("530100").unwrap().prefix(), "5301");
        assert_eq!(RegionScope::parse("530102").unwrap().prefix(), "530102");
        let kunming = RegionScope::parse("530100").unwrap();
        assert!(kunming.contains("530102"));
        assert!(!kunming.contains("530302"));
        for bad in ["", "5301", "53010x", "000000", "5301000", "530１00"] {
            assert!(RegionScope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_cover_only_their_dataset_fields_purpose_and_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let grant = Grant {
            id: "g1".into(),
            dataset: "population".into(),
            fields: Some(vec!["name".into()]),
            purpose: "social-assistance".into(),
            expires_at: now + chrono::Duration::days(1),
        };
        assert!(grant.covers("population", "name", Some("social-assistance"), now));
        assert!(!grant.covers("population", "phone", Some("social-assistance"), now));
        assert!(!grant.covers("population", "name", Some("marketing"), now));
        assert!(!grant.covers("population", "name", None, now));
        assert!(!grant.covers("tax", "name", Some("social-assistance"), now));
        assert!(!grant.covers(
            "population",
            "name",
            Some("social-assistance"),
            now + chrono::Duration::days(1)
        ));
    }
}
