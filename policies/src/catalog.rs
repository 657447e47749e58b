//! Catalog manifests: the attributes of Art. 13 and 33 for a dataset, and the
//! classification and grading of every field (Art. 11).
//!
//! A manifest is a TOML file; `datasets/README.md` documents the format. This
//! module checks everything that can be checked without opening the data
//! file; `veil-engine` compares the fields with the file itself.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::disclosure::{Generalization, MaskMethod};
use crate::problem::{Problem, Problems, is_plain_name, toml_problem};

/// The manifest format this build reads.
pub const MANIFEST_FORMAT: u32 = 1;

macro_rules! token_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => {
                        let all: Vec<&str> = vec![$($text),+];
                        Err(format!("not a known {} (expected one of {})", $what, all.join(", ")))
                    }
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
    };
}

pub(crate) use token_enum;

token_enum!(
    /// Art. 25-27.
    ShareAttribute, "share attribute" {
        Unconditional = "unconditional",
        Conditional = "conditional",
        NotShared = "not_shared",
    }
);

token_enum!(
    /// Art. 32-33.
    OpenAttribute, "open attribute" {
        NotOpen = "not_open",
        Conditional = "conditional",
        Unconditional = "unconditional",
    }
);

token_enum!(
    /// Art. 10: base databases and theme databases.
    DatabaseKind, "database kind" {
        Base = "base",
        Theme = "theme",
        Other = "other",
    }
);

token_enum!(
    UpdateFrequency, "update frequency" {
        Realtime = "realtime",
        Daily = "daily",
        Weekly = "weekly",
        Monthly = "monthly",
        Quarterly = "quarterly",
        Yearly = "yearly",
        Irregular = "irregular",
        Static = "static",
    }
);

token_enum!(
    FileFormat, "file format" {
        Parquet = "parquet",
        Csv = "csv",
    }
);

token_enum!(
    /// Logical field types. The engine accepts any physical Arrow type of the
    /// family (Int32 and Int64 are both `integer`).
    FieldType, "field type" {
        String = "string",
        Integer = "integer",
        Float = "float",
        Decimal = "decimal",
        Boolean = "boolean",
        Date = "date",
        Timestamp = "timestamp",
    }
);

token_enum!(
    /// Art. 20 identifiers. `subject` holds either kind (a person or an
    /// organisation); `other` is a key with no national standard.
    IdentifierKind, "identifier kind" {
        CitizenId = "citizen_id",
        CreditCode = "credit_code",
        Subject = "subject",
        Other = "other",
    }
);

impl FieldType {
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Integer | FieldType::Float | FieldType::Decimal
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Institutions {
    pub providing: String,
    pub collecting: String,
    pub approving: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub attribute: ShareAttribute,
    pub conditions: String,
    pub scope: String,
    /// Required when the data is not shared (Art. 27).
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub attribute: OpenAttribute,
    pub conditions: String,
}

/// A checked catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetManifest {
    pub name: String,
    pub title: String,
    pub description: String,
    pub database: DatabaseKind,
    pub institutions: Institutions,
    pub data_form: String,
    pub format: FileFormat,
    /// Relative to the manifest's own directory; never absolute, never `..`.
    pub path: String,
    pub update_frequency: UpdateFrequency,
    pub share: Share,
    pub open: Open,
    /// The field whose value identifies one person or organisation: the unit
    /// of k-anonymity thresholds and of differential privacy.
    pub privacy_unit: String,
    /// A county-code field used for region row filters.
    pub region_field: Option<String>,
    pub fields: Vec<FieldSpec>,
}

/// A checked field entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    pub field_type: FieldType,
    pub description: String,
    pub category: String,
    pub grade: String,
    pub identifier: Option<IdentifierKind>,
    /// Personal information (PIPL art. 4).
    pub personal: bool,
    /// Sensitive personal information (PIPL art. 28).
    pub sensitive: bool,
    /// Declared `[lower, upper]` for numeric fields: values are clamped to it
    /// in aggregates and differential privacy.
    pub bounds: Option<(f64, f64)>,
    /// Declared public domain for low-cardinality fields: these keys are
    /// public, so they may be released without partition selection.
    pub domain: Option<Vec<String>>,
    pub mask: Option<MaskMethod>,
    pub generalize: Option<Generalization>,
}

