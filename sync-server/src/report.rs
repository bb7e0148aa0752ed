//! Server-side reports over a user's scope: the monthly recap (PWS,
//! `GET /v1/reports/monthly`) and suspected duplicate households
//! (`GET /v1/reports/duplicates`, `kunjung-server duplicates`), computed by the same
//! `kunjung_core` code as the device (`report::RecapBuilder`, `merge::find_duplicates`) so
//! both give the same figures for the same documents.
//!
//! # Who may ask
//!
//! Admin: everything. Puskesmas: its area(s). Bidan: her desa(s) — the same households her
//! own devices already hold, so she sees her desa's coverage without a puskesmas login.
//! Kader: refused (`403 forbidden`); her posyandu's recap is computed on her device. An
//! `area` parameter narrows the report and must lie inside the user's scope
//! (`403 out_of_scope` otherwise).
//!
//! # Projections: materialised lazily, kept by sequence number
//!
//! The report needs each household's read model ([`HouseholdView`]). Building it means
//! loading the Automerge document (snapshot + pending changes) and reading it — a few
//! milliseconds per household, too slow to redo for 10,000–30,000 households per request,
//! and too much to add to every push on the sync path. So the view is materialised in
//! `report_views(household_id, last_seq, view)`, written *after* the fact: a request
//! refreshes only the households whose `households.last_seq` moved past the stored
//! `last_seq` (new, changed or moved since the last report), then reads the stored views.
//! The sync path is untouched; the first report after a large sync pays for the changed
//! households only, in batches that are committed as they go (so even a request that
//! times out leaves its work done). The table is a cache: it is not in backups and is
//! rebuilt from the documents when missing. `kunjung-server report-refresh` fills it ahead
//! of time (e.g. nightly, or after a restore).
//!
//! Views are stored as zstd-compressed JSON; households are read page by page and counted
//! one at a time, so memory stays flat whatever the area's size.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use kunjung_core::merge::find_duplicates;
pub use kunjung_core::merge::DuplicatePair;
pub use kunjung_core::report::MonthlyRecap;
use kunjung_core::report::{Grouping, RecapBuilder, RecapOptions};
use kunjung_core::schedule::YearMonth;
use kunjung_core::{HouseholdDoc, HouseholdView};
use kunjung_protocol::Role;
use uuid::Uuid;

use crate::auth::User;
use crate::db::{Db, DbError, Sql, Value};
use crate::error::ServerError;

/// Households read (and refreshed) per transaction.
const PAGE: i64 = 1000;
/// zstd level for stored views (fast to write, ~6× smaller than the JSON).
const ZSTD_LEVEL: i32 = 3;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS report_views(
    household_id TEXT PRIMARY KEY, last_seq BIGINT NOT NULL, view BLOB NOT NULL)";

/// The area prefixes a report covers: `None` = everything (admin without `area`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportScope(pub Option<Vec<String>>);

