//! Per-household erasure on request (UU 27/2022 PDP, the right to erasure): an
//! administrator removes one household from the server — its changes, its materialised
//! document (`households`, `snapshots`), its location history — in one transaction, and
//! records it in `erased` under a new sequence number. Every device that has synced
//! before learns of it in its next pull window as a `drop` (the instruction devices
//! already follow when a household leaves their scope), which deletes the household and
//! any unsent changes of it from the device. A push for an erased household is refused
//! (`erased`), so a device that was offline cannot bring it back. The `erased` row holds
//! only the random id, the time, who erased it and why — no personal data — and
//! `erased_locations` the area codes and posyandu it was placed at, so the drop reaches
//! only devices whose scope held it.
//!
//! On SQLite the deleted content is overwritten with zeros (`secure_delete`, set on the
//! writer connection) and the WAL is truncated afterwards; PostgreSQL keeps the bytes in
//! dead tuples and WAL segments until `VACUUM FULL` and WAL recycling. Backups made before
//! the erasure still hold the household: they must be rotated (docs/RELIABILITY.md).

use kunjung_protocol::Scope;
use serde::Serialize;
use uuid::Uuid;

use crate::audit;
use crate::db::{Db, DbError, Sql};
use crate::error::ServerError;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS erased(
        household_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, erased_at BIGINT NOT NULL,
        erased_by TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS erased_seq ON erased(seq)",
    // Where an erased household has been (area code and posyandu only): its drop goes
    // only to devices whose scope held one of these places.
    "CREATE TABLE IF NOT EXISTS erased_locations(
        household_id TEXT NOT NULL, area_code TEXT NOT NULL, posyandu_id TEXT)",
    "CREATE INDEX IF NOT EXISTS erased_locations_household ON erased_locations(household_id)",
];

/// Creates the table if missing (idempotent).
pub fn init(db: &Db) -> Result<(), DbError> {
    db.tx(false, |t| {
        for s in SCHEMA {
            t.exec(s, &[])?;
        }
        Ok(())
    })
}

/// What an erasure removed.
#[derive(Debug, Clone, Serialize)]
pub struct Erased {
    pub household_id: Uuid,
    pub changes: u64,
    pub seq: i64,
    /// SQLite: the WAL was checkpointed and truncated afterwards (false: a reader kept it;
    /// the next checkpoint clears it). Deleted content itself is zeroed by `secure_delete`.
    pub wal_cleared: bool,
}

/// Erases a household. `by` is the administrator, `reason` the request (e.g. a letter
/// number); both are kept in the audit log.
pub fn erase(db: &Db, id: Uuid, by: &str, reason: &str) -> Result<Erased, ServerError> {
    if reason.trim().is_empty() {
        return Err(ServerError::BadRequest(
            "alasan penghapusan wajib diisi (a reason is required)".into(),
        ));
    }
    let mut erased = db.tx(true, |t| {
        let key = id.to_string();
        if is_erased(t, id)? {
            return Err(ServerError::Conflict(format!(
                "rumah tangga {id} sudah dihapus (household already erased)"
            )));
        }
        if t.query("SELECT 1 FROM households WHERE id = $1", &[key.as_str().into()])?
            .is_empty()
        {
            return Err(ServerError::NotFound(format!("rumah tangga {id} (household)")));
        }
        let seq = t.query(
            "UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value",
            &[],
        )?[0][0]
            .int();
        let changes = t.exec("DELETE FROM changes WHERE household_id = $1", &[key.as_str().into()])?;
        t.exec(
            "INSERT INTO erased_locations(household_id, area_code, posyandu_id)
             SELECT household_id, area_code, posyandu_id FROM locations WHERE household_id = $1
             UNION SELECT id, area_code, posyandu_id FROM households WHERE id = $1",
            &[key.as_str().into()],
        )?;
        t.exec("DELETE FROM locations WHERE household_id = $1", &[key.as_str().into()])?;
        t.exec("DELETE FROM households WHERE id = $1", &[key.as_str().into()])?;
        t.exec("DELETE FROM snapshots WHERE household_id = $1", &[key.as_str().into()])?;
        crate::report::forget(t, &key)?;
        t.exec(
            "INSERT INTO erased(household_id, seq, erased_at, erased_by, reason) VALUES ($1, $2, $3, $4, $5)",
            &[
                key.as_str().into(),
                seq.into(),
                crate::auth::now_ms().into(),
                by.into(),
                reason.into(),
            ],
        )?;
        audit::write(
            t,
            &[audit::Event::new(by, "admin-cli", "erase", Some(id), reason)],
        )?;
        Ok(Erased {
            household_id: id,
            changes,
            seq,
            wal_cleared: false,
        })
    })?;
    // The WAL still holds page images from before the deletes: copy and truncate it.
    // (The erasure is committed either way; a failed checkpoint is reported, not an error.)
    erased.wal_cleared = db.checkpoint().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "checkpoint after erasure failed");
        false
    });
    Ok(erased)
}

pub fn is_erased(t: &mut dyn Sql, id: Uuid) -> Result<bool, DbError> {
    Ok(!t
        .query(
            "SELECT 1 FROM erased WHERE household_id = $1",
            &[id.to_string().into()],
        )?
        .is_empty())
}

/// Households erased in the window (s, target] that were ever placed in one of `scopes`
/// (the device's scope at the window's start and now): dropped by every such device that
/// synced before. Ids are random and carry no personal data; a device ignores ids it
/// lacks; an erasure recorded without places (before they were kept) goes to every device.
pub fn erased_between(
    t: &mut dyn Sql,
    s: i64,
    target: i64,
    scopes: &[&Scope],
) -> Result<Vec<Uuid>, DbError> {
    let rows = t.query(
        "SELECT e.household_id, l.area_code, l.posyandu_id FROM erased e
         LEFT JOIN erased_locations l ON l.household_id = e.household_id
         WHERE e.seq > $1 AND e.seq <= $2 ORDER BY e.household_id",
        &[s.into(), target.into()],
    )?;
    let mut out: Vec<Uuid> = Vec::new();
    for r in rows {
        let Some(id) = r[0].text().and_then(|s| Uuid::parse_str(s).ok()) else {
            continue;
        };
        if out.last() == Some(&id) {
            continue;
        }
        let held = match r[1].text() {
            None => true,
            Some(area) => scopes.iter().any(|sc| sc.contains(area, r[2].text())),
        };
        if held {
            out.push(id);
        }
    }
    Ok(out)
}
