//! Read-only views the app shows beyond the plain store queries: the puskesmas dashboard
//! (the monthly recap of a month plus a trend of the months before it, computed from one
//! read of the documents) and the change history of a household and of one of its fields
//! ("who changed this, when").

use chrono::NaiveDate;
use kunjung_core::doc::FieldVersion;
use kunjung_core::report::{monthly_recap, Grouping, MonthlyRecap, RecapOptions, Unit};
use kunjung_core::schedule::YearMonth;
use kunjung_core::ChangeInfo;
use serde::Serialize;
use uuid::Uuid;

use crate::{Result, Store, StoreError};

/// Months the dashboard trend covers at most (the chosen month included).
pub const MAX_TREND_MONTHS: usize = 12;

/// One indicator of the area total in a month of the trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TrendValue {
    pub id: String,
    pub numerator: u64,
    pub denominator: Option<u64>,
    pub value: Option<f64>,
}

/// The area total of one month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TrendMonth {
    /// `YYYY-MM`.
    pub month: String,
    pub label_id: String,
    pub label_en: String,
    pub indicators: Vec<TrendValue>,
}

/// What the puskesmas dashboard shows for a month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Dashboard {
    /// The recap of the chosen month, per group, with the total.
    pub recap: MonthlyRecap,
    /// The area total of the chosen month and the months before it, oldest first
    /// (percentages only; counts and days are in `recap`).
    pub trend: Vec<TrendMonth>,
}

impl Store {
    /// The dashboard of `month` for the households in `area` (all when `None`), grouped
    /// per posyandu or desa, with a trend over `trend_months` months ending with `month`
    /// (1..=12). The documents are read once for all months.
    pub fn dashboard(
        &mut self,
        month: YearMonth,
        area: Option<&str>,
        grouping: Grouping,
        trend_months: usize,
        today: NaiveDate,
    ) -> Result<Dashboard> {
        if !(1..=MAX_TREND_MONTHS).contains(&trend_months) {
            return Err(StoreError::Invalid(format!(
                "tren harus 1–{MAX_TREND_MONTHS} bulan (trend must be 1–{MAX_TREND_MONTHS} months)"
            )));
        }
        let views = self.household_views(area)?;
        let recap = monthly_recap(
            &views,
            &RecapOptions {
                month,
                grouping,
                as_of: Some(today),
            },
        );
        let mut months = vec![month];
        while months.len() < trend_months {
            let prev = months[months.len() - 1].prev();
            months.push(prev);
        }
        months.reverse();
        let trend = months
            .into_iter()
            .map(|m| {
                let total = if m == month {
                    recap.total.clone()
                } else {
                    monthly_recap(
                        &views,
                        &RecapOptions {
                            month: m,
                            grouping: Grouping::Area,
                            as_of: Some(today),
                        },
                    )
                    .total
                };
                TrendMonth {
                    month: m.to_string(),
                    label_id: m.label_id(),
                    label_en: m.label_en(),
                    indicators: total
                        .indicators
                        .into_iter()
                        .filter(|i| i.unit == Unit::Percent)
                        .map(|i| TrendValue {
                            id: i.id,
                            numerator: i.numerator,
                            denominator: i.denominator,
                            value: i.value,
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Dashboard { recap, trend })
    }

    /// Every change of a household (who, which device, when, what), newest first.
    pub fn household_history(&mut self, id: Uuid) -> Result<Vec<ChangeInfo>> {
        let mut h = self.doc(id)?.history();
        h.reverse();
        Ok(h)
    }

    /// The history of one field of a household (`path` as in `FieldEdit`, e.g.
    /// `members/<id>/name`): every change that set it, newest first.
    pub fn field_history(&mut self, id: Uuid, path: &str) -> Result<Vec<FieldVersion>> {
        let mut h = self.doc(id)?.field_history(path)?;
        h.reverse();
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use kunjung_core::{AnswerValue, FieldEdit, NewHousehold, NewMember, NewVisit, Sex};

    use super::*;

    fn household(s: &mut Store, posyandu: &str) -> Uuid {
        s.create_household(&NewHousehold {
            area_code: "32.14.01.2001".into(),
            rt: "1".into(),
            rw: "2".into(),
            dusun: None,
            posyandu_id: Some(posyandu.into()),
            address: None,
            kk: None,
        })
        .unwrap()
    }

    fn child(s: &mut Store, h: Uuid, name: &str) -> Uuid {
        s.add_member(
            h,
            &NewMember {
                name: name.into(),
                sex: Sex::F,
                birth_date: "2025-01-10".parse().unwrap(),
                birth_date_estimated: false,
                nik: None,
                kk: None,
                relation: None,
                mother_id: None,
                jkn: None,
            },
        )
        .unwrap()
        .id
    }

    fn weigh(s: &mut Store, m: Uuid, date: &str) {
        s.add_visit(&NewVisit {
            member_id: m,
            date: date.parse().unwrap(),
            weight_kg: Some(8.0),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn dashboard_groups_the_month_and_trends_the_months_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::init(dir.path(), None, "puskesmas").unwrap();
        let (h1, h2) = (household(&mut s, "psy-a"), household(&mut s, "psy-b"));
        let (a, b) = (child(&mut s, h1, "Ani"), child(&mut s, h2, "Budi"));
        weigh(&mut s, a, "2025-05-03");
        weigh(&mut s, a, "2025-06-04");
        weigh(&mut s, b, "2025-06-05");
        let today = "2025-06-30".parse().unwrap();
        let d = s
            .dashboard(
                "2025-06".parse().unwrap(),
                None,
                Grouping::Posyandu,
                3,
                today,
            )
            .unwrap();
        let keys: Vec<&str> = d.recap.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["psy-a", "psy-b"]);
        let months: Vec<&str> = d.trend.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(months, ["2025-04", "2025-05", "2025-06"]);
        let ds = |m: &TrendMonth| {
            let i = m.indicators.iter().find(|i| i.id == "weighing_ds").unwrap();
            (i.numerator, i.denominator)
        };
        // D/S: nobody weighed in April, one of two balita in May, both in June.
        assert_eq!(ds(&d.trend[0]), (0, Some(2)));
        assert_eq!(ds(&d.trend[1]), (1, Some(2)));
        assert_eq!(ds(&d.trend[2]), (2, Some(2)));
        assert!(s
            .dashboard("2025-06".parse().unwrap(), None, Grouping::Desa, 0, today)
            .is_err());
    }

    #[test]
    fn field_history_says_who_changed_it_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::init(dir.path(), None, "kader-siti").unwrap();
        let h = household(&mut s, "psy-a");
        let m = child(&mut s, h, "Ani");
        s.set_user("bidan-ani").unwrap();
        let path = format!("members/{m}/name");
        s.edit(
            h,
            &[FieldEdit {
                path: path.clone(),
                value: Some(AnswerValue::Text("Ani Lestari".into())),
            }],
            "member.edit",
        )
        .unwrap();
        let f = s.field_history(h, &path).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].values, vec![serde_json::json!("Ani Lestari")]);
        assert_eq!(f[0].change.user.as_deref(), Some("bidan-ani"));
        assert_eq!(f[1].values, vec![serde_json::json!("Ani")]);
        assert_eq!(f[1].change.user.as_deref(), Some("kader-siti"));
        let all = s.household_history(h).unwrap();
        assert_eq!(all[0].what.as_deref(), Some("member.edit"));
        assert!(all.len() >= 3, "create, member.add, member.edit: {all:?}");
        assert!(s.field_history(h, "members/nope/name").is_err());
    }
}
