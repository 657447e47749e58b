//! Policy files: the grades and what each grade means for each role, with and
//! without a grant. A grade maps to a whole bundle: disclosure levels, the k
//! of aggregate thresholds, the differential-privacy budget, who approves a
//! request and how long a grant lasts.
//!
//! `presets/default.toml` is the default preset; the format is documented
//! there, by example.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::budget_period::BudgetPeriod;
use crate::disclosure::LevelKind;
use crate::model::Template;
use crate::principal::Role;
use crate::problem::{Problem, Problems, toml_problem};
use crate::verification::{Product, RawProduct};

/// The policy format this build reads.
pub const POLICY_FORMAT: u32 = 1;

/// Rows per answer when a policy does not say.
pub const DEFAULT_MAX_ROWS: u64 = 100_000;

/// The default preset: L1-L4 plus the `important` and `core` marks.
pub const DEFAULT_PRESET: &str = include_str!("../presets/default.toml");

/// Who approves a request for data of a grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approver {
    /// The providing institution's approver.
    Provider,
    /// The data authority.
    Authority,
}

impl FromStr for Approver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "provider" => Ok(Approver::Provider),
            "authority" => Ok(Approver::Authority),
            _ => Err(format!(
                "unknown approver `{s}` (expected provider or authority)"
            )),
        }
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Approver::Provider => "provider",
            Approver::Authority => "authority",
        })
    }
}

/// A privacy budget per principal per dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub epsilon: f64,
    pub delta: f64,
    /// The ε one query spends when it reads fields of this grade under
    /// differential privacy without naming its own: a query without
    /// `epsilon` over dp fields is answered under DP at this ε. `None`: the
    /// caller must name ε.
    pub query_epsilon: Option<f64>,
    /// When spending starts again from zero; `None`: never, the budget is
    /// for the principal's lifetime.
    pub period: Option<BudgetPeriod>,
}

/// The bundle one grade stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    pub name: String,
    pub description: String,
    pub approver: Approver,
    pub grant_days: u32,
    /// Minimum distinct privacy units per released group for `aggregate`.
    pub k: u32,
    pub budget: Budget,
    /// Without a grant: per role, the levels to try in order. A level that
    /// does not apply to a field (a mask the field does not declare, a
    /// pseudonym without a grant) falls through to the next; when none
    /// applies the field is denied. A role that is not listed is denied.
    pub levels: BTreeMap<Role, Vec<LevelKind>>,
    /// With a grant that covers the field and the purpose.
    pub granted: BTreeMap<Role, Vec<LevelKind>>,
    /// Whether `MIN` and `MAX` count as allowed aggregates at `aggregate`.
    pub allow_min_max: bool,
}