impl DatasetManifest {
    /// Parses and checks a manifest. `grade_known` says whether a grade name is
    /// defined by the active policy.
    pub fn parse(text: &str, grade_known: &dyn Fn(&str) -> bool) -> Result<Self, Problems> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| Problems(vec![toml_problem(e)]))?;
        raw.check(grade_known)
    }

    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: Option<u32>,
    dataset: Option<RawDataset>,
    #[serde(default, rename = "field")]
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: Option<String>,
    title: Option<String>,
    #[serde(default)]
    description: String,
    database: Option<String>,
    providing_institution: Option<String>,
    collecting_institution: Option<String>,
    approving_institution: Option<String>,
    data_form: Option<String>,
    format: Option<String>,
    path: Option<String>,
    update_frequency: Option<String>,
    privacy_unit: Option<String>,
    region_field: Option<String>,
    share: Option<RawShare>,
    open: Option<RawOpen>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShare {
    attribute: Option<String>,
    #[serde(default)]
    conditions: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    legal_basis: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpen {
    attribute: Option<String>,
    #[serde(default)]
    conditions: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Option<String>,
    #[serde(rename = "type")]
    field_type: Option<String>,
    #[serde(default)]
    description: String,
    category: Option<String>,
    grade: Option<String>,
    identifier: Option<String>,
    #[serde(default)]
    personal: bool,
    #[serde(default)]
    sensitive: bool,
    bounds: Option<Vec<f64>>,
    domain: Option<Vec<toml::Value>>,
    mask: Option<String>,
    generalize: Option<String>,
}

/// Collects problems while a manifest is checked.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn push(&mut self, location: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(location, message));
    }

    fn required(&mut self, location: &str, key: &str, value: Option<String>) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v,
            _ => {
                self.push(location, format!("`{key}` is required"));
                String::new()
            }
        }
    }

    fn token<T: FromStr<Err = String>>(
        &mut self,
        location: &str,
        key: &str,
        value: Option<String>,
    ) -> Option<T> {
        let value = self.required(location, key, value);
        if value.is_empty() {
            return None;
        }
        match value.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(location, format!("`{key}`: {e}"));
                None
            }
        }
    }
}

impl RawManifest {
    fn check(self, grade_known: &dyn Fn(&str) -> bool) -> Result<DatasetManifest, Problems> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        match self.format {
            Some(MANIFEST_FORMAT) => {}
            Some(other) => c.push("", format!("manifest format {other} is not supported (this build reads format {MANIFEST_FORMAT})")),
            None => c.push("", format!("`format = {MANIFEST_FORMAT}` is required at the top of the manifest")),
        }
        let Some(ds) = self.dataset else {
            c.push("", "the `[dataset]` table is missing");
            return Err(Problems(c.problems));
        };
        let loc = "dataset";
        let name = c.required(loc, "name", ds.name);
        if !name.is_empty() && !is_plain_name(&name) {
            c.push(loc, "`name` must be lower-case letters, digits and underscores, starting with a letter, at most 63 characters");
        }
        let title = c.required(loc, "title", ds.title);
        let database = c.token(loc, "database", ds.database);
        let institutions = Institutions {
            providing: c.required(loc, "providing_institution", ds.providing_institution),
            collecting: c.required(loc, "collecting_institution", ds.collecting_institution),
            approving: c.required(loc, "approving_institution", ds.approving_institution),
        };
        let data_form = c.required(loc, "data_form", ds.data_form);
        let format = c.token(loc, "format", ds.format);
        let path = c.required(loc, "path", ds.path);
        if !path.is_empty() {
            if let Err(why) = check_relative_path(&path) {
                c.push(loc, format!("`path` {why}"));
            }
            let expected = format.map(|f: FileFormat| f.name());
            let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if let (Some(expected), Some(ext)) = (expected, extension.as_deref())
                && ext != expected
            {
                c.push(
                    loc,
                    format!("`path` ends in `.{ext}` but `format` is `{expected}`"),
                );
            }
        }
        let update_frequency = c.token(loc, "update_frequency", ds.update_frequency);
        let share = match ds.share {
            None => {
                c.push(
                    loc,
                    "the `[dataset.share]` table is missing (Art. 13 share attribute)",
                );
                None
            }
            Some(s) => {
                let attribute = c.token("dataset.share", "attribute", s.attribute);
                if attribute == Some(ShareAttribute::NotShared) && s.legal_basis.trim().is_empty() {
                    c.push(
                        "dataset.share",
                        "data that is not shared must cite its `legal_basis` (Art. 27)",
                    );
                }
                if attribute == Some(ShareAttribute::Conditional) && s.conditions.trim().is_empty()
                {
                    c.push(
                        "dataset.share",
                        "conditional sharing must state its `conditions` (Art. 13)",
                    );
                }
                attribute.map(|attribute| Share {
                    attribute,
                    conditions: s.conditions,
                    scope: s.scope,
                    legal_basis: s.legal_basis,
                })
            }
        };
        let open = match ds.open {
            None => {
                c.push(
                    loc,
                    "the `[dataset.open]` table is missing (Art. 33 open attribute)",
                );
                None
            }
            Some(o) => c
                .token("dataset.open", "attribute", o.attribute)
                .map(|attribute| Open {
                    attribute,
                    conditions: o.conditions,
                }),
        };

        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        if self.fields.is_empty() {
            c.push("", "the manifest declares no `[[field]]`");
        }
        for (i, raw) in self.fields.into_iter().enumerate() {
            let field_name = raw.name.clone().unwrap_or_default();
            let loc = if field_name.is_empty() {
                format!("field #{}", i + 1)
            } else {
                format!("field `{field_name}`")
            };
            if field_name.is_empty() {
                c.push(&loc, "`name` is required");
            } else if !is_plain_name(&field_name) {
                c.push(&loc, "the name must be lower-case letters, digits and underscores, starting with a letter");
            } else if !seen.insert(field_name.clone()) {
                c.push(&loc, "is declared twice");
            }
            if let Some(field) = raw.check(&loc, grade_known, &mut c) {
                fields.push(field);
            }
        }

