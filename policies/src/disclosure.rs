//! Disclosure levels (design.md, "Disclosure levels") and the masking and
//! generalisation methods a level may carry.

use std::fmt;
use std::str::FromStr;

/// The kind of a disclosure level, as written in policy files. Ordered from
/// most to least revealing, so `max` is "the most restrictive wins".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LevelKind {
    Plain,
    Masked,
    Pseudonym,
    Generalized,
    Aggregate,
    Dp,
    Compare,
    Deny,
}

impl LevelKind {
    pub const ALL: [LevelKind; 8] = [
        LevelKind::Plain,
        LevelKind::Masked,
        LevelKind::Pseudonym,
        LevelKind::Generalized,
        LevelKind::Aggregate,
        LevelKind::Dp,
        LevelKind::Compare,
        LevelKind::Deny,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LevelKind::Plain => "plain",
            LevelKind::Masked => "masked",
            LevelKind::Pseudonym => "pseudonym",
            LevelKind::Generalized => "generalized",
            LevelKind::Aggregate => "aggregate",
            LevelKind::Dp => "dp",
            LevelKind::Compare => "compare",
            LevelKind::Deny => "deny",
        }
    }
}

impl FromStr for LevelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LevelKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown disclosure level `{s}` (expected one of plain, masked, pseudonym, generalized, aggregate, dp, compare, deny)"))
    }
}

impl fmt::Display for LevelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field's disclosure level for one principal and purpose, with everything
/// the engine needs to enforce it.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    Plain,
    Masked(MaskMethod),
    /// A keyed HMAC token; the key belongs to the grant that allowed it.
    Pseudonym {
        grant: String,
    },
    Generalized(Generalization),
    /// Only inside aggregates over groups of at least `k` distinct privacy units.
    Aggregate {
        k: u32,
    },
    Dp,
    Compare,
    Deny,
}

impl Level {
    pub fn kind(&self) -> LevelKind {
        match self {
            Level::Plain => LevelKind::Plain,
            Level::Masked(_) => LevelKind::Masked,
            Level::Pseudonym { .. } => LevelKind::Pseudonym,
            Level::Generalized(_) => LevelKind::Generalized,
            Level::Aggregate { .. } => LevelKind::Aggregate,
            Level::Dp => LevelKind::Dp,
            Level::Compare => LevelKind::Compare,
            Level::Deny => LevelKind::Deny,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Masked(m) => write!(f, "masked({m})"),
            Level::Generalized(g) => write!(f, "generalized({g})"),
            Level::Aggregate { k } => write!(f, "aggregate(k={k})"),
            other => f.write_str(other.kind().name()),
        }
    }
}

/// How a masked value is shown. The output keeps the shape of the input
/// (length, family name, region) and hides the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskMethod {
    /// `530102199001011234` -> `5301**********123X`-like: first 4, last 4.
    IdNumber,
    /// `13812345678` -> `138****5678`.
    Phone,
    /// `张三丰` -> `张**`: the first character and one star per other one.
    Name,
    /// An address cut after its county-level unit (县, 区, 市).
    Address,
    /// Credit code: the first 8 characters (authority, type, division) kept.
    CreditCode,
    /// A date shown as its year.
    Year,
    /// A date shown as its year and month.
    YearMonth,
    /// A number shown as the `[lo, lo + width)` range it falls in.
    Range { width: f64 },
    /// Every character replaced by `*`.
    Redact,
}

/// How a generalised value is coarsened. Unlike a mask, a generalised value
/// may be filtered, joined and grouped on (in its coarsened form).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generalization {
    Year,
    YearMonth,
    /// A birth date turned into an age band of `width` years, as of the query.
    AgeBand {
        width: u32,
    },
    /// A county code cut to its prefecture (`530102` -> `530100`).
    Prefecture,
    /// A number rounded down to a multiple of `width`.
    Range {
        width: f64,
    },
}

fn parse_width(spec: &str, arg: Option<&str>) -> Result<f64, String> {
    let arg = arg.ok_or_else(|| format!("`{spec}` needs a width, as in `{spec}:1000`"))?;
    match arg.parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
        _ => Err(format!(
            "`{spec}:{arg}`: the width must be a positive number"
        )),
    }
}

fn split(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (spec, None),
    }
}

