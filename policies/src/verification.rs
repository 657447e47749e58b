//! Verification products (Art. 29, 32): what an approver publishes so that a
//! caller can check claims about a subject against data it never sees.
//!
//! A product names a dataset, the identifier field that finds the subject's
//! rows, and its claims. Each claim compares one field with a value the
//! caller supplies and answers one bit: `match`/`mismatch` for products that
//! answer `match`, `true`/`false` for predicate products that answer
//! `boolean`. Products are part of the policy file (`[[product]]`); this
//! module checks their shape, [`Product::check_against`] checks them against
//! a dataset's manifest, and the normalisations here are the ones both sides
//! of a comparison go through.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::catalog::{DatasetManifest, FieldType, IdentifierKind, token_enum};
use crate::identifiers::{CitizenId, CreditCode, IdentifierError};
use crate::principal::Role;
use crate::problem::{Problem, is_plain_name};

/// Subjects one request may verify.
pub const MAX_BATCH: usize = 10_000;

token_enum!(
    /// What a product answers per claim.
    Answer, "answer" {
        Match = "match",
        Boolean = "boolean",
        /// One `match` only when every claim matches, one `mismatch`
        /// otherwise: one bit per subject, as identity verification
        /// services answer (一致 / 不一致).
        All = "all",
    }
);

token_enum!(
    /// How a claimed value and a stored value are made comparable.
    Compare, "comparison" {
        /// Byte for byte.
        Exact = "exact",
        /// Trimmed, full-width forms folded to half-width, case folded,
        /// inner runs of white space made one space.
        Normalized = "normalized",
        /// Both sides read as calendar dates in any of the common forms.
        Date = "date",
    }
);

token_enum!(
    /// The test a claim applies.
    Test, "test" {
        Equals = "equals",
        Above = "above",
        AtLeast = "at_least",
        Below = "below",
        AtMost = "at_most",
    }
);

token_enum!(
    /// Which of the subject's rows a claim looks at, and how.
    Over, "row selection" {
        /// Some row passes the test.
        Any = "any",
        /// Every row passes (and there is one).
        All = "all",
        /// The sum of the rows' values passes.
        Sum = "sum",
        Max = "max",
        Min = "min",
        /// The rows with the greatest value of `by` (the latest month, say):
        /// their sum passes a numeric test, one of them an equality.
        Latest = "latest",
    }
);

/// One claim of a product.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// What the caller calls it; the field's name unless the approver says.
    pub name: String,
    pub field: String,
    pub test: Test,
    pub compare: Compare,
    pub over: Over,
    /// For `over = "latest"`: the field that orders the rows.
    pub by: Option<String>,
}

/// A published verification product.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub name: String,
    pub description: String,
    pub dataset: String,
    /// The identifier field that finds the subject's rows.
    pub subject: String,
    pub answer: Answer,
    /// Roles that may use it.
    pub roles: Vec<Role>,
    /// When not empty, a request names one of these purposes and the caller
    /// holds a live grant on the dataset for it.
    pub purposes: Vec<String>,
    /// Subjects one principal may verify through this product per minute.
    pub per_minute: u32,
    /// Times one principal may verify one subject through it per day.
    pub daily_per_subject: u32,
    /// What guessing costs: the daily caps on distinct subjects and on
    /// mismatching answers.
    pub caps: Caps,
    pub claims: Vec<Claim>,
}

/// The daily caps that make enumeration cost more than it yields, counted
/// per service day (China Standard Time) and product. A principal without an
/// institution is its own institution.
///
/// Why mismatches: an honest caller verifies what its clients present and
/// is mostly right; a caller guessing (a name for a known number, numbers
/// for a masked row) is mostly wrong. Capping wrong answers per subject
/// bounds the guesses at any one person; capping them per principal and per
/// institution bounds sweeps over many people; capping distinct subjects
/// bounds how much of the population one institution touches in a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Distinct subjects one principal may verify per day.
    pub daily_subjects: u32,
    /// Distinct subjects all principals of one institution may verify per day.
    pub institution_daily_subjects: u32,
    /// Mismatching answers (any claim false) one principal may receive per day.
    pub daily_mismatches: u32,
    /// Mismatching answers all principals of one institution may receive per day.
    pub institution_daily_mismatches: u32,
    /// Mismatching answers about one subject that one institution (all its
    /// principals together) may receive per day.
    pub daily_mismatches_per_subject: u32,
}

