//! Generalisations: values coarsened so they can still be compared, grouped
//! and joined on.

use chrono::{Datelike, NaiveDate};

/// `530102` -> `530100`. Anything that is not a 6-digit code gives `None`.
pub fn prefecture(code: &str) -> Option<String> {
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}00", &code[..4]))
}

/// The age band of a birth date on `today`, as `30-34`. A birth after
/// `today` gives `None`.
pub fn age_band(birth: NaiveDate, today: NaiveDate, width: u32) -> Option<String> {
    if birth > today || width == 0 {
        return None;
    }
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    let lo = (age as u32 / width) * width;
    Some(if width == 1 {
        lo.to_string()
    } else {
        format!("{lo}-{}", lo + width - 1)
    })
}

/// `x` rounded down to a multiple of `width`.
pub fn range_floor(x: f64, width: f64) -> f64 {
    (x / width).floor() * width
}

/// `[1000, 2000)` for a value in that range.
pub fn range_label(x: f64, width: f64) -> String {
    let lo = range_floor(x, width);
    format!("[{}, {})", number(lo), number(lo + width))
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

pub fn first_of_year(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or(d)
}

pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn prefectures() {
        assert_eq!(prefecture("530102").as_deref(), Some("530100"));
        assert_eq!(prefecture("5301"), None);
        assert_eq!(prefecture(""), None);
        assert_eq!(prefecture("53010x"), None);
        assert_eq!(prefecture("五三〇一〇二"), None);
    }

    #[test]
    fn age_bands() {
        let today = d(2026, 11, 27);
        assert_eq!(
            age_band(d(1990, 11, 27), today, 5).as_deref(),
            Some("35-39")
        );
        assert_eq!(
            age_band(d(1991, 11, 28), today, 5).as_deref(),
            Some("30-34")
        );
        assert_eq!(age_band(d(2026, 11, 27), today, 5).as_deref(), Some("0-4"));
        assert_eq!(age_band(d(2026, 11, 28), today, 5), None);
        assert_eq!(age_band(d(1990, 1, 1), today, 1).as_deref(), Some("36"));
    }

    #[test]
    fn ranges() {
        assert_eq!(range_floor(1234.5, 1000.0), 1000.0);
        assert_eq!(range_floor(-1.0, 1000.0), -1000.0);
        assert_eq!(range_label(1234.5, 1000.0), "[1000, 2000)");
        assert_eq!(range_label(0.25, 0.5), "[0, 0.5)");
    }

    #[test]
    fn dates() {
        assert_eq!(first_of_year(d(1990, 5, 17)), d(1990, 1, 1));
        assert_eq!(first_of_month(d(1990, 5, 17)), d(1990, 5, 1));
    }
}
