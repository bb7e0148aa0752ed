//! Monthly weighing status of a balita (N/T/O/B) and the referral suggestion.
//!
//! # Status of a month (SKDN, KMS / Buku KIA)
//!
//! For the child's last weighing in the month (latest date, then latest recorded):
//!
//! * **B** (baru) — the first weighing ever recorded for the child;
//! * **O** — weighed this month but not in the previous calendar month;
//! * **N** (naik) — the gain since the last weighing of the previous month is at least the
//!   minimum weight gain (KBM) for the child's age in completed months at this weighing;
//! * **T** (tidak naik) — otherwise (less than KBM, unchanged or lost).
//!
//! No status (`None`) when the child was not weighed in the month, has no birth date, or is
//! 60 months or older at the weighing. Gains are compared in whole grams (kg × 1000,
//! rounded), so 7.9 − 7.1 kg is 800 g, not 799.99… g.
//!
//! # Minimum weight gain (KBM, kenaikan berat badan minimal)
//!
//! The KMS table, Permenkes 155/Menkes/Per/I/2010 tentang Penggunaan Kartu Menuju Sehat
//! (KMS) bagi Balita (Lampiran), reprinted in Buku KIA (Kemenkes, edition 2023, "Kenaikan
//! BB Minimal (KBM)", used with the Permenkes 2/2020 charts):
//!
//! | age (months) | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12–59 |
//! |---|---|---|---|---|---|---|---|---|---|---|---|---|
//! | KBM (g) | 800 | 900 | 800 | 600 | 500 | 400 | 400 | 300 | 300 | 300 | 200 | 200 |
//!
//! A child weighed twice in its first month (age 0 months) is held to the first month's
//! 800 g.
//!
//! # Referral (rujuk)
//!
//! Buku KIA: refer a child whose weight does not rise twice in a row (2T) or is below the red
//! line. [`referral_suggestion`] suggests a referral when the month's status is T and the
//! previous month's was T too, or when the month's weight-for-age z-score (WHO 2006, rounded
//! to two decimals as displayed, see [`crate::growth`]) is below −3 SD (berat badan sangat
//! kurang, Permenkes 2/2020).

use serde::{Deserialize, Serialize};

use super::dates::YearMonth;
use crate::growth::{self, Indicator};
use crate::lifestage::months_between;
use crate::model::{Member, Visit};

/// KBM in grams by age in completed months 0..=11; 200 g from 12 to 59 months.
pub const MIN_WEIGHT_GAIN_G: [u32; 12] =
    [800, 800, 900, 800, 600, 500, 400, 400, 300, 300, 300, 200];

/// Balita: under 60 months.
pub const BALITA_MONTHS: i64 = 60;

/// The minimum monthly weight gain (KBM, grams) at an age in completed months, or `None`
/// outside 0..60 months.
pub fn min_weight_gain_g(age_months: i64) -> Option<u32> {
    match age_months {
        m if !(0..BALITA_MONTHS).contains(&m) => None,
        m if m < 12 => Some(MIN_WEIGHT_GAIN_G[m as usize]),
        _ => Some(200),
    }
}

/// The weighing status of a month (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WeighingStatus {
    /// Naik: gained at least the minimum.
    N,
    /// Tidak naik.
    T,
    /// Not weighed the previous month.
    O,
    /// Baru: first weighing.
    B,
}

impl WeighingStatus {
    pub fn code(self) -> &'static str {
        match self {
            WeighingStatus::N => "N",
            WeighingStatus::T => "T",
            WeighingStatus::O => "O",
            WeighingStatus::B => "B",
        }
    }
    pub fn label_id(self) -> &'static str {
        match self {
            WeighingStatus::N => "Naik",
            WeighingStatus::T => "Tidak naik",
            WeighingStatus::O => "Tidak ditimbang bulan lalu",
            WeighingStatus::B => "Baru pertama kali ditimbang",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            WeighingStatus::N => "Gained enough weight",
            WeighingStatus::T => "Did not gain enough weight",
            WeighingStatus::O => "Not weighed last month",
            WeighingStatus::B => "First weighing",
        }
    }
}

/// The member's weighings: not voided, with a usable weight, on or after the birth date;
/// ordered by date then recording time.
fn weighings<'a>(member: &Member, visits: &'a [Visit]) -> Vec<&'a Visit> {
    let mut v: Vec<&Visit> = visits
        .iter()
        .filter(|v| {
            v.member_id == member.id
                && !v.voided
                && v.weight_kg.is_some_and(|w| w.is_finite() && w > 0.0)
                && member.birth_date.is_none_or(|b| v.date >= b)
        })
        .collect();
    v.sort_by_key(|v| (v.date, v.created_at));
    v
}

