//! Adolescent girls (remaja putri): weekly iron tablets (TTD).
//!
//! Permenkes 88/2014 (Standar Tablet Tambah Darah bagi Wanita Usia Subur dan Ibu Hamil) and
//! Surat Edaran Dirjen Kesehatan Masyarakat HK.03.03/V/0595/2016: girls aged 12–18 years
//! take one TTD tablet every week, all year (given at school or the posyandu remaja). A cadre
//! does not visit weekly, so the task is a monthly check `ttd_remaja_YYYY_MM`: done when a
//! visit in the month confirms the weekly tablet (`ttd_weekly = true`). A pregnant or
//! postpartum girl gets the pregnancy services instead.

use super::dates::{plus_months, years_between, YearMonth};
use super::{Ctx, Slot};
use crate::lifestage::{life_stage, LifeStage};
use crate::model::Sex;

/// Age range (whole years, inclusive) of the weekly TTD for girls.
pub const TTD_REMAJA_YEARS: (i64, i64) = (12, 18);

pub(crate) fn slots(ctx: &Ctx<'_>, out: &mut Vec<Slot>) {
    let m = ctx.member;
    let Some(birth) = m.birth_date else { return };
    if m.sex != Some(Sex::F) {
        return;
    }
    let age = years_between(birth, ctx.on);
    if age < TTD_REMAJA_YEARS.0 || age > TTD_REMAJA_YEARS.1 {
        return;
    }
    if matches!(
        life_stage(m, ctx.on),
        Some(LifeStage::Pregnancy | LifeStage::Postpartum)
    ) {
        return;
    }
    let month = YearMonth::of(ctx.on);
    let from = month
        .first_day()
        .max(plus_months(birth, 12 * TTD_REMAJA_YEARS.0 as u32));
    let until = month.last_day();
    let done = ctx.first_visit_where(from, until, |v| v.answers.school.ttd_weekly == Some(true));
    out.push(
        Slot::new(
            format!("ttd_remaja_{}", month.code()),
            format!("TTD remaja putri 1 tablet/minggu ({})", month.label_id()),
            format!("Weekly iron tablet, adolescent girl ({})", month.label_en()),
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
    use crate::model::{Pregnancy, Sex};

    #[test]
    fn girls_12_to_18_monthly_check() {
        let cfg = ScheduleConfig::default();
        let mut g = child("2012-11-30");
        g.sex = Some(Sex::F);
        let code = "ttd_remaja_2026_11";
        // 13 years old: due; her brother is not.
        let t = member_tasks(&g, &[], "2026-11-24", &cfg);
        let task = find(&t, code).unwrap();
        assert_eq!(
            (task.due_from, task.due_until, task.status),
            (d("2026-11-01"), d("2026-11-30"), TaskStatus::Due)
        );
        let mut b = g.clone();
        b.sex = Some(Sex::M);
        assert!(find(&member_tasks(&b, &[], "2026-11-24", &cfg), code).is_none());
        // Turns 12 on 2026-11-30: the window starts on the birthday.
        let mut y = g.clone();
        y.birth_date = Some(d("2014-11-30"));
        assert!(find(&member_tasks(&y, &[], "2026-11-24", &cfg), code).is_none());
        assert_eq!(
            find(&member_tasks(&y, &[], "2026-11-30", &cfg), code)
                .unwrap()
                .due_from,
            d("2026-11-30")
        );
        // 18 years: still; 19: no longer.
        y.birth_date = Some(d("2007-11-25"));
        assert!(find(&member_tasks(&y, &[], "2026-11-24", &cfg), code).is_some());
        y.birth_date = Some(d("2007-11-24"));
        assert!(find(&member_tasks(&y, &[], "2026-11-24", &cfg), code).is_none());
        // Confirmed at a visit this month → done.
        let mut v = visit(g.id, "2026-11-05");
        v.answers.school.ttd_weekly = Some(true);
        assert_eq!(
            status(&member_tasks(&g, &[v], "2026-11-24", &cfg), code),
            Some(TaskStatus::Done)
        );
        // Pregnant: pregnancy TTD instead.
        g.pregnancies.push(Pregnancy {
            hpht: Some(d("2026-08-01")),
            ..Default::default()
        });
        let t = member_tasks(&g, &[], "2026-11-24", &cfg);
        assert!(find(&t, code).is_none());
        assert!(find(&t, "ttd_2026_11").is_some());
    }
}
