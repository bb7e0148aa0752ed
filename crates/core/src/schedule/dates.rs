//! Calendar helpers for the task engine: calendar months, month arithmetic, and the rule
//! that maps windows stated in hours after a birth to dates.
//!
//! # Hours → dates
//!
//! Delivery and birth dates carry no time of day, while KN1/KF1 are defined as "6–48 jam"
//! (Permenkes 21/2021). Day `n` means the date `n` days after the birth date (the birth
//! date itself is day 0). A window of `a`–`b` hours maps to **every date on which a
//! contact could lie inside the window for some time of birth**: days `⌊a/24⌋ ..= ⌈b/24⌉`.
//! So 6–48 h is day 0..=2 and "< 24 h" (HB0) is day 0..=1. The windows in days that follow
//! ("hari ke-3 s.d. 7") are read as day 3..=7, which joins KN1/KF1 without a gap or overlap.
//! The consequence, stated in the tests: a contact 5 h and one 6 h after a morning birth
//! fall on the same date (day 0) and both count as KN1 (a date cannot tell them apart); a
//! contact 49 h after a birth before 23:00 falls on day 2 and counts as KN1; day 3 is KN2.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// `date + n` days, saturating at the ends of the calendar instead of panicking.
pub fn plus_days(date: NaiveDate, n: i64) -> NaiveDate {
    date.checked_add_signed(chrono::Duration::days(n))
        .unwrap_or(if n < 0 {
            NaiveDate::MIN
        } else {
            NaiveDate::MAX
        })
}

/// `date + n` calendar months; the day is clamped to the end of a shorter month
/// (31 January + 1 month = 28/29 February).
pub fn plus_months(date: NaiveDate, n: u32) -> NaiveDate {
    date.checked_add_months(Months::new(n))
        .unwrap_or(NaiveDate::MAX)
}

/// The first date of the day range that a window starting `hours` after a birth can touch.
pub fn first_day_for_hours(hours: i64) -> i64 {
    hours.div_euclid(24)
}

/// The last date (in days after birth) that a window ending `hours` after a birth can touch.
pub fn last_day_for_hours(hours: i64) -> i64 {
    (hours + 23).div_euclid(24)
}

/// Whole years between two dates (the birthday must have been reached).
pub fn years_between(from: NaiveDate, to: NaiveDate) -> i64 {
    crate::lifestage::months_between(from, to).div_euclid(12)
}

/// A calendar month (posyandu weighing, vitamin A rounds, monthly checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    /// 1..=12.
    pub month: u32,
}

impl YearMonth {
    /// `None` if `month` is not 1..=12.
    pub fn new(year: i32, month: u32) -> Option<YearMonth> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| YearMonth { year, month })
    }

    /// The month a date falls in.
    pub fn of(date: NaiveDate) -> YearMonth {
        YearMonth {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn last_day(self) -> NaiveDate {
        plus_days(self.next().first_day(), -1)
    }

    pub fn prev(self) -> YearMonth {
        if self.month == 1 {
            YearMonth {
                year: self.year - 1,
                month: 12,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> YearMonth {
        if self.month == 12 {
            YearMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn contains(self, date: NaiveDate) -> bool {
        YearMonth::of(date) == self
    }

    /// `YYYY_MM`, the suffix of monthly service codes (`weighing_2026_11`).
    pub fn code(self) -> String {
        format!("{:04}_{:02}", self.year, self.month)
    }

    /// "November 2026".
    pub fn label_id(self) -> String {
        format!("{} {}", MONTHS_ID[(self.month - 1) as usize], self.year)
    }

    /// "November 2026".
    pub fn label_en(self) -> String {
        format!("{} {}", MONTHS_EN[(self.month - 1) as usize], self.year)
    }
}

impl fmt::Display for YearMonth {
    /// `YYYY-MM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = String;
    /// Parses `YYYY-MM`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bulan '{s}' harus YYYY-MM (month must be YYYY-MM)");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        YearMonth::new(year, month).ok_or_else(bad)
    }
}

impl Serialize for YearMonth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

const MONTHS_ID: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn hours_map_to_the_dates_they_can_touch() {
        // KN1/KF1 6–48 h → day 0..=2; HB0 < 24 h → day 0..=1; 72 h → day 3.
        assert_eq!(first_day_for_hours(6), 0);
        assert_eq!(last_day_for_hours(48), 2);
        assert_eq!(last_day_for_hours(24), 1);
        assert_eq!(first_day_for_hours(72), 3);
        assert_eq!(last_day_for_hours(49), 3);
    }

    #[test]
    fn months_and_clamping() {
        assert_eq!(plus_months(d("2026-01-31"), 1), d("2026-02-28"));
        assert_eq!(plus_months(d("2024-01-31"), 1), d("2024-02-29"));
        let ym = YearMonth::of(d("2026-12-05"));
        assert_eq!(ym.next(), YearMonth::new(2027, 1).unwrap());
        assert_eq!(ym.prev().code(), "2026_11");
        assert_eq!(YearMonth::new(2026, 2).unwrap().last_day(), d("2026-02-28"));
        assert_eq!(
            YearMonth::new(2026, 1).unwrap().prev().to_string(),
            "2025-12"
        );
        assert_eq!(
            "2026-08".parse::<YearMonth>().unwrap().label_id(),
            "Agustus 2026"
        );
        assert!("2026-13".parse::<YearMonth>().is_err());
        assert!(YearMonth::new(2026, 0).is_none());
        assert_eq!(years_between(d("2008-11-25"), d("2026-11-24")), 17);
        assert_eq!(years_between(d("2008-11-24"), d("2026-11-24")), 18);
    }
}
