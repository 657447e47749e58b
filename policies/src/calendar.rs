//! Working days on the State Council's calendar (regulation.md, "Working
//! days"): deadlines of the regulation's workflows count working days, and
//! the official arrangements move some weekends (调休).
//!
//! A year the table does not cover falls back to Monday to Friday, and every
//! answer says which years it had to assume.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc, Weekday};

/// The service's day for `now`: the date in China Standard Time (UTC+8),
/// where deadlines, daily limits and "today" are counted.
pub fn service_day(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&cst()).date_naive()
}

/// The instant the service's `day` begins.
pub fn service_day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_local_timezone(cst())
        .single()
        .expect("a fixed offset is unambiguous")
        .with_timezone(&Utc)
}

fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// A day of a year: `(month, day)`.
type MonthDay = (u32, u32);

/// One year's arrangement: days off as inclusive ranges, and make-up
/// working days.
struct Arrangement {
    year: i32,
    days_off: &'static [(MonthDay, MonthDay)],
    make_up: &'static [MonthDay],
}

/// The published arrangements, 2024 to 2026.
const ARRANGEMENTS: &[Arrangement] = &[
    Arrangement {
        year: 2024,
        days_off: &[
            ((1, 1), (1, 1)),
            ((2, 10), (2, 17)),
            ((4, 4), (4, 6)),
            ((5, 1), (5, 5)),
            ((6, 10), (6, 10)),
            ((9, 15), (9, 17)),
            ((10, 1), (10, 7)),
        ],
        make_up: &[
            (2, 4),
            (2, 18),
            (4, 7),
            (4, 28),
            (5, 11),
            (9, 14),
            (9, 29),
            (10, 12),
        ],
    },
    Arrangement {
        year: 2025,
        days_off: &[
            ((1, 1), (1, 1)),
            ((1, 28), (2, 4)),
            ((4, 4), (4, 6)),
            ((5, 1), (5, 5)),
            ((5, 31), (6, 2)),
            ((10, 1), (10, 8)),
        ],
        make_up: &[(1, 26), (2, 8), (4, 27), (9, 28), (10, 11)],
    },
    Arrangement {
        year: 2026,
        days_off: &[
            ((1, 1), (1, 3)),
            ((2, 15), (2, 23)),
            ((4, 4), (4, 6)),
            ((5, 1), (5, 5)),
            ((6, 19), (6, 21)),
            ((9, 25), (9, 27)),
            ((10, 1), (10, 7)),
        ],
        make_up: &[(1, 4), (2, 14), (2, 28), (5, 9), (9, 20), (10, 10)],
    },
];

/// The years the calendar has an official arrangement for.
pub fn covered_years() -> impl Iterator<Item = i32> {
    ARRANGEMENTS.iter().map(|a| a.year)
}

/// Whether `date` is a working day, and whether the answer comes from a
/// published arrangement (`false`: Monday to Friday was assumed).
pub fn is_working_day(date: NaiveDate) -> (bool, bool) {
    let weekday = !matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
    let Some(a) = ARRANGEMENTS.iter().find(|a| a.year == date.year()) else {
        return (weekday, false);
    };
    let md = (date.month(), date.day());
    if a.make_up.contains(&md) {
        return (true, true);
    }
    let off = a.days_off.iter().any(|&(from, to)| from <= md && md <= to);
    (weekday && !off, true)
}

/// A deadline and the years it had to assume Monday to Friday for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub date: NaiveDate,
    /// Years without a published arrangement that the count went through.
    pub assumed_years: Vec<i32>,
}

/// The `n`-th working day after `date` (`date` itself does not count); for
/// `n = 0`, `date`.
pub fn add_working_days(date: NaiveDate, n: u32) -> Deadline {
    let mut assumed_years = Vec::new();
    let mut day = date;
    let mut left = n;
    while left > 0 {
        day += Duration::days(1);
        let (working, published) = is_working_day(day);
        if !published && !assumed_years.contains(&day.year()) {
            assumed_years.push(day.year());
        }
        if working {
            left -= 1;
        }
    }
    Deadline {
        date: day,
        assumed_years,
    }
}

