//! Newborn and child services: KN1–KN3, immunisation, vitamin A rounds, monthly weighing.
//!
//! * **KN** — Permenkes 21/2021 (pelayanan kesehatan bayi baru lahir), Pasal 24 /
//!   Permenkes 25/2014: KN1 6–48 hours, KN2 day 3–7, KN3 day 8–28 after birth; KN1 as
//!   day 0..=2 by the hours → dates rule of [`super::dates`].
//! * **Immunisation** — Buku KIA 2024 (Kemenkes), jadwal imunisasi rutin:
//!   HB0 < 24 hours; BCG and polio 1 at 1 month; DPT-HB-Hib 1/2/3 with polio 2/3/4 at
//!   2/3/4 months; PCV at 2, 3 and 12 months; rotavirus at 2, 3 and 4 months; IPV at 4 and 9
//!   months; MR at 9 and 18 months; DPT-HB-Hib booster at 18 months; JE at 10 months in
//!   endemic areas only. A dose "at m months" is due during the month of age m (from the
//!   date the child is m months old to the day before m + 1 months); after that it is
//!   overdue. Later doses of a series (polio, DPT-HB-Hib, PCV, rotavirus, IPV, MR) are only
//!   scheduled once the previous dose is recorded, at least 4 weeks after it (minimum
//!   interval, Permenkes 12/2017 Lampiran); the window moves with it.
//!   Catch-up limits: HB0 until day 7 (Permenkes 12/2017: HB0 0–7 days; later doses of
//!   DPT-HB-Hib protect against hepatitis B); BCG until 12 months (Permenkes 12/2017:
//!   BCG without a tuberculin test before 1 year); rotavirus: every dose is no longer given
//!   after 6 months 29 days (Buku KIA 2024 / Kemenkes, introduction of rotavirus vaccine
//!   2023); all others until [`super::ScheduleConfig::catch_up_months`].
//! * **Vitamin A** — Kemenkes, Panduan Manajemen Suplementasi Vitamin A (2016): every
//!   February and August; blue capsule (100,000 IU) at 6–11 months, red (200,000 IU) at
//!   12–59 months; children missed in the round month are reached in March / September
//!   (sweeping). A child is in a round if it is at least 6 months old on the last day of the
//!   month and at most 59 months old on the first day; the capsule is red if the child is
//!   12 months or older on the first day of the month, else blue.
//! * **Weighing** — monthly for every balita (Permenkes 2/2020; Buku KIA "timbang setiap
//!   bulan"), from the month after the birth month while the child is under 60 months on
//!   the first day of the month.

use chrono::NaiveDate;

use super::dates::{first_day_for_hours, last_day_for_hours, plus_days, plus_months, YearMonth};
use super::{Ctx, Slot};
use crate::checklist::ImmunisationAnswers;
use crate::lifestage::months_between;
use crate::model::Visit;

/// Minimum days between two doses of a series (4 weeks, Permenkes 12/2017).
pub const MIN_DOSE_INTERVAL_DAYS: i64 = 28;
/// HB0 can still be given up to this many days after birth (Permenkes 12/2017).
pub const HB0_LAST_DAY: i64 = 7;
/// Rotavirus is no longer given after 6 months and this many days.
pub const ROTAVIRUS_LAST_EXTRA_DAYS: i64 = 29;

