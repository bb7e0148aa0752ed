//! The bidan's side: referrals, the review queue, conflicts; and the growth chart. One
//! store call per command.

use kunjung_core::{AnswerValue, FieldEdit};
use kunjung_store::app_support::{GrowthChart, HouseholdConflicts, ReferralUpdate};
use kunjung_store::{ReferralRow, VisitRow};
use tauri::State;
use uuid::Uuid;

use crate::{App, Result};

#[tauri::command(async)]
pub fn list_referrals(app: State<'_, App>, status: Option<String>) -> Result<Vec<ReferralRow>> {
    app.with(|s| s.list_referrals(status.as_deref(), None))
}

#[tauri::command(async)]
pub fn update_referral(app: State<'_, App>, id: Uuid, update: ReferralUpdate) -> Result<Uuid> {
    let hid = app.with(|s| s.update_referral(id, &update))?;
    app.sync.kick();
    Ok(hid)
}

/// Visits not yet acknowledged by the bidan (`all` = every visit, newest first).
#[tauri::command(async)]
pub fn review_queue(app: State<'_, App>, all: Option<bool>) -> Result<Vec<VisitRow>> {
    app.with(|s| s.list_visits(None, !all.unwrap_or(false), 200))
}

#[tauri::command(async)]
pub fn acknowledge_visit(
    app: State<'_, App>,
    visit_id: Uuid,
    comment: Option<String>,
) -> Result<Uuid> {
    let id = app.with(|s| s.add_review(visit_id, comment.as_deref()))?;
    app.sync.kick();
    Ok(id)
}

#[tauri::command(async)]
pub fn conflicts(app: State<'_, App>) -> Result<Vec<HouseholdConflicts>> {
    app.with(|s| s.all_conflicts())
}

/// Keeps `value` for a conflicting field (it supersedes every concurrent value).
#[tauri::command(async)]
pub fn resolve_conflict(
    app: State<'_, App>,
    household_id: Uuid,
    path: String,
    value: AnswerValue,
) -> Result<()> {
    let edit = FieldEdit {
        path: path.clone(),
        value: Some(value),
    };
    app.with(|s| s.edit(household_id, &[edit], &format!("conflict.resolve {path}")))?;
    app.sync.kick();
    Ok(())
}

#[tauri::command(async)]
pub fn growth_chart(app: State<'_, App>, member_id: Uuid) -> Result<GrowthChart> {
    app.with(|s| s.growth_chart(member_id, chrono::Local::now().date_naive()))
}
