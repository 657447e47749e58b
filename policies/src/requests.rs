//! The regulation's requests as state machines: who may take which step
//! from which state, what a step must record, the deadline it sets on the
//! working-day calendar, and the effect the service applies when it is
//! taken. Pure: the store keeps the requests, the service applies effects.
//!
//! | kind | articles | path |
//! |---|---|---|
//! | `sharing` | 28-30 | unconditional: granted at once; conditional: the provider replies in 5 working days and delivers in 5 more; a refusal cites a legal basis; not-shared data is refused at submission (verification only) |
//! | `open_data` | 35 | the provider reviews, the applicant records a security commitment and a usage agreement, then the grant takes effect |
//! | `correction` | 22 | the collecting institution answers in 5 working days (10 with one extension); filed with the authority, it is forwarded in 2 |
//! | `complaint` | 36 | the provider verifies and suspends the opening when necessary (at once, from the first step), then restores or withdraws it, or dismisses the complaint; 5 working days |
//! | `emergency_data` | 23 | data collected in an emergency is sealed (no access) or destroyed, each step recorded |
//! | `catalog_change` | 12, 13 | the authority reviews in 5 working days; approval publishes the version |
//! | `qualification` | 39 | the authority assesses a second-tier developer; a grant records the agreement |
//! | `policy_change` | 11 | an approver of the authority proposes the grading rules; a second approver of the authority makes them active |
//!
//! Deadlines the measures do not set (open-data review, complaint handling,
//! qualification assessment) use veil's defaults, marked below.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::calendar::{Deadline, add_working_days};
use crate::catalog::{OpenAttribute, ShareAttribute, token_enum};

token_enum!(
    /// What a request asks for.
    Kind, "request kind" {
        Sharing = "sharing",
        OpenData = "open_data",
        Correction = "correction",
        Complaint = "complaint",
        EmergencyData = "emergency_data",
        CatalogChange = "catalog_change",
        Qualification = "qualification",
        PolicyChange = "policy_change",
    }
);

token_enum!(
    /// Who takes a step: the applicant, or an approver of the institution
    /// the dataset names (providing, collecting) or of the data authority.
    Party, "party" {
        Applicant = "applicant",
        Provider = "provider",
        Collector = "collector",
        Authority = "authority",
    }
);

/// What the service does when a step is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Record a grant: the dataset's fields for the purpose, until expiry.
    Grant,
    /// Record the applicant's development qualification, or revoke it.
    Qualify,
    Disqualify,
    /// Refuse every query of the dataset's opening until resumed.
    SuspendOpening,
    ResumeOpening,
    WithdrawOpening,
    /// No access at all; or the data destroyed.
    Seal,
    Destroy,
    /// Make the submitted catalog version the published one.
    PublishCatalog,
    /// Make the proposed policy the active version.
    LoadPolicy,
}

/// The deadline a step sets for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// No deadline: the request is finished or waits on the applicant.
    Clear,
    /// This many working days from the day of the step.
    After(u32),
    /// This many working days added to the current deadline.
    Extend(u32),
    /// The current deadline stands.
    Keep,
}

struct Step {
    action: &'static str,
    from: &'static [&'static str],
    to: &'static str,
    by: Party,
    /// Notes the step must carry (a refusal's legal basis, say).
    requires: &'static [&'static str],
    due: Due,
    effect: Effect,
}

const fn step(
    action: &'static str,
    from: &'static [&'static str],
    to: &'static str,
    by: Party,
    requires: &'static [&'static str],
    due: Due,
    effect: Effect,
) -> Step {
    Step {
        action,
        from,
        to,
        by,
        requires,
        due,
        effect,
    }
}

use Due::{After, Clear, Extend, Keep};
use Party::{Applicant, Authority, Collector, Provider};

const SHARING: &[Step] = &[
    step(
        "approve",
        &["submitted"],
        "approved",
        Provider,
        &[],
        After(5),
        Effect::None,
    ),
    step(
        "deliver",
        &["approved"],
        "granted",
        Provider,
        &[],
        Clear,
        Effect::Grant,
    ),
    step(
        "refuse",
        &["submitted", "approved"],
        "refused",
        Provider,
        &["legal_basis"],
        Clear,
        Effect::None,
    ),
    step(
        "withdraw",
        &["submitted", "approved"],
        "withdrawn",
        Applicant,
        &[],
        Clear,
        Effect::None,
    ),
];

