//! Pregnancy and postpartum services: ANC K1–K6, TTD/MMS, KF1–KF4 and the mother's
//! vitamin A.
//!
//! * **ANC** — Permenkes 21/2021 (Pelayanan Kesehatan Masa Hamil), Pasal 13 and Lampiran:
//!   at least six contacts, one in trimester 1, two in trimester 2 and three in trimester
//!   3, K1 and K5 by a doctor (ILP home-visit card). Buku KIA 2020 distributes them 2-1-3
//!   ([`super::AncSplit`]). Trimesters by gestational age from HPHT in completed weeks:
//!   trimester 1 = 0–12 weeks (day 0..=90), trimester 2 = 13–24 weeks (day 91..=174),
//!   trimester 3 = 25 weeks to delivery (day 175..). Without HPHT, HPHT = HPL − 280 days;
//!   without either, no ANC tasks. Trimester 3 ends the day before delivery, or at HPL
//!   while the delivery is not recorded; contacts count until 42 weeks
//!   ([`crate::lifestage::MAX_PREGNANCY_DAYS`]).
//! * **TTD/MMS** — every pregnant woman takes iron (TTD, ≥ 90 tablets; Permenkes 21/2021)
//!   or multiple micronutrient supplements (MMS, 180 tablets; KMK HK.01.07/MENKES/1092/2024):
//!   one monthly check `ttd_YYYY_MM` while she is pregnant.
//! * **KF** — Permenkes 21/2021, Pasal 21: KF1 6 hours–2 days, KF2 day 3–7, KF3 day 8–28,
//!   KF4 day 29–42 after delivery (KF1 as day 0..=2, see [`super::dates`]).
//! * **Vitamin A for the mother** — two red capsules (200,000 IU): one right after delivery
//!   and one 24 hours later (Buku KIA; Kemenkes, Panduan Manajemen Suplementasi Vitamin A):
//!   due day 0..=1, overdue until the end of nifas (day 42).

use chrono::NaiveDate;

use super::dates::{plus_days, YearMonth};
use super::{Ctx, Slot};
use crate::lifestage::{current_pregnancy, MAX_PREGNANCY_DAYS, NIFAS_DAYS};
use crate::model::{Pregnancy, Visit};

/// Last gestational day (from HPHT) of trimester 1 (12 completed weeks).
pub const TRIMESTER1_LAST_DAY: i64 = 12 * 7 + 6;
/// Last gestational day of trimester 2 (24 completed weeks).
pub const TRIMESTER2_LAST_DAY: i64 = 24 * 7 + 6;
/// HPL (EDD) = HPHT + 280 days (Naegele).
pub const HPL_DAYS: i64 = 280;

/// KF windows in days after delivery (Permenkes 21/2021).
const KF: [(&str, i64, i64, &str, &str); 4] = [
    (
        "kf1",
        0,
        2,
        "Kunjungan nifas KF1 (6–48 jam)",
        "Postpartum visit KF1 (6–48 hours)",
    ),
    (
        "kf2",
        3,
        7,
        "Kunjungan nifas KF2 (hari ke-3–7)",
        "Postpartum visit KF2 (day 3–7)",
    ),
    (
        "kf3",
        8,
        28,
        "Kunjungan nifas KF3 (hari ke-8–28)",
        "Postpartum visit KF3 (day 8–28)",
    ),
    (
        "kf4",
        29,
        42,
        "Kunjungan nifas KF4 (hari ke-29–42)",
        "Postpartum visit KF4 (day 29–42)",
    ),
];

pub(crate) fn slots(ctx: &Ctx<'_>, out: &mut Vec<Slot>) {
    for p in &ctx.member.pregnancies {
        anc(ctx, p, out);
        postpartum(ctx, p, out);
    }
    ttd(ctx, out);
}

/// The start (HPHT) of a pregnancy.
fn start(p: &Pregnancy) -> Option<NaiveDate> {
    p.hpht.or_else(|| p.hpl.map(|h| plus_days(h, -HPL_DAYS)))
}

/// The end (delivery or loss) of a pregnancy, if recorded on or before `on`.
fn end(p: &Pregnancy, on: NaiveDate) -> Option<NaiveDate> {
    p.delivery_date.or(p.ended).filter(|d| *d <= on)
}