        let privacy_unit = match ds.privacy_unit.filter(|p| !p.trim().is_empty()) {
            None => {
                c.push(
                    loc,
                    "no `privacy_unit`: name the field that identifies a person or organisation",
                );
                String::new()
            }
            Some(unit) => {
                match fields.iter().find(|f| f.name == unit) {
                    None if seen.contains(&unit) => {}
                    None => c.push(
                        loc,
                        format!("`privacy_unit` names `{unit}`, which is not a declared field"),
                    ),
                    Some(f) if f.identifier.is_none() => c.push(
                        &format!("field `{unit}`"),
                        "is the privacy unit, so it must declare which `identifier` it is",
                    ),
                    Some(_) => {}
                }
                unit
            }
        };
        if let Some(region) = &ds.region_field {
            match fields.iter().find(|f| &f.name == region) {
                None if seen.contains(region) => {}
                None => c.push(
                    loc,
                    format!("`region_field` names `{region}`, which is not a declared field"),
                ),
                Some(f) if f.field_type != FieldType::String => c.push(
                    &format!("field `{region}`"),
                    "is the region field, so it must be a `string` of county codes",
                ),
                Some(_) => {}
            }
        }

        match (
            c.problems.is_empty(),
            database,
            format,
            update_frequency,
            share,
            open,
        ) {
            (
                true,
                Some(database),
                Some(format),
                Some(update_frequency),
                Some(share),
                Some(open),
            ) => Ok(DatasetManifest {
                name,
                title,
                description: ds.description,
                database,
                institutions,
                data_form,
                format,
                path,
                update_frequency,
                share,
                open,
                privacy_unit,
                region_field: ds.region_field,
                fields,
            }),
            _ => Err(Problems(c.problems)),
        }
    }
}

