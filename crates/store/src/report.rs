//! Reports over the store: the monthly recap (PWS) of an area, and loading the household
//! views of an area for exports.
//!
//! The figures themselves are computed by `kunjung_core::report` (a pure function), so
//! the device and the server give the same numbers for the same documents.

use chrono::NaiveDate;
use kunjung_core::report::{monthly_recap, Grouping, MonthlyRecap, RecapOptions};
use kunjung_core::schedule::YearMonth;
use kunjung_core::HouseholdView;
use uuid::Uuid;

use crate::{ListFilter, Result, Store, StoreError};

/// Rows fetched per page when listing the households of an area.
const PAGE: usize = 5_000;

impl Store {
    /// The ids of the households in `area` (a kode wilayah or a prefix of one, e.g. a
    /// kecamatan `32.14.01`), or of every household when `area` is `None`.
    pub fn household_ids_in(&self, area: Option<&str>) -> Result<Vec<Uuid>> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let rows = self.list_households(&ListFilter {
                area: area.map(String::from),
                limit: Some(PAGE),
                offset: Some(offset),
                ..Default::default()
            })?;
            let n = rows.len();
            for r in rows {
                out.push(Uuid::parse_str(&r.id).map_err(|e| StoreError::Invalid(e.to_string()))?);
            }
            if n < PAGE {
                break;
            }
            offset += n;
        }
        out.sort();
        Ok(out)
    }

    /// The full views (members, visits, referrals) of the households in `area`, read from
    /// their documents, in household id order.
    pub fn household_views(&mut self, area: Option<&str>) -> Result<Vec<HouseholdView>> {
        let ids = self.household_ids_in(area)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.doc(id)?.read()?);
        }
        Ok(out)
    }

    /// The monthly recap of `month` for the households in `area` (all when `None`),
    /// grouped per posyandu, desa or as one area. Ages of open referrals are measured on
    /// `today` when the month is not over yet.
    pub fn monthly_report(
        &mut self,
        month: YearMonth,
        area: Option<&str>,
        grouping: Grouping,
        today: Option<NaiveDate>,
    ) -> Result<MonthlyRecap> {
        let views = self.household_views(area)?;
        Ok(monthly_recap(
            &views,
            &RecapOptions {
                month,
                grouping,
                as_of: today,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use kunjung_core::{NewHousehold, NewMember, NewVisit, Sex};

    use super::*;

    #[test]
    fn report_reads_the_area_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::init(dir.path(), None, "kader").unwrap();
        let mut add = |area: &str| {
            let h = s
                .create_household(&NewHousehold {
                    area_code: area.into(),
                    rt: "1".into(),
                    rw: "2".into(),
                    dusun: None,
                    posyandu_id: Some("psy-1".into()),
                    address: None,
                    kk: None,
                })
                .unwrap();
            let m = s
                .add_member(
                    h,
                    &NewMember {
                        name: "Ani".into(),
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
                .id;
            s.add_visit(&NewVisit {
                member_id: m,
                date: "2025-06-05".parse().unwrap(),
                weight_kg: Some(7.0),
                ..Default::default()
            })
            .unwrap();
        };
        add("32.14.01.2001");
        add("32.14.02.2001");
        let r = s
            .monthly_report(
                "2025-06".parse().unwrap(),
                Some("32.14.01"),
                Grouping::Desa,
                None,
            )
            .unwrap();
        // Only the desa under kecamatan 32.14.01; its one balita was weighed: D/S 1/1.
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].key, "32.14.01.2001");
        let ds = r.groups[0].indicator("weighing_ds").unwrap();
        assert_eq!((ds.numerator, ds.denominator), (1, Some(1)));
        assert_eq!(s.household_views(None).unwrap().len(), 2);
    }
}
