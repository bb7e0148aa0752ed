//! Due, overdue and done services (the `tasks` projection, from `kunjung_core::schedule`).
//!
//! Tasks are written with the other projections in the same transaction as each change,
//! computed for the device's today. Because a status also changes with the calendar (due
//! becomes overdue, a new month brings a new weighing), households whose tasks were computed
//! for another day, or marked stale (`tasks_on` NULL) by a pulled visit stored without its
//! document (`fastapply`), are recomputed by `refresh_tasks` before the list is read. Tasks for any
//! other date are computed from the documents on the fly.

use chrono::NaiveDate;
use rusqlite::{params_from_iter, types::Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::project::{date_of, get_uuid};
use crate::{project, Result, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TaskRow {
    pub member_id: String,
    pub household_id: String,
    pub member_name: Option<String>,
    pub service: String,
    pub label_id: String,
    pub label_en: String,
    pub due_from: String,
    pub due_until: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_on: Option<String>,
}

fn area_ids(store: &Store, area: Option<&str>) -> Result<Vec<Uuid>> {
    let rows = store.list_households(&crate::ListFilter {
        area: area.map(String::from),
        limit: Some(usize::MAX >> 2),
        ..Default::default()
    })?;
    Ok(rows
        .iter()
        .filter_map(|h| Uuid::parse_str(&h.id).ok())
        .collect())
}

impl Store {
    /// Recomputes the tasks of households computed for another day than today.
    pub fn refresh_tasks(&mut self) -> Result<usize> {
        let today = project::today().format("%Y-%m-%d").to_string();
        let stale: Vec<Uuid> = {
            let mut stmt = self
                .connection()
                .prepare("SELECT id FROM households WHERE tasks_on IS NULL OR tasks_on != ?1")?;
            let v = stmt
                .query_map([&today], |r| r.get::<_, String>(0))?
                .filter_map(|r| r.ok().and_then(|s| Uuid::parse_str(&s).ok()))
                .collect();
            v
        };
        for chunk in stale.chunks(500) {
            let mut docs = Vec::with_capacity(chunk.len());
            for id in chunk {
                docs.push((*id, self.doc(*id)?));
            }
            let tx = self.conn_mut().transaction()?;
            for (id, doc) in &docs {
                project::tasks_only(&tx, *id, doc)?;
            }
            tx.commit()?;
        }
        Ok(stale.len())
    }

    /// Tasks on `on` (default today) in an area; from the projection for today, computed
    /// from the documents for other dates. Open tasks first, by due date.
    pub fn tasks(&mut self, on: Option<NaiveDate>, area: Option<&str>) -> Result<Vec<TaskRow>> {
        let today = project::today();
        let on = on.unwrap_or(today);
        if on == today {
            self.refresh_tasks()?;
            let mut conds = vec!["1 = 1".to_string()];
            let mut vals: Vec<Value> = Vec::new();
            if let Some(a) = area {
                let p = kunjung_core::ids::AreaCode::parse_prefix(a)?;
                conds.push("h.area_code >= ? AND h.area_code < ?".into());
                vals.push(Value::Text(p.clone()));
                vals.push(Value::Text(format!("{p}/")));
            }
            let sql = format!(
                "SELECT m.id, h.id, m.name, t.service, t.label_id, t.label_en, {}, {}, t.status, {}
                 FROM tasks t JOIN members m ON m.rid = t.member JOIN households h ON h.rid = m.hh
                 WHERE {}",
                date_of!("t.due_from"),
                date_of!("t.due_until"),
                date_of!("t.done_on"),
                conds.join(" AND ")
            );
            let text = project::strings(self.connection())?;
            let st = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<String> {
                Ok(text.get(&r.get::<_, i64>(i)?).cloned().unwrap_or_default())
            };
            let mut stmt = self.connection().prepare_cached(&sql)?;
            let mut rows: Vec<TaskRow> = stmt
                .query_map(params_from_iter(vals), |r| {
                    Ok(TaskRow {
                        member_id: get_uuid(r, 0)?.unwrap_or_default(),
                        household_id: r.get(1)?,
                        member_name: r.get(2)?,
                        service: st(r, 3)?,
                        label_id: st(r, 4)?,
                        label_en: st(r, 5)?,
                        due_from: r.get(6)?,
                        due_until: r.get(7)?,
                        status: r.get(8)?,
                        done_on: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            sort_tasks(&mut rows);
            return Ok(rows);
        }
        let cfg = project::schedule_config(self.connection())?;
        let mut out = Vec::new();
        for id in area_ids(self, area)? {
            let view = self.doc(id)?.read()?;
            for t in kunjung_core::schedule::tasks_for_household(&view, on, &cfg) {
                out.push(TaskRow {
                    member_id: t.member_id.to_string(),
                    household_id: t.household_id.to_string(),
                    member_name: view.member(t.member_id).map(|m| m.name.clone()),
                    service: t.service,
                    label_id: t.label_id,
                    label_en: t.label_en,
                    due_from: t.due_from.format("%Y-%m-%d").to_string(),
                    due_until: t.due_until.format("%Y-%m-%d").to_string(),
                    status: t.status.code().to_string(),
                    done_on: t.done_on.map(|d| d.format("%Y-%m-%d").to_string()),
                });
            }
        }
        sort_tasks(&mut out);
        Ok(out)
    }
}

/// Open tasks first, then by due date, member and service.
fn sort_tasks(rows: &mut [TaskRow]) {
    rows.sort_by(|a, b| {
        (a.status == "done", &a.due_until, &a.member_id, &a.service).cmp(&(
            b.status == "done",
            &b.due_until,
            &b.member_id,
            &b.service,
        ))
    });
}