impl RawField {
    fn check(
        self,
        loc: &str,
        grade_known: &dyn Fn(&str) -> bool,
        c: &mut Checker,
    ) -> Option<FieldSpec> {
        let field_type: Option<FieldType> = c.token(loc, "type", self.field_type);
        let category = self.category.filter(|s| !s.trim().is_empty());
        let grade = self.grade.filter(|s| !s.trim().is_empty());
        if category.is_none() || grade.is_none() {
            let missing: Vec<&str> = [("category", category.is_none()), ("grade", grade.is_none())]
                .into_iter()
                .filter_map(|(k, m)| m.then_some(k))
                .collect();
            c.push(
                loc,
                format!(
                    "is unclassified: `{}` missing (Art. 11: every field is classified and graded)",
                    missing.join("` and `")
                ),
            );
        }
        if let Some(g) = &grade
            && !grade_known(g)
        {
            c.push(
                loc,
                format!("grade `{g}` is not defined by the active policy"),
            );
        }
        let identifier = match self.identifier {
            None => None,
            Some(s) => match s.parse::<IdentifierKind>() {
                Ok(k) => Some(k),
                Err(e) => {
                    c.push(loc, format!("`identifier`: {e}"));
                    None
                }
            },
        };
        if self.sensitive && !self.personal {
            c.push(
                loc,
                "is `sensitive` personal information, so it must also be `personal`",
            );
        }
        let bounds = match self.bounds {
            None => None,
            Some(b) => match (b.as_slice(), field_type) {
                (_, Some(t)) if !t.is_numeric() => {
                    c.push(
                        loc,
                        format!("declares `bounds` but is a `{t}`; bounds are for numeric fields"),
                    );
                    None
                }
                ([lo, hi], _) if lo.is_finite() && hi.is_finite() && lo < hi => Some((*lo, *hi)),
                _ => {
                    c.push(
                        loc,
                        "`bounds` must be two finite numbers `[lower, upper]` with lower < upper",
                    );
                    None
                }
            },
        };
        let domain = match self.domain {
            None => None,
            Some(values) => {
                let mut out = Vec::with_capacity(values.len());
                for v in &values {
                    match v {
                        toml::Value::String(s) => out.push(s.clone()),
                        toml::Value::Integer(n) => out.push(n.to_string()),
                        toml::Value::Boolean(b) => out.push(b.to_string()),
                        _ => {
                            c.push(loc, "`domain` values must be strings, integers or booleans");
                            break;
                        }
                    }
                }
                let distinct: HashSet<&String> = out.iter().collect();
                if out.is_empty() {
                    c.push(loc, "`domain` is empty");
                } else if distinct.len() != out.len() {
                    c.push(loc, "`domain` lists a value twice");
                } else if out.len() > 10_000 {
                    c.push(loc, "`domain` has more than 10,000 values; a public domain is for low-cardinality fields");
                }
                Some(out)
            }
        };
        let mask = self.mask.and_then(|m| match m.parse::<MaskMethod>() {
            Ok(m) => Some(m),
            Err(e) => {
                c.push(loc, format!("`mask`: {e}"));
                None
            }
        });
        let generalize = self
            .generalize
            .and_then(|g| match g.parse::<Generalization>() {
                Ok(g) => Some(g),
                Err(e) => {
                    c.push(loc, format!("`generalize`: {e}"));
                    None
                }
            });
        if let (Some(m), Some(t)) = (mask, field_type)
            && !mask_fits(m, t)
        {
            c.push(loc, format!("mask `{m}` does not apply to a `{t}` field"));
        }
        if let (Some(g), Some(t)) = (generalize, field_type)
            && !generalization_fits(g, t)
        {
            c.push(
                loc,
                format!("generalization `{g}` does not apply to a `{t}` field"),
            );
        }
        Some(FieldSpec {
            name: self.name?,
            field_type: field_type?,
            description: self.description,
            category: category?,
            grade: grade?,
            identifier,
            personal: self.personal,
            sensitive: self.sensitive,
            bounds,
            domain,
            mask,
            generalize,
        })
    }
}

fn mask_fits(mask: MaskMethod, t: FieldType) -> bool {
    match mask {
        MaskMethod::IdNumber
        | MaskMethod::Phone
        | MaskMethod::Name
        | MaskMethod::Address
        | MaskMethod::CreditCode => t == FieldType::String,
        MaskMethod::Year | MaskMethod::YearMonth => {
            matches!(t, FieldType::Date | FieldType::Timestamp)
        }
        MaskMethod::Range { .. } => t.is_numeric(),
        MaskMethod::Redact => true,
    }
}

fn generalization_fits(g: Generalization, t: FieldType) -> bool {
    match g {
        Generalization::Year | Generalization::YearMonth | Generalization::AgeBand { .. } => {
            matches!(t, FieldType::Date | FieldType::Timestamp)
        }
        Generalization::Prefecture => t == FieldType::String,
        Generalization::Range { .. } => t.is_numeric(),
    }
}

/// A manifest may name only a file below its own directory: a relative path
/// of plain components. Symbolic links are resolved and checked again by the
/// engine when the file is opened.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.contains("://") || path.contains('\\') || path.contains('\0') {
        return Err("must be a plain relative file path, not a URL".into());
    }
    if path.starts_with('/') || path.starts_with('~') {
        return Err("must be relative to the manifest's directory, not absolute".into());
    }
    for part in path.split('/') {
        match part {
            "" | "." => return Err("has an empty or `.` component".into()),
            ".." => return Err("leaves the manifest's directory (`..`)".into()),
            _ => {}
        }
    }
    Ok(())
}

/// The registered datasets, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    datasets: BTreeMap<String, DatasetManifest>,
}

impl Catalog {
    pub fn new(datasets: impl IntoIterator<Item = DatasetManifest>) -> Self {
        Catalog {
            datasets: datasets.into_iter().map(|d| (d.name.clone(), d)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&DatasetManifest> {
        self.datasets.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &DatasetManifest> {
        self.datasets.values()
    }

    pub fn len(&self) -> usize {
        self.datasets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }
}
