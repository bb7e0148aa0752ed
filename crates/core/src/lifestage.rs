//! Life stage of a member at a date (ILP, KMK HK.01.07/MENKES/2015/2023 life-cycle
//! clusters), from the birth date and pregnancy records.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::model::{Member, Pregnancy, Sex};

/// The ILP home-visit sections (Kartu Ceklis Kunjungan Rumah), one per life stage.
/// TB screening applies to any stage and is a separate section of every visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum LifeStage {
    /// Ibu hamil.
    Pregnancy,
    /// Ibu bersalin dan nifas (up to 42 days after delivery).
    Postpartum,
    /// Bayi 0–6 bulan (under 6 months).
    Infant,
    /// Balita dan anak prasekolah 6–71 bulan.
    Toddler,
    /// Usia sekolah dan remaja (6 to under 18 years).
    SchoolAdolescent,
    /// Usia dewasa (18 to 59 years).
    Adult,
    /// Lansia (60 years and over).
    Elderly,
}

impl LifeStage {
    pub const ALL: [LifeStage; 7] = [
        LifeStage::Pregnancy,
        LifeStage::Postpartum,
        LifeStage::Infant,
        LifeStage::Toddler,
        LifeStage::SchoolAdolescent,
        LifeStage::Adult,
        LifeStage::Elderly,
    ];

    pub fn code(self) -> &'static str {
        match self {
            LifeStage::Pregnancy => "pregnancy",
            LifeStage::Postpartum => "postpartum",
            LifeStage::Infant => "infant",
            LifeStage::Toddler => "toddler",
            LifeStage::SchoolAdolescent => "school_adolescent",
            LifeStage::Adult => "adult",
            LifeStage::Elderly => "elderly",
        }
    }

    pub fn parse(s: &str) -> Option<LifeStage> {
        LifeStage::ALL.into_iter().find(|l| l.code() == s)
    }

    pub fn label_id(self) -> &'static str {
        match self {
            LifeStage::Pregnancy => "Ibu hamil",
            LifeStage::Postpartum => "Ibu bersalin dan nifas",
            LifeStage::Infant => "Bayi 0–6 bulan",
            LifeStage::Toddler => "Balita dan anak prasekolah",
            LifeStage::SchoolAdolescent => "Usia sekolah dan remaja",
            LifeStage::Adult => "Usia dewasa",
            LifeStage::Elderly => "Lansia",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            LifeStage::Pregnancy => "Pregnancy",
            LifeStage::Postpartum => "Birth and postpartum",
            LifeStage::Infant => "Infant 0–6 months",
            LifeStage::Toddler => "Toddler and preschool",
            LifeStage::SchoolAdolescent => "School age and adolescent",
            LifeStage::Adult => "Adult",
            LifeStage::Elderly => "Elderly",
        }
    }
}

/// Whole months between two dates (the day of month must have been reached).
pub fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    let mut m = (to.year() - from.year()) as i64 * 12 + (to.month() as i64 - from.month() as i64);
    if to.day() < from.day() {
        m -= 1;
    }
    m
}

/// Days after delivery during which a woman is in nifas (KF4 ends at 42 days).
pub const NIFAS_DAYS: i64 = 42;
/// A pregnancy without a recorded end is considered current up to 42 weeks after HPHT.
pub const MAX_PREGNANCY_DAYS: i64 = 294;

/// The pregnancy current at `date`, if any (HPHT known or HPL known, not delivered/ended).
pub fn current_pregnancy(pregs: &[Pregnancy], date: NaiveDate) -> Option<&Pregnancy> {
    pregs.iter().find(|p| {
        let start = p
            .hpht
            .or_else(|| p.hpl.map(|h| h - chrono::Duration::days(280)));
        let Some(start) = start else { return false };
        let end = p
            .delivery_date
            .or(p.ended)
            .unwrap_or(start + chrono::Duration::days(MAX_PREGNANCY_DAYS));
        start <= date && date < end
    })
}

/// Life stage of a member at `date`. Pregnancy and nifas take precedence for women.
pub fn life_stage(member: &Member, date: NaiveDate) -> Option<LifeStage> {
    if member.sex == Some(Sex::F) {
        if current_pregnancy(&member.pregnancies, date).is_some() {
            return Some(LifeStage::Pregnancy);
        }
        let postpartum = member.pregnancies.iter().any(|p| {
            p.delivery_date
                .map(|d| d <= date && (date - d).num_days() <= NIFAS_DAYS)
                .unwrap_or(false)
        });
        if postpartum {
            return Some(LifeStage::Postpartum);
        }
    }
    let bd = member.birth_date?;
    stage_by_age(bd, date)
}

/// Life stage by age alone.
pub fn stage_by_age(birth_date: NaiveDate, date: NaiveDate) -> Option<LifeStage> {
    if date < birth_date {
        return None;
    }
    let months = months_between(birth_date, date);
    Some(match months {
        m if m < 6 => LifeStage::Infant,
        m if m < 72 => LifeStage::Toddler,
        m if m < 18 * 12 => LifeStage::SchoolAdolescent,
        m if m < 60 * 12 => LifeStage::Adult,
        _ => LifeStage::Elderly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn stages_by_age_edges() {
        let bd = d("2020-03-15");
        assert_eq!(stage_by_age(bd, d("2020-09-14")), Some(LifeStage::Infant));
        assert_eq!(stage_by_age(bd, d("2020-09-15")), Some(LifeStage::Toddler));
        assert_eq!(stage_by_age(bd, d("2026-03-14")), Some(LifeStage::Toddler));
        assert_eq!(
            stage_by_age(bd, d("2026-03-15")),
            Some(LifeStage::SchoolAdolescent)
        );
        assert_eq!(
            stage_by_age(d("1966-01-01"), d("2026-01-01")),
            Some(LifeStage::Elderly)
        );
        assert_eq!(
            stage_by_age(d("1966-01-02"), d("2026-01-01")),
            Some(LifeStage::Adult)
        );
        assert_eq!(stage_by_age(bd, d("2020-01-01")), None);
    }

    #[test]
    fn pregnancy_and_nifas() {
        let mut m = Member {
            id: uuid::Uuid::nil(),
            name: "Siti".into(),
            nik: None,
            kk: None,
            sex: Some(Sex::F),
            birth_date: Some(d("1995-01-01")),
            birth_date_estimated: false,
            relation: None,
            mother_id: None,
            jkn: None,
            death_date: None,
            moved_out_date: None,
            moved_out_note: None,
            voided: false,
            void_reason: None,
            pregnancies: vec![Pregnancy {
                hpht: Some(d("2026-01-01")),
                ..Default::default()
            }],
        };
        assert_eq!(life_stage(&m, d("2026-03-01")), Some(LifeStage::Pregnancy));
        assert_eq!(life_stage(&m, d("2025-12-31")), Some(LifeStage::Adult));
        m.pregnancies[0].delivery_date = Some(d("2026-10-01"));
        assert_eq!(life_stage(&m, d("2026-10-01")), Some(LifeStage::Postpartum));
        assert_eq!(life_stage(&m, d("2026-11-12")), Some(LifeStage::Postpartum));
        assert_eq!(life_stage(&m, d("2026-11-13")), Some(LifeStage::Adult));
    }
}
