//! Grades as approvers see and change them (Art. 11-13): the disclosure
//! level each field has for each analyst role with and without a grant
//! (the policy's decision table made concrete), and changing one field's
//! grade, which is a `catalog_change` request like any other manifest
//! change: a second approver of the authority reviews it.

use chrono::{Duration, Utc};
use serde_json::Value;
use veil_policies::{DatasetManifest, Grant, Level, Principal, Role, decide};

use super::{Audited, Service, ServiceError};
use crate::wire::requests::OpenBody;

/// The roles that query data, whose levels the decision table shows.
pub const ANALYSTS: [Role; 2] = [Role::Consumer, Role::Modeler];

/// One field's levels: per analyst role, without a grant and with one.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldLevels {
    pub field: String,
    pub levels: Vec<(Role, Level, Level)>,
}

impl Service {
    /// The decision table of dataset `name`: each field's level for each
    /// analyst role, without and with a live grant on the whole dataset,
    /// under the active policy (no region scope).
    pub fn decision_table(&self, name: &str) -> Result<Vec<FieldLevels>, ServiceError> {
        let engine = self.engine();
        let dataset = engine
            .datasets()
            .find(|d| d.manifest.name == name)
            .ok_or_else(|| ServiceError::not_found("no dataset has this name"))?;
        let m = &dataset.manifest;
        let now = Utc::now();
        let purpose = "decision table";
        let who = |role: Role, granted: bool| {
            let mut p = Principal::new("", role);
            if granted {
                p.grants.push(Grant {
                    id: "decision-table".into(),
                    dataset: m.name.clone(),
                    fields: None,
                    purpose: purpose.into(),
                    expires_at: now + Duration::days(1),
                });
            }
            p
        };
        Ok(m.fields
            .iter()
            .map(|f| FieldLevels {
                field: f.name.clone(),
                levels: ANALYSTS
                    .iter()
                    .map(|&role| {
                        let level = |granted| {
                            decide(
                                engine.policy(),
                                m,
                                f,
                                &who(role, granted),
                                Some(purpose),
                                now,
                            )
                            .level
                        };
                        (role, level(false), level(true))
                    })
                    .collect(),
            })
            .collect())
    }

    /// Proposes grade `grade` for `field` of dataset `name`, as `caller`:
    /// the registered manifest with that one line changed, opened as a
    /// `catalog_change` request (which checks who may propose it).
    pub fn propose_grade(
        &self,
        caller: &Principal,
        name: &str,
        field: &str,
        grade: &str,
        endpoint: &str,
    ) -> Audited<Value> {
        let text = match self.regraded(name, field, grade) {
            Ok(text) => text,
            Err(e) => {
                let request = format!("catalog_change {name}: grade of one field");
                return Audited::action(caller, endpoint, request, vec![name.to_owned()], Err(e));
            }
        };
        let body = OpenBody {
            kind: "catalog_change".to_owned(),
            dataset: Some(name.to_owned()),
            purpose: None,
            fields: None,
            days: None,
            detail: [("manifest".to_owned(), text)].into(),
            via_authority: false,
        };
        self.open_request(caller, &body, endpoint)
    }

    /// The registered manifest of `name` with `field`'s grade set to `grade`.
    fn regraded(&self, name: &str, field: &str, grade: &str) -> Result<String, ServiceError> {
        let store = self.reader()?;
        let registered = store
            .dataset(name)?
            .ok_or_else(|| ServiceError::not_found("no dataset has this name"))?;
        let policy = store
            .active_policy()?
            .ok_or_else(|| ServiceError::not_found("no policy is loaded"))?
            .policy;
        if policy.grade(grade).is_none() {
            return Err(ServiceError::bad_request(
                "the active policy has no such grade",
            ));
        }
        let Some(current) = registered.manifest.field(field) else {
            return Err(ServiceError::bad_request("the dataset has no such field"));
        };
        if current.grade == grade {
            return Err(ServiceError::bad_request(
                "the field has this grade already",
            ));
        }
        let text = set_grade(&registered.manifest_text, field, grade).ok_or_else(|| {
            ServiceError::bad_request(
                "this manifest's field entry cannot be changed line by line; open a catalog_change request with the whole manifest",
            )
        })?;
        // Fail closed: the new text must parse to the same entry with that
        // one grade changed, and nothing else.
        let known = |g: &str| policy.grade(g).is_some();
        let parsed = DatasetManifest::parse(&text, &known)
            .map_err(|p| ServiceError::bad_request(p.to_string()))?;
        let mut expected = registered.manifest.clone();
        if let Some(f) = expected.fields.iter_mut().find(|f| f.name == field) {
            f.grade = grade.to_owned();
        }
        if parsed != expected {
            return Err(ServiceError::internal(
                "a grade change would change more than the grade",
            ));
        }
        Ok(text)
    }
}