/// The last weighing in `month`.
fn last_in<'a>(w: &[&'a Visit], month: YearMonth) -> Option<&'a Visit> {
    w.iter().rev().find(|v| month.contains(v.date)).copied()
}

/// The weighing status N/T/O/B of a balita for `month` (see the module docs).
pub fn weighing_status(
    member: &Member,
    visits: &[Visit],
    month: YearMonth,
) -> Option<WeighingStatus> {
    let birth = member.birth_date?;
    let w = weighings(member, visits);
    let cur = last_in(&w, month)?;
    let kbm = min_weight_gain_g(months_between(birth, cur.date))?;
    if !w.iter().any(|v| v.date < month.first_day()) {
        return Some(WeighingStatus::B);
    }
    let Some(prev) = last_in(&w, month.prev()) else {
        return Some(WeighingStatus::O);
    };
    let gain_g = ((cur.weight_kg? - prev.weight_kg?) * 1000.0).round() as i64;
    Some(if gain_g >= i64::from(kbm) {
        WeighingStatus::N
    } else {
        WeighingStatus::T
    })
}

/// A referral suggestion (reason in Indonesian) for the month's weighing: 2T in a row, or
/// weight-for-age below −3 SD. `None` when neither applies or the child was not weighed.
pub fn referral_suggestion(member: &Member, visits: &[Visit], month: YearMonth) -> Option<String> {
    let birth = member.birth_date?;
    let w = weighings(member, visits);
    let cur = last_in(&w, month)?;
    let mut reasons = Vec::new();
    if weighing_status(member, visits, month) == Some(WeighingStatus::T)
        && weighing_status(member, visits, month.prev()) == Some(WeighingStatus::T)
    {
        reasons.push("Berat badan tidak naik 2 kali berturut-turut (2T)".to_string());
    }
    if let (Some(sex), Some(kg)) = (member.sex, cur.weight_kg) {
        let age = growth::age_days(birth, cur.date);
        if months_between(birth, cur.date) < BALITA_MONTHS {
            if let Some(z) = growth::z_score(Indicator::WeightForAge, sex, age, kg, None) {
                let z = growth::round2(z);
                if z < -3.0 {
                    reasons.push(format!(
                        "Berat badan di bawah garis merah: BB/U {z:.2} SD (< −3 SD, berat badan sangat kurang)"
                    ));
                }
            }
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::growth::{lms_for_age, Indicator};
    use crate::model::Sex;

    fn ym(s: &str) -> YearMonth {
        s.parse().unwrap()
    }

    fn weigh(m: &Member, date: &str, kg: f64) -> Visit {
        let mut v = visit(m.id, date);
        v.weight_kg = Some(kg);
        v
    }

    #[test]
    fn kbm_table() {
        let got: Vec<u32> = (0..=13).map(|m| min_weight_gain_g(m).unwrap()).collect();
        assert_eq!(
            got,
            [800, 800, 900, 800, 600, 500, 400, 400, 300, 300, 300, 200, 200, 200]
        );
        assert_eq!(min_weight_gain_g(59), Some(200));
        assert_eq!(min_weight_gain_g(60), None);
        assert_eq!(min_weight_gain_g(-1), None);
    }

    #[test]
    fn b_o_n_t() {
        let c = child("2026-03-10");
        let v = [
            weigh(&c, "2026-04-12", 4.0),  // B (1 month)
            weigh(&c, "2026-05-12", 4.9),  // 2 months, +900 g = KBM → N
            weigh(&c, "2026-06-11", 5.69), // 3 months, +790 g < 800 → T
            // July not weighed
            weigh(&c, "2026-08-15", 6.5), // O
            weigh(&c, "2026-09-15", 6.9), // 6 months, +400 = KBM → N
            weigh(&c, "2026-10-15", 7.2), // 7 months, +300 < 400 → T
        ];
        let s = |m: &str| weighing_status(&c, &v, ym(m));
        assert_eq!(s("2026-03"), None);
        assert_eq!(s("2026-04"), Some(WeighingStatus::B));
        assert_eq!(s("2026-05"), Some(WeighingStatus::N));
        assert_eq!(s("2026-06"), Some(WeighingStatus::T));
        assert_eq!(s("2026-07"), None);
        assert_eq!(s("2026-08"), Some(WeighingStatus::O));
        assert_eq!(s("2026-09"), Some(WeighingStatus::N));
        assert_eq!(s("2026-10"), Some(WeighingStatus::T));
        assert_eq!(s("2026-11"), None);
    }

    #[test]
    fn gains_in_whole_grams_and_last_weighing_of_the_month() {
        // 7.9 − 7.1 in floating point is 0.79999…; in grams it is exactly the 800 g KBM.
        let c = child("2025-12-20"); // 3 months on 2026-03-20
        let v = [weigh(&c, "2026-02-20", 7.1), weigh(&c, "2026-03-21", 7.9)];
        assert_eq!(
            weighing_status(&c, &v, ym("2026-03")),
            Some(WeighingStatus::N)
        );
        // Two weighings in March: the later one counts (7.8 → +700 g → T).
        let mut later = weigh(&c, "2026-03-28", 7.8);
        later.created_at = 5;
        let v2 = [v[0].clone(), v[1].clone(), later];
        assert_eq!(
            weighing_status(&c, &v2, ym("2026-03")),
            Some(WeighingStatus::T)
        );
        // Voided weighings and other members' visits do not count.
        let mut voided = weigh(&c, "2026-02-20", 7.1);
        voided.voided = true;
        let other = weigh(&child("2025-01-01"), "2026-02-21", 9.0);
        let v3 = [voided, other, v[1].clone()];
        assert_eq!(
            weighing_status(&c, &v3, ym("2026-03")),
            Some(WeighingStatus::B)
        );
    }

    #[test]
    fn kbm_depends_on_age_at_the_weighing() {
        // +250 g: N at 11 months (200 g), T at 10 months (300 g).
        let c = child("2025-12-15");
        let v = [weigh(&c, "2026-10-10", 8.0), weigh(&c, "2026-11-15", 8.25)];
        assert_eq!(
            weighing_status(&c, &v, ym("2026-11")),
            Some(WeighingStatus::N)
        );
        let v = [weigh(&c, "2026-10-10", 8.0), weigh(&c, "2026-11-14", 8.25)];
        assert_eq!(
            weighing_status(&c, &v, ym("2026-11")),
            Some(WeighingStatus::T)
        );
        // 60 months or more: not a balita any more.
        let old = child("2021-10-01");
        let v = [
            weigh(&old, "2026-09-10", 17.0),
            weigh(&old, "2026-10-10", 17.5),
        ];
        assert_eq!(
            weighing_status(&old, &v, ym("2026-09")),
            Some(WeighingStatus::B)
        );
        assert_eq!(weighing_status(&old, &v, ym("2026-10")), None);
    }

    #[test]
    fn two_t_in_a_row_suggests_referral() {
        let c = child("2025-06-01"); // 12+ months: KBM 200 g
        let base = [
            weigh(&c, "2026-08-05", 9.0),
            weigh(&c, "2026-09-05", 9.1), // T
            weigh(&c, "2026-10-05", 9.2), // T
            weigh(&c, "2026-11-05", 9.4), // N
        ];
        assert_eq!(referral_suggestion(&c, &base, ym("2026-09")), None);
        let r = referral_suggestion(&c, &base, ym("2026-10")).unwrap();
        assert!(r.contains("2T"), "{r}");
        assert_eq!(referral_suggestion(&c, &base, ym("2026-11")), None);
        // T, O (gap), T is not two in a row.
        let gap = [
            weigh(&c, "2026-06-05", 8.8),
            weigh(&c, "2026-07-05", 8.9), // T
            weigh(&c, "2026-09-05", 9.0), // O
            weigh(&c, "2026-10-05", 9.1), // T
        ];
        assert_eq!(
            weighing_status(&c, &gap, ym("2026-09")),
            Some(WeighingStatus::O)
        );
        assert_eq!(referral_suggestion(&c, &gap, ym("2026-10")), None);
    }

    #[test]
    fn below_minus_three_sd_suggests_referral() {
        // The WHO −3 SD weight at this age: just below it → refer; at +0.05 kg → not.
        let c = child("2025-11-24"); // boy
        let date = "2026-11-24";
        let age = growth::age_days(c.birth_date.unwrap(), d(date));
        let sd3 = lms_for_age(Indicator::WeightForAge, Sex::M, age)
            .unwrap()
            .value_at(-3.0);
        let low = [weigh(&c, date, sd3 - 0.1)];
        let r = referral_suggestion(&c, &low, ym("2026-11")).unwrap();
        assert!(r.contains("garis merah") && r.contains("BB/U -3."), "{r}");
        let ok = [weigh(&c, date, sd3 + 0.05)];
        assert_eq!(referral_suggestion(&c, &ok, ym("2026-11")), None);
        // Not weighed that month: nothing to suggest.
        assert_eq!(referral_suggestion(&c, &low, ym("2026-10")), None);
    }
}
