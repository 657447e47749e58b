//! The decision: a field's disclosure level for one principal and purpose.

use chrono::{DateTime, Utc};

use crate::catalog::{DatasetManifest, FieldSpec, ShareAttribute};
use crate::disclosure::{Level, LevelKind};
use crate::policy::Policy;
use crate::principal::Principal;

/// A level and the reason for it, so refusals can say which rule applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub level: Level,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The field's grade is not defined by the policy: unclassified is deny.
    UnknownGrade,
    /// The grade's bundle, without a grant.
    Grade { grade: String },
    /// The grade's bundle, with the grant that covers the field.
    Granted { grade: String, grant: String },
    /// The dataset is not shared: it can only be verified (Art. 29).
    NotShared { grade: String },
}

/// Decides the level of `field` of `dataset` for `principal` asking for
/// `purpose` at `now`.
pub fn decide(
    policy: &Policy,
    dataset: &DatasetManifest,
    field: &FieldSpec,
    principal: &Principal,
    purpose: Option<&str>,
    now: DateTime<Utc>,
) -> Decision {
    let Some(grade) = policy.grade(&field.grade) else {
        return Decision {
            level: Level::Deny,
            reason: Reason::UnknownGrade,
        };
    };
    let grant = principal
        .grants
        .iter()
        .find(|g| g.covers(&dataset.name, &field.name, purpose, now));
    let (candidates, reason) = match grant {
        Some(g) => (
            grade.granted.get(&principal.role),
            Reason::Granted {
                grade: grade.name.clone(),
                grant: g.id.clone(),
            },
        ),
        None => (
            grade.levels.get(&principal.role),
            Reason::Grade {
                grade: grade.name.clone(),
            },
        ),
    };
    let level = candidates
        .into_iter()
        .flatten()
        .find_map(|&kind| resolve(kind, field, grade.k, grant.map(|g| g.id.as_str())))
        .unwrap_or(Level::Deny);
    if dataset.share.attribute == ShareAttribute::NotShared && level.kind() < LevelKind::Compare {
        return Decision {
            level: Level::Compare,
            reason: Reason::NotShared {
                grade: grade.name.clone(),
            },
        };
    }
    Decision { level, reason }
}

