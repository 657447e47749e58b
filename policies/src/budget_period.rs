//! Budget periods: a grade's privacy budget may renew each calendar day,
//! week, month, quarter or year of the service's day (China Standard Time),
//! as Snowflake's privacy budgets renew. What renewal means for the
//! guarantee is in the README: each period's answers together are (ε, δ)-DP;
//! over n periods, at most n·ε and n·δ.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::calendar::{service_day, service_day_start};

/// A calendar period after which spending starts again from zero. Ordered
/// from the shortest: where one dataset's fields have grades with different
/// periods, the longest holds (no period at all, never renewing, is longer
/// than any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl BudgetPeriod {
    /// The first service day of the period that holds `day`. Weeks begin on
    /// Monday.
    fn first_day(self, day: NaiveDate) -> NaiveDate {
        let (y, m) = (day.year(), day.month());
        let date = |y, m| NaiveDate::from_ymd_opt(y, m, 1).expect("the first of a month exists");
        match self {
            BudgetPeriod::Day => day,
            BudgetPeriod::Week => day - Duration::days(day.weekday().num_days_from_monday().into()),
            BudgetPeriod::Month => date(y, m),
            BudgetPeriod::Quarter => date(y, (m - 1) / 3 * 3 + 1),
            BudgetPeriod::Year => date(y, 1),
        }
    }

    /// The first service day of the period after the one that holds `day`.
    fn next_first_day(self, day: NaiveDate) -> NaiveDate {
        let first = self.first_day(day);
        let months = |n: u32| {
            first
                .checked_add_months(chrono::Months::new(n))
                .expect("a date within chrono's range")
        };
        match self {
            BudgetPeriod::Day => first + Duration::days(1),
            BudgetPeriod::Week => first + Duration::days(7),
            BudgetPeriod::Month => months(1),
            BudgetPeriod::Quarter => months(3),
            BudgetPeriod::Year => months(12),
        }
    }

    /// When the period that holds `now` began: spending before it no longer
    /// counts.
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        service_day_start(self.first_day(service_day(now)))
    }

    /// When the budget next renews after `now`.
    pub fn renews(self, now: DateTime<Utc>) -> DateTime<Utc> {
        service_day_start(self.next_first_day(service_day(now)))
    }

    pub fn name(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
            BudgetPeriod::Quarter => "quarter",
            BudgetPeriod::Year => "year",
        }
    }

    /// The stricter of two budgets' periods: the longer; `None` (never
    /// renews) is longer than any.
    pub fn stricter(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        Some(a?.max(b?))
    }
}

impl FromStr for BudgetPeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(BudgetPeriod::Day),
            "week" => Ok(BudgetPeriod::Week),
            "month" => Ok(BudgetPeriod::Month),
            "quarter" => Ok(BudgetPeriod::Quarter),
            "year" => Ok(BudgetPeriod::Year),
            _ => Err("`budget_period` must be one of day, week, month, quarter, year".into()),
        }
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [BudgetPeriod; 5] = [
        BudgetPeriod::Day,
        BudgetPeriod::Week,
        BudgetPeriod::Month,
        BudgetPeriod::Quarter,
        BudgetPeriod::Year,
    ];

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn periods_begin_and_renew_on_the_service_calendar() {
        // 2026-03-31 17:00 UTC is 2026-04-01 01:00 in China Standard Time.
        let now = at("2026-03-31T17:00:00Z");
        let cases = [
            (
                BudgetPeriod::Day,
                "2026-03-31T16:00:00Z",
                "2026-04-01T16:00:00Z",
            ),
            // 2026-04-01 is a Wednesday; the week began on Monday the 30th.
            (
                BudgetPeriod::Week,
                "2026-03-29T16:00:00Z",
                "2026-04-05T16:00:00Z",
            ),
            (
                BudgetPeriod::Month,
                "2026-03-31T16:00:00Z",
                "2026-04-30T16:00:00Z",
            ),
            (
                BudgetPeriod::Quarter,
                "2026-03-31T16:00:00Z",
                "2026-06-30T16:00:00Z",
            ),
            (
                BudgetPeriod::Year,
                "2025-12-31T16:00:00Z",
                "2026-12-31T16:00:00Z",
            ),
        ];
        for (period, start, renews) in cases {
            assert_eq!(period.start(now), at(start), "{period} start");
            assert_eq!(period.renews(now), at(renews), "{period} renewal");
        }
    }

    #[test]
    fn every_instant_lies_in_exactly_one_period() {
        // Over two years in steps of 7 hours: start ≤ now < renewal, and the
        // renewal is the next period's start.
        let mut now = at("2025-01-01T00:00:00Z");
        while now < at("2027-01-01T00:00:00Z") {
            for p in ALL {
                let (start, renews) = (p.start(now), p.renews(now));
                assert!(start <= now && now < renews, "{p} at {now}");
                assert_eq!(p.start(renews), renews, "{p} at {now}");
                assert_eq!(
                    p.start(renews - Duration::milliseconds(1)),
                    start,
                    "{p} at {now}"
                );
            }
            now += Duration::hours(7);
        }
    }

    #[test]
    fn the_longer_period_is_the_stricter() {
        use BudgetPeriod::*;
        assert_eq!(BudgetPeriod::stricter(Some(Day), Some(Month)), Some(Month));
        assert_eq!(BudgetPeriod::stricter(Some(Year), None), None);
        assert_eq!(BudgetPeriod::stricter(None, Some(Week)), None);
        for p in ALL {
            assert_eq!(p.name().parse::<BudgetPeriod>(), Ok(p));
        }
        assert!("monthly".parse::<BudgetPeriod>().is_err());
    }
}
