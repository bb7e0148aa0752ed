//! Builders shared by the schedule tests.

use chrono::NaiveDate;
use uuid::Uuid;

use super::{tasks_for_member, ScheduleConfig, Task, TaskStatus};
use crate::checklist::VisitAnswers;
use crate::model::{Member, Sex, Visit};

pub fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn member(name: &str, sex: Sex, birth: &str, n: u128) -> Member {
    Member {
        id: Uuid::from_u128(n),
        name: name.into(),
        nik: None,
        kk: None,
        sex: Some(sex),
        birth_date: Some(d(birth)),
        birth_date_estimated: false,
        relation: None,
        mother_id: None,
        jkn: None,
        death_date: None,
        moved_out_date: None,
        moved_out_note: None,
        voided: false,
        void_reason: None,
        pregnancies: Vec::new(),
    }
}

/// A boy born on `birth`; the id depends on the birth date.
pub fn child(birth: &str) -> Member {
    let n = d(birth)
        .to_string()
        .replace('-', "")
        .parse::<u128>()
        .unwrap();
    member("Budi", Sex::M, birth, n)
}

/// A woman born 1995-01-01.
pub fn woman() -> Member {
    member("Siti", Sex::F, "1995-01-01", 1)
}

/// An empty visit of `member_id` on `date`.
pub fn visit(member_id: Uuid, date: &str) -> Visit {
    Visit {
        id: Uuid::new_v4(),
        member_id,
        date: d(date),
        stage: None,
        cadre: None,
        weight_kg: None,
        height_cm: None,
        measured: None,
        muac_cm: None,
        head_cm: None,
        bp_systolic: None,
        bp_diastolic: None,
        answers: VisitAnswers::default(),
        danger_signs: Vec::new(),
        education: Default::default(),
        reported_to_nakes: None,
        referred: false,
        notes: None,
        voided: false,
        void_reason: None,
        created_at: 0,
    }
}

pub fn member_tasks(m: &Member, visits: &[Visit], on: &str, cfg: &ScheduleConfig) -> Vec<Task> {
    tasks_for_member(m, Uuid::from_u128(9), visits, d(on), cfg)
}

pub fn find(tasks: &[Task], service: &str) -> Option<Task> {
    tasks.iter().find(|t| t.service == service).cloned()
}

pub fn status(tasks: &[Task], service: &str) -> Option<TaskStatus> {
    tasks
        .iter()
        .find(|t| t.service == service)
        .map(|t| t.status)
}