impl Grade {
    /// Whether any role sees fields of this grade in any form, with or
    /// without a grant. A grade that releases nothing (core data) stays in
    /// the domain even for the subject the data is about.
    pub fn releases_anything(&self) -> bool {
        self.levels
            .values()
            .chain(self.granted.values())
            .flatten()
            .any(|k| *k != LevelKind::Deny)
    }
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// The most rows one answer may carry; longer answers are cut there.
    pub max_rows: u64,
    pub grades: Vec<Grade>,
    /// Verification products (Art. 29): `[[product]]` tables.
    pub products: Vec<Product>,
    /// Model templates enabled per dataset (Art. 39): the `[models]` table.
    pub models: BTreeMap<String, Vec<Template>>,
    digest: String,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, Problems> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| Problems(vec![toml_problem(e)]))?;
        let digest = hex_prefix(&Sha256::digest(text.as_bytes()), 12);
        raw.check(digest)
    }

    /// The default preset, which is checked by this crate's tests.
    pub fn default_preset() -> Policy {
        Policy::parse(DEFAULT_PRESET).expect("the default preset is valid")
    }

    pub fn grade(&self, name: &str) -> Option<&Grade> {
        self.grades.iter().find(|g| g.name == name)
    }

    pub fn product(&self, name: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.name == name)
    }

    /// The model templates approvers enabled on `dataset`.
    pub fn templates(&self, dataset: &str) -> &[Template] {
        self.models.get(dataset).map_or(&[], Vec::as_slice)
    }

    /// A short digest of the policy text; with the store's version number it
    /// names the policy that decided an answer.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    format: Option<u32>,
    name: Option<String>,
    #[serde(default)]
    description: String,
    max_rows: Option<u64>,
    #[serde(default, rename = "grade")]
    grades: Vec<RawGrade>,
    #[serde(default, rename = "product")]
    products: Vec<RawProduct>,
    #[serde(default)]
    models: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrade {
    name: Option<String>,
    #[serde(default)]
    description: String,
    approver: Option<String>,
    grant_days: Option<u32>,
    k: Option<u32>,
    epsilon: Option<f64>,
    delta: Option<f64>,
    query_epsilon: Option<f64>,
    budget_period: Option<String>,
    #[serde(default)]
    allow_min_max: bool,
    #[serde(default)]
    levels: BTreeMap<String, LevelSpec>,
    #[serde(default)]
    granted: BTreeMap<String, LevelSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LevelSpec {
    One(String),
    Many(Vec<String>),
}

impl RawPolicy {
    fn check(self, digest: String) -> Result<Policy, Problems> {
        let mut problems = Vec::new();
        match self.format {
            Some(POLICY_FORMAT) => {}
            Some(other) => problems.push(Problem::new("", format!("policy format {other} is not supported (this build reads format {POLICY_FORMAT})"))),
            None => problems.push(Problem::new("", format!("`format = {POLICY_FORMAT}` is required at the top of the policy"))),
        }
        let name = self
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| {
                problems.push(Problem::new("", "`name` is required"));
                String::new()
            });
        if self.grades.is_empty() {
            problems.push(Problem::new("", "the policy defines no `[[grade]]`"));
        }
        let mut seen = HashSet::new();
        let mut grades = Vec::new();
        for (i, raw) in self.grades.into_iter().enumerate() {
            let loc = match &raw.name {
                Some(n) if !n.is_empty() => format!("grade `{n}`"),
                _ => format!("grade #{}", i + 1),
            };
            if let Some(n) = &raw.name
                && !seen.insert(n.clone())
            {
                problems.push(Problem::new(&loc, "is defined twice"));
            }
            if let Some(grade) = raw.check(&loc, &mut problems) {
                grades.push(grade);
            }
        }
        let mut names = HashSet::new();
        let mut products = Vec::new();
        for (i, raw) in self.products.into_iter().enumerate() {
            if let Some(product) = raw.check(i, &mut problems) {
                if !names.insert(product.name.clone()) {
                    problems.push(Problem::new(
                        format!("product `{}`", product.name),
                        "is defined twice",
                    ));
                }
                products.push(product);
            }
        }
        let models = crate::model::check_models(self.models, &mut problems);
        let max_rows = self.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if !(1..=100_000_000).contains(&max_rows) {
            problems.push(Problem::new(
                "",
                "`max_rows` must be between 1 and 100,000,000",
            ));
        }
        if problems.is_empty() {
            Ok(Policy {
                name,
                description: self.description,
                max_rows,
                grades,
                products,
                models,
                digest,
            })
        } else {
            Err(Problems(problems))
        }
    }
}

impl RawGrade {
    fn check(self, loc: &str, problems: &mut Vec<Problem>) -> Option<Grade> {
        let mut push = |m: String| problems.push(Problem::new(loc, m));
        let name = self.name.filter(|n| !n.trim().is_empty());
        if name.is_none() {
            push("`name` is required".into());
        }
        let approver = match self.approver.as_deref().map(str::parse::<Approver>) {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                push(format!("`approver`: {e}"));
                None
            }
            None => {
                push("`approver` is required (provider or authority)".into());
                None
            }
        };
        let grant_days = match self.grant_days {
            Some(d) if (1..=3660).contains(&d) => Some(d),
            Some(_) => {
                push("`grant_days` must be between 1 and 3660".into());
                None
            }
            None => {
                push("`grant_days` is required: how long a grant for this grade lasts".into());
                None
            }
        };
        let k = match self.k {
            Some(k) if k >= 2 => Some(k),
            Some(_) => {
                push("`k` must be at least 2: a group of one unit is that unit's record".into());
                None
            }
            None => {
                push(
                    "`k` is required: the minimum distinct privacy units per released group".into(),
                );
                None
            }
        };
        let epsilon = match self.epsilon {
            Some(e) if e.is_finite() && e > 0.0 => Some(e),
            Some(_) => {
                push("`epsilon` must be a positive finite number".into());
                None
            }
            None => {
                push("`epsilon` is required: the privacy budget per principal and dataset".into());
                None
            }
        };
        let delta = match self.delta {
            Some(d) if (0.0..1e-3).contains(&d) => Some(d),
            Some(_) => {
                push("`delta` must be at least 0 and below 0.001".into());
                None
            }
            None => Some(0.0),
        };
        let query_epsilon = match (self.query_epsilon, epsilon) {
            (None, _) => Some(None),
            (Some(q), Some(e)) if q.is_finite() && q > 0.0 && q <= e => Some(Some(q)),
            (Some(_), _) => {
                push("`query_epsilon` must be a positive number no larger than `epsilon`".into());
                None
            }
        };
        let period = match self.budget_period.as_deref().map(str::parse) {
            None => Some(None),
            Some(Ok(p)) => Some(Some(p)),
            Some(Err(e)) => {
                push(e);
                None
            }
        };
        let levels = check_levels("levels", self.levels, &mut push);
        let granted = check_levels("granted", self.granted, &mut push);
        Some(Grade {
            name: name?,
            description: self.description,
            approver: approver?,
            grant_days: grant_days?,
            k: k?,
            budget: Budget {
                epsilon: epsilon?,
                delta: delta?,
                query_epsilon: query_epsilon?,
                period: period?,
            },
            levels: levels?,
            granted: granted?,
            allow_min_max: self.allow_min_max,
        })
    }
}