const OPEN_DATA: &[Step] = &[
    step(
        "approve",
        &["submitted"],
        "awaiting_commitment",
        Provider,
        &[],
        Clear,
        Effect::None,
    ),
    step(
        "commit",
        &["awaiting_commitment"],
        "granted",
        Applicant,
        &["security_commitment", "usage_agreement"],
        Clear,
        Effect::Grant,
    ),
    step(
        "refuse",
        &["submitted"],
        "refused",
        Provider,
        &["legal_basis"],
        Clear,
        Effect::None,
    ),
    step(
        "withdraw",
        &["submitted", "awaiting_commitment"],
        "withdrawn",
        Applicant,
        &[],
        Clear,
        Effect::None,
    ),
];

const CORRECTION: &[Step] = &[
    step(
        "forward",
        &["with_authority"],
        "submitted",
        Authority,
        &[],
        After(5),
        Effect::None,
    ),
    step(
        "extend",
        &["submitted"],
        "extended",
        Collector,
        &["reason"],
        Extend(5),
        Effect::None,
    ),
    step(
        "answer",
        &["submitted", "extended"],
        "answered",
        Collector,
        &["answer"],
        Clear,
        Effect::None,
    ),
    step(
        "withdraw",
        &["with_authority", "submitted", "extended"],
        "withdrawn",
        Applicant,
        &[],
        Clear,
        Effect::None,
    ),
];

/// A complaint (Art. 36): the provider verifies at once and suspends the
/// opening when necessary; the complainant cannot switch a dataset off.
const COMPLAINT: &[Step] = &[
    step(
        "suspend",
        &["submitted"],
        "suspended",
        Provider,
        &["reason"],
        Keep,
        Effect::SuspendOpening,
    ),
    step(
        "dismiss",
        &["submitted"],
        "dismissed",
        Provider,
        &["finding"],
        Clear,
        Effect::None,
    ),
    step(
        "restore",
        &["suspended"],
        "restored",
        Provider,
        &["finding"],
        Clear,
        Effect::ResumeOpening,
    ),
    step(
        "withdraw_opening",
        &["submitted", "suspended"],
        "opening_withdrawn",
        Provider,
        &["finding"],
        Clear,
        Effect::WithdrawOpening,
    ),
];

const EMERGENCY_DATA: &[Step] = &[
    step(
        "seal",
        &["in_use"],
        "sealed",
        Authority,
        &["reason"],
        Clear,
        Effect::Seal,
    ),
    step(
        "destroy",
        &["in_use", "sealed"],
        "destroyed",
        Authority,
        &["record"],
        Clear,
        Effect::Destroy,
    ),
];

const CATALOG_CHANGE: &[Step] = &[
    step(
        "approve",
        &["submitted"],
        "published",
        Authority,
        &[],
        Clear,
        Effect::PublishCatalog,
    ),
    step(
        "reject",
        &["submitted"],
        "rejected",
        Authority,
        &["reason"],
        Clear,
        Effect::None,
    ),
    step(
        "withdraw",
        &["submitted"],
        "withdrawn",
        Applicant,
        &[],
        Clear,
        Effect::None,
    ),
];

const QUALIFICATION: &[Step] = &[
    step(
        "grant",
        &["submitted"],
        "qualified",
        Authority,
        &["agreement"],
        Clear,
        Effect::Qualify,
    ),
    step(
        "refuse",
        &["submitted"],
        "refused",
        Authority,
        &["reason"],
        Clear,
        Effect::None,
    ),
    step(
        "revoke",
        &["qualified"],
        "revoked",
        Authority,
        &["reason"],
        Clear,
        Effect::Disqualify,
    ),
];

