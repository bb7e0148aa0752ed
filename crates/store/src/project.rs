//! SQL projections of household documents: what lists, search and reports read.
//!
//! `rows` turns a document into the rows it should have; `apply` replaces a household's rows
//! inside the caller's transaction. `current_rows` reads them back, so the crash tests can
//! check that projections and documents never drift apart.
//!
//! How rows are stored (schema 3, see `schema.rs`): member and visit ids as 16-byte blobs,
//! references between projection rows by rowid (`hh`, `member`), visit and task dates as
//! days since 1970-01-01, repeated short texts once in `strings`. The `*RowData` structs
//! keep the plain values; the conversion happens only here.

use kunjung_core::schedule::ScheduleConfig;
use kunjung_core::{HouseholdDoc, HouseholdView, ReferralStatus};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Re-project everything of the household; `conflicts` rescans for conflicts (needed
    /// after merges, or when the household had conflicts that an edit may resolve).
    Full { conflicts: bool },
    /// A visit (and maybe its referral) was just added locally: insert those rows, update
    /// the household's counters and tasks; nothing else can have changed.
    VisitAdded { visit: Uuid, referral: Option<Uuid> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdRowData {
    pub area_code: String,
    pub dusun: Option<String>,
    pub rt: String,
    pub rw: String,
    pub posyandu_id: Option<String>,
    pub address: Option<String>,
    pub status: String,
    pub head_name: Option<String>,
    pub member_count: i64,
    pub visit_count: i64,
    pub last_visit: Option<String>,
    pub open_referrals: i64,
    pub conflict_count: i64,
    pub tasks_on: String,
    pub due_tasks: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRowData {
    pub id: String,
    pub name: String,
    pub nik: Option<String>,
    pub sex: Option<String>,
    pub birth_date: Option<String>,
    pub relation: Option<String>,
    pub mother_id: Option<String>,
    pub death_date: Option<String>,
    pub moved_out_date: Option<String>,
    pub voided: bool,
    pub pregnant_from: Option<String>,
    pub pregnant_until: Option<String>,
    pub last_delivery: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisitRowData {
    pub id: String,
    pub member_id: String,
    pub date: String,
    pub stage: Option<String>,
    pub cadre: Option<String>,
    pub danger_signs: Option<String>,
    pub referred: bool,
    pub reviewed: bool,
    pub voided: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRowData {
    pub id: String,
    pub visit_id: Option<String>,
    pub member_id: String,
    pub reason: String,
    pub status: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub updated_at: Option<i64>,
    pub outcome: Option<String>,
    pub feedback: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRowData {
    pub member_id: String,
    pub service: String,
    pub label_id: String,
    pub label_en: String,
    pub due_from: String,
    pub due_until: String,
    pub status: String,
    pub done_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub household: HouseholdRowData,
    pub tasks: Vec<TaskRowData>,
    pub members: Vec<MemberRowData>,
    pub visits: Vec<VisitRowData>,
    pub referrals: Vec<ReferralRowData>,
    pub conflicts: Vec<(String, String)>,
}

fn d(x: Option<chrono::NaiveDate>) -> Option<String> {
    x.map(|d| d.format("%Y-%m-%d").to_string())
}

/// The date tasks are computed for: today on this device.
pub fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

fn rows_from(
    view: &HouseholdView,
    conflicts: Option<Vec<(String, String)>>,
    cfg: &ScheduleConfig,
    on: chrono::NaiveDate,
) -> Rows {
    let h = &view.household;
    let tasks: Vec<TaskRowData> = kunjung_core::schedule::tasks_for_household(view, on, cfg)
        .into_iter()
        .map(|t| TaskRowData {
            member_id: t.member_id.to_string(),
            service: t.service,
            label_id: t.label_id,
            label_en: t.label_en,
            due_from: t.due_from.format("%Y-%m-%d").to_string(),
            due_until: t.due_until.format("%Y-%m-%d").to_string(),
            status: t.status.code().to_string(),
            done_on: d(t.done_on),
        })
        .collect();
    let due_tasks = tasks.iter().filter(|t| t.status != "done").count() as i64;
    let members: Vec<MemberRowData> = view
        .members
        .iter()
        .map(|m| {
            // The current (or latest) pregnancy window, for life-stage filters.
            let latest = m.pregnancies.iter().max_by_key(|p| p.hpht.or(p.hpl));
            let (from, until) = latest
                .and_then(|p| {
                    let start = p
                        .hpht
                        .or_else(|| p.hpl.map(|h| h - chrono::Duration::days(280)))?;
                    let end = p.delivery_date.or(p.ended).unwrap_or(
                        start + chrono::Duration::days(kunjung_core::lifestage::MAX_PREGNANCY_DAYS),
                    );
                    Some((Some(start), Some(end)))
                })
                .unwrap_or((None, None));
            MemberRowData {
                id: m.id.to_string(),
                name: m.name.clone(),
                nik: m.nik.clone(),
                sex: m.sex.map(|s| s.code().to_string()),
                birth_date: d(m.birth_date),
                relation: m.relation.map(|r| r.code().to_string()),
                mother_id: m.mother_id.map(|u| u.to_string()),
                death_date: d(m.death_date),
                moved_out_date: d(m.moved_out_date),
                voided: m.voided,
                pregnant_from: d(from),
                pregnant_until: d(until),
                last_delivery: d(m.pregnancies.iter().filter_map(|p| p.delivery_date).max()),
            }
        })
        .collect();
    let reviewed: std::collections::HashSet<Uuid> =
        view.reviews.iter().map(|r| r.visit_id).collect();
    let visits: Vec<VisitRowData> = view
        .visits
        .iter()
        .map(|v| visit_row(v, reviewed.contains(&v.id)))
        .collect();
    let referrals: Vec<ReferralRowData> = view.referrals.iter().map(referral_row).collect();
    let conflicts = conflicts.unwrap_or_default();
    Rows {
        household: HouseholdRowData {
            area_code: h.area_code.clone(),
            dusun: h.dusun.clone(),
            rt: h.rt.clone(),
            rw: h.rw.clone(),
            posyandu_id: h.posyandu_id.clone(),
            address: h.address.clone(),
            status: h.status.code().to_string(),
            head_name: view.head_name().map(String::from),
            member_count: view.members.iter().filter(|m| !m.voided).count() as i64,
            visit_count: view.visits.iter().filter(|v| !v.voided).count() as i64,
            last_visit: view
                .visits
                .iter()
                .filter(|v| !v.voided)
                .map(|v| v.date)
                .max()
                .map(|d| d.format("%Y-%m-%d").to_string()),
            open_referrals: view
                .referrals
                .iter()
                .filter(|r| r.status != ReferralStatus::Closed)
                .count() as i64,
            conflict_count: conflicts.len() as i64,
            tasks_on: on.format("%Y-%m-%d").to_string(),
            due_tasks,
        },
        tasks,
        members,
        visits,
        referrals,
        conflicts,
    }
}

/// The row of one visit (`reviewed`: a review names it).
pub(crate) fn visit_row(v: &kunjung_core::Visit, reviewed: bool) -> VisitRowData {
    VisitRowData {
        id: v.id.to_string(),
        member_id: v.member_id.to_string(),
        date: v.date.format("%Y-%m-%d").to_string(),
        stage: v.stage.map(|s| s.code().to_string()),
        cadre: v.cadre.clone(),
        danger_signs: (!v.danger_signs.is_empty()).then(|| v.danger_signs.join(",")),
        referred: v.referred,
        reviewed,
        voided: v.voided,
        created_at: v.created_at,
    }
}

/// The row of one referral.
pub(crate) fn referral_row(r: &kunjung_core::Referral) -> ReferralRowData {
    ReferralRowData {
        id: r.id.to_string(),
        visit_id: r.visit_id.map(|u| u.to_string()),
        member_id: r.member_id.to_string(),
        reason: r.reason.clone(),
        status: r.status.code().to_string(),
        created_at: r.created_at,
        created_by: r.created_by.clone(),
        updated_at: r.updated_at,
        outcome: r.outcome.clone(),
        feedback: r.feedback.clone(),
    }
}

fn conflict_rows(conflicts: Vec<kunjung_core::Conflict>) -> Vec<(String, String)> {
    conflicts
        .into_iter()
        .map(|c| {
            (
                c.path.clone(),
                serde_json::to_string(&c.values).unwrap_or_default(),
            )
        })
        .collect()
}

/// The rows a document should have (conflicts included).
pub fn expected_rows(
    doc: &HouseholdDoc,
    cfg: &ScheduleConfig,
    on: chrono::NaiveDate,
) -> Result<Rows> {
    let (view, conflicts) = doc.read_with_conflicts()?;
    let mut rows = rows_from(&view, Some(conflict_rows(conflicts)), cfg, on);
    normalize(&mut rows);
    Ok(rows)
}

fn search_address(h: &HouseholdRowData) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &h.address {
        parts.push(a.clone());
    }
    if let Some(d) = &h.dusun {
        parts.push(d.clone());
    }
    parts.push(format!("RT {} RW {}", h.rt, h.rw));
    parts.join(" ")
}

/// Deletes a household's projection rows.
pub fn delete(tx: &Transaction<'_>, id: Uuid) -> Result<()> {
    let ids = id.to_string();
    if let Some(h) = household_rid(tx, &ids)? {
        let mut rids = tx.prepare_cached("SELECT rid FROM members WHERE hh = ?1")?;
        let list: Vec<i64> = rids
            .query_map([h], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut del = tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?;
        for rid in list {
            del.execute([rid])?;
        }
        del.execute([-h])?;
        for sql in [
            "DELETE FROM tasks WHERE member IN (SELECT rid FROM members WHERE hh = ?1)",
            "DELETE FROM visits WHERE hh = ?1",
            "DELETE FROM members WHERE hh = ?1",
        ] {
            tx.prepare_cached(sql)?.execute([h])?;
        }
    }
    for sql in [
        "DELETE FROM referrals WHERE household_id = ?1",
        "DELETE FROM conflicts WHERE household_id = ?1",
        "DELETE FROM households WHERE id = ?1",
    ] {
        tx.prepare_cached(sql)?.execute([&ids])?;
    }
    Ok(())
}

/// The rowid of a household's projection row.
fn household_rid(conn: &Connection, ids: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT rid FROM households WHERE id = ?1")?
        .query_row([ids], |r| r.get(0))
        .optional()?)
}

/// A UUID in its stored form (16 bytes).
pub(crate) fn uuid_blob(s: &str) -> Result<[u8; 16]> {
    Uuid::parse_str(s)
        .map(|u| *u.as_bytes())
        .map_err(|e| crate::StoreError::Invalid(format!("id tidak sah: {e} (invalid id)")))
}

/// A stored UUID (16 bytes) as text.
pub(crate) fn uuid_text(b: &[u8]) -> rusqlite::Result<String> {
    Uuid::from_slice(b).map(|u| u.to_string()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Reads column `i` of a row holding a stored UUID (NULL gives None).
pub(crate) fn get_uuid(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    r.get::<_, Option<Vec<u8>>>(i)?
        .map(|b| uuid_text(&b))
        .transpose()
}

/// SQL for a `YYYY-MM-DD` parameter stored as days since 1970-01-01, and back.
macro_rules! days {
    ($p:literal) => {
        concat!("CAST(julianday(", $p, ") - 2440587.5 AS INTEGER)")
    };
}
/// SQL reading a day number column back as `YYYY-MM-DD`.
macro_rules! date_of {
    ($c:literal) => {
        concat!("date(", $c, " * 86400, 'unixepoch')")
    };
}
pub(crate) use date_of;

/// Short texts stored once in `strings` (cadre, stage, task services and labels); the ids
/// seen in one write are remembered for that write only.
pub(crate) struct Interner<'a> {
    tx: &'a Transaction<'a>,
    seen: std::collections::HashMap<String, i64>,
}

impl<'a> Interner<'a> {
    pub(crate) fn new(tx: &'a Transaction<'a>) -> Self {
        Interner {
            tx,
            seen: std::collections::HashMap::new(),
        }
    }

    fn id(&mut self, s: &str) -> Result<i64> {
        if let Some(id) = self.seen.get(s) {
            return Ok(*id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM strings WHERE value = ?1")?
            .query_row([s], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO strings(value) VALUES (?1)")?
                    .execute([s])?;
                self.tx.last_insert_rowid()
            }
        };
        self.seen.insert(s.to_string(), id);
        Ok(id)
    }

    fn opt(&mut self, s: Option<&str>) -> Result<Option<i64>> {
        s.map(|s| self.id(s)).transpose()
    }
}

/// Every stored short text by id (a few hundred at most), for reading rows back.
pub(crate) fn strings(conn: &Connection) -> Result<std::collections::HashMap<i64, String>> {
    let mut stmt = conn.prepare_cached("SELECT id, value FROM strings")?;
    let m = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(m)
}

pub fn clear_all(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "INSERT INTO search(search) VALUES ('delete-all'); DELETE FROM members; DELETE FROM visits;
         DELETE FROM referrals; DELETE FROM conflicts; DELETE FROM tasks; DELETE FROM households;",
    )?;
    Ok(())
}

/// The schedule settings of this device (meta `schedule_config`, JSON; defaults when unset).
pub fn schedule_config(conn: &Connection) -> Result<ScheduleConfig> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'schedule_config'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

/// Writes a household's projections (inside the caller's transaction).
pub fn apply(tx: &Transaction<'_>, id: Uuid, doc: &HouseholdDoc, mode: Mode) -> Result<()> {
    let cfg = schedule_config(tx)?;
    match mode {
        Mode::VisitAdded { visit, referral } => {
            let rows = rows_from(&doc.read()?, None, &cfg, today());
            visit_added(tx, id, &rows, visit, referral)
        }
        Mode::Full { conflicts } => {
            let (view, conflicts) = if conflicts {
                let (view, c) = doc.read_with_conflicts()?;
                (view, Some(conflict_rows(c)))
            } else {
                (doc.read()?, None)
            };
            let keep_conflicts = conflicts.is_none();
            let rows = rows_from(&view, conflicts, &cfg, today());
            write_rows(tx, id, &rows, keep_conflicts)
        }
    }
}

/// The fast path of `apply` for a new visit: the same rows as a full projection, written
/// without rewriting the household's members, visits and search entries.
fn visit_added(
    tx: &Transaction<'_>,
    id: Uuid,
    rows: &Rows,
    visit: Uuid,
    referral: Option<Uuid>,
) -> Result<()> {
    let ids = id.to_string();
    let (vid, rid) = (visit.to_string(), referral.map(|r| r.to_string()));
    let mut strings = Interner::new(tx);
    if let Some(v) = rows.visits.iter().find(|v| v.id == vid) {
        insert_visit(tx, &mut strings, &ids, v)?;
    }
    if let Some(r) = rows.referrals.iter().find(|r| Some(&r.id) == rid.as_ref()) {
        insert_referral(tx, &ids, r)?;
    }
    let h = &rows.household;
    tx.prepare_cached(
        "UPDATE households SET visit_count = ?2, last_visit = ?3, open_referrals = ?4, tasks_on = ?5, due_tasks = ?6,
            updated_at = ?7 WHERE id = ?1",
    )?
    .execute(params![
        ids,
        h.visit_count,
        h.last_visit,
        h.open_referrals,
        h.tasks_on,
        h.due_tasks,
        chrono::Utc::now().timestamp_millis()
    ])?;
    tx.prepare_cached(
        "DELETE FROM tasks WHERE member IN
            (SELECT m.rid FROM members m JOIN households h ON h.rid = m.hh WHERE h.id = ?1)",
    )?
    .execute([&ids])?;
    insert_tasks(tx, &mut strings, &ids, &rows.tasks)
}

/// Recomputes only a household's tasks (and its `due_tasks`, `tasks_on`) for today: what
/// changes with the calendar, or after a pulled visit stored without its document.
pub fn tasks_only(tx: &Transaction<'_>, id: Uuid, doc: &HouseholdDoc) -> Result<()> {
    let cfg = schedule_config(tx)?;
    let rows = rows_from(&doc.read()?, None, &cfg, today());
    let ids = id.to_string();
    tx.prepare_cached("UPDATE households SET tasks_on = ?2, due_tasks = ?3 WHERE id = ?1")?
        .execute(params![
            ids,
            rows.household.tasks_on,
            rows.household.due_tasks
        ])?;
    tx.prepare_cached(
        "DELETE FROM tasks WHERE member IN
            (SELECT m.rid FROM members m JOIN households h ON h.rid = m.hh WHERE h.id = ?1)",
    )?
    .execute([&ids])?;
    let mut strings = Interner::new(tx);
    insert_tasks(tx, &mut strings, &ids, &rows.tasks)
}

/// Inserts a visit of the household `ids` (its members' rows already written).
pub(crate) fn insert_visit(
    tx: &Transaction<'_>,
    strings: &mut Interner<'_>,
    ids: &str,
    v: &VisitRowData,
) -> Result<()> {
    let hh = household_rid(tx, ids)?
        .ok_or_else(|| crate::StoreError::NotFound(format!("rumah tangga {ids} (household)")))?;
    let member: Option<i64> = tx
        .prepare_cached("SELECT rid FROM members WHERE id = ?1 AND hh = ?2")?
        .query_row(params![uuid_blob(&v.member_id)?, hh], |r| r.get(0))
        .optional()?;
    insert_visit_at(tx, strings, hh, member, v)
}

/// Inserts a visit of household row `hh`; `member` is the row of its member, when known.
fn insert_visit_at(
    tx: &Transaction<'_>,
    strings: &mut Interner<'_>,
    hh: i64,
    member: Option<i64>,
    v: &VisitRowData,
) -> Result<()> {
    let member_uuid = match member {
        Some(_) => None,
        None => Some(uuid_blob(&v.member_id)?),
    };
    let (stage, cadre) = (
        strings.opt(v.stage.as_deref())?,
        strings.opt(v.cadre.as_deref())?,
    );
    tx.prepare_cached(concat!(
        "INSERT INTO visits(hh, id, member, member_uuid, date, created_at, stage, cadre, danger_signs,
            referred, reviewed, voided)
         VALUES (?1, ?2, ?3, ?4, ",
        days!("?5"),
        ", ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        hh,
        uuid_blob(&v.id)?,
        member,
        member_uuid,
        v.date,
        v.created_at,
        stage,
        cadre,
        v.danger_signs,
        v.referred,
        v.reviewed,
        v.voided
    ])?;
    Ok(())
}

pub(crate) fn insert_referral(tx: &Transaction<'_>, ids: &str, r: &ReferralRowData) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO referrals(id, household_id, visit_id, member_id, reason, status, created_at, created_by,
            updated_at, outcome, feedback)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        r.id,
        ids,
        r.visit_id,
        r.member_id,
        r.reason,
        r.status,
        r.created_at,
        r.created_by,
        r.updated_at,
        r.outcome,
        r.feedback
    ])?;
    Ok(())
}

/// Inserts the tasks of the household `ids` (its members' rows already written).
fn insert_tasks(
    tx: &Transaction<'_>,
    strings: &mut Interner<'_>,
    ids: &str,
    tasks: &[TaskRowData],
) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let members: std::collections::HashMap<String, i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT m.id, m.rid FROM members m JOIN households h ON h.rid = m.hh WHERE h.id = ?1",
        )?;
        let v = stmt
            .query_map([ids], |r| {
                Ok((get_uuid(r, 0)?.unwrap_or_default(), r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        v
    };
    insert_tasks_at(tx, strings, &members, tasks)
}

/// Inserts tasks; `members` gives the row of each member id of the household.
fn insert_tasks_at(
    tx: &Transaction<'_>,
    strings: &mut Interner<'_>,
    members: &std::collections::HashMap<String, i64>,
    tasks: &[TaskRowData],
) -> Result<()> {
    for t in tasks {
        let member = *members.get(&t.member_id).ok_or_else(|| {
            crate::StoreError::Invalid(format!(
                "tugas untuk anggota yang tidak ada: {} (task of an unknown member)",
                t.member_id
            ))
        })?;
        let (service, label_id, label_en) = (
            strings.id(&t.service)?,
            strings.id(&t.label_id)?,
            strings.id(&t.label_en)?,
        );
        tx.prepare_cached(concat!(
            "INSERT OR REPLACE INTO tasks(member, service, label_id, label_en, due_from, due_until, status,
                done_on)
             VALUES (?1, ?2, ?3, ?4, ",
            days!("?5"),
            ", ",
            days!("?6"),
            ", ?7, ",
            days!("?8"),
            ")"
        ))?
        .execute(params![
            member,
            service,
            label_id,
            label_en,
            t.due_from,
            t.due_until,
            t.status,
            t.done_on
        ])?;
    }
    Ok(())
}

/// Rows of a document for a household that has none yet (conflicts included), computed
/// without a store: what `write_new` then stores.
pub fn rows_for_new(
    doc: &HouseholdDoc,
    cfg: &ScheduleConfig,
    on: chrono::NaiveDate,
) -> Result<Rows> {
    let (view, conflicts) = doc.read_with_conflicts()?;
    Ok(rows_from(&view, Some(conflict_rows(conflicts)), cfg, on))
}

/// Writes the rows of a household that has no projection rows yet (inside the caller's
/// transaction), skipping the deletes of `apply`.
pub fn write_new(tx: &Transaction<'_>, id: Uuid, rows: &Rows) -> Result<()> {
    write_rows_inner(tx, id, rows, false, false)
}

fn write_rows(tx: &Transaction<'_>, id: Uuid, rows: &Rows, keep_conflicts: bool) -> Result<()> {
    write_rows_inner(tx, id, rows, keep_conflicts, true)
}

fn write_rows_inner(
    tx: &Transaction<'_>,
    id: Uuid,
    rows: &Rows,
    keep_conflicts: bool,
    replace: bool,
) -> Result<()> {
    let ids = id.to_string();
    let kept: Vec<(String, String)> = if keep_conflicts {
        let mut stmt = tx.prepare_cached(
            "SELECT path, \"values\" FROM conflicts WHERE household_id = ?1 ORDER BY path",
        )?;
        let v = stmt
            .query_map([&ids], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        v
    } else {
        Vec::new()
    };
    if replace {
        delete(tx, id)?;
    }
    let h = &rows.household;
    let conflicts = if keep_conflicts {
        &kept
    } else {
        &rows.conflicts
    };
    tx.prepare_cached(
        "INSERT INTO households(id, area_code, dusun, rt, rw, posyandu_id, address, status, head_name,
            member_count, visit_count, last_visit, open_referrals, conflict_count, updated_at, tasks_on, due_tasks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        ids, h.area_code, h.dusun, h.rt, h.rw, h.posyandu_id, h.address, h.status, h.head_name,
        h.member_count, h.visit_count, h.last_visit, h.open_referrals, conflicts.len() as i64,
        chrono::Utc::now().timestamp_millis(), h.tasks_on, h.due_tasks
    ])?;
    let hrid = tx.last_insert_rowid();
    let address = search_address(h);
    let mut fts =
        tx.prepare_cached("INSERT INTO search(rowid, name, nik, address) VALUES (?1, ?2, ?3, ?4)")?;
    fts.execute(params![
        -hrid,
        Option::<String>::None,
        Option::<String>::None,
        address
    ])?;
    let mut member_rids = std::collections::HashMap::with_capacity(rows.members.len());
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO members(id, hh, name, nik, sex, birth_date, relation, mother_id, death_date,
                moved_out_date, voided, pregnant_from, pregnant_until, last_delivery)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for m in &rows.members {
            ins.execute(params![
                uuid_blob(&m.id)?,
                hrid,
                m.name,
                m.nik,
                m.sex,
                m.birth_date,
                m.relation,
                m.mother_id.as_deref().map(uuid_blob).transpose()?,
                m.death_date,
                m.moved_out_date,
                m.voided,
                m.pregnant_from,
                m.pregnant_until,
                m.last_delivery
            ])?;
            let rid = tx.last_insert_rowid();
            member_rids.insert(m.id.clone(), rid);
            if !m.voided {
                fts.execute(params![rid, m.name, m.nik, address])?;
            }
        }
    }
    let mut strings = Interner::new(tx);
    for v in &rows.visits {
        let member = member_rids.get(&v.member_id).copied();
        insert_visit_at(tx, &mut strings, hrid, member, v)?;
    }
    for r in &rows.referrals {
        insert_referral(tx, &ids, r)?;
    }
    insert_tasks_at(tx, &mut strings, &member_rids, &rows.tasks)?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO conflicts(household_id, path, \"values\") VALUES (?1, ?2, ?3)",
        )?;
        for (p, v) in conflicts {
            ins.execute(params![ids, p, v])?;
        }
    }
    Ok(())
}

/// Reads a household's projection rows back (for consistency checks).
pub fn current_rows(conn: &Connection, id: Uuid) -> Result<Rows> {
    let ids = id.to_string();
    let household = conn.query_row(
        "SELECT area_code, dusun, rt, rw, posyandu_id, address, status, head_name, member_count, visit_count,
                last_visit, open_referrals, conflict_count, tasks_on, due_tasks FROM households WHERE id = ?1",
        [&ids],
        |r| {
            Ok(HouseholdRowData {
                area_code: r.get(0)?,
                dusun: r.get(1)?,
                rt: r.get(2)?,
                rw: r.get(3)?,
                posyandu_id: r.get(4)?,
                address: r.get(5)?,
                status: r.get(6)?,
                head_name: r.get(7)?,
                member_count: r.get(8)?,
                visit_count: r.get(9)?,
                last_visit: r.get(10)?,
                open_referrals: r.get(11)?,
                conflict_count: r.get(12)?,
                tasks_on: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
                due_tasks: r.get(14)?,
            })
        },
    )?;
    let hh = household_rid(conn, &ids)?.unwrap_or(0);
    let text = strings(conn)?;
    let st = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<Option<String>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .map(|k| text.get(&k).cloned().unwrap_or_default()))
    };
    let mut stmt = conn.prepare(concat!(
        "SELECT m.id, t.service, t.label_id, t.label_en, ",
        date_of!("t.due_from"),
        ", ",
        date_of!("t.due_until"),
        ", t.status, ",
        date_of!("t.done_on"),
        " FROM tasks t JOIN members m ON m.rid = t.member WHERE m.hh = ?1"
    ))?;
    let tasks = stmt
        .query_map([hh], |r| {
            Ok(TaskRowData {
                member_id: get_uuid(r, 0)?.unwrap_or_default(),
                service: st(r, 1)?.unwrap_or_default(),
                label_id: st(r, 2)?.unwrap_or_default(),
                label_en: st(r, 3)?.unwrap_or_default(),
                due_from: r.get(4)?,
                due_until: r.get(5)?,
                status: r.get(6)?,
                done_on: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, name, nik, sex, birth_date, relation, mother_id, death_date, moved_out_date, voided,
                pregnant_from, pregnant_until, last_delivery FROM members WHERE hh = ?1 ORDER BY id",
    )?;
    let members = stmt
        .query_map([hh], |r| {
            Ok(MemberRowData {
                id: get_uuid(r, 0)?.unwrap_or_default(),
                name: r.get(1)?,
                nik: r.get(2)?,
                sex: r.get(3)?,
                birth_date: r.get(4)?,
                relation: r.get(5)?,
                mother_id: get_uuid(r, 6)?,
                death_date: r.get(7)?,
                moved_out_date: r.get(8)?,
                voided: r.get(9)?,
                pregnant_from: r.get(10)?,
                pregnant_until: r.get(11)?,
                last_delivery: r.get(12)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(concat!(
        "SELECT v.id, coalesce(m.id, v.member_uuid), ",
        date_of!("v.date"),
        ", v.stage, v.cadre, v.danger_signs, v.referred, v.reviewed, v.voided, v.created_at
         FROM visits v LEFT JOIN members m ON m.rid = v.member WHERE v.hh = ?1"
    ))?;
    let visits = stmt
        .query_map([hh], |r| {
            Ok(VisitRowData {
                id: get_uuid(r, 0)?.unwrap_or_default(),
                member_id: get_uuid(r, 1)?.unwrap_or_default(),
                date: r.get(2)?,
                stage: st(r, 3)?,
                cadre: st(r, 4)?,
                danger_signs: r.get(5)?,
                referred: r.get(6)?,
                reviewed: r.get(7)?,
                voided: r.get(8)?,
                created_at: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, visit_id, member_id, reason, status, created_at, created_by, updated_at, outcome, feedback
         FROM referrals WHERE household_id = ?1 ORDER BY id",
    )?;
    let referrals = stmt
        .query_map([&ids], |r| {
            Ok(ReferralRowData {
                id: r.get(0)?,
                visit_id: r.get(1)?,
                member_id: r.get(2)?,
                reason: r.get(3)?,
                status: r.get(4)?,
                created_at: r.get(5)?,
                created_by: r.get(6)?,
                updated_at: r.get(7)?,
                outcome: r.get(8)?,
                feedback: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn
        .prepare("SELECT path, \"values\" FROM conflicts WHERE household_id = ?1 ORDER BY path")?;
    let conflicts = stmt
        .query_map([&ids], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut rows = Rows {
        household,
        tasks,
        members,
        visits,
        referrals,
        conflicts,
    };
    normalize(&mut rows);
    Ok(rows)
}

/// Sorts rows so that two `Rows` compare equal when they hold the same data.
pub fn normalize(rows: &mut Rows) {
    rows.tasks
        .sort_by(|a, b| (&a.member_id, &a.service).cmp(&(&b.member_id, &b.service)));
    rows.members.sort_by(|a, b| a.id.cmp(&b.id));
    rows.visits
        .sort_by(|a, b| (&a.date, &a.id).cmp(&(&b.date, &b.id)));
    rows.referrals.sort_by(|a, b| a.id.cmp(&b.id));
    rows.conflicts.sort();
}