fn anc(ctx: &Ctx<'_>, p: &Pregnancy, out: &mut Vec<Slot>) {
    let Some(hpht) = start(p) else { return };
    if hpht > ctx.on {
        return;
    }
    let end = end(p, ctx.on);
    // The last day a contact can belong to this pregnancy.
    let last = end
        .map(|e| plus_days(e, -1))
        .unwrap_or(plus_days(hpht, MAX_PREGNANCY_DAYS - 1));
    let t3_until = end
        .map(|e| plus_days(e, -1))
        .unwrap_or(p.hpl.unwrap_or(plus_days(hpht, HPL_DAYS)));
    let trimesters = [
        (hpht, plus_days(hpht, TRIMESTER1_LAST_DAY)),
        (
            plus_days(hpht, TRIMESTER1_LAST_DAY + 1),
            plus_days(hpht, TRIMESTER2_LAST_DAY),
        ),
        (plus_days(hpht, TRIMESTER2_LAST_DAY + 1), t3_until),
    ];
    let contacts = ctx.all_dates(|v: &Visit| {
        let a = &v.answers.pregnancy;
        vec![a.anc_k1, a.anc_k2, a.anc_k3, a.anc_k4, a.anc_k5, a.anc_k6]
    });
    let split = ctx.cfg.anc_split;
    let mut k = 0;
    for (t, ((from, until), need)) in trimesters
        .into_iter()
        .zip(split.per_trimester())
        .enumerate()
    {
        let until = until.min(last);
        // Contacts in this trimester (the last trimester runs to the end of the pregnancy).
        let upper = if t == 2 { last } else { until };
        let mut in_t = contacts.iter().filter(|d| from <= **d && **d <= upper);
        for _ in 0..need {
            k += 1;
            if from > last {
                continue;
            }
            let doctor = k == 1 || k == 5;
            let slot = Slot::new(
                format!("anc_k{k}"),
                format!(
                    "Pemeriksaan kehamilan K{k} (trimester {}{})",
                    t + 1,
                    if doctor { ", oleh dokter" } else { "" }
                ),
                format!(
                    "Antenatal care K{k} (trimester {}{})",
                    t + 1,
                    if doctor { ", by a doctor" } else { "" }
                ),
                from,
                until.max(from),
            )
            .overdue_until(plus_days(until, ctx.cfg.missed_keep_days).min(last))
            .done(in_t.next().copied());
            out.push(slot);
        }
    }
    debug_assert_eq!(k, 6);
}