/// A change of the classification and grading rules (Art. 11) is the data
/// authority's, and takes two of its approvers: the service refuses an
/// approval by the approver who proposed it.
const POLICY_CHANGE: &[Step] = &[
    step(
        "approve",
        &["submitted"],
        "active",
        Authority,
        &[],
        Clear,
        Effect::LoadPolicy,
    ),
    step(
        "reject",
        &["submitted"],
        "rejected",
        Authority,
        &["reason"],
        Clear,
        Effect::None,
    ),
    step(
        "withdraw",
        &["submitted"],
        "withdrawn",
        Applicant,
        &[],
        Clear,
        Effect::None,
    ),
];

fn steps(kind: Kind) -> &'static [Step] {
    match kind {
        Kind::Sharing => SHARING,
        Kind::OpenData => OPEN_DATA,
        Kind::Correction => CORRECTION,
        Kind::Complaint => COMPLAINT,
        Kind::EmergencyData => EMERGENCY_DATA,
        Kind::CatalogChange => CATALOG_CHANGE,
        Kind::Qualification => QUALIFICATION,
        Kind::PolicyChange => POLICY_CHANGE,
    }
}

/// What the opening of a request depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Opening {
    /// The dataset's share attribute (sharing requests).
    pub share: Option<ShareAttribute>,
    /// The dataset's open attribute (open-data requests).
    pub open: Option<OpenAttribute>,
    /// A correction filed with the data authority instead of the collector.
    pub via_authority: bool,
}

/// A request's state after a step, its next deadline, and the effect to
/// apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub state: &'static str,
    pub due: Option<Deadline>,
    pub effect: Effect,
}

/// Why a step is not taken. Messages name states, steps and parties.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotYours(String),
    #[error("{0}")]
    Incomplete(String),
}

/// Opens a request of `kind` on `today`: its first state and deadline, and
/// the effect of opening (a grant at once for unconditional sharing, the
/// suspension of a complaint). Data that may not be shared or opened is
/// refused here, with the article.
pub fn open(kind: Kind, opening: Opening, today: NaiveDate) -> Result<Moved, Refused> {
    let moved = |state, days: Option<u32>, effect| Moved {
        state,
        due: days.map(|n| add_working_days(today, n)),
        effect,
    };
    Ok(match kind {
        Kind::Sharing => match opening.share {
            Some(ShareAttribute::Unconditional) => moved("granted", None, Effect::Grant),
            Some(ShareAttribute::Conditional) => moved("submitted", Some(5), Effect::None),
            Some(ShareAttribute::NotShared) | None => {
                return Err(Refused::NotAllowed(
                    "the dataset is not shared: it can only be verified or compared (Art. 29); use a verification product".into(),
                ));
            }
        },
        // veil's default: the open-data review takes 5 working days, as a
        // conditional sharing reply does (Art. 35 sets none).
        Kind::OpenData => match opening.open {
            Some(OpenAttribute::Unconditional) => moved("granted", None, Effect::Grant),
            Some(OpenAttribute::Conditional) => moved("submitted", Some(5), Effect::None),
            Some(OpenAttribute::NotOpen) | None => {
                return Err(Refused::NotAllowed(
                    "the dataset is not open (Art. 32); it cannot be applied for".into(),
                ));
            }
        },
        Kind::Correction if opening.via_authority => moved("with_authority", Some(2), Effect::None),
        Kind::Correction => moved("submitted", Some(5), Effect::None),
        // veil's default: a complaint is settled in 5 working days. The
        // provider suspends the opening when the complaint holds (Art. 36),
        // at once if it must: opening a complaint switches nothing off.
        Kind::Complaint => moved("submitted", Some(5), Effect::None),
        Kind::EmergencyData => moved("in_use", None, Effect::None),
        Kind::CatalogChange => moved("submitted", Some(5), Effect::None),
        // veil's default: a qualification is assessed in 15 working days.
        Kind::Qualification => moved("submitted", Some(15), Effect::None),
        // veil's default: a policy change is reviewed in 5 working days.
        Kind::PolicyChange => moved("submitted", Some(5), Effect::None),
    })
}

/// The steps a party may take from `state`, as `action` names.
pub fn next_steps(kind: Kind, state: &str) -> Vec<(&'static str, Party)> {
    steps(kind)
        .iter()
        .filter(|s| s.from.contains(&state))
        .map(|s| (s.action, s.by))
        .collect()
}

