//! The task engine: which services each household member is due, overdue or done for on a
//! date; the monthly weighing status N/T/O/B with the referral rule; growth chart data.
//!
//! Everything is a pure function of a [`HouseholdView`] (or a member and its visits) and a
//! date `on`; nothing reads the clock. Facts and their sources are in `DOMAIN.md`; each rule
//! cites its regulation where it is encoded.
//!
//! # Services
//!
//! | service code | who | window (`due_from ..= due_until`) | listed as overdue until | source |
//! |---|---|---|---|---|
//! | `anc_k1`…`anc_k6` | pregnancy | the trimester of the visit (split 1-2-3 or 2-1-3, [`AncSplit`]) | 14 days after the window, never after the pregnancy ends | Permenkes 21/2021; Buku KIA 2020 |
//! | `ttd_YYYY_MM` | pregnancy | the month of `on` | — | Permenkes 21/2021; KMK 1092/2024 (MMS) |
//! | `kf1`…`kf4`, `vit_a_nifas` | mother after delivery | day 0..=2, 3..=7, 8..=28, 29..=42; capsules day 0..=1 | 14 days after; capsules to day 42 | Permenkes 21/2021; Buku KIA |
//! | `kn1`…`kn3` | newborn | day 0..=2, 3..=7, 8..=28 | 14 days after | Permenkes 21/2021 |
//! | `imm_*` | child | the month of age of the dose | the catch-up limit | Buku KIA 2024; Permenkes 12/2017 |
//! | `vit_a_YYYY_MM` | child 6–59 months | February or August | end of March / September | Panduan Suplementasi Vitamin A, Kemenkes |
//! | `weighing_YYYY_MM` | child 0–59 months | the month of `on` | — | Permenkes 2/2020; Buku KIA |
//! | `ttd_remaja_YYYY_MM` | girls 12–18 years | the month of `on` | — | Permenkes 88/2014; SE Dirjen Kesmas 2016 |
//! | `skilas_YYYY` | 60 years and over | the calendar year | — | Permenkes 67/2015; ILP (KMK 2015/2023) |
//! | `bp_YYYY_MM` | 60+ on hypertension treatment | the month of `on` | — | Permenkes 4/2019 (SPM) |
//!
//! # When a service is done
//!
//! Only visits of the member that are not voided and are dated on or before `on` count, and
//! only recorded dates on or before `on` (so a past `on` gives the picture of that day).
//!
//! * **Contacts by a health worker (ANC, KF, KN)**: the checklist records the date of each
//!   contact (`anc_k1`…, `kf1`…, `kn1`…). All recorded dates of one family are pooled and
//!   a contact counts for the service **whose window contains its date**, whatever label it
//!   was recorded under (a "KN1" recorded on day 4 is a KN2 contact; the PWS KIA counts KN1
//!   only within 6–48 h). A cadre's own home visit is not a contact: KN/KF/ANC are given by
//!   a nakes. Windows in hours use the rule of [`dates`] (KN1 6–48 h = day 0..=2).
//!   For ANC, contacts are counted per trimester: the first contact in trimester 2 is K2
//!   under 1-2-3 but K3 under 2-1-3. The doctor for K1 and K5 (Permenkes 21/2021) is shown
//!   in the label but not checked: the checklist only records who did the *last* ANC.
//! * **Immunisation**: the dose's date answer (`imm_bcg` …), at any age (early or late
//!   doses count). If several visits record a dose, the earliest date wins.
//! * **Vitamin A (child)**: a `vit_a` date inside the round month or its sweeping month.
//!   **Vitamin A (mother)**: `vit_a_postpartum = true` at a visit within 42 days of delivery.
//! * **Monthly services**: weighing — a visit in the month with a weight, or
//!   `weighed_this_month = true`; TTD/MMS — `ttd_received = true` in the month; TTD remaja —
//!   `ttd_weekly = true` in the month (the cadre confirms the weekly tablet once a month);
//!   blood pressure — a visit in the month with a systolic reading.
//! * **SKILAS**: an `skilas` date in the calendar year.
//!
//! # Which tasks are listed
//!
//! A task whose window has not started is not listed (no look-ahead). A task that is not done
//! is `due` inside its window and `overdue` after it, until it can no longer be caught up
//! (the "listed as overdue until" column; contacts that can no longer happen stay visible for
//! [`ScheduleConfig::missed_keep_days`] so the cadre can report them); then it is dropped.
//! A done task is listed until [`ScheduleConfig::keep_done_days`] after the later of its
//! window end and its done date, so a cadre sees what was just completed but not every dose
//! forever. Monthly and yearly services are never overdue: a missed month shows up as the
//! next month's weighing status `O`.
//!
//! Dead members (death date on or before `on`), members moved out on or before `on`, voided
//! members, members born after `on`, and households that are not `active` get no tasks.
//! If two tasks of one member share a service code (two pregnancies close together), the
//! one whose window starts later is kept.