fn postpartum(ctx: &Ctx<'_>, p: &Pregnancy, out: &mut Vec<Slot>) {
    let Some(d) = p.delivery_date.filter(|d| *d <= ctx.on) else {
        return;
    };
    let contacts = ctx.all_dates(|v: &Visit| {
        let a = &v.answers.postpartum;
        vec![a.kf1, a.kf2, a.kf3, a.kf4]
    });
    for (code, from, until, label_id, label_en) in KF {
        let (from, until) = (plus_days(d, from), plus_days(d, until));
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
    let nifas_end = plus_days(d, NIFAS_DAYS);
    let done = ctx.first_visit_where(d, nifas_end, |v| {
        v.answers.postpartum.vit_a_postpartum == Some(true)
    });
    out.push(
        Slot::new(
            "vit_a_nifas",
            "Vitamin A ibu nifas (2 kapsul merah 200.000 IU)",
            "Postpartum vitamin A (2 red capsules, 200,000 IU)",
            d,
            plus_days(d, 1),
        )
        .overdue_until(nifas_end)
        .done(done),
    );
}

fn ttd(ctx: &Ctx<'_>, out: &mut Vec<Slot>) {
    let Some(p) = current_pregnancy(&ctx.member.pregnancies, ctx.on) else {
        return;
    };
    let Some(hpht) = start(p) else { return };
    let month = YearMonth::of(ctx.on);
    let from = month.first_day().max(hpht);
    let until = month.last_day();
    let done = ctx.first_visit_where(from, until, |v| {
        v.answers.pregnancy.ttd_received == Some(true)
    });
    out.push(
        Slot::new(
            format!("ttd_{}", month.code()),
            format!(
                "TTD/MMS ibu hamil {} (≥ 90 TTD atau 180 MMS selama hamil)",
                month.label_id()
            ),
            format!(
                "Iron/MMS tablets in pregnancy, {} (≥ 90 IFA or 180 MMS in pregnancy)",
                month.label_en()
            ),
            from,
            until,
        )
        .done(done),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use crate::model::Pregnancy;

    fn pregnant(hpht: &str) -> (Member, Uuid) {
        let mut m = woman();
        m.pregnancies.push(Pregnancy {
            id: Uuid::from_u128(77),
            hpht: Some(d(hpht)),
            ..Default::default()
        });
        let id = m.id;
        (m, id)
    }

    fn anc_visit(id: Uuid, date: &str, field: usize, contact: &str) -> Visit {
        let mut v = visit(id, date);
        let a = &mut v.answers.pregnancy;
        let c = Some(d(contact));
        match field {
            1 => a.anc_k1 = c,
            2 => a.anc_k2 = c,
            3 => a.anc_k3 = c,
            4 => a.anc_k4 = c,
            5 => a.anc_k5 = c,
            _ => a.anc_k6 = c,
        }
        v
    }

    #[test]
    fn anc_k1_window_is_trimester_one() {
        // HPHT 2026-01-01: T1 = day 0..=90 → 2026-01-01..=2026-04-01.
        let (m, id) = pregnant("2026-01-01");
        let cfg = ScheduleConfig::default();
        let k1 = |on: &str, visits: &[Visit]| find(&member_tasks(&m, visits, on, &cfg), "anc_k1");
        let t = k1("2026-01-01", &[]).unwrap();
        assert_eq!(
            (t.due_from, t.due_until),
            (d("2026-01-01"), d("2026-04-01"))
        );
        assert_eq!(t.status, TaskStatus::Due);
        assert_eq!(k1("2026-04-01", &[]).unwrap().status, TaskStatus::Due);
        assert_eq!(k1("2026-04-02", &[]).unwrap().status, TaskStatus::Overdue);
        // Missed contacts stay visible 14 days, then drop.
        assert_eq!(k1("2026-04-15", &[]).unwrap().status, TaskStatus::Overdue);
        assert!(k1("2026-04-16", &[]).is_none());
        assert!(t.label_id.contains("dokter"));
        // A contact on the last day of trimester 1 is K1; recorded the next day it is not.
        let v = [anc_visit(id, "2026-04-05", 1, "2026-04-01")];
        let t = k1("2026-04-05", &v).unwrap();
        assert_eq!(
            (t.status, t.done_on),
            (TaskStatus::Done, Some(d("2026-04-01")))
        );
        let v = [anc_visit(id, "2026-04-05", 1, "2026-04-02")];
        assert_eq!(k1("2026-04-05", &v).unwrap().status, TaskStatus::Overdue);
        // ... it counts in trimester 2 instead: K2 under 1-2-3.
        let k2 = find(&member_tasks(&m, &v, "2026-04-05", &cfg), "anc_k2").unwrap();
        assert_eq!(k2.done_on, Some(d("2026-04-02")));
    }

    #[test]
    fn anc_split_one_two_three_vs_two_one_three() {
        // Two contacts in T1, one in T2; on = end of T2 + 1 day (2026-06-25).
        let (m, id) = pregnant("2026-01-01");
        let v = [
            anc_visit(id, "2026-02-01", 1, "2026-02-01"),
            anc_visit(id, "2026-03-01", 2, "2026-03-01"),
            anc_visit(id, "2026-05-01", 3, "2026-05-01"),
        ];
        let on = "2026-06-25";
        // Keep done tasks listed long enough to see the T1 contacts.
        let keep = ScheduleConfig {
            keep_done_days: 400,
            ..Default::default()
        };
        let a = member_tasks(&m, &v, on, &keep);
        assert_eq!(status(&a, "anc_k1"), Some(TaskStatus::Done));
        // 1-2-3: the second T1 contact is extra; K2 = the T2 contact; K3 (2nd in T2) missed.
        assert_eq!(find(&a, "anc_k2").unwrap().done_on, Some(d("2026-05-01")));
        assert_eq!(status(&a, "anc_k3"), Some(TaskStatus::Overdue));
        assert_eq!(find(&a, "anc_k3").unwrap().due_until, d("2026-06-24"));
        assert_eq!(status(&a, "anc_k4"), Some(TaskStatus::Due));
        let cfg = ScheduleConfig {
            anc_split: AncSplit::TwoOneThree,
            ..keep
        };
        let b = member_tasks(&m, &v, on, &cfg);
        assert_eq!(find(&b, "anc_k2").unwrap().done_on, Some(d("2026-03-01")));
        assert_eq!(find(&b, "anc_k3").unwrap().done_on, Some(d("2026-05-01")));
        assert!(b.iter().all(|t| t.status != TaskStatus::Overdue), "{b:#?}");
        // T3 begins at day 175 = 2026-06-25 and runs to HPL (2026-10-08).
        let k4 = find(&b, "anc_k4").unwrap();
        assert_eq!(
            (k4.due_from, k4.due_until),
            (d("2026-06-25"), d("2026-10-08"))
        );
        assert!(find(&b, "anc_k5").unwrap().label_en.contains("doctor"));
        assert!(!find(&b, "anc_k6").unwrap().label_en.contains("doctor"));
    }

    #[test]
    fn anc_ends_with_the_pregnancy_and_uses_hpl_without_hpht() {
        let mut m = woman();
        m.pregnancies.push(Pregnancy {
            hpl: Some(d("2026-10-08")),
            delivery_date: Some(d("2026-09-20")),
            ..Default::default()
        });
        let cfg = ScheduleConfig::default();
        // Before delivery: HPHT derived = 2026-01-01, T3 contacts due.
        let t = member_tasks(&m, &[], "2026-09-01", &cfg);
        assert_eq!(status(&t, "anc_k6"), Some(TaskStatus::Due));
        // K1 (missed in trimester 1) was dropped long ago.
        assert_eq!(find(&t, "anc_k1").map(|t| t.due_from), None);
        // After delivery no ANC task is listed (missed ones cannot happen any more).
        let t = member_tasks(&m, &[], "2026-09-21", &cfg);
        assert!(t.iter().all(|t| !t.service.starts_with("anc")), "{t:#?}");
        // Asked for a date before the delivery was recorded, the pregnancy is ongoing.
        // (a delivery after `on` is not known yet: trimester 3 runs to HPL).
        let t = member_tasks(&m, &[], "2026-09-19", &cfg);
        assert_eq!(find(&t, "anc_k4").unwrap().due_until, d("2026-10-08"));
    }

    #[test]
    fn kf_windows_and_pooling() {
        let mut m = woman();
        m.pregnancies.push(Pregnancy {
            hpht: Some(d("2026-01-01")),
            delivery_date: Some(d("2026-10-01")),
            ..Default::default()
        });
        let id = m.id;
        let cfg = ScheduleConfig::default();
        let t = member_tasks(&m, &[], "2026-10-01", &cfg);
        let kf1 = find(&t, "kf1").unwrap();
        assert_eq!(
            (kf1.due_from, kf1.due_until),
            (d("2026-10-01"), d("2026-10-03"))
        );
        assert_eq!(kf1.status, TaskStatus::Due);
        assert!(find(&t, "kf2").is_none()); // not started
        assert_eq!(status(&t, "vit_a_nifas"), Some(TaskStatus::Due));
        // KF2 window day 3..=7: due on day 7, overdue on day 8.
        let t = member_tasks(&m, &[], "2026-10-08", &cfg);
        assert_eq!(status(&t, "kf2"), Some(TaskStatus::Due));
        let t = member_tasks(&m, &[], "2026-10-09", &cfg);
        assert_eq!(status(&t, "kf3"), Some(TaskStatus::Due));
        assert_eq!(status(&t, "kf1"), Some(TaskStatus::Overdue));
        assert_eq!(status(&t, "kf2"), Some(TaskStatus::Overdue));
        assert_eq!(status(&t, "vit_a_nifas"), Some(TaskStatus::Overdue));
        // A contact recorded as "kf1" on day 5 is a KF2 contact.
        let mut v = visit(id, "2026-10-06");
        v.answers.postpartum.kf1 = Some(d("2026-10-06"));
        v.answers.postpartum.vit_a_postpartum = Some(true);
        let t = member_tasks(&m, &[v], "2026-10-09", &cfg);
        assert_eq!(status(&t, "kf1"), Some(TaskStatus::Overdue));
        assert_eq!(find(&t, "kf2").unwrap().done_on, Some(d("2026-10-06")));
        assert_eq!(status(&t, "vit_a_nifas"), Some(TaskStatus::Done));
        // KF4 day 29..=42.
        let t = member_tasks(&m, &[], "2026-10-30", &cfg);
        let kf4 = find(&t, "kf4").unwrap();
        assert_eq!(
            (kf4.due_from, kf4.due_until),
            (d("2026-10-30"), d("2026-11-12"))
        );
        // On 2026-11-24 (day 54): KF4 missed 12 days ago → still overdue; KF1–3 dropped.
        let t = member_tasks(&m, &[], "2026-11-24", &cfg);
        assert_eq!(status(&t, "kf4"), Some(TaskStatus::Overdue));
        assert_eq!(status(&t, "kf3"), None);
        assert_eq!(status(&t, "vit_a_nifas"), None);
    }

    #[test]
    fn ttd_monthly_while_pregnant() {
        let (m, id) = pregnant("2026-06-01");
        let cfg = ScheduleConfig::default();
        let t = member_tasks(&m, &[], "2026-11-24", &cfg);
        let ttd = find(&t, "ttd_2026_11").unwrap();
        assert_eq!(ttd.status, TaskStatus::Due);
        assert_eq!(
            (ttd.due_from, ttd.due_until),
            (d("2026-11-01"), d("2026-11-30"))
        );
        let mut v = visit(id, "2026-11-03");
        v.answers.pregnancy.ttd_received = Some(true);
        let mut old = visit(id, "2026-10-20");
        old.answers.pregnancy.ttd_received = Some(true);
        let t = member_tasks(&m, &[old.clone()], "2026-11-24", &cfg);
        assert_eq!(status(&t, "ttd_2026_11"), Some(TaskStatus::Due));
        let t = member_tasks(&m, &[old, v], "2026-11-24", &cfg);
        assert_eq!(status(&t, "ttd_2026_11"), Some(TaskStatus::Done));
        // Not pregnant → no TTD task.
        assert!(find(&member_tasks(&m, &[], "2026-05-24", &cfg), "ttd_2026_05").is_none());
    }
}