fn check_levels(
    table: &str,
    raw: BTreeMap<String, LevelSpec>,
    push: &mut dyn FnMut(String),
) -> Option<BTreeMap<Role, Vec<LevelKind>>> {
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (role, spec) in raw {
        let role = match role.parse::<Role>() {
            Ok(r) => r,
            Err(e) => {
                push(format!("`{table}`: {e}"));
                ok = false;
                continue;
            }
        };
        let names = match spec {
            LevelSpec::One(s) => vec![s],
            LevelSpec::Many(v) => v,
        };
        if names.is_empty() {
            push(format!(
                "`{table}.{role}` lists no level; leave the role out to deny it"
            ));
            ok = false;
            continue;
        }
        let mut kinds = Vec::new();
        for n in &names {
            match n.parse::<LevelKind>() {
                Ok(k) => kinds.push(k),
                Err(e) => {
                    push(format!("`{table}.{role}`: {e}"));
                    ok = false;
                }
            }
        }
        out.insert(role, kinds);
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_preset_parses() {
        let policy = Policy::default_preset();
        let names: Vec<&str> = policy.grades.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["L1", "L2", "L3", "L4", "important", "core"]);
        assert_eq!(policy.digest().len(), 12);
        let period = |g: &str| policy.grade(g).unwrap().budget.period;
        assert_eq!(
            period("L3"),
            Some(crate::budget_period::BudgetPeriod::Month)
        );
        assert_eq!(period("L4"), None, "sensitive data's budget never renews");
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"
            format = 1
            name = "broken"
            [[grade]]
            name = "L1"
            approver = "mayor"
            grant_days = 0
            k = 1
            epsilon = -1.0
            budget_period = "fortnight"
            levels = { consumer = "visible", janitor = "plain" }
            [[grade]]
            name = "L1"
            approver = "provider"
            grant_days = 30
            k = 5
            epsilon = 1.0
            delta = 0.5
        "#;
        let problems = Policy::parse(text).unwrap_err().0;
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let expect = [
            "unknown approver `mayor`",
            "`grant_days` must be between",
            "`k` must be at least 2",
            "`epsilon` must be a positive",
            "unknown disclosure level `visible`",
            "unknown role `janitor`",
            "grade `L1`: is defined twice",
            "`delta` must be at least 0",
            "`budget_period` must be one of day, week, month, quarter, year",
        ];
        for e in expect {
            assert!(
                lines.iter().any(|l| l.contains(e)),
                "missing `{e}` in {lines:#?}"
            );
        }
        assert!(
            lines.iter().all(|l| l.starts_with("grade `L1`")),
            "{lines:#?}"
        );
    }

    #[test]
    fn model_templates_are_enabled_per_dataset() {
        use crate::model::Template;
        let policy = Policy::default_preset();
        assert!(
            policy
                .templates("tax")
                .contains(&Template::LinearRegression)
        );
        assert_eq!(
            policy.templates("population"),
            [Template::Histogram, Template::Quantiles]
        );
        assert!(policy.templates("health_visits").is_empty());
        let text = DEFAULT_PRESET.replace(
            "population = [\"histogram\", \"quantiles\"]",
            "population = [\"histogram\", \"neural_net\", \"histogram\"]\n\"Bad-Name\" = []",
        );
        let problems = Policy::parse(&text).unwrap_err().to_string();
        for expect in [
            "models.population: not a known model template",
            "models.population: `histogram` is listed twice",
            "models.Bad-Name: a dataset name",
        ] {
            assert!(
                problems.contains(expect),
                "missing `{expect}` in {problems}"
            );
        }
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_problems() {
        assert!(Policy::parse("format = 1\nname = ").is_err());
        let err = Policy::parse("format = 1\nname = \"x\"\nsecret_backdoor = true\n").unwrap_err();
        assert!(err.to_string().contains("secret_backdoor"), "{err}");
        let err = Policy::parse("format = 2\nname = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("format 2 is not supported"));
    }
}
