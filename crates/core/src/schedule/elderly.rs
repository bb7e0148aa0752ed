//! Lansia (60 years and over): yearly SKILAS screening and monthly blood pressure when on
//! hypertension treatment.
//!
//! * **SKILAS** (Skrining Lansia Sederhana) at least once a year — Permenkes 67/2015
//!   (Penyelenggaraan Pelayanan Kesehatan Lanjut Usia di Puskesmas) and the ILP technical
//!   guidance (KMK HK.01.07/MENKES/2015/2023). One task per calendar year `skilas_YYYY`, due
//!   from 1 January (or the 60th birthday) to 31 December; done by an `skilas` date in that
//!   year.
//! * **Blood pressure** monthly for people with hypertension — Permenkes 4/2019 (Standar
//!   Pelayanan Minimal: penderita hipertensi mendapat pelayanan sesuai standar setiap bulan).
//!   Applies to a lansia whose latest answer to `hypertension_treated` is yes; done by a
//!   visit in the month with a systolic reading.

use chrono::NaiveDate;

use super::dates::{plus_months, years_between, YearMonth};
use super::{Ctx, Slot};

/// Age (whole years) from which a member is lansia.
pub const LANSIA_YEARS: i64 = 60;

pub(crate) fn slots(ctx: &Ctx<'_>, out: &mut Vec<Slot>) {
    let Some(birth) = ctx.member.birth_date else {
        return;
    };
    if years_between(birth, ctx.on) < LANSIA_YEARS {
        return;
    }
    skilas(ctx, birth, out);
    blood_pressure(ctx, out);
}

fn skilas(ctx: &Ctx<'_>, birth: NaiveDate, out: &mut Vec<Slot>) {
    let year = chrono::Datelike::year(&ctx.on);
    let (Some(jan1), Some(dec31)) = (
        NaiveDate::from_ymd_opt(year, 1, 1),
        NaiveDate::from_ymd_opt(year, 12, 31),
    ) else {
        return;
    };
    let from = jan1.max(plus_months(birth, 12 * LANSIA_YEARS as u32));
    let done = ctx.earliest_date(|v| {
        v.answers
            .elderly
            .skilas
            .filter(|d| jan1 <= *d && *d <= dec31)
    });
    out.push(
        Slot::new(
            format!("skilas_{year}"),
            format!("Skrining lansia sederhana (SKILAS) {year}"),
            format!("Simple elderly screening (SKILAS) {year}"),
            from,
            dec31,
        )
        .done(done),
    );
}

fn blood_pressure(ctx: &Ctx<'_>, out: &mut Vec<Slot>) {
    let treated = ctx
        .visits
        .iter()
        .rev()
        .find_map(|v| v.answers.elderly.hypertension_treated);
    if treated != Some(true) {
        return;
    }
    let month = YearMonth::of(ctx.on);
    let (from, until) = (month.first_day(), month.last_day());
    let done = ctx.first_visit_where(from, until, |v| v.bp_systolic.is_some());
    out.push(
        Slot::new(
            format!("bp_{}", month.code()),
            format!(
                "Pemeriksaan tekanan darah bulanan (hipertensi) {}",
                month.label_id()
            ),
            format!(
                "Monthly blood pressure check (hypertension), {}",
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

    #[test]
    fn skilas_yearly_from_60() {
        let cfg = ScheduleConfig::default();
        let mut m = woman();
        m.birth_date = Some(d("1966-05-10"));
        let t = member_tasks(&m, &[], "2026-11-24", &cfg);
        let s = find(&t, "skilas_2026").unwrap();
        // Turned 60 on 2026-05-10: due from the birthday to the end of the year.
        assert_eq!(
            (s.due_from, s.due_until, s.status),
            (d("2026-05-10"), d("2026-12-31"), TaskStatus::Due)
        );
        assert!(find(&member_tasks(&m, &[], "2026-05-09", &cfg), "skilas_2026").is_none());
        // Done last year does not count this year.
        let mut v = visit(m.id, "2025-12-20");
        v.answers.elderly.skilas = Some(d("2025-12-20"));
        let mut w = visit(m.id, "2026-03-02");
        w.answers.elderly.skilas = Some(d("2026-03-02"));
        assert_eq!(
            status(
                &member_tasks(&m, &[v.clone()], "2026-11-24", &cfg),
                "skilas_2026"
            ),
            Some(TaskStatus::Due)
        );
        let t = member_tasks(&m, &[v, w], "2026-11-24", &cfg);
        assert_eq!(
            find(&t, "skilas_2026").unwrap().done_on,
            Some(d("2026-03-02"))
        );
        // 59-year-olds have no SKILAS task; a new year starts a new task.
        m.birth_date = Some(d("1967-01-01"));
        assert!(find(&member_tasks(&m, &[], "2026-11-24", &cfg), "skilas_2026").is_none());
        assert_eq!(
            status(&member_tasks(&m, &[], "2027-01-01", &cfg), "skilas_2027"),
            Some(TaskStatus::Due)
        );
    }

    #[test]
    fn monthly_blood_pressure_when_treated() {
        let cfg = ScheduleConfig::default();
        let mut m = woman();
        m.birth_date = Some(d("1950-01-01"));
        assert!(find(&member_tasks(&m, &[], "2026-11-24", &cfg), "bp_2026_11").is_none());
        let mut v = visit(m.id, "2026-10-03");
        v.answers.elderly.hypertension_treated = Some(true);
        let t = member_tasks(&m, &[v.clone()], "2026-11-24", &cfg);
        assert_eq!(status(&t, "bp_2026_11"), Some(TaskStatus::Due));
        let mut w = visit(m.id, "2026-11-02");
        w.bp_systolic = Some(150);
        w.bp_diastolic = Some(95);
        let t = member_tasks(&m, &[v, w], "2026-11-24", &cfg);
        assert_eq!(status(&t, "bp_2026_11"), Some(TaskStatus::Done));
    }
}