/// The notes a step must record (a refusal's legal basis, say); empty for
/// an action that is no step of `kind`.
pub fn requires(kind: Kind, action: &str) -> &'static [&'static str] {
    steps(kind)
        .iter()
        .find(|s| s.action == action)
        .map_or(&[], |s| s.requires)
}

/// Whether a request in `state` is finished: no step leads on.
pub fn finished(kind: Kind, state: &str) -> bool {
    next_steps(kind, state).is_empty()
}

/// Takes `action` on a request of `kind` in `state` whose deadline is
/// `due`, by a caller who is each of `parties`, with `notes`, on `today`.
pub fn act(
    kind: Kind,
    state: &str,
    due: Option<NaiveDate>,
    action: &str,
    parties: &[Party],
    notes: &BTreeMap<String, String>,
    today: NaiveDate,
) -> Result<Moved, Refused> {
    let Some(step) = steps(kind)
        .iter()
        .find(|s| s.action == action && s.from.contains(&state))
    else {
        let allowed: Vec<String> = next_steps(kind, state)
            .iter()
            .map(|(a, p)| format!("{a} (by the {p})"))
            .collect();
        // An action is named back only when it is one of the kind's own
        // words: anything else is the caller's text, not repeated.
        let named = if steps(kind).iter().any(|s| s.action == action) {
            format!("`{action}`")
        } else {
            "this action".to_owned()
        };
        return Err(Refused::NotAllowed(if allowed.is_empty() {
            format!("the {kind} request is {state}: it is finished")
        } else {
            format!(
                "{named} is not a step of a {kind} request that is {state}; the next steps are {}",
                allowed.join(", ")
            )
        }));
    };
    if !parties.contains(&step.by) {
        return Err(Refused::NotYours(format!(
            "`{action}` is for the {}",
            step.by
        )));
    }
    if let Some(missing) = step
        .requires
        .iter()
        .find(|r| notes.get(**r).is_none_or(|v| v.trim().is_empty()))
    {
        return Err(Refused::Incomplete(format!(
            "`{action}` must record `{missing}`"
        )));
    }
    let due = match step.due {
        Due::Clear => None,
        Due::After(n) => Some(add_working_days(today, n)),
        Due::Extend(n) => Some(add_working_days(due.unwrap_or(today), n)),
        // The assumptions were recorded when the deadline was set.
        Due::Keep => due.map(|date| Deadline {
            date,
            assumed_years: Vec::new(),
        }),
    };
    Ok(Moved {
        state: step.to,
        due,
        effect: step.effect,
    })
}

