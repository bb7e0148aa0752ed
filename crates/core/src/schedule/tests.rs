//! Household-level tests of the task engine: who gets tasks, ordering, serialisation,
//! the listing rule.

use super::testutil::*;
use super::*;
use crate::model::{Household, Pregnancy};

fn household(members: Vec<Member>, visits: Vec<Visit>) -> HouseholdView {
    HouseholdView {
        household: Household {
            id: Uuid::from_u128(42),
            area_code: "33.74.01.1001".into(),
            dusun: None,
            rt: "001".into(),
            rw: "002".into(),
            posyandu_id: None,
            address: None,
            kk: None,
            lat: None,
            lon: None,
            status: HouseholdStatus::Active,
            merged_into: None,
            created_at: 0,
            checklist: Default::default(),
        },
        members,
        visits,
        referrals: Vec::new(),
        reviews: Vec::new(),
    }
}

/// A mother who delivered on 2026-11-20 and her newborn, on 2026-11-24.
fn family() -> HouseholdView {
    let mut mother = woman();
    mother.pregnancies.push(Pregnancy {
        hpht: Some(d("2026-02-10")),
        delivery_date: Some(d("2026-11-20")),
        ..Default::default()
    });
    let mut baby = child("2026-11-20");
    baby.mother_id = Some(mother.id);
    let mut v = visit(baby.id, "2026-11-21");
    v.answers.infant.kn1 = Some(d("2026-11-21"));
    v.answers.immunisation.imm_hb0 = Some(d("2026-11-20"));
    household(vec![mother, baby], vec![v])
}

#[test]
fn a_household_on_a_day() {
    let view = family();
    let on = d("2026-11-24");
    let tasks = tasks_for_household(&view, on, &ScheduleConfig::default());
    let got: Vec<(String, &str)> = tasks
        .iter()
        .map(|t| (t.service.clone(), t.status.code()))
        .collect();
    let want: Vec<(String, &str)> = [
        // Mother, by window: vitamin A (day 0..=1) and KF1 (day 0..=2) missed, KF2 due.
        ("vit_a_nifas", "overdue"),
        ("kf1", "overdue"),
        ("kf2", "due"),
        // Baby: HB0 done at birth, KN1 done, KN2 due (day 3..=7).
        ("imm_hb0", "done"),
        ("kn1", "done"),
        ("kn2", "due"),
    ]
    .into_iter()
    .map(|(s, st)| (s.to_string(), st))
    .collect();
    assert_eq!(got, want, "{tasks:#?}");
    assert!(tasks[..3].iter().all(|t| t.member_id == view.members[0].id));
    assert!(tasks.iter().all(|t| t.household_id == view.household.id));
    // No ANC task after the delivery; the mother's last T3 contacts are not listed.
    assert!(tasks.iter().all(|t| !t.service.starts_with("anc")));
}

#[test]
fn dead_moved_voided_and_inactive_get_nothing() {
    let cfg = ScheduleConfig::default();
    let on = d("2026-11-24");
    let base = family();
    let baby = |f: &dyn Fn(&mut Member)| {
        let mut v = base.clone();
        f(&mut v.members[1]);
        tasks_for_household(&v, on, &cfg)
            .into_iter()
            .filter(|t| t.member_id == v.members[1].id)
            .count()
    };
    assert_eq!(baby(&|_| {}), 3);
    assert_eq!(baby(&|m| m.death_date = Some(d("2026-11-23"))), 0);
    assert_eq!(baby(&|m| m.death_date = Some(d("2026-11-24"))), 0);
    // Died after `on`: alive on that day.
    assert_eq!(baby(&|m| m.death_date = Some(d("2026-11-25"))), 3);
    assert_eq!(baby(&|m| m.moved_out_date = Some(d("2026-11-22"))), 0);
    assert_eq!(baby(&|m| m.voided = true), 0);
    let mut moved = base.clone();
    moved.household.status = HouseholdStatus::Merged;
    assert!(tasks_for_household(&moved, on, &cfg).is_empty());
    // Voided visits do not count: KN1 and HB0 are no longer done.
    let mut vv = base.clone();
    vv.visits[0].voided = true;
    let t = tasks_for_household(&vv, on, &cfg);
    assert_eq!(status(&t, "kn1"), Some(TaskStatus::Overdue));
    assert_eq!(status(&t, "imm_hb0"), Some(TaskStatus::Overdue));
}

