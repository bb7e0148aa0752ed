//! Households, members, visits, the visit form and drafts: one store call per command.

use chrono::NaiveDate;
use kunjung_core::ids::NikWarning;
use kunjung_core::lifestage::LifeStage;
use kunjung_core::{FieldEdit, NewHousehold, NewMember, NewVisit, Pregnancy, Sex};
use kunjung_store::app_support::{self, HouseholdPage, VisitForm};
use kunjung_store::{HouseholdRow, ListFilter, MemberAdded, SearchHit, TaskRow, VisitAdded};
use tauri::State;
use uuid::Uuid;

use crate::{App, Result};

fn today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

#[tauri::command(async)]
pub fn list_households(app: State<'_, App>, filter: ListFilter) -> Result<Vec<HouseholdRow>> {
    app.with(|s| {
        // Due tasks are counted for today (stale ones are recomputed first).
        if filter.has_due_tasks {
            s.refresh_tasks()?;
        }
        s.list_households(&filter)
    })
}

#[tauri::command(async)]
pub fn search(app: State<'_, App>, text: String, limit: Option<usize>) -> Result<Vec<SearchHit>> {
    app.with(|s| s.search(&text, limit.unwrap_or(50)))
}

#[tauri::command(async)]
pub fn household(app: State<'_, App>, id: Uuid) -> Result<HouseholdPage> {
    app.with(|s| s.household_page(id, today()))
}

#[tauri::command(async)]
pub fn create_household(app: State<'_, App>, household: NewHousehold) -> Result<Uuid> {
    let id = app.with(|s| s.create_household(&household))?;
    app.sync.kick();
    Ok(id)
}

/// Field edits of a household, its members, visits or referrals (paths as in
/// `FieldEdit`); writing a conflicting field resolves the conflict.
#[tauri::command(async)]
pub fn edit_household(
    app: State<'_, App>,
    id: Uuid,
    edits: Vec<FieldEdit>,
    what: String,
) -> Result<()> {
    app.with(|s| s.edit(id, &edits, &what))?;
    app.sync.kick();
    Ok(())
}

#[tauri::command(async)]
pub fn add_member(
    app: State<'_, App>,
    household_id: Uuid,
    member: NewMember,
) -> Result<MemberAdded> {
    let added = app.with(|s| s.add_member(household_id, &member))?;
    app.sync.kick();
    Ok(added)
}

/// Soft NIK check while typing (warnings only; the NIK is always accepted).
#[tauri::command]
pub fn check_nik(nik: String, sex: Option<Sex>, birth_date: Option<NaiveDate>) -> Vec<NikWarning> {
    kunjung_core::ids::check_nik(nik.trim(), sex, birth_date)
}

#[tauri::command(async)]
pub fn add_pregnancy(app: State<'_, App>, member_id: Uuid, pregnancy: Pregnancy) -> Result<Uuid> {
    let id = app.with(|s| s.add_pregnancy(member_id, &pregnancy))?;
    app.sync.kick();
    Ok(id)
}

#[tauri::command]
pub fn visit_form(stage: Option<LifeStage>) -> VisitForm {
    app_support::visit_form(stage)
}

#[tauri::command(async)]
pub fn add_visit(app: State<'_, App>, visit: NewVisit) -> Result<VisitAdded> {
    let added = app.with(|s| s.add_visit(&visit))?;
    app.sync.kick();
    Ok(added)
}

/// Due, overdue and done services as of today (the schedule engine's tasks).
#[tauri::command(async)]
pub fn tasks(app: State<'_, App>) -> Result<Vec<TaskRow>> {
    app.with(|s| s.tasks(None, None))
}

#[tauri::command(async)]
pub fn get_draft(app: State<'_, App>, key: String) -> Result<Option<String>> {
    app.with(|s| s.draft(&key))
}

#[tauri::command(async)]
pub fn save_draft(app: State<'_, App>, key: String, json: String) -> Result<()> {
    app.with(|s| s.save_draft(&key, &json))
}

#[tauri::command(async)]
pub fn clear_draft(app: State<'_, App>, key: String) -> Result<()> {
    app.with(|s| s.clear_draft(&key))
}

#[tauri::command(async)]
pub fn draft_keys(app: State<'_, App>) -> Result<Vec<String>> {
    app.with(|s| s.draft_keys())
}