/// Working days left from `today` until `due`: the working days after
/// `today` up to and including `due` (0 when `due` is today); past the
/// deadline, minus the working days since it, up to and including today.
pub fn working_days_left(today: NaiveDate, due: NaiveDate) -> i64 {
    let count = |from: NaiveDate, to: NaiveDate| {
        from.iter_days()
            .skip(1)
            .take_while(|d| *d <= to)
            .filter(|d| is_working_day(*d).0)
            .count() as i64
    };
    if due >= today {
        count(today, due)
    } else {
        -count(due, today)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn working_days_left_counts_back_what_add_working_days_counted() {
        // Every day of the covered years and beyond, every count to 25:
        // the deadline n working days on is n days away, and seen from the
        // deadline the start is n days past (or the same day, for n = 0).
        let mut day = d("2023-12-20");
        while day < d("2027-01-10") {
            for n in 0..25 {
                let due = add_working_days(day, n).date;
                assert_eq!(working_days_left(day, due), i64::from(n), "{day} + {n}");
                let back = working_days_left(due, day);
                assert_eq!(back, -i64::from(n), "{due} back to {day}");
            }
            day += Duration::days(1);
        }
        // The National Day holiday: 2026-09-30 + 5 working days is
        // 2026-10-13, and on 2026-10-08 4 are left (10-10, a Saturday, is worked).
        assert_eq!(working_days_left(d("2026-10-08"), d("2026-10-13")), 4);
    }

    #[test]
    fn the_service_day_is_china_standard_time() {
        let late = DateTime::parse_from_rfc3339("2026-11-27T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(service_day(late), d("2026-11-28"));
        assert_eq!(
            service_day_start(d("2026-11-28")).to_rfc3339(),
            "2026-11-27T16:00:00+00:00"
        );
    }

    #[test]
    fn the_published_years_have_their_official_number_of_working_days() {
        for (year, expected) in [(2024, 251), (2025, 248), (2026, 248)] {
            let days = d(&format!("{year}-01-01"))
                .iter_days()
                .take_while(|day| day.year() == year)
                .filter(|day| is_working_day(*day) == (true, true))
                .count();
            assert_eq!(days, expected, "{year}");
        }
        assert_eq!(covered_years().collect::<Vec<_>>(), [2024, 2025, 2026]);
    }

    #[test]
    fn deadlines_skip_holidays_and_count_make_up_days() {
        let cases = [
            // National Day: 10-1..10-7 off, Saturday 10-10 worked.
            ("2026-09-30", 5, "2026-10-13"),
            // Spring Festival: Saturday 2-14 worked, 2-15..2-23 off.
            ("2026-02-13", 5, "2026-02-27"),
            ("2026-02-13", 1, "2026-02-14"),
            ("2026-02-14", 1, "2026-02-24"),
            // A Sunday make-up day (9-20) before Mid-Autumn (9-25..9-27).
            ("2026-09-18", 1, "2026-09-20"),
            ("2026-09-24", 1, "2026-09-28"),
            // Across a year end: 2025-12-31 to 2026's New Year holiday.
            ("2025-12-31", 1, "2026-01-04"),
            ("2024-09-30", 2, "2024-10-09"),
            ("2025-01-27", 1, "2025-02-05"),
            ("2026-11-27", 0, "2026-11-27"),
            ("2026-11-27", 10, "2026-12-11"),
        ];
        for (from, n, expected) in cases {
            let deadline = add_working_days(d(from), n);
            assert_eq!(deadline.date, d(expected), "{n} working days after {from}");
            assert!(deadline.assumed_years.is_empty());
        }
    }

    #[test]
    fn years_without_an_arrangement_assume_monday_to_friday_and_say_so() {
        // 2027-01-01 is a Friday: without a published arrangement it counts.
        let deadline = add_working_days(d("2026-12-31"), 1);
        assert_eq!(deadline.date, d("2027-01-01"));
        assert_eq!(deadline.assumed_years, [2027]);
        assert_eq!(is_working_day(d("2027-01-02")), (false, false));
        // From 2023 (not published) into 2024 (published): 2024-01-01 is off.
        let deadline = add_working_days(d("2023-12-29"), 2);
        assert_eq!(deadline.date, d("2024-01-03"));
        assert_eq!(deadline.assumed_years, [2023]);
    }
}