#[test]
fn task_json_shape() {
    let t = tasks_for_household(&family(), d("2026-11-24"), &ScheduleConfig::default());
    let kn1 = t.iter().find(|t| t.service == "kn1").unwrap();
    let j = serde_json::to_value(kn1).unwrap();
    assert_eq!(j["status"], "done");
    assert_eq!(j["due_from"], "2026-11-20");
    assert_eq!(j["due_until"], "2026-11-22");
    assert_eq!(j["done_on"], "2026-11-21");
    assert_eq!(j["service"], "kn1");
    let back: Task = serde_json::from_value(j).unwrap();
    assert_eq!(&back, kn1);
    let kn2 = serde_json::to_value(t.iter().find(|t| t.service == "kn2").unwrap()).unwrap();
    assert_eq!(kn2["status"], "due");
    assert!(kn2.get("done_on").is_none());
    assert_eq!(
        serde_json::to_value(TaskStatus::Overdue).unwrap(),
        "overdue"
    );
    // Config: defaults, and the split by its published name.
    let cfg: ScheduleConfig = serde_json::from_str(r#"{"anc_split": "2-1-3"}"#).unwrap();
    assert_eq!(cfg.anc_split, AncSplit::TwoOneThree);
    assert_eq!(cfg.keep_done_days, 30);
    assert!(!cfg.je_endemic);
}

#[test]
fn listing_rule_transitions() {
    let cfg = ScheduleConfig::default();
    let s =
        Slot::new("x", "x", "x", d("2026-03-01"), d("2026-03-31")).overdue_until(d("2026-04-14"));
    assert_eq!(s.status(d("2026-02-28"), &cfg), None);
    assert_eq!(s.status(d("2026-03-01"), &cfg), Some(TaskStatus::Due));
    assert_eq!(s.status(d("2026-03-31"), &cfg), Some(TaskStatus::Due));
    assert_eq!(s.status(d("2026-04-01"), &cfg), Some(TaskStatus::Overdue));
    assert_eq!(s.status(d("2026-04-14"), &cfg), Some(TaskStatus::Overdue));
    assert_eq!(s.status(d("2026-04-15"), &cfg), None);
    // Done: listed from the earlier of window start and done date to 30 days after the
    // later of window end and done date.
    let done = s.clone().done(Some(d("2026-02-20")));
    assert_eq!(done.status(d("2026-02-20"), &cfg), Some(TaskStatus::Done));
    assert_eq!(done.status(d("2026-04-30"), &cfg), Some(TaskStatus::Done));
    assert_eq!(done.status(d("2026-05-01"), &cfg), None);
    let late = s.done(Some(d("2026-04-10")));
    assert_eq!(late.status(d("2026-05-10"), &cfg), Some(TaskStatus::Done));
    assert_eq!(late.status(d("2026-05-11"), &cfg), None);
}

#[test]
fn same_code_keeps_the_later_pregnancy() {
    // A loss at 8 weeks, then a new pregnancy: both have a K1 window; the new one is kept.
    let mut m = woman();
    m.pregnancies.push(Pregnancy {
        hpht: Some(d("2026-06-01")),
        ended: Some(d("2026-07-27")),
        ..Default::default()
    });
    m.pregnancies.push(Pregnancy {
        hpht: Some(d("2026-09-01")),
        ..Default::default()
    });
    let mut v = visit(m.id, "2026-07-01");
    v.answers.pregnancy.anc_k1 = Some(d("2026-07-01"));
    let cfg = ScheduleConfig {
        keep_done_days: 60,
        ..Default::default()
    };
    let t = member_tasks(&m, &[v], "2026-09-10", &cfg);
    let k1: Vec<&Task> = t.iter().filter(|t| t.service == "anc_k1").collect();
    assert_eq!(k1.len(), 1);
    assert_eq!(
        (k1[0].due_from, k1[0].status),
        (d("2026-09-01"), TaskStatus::Due)
    );
}
