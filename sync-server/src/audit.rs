//! The audit log (UU 27/2022 PDP): who read and who changed which household, who signed
//! in (or failed to), and what administrators did. Written by the HTTP handlers after the
//! work they record (a failed audit write is logged, never hides the answer); read with
//! `kunjung-server audit [--user U] [--household ID] [--since MS] [--limit N]`.
//!
//! Actions: `login`, `login_failed`, `read` (a household's changes or snapshot sent to a
//! device, or `GET /v1/households/{id}`), `write` (changes of a household stored from a
//! push), `rejected` (a push refused, with its code), `drop` (a device told to remove a
//! household), `list_users`, `erase`.
//!
//! Layout: **one row per request** in `audit_log(id, at, username, device, action, body)`
//! — `body` is a compact encoding of that request's events (see [`encode`]), `at` the
//! newest event's time, `action` the events' action when they all share one (a login, a
//! failed login, an erasure; NULL for a sync that read and wrote) — plus one small entry
//! per distinct household and bucket of 1,024 consecutive rows in
//! `audit_households(household_id, bucket)` (16-byte ids; see [`BUCKET_ROWS`]). An
//! end-of-day sync (~36 events) is thus one row with ~0.7 KB of body, and on a busy
//! server mostly no new household entry (its households already have one in the current
//! bucket: ~36 index lookups, a few inserts) — instead of 36 rows with three text index
//! entries each, 36 random index pages written per sync. A household's events are read
//! from its buckets' rows (decoded and filtered), so its query reads up to 1,024 rows
//! per bucket it appears in. Other indexes: time, user and time, and a partial index of
//! the logins (what the login limiter replays at start). Erasure writes its own event
//! and never reads bodies.
//!
//! A database written by an older version (one row per event in table `audit`) is
//! migrated into this layout when it is opened ([`init`]), in one transaction, and a
//! backup of the old layout is converted while it is restored ([`restore_legacy`]).

use serde::Serialize;
use uuid::Uuid;

use crate::auth::{now_ms, User};
use crate::db::{Db, DbError, Row, Sql, Value};

/// The SQLite schema; PostgreSQL gets it with BIGSERIAL, BYTEA and no `WITHOUT ROWID`
/// (see [`schema`]).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log(
        id INTEGER PRIMARY KEY, at BIGINT NOT NULL, username TEXT NOT NULL,
        device TEXT NOT NULL, action TEXT, body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at, id)",
    "CREATE INDEX IF NOT EXISTS audit_log_user ON audit_log(username, at, id)",
    "CREATE INDEX IF NOT EXISTS audit_log_logins ON audit_log(at)
        WHERE action IN ('login', 'login_failed')",
    "CREATE TABLE IF NOT EXISTS audit_households(
        household_id BLOB NOT NULL, bucket BIGINT NOT NULL,
        PRIMARY KEY(household_id, bucket)) WITHOUT ROWID",
];

fn schema(postgres: bool) -> Vec<String> {
    SCHEMA
        .iter()
        .map(|s| {
            if postgres {
                s.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
                    .replace("BLOB", "BYTEA")
                    .replace(" WITHOUT ROWID", "")
            } else {
                s.to_string()
            }
        })
        .collect()
}

/// Creates the tables if missing and migrates an old-layout `audit` table into them
/// (idempotent; the server and the CLI call it on start).
pub fn init(db: &Db) -> Result<(), DbError> {
    let postgres = db.backend() == "postgres";
    db.tx(true, |t| {
        for s in schema(postgres) {
            t.exec(&s, &[])?;
        }
        let old = if postgres {
            "SELECT 1 FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = 'audit'"
        } else {
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"
        };
        if !t.query(old, &[])?.is_empty() {
            migrate_old_table(t)?;
        }
        Ok(())
    })
}

/// The old layout's columns, in order.
const OLD_COLUMNS: &str = "at, username, device, action, household_id, detail";