/// Whether a request with deadline `due`, still open, is overdue on `today`.
pub fn overdue(kind: Kind, state: &str, due: Option<NaiveDate>, today: NaiveDate) -> bool {
    !finished(kind, state) && due.is_some_and(|d| d < today)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn notes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A step on a request without a deadline yet.
    fn take(
        kind: Kind,
        state: &str,
        action: &str,
        parties: &[Party],
        pairs: &[(&str, &str)],
        day: &str,
    ) -> Result<Moved, Refused> {
        act(kind, state, None, action, parties, &notes(pairs), d(day))
    }

    fn share(attribute: ShareAttribute) -> Opening {
        Opening {
            share: Some(attribute),
            open: None,
            via_authority: false,
        }
    }

    #[test]
    fn sharing_follows_the_attribute_and_the_calendar() {
        let today = d("2026-09-30");
        let granted = open(Kind::Sharing, share(ShareAttribute::Unconditional), today).unwrap();
        assert_eq!((granted.state, granted.effect), ("granted", Effect::Grant));
        let refused = open(Kind::Sharing, share(ShareAttribute::NotShared), today).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("verified or compared (Art. 29)")
        );

        let opened = open(Kind::Sharing, share(ShareAttribute::Conditional), today).unwrap();
        assert_eq!(opened.state, "submitted");
        assert_eq!(
            opened.due.unwrap().date,
            d("2026-10-13"),
            "5 working days across National Day"
        );
        let approved = take(
            Kind::Sharing,
            "submitted",
            "approve",
            &[Party::Provider],
            &[],
            "2026-10-12",
        )
        .unwrap();
        assert_eq!(approved.state, "approved");
        assert_eq!(
            approved.due.unwrap().date,
            d("2026-10-19"),
            "5 more to deliver"
        );
        let delivered = take(
            Kind::Sharing,
            "approved",
            "deliver",
            &[Party::Provider],
            &[],
            "2026-10-13",
        )
        .unwrap();
        assert_eq!(
            (delivered.state, delivered.effect, delivered.due),
            ("granted", Effect::Grant, None)
        );
        assert!(finished(Kind::Sharing, "granted"));
    }

    #[test]
    fn a_refusal_must_cite_a_legal_basis() {
        let no_basis = take(
            Kind::Sharing,
            "submitted",
            "refuse",
            &[Party::Provider],
            &[("legal_basis", "  ")],
            "2026-10-12",
        );
        assert!(matches!(no_basis, Err(Refused::Incomplete(m)) if m.contains("legal_basis")));
        let refused = take(
            Kind::Sharing,
            "submitted",
            "refuse",
            &[Party::Provider],
            &[(
                "legal_basis",
                "Art. 27: the purpose is not a duty of the applicant",
            )],
            "2026-10-12",
        )
        .unwrap();
        assert_eq!(refused.state, "refused");
    }

    #[test]
    fn an_unknown_action_is_not_repeated_back() {
        let e = take(
            Kind::Sharing,
            "submitted",
            "<script>53010219900101001X",
            &[Party::Provider],
            &[],
            "2026-11-27",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("this action is not a step"), "{text}");
        assert!(
            !text.contains("5301021990") && !text.contains("<script>"),
            "{text}"
        );
    }

    #[test]
    fn steps_out_of_turn_and_by_the_wrong_party_are_refused() {
        let e = take(
            Kind::Sharing,
            "submitted",
            "deliver",
            &[Party::Provider],
            &[],
            "2026-11-27",
        )
        .unwrap_err();
        assert!(e.to_string().contains("the next steps are approve (by the provider), refuse (by the provider), withdraw (by the applicant)"), "{e}");
        let e = take(
            Kind::Sharing,
            "submitted",
            "approve",
            &[Party::Applicant],
            &[],
            "2026-11-27",
        )
        .unwrap_err();
        assert_eq!(e, Refused::NotYours("`approve` is for the provider".into()));
        let e = take(
            Kind::Sharing,
            "granted",
            "withdraw",
            &[Party::Applicant],
            &[],
            "2026-11-27",
        )
        .unwrap_err();
        assert!(e.to_string().contains("is granted: it is finished"), "{e}");
        let e = take(
            Kind::Qualification,
            "submitted",
            "grant",
            &[Party::Provider, Party::Collector],
            &[("agreement", "x")],
            "2026-11-27",
        )
        .unwrap_err();
        assert!(matches!(e, Refused::NotYours(_)));
    }

    #[test]
    fn corrections_take_five_working_days_or_ten_with_an_extension() {
        let filed = open(
            Kind::Correction,
            Opening {
                share: None,
                open: None,
                via_authority: false,
            },
            d("2026-02-13"),
        )
        .unwrap();
        assert_eq!(
            (filed.state, filed.due.clone().unwrap().date),
            ("submitted", d("2026-02-27"))
        );
        let extended = act(
            Kind::Correction,
            "submitted",
            Some(filed.due.unwrap().date),
            "extend",
            &[Party::Collector],
            &notes(&[("reason", "records held on paper")]),
            d("2026-02-26"),
        )
        .unwrap();
        // 10 working days from filing: Saturday 2-28 is a make-up working day.
        assert_eq!(extended.due.unwrap().date, d("2026-03-05"));
        assert_eq!(add_working_days(d("2026-02-13"), 10).date, d("2026-03-05"));
        let e = take(
            Kind::Correction,
            "extended",
            "extend",
            &[Party::Collector],
            &[("reason", "again")],
            "2026-03-02",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("the next steps are answer (by the collector)"),
            "one extension only: {e}"
        );
        let answered = take(
            Kind::Correction,
            "extended",
            "answer",
            &[Party::Collector],
            &[("answer", "corrected")],
            "2026-03-03",
        )
        .unwrap();
        assert_eq!(answered.state, "answered");

        let via = open(
            Kind::Correction,
            Opening {
                share: None,
                open: None,
                via_authority: true,
            },
            d("2026-09-30"),
        )
        .unwrap();
        assert_eq!(
            (via.state, via.due.unwrap().date),
            ("with_authority", d("2026-10-09"))
        );
        let forwarded = take(
            Kind::Correction,
            "with_authority",
            "forward",
            &[Party::Authority],
            &[],
            "2026-10-09",
        )
        .unwrap();
        assert_eq!(
            (forwarded.state, forwarded.due.unwrap().date),
            ("submitted", d("2026-10-15"))
        );
    }

    #[test]
    fn open_data_needs_the_applicants_commitments_before_the_grant() {
        let opening = Opening {
            share: None,
            open: Some(OpenAttribute::Conditional),
            via_authority: false,
        };
        let opened = open(Kind::OpenData, opening, d("2026-11-27")).unwrap();
        assert_eq!(opened.state, "submitted");
        let approved = take(
            Kind::OpenData,
            "submitted",
            "approve",
            &[Party::Provider],
            &[],
            "2026-11-30",
        )
        .unwrap();
        assert_eq!(
            (approved.state, approved.effect),
            ("awaiting_commitment", Effect::None)
        );
        let e = take(
            Kind::OpenData,
            "awaiting_commitment",
            "commit",
            &[Party::Applicant],
            &[("security_commitment", "signed")],
            "2026-12-01",
        )
        .unwrap_err();
        assert!(e.to_string().contains("usage_agreement"), "{e}");
        let granted = take(
            Kind::OpenData,
            "awaiting_commitment",
            "commit",
            &[Party::Applicant],
            &[
                ("security_commitment", "signed 2026-12-01"),
                ("usage_agreement", "UA-2026-0042"),
            ],
            "2026-12-01",
        )
        .unwrap();
        assert_eq!((granted.state, granted.effect), ("granted", Effect::Grant));
        let closed = Opening {
            open: Some(OpenAttribute::NotOpen),
            ..opening
        };
        assert!(open(Kind::OpenData, closed, d("2026-11-27")).is_err());
    }

    #[test]
    fn complaints_are_suspended_by_the_provider_and_emergency_data_is_sealed_or_destroyed() {
        let none = Opening::default();
        let complaint = open(Kind::Complaint, none, d("2026-11-27")).unwrap();
        // Opening switches nothing off; the deadline is 5 working days.
        assert_eq!(
            (complaint.state, complaint.effect),
            ("submitted", Effect::None)
        );
        let due = complaint.due.clone();
        assert!(due.is_some());
        // Only the provider suspends, at once, and the deadline stands.
        for party in [Party::Applicant, Party::Collector, Party::Authority] {
            assert!(
                act(
                    Kind::Complaint,
                    "submitted",
                    due.as_ref().map(|d| d.date),
                    "suspend",
                    &[party],
                    &notes(&[("reason", "r")]),
                    d("2026-11-27")
                )
                .is_err(),
                "{party:?}"
            );
        }
        let suspended = act(
            Kind::Complaint,
            "submitted",
            due.as_ref().map(|d| d.date),
            "suspend",
            &[Party::Provider],
            &notes(&[("reason", "the complaint names a wrong record")]),
            d("2026-11-27"),
        )
        .unwrap();
        assert_eq!(
            (
                suspended.state,
                suspended.effect,
                suspended.due.map(|d| d.date)
            ),
            ("suspended", Effect::SuspendOpening, due.map(|d| d.date))
        );
        let dismissed = take(
            Kind::Complaint,
            "submitted",
            "dismiss",
            &[Party::Provider],
            &[("finding", "the record is correct")],
            "2026-11-30",
        )
        .unwrap();
        assert_eq!(dismissed.effect, Effect::None);
        let restored = take(
            Kind::Complaint,
            "suspended",
            "restore",
            &[Party::Provider],
            &[("finding", "the record was correct")],
            "2026-11-30",
        )
        .unwrap();
        assert_eq!(restored.effect, Effect::ResumeOpening);

        let data = open(Kind::EmergencyData, none, d("2026-11-27")).unwrap();
        assert_eq!(data.state, "in_use");
        let sealed = take(
            Kind::EmergencyData,
            "in_use",
            "seal",
            &[Party::Authority],
            &[("reason", "the emergency ended")],
            "2026-11-27",
        )
        .unwrap();
        assert_eq!(sealed.effect, Effect::Seal);
        let destroyed = take(
            Kind::EmergencyData,
            "sealed",
            "destroy",
            &[Party::Authority],
            &[("record", "wiped, certificate 7")],
            "2026-12-01",
        )
        .unwrap();
        assert_eq!(
            (destroyed.state, destroyed.effect),
            ("destroyed", Effect::Destroy)
        );
        assert!(finished(Kind::EmergencyData, "destroyed"));
    }

    #[test]
    fn catalog_changes_and_qualifications_are_the_authoritys() {
        let none = Opening::default();
        let change = open(Kind::CatalogChange, none, d("2026-09-30")).unwrap();
        assert_eq!(change.due.unwrap().date, d("2026-10-13"));
        let published = take(
            Kind::CatalogChange,
            "submitted",
            "approve",
            &[Party::Authority],
            &[],
            "2026-10-08",
        )
        .unwrap();
        assert_eq!(published.effect, Effect::PublishCatalog);

        let application = open(Kind::Qualification, none, d("2026-11-27")).unwrap();
        assert_eq!(application.due.unwrap().date, d("2026-12-18"));
        let e = take(
            Kind::Qualification,
            "submitted",
            "grant",
            &[Party::Authority],
            &[],
            "2026-12-01",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`agreement`"));
        let qualified = take(
            Kind::Qualification,
            "submitted",
            "grant",
            &[Party::Authority],
            &[("agreement", "DA-2026-17")],
            "2026-12-01",
        )
        .unwrap();
        assert_eq!(
            (qualified.state, qualified.effect),
            ("qualified", Effect::Qualify)
        );
        let revoked = take(
            Kind::Qualification,
            "qualified",
            "revoke",
            &[Party::Authority],
            &[("reason", "misuse (Art. 48)")],
            "2027-01-05",
        )
        .unwrap();
        assert_eq!(revoked.effect, Effect::Disqualify);
    }

    #[test]
    fn open_requests_past_their_deadline_are_overdue() {
        let due = Some(d("2026-10-13"));
        assert!(
            !overdue(Kind::Sharing, "submitted", due, d("2026-10-13")),
            "due today is not late"
        );
        assert!(overdue(Kind::Sharing, "submitted", due, d("2026-10-14")));
        assert!(
            !overdue(Kind::Sharing, "granted", due, d("2026-10-14")),
            "finished requests are never late"
        );
        assert!(
            !overdue(Kind::OpenData, "awaiting_commitment", None, d("2027-01-01")),
            "waiting on the applicant"
        );
    }

    #[test]
    fn every_kind_can_finish_and_every_state_is_reachable() {
        for &kind in Kind::ALL {
            let opening = Opening {
                share: Some(ShareAttribute::Conditional),
                open: Some(OpenAttribute::Conditional),
                via_authority: true,
            };
            let start = open(kind, opening, d("2026-11-27")).unwrap().state;
            let mut seen = vec![start];
            let mut frontier = vec![start];
            while let Some(state) = frontier.pop() {
                for s in steps(kind).iter().filter(|s| s.from.contains(&state)) {
                    if !seen.contains(&s.to) {
                        seen.push(s.to);
                        frontier.push(s.to);
                    }
                }
            }
            for s in steps(kind) {
                assert!(
                    s.from.iter().all(|f| seen.contains(f)),
                    "{kind}: `{}` starts from a state nothing reaches",
                    s.action
                );
            }
            assert!(
                seen.iter().any(|s| finished(kind, s)),
                "{kind} never finishes"
            );
        }
    }
}