/// KN windows in days after birth (Permenkes 21/2021).
fn kn_windows() -> [(&'static str, i64, i64, &'static str, &'static str); 3] {
    [
        (
            "kn1",
            first_day_for_hours(6),
            last_day_for_hours(48),
            "Kunjungan neonatal KN1 (6–48 jam)",
            "Neonatal visit KN1 (6–48 hours)",
        ),
        (
            "kn2",
            3,
            7,
            "Kunjungan neonatal KN2 (hari ke-3–7)",
            "Neonatal visit KN2 (day 3–7)",
        ),
        (
            "kn3",
            8,
            28,
            "Kunjungan neonatal KN3 (hari ke-8–28)",
            "Neonatal visit KN3 (day 8–28)",
        ),
    ]
}

#[derive(Clone, Copy)]
enum When {
    /// Within 24 hours of birth.
    Birth,
    /// During the month of age `m`.
    Month(u32),
}

#[derive(Clone, Copy)]
enum Limit {
    CatchUp,
    Hb0,
    Bcg,
    Rotavirus,
}

struct Dose {
    code: &'static str,
    when: When,
    /// The previous dose of the series.
    prev: Option<&'static str>,
    limit: Limit,
    label_id: &'static str,
    label_en: &'static str,
    get: fn(&ImmunisationAnswers) -> Option<NaiveDate>,
}

macro_rules! dose {
    ($field:ident, $when:expr, $prev:expr, $limit:expr, $id:literal, $en:literal) => {
        Dose {
            code: stringify!($field),
            when: $when,
            prev: $prev,
            limit: $limit,
            label_id: $id,
            label_en: $en,
            get: |a| a.$field,
        }
    };
}

/// The Buku KIA 2024 routine schedule (JE is added separately when endemic).
fn doses(je_endemic: bool) -> Vec<Dose> {
    use Limit::*;
    use When::*;
    let mut v = vec![
        dose!(
            imm_hb0,
            Birth,
            None,
            Hb0,
            "Imunisasi Hepatitis B0 (< 24 jam)",
            "Hepatitis B birth dose (< 24 hours)"
        ),
        dose!(
            imm_bcg,
            Month(1),
            None,
            Bcg,
            "Imunisasi BCG",
            "BCG immunisation"
        ),
        dose!(
            imm_polio1,
            Month(1),
            None,
            CatchUp,
            "Imunisasi polio tetes 1",
            "Oral polio 1"
        ),
        dose!(
            imm_dpt_hb_hib1,
            Month(2),
            None,
            CatchUp,
            "Imunisasi DPT-HB-Hib 1",
            "DTP-HepB-Hib 1"
        ),
        dose!(
            imm_polio2,
            Month(2),
            Some("imm_polio1"),
            CatchUp,
            "Imunisasi polio tetes 2",
            "Oral polio 2"
        ),
        dose!(
            imm_pcv1,
            Month(2),
            None,
            CatchUp,
            "Imunisasi PCV 1",
            "Pneumococcal conjugate 1"
        ),
        dose!(
            imm_rv1,
            Month(2),
            None,
            Rotavirus,
            "Imunisasi rotavirus 1",
            "Rotavirus 1"
        ),
        dose!(
            imm_dpt_hb_hib2,
            Month(3),
            Some("imm_dpt_hb_hib1"),
            CatchUp,
            "Imunisasi DPT-HB-Hib 2",
            "DTP-HepB-Hib 2"
        ),
        dose!(
            imm_polio3,
            Month(3),
            Some("imm_polio2"),
            CatchUp,
            "Imunisasi polio tetes 3",
            "Oral polio 3"
        ),
        dose!(
            imm_pcv2,
            Month(3),
            Some("imm_pcv1"),
            CatchUp,
            "Imunisasi PCV 2",
            "Pneumococcal conjugate 2"
        ),
        dose!(
            imm_rv2,
            Month(3),
            Some("imm_rv1"),
            Rotavirus,
            "Imunisasi rotavirus 2",
            "Rotavirus 2"
        ),
        dose!(
            imm_dpt_hb_hib3,
            Month(4),
            Some("imm_dpt_hb_hib2"),
            CatchUp,
            "Imunisasi DPT-HB-Hib 3",
            "DTP-HepB-Hib 3"
        ),
        dose!(
            imm_polio4,
            Month(4),
            Some("imm_polio3"),
            CatchUp,
            "Imunisasi polio tetes 4",
            "Oral polio 4"
        ),
        dose!(
            imm_ipv1,
            Month(4),
            None,
            CatchUp,
            "Imunisasi IPV 1 (polio suntik)",
            "Inactivated polio 1"
        ),
        dose!(
            imm_rv3,
            Month(4),
            Some("imm_rv2"),
            Rotavirus,
            "Imunisasi rotavirus 3",
            "Rotavirus 3"
        ),
        dose!(
            imm_mr1,
            Month(9),
            None,
            CatchUp,
            "Imunisasi campak-rubela (MR) 1",
            "Measles-rubella 1"
        ),
        dose!(
            imm_ipv2,
            Month(9),
            Some("imm_ipv1"),
            CatchUp,
            "Imunisasi IPV 2 (polio suntik)",
            "Inactivated polio 2"
        ),
        dose!(
            imm_pcv3,
            Month(12),
            Some("imm_pcv2"),
            CatchUp,
            "Imunisasi PCV 3 (lanjutan)",
            "Pneumococcal conjugate 3 (booster)"
        ),
        dose!(
            imm_dpt_hb_hib4,
            Month(18),
            Some("imm_dpt_hb_hib3"),
            CatchUp,
            "Imunisasi DPT-HB-Hib lanjutan",
            "DTP-HepB-Hib booster"
        ),
        dose!(
            imm_mr2,
            Month(18),
            Some("imm_mr1"),
            CatchUp,
            "Imunisasi campak-rubela (MR) lanjutan",
            "Measles-rubella 2"
        ),
    ];
    if je_endemic {
        v.push(dose!(
            imm_je,
            Month(10),
            None,
            CatchUp,
            "Imunisasi Japanese encephalitis (JE, daerah endemis)",
            "Japanese encephalitis (endemic area)"
        ));
    }
    v
}

pub(crate) fn slots(ctx: &Ctx<'_>, out: &mut Vec<Slot>) {
    let Some(birth) = ctx.member.birth_date else {
        return;
    };
    // Nothing here concerns anyone older than 6 years.
    if months_between(birth, ctx.on) >= 72 {
        return;
    }
    neonatal(ctx, birth, out);
    immunisation(ctx, birth, out);
    vitamin_a(ctx, birth, out);
    weighing(ctx, birth, out);
}

fn neonatal(ctx: &Ctx<'_>, birth: NaiveDate, out: &mut Vec<Slot>) {
    let contacts = ctx.all_dates(|v: &Visit| {
        let a = &v.answers.infant;
        vec![a.kn1, a.kn2, a.kn3]
    });
    for (code, from, until, label_id, label_en) in kn_windows() {
        let (from, until) = (plus_days(birth, from), plus_days(birth, until));
        let done = contacts
            .iter()
            .find(|c| from <= **c && **c <= until)
            .copied();
        out.push(
            Slot::new(code, label_id, label_en, from, until)
                .overdue_until(plus_days(until, ctx.cfg.missed_keep_days))
                .done(done),
        );
    }
}

fn immunisation(ctx: &Ctx<'_>, birth: NaiveDate, out: &mut Vec<Slot>) {
    let doses = doses(ctx.cfg.je_endemic);
    let given = |code: &str| -> Option<NaiveDate> {
        let dose = doses.iter().find(|d| d.code == code)?;
        ctx.earliest_date(|v| (dose.get)(&v.answers.immunisation))
            .filter(|d| *d >= birth)
    };
    let catch_up_end = plus_days(plus_months(birth, ctx.cfg.catch_up_months), -1);
    for dose in &doses {
        let done = given(dose.code);
        let (mut from, mut until) = match dose.when {
            When::Birth => (
                plus_days(birth, first_day_for_hours(0)),
                plus_days(birth, last_day_for_hours(24)),
            ),
            When::Month(m) => (
                plus_months(birth, m),
                plus_days(plus_months(birth, m + 1), -1),
            ),
        };
        if let Some(prev) = dose.prev {
            match given(prev) {
                Some(p) => {
                    let earliest = plus_days(p, MIN_DOSE_INTERVAL_DAYS);
                    if earliest > from {
                        from = earliest;
                        until = until.max(plus_days(plus_months(from, 1), -1));
                    }
                }
                // Not scheduled before the previous dose; shown only if recorded anyway.
                None if done.is_none() => continue,
                None => {}
            }
        }
        let last = match dose.limit {
            Limit::CatchUp => catch_up_end,
            Limit::Hb0 => plus_days(birth, HB0_LAST_DAY),
            Limit::Bcg => plus_days(plus_months(birth, 12), -1).min(catch_up_end),
            Limit::Rotavirus => plus_days(plus_months(birth, 6), ROTAVIRUS_LAST_EXTRA_DAYS),
        };
        if done.is_none() && from > last {
            continue;
        }
        until = until.min(last);
        out.push(
            Slot::new(
                dose.code,
                dose.label_id,
                dose.label_en,
                from,
                until.max(from),
            )
            .overdue_until(last)
            .done(done),
        );
    }
}

fn vitamin_a(ctx: &Ctx<'_>, birth: NaiveDate, out: &mut Vec<Slot>) {
    let year = YearMonth::of(ctx.on).year;
    for y in [year - 1, year] {
        for m in [2, 8] {
            let Some(round) = YearMonth::new(y, m) else {
                continue;
            };
            let (first, last) = (round.first_day(), round.last_day());
            let age_first = months_between(birth, first);
            let age_last = months_between(birth, last);
            if age_last < 6 || age_first > 59 {
                continue;
            }
            let sweep_end = round.next().last_day();
            let done = ctx.earliest_date(|v| {
                v.answers
                    .toddler
                    .vit_a
                    .filter(|d| first <= *d && *d <= sweep_end)
            });
            let (cap_id, cap_en) = if age_first >= 12 {
                ("kapsul merah 200.000 IU", "red capsule, 200,000 IU")
            } else {
                ("kapsul biru 100.000 IU", "blue capsule, 100,000 IU")
            };
            out.push(
                Slot::new(
                    format!("vit_a_{}", round.code()),
                    format!("Vitamin A {} ({cap_id})", round.label_id()),
                    format!("Vitamin A {} ({cap_en})", round.label_en()),
                    first,
                    last,
                )
                .overdue_until(sweep_end)
                .done(done),
            );
        }
    }
}

fn weighing(ctx: &Ctx<'_>, birth: NaiveDate, out: &mut Vec<Slot>) {
    let month = YearMonth::of(ctx.on);
    let (first, last) = (month.first_day(), month.last_day());
    if birth >= first || months_between(birth, first) >= 60 {
        return;
    }
    let done = ctx.first_visit_where(first, last, |v| {
        v.weight_kg.is_some_and(|w| w > 0.0) || v.answers.infant.weighed_this_month == Some(true)
    });
    out.push(
        Slot::new(
            format!("weighing_{}", month.code()),
            format!("Penimbangan bulanan {}", month.label_id()),
            format!("Monthly weighing, {}", month.label_en()),
            first,
            last,
        )
        .done(done),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

    fn imm(
        id: Uuid,
        date: &str,
        set: impl Fn(&mut crate::checklist::ImmunisationAnswers),
    ) -> Visit {
        let mut v = visit(id, date);
        set(&mut v.answers.immunisation);
        v
    }

    #[test]
    fn kn1_at_5h_6h_49h_by_the_date_rule() {
        // Born 2026-11-01 (no time). 5 h and 6 h after a morning birth are both on day 0:
        // a date cannot tell them apart, so a KN1 dated day 0 counts. 49 h after a birth
        // before 23:00 is day 2: counts. 49 h after a birth at 23:30 is day 3: KN2, not KN1.
        let c = child("2026-11-01");
        let id = c.id;
        let cfg = ScheduleConfig::default();
        for (contact, kn1_done) in [
            ("2026-11-01", true),
            ("2026-11-03", true),
            ("2026-11-04", false),
        ] {
            let mut v = visit(id, contact);
            v.answers.infant.kn1 = Some(d(contact));
            let t = member_tasks(&c, &[v], "2026-11-04", &cfg);
            let kn1 = find(&t, "kn1").unwrap();
            assert_eq!(kn1.status == TaskStatus::Done, kn1_done, "{contact}");
            assert_eq!(
                find(&t, "kn2").unwrap().status == TaskStatus::Done,
                !kn1_done,
                "{contact}"
            );
        }
        let t = member_tasks(&c, &[], "2026-11-01", &cfg);
        let kn1 = find(&t, "kn1").unwrap();
        assert_eq!(
            (kn1.due_from, kn1.due_until),
            (d("2026-11-01"), d("2026-11-03"))
        );
        assert_eq!(kn1.status, TaskStatus::Due);
        assert_eq!(
            status(&member_tasks(&c, &[], "2026-11-03", &cfg), "kn1"),
            Some(TaskStatus::Due)
        );
        assert_eq!(
            status(&member_tasks(&c, &[], "2026-11-04", &cfg), "kn1"),
            Some(TaskStatus::Overdue)
        );
        // KN3 day 8..=28.
        let kn3 = find(&member_tasks(&c, &[], "2026-11-09", &cfg), "kn3").unwrap();
        assert_eq!(
            (kn3.due_from, kn3.due_until),
            (d("2026-11-09"), d("2026-11-29"))
        );
        // A cadre's visit without a KN date is not a KN contact.
        let t = member_tasks(&c, &[visit(id, "2026-11-02")], "2026-11-02", &cfg);
        assert_eq!(status(&t, "kn1"), Some(TaskStatus::Due));
    }

    #[test]
    fn hb0_within_24h_then_catch_up_to_day_7() {
        let c = child("2026-11-01");
        let cfg = ScheduleConfig::default();
        let hb0 = |on: &str| status(&member_tasks(&c, &[], on, &cfg), "imm_hb0");
        assert_eq!(hb0("2026-11-02"), Some(TaskStatus::Due));
        assert_eq!(hb0("2026-11-03"), Some(TaskStatus::Overdue));
        assert_eq!(hb0("2026-11-08"), Some(TaskStatus::Overdue));
        assert_eq!(hb0("2026-11-09"), None);
    }

    #[test]
    fn bcg_and_polio1_at_one_month_due_overdue_done() {
        let c = child("2026-01-15");
        let id = c.id;
        let cfg = ScheduleConfig::default();
        let t = member_tasks(&c, &[], "2026-02-14", &cfg);
        assert_eq!(status(&t, "imm_bcg"), None); // not yet one month
        let t = member_tasks(&c, &[], "2026-02-15", &cfg);
        let bcg = find(&t, "imm_bcg").unwrap();
        assert_eq!(
            (bcg.due_from, bcg.due_until),
            (d("2026-02-15"), d("2026-03-14"))
        );
        assert_eq!(bcg.status, TaskStatus::Due);
        assert_eq!(status(&t, "imm_polio1"), Some(TaskStatus::Due));
        let t = member_tasks(&c, &[], "2026-03-15", &cfg);
        assert_eq!(status(&t, "imm_bcg"), Some(TaskStatus::Overdue));
        // BCG catch-up ends at 12 months; polio 1 continues.
        let t = member_tasks(&c, &[], "2027-01-15", &cfg);
        assert_eq!(status(&t, "imm_bcg"), None);
        assert_eq!(status(&t, "imm_polio1"), Some(TaskStatus::Overdue));
        // Polio 2 waits for polio 1.
        assert_eq!(status(&t, "imm_polio2"), None);
        // Given late: done, listed 30 days after the later of window end and done date.
        let v = imm(id, "2026-04-01", |a| a.imm_bcg = Some(d("2026-04-01")));
        let t = member_tasks(&c, std::slice::from_ref(&v), "2026-05-01", &cfg);
        let bcg = find(&t, "imm_bcg").unwrap();
        assert_eq!(
            (bcg.status, bcg.done_on),
            (TaskStatus::Done, Some(d("2026-04-01")))
        );
        assert_eq!(
            status(
                &member_tasks(&c, std::slice::from_ref(&v), "2026-05-02", &cfg),
                "imm_bcg"
            ),
            None
        );
        // A dose recorded after `on` does not count on `on`.
        let t = member_tasks(&c, &[v], "2026-03-20", &cfg);
        assert_eq!(status(&t, "imm_bcg"), Some(TaskStatus::Overdue));
    }

    #[test]
    fn series_waits_for_previous_dose_and_four_weeks() {
        let c = child("2026-01-15");
        let id = c.id;
        let cfg = ScheduleConfig::default();
        // DPT 1 given late on 2026-04-10 (nearly 3 months): DPT 2 not before 2026-05-08.
        let v = imm(id, "2026-04-10", |a| {
            a.imm_dpt_hb_hib1 = Some(d("2026-04-10"))
        });
        let t = member_tasks(&c, std::slice::from_ref(&v), "2026-05-08", &cfg);
        let dpt2 = find(&t, "imm_dpt_hb_hib2").unwrap();
        assert_eq!(
            (dpt2.due_from, dpt2.due_until),
            (d("2026-05-08"), d("2026-06-07"))
        );
        assert_eq!(dpt2.status, TaskStatus::Due);
        assert_eq!(
            status(
                &member_tasks(&c, &[v], "2026-05-07", &cfg),
                "imm_dpt_hb_hib2"
            ),
            None
        );
        // On time: DPT 1 at 2 months → DPT 2 window is the month of age 3.
        let v = imm(id, "2026-03-15", |a| {
            a.imm_dpt_hb_hib1 = Some(d("2026-03-15"))
        });
        let dpt2 = find(
            &member_tasks(&c, &[v], "2026-04-15", &cfg),
            "imm_dpt_hb_hib2",
        )
        .unwrap();
        assert_eq!(
            (dpt2.due_from, dpt2.due_until),
            (d("2026-04-15"), d("2026-05-14"))
        );
    }

    #[test]
    fn rotavirus_no_longer_due_after_6_months_29_days() {
        // Born 2026-01-10: 6 months = 2026-07-10, + 29 days = 2026-08-08.
        let c = child("2026-01-10");
        let id = c.id;
        let cfg = ScheduleConfig::default();
        let rv1 = |on: &str, v: &[Visit]| status(&member_tasks(&c, v, on, &cfg), "imm_rv1");
        assert_eq!(rv1("2026-03-10", &[]), Some(TaskStatus::Due));
        assert_eq!(rv1("2026-04-10", &[]), Some(TaskStatus::Overdue));
        assert_eq!(rv1("2026-08-08", &[]), Some(TaskStatus::Overdue));
        assert_eq!(rv1("2026-08-09", &[]), None);
        // RV 2 after a late RV 1 on 2026-07-20: earliest 2026-08-17 > limit → never due.
        let v = [imm(id, "2026-07-20", |a| a.imm_rv1 = Some(d("2026-07-20")))];
        let t = member_tasks(&c, &v, "2026-08-01", &cfg);
        assert_eq!(status(&t, "imm_rv1"), Some(TaskStatus::Done));
        assert_eq!(status(&t, "imm_rv2"), None);
        // DPT-HB-Hib 1 (same month of age) still overdue after the rotavirus limit.
        assert_eq!(
            status(
                &member_tasks(&c, &[], "2026-08-09", &cfg),
                "imm_dpt_hb_hib1"
            ),
            Some(TaskStatus::Overdue)
        );
    }

    #[test]
    fn later_doses_ipv_mr_pcv_booster_and_je() {
        let c = child("2025-01-20");
        let id = c.id;
        let cfg = ScheduleConfig::default();
        // 9 months (2025-10-20): MR 1 and IPV 2 (after IPV 1) due.
        let v = [imm(id, "2025-05-20", |a| {
            a.imm_ipv1 = Some(d("2025-05-20"))
        })];
        let t = member_tasks(&c, &v, "2025-10-20", &cfg);
        assert_eq!(status(&t, "imm_mr1"), Some(TaskStatus::Due));
        assert_eq!(status(&t, "imm_ipv2"), Some(TaskStatus::Due));
        assert_eq!(status(&t, "imm_je"), None); // not endemic
        let je = ScheduleConfig {
            je_endemic: true,
            ..Default::default()
        };
        let t = member_tasks(&c, &v, "2025-11-20", &je);
        assert_eq!(find(&t, "imm_je").unwrap().due_from, d("2025-11-20"));
        // 18 months (2026-07-20): MR 2 and the DPT-HB-Hib booster after their series.
        let v = [imm(id, "2025-10-25", |a| {
            a.imm_mr1 = Some(d("2025-10-25"));
            a.imm_dpt_hb_hib1 = Some(d("2025-03-20"));
            a.imm_dpt_hb_hib2 = Some(d("2025-04-20"));
            a.imm_dpt_hb_hib3 = Some(d("2025-05-20"));
        })];
        let t = member_tasks(&c, &v, "2026-07-20", &cfg);
        assert_eq!(find(&t, "imm_mr2").unwrap().due_from, d("2026-07-20"));
        assert_eq!(status(&t, "imm_dpt_hb_hib4"), Some(TaskStatus::Due));
        // Catch-up ends at 60 months: polio 1 is overdue on the day before, gone on the day.
        let t = member_tasks(&c, &[], "2030-01-19", &cfg);
        assert_eq!(status(&t, "imm_polio1"), Some(TaskStatus::Overdue));
        assert_eq!(
            status(&member_tasks(&c, &[], "2030-01-20", &cfg), "imm_polio1"),
            None
        );
    }

    #[test]
    fn vitamin_a_rounds_and_age_boundaries() {
        let cfg = ScheduleConfig::default();
        let va = |birth: &str, on: &str| {
            find(
                &member_tasks(&child(birth), &[], on, &cfg),
                &format!("vit_a_{}", &on[..7].replace('-', "_")),
            )
        };
        // 6 months reached during February (on the 28th): in, blue capsule.
        let t = va("2025-08-28", "2026-02-10").unwrap();
        assert!(t.label_id.contains("biru"), "{}", t.label_id);
        assert_eq!(
            (t.due_from, t.due_until),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(t.status, TaskStatus::Due);
        // 6 months only in March: not in the February round.
        assert!(va("2025-09-01", "2026-02-10").is_none());
        // 12 months on the 1st of August: red; 11 months on the 1st: blue.
        assert!(va("2025-08-01", "2026-08-10")
            .unwrap()
            .label_id
            .contains("merah"));
        assert!(va("2025-08-02", "2026-08-10")
            .unwrap()
            .label_id
            .contains("biru"));
        // 59 months on the 1st: still in (red); 60 months: out.
        assert!(va("2021-08-02", "2026-08-10")
            .unwrap()
            .label_id
            .contains("merah"));
        assert!(va("2021-08-01", "2026-08-10").is_none());
        // Not a round month: nothing new; the round is overdue in the sweeping month.
        let c = child("2025-01-01");
        let t = member_tasks(&c, &[], "2026-11-24", &cfg);
        assert!(t.iter().all(|t| !t.service.starts_with("vit_a")), "{t:#?}");
        let t = member_tasks(&c, &[], "2026-09-30", &cfg);
        assert_eq!(status(&t, "vit_a_2026_08"), Some(TaskStatus::Overdue));
        assert_eq!(
            status(&member_tasks(&c, &[], "2026-10-01", &cfg), "vit_a_2026_08"),
            None
        );
        // Given in September (sweeping) counts for August.
        let mut v = visit(c.id, "2026-09-05");
        v.answers.toddler.vit_a = Some(d("2026-09-05"));
        let t = member_tasks(&c, &[v], "2026-09-30", &cfg);
        assert_eq!(status(&t, "vit_a_2026_08"), Some(TaskStatus::Done));
    }

    #[test]
    fn weighing_task_each_month() {
        let c = child("2026-09-15");
        let id = c.id;
        let cfg = ScheduleConfig::default();
        let t = member_tasks(&c, &[], "2026-09-20", &cfg);
        assert_eq!(status(&t, "weighing_2026_09"), None); // birth month
        let t = member_tasks(&c, &[], "2026-11-24", &cfg);
        let w = find(&t, "weighing_2026_11").unwrap();
        assert_eq!(
            (w.due_from, w.due_until, w.status),
            (d("2026-11-01"), d("2026-11-30"), TaskStatus::Due)
        );
        assert!(find(&t, "weighing_2026_10").is_none()); // never overdue
        let mut v = visit(id, "2026-11-10");
        v.weight_kg = Some(5.1);
        let t = member_tasks(&c, &[v], "2026-11-24", &cfg);
        assert_eq!(
            find(&t, "weighing_2026_11").unwrap().done_on,
            Some(d("2026-11-10"))
        );
        let mut v = visit(id, "2026-11-10");
        v.answers.infant.weighed_this_month = Some(true);
        assert_eq!(
            status(
                &member_tasks(&c, &[v], "2026-11-24", &cfg),
                "weighing_2026_11"
            ),
            Some(TaskStatus::Done)
        );
        // Under 60 months on the 1st of the month only.
        let old = child("2021-11-01");
        assert!(find(
            &member_tasks(&old, &[], "2026-10-05", &cfg),
            "weighing_2026_10"
        )
        .is_some());
        assert!(find(
            &member_tasks(&old, &[], "2026-11-05", &cfg),
            "weighing_2026_11"
        )
        .is_none());
    }
}