/// Which households `user` may get a report over, narrowed to `area` when given.
pub fn report_scope(user: &User, area: Option<&str>) -> Result<ReportScope, ServerError> {
    let area = match area.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => Some(
            kunjung_core::ids::AreaCode::parse_prefix(a)
                .map_err(|e| ServerError::BadRequest(e.to_string()))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    match user.role {
        Role::Kader => Err(ServerError::Forbidden(
            "laporan wilayah hanya untuk bidan, puskesmas dan admin; laporan posyandu ada di perangkat kader (area reports are for bidan, puskesmas and admin; a kader's posyandu report is on her device)".into(),
        )),
        Role::Admin => Ok(ReportScope(area.map(|a| vec![a]))),
        Role::Bidan | Role::Puskesmas => match area {
            None => Ok(ReportScope(Some(user.areas.clone()))),
            Some(a) => {
                if user
                    .areas
                    .iter()
                    .any(|s| kunjung_core::ids::area_within(&a, s))
                {
                    Ok(ReportScope(Some(vec![a])))
                } else {
                    Err(ServerError::OutOfScope)
                }
            }
        },
    }
}

/// SQL condition on `h.area_code` for the scope, with its parameters appended.
fn area_sql(scope: &ReportScope, params: &mut Vec<Value>) -> String {
    let Some(areas) = &scope.0 else {
        return "1 = 1".into();
    };
    let mut parts = Vec::new();
    for a in areas {
        params.push(a.as_str().into());
        let eq = params.len();
        params.push(format!("{a}.%").into());
        parts.push(format!(
            "(h.area_code = ${eq} OR h.area_code LIKE ${})",
            params.len()
        ));
    }
    if parts.is_empty() {
        "1 = 0".into()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// Creates the projection table if it is missing.
pub fn ensure_table(db: &Db) -> Result<(), DbError> {
    let sql = match db.backend() {
        "postgres" => TABLE.replace("BLOB", "BYTEA"),
        _ => TABLE.to_string(),
    };
    let create = || db.tx(false, |t| t.exec(&sql, &[]).map(|_| ()));
    // Two first requests at once on PostgreSQL may race on the catalog; the second try
    // finds the table.
    create().or_else(|_: DbError| create())?;
    Ok(())
}

/// Removes a household's stored view (erasure).
pub fn forget(t: &mut dyn Sql, household_id: &str) -> Result<(), DbError> {
    t.exec(
        "DELETE FROM report_views WHERE household_id = $1",
        &[household_id.into()],
    )?;
    Ok(())
}

fn encode(view: &HouseholdView) -> Result<Vec<u8>, ServerError> {
    let json = serde_json::to_vec(view).map_err(|e| ServerError::Internal(e.to_string()))?;
    zstd::bulk::compress(&json, ZSTD_LEVEL).map_err(|e| ServerError::Internal(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<HouseholdView, ServerError> {
    let json = zstd::stream::decode_all(bytes).map_err(|e| ServerError::Internal(e.to_string()))?;
    if json.is_empty() {
        return Err(ServerError::Internal("report view: empty".into()));
    }
    serde_json::from_slice(&json).map_err(|e| ServerError::Internal(format!("report view: {e}")))
}

/// The household's current view from its stored document, read in `t`.
fn current_view(t: &mut dyn Sql, id: &str) -> Result<Option<(HouseholdView, i64)>, ServerError> {
    let id = Uuid::parse_str(id).map_err(|e| ServerError::Internal(e.to_string()))?;
    let Some((doc, last_seq)) = crate::sync::household_doc(t, id)? else {
        return Ok(None);
    };
    let view = read_view(&doc, id)?;
    Ok(Some((view, last_seq)))
}

fn read_view(doc: &HouseholdDoc, id: Uuid) -> Result<HouseholdView, ServerError> {
    doc.read()
        .map_err(|e| ServerError::Internal(format!("household {id}: {e}")))
}

/// What one pass over the scope did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassStats {
    /// Households in scope.
    pub households: usize,
    /// Views rebuilt from their documents (new, changed or moved since the last pass).
    pub refreshed: usize,
}

/// Visits every household in `scope` in id order, handing its current view to `f`, and
/// stores the views it had to rebuild.
fn for_each_view(
    db: &Db,
    scope: &ReportScope,
    mut f: impl FnMut(HouseholdView),
) -> Result<PassStats, ServerError> {
    ensure_table(db)?;
    let mut stats = PassStats::default();
    let mut after = String::new();
    loop {
        let mut params: Vec<Value> = vec![after.as_str().into()];
        let cond = area_sql(scope, &mut params);
        params.push(PAGE.into());
        let limit = params.len();
        let sql = format!(
            "SELECT h.id, h.last_seq, r.last_seq, r.view FROM households h
             LEFT JOIN report_views r ON r.household_id = h.id
             WHERE h.id > $1 AND {cond} ORDER BY h.id LIMIT ${limit}"
        );
        // One read transaction per page: the cached views, and the documents of the
        // households whose cached view is missing or older than their last change.
        let (rows, fresh) = db.tx(false, |t| {
            let rows = t.query(&sql, &params)?;
            let mut out = Vec::with_capacity(rows.len());
            let mut fresh = Vec::new();
            for mut r in rows {
                let id = r[0].text().unwrap_or_default().to_string();
                let (seq, cached_seq) = (r[1].int(), r[2].clone());
                if cached_seq == Value::Int(seq) {
                    let bytes = std::mem::replace(&mut r[3], Value::Null).into_blob();
                    out.push((id, Err(bytes)));
                } else if let Some((view, at)) = current_view(t, &id)? {
                    fresh.push((id.clone(), at, encode(&view)?));
                    out.push((id, Ok(view)));
                }
            }
            Ok::<_, ServerError>((out, fresh))
        })?;
        let n = rows.len();
        stats.households += n;
        stats.refreshed += fresh.len();
        if let Some((id, _)) = rows.last() {
            after = id.clone();
        }
        if !fresh.is_empty() {
            store_views(db, &fresh);
        }
        for view in decode_page(rows)? {
            f(view);
        }
        if (n as i64) < PAGE {
            return Ok(stats);
        }
    }
}

/// Decodes a page of stored views on every core (decoding is most of a report's time;
/// counting is cheap and stays on the caller's thread), keeping the page's order.
fn decode_page(
    rows: Vec<(String, Result<HouseholdView, Vec<u8>>)>,
) -> Result<Vec<HouseholdView>, ServerError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let one = |v: Result<HouseholdView, Vec<u8>>| match v {
        Ok(view) => Ok(view),
        Err(bytes) => decode(&bytes),
    };
    if threads == 1 || rows.len() < 64 {
        return rows.into_iter().map(|(_, v)| one(v)).collect();
    }
    let per = rows.len().div_ceil(threads);
    let mut chunks: Vec<Vec<Result<HouseholdView, Vec<u8>>>> = Vec::new();
    let mut it = rows.into_iter().map(|(_, v)| v).peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    let parts: Vec<Result<Vec<HouseholdView>, ServerError>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(one).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ServerError::Internal("report decode panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Writes rebuilt views. A failure here (e.g. two reports racing on PostgreSQL) only
/// costs a rebuild next time, so it is logged, not returned.
fn store_views(db: &Db, fresh: &[(String, i64, Vec<u8>)]) {
    let r = db.tx(false, |t| {
        for (id, seq, bytes) in fresh {
            t.exec(
                // Only for a household still stored: a view computed while the household
                // was being erased (UU PDP) must not outlive it.
                "INSERT INTO report_views(household_id, last_seq, view)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM households WHERE id = $1)
                 ON CONFLICT (household_id) DO UPDATE SET last_seq = excluded.last_seq, view = excluded.view
                 WHERE report_views.last_seq < excluded.last_seq",
                &[id.as_str().into(), (*seq).into(), bytes.clone().into()],
            )?;
        }
        Ok::<_, DbError>(())
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "report views not stored; rebuilt next time");
    }
}

/// The parameters of `GET /v1/reports/monthly`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyQuery {
    pub month: YearMonth,
    pub area: Option<String>,
    pub grouping: Grouping,
}

impl MonthlyQuery {
    /// From the query string: `month=YYYY-MM` (required), `area=CODE`,
    /// `by=posyandu|desa|area` (default `desa`).
    pub fn parse(q: &BTreeMap<String, String>) -> Result<MonthlyQuery, ServerError> {
        let month = q.get("month").ok_or_else(|| {
            ServerError::BadRequest("parameter month=YYYY-MM wajib (month is required)".into())
        })?;
        let month: YearMonth = month.parse().map_err(ServerError::BadRequest)?;
        let grouping = match q.get("by") {
            None => Grouping::Desa,
            Some(b) => Grouping::parse(b).ok_or_else(|| {
                ServerError::BadRequest(format!(
                    "by={b} tidak dikenal; pilih posyandu, desa atau area (unknown grouping)"
                ))
            })?,
        };
        if let Some(k) = q
            .keys()
            .find(|k| !["month", "area", "by"].contains(&k.as_str()))
        {
            return Err(ServerError::BadRequest(format!(
                "parameter {k} tidak dikenal (unknown parameter)"
            )));
        }
        Ok(MonthlyQuery {
            month,
            area: q.get("area").cloned(),
            grouping,
        })
    }
}

/// The monthly recap over the user's scope (see the module docs). Ages of open referrals
/// are measured on `today` when the month is not over yet.
pub fn monthly(
    db: &Db,
    user: &User,
    q: &MonthlyQuery,
    today: NaiveDate,
) -> Result<(MonthlyRecap, PassStats), ServerError> {
    let scope = report_scope(user, q.area.as_deref())?;
    let mut b = RecapBuilder::new(&RecapOptions {
        month: q.month,
        grouping: q.grouping,
        as_of: Some(today),
    });
    let stats = for_each_view(db, &scope, |v| b.add(&v))?;
    Ok((b.finish(), stats))
}

/// Suspected duplicate households over the user's scope (same rules as the device:
/// shared No. KK, or a member with the same NIK or the same name and birth date).
pub fn duplicates(
    db: &Db,
    user: &User,
    area: Option<&str>,
) -> Result<(Vec<DuplicatePair>, PassStats), ServerError> {
    let scope = report_scope(user, area)?;
    let mut views = Vec::new();
    let stats = for_each_view(db, &scope, |mut v| {
        // Only the household and its members matter here; keep memory small.
        v.visits = Vec::new();
        v.referrals = Vec::new();
        v.reviews = Vec::new();
        views.push(v);
    })?;
    Ok((find_duplicates(&views), stats))
}

/// Rebuilds every stale view in `area` (all when `None`) ahead of the first report.
pub fn refresh(db: &Db, area: Option<&str>) -> Result<PassStats, ServerError> {
    let scope = report_scope(&admin_user(), area)?;
    for_each_view(db, &scope, |_| {})
}

/// The identity the administration commands act as.
pub fn admin_user() -> User {
    User {
        username: "kunjung-server".into(),
        role: Role::Admin,
        posyandu: Vec::new(),
        areas: Vec::new(),
        device: "cli".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, areas: &[&str]) -> User {
        User {
            username: "u".into(),
            role,
            posyandu: vec!["psy-1".into()],
            areas: areas.iter().map(|s| s.to_string()).collect(),
            device: "d".into(),
        }
    }

    #[test]
    fn scope_by_role_and_area() {
        let pkm = user(Role::Puskesmas, &["32.14.01"]);
        assert_eq!(
            report_scope(&pkm, None).unwrap(),
            ReportScope(Some(vec!["32.14.01".into()]))
        );
        assert_eq!(
            report_scope(&pkm, Some("32.14.01.2001")).unwrap(),
            ReportScope(Some(vec!["32.14.01.2001".into()]))
        );
        // Wider than, or beside, the scope.
        assert!(matches!(
            report_scope(&pkm, Some("32.14")),
            Err(ServerError::OutOfScope)
        ));
        assert!(matches!(
            report_scope(&pkm, Some("32.14.02.2001")),
            Err(ServerError::OutOfScope)
        ));
        // "32.14.011" is not inside "32.14.01" (prefix on whole segments only).
        assert!(report_scope(&pkm, Some("32.14.011")).is_err());
        assert!(matches!(
            report_scope(&user(Role::Kader, &[]), None),
            Err(ServerError::Forbidden(_))
        ));
        assert_eq!(
            report_scope(&user(Role::Admin, &[]), None).unwrap(),
            ReportScope(None)
        );
        assert!(matches!(
            report_scope(&user(Role::Admin, &[]), Some("not-a-code")),
            Err(ServerError::BadRequest(_))
        ));
    }

    #[test]
    fn query_parameters() {
        let q = |pairs: &[(&str, &str)]| {
            MonthlyQuery::parse(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let m = q(&[("month", "2026-08"), ("by", "posyandu")]).unwrap();
        assert_eq!(m.month.to_string(), "2026-08");
        assert_eq!(m.grouping, Grouping::Posyandu);
        assert_eq!(q(&[("month", "2026-08")]).unwrap().grouping, Grouping::Desa);
        for bad in [
            vec![],
            vec![("month", "2026-13")],
            vec![("month", "2026-08"), ("by", "kabupaten")],
            vec![("month", "2026-08"), ("limit", "5")],
        ] {
            assert!(
                matches!(q(&bad), Err(ServerError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