/// Moves every row of the old `audit` table into the new layout, one user at a time, and
/// drops it (with its indexes). Runs inside the caller's transaction: all or nothing.
fn migrate_old_table(t: &mut dyn Sql) -> Result<(), DbError> {
    let users = t.query("SELECT DISTINCT username FROM audit", &[])?;
    for u in users {
        let rows = t.query(
            &format!("SELECT {OLD_COLUMNS} FROM audit WHERE username = $1 ORDER BY device, at"),
            &[u[0].clone()],
        )?;
        write_old_rows(t, rows)?;
    }
    t.exec("DROP TABLE audit", &[])?;
    Ok(())
}

/// Old-layout rows `(at, username, device, action, household_id, detail)` as events,
/// grouped back into requests: consecutive events of one user and device within a second.
fn write_old_rows(t: &mut dyn Sql, rows: Vec<Row>) -> Result<(), DbError> {
    let text = |v: &Value| v.text().unwrap_or_default().to_string();
    let mut events: Vec<Event> = rows
        .iter()
        .map(|r| Event {
            at_ms: r[0].int(),
            username: text(&r[1]),
            device: text(&r[2]),
            action: text(&r[3]),
            household_id: r[4].text().and_then(|s| Uuid::parse_str(s).ok()),
            detail: text(&r[5]),
        })
        .collect();
    events
        .sort_by(|a, b| (&a.username, &a.device, a.at_ms).cmp(&(&b.username, &b.device, b.at_ms)));
    let mut rest = events.as_slice();
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take(256)
            .take_while(|e| {
                e.username == first.username
                    && e.device == first.device
                    && e.at_ms - first.at_ms <= 1000
            })
            .count();
        write_request(t, &rest[..n])?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Restore of a backup made by an older version: its `audit` rows (the old layout),
/// written in the new one. Also resets PostgreSQL's id sequence past the restored rows.
pub fn restore_legacy(t: &mut dyn Sql, postgres: bool, old_rows: Vec<Row>) -> Result<(), DbError> {
    if postgres {
        t.query(
            "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), (SELECT max(id) FROM audit_log))",
            &[],
        )?;
    }
    if old_rows.iter().any(|r| r.len() != 6) {
        return Err(DbError::Corrupt("audit".into()));
    }
    write_old_rows(t, old_rows)
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

/// Appends events inside an open transaction: one `audit_log` row per run of events of
/// the same user and device (a request's events are one run).
pub fn write(t: &mut dyn Sql, events: &[Event]) -> Result<(), DbError> {
    let mut rest = events;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|e| e.username == first.username && e.device == first.device)
            .count();
        write_request(t, &rest[..n])?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Household entries per multi-row insert: the largest power of two up to this that fits
/// (a few fixed statements, each prepared once).
const HOUSEHOLD_CHUNK: usize = 32;

/// Rows per bucket of the household index: an entry `(household, b)` says rows
/// `b * BUCKET_ROWS ..= b * BUCKET_ROWS + BUCKET_ROWS - 1` hold events of the household.
/// One entry per household per bucket, so a busy server's syncs mostly find theirs
/// already there (a lookup, no page written): at 500 syncs/s over 2,000 households a
/// household appears in ~18 requests of a bucket.
const BUCKET_ROWS: i64 = 1024;

/// One row for events that share user and device, and its household entries.
fn write_request(t: &mut dyn Sql, events: &[Event]) -> Result<(), DbError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    let at = events.iter().map(|e| e.at_ms).max().unwrap_or(first.at_ms);
    let action: Value = if events.iter().all(|e| e.action == first.action) {
        first.action.as_str().into()
    } else {
        Value::Null
    };
    let id = t.query(
        "INSERT INTO audit_log(at, username, device, action, body)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[
            at.into(),
            first.username.as_str().into(),
            first.device.as_str().into(),
            action,
            encode(at, events).into(),
        ],
    )?[0][0]
        .int();
    let mut households: Vec<[u8; 16]> = events
        .iter()
        .filter_map(|e| e.household_id.map(|h| *h.as_bytes()))
        .collect();
    households.sort_unstable();
    households.dedup();
    let mut rest = households.as_slice();
    while !rest.is_empty() {
        let n = 1 << rest.len().min(HOUSEHOLD_CHUNK).ilog2();
        let values: Vec<String> = (0..n).map(|i| format!("(${}, $1)", i + 2)).collect();
        let sql = format!(
            "INSERT INTO audit_households(household_id, bucket) VALUES {}
             ON CONFLICT (household_id, bucket) DO NOTHING",
            values.join(", ")
        );
        let mut params: Vec<Value> = Vec::with_capacity(n + 1);
        params.push(id.div_euclid(BUCKET_ROWS).into());
        params.extend(rest[..n].iter().map(|h| Value::Blob(h.to_vec())));
        t.exec(&sql, &params)?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Appends events in their own transaction; a failure is logged, not returned, so an
/// answer already computed is still sent. A serialized one: on PostgreSQL a snapshot
/// (REPEATABLE READ) transaction's `ON CONFLICT DO NOTHING` fails with a serialization
/// error when a concurrent writer inserted the same household entry.
pub fn record(db: &Db, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = db.tx(true, |t| write(t, events)) {
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

// The body: a version byte, then per event
//   varint  the request's `at` minus the event's (≥ 0)
//   byte    tag: bits 0–3 the action ([`ACTIONS`] index + 1; 0: spelled out next),
//           bit 4 a household follows, bits 5–7 the detail's form ([`Detail`])
//   [varint length + UTF-8]  the action, when spelled out
//   [16 bytes]               the household id
//   [detail]                 literal: varint length + UTF-8; count: varint n
const BODY_VERSION: u8 = 1;
const ACTIONS: &[&str] = &[
    "read",
    "write",
    "drop",
    "rejected",
    "login",
    "login_failed",
    "list_users",
    "erase",
];
const HAS_HOUSEHOLD: u8 = 0x10;
/// Detail forms (the tag's bits 5–7).
const DETAIL_LITERAL: u8 = 0;
const DETAIL_EMPTY: u8 = 1;
const DETAIL_SNAPSHOT: u8 = 2;
const DETAIL_CHANGES: u8 = 3;
const DETAIL_GET: u8 = 4;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// `"{n} changes"` exactly as `format!` writes it, as n.
fn changes_count(detail: &str) -> Option<u64> {
    let n: u64 = detail.strip_suffix(" changes")?.parse().ok()?;
    (format!("{n} changes") == detail).then_some(n)
}

/// The body of a request's events (`at`: the newest event's time).
pub fn encode(at: i64, events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + events.len() * 20);
    out.push(BODY_VERSION);
    for e in events {
        put_varint(&mut out, at.saturating_sub(e.at_ms).max(0) as u64);
        let action = ACTIONS.iter().position(|a| *a == e.action);
        let count = changes_count(&e.detail);
        let detail = match e.detail.as_str() {
            "" => DETAIL_EMPTY,
            "snapshot" => DETAIL_SNAPSHOT,
            "GET" => DETAIL_GET,
            _ if count.is_some() => DETAIL_CHANGES,
            _ => DETAIL_LITERAL,
        };
        let mut tag = action.map_or(0, |i| i as u8 + 1) | (detail << 5);
        if e.household_id.is_some() {
            tag |= HAS_HOUSEHOLD;
        }
        out.push(tag);
        if action.is_none() {
            put_text(&mut out, &e.action);
        }
        if let Some(h) = e.household_id {
            out.extend_from_slice(h.as_bytes());
        }
        match detail {
            DETAIL_LITERAL => put_text(&mut out, &e.detail),
            DETAIL_CHANGES => put_varint(&mut out, count.unwrap_or_default()),
            _ => {}
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn byte(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn text(&mut self) -> Option<String> {
        let n = usize::try_from(self.varint()?).ok()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
}

/// The events of one row (the inverse of [`encode`]); `None` when the body is corrupt.
pub fn decode(at: i64, username: &str, device: &str, body: &[u8]) -> Option<Vec<Event>> {
    let mut r = Reader(body);
    if r.byte()? != BODY_VERSION {
        return None;
    }
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let at_ms = at.checked_sub(i64::try_from(r.varint()?).ok()?)?;
        let tag = r.byte()?;
        let action = match tag & 0x0f {
            0 => r.text()?,
            i => ACTIONS.get(usize::from(i) - 1)?.to_string(),
        };
        let household_id = if tag & HAS_HOUSEHOLD != 0 {
            Some(Uuid::from_slice(r.bytes(16)?).ok()?)
        } else {
            None
        };
        let detail = match tag >> 5 {
            DETAIL_LITERAL => r.text()?,
            DETAIL_EMPTY => String::new(),
            DETAIL_SNAPSHOT => "snapshot".into(),
            DETAIL_GET => "GET".into(),
            DETAIL_CHANGES => format!("{} changes", r.varint()?),
            _ => return None,
        };
        out.push(Event {
            at_ms,
            username: username.to_string(),
            device: device.to_string(),
            action,
            household_id,
            detail,
        });
    }
    Some(out)
}

/// An event with its sort key: (at, row id, position in the row).
type Keyed = ((i64, i64, usize), Event);

/// A selected `audit_log` row `(id, at, username, device, body)` as events, each with
/// its sort key (at, row id, position).
fn row_events(r: &Row) -> Result<Vec<Keyed>, DbError> {
    let (id, at) = (r[0].int(), r[1].int());
    let events = decode(
        at,
        r[2].text().unwrap_or_default(),
        r[3].text().unwrap_or_default(),
        r[4].blob(),
    )
    .ok_or_else(|| DbError::Corrupt(format!("audit_log {id}")))?;
    Ok(events
        .into_iter()
        .enumerate()
        .map(|(i, e)| ((e.at_ms, id, i), e))
        .collect())
}

/// Rows per page when reading the log newest first.
const PAGE: usize = 256;

/// Reads the log, newest first (ties: the later request, then the later event of it).
pub fn query(
    db: &Db,
    user: Option<&str>,
    household: Option<Uuid>,
    since_ms: Option<i64>,
    limit: usize,
) -> Result<Vec<Event>, DbError> {
    let limit = limit.clamp(1, 1_000_000);
    let mut params: Vec<Value> = Vec::new();
    let mut filter = String::new();
    if let Some(u) = user {
        params.push(u.into());
        filter.push_str(&format!(" AND l.username = ${}", params.len()));
    }
    if let Some(s) = since_ms {
        // A row's `at` is its newest event's: every row holding an event since `s`.
        params.push(s.into());
        filter.push_str(&format!(" AND l.at >= ${}", params.len()));
    }
    let keep = |e: &Event| {
        household.is_none_or(|h| e.household_id == Some(h)) && since_ms.is_none_or(|s| e.at_ms >= s)
    };
    let mut found: Vec<Keyed> = Vec::new();
    db.tx(false, |t| -> Result<(), DbError> {
        if let Some(h) = household {
            // The rows of the household's buckets: read them all, keep its events, sort.
            params.push(h.as_bytes().to_vec().into());
            let sql = format!(
                "SELECT l.id, l.at, l.username, l.device, l.body
                 FROM audit_households h JOIN audit_log l
                 ON l.id >= h.bucket * {BUCKET_ROWS} AND l.id < (h.bucket + 1) * {BUCKET_ROWS}
                 WHERE h.household_id = ${}{filter}",
                params.len()
            );
            for r in t.query(&sql, &params)? {
                found.extend(row_events(&r)?.into_iter().filter(|(_, e)| keep(e)));
            }
            return Ok(());
        }
        // Newest rows first, a page at a time, until no later row can hold an event
        // newer than the `limit`-th found (a row's events are no newer than its `at`).
        let n = params.len();
        let first = format!(
            "SELECT l.id, l.at, l.username, l.device, l.body FROM audit_log l
             WHERE 1 = 1{filter} ORDER BY l.at DESC, l.id DESC LIMIT {PAGE}"
        );
        let next = format!(
            "SELECT l.id, l.at, l.username, l.device, l.body FROM audit_log l
             WHERE (l.at, l.id) < (${}, ${}){filter} ORDER BY l.at DESC, l.id DESC LIMIT {PAGE}",
            n + 1,
            n + 2
        );
        let mut rows = t.query(&first, &params)?;
        loop {
            let Some(last) = rows.last() else {
                return Ok(());
            };
            let (last_at, last_id) = (last[1].int(), last[0].int());
            for r in &rows {
                found.extend(row_events(r)?.into_iter().filter(|(_, e)| keep(e)));
            }
            if found.len() >= limit {
                found.sort_by_key(|f| std::cmp::Reverse(f.0));
                found.truncate(limit);
                if found[limit - 1].0 .0 >= last_at {
                    return Ok(());
                }
            }
            if rows.len() < PAGE {
                return Ok(());
            }
            let mut p = params.clone();
            p.push(last_at.into());
            p.push(last_id.into());
            rows = t.query(&next, &p)?;
        }
    })?;
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.truncate(limit);
    Ok(found.into_iter().map(|(_, e)| e).collect())
}

/// The `login` and `login_failed` events since `since_ms`, oldest first (what the login
/// limiter replays at start; read through the partial index of logins).
pub fn logins_since(t: &mut dyn Sql, since_ms: i64) -> Result<Vec<Event>, DbError> {
    let rows = t.query(
        "SELECT id, at, username, device, body FROM audit_log
         WHERE action IN ('login', 'login_failed') AND at >= $1 ORDER BY at, id",
        &[since_ms.into()],
    )?;
    let mut out = Vec::new();
    for r in &rows {
        out.extend(row_events(r)?.into_iter().map(|(_, e)| e));
    }
    out.retain(|e| e.at_ms >= since_ms);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: i64, action: &str, h: Option<Uuid>, detail: &str) -> Event {
        Event {
            at_ms: at,
            username: "kader".into(),
            device: "hp-1".into(),
            action: action.into(),
            household_id: h,
            detail: detail.into(),
        }
    }

    #[test]
    fn bodies_round_trip_every_form() {
        let h = Uuid::new_v4();
        let events = vec![
            ev(1_000, "write", Some(h), "30 changes"),
            ev(1_000, "read", Some(h), "snapshot"),
            ev(1_001, "read", Some(Uuid::new_v4()), "0 changes"),
            ev(1_001, "drop", Some(h), ""),
            ev(1_002, "rejected", Some(h), "out_of_scope"),
            ev(
                1_002,
                "login_failed",
                None,
                "invalid_credentials from 127.0.0.1",
            ),
            ev(1_003, "something-new", None, "GET"),
            // Not the form `format!` writes: kept literally.
            ev(1_003, "read", Some(h), "007 changes"),
            ev(1_003, "read", Some(h), "18446744073709551616 changes"),
            ev(900, "erase", Some(h), "surat 12/2026 — ñ"),
        ];
        let body = encode(1_003, &events);
        assert_eq!(decode(1_003, "kader", "hp-1", &body).unwrap(), events);
        // An end-of-day sync's event is ~19 bytes.
        let one = encode(5, &[ev(5, "read", Some(h), "3 changes")]);
        assert_eq!(one.len(), 1 + 1 + 1 + 16 + 1);
        // Corrupt bodies are refused, not misread.
        for cut in 1..body.len() {
            let got = decode(1_003, "kader", "hp-1", &body[..cut]);
            assert!(got.is_none_or(|g| g.len() < events.len()), "{cut}");
        }
        assert!(decode(1_003, "kader", "hp-1", &[2]).is_none());
        assert!(decode(1_003, "kader", "hp-1", &[1, 0, 0x0f]).is_none());
    }
}
