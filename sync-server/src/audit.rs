//! The audit log (UU 27/2022 PDP): who read and who changed which household, who signed
//! in (or failed to), and what administrators did, one row per event in the `audit`
//! table. Written by the HTTP handlers after the work they record (a failed audit write is
//! logged, never hides the answer); read with `kunjung-server audit [--user U]
//! [--household ID] [--since MS] [--limit N]`.
//!
//! Actions: `login`, `login_failed`, `read` (a household's changes or snapshot sent to a
//! device, or `GET /v1/households/{id}`), `write` (changes of a household stored from a
//! push), `rejected` (a push refused, with its code), `drop` (a device told to remove a
//! household), `list_users`, `erase`.

use serde::Serialize;
use uuid::Uuid;

use crate::auth::{now_ms, User};
use crate::db::{Db, DbError, Sql, Value};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit(
        at BIGINT NOT NULL, username TEXT NOT NULL, device TEXT NOT NULL,
        action TEXT NOT NULL, household_id TEXT, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit(at)",
    "CREATE INDEX IF NOT EXISTS audit_household ON audit(household_id, at)",
    "CREATE INDEX IF NOT EXISTS audit_user ON audit(username, at)",
];

/// Creates the table if missing (idempotent; the server and the CLI call it on start).
pub fn init(db: &Db) -> Result<(), DbError> {
    db.tx(false, |t| {
        for s in SCHEMA {
            t.exec(s, &[])?;
        }
        Ok(())
    })
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at_ms: i64,
    pub username: String,
    pub device: String,
    pub action: String,
    pub household_id: Option<Uuid>,
    pub detail: String,
}

impl Event {
    pub fn new(
        user: &str,
        device: &str,
        action: &str,
        household: Option<Uuid>,
        detail: &str,
    ) -> Event {
        Event {
            at_ms: now_ms(),
            username: user.to_string(),
            device: device.to_string(),
            action: action.to_string(),
            household_id: household,
            detail: detail.to_string(),
        }
    }

    pub fn by(user: &User, action: &str, household: Option<Uuid>, detail: &str) -> Event {
        Event::new(&user.username, &user.device, action, household, detail)
    }
}

/// Rows per multi-row insert (a fixed count, so one prepared statement serves; the rest go
/// one by one).
const INSERT_CHUNK: usize = 16;

/// Appends events inside an open transaction.
pub fn write(t: &mut dyn Sql, events: &[Event]) -> Result<(), DbError> {
    let row = |e: &Event| -> [Value; 6] {
        [
            e.at_ms.into(),
            e.username.as_str().into(),
            e.device.as_str().into(),
            e.action.as_str().into(),
            e.household_id.map(|h| h.to_string()).into(),
            e.detail.as_str().into(),
        ]
    };
    let values = |n: usize| -> String {
        (0..n)
            .map(|r| {
                let p: Vec<String> = (1..=6).map(|c| format!("${}", r * 6 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chunks = events.chunks_exact(INSERT_CHUNK);
    if events.len() >= INSERT_CHUNK {
        let sql = format!(
            "INSERT INTO audit(at, username, device, action, household_id, detail) VALUES {}",
            values(INSERT_CHUNK)
        );
        for chunk in &mut chunks {
            let params: Vec<Value> = chunk.iter().flat_map(row).collect();
            t.exec(&sql, &params)?;
        }
    }
    let single = format!(
        "INSERT INTO audit(at, username, device, action, household_id, detail) VALUES {}",
        values(1)
    );
    for e in chunks.remainder() {
        t.exec(&single, &row(e))?;
    }
    Ok(())
}

/// Appends events in their own transaction; a failure is logged, not returned, so an
/// answer already computed is still sent.
pub fn record(db: &Db, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = db.tx(false, |t| write(t, events)) {
        tracing::error!(error = %e, "audit log write failed");
    }
}

/// Appends events by group commit ([`Db::grouped`]): concurrent requests' events (and
/// pushes) share one transaction, and this returns once the one holding these events has
/// committed — so an answer is still sent only after its events are stored. A failure is
/// logged, as in [`record`].
pub fn record_grouped(db: &Db, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = db.grouped(move |t| write(t, &events)) {
        tracing::error!(error = %e, "audit log write failed");
    }
}

/// What a sync request did, as events: stored, rejected, sent and dropped households.
pub fn sync_events(
    user: &User,
    req: &kunjung_protocol::SyncRequest,
    resp: &kunjung_protocol::SyncResponse,
) -> Vec<Event> {
    let mut out = Vec::new();
    for g in &req.changes {
        let refused: Vec<&kunjung_protocol::Rejected> = resp
            .rejected
            .iter()
            .filter(|r| r.household_id == g.household_id)
            .collect();
        if let Some(r) = refused.first() {
            out.push(Event::by(user, "rejected", Some(g.household_id), &r.code));
        }
        let stored = g.changes.len().saturating_sub(refused.len());
        if stored > 0 && refused.iter().all(|r| r.hash.is_some()) {
            out.push(Event::by(
                user,
                "write",
                Some(g.household_id),
                &format!("{stored} changes"),
            ));
        }
    }
    for s in &resp.snapshots {
        out.push(Event::by(user, "read", Some(s.household_id), "snapshot"));
    }
    for c in &resp.changes {
        out.push(Event::by(
            user,
            "read",
            Some(c.household_id),
            &format!("{} changes", c.changes.len()),
        ));
    }
    for d in &resp.drops {
        out.push(Event::by(user, "drop", Some(*d), ""));
    }
    out
}

/// Reads the log, newest first.
pub fn query(
    db: &Db,
    user: Option<&str>,
    household: Option<Uuid>,
    since_ms: Option<i64>,
    limit: usize,
) -> Result<Vec<Event>, DbError> {
    let mut sql = String::from(
        "SELECT at, username, device, action, household_id, detail FROM audit WHERE 1 = 1",
    );
    let mut params: Vec<Value> = Vec::new();
    if let Some(u) = user {
        params.push(u.into());
        sql.push_str(&format!(" AND username = ${}", params.len()));
    }
    if let Some(h) = household {
        params.push(h.to_string().into());
        sql.push_str(&format!(" AND household_id = ${}", params.len()));
    }
    if let Some(s) = since_ms {
        params.push(s.into());
        sql.push_str(&format!(" AND at >= ${}", params.len()));
    }
    sql.push_str(&format!(
        " ORDER BY at DESC LIMIT {}",
        limit.clamp(1, 1_000_000)
    ));
    let rows = db.tx(false, |t| t.query(&sql, &params))?;
    Ok(rows
        .into_iter()
        .map(|r| Event {
            at_ms: r[0].int(),
            username: r[1].text().unwrap_or_default().to_string(),
            device: r[2].text().unwrap_or_default().to_string(),
            action: r[3].text().unwrap_or_default().to_string(),
            household_id: r[4].text().and_then(|s| Uuid::parse_str(s).ok()),
            detail: r[5].text().unwrap_or_default().to_string(),
        })
        .collect())
}