/// A level kind made concrete for one field, or `None` when it does not apply.
fn resolve(kind: LevelKind, field: &FieldSpec, k: u32, grant: Option<&str>) -> Option<Level> {
    Some(match kind {
        LevelKind::Plain => Level::Plain,
        LevelKind::Masked => Level::Masked(field.mask?),
        // Pseudonyms stand in for identifiers, to be joined on; other fields
        // fall through to the next level.
        LevelKind::Pseudonym if field.identifier.is_some() => Level::Pseudonym {
            grant: grant?.to_owned(),
        },
        LevelKind::Pseudonym => return None,
        LevelKind::Generalized => Level::Generalized(field.generalize?),
        LevelKind::Aggregate => Level::Aggregate { k },
        LevelKind::Dp => Level::Dp,
        LevelKind::Compare => Level::Compare,
        LevelKind::Deny => Level::Deny,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::DatasetManifest;
    use crate::disclosure::{Generalization, MaskMethod};
    use crate::principal::{Grant, Role};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn manifest(share: &str) -> DatasetManifest {
        let text = format!(
            r#"
            format = 1
            [dataset]
            name = "people"
            title = "People"
            database = "base"
            providing_institution = "P"
            collecting_institution = "C"
            approving_institution = "A"
            data_form = "table"
            format = "parquet"
            path = "people.parquet"
            update_frequency = "monthly"
            privacy_unit = "id_number"
            region_field = "county_code"
            share = {{ attribute = "{share}", conditions = "duty", legal_basis = "Art. 27" }}
            open = {{ attribute = "not_open" }}
            [[field]]
            name = "id_number"
            type = "string"
            category = "identity"
            grade = "L3"
            identifier = "citizen_id"
            personal = true
            mask = "id_number"
            [[field]]
            name = "birth_date"
            type = "date"
            category = "identity"
            grade = "L3"
            personal = true
            generalize = "year"
            [[field]]
            name = "income"
            type = "float"
            category = "finance"
            grade = "L3"
            personal = true
            bounds = [0, 100000]
            [[field]]
            name = "county_code"
            type = "string"
            category = "region"
            grade = "L1"
            [[field]]
            name = "diagnosis"
            type = "string"
            category = "health"
            grade = "L4"
            personal = true
            sensitive = true
            [[field]]
            name = "secret"
            type = "string"
            category = "security"
            grade = "core"
            "#
        );
        let policy = Policy::default_preset();
        DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap()
    }

    fn level(share: &str, field: &str, principal: &Principal, purpose: Option<&str>) -> Level {
        let policy = Policy::default_preset();
        let ds = manifest(share);
        decide(
            &policy,
            &ds,
            ds.field(field).unwrap(),
            principal,
            purpose,
            now(),
        )
        .level
    }

    fn granted(role: Role) -> Principal {
        let mut p = Principal::new("p", role);
        p.grants.push(Grant {
            id: "g-42".into(),
            dataset: "people".into(),
            fields: None,
            purpose: "benefits".into(),
            expires_at: now() + chrono::Duration::days(30),
        });
        p
    }

    /// The decision table of the default preset, one row per (role, grant,
    /// field): the expected level as text.
    #[test]
    fn default_preset_decision_table() {
        let consumer = Principal::new("c", Role::Consumer);
        let modeler = Principal::new("m", Role::Modeler);
        let rows: Vec<(&Principal, Option<&str>, &str, &str)> = vec![
            (&consumer, None, "id_number", "masked(id_number)"),
            (&consumer, None, "birth_date", "generalized(year)"),
            (&consumer, None, "income", "dp"),
            (&consumer, None, "county_code", "plain"),
            (&consumer, None, "diagnosis", "dp"),
            (&consumer, None, "secret", "deny"),
            (&modeler, None, "id_number", "dp"),
            (&modeler, None, "birth_date", "generalized(year)"),
            (&modeler, None, "diagnosis", "dp"),
        ];
        for (p, purpose, field, expected) in rows {
            assert_eq!(
                level("conditional", field, p, purpose).to_string(),
                expected,
                "{:?} {field}",
                p.role
            );
        }
        let gc = granted(Role::Consumer);
        let gm = granted(Role::Modeler);
        let rows: Vec<(&Principal, Option<&str>, &str, &str)> = vec![
            (&gc, Some("benefits"), "id_number", "plain"),
            (&gc, Some("benefits"), "diagnosis", "aggregate(k=20)"),
            (&gc, Some("benefits"), "secret", "deny"),
            // The wrong purpose does not use the grant.
            (&gc, Some("marketing"), "id_number", "masked(id_number)"),
            (&gc, None, "diagnosis", "dp"),
            (&gm, Some("benefits"), "id_number", "pseudonym"),
            (&gm, Some("benefits"), "income", "aggregate(k=10)"),
            (&gm, Some("benefits"), "birth_date", "generalized(year)"),
        ];
        for (p, purpose, field, expected) in rows {
            assert_eq!(
                level("conditional", field, p, purpose).to_string(),
                expected,
                "{:?} {field} {purpose:?}",
                p.role
            );
        }
    }

    #[test]
    fn roles_without_data_access_are_denied_everything() {
        for role in [Role::Approver, Role::Admin, Role::Subject] {
            let p = Principal::new("x", role);
            for field in ["id_number", "county_code", "diagnosis"] {
                assert_eq!(
                    level("unconditional", field, &p, None),
                    Level::Deny,
                    "{role} {field}"
                );
            }
        }
    }

    #[test]
    fn not_shared_data_is_compare_only() {
        let consumer = Principal::new("c", Role::Consumer);
        assert_eq!(
            level("not_shared", "county_code", &consumer, None),
            Level::Compare
        );
        assert_eq!(
            level("not_shared", "id_number", &consumer, None),
            Level::Compare
        );
        assert_eq!(level("not_shared", "secret", &consumer, None), Level::Deny);
    }

    #[test]
    fn expired_grants_do_not_apply() {
        let mut p = granted(Role::Consumer);
        p.grants[0].expires_at = now();
        assert_eq!(
            level("conditional", "id_number", &p, Some("benefits")),
            Level::Masked(MaskMethod::IdNumber)
        );
    }

    #[test]
    fn an_unknown_grade_is_deny() {
        let policy = Policy::default_preset();
        let ds = manifest("conditional");
        let mut field = ds.field("county_code").unwrap().clone();
        field.grade = "L9".into();
        let d = decide(
            &policy,
            &ds,
            &field,
            &Principal::new("c", Role::Consumer),
            None,
            now(),
        );
        assert_eq!(
            d,
            Decision {
                level: Level::Deny,
                reason: Reason::UnknownGrade
            }
        );
    }

    #[test]
    fn fallbacks_resolve_to_the_field_methods() {
        let c = Principal::new("c", Role::Consumer);
        assert_eq!(
            level("conditional", "birth_date", &c, None),
            Level::Generalized(Generalization::Year)
        );
    }
}