impl Caps {
    pub const DEFAULT: Caps = Caps {
        daily_subjects: 5_000,
        institution_daily_subjects: 20_000,
        daily_mismatches: 100,
        institution_daily_mismatches: 500,
        daily_mismatches_per_subject: 2,
    };
}

impl Product {
    pub fn claim(&self, name: &str) -> Option<&Claim> {
        self.claims.iter().find(|c| c.name == name)
    }

    /// The fields a verification reads: the subject's and the claims'.
    pub fn fields(&self) -> Vec<&str> {
        let mut fields = vec![self.subject.as_str()];
        for c in &self.claims {
            for f in std::iter::once(c.field.as_str()).chain(c.by.as_deref()) {
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
        }
        fields
    }

    /// Problems with this product over `dataset`: fields that do not exist
    /// or whose type does not suit the comparison.
    pub fn check_against(&self, dataset: &DatasetManifest) -> Vec<Problem> {
        let loc = format!("product `{}`", self.name);
        let mut problems = Vec::new();
        match dataset.field(&self.subject) {
            None => problems.push(Problem::new(
                &loc,
                format!("`{}` has no field `{}`", dataset.name, self.subject),
            )),
            Some(f) => match f.identifier {
                Some(IdentifierKind::CitizenId | IdentifierKind::CreditCode | IdentifierKind::Subject) => {}
                _ => problems.push(Problem::new(
                    &loc,
                    format!(
                        "the subject field `{}` must be a citizen_id, credit_code or subject identifier",
                        self.subject
                    ),
                )),
            },
        }
        for c in &self.claims {
            let cloc = format!("{loc}, claim `{}`", c.name);
            let Some(field) = dataset.field(&c.field) else {
                problems.push(Problem::new(
                    &cloc,
                    format!("`{}` has no field `{}`", dataset.name, c.field),
                ));
                continue;
            };
            let ty = field.field_type;
            let fits = match (c.test, c.compare) {
                (Test::Equals, Compare::Date) => matches!(ty, FieldType::String | FieldType::Date),
                (Test::Equals, _) => matches!(
                    ty,
                    FieldType::String | FieldType::Integer | FieldType::Boolean | FieldType::Date
                ),
                _ => ty.is_numeric(),
            };
            if c.test != Test::Equals && field.bounds.is_none() {
                problems.push(Problem::new(
                    &cloc,
                    format!(
                        "`{}` has no declared bounds: a threshold is checked to lie inside them (outside, the answer is a membership test)",
                        c.field
                    ),
                ));
            }
            if !fits {
                let why = if c.test == Test::Equals {
                    "equality claims need a string, integer, boolean or date field (compare floats with a threshold test)"
                } else {
                    "threshold tests need a numeric field"
                };
                problems.push(Problem::new(&cloc, format!("`{}` is {ty}: {why}", c.field)));
            }
            if let Some(by) = &c.by {
                match dataset.field(by) {
                    None => problems.push(Problem::new(
                        &cloc,
                        format!("`{}` has no field `{by}`", dataset.name),
                    )),
                    Some(f)
                        if !matches!(
                            f.field_type,
                            FieldType::String | FieldType::Integer | FieldType::Date
                        ) =>
                    {
                        problems.push(Problem::new(
                            &cloc,
                            format!("`by` field `{by}` must be a string, integer or date"),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        problems
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProduct {
    name: Option<String>,
    #[serde(default)]
    description: String,
    dataset: Option<String>,
    subject: Option<String>,
    answer: Option<String>,
    roles: Option<Vec<String>>,
    #[serde(default)]
    purposes: Vec<String>,
    per_minute: Option<u32>,
    daily_per_subject: Option<u32>,
    daily_subjects: Option<u32>,
    institution_daily_subjects: Option<u32>,
    daily_mismatches: Option<u32>,
    institution_daily_mismatches: Option<u32>,
    daily_mismatches_per_subject: Option<u32>,
    #[serde(default, rename = "claim")]
    claims: Vec<RawClaim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    name: Option<String>,
    field: Option<String>,
    test: Option<String>,
    compare: Option<String>,
    over: Option<String>,
    by: Option<String>,
}

fn parsed<T: FromStr<Err = String>>(
    value: Option<&str>,
    default: T,
    key: &str,
    push: &mut dyn FnMut(String),
) -> Option<T> {
    match value.map(str::parse::<T>) {
        None => Some(default),
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            push(format!("`{key}`: {e}"));
            None
        }
    }
}

impl RawProduct {
    pub(crate) fn check(self, index: usize, problems: &mut Vec<Problem>) -> Option<Product> {
        let loc = match &self.name {
            Some(n) if !n.is_empty() => format!("product `{n}`"),
            _ => format!("product #{}", index + 1),
        };
        let mut push = |m: String| problems.push(Problem::new(&loc, m));
        let name = match self.name {
            Some(n) if is_plain_name(&n) => Some(n),
            Some(_) => {
                push(
                    "`name` must be lowercase letters, digits and `_`, starting with a letter"
                        .into(),
                );
                None
            }
            None => {
                push("`name` is required".into());
                None
            }
        };
        let dataset = self.dataset.filter(|d| !d.is_empty());
        if dataset.is_none() {
            push("`dataset` is required".into());
        }
        let subject = self.subject.filter(|s| !s.is_empty());
        if subject.is_none() {
            push("`subject` is required: the identifier field that finds the subject".into());
        }
        let answer = parsed(self.answer.as_deref(), Answer::Match, "answer", &mut push);
        let mut roles = Vec::new();
        for r in self.roles.unwrap_or_else(|| vec!["consumer".into()]) {
            match r.parse::<Role>() {
                Ok(role) => roles.push(role),
                Err(e) => push(format!("`roles`: {e}")),
            }
        }
        if roles.is_empty() {
            push("`roles` lists nobody; leave the product out instead".into());
        }
        let per_minute = self.per_minute.unwrap_or(600);
        if !(1..=10_000_000).contains(&per_minute) {
            push("`per_minute` must be between 1 and 10,000,000".into());
        }
        let daily_per_subject = self.daily_per_subject.unwrap_or(10);
        if !(1..=100_000).contains(&daily_per_subject) {
            push("`daily_per_subject` must be between 1 and 100,000".into());
        }
        let d = Caps::DEFAULT;
        let caps = Caps {
            daily_subjects: self.daily_subjects.unwrap_or(d.daily_subjects),
            institution_daily_subjects: self
                .institution_daily_subjects
                .unwrap_or(d.institution_daily_subjects),
            daily_mismatches: self.daily_mismatches.unwrap_or(d.daily_mismatches),
            institution_daily_mismatches: self
                .institution_daily_mismatches
                .unwrap_or(d.institution_daily_mismatches),
            daily_mismatches_per_subject: self
                .daily_mismatches_per_subject
                .unwrap_or(d.daily_mismatches_per_subject.min(daily_per_subject)),
        };
        for (name, value) in [
            ("daily_subjects", caps.daily_subjects),
            (
                "institution_daily_subjects",
                caps.institution_daily_subjects,
            ),
            ("daily_mismatches", caps.daily_mismatches),
            (
                "institution_daily_mismatches",
                caps.institution_daily_mismatches,
            ),
            (
                "daily_mismatches_per_subject",
                caps.daily_mismatches_per_subject,
            ),
        ] {
            if !(1..=100_000_000).contains(&value) {
                push(format!("`{name}` must be between 1 and 100,000,000"));
            }
        }
        if caps.daily_subjects > caps.institution_daily_subjects {
            push("`daily_subjects` must not exceed `institution_daily_subjects`: a principal is part of its institution".into());
        }
        if caps.daily_mismatches > caps.institution_daily_mismatches {
            push("`daily_mismatches` must not exceed `institution_daily_mismatches`: a principal is part of its institution".into());
        }
        if caps.daily_mismatches_per_subject > daily_per_subject {
            push("`daily_mismatches_per_subject` must not exceed `daily_per_subject`".into());
        }
        if self.claims.is_empty() {
            push("the product has no `[[product.claim]]`".into());
        }
        let mut seen = HashSet::new();
        let mut claims = Vec::new();
        for raw in self.claims {
            let Some(field) = raw.field.filter(|f| !f.is_empty()) else {
                push("every claim needs a `field`".into());
                continue;
            };
            let claim_name = raw.name.unwrap_or_else(|| field.clone());
            if !is_plain_name(&claim_name) {
                push(format!(
                    "claim name `{claim_name}` must be lowercase letters, digits and `_`"
                ));
            }
            if !seen.insert(claim_name.clone()) {
                push(format!("claim `{claim_name}` is defined twice"));
            }
            let test = parsed(raw.test.as_deref(), Test::Equals, "test", &mut push);
            let compare = parsed(raw.compare.as_deref(), Compare::Exact, "compare", &mut push);
            let over = parsed(raw.over.as_deref(), Over::Any, "over", &mut push);
            let (Some(test), Some(compare), Some(over)) = (test, compare, over) else {
                continue;
            };
            if test == Test::Equals && matches!(over, Over::Sum | Over::Max | Over::Min) {
                push(format!(
                    "claim `{claim_name}`: `over = \"{over}\"` needs a threshold test, not equals"
                ));
            }
            if test != Test::Equals && compare != Compare::Exact {
                push(format!(
                    "claim `{claim_name}`: `compare` applies to equality claims only"
                ));
            }
            if matches!(answer, Some(Answer::Match | Answer::All)) && test != Test::Equals {
                push(format!(
                    "claim `{claim_name}`: a product that answers `match` has equality claims only; use `answer = \"boolean\"` for threshold tests"
                ));
            }
            match (over, &raw.by) {
                (Over::Latest, None) => push(format!(
                    "claim `{claim_name}`: `over = \"latest\"` needs `by`, the field that orders the rows"
                )),
                (Over::Latest, Some(_)) | (_, None) => {}
                (_, Some(_)) => push(format!(
                    "claim `{claim_name}`: `by` applies to `over = \"latest\"` only"
                )),
            }
            claims.push(Claim {
                name: claim_name,
                field,
                test,
                compare,
                over,
                by: raw.by,
            });
        }
        Some(Product {
            name: name?,
            description: self.description,
            dataset: dataset?,
            subject: subject?,
            answer: answer?,
            roles,
            purposes: self.purposes,
            per_minute,
            daily_per_subject,
            caps,
            claims,
        })
    }
}

/// Folds the forms people type the same text in: trims, maps full-width
/// ASCII and the ideographic space to their half-width forms, lowercases,
/// and makes every inner run of white space one space.
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Reads a date written as 2026-01-05, 2026/1/5, 2026.01.05, 20260105 or
/// 2026年1月5日 (full-width digits too).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = normalize_text(text);
    if text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::parse_from_str(&text, "%Y%m%d").ok();
    }
    let parts: Vec<&str> = text
        .trim_end_matches('日')
        .split(['-', '/', '.', '年', '月'])
        .collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !(digits(y, 4..=4) && digits(m, 1..=2) && digits(d, 1..=2)) {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// The canonical form of an identifier as people type it: trimmed,
/// half-width, uppercase.
pub fn canonical_identifier(text: &str) -> String {
    normalize_text(text).to_uppercase()
}

/// Checks an identifier of `kind` in canonical form; `Other` accepts any
/// non-empty text. The error never repeats the input.
pub fn check_identifier(kind: IdentifierKind, canonical: &str) -> Result<(), IdentifierError> {
    match kind {
        IdentifierKind::CitizenId => CitizenId::parse(canonical).map(|_| ()),
        IdentifierKind::CreditCode => CreditCode::parse(canonical).map(|_| ()),
        IdentifierKind::Subject => {
            // A subject is a person or an organisation: credit codes start
            // with a registration authority code, identity numbers with a
            // province digit, and each has its own check.
            CitizenId::parse(canonical).map(|_| ()).or_else(|citizen| {
                CreditCode::parse(canonical)
                    .map(|_| ())
                    .map_err(|_| citizen)
            })
        }
        IdentifierKind::Other if canonical.is_empty() => Err(IdentifierError::Length),
        IdentifierKind::Other => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn text_normalisation_folds_width_case_and_space() {
        assert_eq!(normalize_text("  张　三 "), "张 三");
        assert_eq!(normalize_text("ＡＢＣ　１２３"), "abc 123");
        assert_eq!(normalize_text("Kunming\t\tCity"), "kunming city");
        assert_eq!(normalize_text("张三"), normalize_text(" 张三\u{3000}"));
        assert_ne!(normalize_text("张三"), normalize_text("张 三"));
    }

    #[test]
    fn dates_are_read_in_the_common_forms() {
        let want = NaiveDate::from_ymd_opt(2026, 1, 5);
        for text in [
            "2026-01-05",
            "2026-1-5",
            "2026/1/5",
            "2026.01.05",
            "20260105",
            "2026年1月5日",
            "２０２６年１月５日",
            " 2026-01-05 ",
        ] {
            assert_eq!(parse_date(text), want, "{text}");
        }
        for bad in [
            "2026-02-30",
            "26-1-5",
            "2026-01",
            "20261301",
            "yesterday",
            "",
            "2026-01-05-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn identifiers_are_checked_by_kind() {
        let id = "11010519491231002X";
        assert_eq!(canonical_identifier(" 11010519491231002x "), id);
        assert!(check_identifier(IdentifierKind::CitizenId, id).is_ok());
        assert!(check_identifier(IdentifierKind::Subject, id).is_ok());
        assert!(check_identifier(IdentifierKind::CitizenId, "110105194912310021").is_err());
        assert!(check_identifier(IdentifierKind::CreditCode, id).is_err());
        let code = "91350100M000100Y43";
        assert!(check_identifier(IdentifierKind::CreditCode, code).is_ok());
        assert!(check_identifier(IdentifierKind::Subject, code).is_ok());
        assert!(check_identifier(IdentifierKind::Subject, "91350100M000100Y44").is_err());
    }

    fn policy_with(products: &str) -> Result<Policy, crate::Problems> {
        let text = format!(
            r#"
            format = 1
            name = "p"
            [[grade]]
            name = "L1"
            approver = "provider"
            grant_days = 30
            k = 5
            epsilon = 1.0
            levels = {{ consumer = "plain" }}
            {products}
            "#
        );
        Policy::parse(&text)
    }

    #[test]
    fn products_are_read_with_their_defaults() {
        let policy = policy_with(
            r#"
            [[product]]
            name = "identity"
            dataset = "population"
            subject = "id_number"
            [[product.claim]]
            field = "name"
            compare = "normalized"
            [[product.claim]]
            name = "born"
            field = "birth_date"
            compare = "date"
            "#,
        )
        .unwrap();
        let p = &policy.products[0];
        assert_eq!(p.answer, Answer::Match);
        assert_eq!(p.roles, vec![Role::Consumer]);
        assert_eq!((p.per_minute, p.daily_per_subject), (600, 10));
        assert_eq!(p.caps, Caps::DEFAULT);
        assert_eq!(p.claim("born").unwrap().field, "birth_date");
        assert_eq!(p.claim("name").unwrap().compare, Compare::Normalized);
        assert_eq!(p.fields(), ["id_number", "name", "birth_date"]);
    }

    #[test]
    fn caps_are_read_and_must_nest() {
        let claim = "[[product.claim]]\nfield = \"name\"\n";
        let p = policy_with(&format!(
            "[[product]]\nname = \"a\"\ndataset = \"d\"\nsubject = \"s\"\ndaily_per_subject = 1\ndaily_subjects = 7\n{claim}"
        ))
        .unwrap();
        let caps = p.products[0].caps;
        assert_eq!(caps.daily_subjects, 7);
        // The default per-subject mismatch cap never exceeds the daily cap.
        assert_eq!(caps.daily_mismatches_per_subject, 1);
        let err = policy_with(&format!(
            "[[product]]\nname = \"a\"\ndataset = \"d\"\nsubject = \"s\"\ndaily_subjects = 30000\ndaily_mismatches = 0\ndaily_mismatches_per_subject = 11\n{claim}"
        ))
        .unwrap_err()
        .to_string();
        for needle in [
            "`daily_subjects` must not exceed `institution_daily_subjects`",
            "`daily_mismatches` must be between 1",
            "`daily_mismatches_per_subject` must not exceed `daily_per_subject`",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn every_product_problem_is_reported() {
        let err = policy_with(
            r#"
            [[product]]
            name = "Bad Name"
            subject = "id_number"
            roles = ["janitor"]
            per_minute = 0
            [[product.claim]]
            field = "arrears"
            test = "above"
            [[product.claim]]
            field = "arrears"
            over = "latest"
            [[product]]
            name = "twice"
            dataset = "d"
            subject = "s"
            answer = "boolean"
            [[product.claim]]
            field = "f"
            test = "equals"
            over = "sum"
            by = "month"
            [[product]]
            name = "twice"
            dataset = "d"
            subject = "s"
            [[product.claim]]
            field = "f"
            "#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "`name` must be lowercase",
            "`dataset` is required",
            "unknown role `janitor`",
            "`per_minute` must be between",
            "a product that answers `match` has equality claims only",
            "claim `arrears` is defined twice",
            "`over = \"latest\"` needs `by`",
            "needs a threshold test, not equals",
            "`by` applies to `over = \"latest\"` only",
            "product `twice`: is defined twice",
        ] {
            assert!(err.contains(want), "missing `{want}` in\n{err}");
        }
    }
}