mod adolescent;
mod chart;
mod child;
pub mod dates;
mod elderly;
mod maternal;
mod weighing;

#[cfg(test)]
mod testutil;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{HouseholdStatus, HouseholdView, Member, Visit};

pub use chart::{growth_chart, ChartData, ChartPoint};
pub use dates::YearMonth;
pub use weighing::{
    min_weight_gain_g, referral_suggestion, weighing_status, WeighingStatus, MIN_WEIGHT_GAIN_G,
};

/// The status of a task on a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Inside its window, not yet done.
    Due,
    /// Past its window, not done, still worth doing or reporting.
    Overdue,
    /// Done (see the module docs for what counts).
    Done,
}

impl TaskStatus {
    pub fn code(self) -> &'static str {
        match self {
            TaskStatus::Due => "due",
            TaskStatus::Overdue => "overdue",
            TaskStatus::Done => "done",
        }
    }
}

/// One service of one member, with its window and status on the date asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub member_id: Uuid,
    pub household_id: Uuid,
    /// Stable code: `anc_k1`, `kn1`, `imm_bcg`, `vit_a_2026_08`, `weighing_2026_11`,
    /// `skilas_2026` … (see the module docs).
    pub service: String,
    pub label_id: String,
    pub label_en: String,
    pub due_from: NaiveDate,
    pub due_until: NaiveDate,
    pub status: TaskStatus,
    /// The date the service was recorded as done (only for `done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_on: Option<NaiveDate>,
}

/// ANC distribution of the six contacts over the trimesters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum AncSplit {
    /// 1 in trimester 1, 2 in trimester 2, 3 in trimester 3 (Permenkes 21/2021, ILP card).
    #[default]
    #[serde(rename = "1-2-3")]
    OneTwoThree,
    /// 2 in trimester 1, 1 in trimester 2, 3 in trimester 3 (Buku KIA 2020).
    #[serde(rename = "2-1-3")]
    TwoOneThree,
}

impl AncSplit {
    /// Contacts required in trimesters 1, 2 and 3.
    pub fn per_trimester(self) -> [usize; 3] {
        match self {
            AncSplit::OneTwoThree => [1, 2, 3],
            AncSplit::TwoOneThree => [2, 1, 3],
        }
    }
}

/// Settings of the task engine (per deployment; the defaults follow DOMAIN.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduleConfig {
    /// ANC trimester split; default 1-2-3 (Permenkes 21/2021).
    pub anc_split: AncSplit,
    /// Japanese encephalitis area: schedule JE at 10 months (Buku KIA 2024).
    pub je_endemic: bool,
    /// Done tasks stay listed this many days after their window (or done date).
    pub keep_done_days: i64,
    /// Missed contacts (ANC/KF/KN) stay listed as overdue this many days after the window.
    pub missed_keep_days: i64,
    /// Routine immunisation doses are caught up (listed as overdue) until the child is this
    /// many months old (imunisasi kejar up to 59 months: Kemenkes, Juknis BIAN 2022).
    /// Tighter limits of single vaccines (HB0, BCG, rotavirus) apply regardless.
    pub catch_up_months: u32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            anc_split: AncSplit::OneTwoThree,
            je_endemic: false,
            keep_done_days: 30,
            missed_keep_days: 14,
            catch_up_months: 60,
        }
    }
}

/// A service before its status on `on` is decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Slot {
    pub service: String,
    pub label_id: String,
    pub label_en: String,
    pub due_from: NaiveDate,
    pub due_until: NaiveDate,
    /// The last date a not-done slot is listed (as overdue after `due_until`).
    pub list_until: NaiveDate,
    pub done_on: Option<NaiveDate>,
}

impl Slot {
    pub fn new(
        service: impl Into<String>,
        label_id: impl Into<String>,
        label_en: impl Into<String>,
        due_from: NaiveDate,
        due_until: NaiveDate,
    ) -> Slot {
        Slot {
            service: service.into(),
            label_id: label_id.into(),
            label_en: label_en.into(),
            due_from,
            due_until,
            list_until: due_until,
            done_on: None,
        }
    }

    /// Listed as overdue until this date (never before the window ends).
    pub fn overdue_until(mut self, until: NaiveDate) -> Slot {
        self.list_until = until.max(self.due_until);
        self
    }

    pub fn done(mut self, on: Option<NaiveDate>) -> Slot {
        self.done_on = on;
        self
    }