/// `text` with the `grade` line of the `[[field]]` table named `field` set
/// to `grade`, keeping every other line as it is; `None` when there is no
/// such table or line.
pub fn set_grade(text: &str, field: &str, grade: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // The `[[field]]` tables: from their header to the next header.
    let header = |l: &str| l.trim_start().starts_with('[');
    let mut target = None;
    let mut start = None;
    for (i, line) in lines.iter().enumerate().chain([(lines.len(), &"[")]) {
        if header(line) {
            if let Some(s) = start.take()
                && names(&lines[s..i], field)
            {
                let grade_line = (s..i).find(|&j| key_of(lines[j]) == Some("grade"))?;
                if target.replace(grade_line).is_some() {
                    return None;
                }
            }
            if line.trim() == "[[field]]" {
                start = Some(i + 1);
            }
        }
    }
    let at = target?;
    let line = lines[at];
    let indent = &line[..line.len() - line.trim_start().len()];
    let ending = if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    };
    let value = toml::Value::String(grade.to_owned());
    let mut out = String::with_capacity(text.len() + grade.len());
    for (i, l) in lines.iter().enumerate() {
        if i == at {
            out.push_str(&format!("{indent}grade = {value}{ending}"));
        } else {
            out.push_str(l);
        }
    }
    Some(out)
}

/// The key a `key = value` line sets.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#')).then_some(key)
}

/// Whether the table's lines set `name` to `field`.
fn names(lines: &[&str], field: &str) -> bool {
    lines.iter().any(|l| {
        key_of(l) == Some("name")
            && toml::from_str::<toml::Table>(l)
                .ok()
                .and_then(|t| t.get("name").and_then(|v| v.as_str().map(str::to_owned)))
                .is_some_and(|n| n == field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: [&str; 3] = [
        include_str!("../../../datasets/manifests/population.toml"),
        include_str!("../../../datasets/manifests/health_visits.toml"),
        include_str!("../../../datasets/manifests/tax.toml"),
    ];

    #[test]
    fn a_grade_change_changes_that_grade_and_nothing_else() {
        let policy = veil_policies::Policy::default_preset();
        let known = |g: &str| policy.grade(g).is_some();
        for text in MANIFESTS {
            let before = DatasetManifest::parse(text, &known).unwrap();
            for f in &before.fields {
                for g in &policy.grades {
                    let changed = set_grade(text, &f.name, &g.name).unwrap();
                    let after = DatasetManifest::parse(&changed, &known).unwrap();
                    let mut expected = before.clone();
                    expected
                        .fields
                        .iter_mut()
                        .find(|x| x.name == f.name)
                        .unwrap()
                        .grade = g.name.clone();
                    assert_eq!(after, expected, "{} {}", f.name, g.name);
                    let differing = text
                        .lines()
                        .zip(changed.lines())
                        .filter(|(a, b)| a != b)
                        .count();
                    assert!(differing <= 1, "{} lines changed", differing);
                    assert_eq!(text.lines().count(), changed.lines().count());
                }
            }
        }
    }

    #[test]
    fn a_field_that_is_not_there_or_a_name_in_a_comment_is_no_target() {
        let text = "[[field]]\nname = \"a\"\ngrade = \"L1\"\n# name = \"b\"\n";
        assert_eq!(set_grade(text, "b", "L2"), None);
        assert_eq!(
            set_grade(text, "a", "L2").unwrap(),
            "[[field]]\nname = \"a\"\ngrade = \"L2\"\n# name = \"b\"\n"
        );
        // A table without a grade line, and a name set twice, are refused.
        assert_eq!(set_grade("[[field]]\nname = \"a\"\n", "a", "L2"), None);
        let twice =
            "[[field]]\nname = \"a\"\ngrade = \"L1\"\n[[field]]\nname = \"a\"\ngrade = \"L1\"\n";
        assert_eq!(set_grade(twice, "a", "L2"), None);
        // A grade's text is written as a TOML string, quotes and all.
        let odd = set_grade(text, "a", "L\"9").unwrap();
        let table: toml::Table = toml::from_str(odd.trim_start_matches("[[field]]\n")).unwrap();
        assert_eq!(table["grade"].as_str(), Some("L\"9"), "{odd}");
    }
}