impl FromStr for MaskMethod {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let (name, arg) = split(spec);
        let method = match name {
            "id_number" => MaskMethod::IdNumber,
            "phone" => MaskMethod::Phone,
            "name" => MaskMethod::Name,
            "address" => MaskMethod::Address,
            "credit_code" => MaskMethod::CreditCode,
            "year" => MaskMethod::Year,
            "year_month" => MaskMethod::YearMonth,
            "range" => {
                return Ok(MaskMethod::Range {
                    width: parse_width(name, arg)?,
                });
            }
            "redact" => MaskMethod::Redact,
            _ => {
                return Err(format!(
                    "unknown mask `{spec}` (expected id_number, phone, name, address, credit_code, year, year_month, range:WIDTH or redact)"
                ));
            }
        };
        match arg {
            None => Ok(method),
            Some(_) => Err(format!("mask `{name}` takes no argument")),
        }
    }
}

impl fmt::Display for MaskMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskMethod::IdNumber => f.write_str("id_number"),
            MaskMethod::Phone => f.write_str("phone"),
            MaskMethod::Name => f.write_str("name"),
            MaskMethod::Address => f.write_str("address"),
            MaskMethod::CreditCode => f.write_str("credit_code"),
            MaskMethod::Year => f.write_str("year"),
            MaskMethod::YearMonth => f.write_str("year_month"),
            MaskMethod::Range { width } => write!(f, "range:{width}"),
            MaskMethod::Redact => f.write_str("redact"),
        }
    }
}

impl FromStr for Generalization {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let (name, arg) = split(spec);
        let method = match name {
            "year" => Generalization::Year,
            "year_month" => Generalization::YearMonth,
            "prefecture" => Generalization::Prefecture,
            "range" => {
                return Ok(Generalization::Range {
                    width: parse_width(name, arg)?,
                });
            }
            "age_band" => {
                let width = parse_width(name, arg)?;
                if width.fract() != 0.0 || width > 150.0 {
                    return Err(format!(
                        "`{spec}`: the band must be a whole number of years up to 150"
                    ));
                }
                return Ok(Generalization::AgeBand {
                    width: width as u32,
                });
            }
            _ => {
                return Err(format!(
                    "unknown generalization `{spec}` (expected year, year_month, age_band:YEARS, prefecture or range:WIDTH)"
                ));
            }
        };
        match arg {
            None => Ok(method),
            Some(_) => Err(format!("generalization `{name}` takes no argument")),
        }
    }
}

impl fmt::Display for Generalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Generalization::Year => f.write_str("year"),
            Generalization::YearMonth => f.write_str("year_month"),
            Generalization::AgeBand { width } => write!(f, "age_band:{width}"),
            Generalization::Prefecture => f.write_str("prefecture"),
            Generalization::Range { width } => write!(f, "range:{width}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_kinds_order_from_most_to_least_revealing() {
        let mut sorted = LevelKind::ALL;
        sorted.sort();
        assert_eq!(sorted, LevelKind::ALL);
        assert_eq!(LevelKind::Masked.max(LevelKind::Dp), LevelKind::Dp);
        for kind in LevelKind::ALL {
            assert_eq!(kind.name().parse::<LevelKind>(), Ok(kind));
        }
        assert!("public".parse::<LevelKind>().is_err());
    }

    #[test]
    fn methods_parse_and_print_back() {
        for spec in [
            "id_number",
            "phone",
            "name",
            "address",
            "credit_code",
            "year",
            "year_month",
            "range:1000",
            "redact",
        ] {
            assert_eq!(spec.parse::<MaskMethod>().unwrap().to_string(), spec);
        }
        for spec in [
            "year",
            "year_month",
            "age_band:5",
            "prefecture",
            "range:500",
        ] {
            assert_eq!(spec.parse::<Generalization>().unwrap().to_string(), spec);
        }
    }

    #[test]
    fn bad_methods_are_refused() {
        for spec in [
            "",
            "range",
            "range:0",
            "range:-1",
            "range:x",
            "range:inf",
            "phone:3",
            "ssn",
        ] {
            assert!(spec.parse::<MaskMethod>().is_err(), "{spec}");
        }
        for spec in [
            "age_band",
            "age_band:2.5",
            "age_band:1000",
            "county",
            "year:1",
        ] {
            assert!(spec.parse::<Generalization>().is_err(), "{spec}");
        }
    }
}