    /// The status on `on`, or `None` when the slot is not listed (see the module docs).
    pub fn status(&self, on: NaiveDate, cfg: &ScheduleConfig) -> Option<TaskStatus> {
        match self.done_on {
            Some(done) => {
                let start = self.due_from.min(done);
                let end = dates::plus_days(self.due_until.max(done), cfg.keep_done_days);
                (start <= on && on <= end).then_some(TaskStatus::Done)
            }
            None if on < self.due_from || on > self.list_until => None,
            None if on <= self.due_until => Some(TaskStatus::Due),
            None => Some(TaskStatus::Overdue),
        }
    }
}

/// What the rules of one member see: the member, its usable visits, the date and settings.
pub(crate) struct Ctx<'a> {
    pub member: &'a Member,
    /// This member's visits that are not voided and dated on or before `on`, by date.
    pub visits: Vec<&'a Visit>,
    pub on: NaiveDate,
    pub cfg: &'a ScheduleConfig,
}

impl<'a> Ctx<'a> {
    pub fn new(
        member: &'a Member,
        visits: &'a [Visit],
        on: NaiveDate,
        cfg: &'a ScheduleConfig,
    ) -> Ctx<'a> {
        let mut v: Vec<&Visit> = visits
            .iter()
            .filter(|v| v.member_id == member.id && !v.voided && v.date <= on)
            .collect();
        v.sort_by_key(|v| (v.date, v.created_at));
        Ctx {
            member,
            visits: v,
            on,
            cfg,
        }
    }

    /// The earliest date, on or before `on`, that `get` finds in any visit.
    pub fn earliest_date(&self, get: impl Fn(&Visit) -> Option<NaiveDate>) -> Option<NaiveDate> {
        self.visits
            .iter()
            .filter_map(|v| get(v))
            .filter(|d| *d <= self.on)
            .min()
    }

    /// Every date, on or before `on`, that `get` finds in any visit (sorted, deduplicated).
    pub fn all_dates(&self, get: impl Fn(&Visit) -> Vec<Option<NaiveDate>>) -> Vec<NaiveDate> {
        let mut out: Vec<NaiveDate> = self
            .visits
            .iter()
            .flat_map(|v| get(v))
            .flatten()
            .filter(|d| *d <= self.on)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The date of the first visit inside `from ..= until` for which `pred` holds.
    pub fn first_visit_where(
        &self,
        from: NaiveDate,
        until: NaiveDate,
        pred: impl Fn(&Visit) -> bool,
    ) -> Option<NaiveDate> {
        self.visits
            .iter()
            .find(|v| from <= v.date && v.date <= until && pred(v))
            .map(|v| v.date)
    }
}

/// Whether a member gets tasks on `on` (alive, not moved out, not voided, born).
pub fn member_is_active(member: &Member, on: NaiveDate) -> bool {
    !member.voided
        && member.death_date.is_none_or(|d| d > on)
        && member.moved_out_date.is_none_or(|d| d > on)
        && member.birth_date.is_none_or(|b| b <= on)
}

/// The tasks of one member on `on` (see the module docs), sorted by window then code.
pub fn tasks_for_member(
    member: &Member,
    household_id: Uuid,
    visits: &[Visit],
    on: NaiveDate,
    cfg: &ScheduleConfig,
) -> Vec<Task> {
    if !member_is_active(member, on) {
        return Vec::new();
    }
    let ctx = Ctx::new(member, visits, on, cfg);
    let mut slots = Vec::new();
    maternal::slots(&ctx, &mut slots);
    child::slots(&ctx, &mut slots);
    adolescent::slots(&ctx, &mut slots);
    elderly::slots(&ctx, &mut slots);

    let mut tasks: Vec<Task> = Vec::new();
    for s in slots {
        let Some(status) = s.status(on, cfg) else {
            continue;
        };
        let task = Task {
            member_id: member.id,
            household_id,
            service: s.service,
            label_id: s.label_id,
            label_en: s.label_en,
            due_from: s.due_from,
            due_until: s.due_until,
            status,
            done_on: s.done_on.filter(|_| status == TaskStatus::Done),
        };
        match tasks.iter_mut().find(|t| t.service == task.service) {
            Some(t) if t.due_from < task.due_from => *t = task,
            Some(_) => {}
            None => tasks.push(task),
        }
    }
    tasks.sort_by(|a, b| {
        (a.due_from, a.due_until, &a.service).cmp(&(b.due_from, b.due_until, &b.service))
    });
    tasks
}

/// The tasks of every member of a household on `on`, in member order (see the module
/// docs for the rules). A household that is not `active` has none.
pub fn tasks_for_household(view: &HouseholdView, on: NaiveDate, cfg: &ScheduleConfig) -> Vec<Task> {
    if view.household.status != HouseholdStatus::Active {
        return Vec::new();
    }
    view.members
        .iter()
        .flat_map(|m| tasks_for_member(m, view.household.id, &view.visits, on, cfg))
        .collect()
}

#[cfg(test)]
mod tests;
