//! Read queries over the projections: household lists with filters, full-text search,
//! visit and referral queues. All of them are index lookups, never document loads.

use rusqlite::{params_from_iter, types::Value};
use serde::{Deserialize, Serialize};

use crate::project::{date_of, get_uuid};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListFilter {
    /// Area code or prefix (`32.14.01` = a kecamatan).
    pub area: Option<String>,
    pub dusun: Option<String>,
    pub rt: Option<String>,
    pub rw: Option<String>,
    pub posyandu_id: Option<String>,
    /// Only households with a member in this life stage today.
    pub stage: Option<String>,
    /// Only households with conflicts to resolve.
    pub has_conflicts: bool,
    /// Only households with a due or overdue task (as of the last task refresh).
    #[serde(default)]
    pub has_due_tasks: bool,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HouseholdRow {
    pub id: String,
    pub area_code: String,
    pub dusun: Option<String>,
    pub rt: Option<String>,
    pub rw: Option<String>,
    pub posyandu_id: Option<String>,
    pub address: Option<String>,
    pub status: String,
    pub head_name: Option<String>,
    pub member_count: i64,
    pub visit_count: i64,
    pub last_visit: Option<String>,
    pub open_referrals: i64,
    pub conflict_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SearchHit {
    pub household_id: String,
    pub member_id: Option<String>,
    pub name: Option<String>,
    pub nik: Option<String>,
    pub area_code: String,
    pub address: Option<String>,
    pub rt: Option<String>,
    pub rw: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct VisitRow {
    pub id: String,
    pub household_id: String,
    pub member_id: String,
    pub member_name: Option<String>,
    pub date: String,
    pub stage: Option<String>,
    pub cadre: Option<String>,
    pub danger_signs: Option<String>,
    pub referred: bool,
    pub reviewed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReferralRow {
    pub id: String,
    pub household_id: String,
    pub member_id: String,
    pub member_name: Option<String>,
    pub visit_id: Option<String>,
    pub reason: String,
    pub status: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub outcome: Option<String>,
    pub feedback: Option<String>,
}

/// Turns user text into an FTS5 query: every word must match as a prefix.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| format!("\"{}\"*", w.replace('"', "")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The date range of birth dates (or other conditions) for a life stage today.
fn stage_condition(stage: &str, today: chrono::NaiveDate) -> Result<(String, Vec<Value>)> {
    let months_ago = |m: u32| {
        today
            .checked_sub_months(chrono::Months::new(m))
            .unwrap_or(today)
            .format("%Y-%m-%d")
            .to_string()
    };
    let t = today.format("%Y-%m-%d").to_string();
    let nifas_start = (today - chrono::Duration::days(kunjung_core::lifestage::NIFAS_DAYS))
        .format("%Y-%m-%d")
        .to_string();
    let (cond, vals): (&str, Vec<String>) = match stage {
        "pregnancy" => (
            "m.pregnant_from <= ? AND m.pregnant_until > ?",
            vec![t.clone(), t],
        ),
        "postpartum" => (
            "m.last_delivery <= ? AND m.last_delivery >= ?",
            vec![t, nifas_start],
        ),
        "infant" => (
            "m.birth_date > ? AND m.birth_date <= ?",
            vec![months_ago(6), t],
        ),
        "toddler" => (
            "m.birth_date > ? AND m.birth_date <= ?",
            vec![months_ago(72), months_ago(6)],
        ),
        "school_adolescent" => (
            "m.birth_date > ? AND m.birth_date <= ?",
            vec![months_ago(216), months_ago(72)],
        ),
        "adult" => (
            "m.birth_date > ? AND m.birth_date <= ?",
            vec![months_ago(720), months_ago(216)],
        ),
        "elderly" => ("m.birth_date <= ?", vec![months_ago(720)]),
        other => {
            return Err(StoreError::Invalid(format!(
                "tahap hidup tidak dikenal: '{other}' (unknown life stage)"
            )))
        }
    };
    Ok((
        format!("EXISTS (SELECT 1 FROM members m WHERE m.hh = h.rid AND m.voided = 0 AND m.death_date IS NULL AND {cond})"),
        vals.into_iter().map(Value::Text).collect(),
    ))
}

/// `area_code` lies in `prefix`: equal, or starting with `prefix.` (codes have fixed
/// widths, so a range scan on the index does it: '/' sorts right after '.').
fn area_condition(prefix: &str) -> Result<(String, Vec<Value>)> {
    let p = kunjung_core::ids::AreaCode::parse_prefix(prefix)?;
    Ok((
        "(h.area_code >= ? AND h.area_code < ?)".into(),
        vec![Value::Text(p.clone()), Value::Text(format!("{p}/"))],
    ))
}

impl Store {
    /// Households, by head name, with filters and paging.
    pub fn list_households(&self, f: &ListFilter) -> Result<Vec<HouseholdRow>> {
        let mut conds: Vec<String> = Vec::new();
        let mut vals: Vec<Value> = Vec::new();
        if let Some(a) = &f.area {
            let (c, v) = area_condition(a)?;
            conds.push(c);
            vals.extend(v);
        }
        for (col, v) in [("dusun", &f.dusun), ("posyandu_id", &f.posyandu_id)] {
            if let Some(v) = v {
                conds.push(format!("h.{col} = ?"));
                vals.push(Value::Text(v.clone()));
            }
        }
        for (col, v) in [("rt", &f.rt), ("rw", &f.rw)] {
            if let Some(v) = v {
                conds.push(format!("h.{col} = ?"));
                vals.push(Value::Text(kunjung_core::ids::normalize_rt_rw(v, col)?));
            }
        }
        if let Some(s) = &f.stage {
            let (c, v) = stage_condition(s, chrono::Local::now().date_naive())?;
            conds.push(c);
            vals.extend(v);
        }
        if f.has_conflicts {
            conds.push("h.conflict_count > 0".into());
        }
        if f.has_due_tasks {
            conds.push("h.due_tasks > 0".into());
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        vals.push(Value::Integer(f.limit.unwrap_or(50).min(10_000) as i64));
        vals.push(Value::Integer(f.offset.unwrap_or(0) as i64));
        let sql = format!(
            "SELECT h.id, h.area_code, h.dusun, h.rt, h.rw, h.posyandu_id, h.address, h.status, h.head_name,
                    h.member_count, h.visit_count, h.last_visit, h.open_referrals, h.conflict_count
             FROM households h {where_} ORDER BY h.head_name, h.id LIMIT ? OFFSET ?"
        );
        let mut stmt = self.connection().prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(vals), |r| {
                Ok(HouseholdRow {
                    id: r.get(0)?,
                    area_code: r.get(1)?,
                    dusun: r.get(2)?,
                    rt: r.get(3)?,
                    rw: r.get(4)?,
                    posyandu_id: r.get(5)?,
                    address: r.get(6)?,
                    status: r.get(7)?,
                    head_name: r.get(8)?,
                    member_count: r.get(9)?,
                    visit_count: r.get(10)?,
                    last_visit: r.get(11)?,
                    open_referrals: r.get(12)?,
                    conflict_count: r.get(13)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn household_count(&self) -> Result<i64> {
        Ok(self
            .connection()
            .query_row("SELECT count(*) FROM households", [], |r| r.get(0))?)
    }

    /// Full-text search over member names, NIK and household address (prefix match on
    /// every word, accents ignored).
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(q) = fts_query(text) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.connection().prepare_cached(
            "WITH hits AS (SELECT rowid AS r FROM search WHERE search MATCH ?1 LIMIT ?2)
             SELECT h.id, m.id, m.name, m.nik, h.area_code, h.address, h.rt, h.rw
               FROM hits JOIN members m ON m.rid = hits.r JOIN households h ON h.rid = m.hh
             UNION ALL
             SELECT h.id, NULL, h.head_name, NULL, h.area_code, h.address, h.rt, h.rw
               FROM hits JOIN households h ON h.rid = -hits.r",
        )?;
        let rows = stmt
            .query_map(rusqlite::params![q, limit.clamp(1, 1000) as i64], |r| {
                Ok(SearchHit {
                    household_id: r.get(0)?,
                    member_id: get_uuid(r, 1)?,
                    name: r.get(2)?,
                    nik: r.get(3)?,
                    area_code: r.get(4)?,
                    address: r.get(5)?,
                    rt: r.get(6)?,
                    rw: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Visits, newest first; `unreviewed` gives the bidan's review queue.
    pub fn list_visits(
        &self,
        area: Option<&str>,
        unreviewed: bool,
        limit: usize,
    ) -> Result<Vec<VisitRow>> {
        let mut conds = vec!["v.voided = 0".to_string()];
        let mut vals: Vec<Value> = Vec::new();
        if let Some(a) = area {
            let (c, v) = area_condition(a)?;
            conds.push(c);
            vals.extend(v);
        }
        if unreviewed {
            conds.push("v.reviewed = 0".into());
        }
        vals.push(Value::Integer(limit as i64));
        // The page first, then its members' names and texts (for those rows only).
        let sql = format!(
            "SELECT v.id, h.id, coalesce(m.id, v.member_uuid), m.name, {}, s.value, c.value, v.danger_signs,
                    v.referred, v.reviewed
             FROM (SELECT v.* FROM visits v JOIN households h ON h.rid = v.hh
                   WHERE {} ORDER BY v.date DESC, v.created_at DESC LIMIT ?) v
             JOIN households h ON h.rid = v.hh LEFT JOIN members m ON m.rid = v.member
             LEFT JOIN strings s ON s.id = v.stage LEFT JOIN strings c ON c.id = v.cadre
             ORDER BY v.date DESC, v.created_at DESC",
            date_of!("v.date"),
            conds.join(" AND ")
        );
        let mut stmt = self.connection().prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(vals), |r| {
                Ok(VisitRow {
                    id: get_uuid(r, 0)?.unwrap_or_default(),
                    household_id: r.get(1)?,
                    member_id: get_uuid(r, 2)?.unwrap_or_default(),
                    member_name: r.get(3)?,
                    date: r.get(4)?,
                    stage: r.get(5)?,
                    cadre: r.get(6)?,
                    danger_signs: r.get(7)?,
                    referred: r.get(8)?,
                    reviewed: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Referrals, open ones first.
    pub fn list_referrals(
        &self,
        status: Option<&str>,
        area: Option<&str>,
    ) -> Result<Vec<ReferralRow>> {
        let mut conds = vec!["1 = 1".to_string()];
        let mut vals: Vec<Value> = Vec::new();
        if let Some(s) = status {
            conds.push("r.status = ?".into());
            vals.push(Value::Text(s.to_string()));
        }
        if let Some(a) = area {
            let (c, v) = area_condition(a)?;
            conds.push(c);
            vals.extend(v);
        }
        let sql = format!(
            "SELECT r.id, r.household_id, r.member_id, m.name, r.visit_id, r.reason, r.status, r.created_at,
                    r.created_by, r.outcome, r.feedback
             FROM referrals r JOIN households h ON h.id = r.household_id
             LEFT JOIN members m ON m.id = unhex(replace(r.member_id, '-', ''))
             WHERE {} ORDER BY (r.status = 'closed'), r.created_at DESC",
            conds.join(" AND ")
        );
        let mut stmt = self.connection().prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(vals), |r| {
                Ok(ReferralRow {
                    id: r.get(0)?,
                    household_id: r.get(1)?,
                    member_id: r.get(2)?,
                    member_name: r.get(3)?,
                    visit_id: r.get(4)?,
                    reason: r.get(5)?,
                    status: r.get(6)?,
                    created_at: r.get(7)?,
                    created_by: r.get(8)?,
                    outcome: r.get(9)?,
                    feedback: r.get(10)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_is_safe() {
        assert_eq!(fts_query("Siti Am").unwrap(), "\"Siti\"* \"Am\"*");
        assert_eq!(fts_query("\" OR * -"), Some("\"OR\"*".into()));
        assert_eq!(fts_query("\" * -"), None);
        assert_eq!(fts_query("3214"), Some("\"3214\"*".into()));
    }
}
