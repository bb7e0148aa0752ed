//! The sync logic over the storage trait: store pushed changes once (by hash) under a
//! global sequence, keep the household index and the materialised documents, and answer
//! a device's cursor with a page of changes, snapshots and drops in the user's scope.
//!
//! A cursor `(S, scope_S)` says the device holds every change ≤ S of each household that
//! was in `scope_S` at S. A pull fixes a window end T (the committed sequence), then walks
//! the candidate households in id order, page by page (the cursor keeps `T` and the last
//! household done, so an interrupted first sync resumes). For each household:
//! in scope at S and at T → its changes in (S, T] not pushed by this device; only at T →
//! a compacted snapshot (unless this device made every change of it); only at S → drop.
//! Location at a sequence comes from the `locations` log, written whenever a change
//! moves the household (area code or posyandu).

use automerge::{Automerge, ReadDoc};
use kunjung_core::HouseholdDoc;
use kunjung_protocol::{
    ack_digest, Cursor, HouseholdChanges, Rejected, Scope, Snapshot, SyncRequest, SyncResponse,
};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use crate::auth::{now_ms, User};
use crate::db::{Sql, Value};
use crate::error::ServerError;

/// Pending changes folded into a household's stored snapshot once this many accumulate.
const COMPACT_AFTER: i64 = 16;
/// Households per page unless the device asks for fewer.
pub const DEFAULT_PAGE: u32 = 500;
pub const MAX_PAGE: u32 = 2000;
/// A page stops growing past this many payload bytes.
const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// What the push part produced.
#[derive(Debug, Default)]
pub struct PushOutcome {
    pub acked: Vec<Vec<u8>>,
    pub rejected: Vec<Rejected>,
    pub stored: usize,
}

struct HouseholdRow {
    area: String,
    posyandu: Option<String>,
    created_seq: i64,
    last_seq: i64,
    move_seq: i64,
    snapshot_seq: i64,
    pending: i64,
}

/// A household's index row (without its snapshot, which only some paths need).
fn household_row(t: &mut dyn Sql, id: Uuid) -> Result<Option<HouseholdRow>, ServerError> {
    let rows = t.query(
        "SELECT area_code, posyandu_id, created_seq, last_seq, move_seq, snapshot_seq, pending
         FROM households WHERE id = $1",
        &[id.to_string().into()],
    )?;
    Ok(rows.into_iter().next().map(|r| HouseholdRow {
        area: r[0].text().unwrap_or_default().to_string(),
        posyandu: r[1].text().map(String::from),
        created_seq: r[2].int(),
        last_seq: r[3].int(),
        move_seq: r[4].int(),
        snapshot_seq: r[5].int(),
        pending: r[6].int(),
    }))
}

fn snapshot(t: &mut dyn Sql, id: Uuid) -> Result<Vec<u8>, ServerError> {
    Ok(t.query(
        "SELECT snapshot FROM households WHERE id = $1",
        &[id.to_string().into()],
    )?
    .into_iter()
    .next()
    .and_then(|mut r| r.pop())
    .map(Value::into_blob)
    .unwrap_or_default())
}

/// The materialised document: stored snapshot plus the changes after it.
fn load_doc(t: &mut dyn Sql, id: Uuid, row: &HouseholdRow) -> Result<HouseholdDoc, ServerError> {
    let changes: Vec<Vec<u8>> = if row.pending > 0 {
        t.query(
            "SELECT bytes FROM changes WHERE household_id = $1 AND seq > $2 ORDER BY seq",
            &[id.to_string().into(), row.snapshot_seq.into()],
        )?
        .into_iter()
        .map(|mut r| std::mem::replace(&mut r[0], Value::Null).into_blob())
        .collect()
    } else {
        Vec::new()
    };
    let snap = snapshot(t, id)?;
    HouseholdDoc::load_with_changes(&snap, changes.iter().map(|c| c.as_slice()))
        .map_err(|e| ServerError::Internal(format!("household {id}: {e}")))
}

/// Materialised documents kept between pushes, each valid for the household's
/// `last_seq` it was built at (any later write changes `last_seq`, so a stale entry is
/// never used, also with several server processes on one PostgreSQL). Bounded by count
/// (env `KUNJUNG_DOC_CACHE`, default 512; 0 turns it off).
pub struct DocCache {
    docs: std::sync::Mutex<std::collections::HashMap<Uuid, (i64, HouseholdDoc)>>,
    max: usize,
}

impl Default for DocCache {
    fn default() -> Self {
        let max = std::env::var("KUNJUNG_DOC_CACHE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512);
        DocCache::new(max)
    }
}

impl DocCache {
    pub fn new(max: usize) -> DocCache {
        DocCache {
            docs: Default::default(),
            max,
        }
    }

    /// Takes the document out if it was built at `last_seq`.
    fn take(&self, id: Uuid, last_seq: i64) -> Option<HouseholdDoc> {
        let mut m = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        match m.remove(&id) {
            Some((seq, d)) if seq == last_seq => Some(d),
            _ => None,
        }
    }

    fn has(&self, id: Uuid, last_seq: i64) -> bool {
        let m = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&id).is_some_and(|(seq, _)| *seq == last_seq)
    }

    fn put(&self, id: Uuid, last_seq: i64, doc: HouseholdDoc) {
        if self.max == 0 {
            return;
        }
        let mut m = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.max && !m.contains_key(&id) {
            // Evict an arbitrary entry (HashMap order is random enough for a cache).
            if let Some(k) = m.keys().next().copied() {
                m.remove(&k);
            }
        }
        m.insert(id, (last_seq, doc));
    }
}

/// Whether the household's location in its first change is inside `scope`.
fn created_in_scope(doc: &HouseholdDoc, scope: &Scope) -> bool {
    let am = doc.automerge();
    let Some(first) = am.get_changes(&[]).first().map(|c| c.hash()) else {
        return false;
    };
    am.fork_at(&[first])
        .ok()
        .and_then(|f| HouseholdDoc::from_automerge(f).ok())
        .and_then(|d| d.location().ok())
        .is_some_and(|(a, p)| scope.contains(&a, p.as_deref()))
}

fn reject(out: &mut PushOutcome, id: Uuid, hash: Option<Vec<u8>>, code: &str, message: String) {
    out.rejected.push(Rejected {
        household_id: id,
        hash: hash.map(ByteBuf::from),
        code: code.to_string(),
        message,
    });
}

/// Stores the pushed changes the user may write. Runs inside a serialized transaction.
pub fn push(
    t: &mut dyn Sql,
    user: &User,
    groups: &[HouseholdChanges],
) -> Result<PushOutcome, ServerError> {
    let (out, _) = push_cached(t, user, groups, &DocCache::new(0))?;
    Ok(out)
}

/// [`push`] with materialised documents taken from `cache`; returns the documents to put
/// back into it once the transaction has committed (with their new `last_seq`).
pub fn push_cached(
    t: &mut dyn Sql,
    user: &User,
    groups: &[HouseholdChanges],
    cache: &DocCache,
) -> Result<(PushOutcome, Vec<Kept>), ServerError> {
    let mut keep = Vec::new();
    let mut compact_after = Vec::new();
    let scope = user.scope();
    let mut out = PushOutcome::default();
    let now = now_ms();
    for g in groups {
        let id = g.household_id;
        let mut parsed = Vec::with_capacity(g.changes.len());
        let mut corrupt = None;
        for c in &g.changes {
            match kunjung_core::doc::parse_change(c) {
                Ok(ch) => parsed.push(ch),
                Err(e) => corrupt = Some(e),
            }
        }
        if let Some(e) = corrupt {
            reject(&mut out, id, None, "corrupt_change", e.to_string());
            continue;
        }
        if crate::erase::is_erased(t, id)? {
            reject(
                &mut out,
                id,
                None,
                "erased",
                "rumah tangga ini dihapus atas permintaan (household erased on request)".into(),
            );
            continue;
        }
        let row = household_row(t, id)?;
        if let Some(r) = &row {
            if !scope.contains(&r.area, r.posyandu.as_deref()) {
                reject(
                    &mut out,
                    id,
                    None,
                    "out_of_scope",
                    ServerError::OutOfScope.to_string(),
                );
                continue;
            }
        }
        // Already stored (a retry): acknowledge without storing again.
        let mut new = Vec::new();
        for ch in parsed {
            let h = ch.hash().0.to_vec();
            let stored_for = t
                .query(
                    "SELECT household_id FROM changes WHERE hash = $1",
                    &[h.clone().into()],
                )?
                .into_iter()
                .next()
                .map(|r| r[0].text().unwrap_or_default().to_string());
            if let Some(other) = stored_for {
                if other == id.to_string() {
                    out.acked.push(h);
                } else {
                    // Stored under another household id: not this one.
                    reject(
                        &mut out,
                        id,
                        Some(h),
                        "wrong_household",
                        "perubahan milik rumah tangga lain (change belongs to another household)"
                            .into(),
                    );
                }
            } else if !new
                .iter()
                .any(|c: &automerge::Change| c.hash() == ch.hash())
            {
                new.push(ch);
            }
        }
        if new.is_empty() {
            continue;
        }
        let applied = match &row {
            Some(r) => {
                let mut doc = match cache.take(id, r.last_seq) {
                    Some(d) => d,
                    None => load_doc(t, id, r)?,
                };
                doc.apply_parsed_in_place(new.clone()).map(|_| doc)
            }
            None => {
                let mut am = Automerge::new();
                am.apply_changes(new.iter().cloned())
                    .map_err(kunjung_core::CoreError::from)
                    .and_then(|_| HouseholdDoc::from_automerge(am))
                    .and_then(|d| {
                        if d.id()? == id {
                            Ok(d)
                        } else {
                            Err(kunjung_core::CoreError::Invalid(
                                "id rumah tangga tidak cocok (household id mismatch)".into(),
                            ))
                        }
                    })
            }
        };
        let doc = match applied {
            Ok(d) => d,
            Err(e) => {
                reject(&mut out, id, None, e.code(), e.to_string());
                continue;
            }
        };
        let (area, posyandu) = match doc.location() {
            Ok(l) => l,
            Err(e) => {
                reject(&mut out, id, None, e.code(), e.to_string());
                continue;
            }
        };
        // A new household is in scope if it was created in scope (it may have moved out
        // before its first sync: the move then reaches the new scope like any other).
        if row.is_none()
            && !scope.contains(&area, posyandu.as_deref())
            && !created_in_scope(&doc, &scope)
        {
            reject(
                &mut out,
                id,
                None,
                "out_of_scope",
                ServerError::OutOfScope.to_string(),
            );
            continue;
        }
        // Changes whose dependencies the server lacks wait on the device until they can apply.
        let am = doc.automerge();
        let (ready, waiting): (Vec<_>, Vec<_>) = new
            .into_iter()
            .partition(|c| am.get_change_by_hash(&c.hash()).is_some());
        let cacheable = waiting.is_empty();
        for c in waiting {
            reject(
                &mut out,
                id,
                Some(c.hash().0.to_vec()),
                "missing_dependencies",
                "perubahan sebelumnya belum diterima server; kirim ulang nanti (earlier changes missing; retry)".into(),
            );
        }
        if ready.is_empty() {
            continue;
        }
        let n = ready.len() as i64;
        let last = t.query(
            "UPDATE counters SET value = value + $1 WHERE name = 'seq' RETURNING value",
            &[n.into()],
        )?[0][0]
            .int();
        let mut seq = last - n;
        for c in &ready {
            seq += 1;
            t.exec(
                "INSERT INTO changes(seq, hash, household_id, device, username, bytes, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    seq.into(),
                    c.hash().0.to_vec().into(),
                    id.to_string().into(),
                    user.device.as_str().into(),
                    user.username.as_str().into(),
                    c.raw_bytes().to_vec().into(),
                    now.into(),
                ],
            )?;
            out.acked.push(c.hash().0.to_vec());
        }
        out.stored += ready.len();
        match row {
            None => {
                t.exec(
                    "INSERT INTO households(id, area_code, posyandu_id, created_seq, last_seq, move_seq, snapshot, snapshot_seq, pending)
                     VALUES ($1, $2, $3, $4, $4, $4, $5, $4, 0)",
                    &[
                        id.to_string().into(),
                        area.as_str().into(),
                        posyandu.clone().into(),
                        last.into(),
                        doc.automerge().save_nocompress().into(),
                    ],
                )?;
                // Created in scope and moved out before its first sync: recorded as a move,
                // so the pushing device is told to drop it.
                let moved_out = i64::from(!scope.contains(&area, posyandu.as_deref()));
                t.exec(
                    "INSERT INTO locations(household_id, seq, area_code, posyandu_id, is_move) VALUES ($1, $2, $3, $4, $5)",
                    &[id.to_string().into(), last.into(), area.into(), posyandu.into(), moved_out.into()],
                )?;
            }
            Some(r) => {
                let moved = r.area != area || r.posyandu != posyandu;
                if moved {
                    t.exec(
                        "INSERT INTO locations(household_id, seq, area_code, posyandu_id, is_move) VALUES ($1, $2, $3, $4, 1)",
                        &[
                            id.to_string().into(),
                            last.into(),
                            area.as_str().into(),
                            posyandu.clone().into(),
                        ],
                    )?;
                }
                let move_seq = if moved { last } else { r.move_seq };
                let due = r.pending + n >= COMPACT_AFTER;
                if due && cache.max > 0 {
                    // Folded after the commit, outside the write lock (see `sync_cached`).
                    compact_after.push(id);
                }
                if due && cache.max == 0 {
                    t.exec(
                        "UPDATE households SET area_code = $2, posyandu_id = $3, last_seq = $4, move_seq = $5,
                         snapshot = $6, snapshot_seq = $4, pending = 0 WHERE id = $1",
                        &[
                            id.to_string().into(),
                            area.into(),
                            posyandu.into(),
                            last.into(),
                            move_seq.into(),
                            doc.automerge().save_nocompress().into(),
                        ],
                    )?;
                } else {
                    t.exec(
                        "UPDATE households SET area_code = $2, posyandu_id = $3, last_seq = $4, move_seq = $5,
                         pending = pending + $6 WHERE id = $1",
                        &[
                            id.to_string().into(),
                            area.into(),
                            posyandu.into(),
                            last.into(),
                            move_seq.into(),
                            n.into(),
                        ],
                    )?;
                }
            }
        }
        // A document holding queued changes (missing dependencies) is not the stored state.
        if cacheable {
            let compact = compact_after.contains(&id);
            keep.push(Kept {
                id,
                last_seq: last,
                doc,
                compact,
            });
        }
    }
    Ok((out, keep))
}

/// A document as stored by a push: for the cache, and whether its snapshot is due.
pub struct Kept {
    pub id: Uuid,
    pub last_seq: i64,
    pub doc: HouseholdDoc,
    pub compact: bool,
}

/// SQL condition (and its parameters) for "the household's current location is in scope".
fn scope_sql(scope: &Scope, params: &mut Vec<Value>) -> String {
    if scope.all {
        return "1 = 1".into();
    }
    let mut parts = Vec::new();
    if !scope.posyandu.is_empty() {
        let mut ph = Vec::new();
        for p in &scope.posyandu {
            params.push(p.as_str().into());
            ph.push(format!("${}", params.len()));
        }
        parts.push(format!("posyandu_id IN ({})", ph.join(", ")));
    }
    for a in &scope.areas {
        params.push(a.as_str().into());
        let eq = params.len();
        params.push(format!("{a}.%").into());
        parts.push(format!(
            "(area_code = ${eq} OR area_code LIKE ${})",
            params.len()
        ));
    }
    if parts.is_empty() {
        "1 = 0".into()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// Candidate households after `after` for the window starting at `s`: those in the
/// current (or, when it changed, the previous) scope changed since `s`, and those moved
/// since `s` (which may have left the scope).
fn candidates_sql(
    s: i64,
    after: &str,
    scope: &Scope,
    old: Option<&Scope>,
    params: &mut Vec<Value>,
) -> String {
    params.push(after.into());
    let a = params.len();
    params.push(s.into());
    let sp = params.len();
    let mut cond = scope_sql(scope, params);
    let changed_since = match old {
        Some(old) => {
            cond = format!("({cond} OR {})", scope_sql(old, params));
            String::new()
        }
        None => format!("AND last_seq > ${sp}"),
    };
    format!(
        "SELECT id FROM households WHERE id > ${a} {changed_since} AND {cond}
         UNION SELECT household_id FROM locations WHERE seq > ${sp} AND is_move = 1 AND household_id > ${a}"
    )
}

fn location_at(
    t: &mut dyn Sql,
    id: Uuid,
    row: &HouseholdRow,
    seq: i64,
) -> Result<Option<(String, Option<String>)>, ServerError> {
    if row.created_seq > seq {
        return Ok(None);
    }
    if row.move_seq <= seq {
        return Ok(Some((row.area.clone(), row.posyandu.clone())));
    }
    Ok(t
        .query(
            "SELECT area_code, posyandu_id FROM locations WHERE household_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
            &[id.to_string().into(), seq.into()],
        )?
        .into_iter()
        .next()
        .map(|r| {
            (
                r[0].text().unwrap_or_default().to_string(),
                r[1].text().map(String::from),
            )
        }))
}

/// Change bytes of a household in (after, upto], optionally not those of one device.
/// A pruned change comes back empty.
fn changes_between(
    t: &mut dyn Sql,
    id: Uuid,
    after: i64,
    upto: i64,
    not_device: Option<&str>,
) -> Result<Vec<ByteBuf>, ServerError> {
    let rows = match not_device {
        Some(d) => t.query(
            "SELECT bytes FROM changes WHERE household_id = $1 AND seq > $2 AND seq <= $3 AND device <> $4 ORDER BY seq",
            &[id.to_string().into(), after.into(), upto.into(), d.into()],
        )?,
        None => t.query(
            "SELECT bytes FROM changes WHERE household_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            &[id.to_string().into(), after.into(), upto.into()],
        )?,
    };
    Ok(rows
        .into_iter()
        .map(|mut r| ByteBuf::from(std::mem::replace(&mut r[0], Value::Null).into_blob()))
        .collect())
}

/// The household's whole state as of `target`, as a snapshot and the changes after it:
/// exactly the state at `target` (later changes come with the next window), except when
/// changes it would need were pruned — then the current state (a later change may then
/// arrive twice, which Automerge applies once).
fn state_at(
    t: &mut dyn Sql,
    id: Uuid,
    row: &HouseholdRow,
    target: i64,
) -> Result<(Option<Vec<u8>>, Vec<ByteBuf>), ServerError> {
    if row.last_seq <= target {
        let snap = if row.pending > 0 {
            load_doc(t, id, row)?.automerge().save_nocompress()
        } else {
            snapshot(t, id)?
        };
        return Ok((Some(snap), Vec::new()));
    }
    if row.snapshot_seq <= target {
        let changes = changes_between(t, id, row.snapshot_seq, target, None)?;
        return Ok((Some(snapshot(t, id)?), changes));
    }
    // Compacted past the window: the changes up to it, unless pruned.
    let changes = changes_between(t, id, 0, target, None)?;
    if changes.iter().any(|c| c.is_empty()) {
        return Ok((
            Some(load_doc(t, id, row)?.automerge().save_nocompress()),
            Vec::new(),
        ));
    }
    Ok((None, changes))
}

/// Adds a household's snapshot and changes to the answer; returns their bytes.
fn add_state(
    resp: &mut SyncResponse,
    id: Uuid,
    snap: Option<Vec<u8>>,
    changes: Vec<ByteBuf>,
    pulled: &mut usize,
) -> usize {
    let mut bytes = 0;
    if let Some(snap) = snap {
        bytes += snap.len();
        *pulled += 1;
        resp.snapshots.push(Snapshot {
            household_id: id,
            bytes: ByteBuf::from(snap),
        });
    }
    if !changes.is_empty() {
        bytes += changes.iter().map(|c| c.len()).sum::<usize>();
        *pulled += changes.len();
        resp.changes.push(HouseholdChanges {
            household_id: id,
            changes,
        });
    }
    bytes
}

/// Answers one page of a pull.
pub fn pull(
    t: &mut dyn Sql,
    user: &User,
    cursor: Option<&Cursor>,
    page_size: Option<u32>,
    resp: &mut SyncResponse,
) -> Result<usize, ServerError> {
    let scope = user.scope();
    let page = page_size.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    // A cursor's scope counts only if it is the caller's or the server signed it for this
    // device (crate::cursor); so drops only name households of scopes this device held.
    let key = crate::cursor::key(t)?;
    let (s, old_scope) = match cursor {
        Some(c) => (
            c.seq as i64,
            crate::cursor::trusted_scope(&key, &user.device, c, &scope),
        ),
        None => (0, Scope::default()),
    };
    let held = cursor.is_some();
    let target = match cursor.and_then(|c| c.target) {
        Some(t) => t as i64,
        None => t.query("SELECT value FROM counters WHERE name = 'seq'", &[])?[0][0].int(),
    };
    let after = cursor
        .and_then(|c| c.target.and(c.after))
        .map(|u| u.to_string())
        .unwrap_or_default();
    let changed_scope = held && old_scope != scope;
    let old = changed_scope.then_some(&old_scope);

    let mut params = Vec::new();
    let cand = candidates_sql(s, &after, &scope, old, &mut params);
    let sql = format!("{cand} ORDER BY 1 LIMIT {}", page + 1);
    let ids: Vec<String> = t
        .query(&sql, &params)?
        .into_iter()
        .filter_map(|r| r[0].text().map(String::from))
        .collect();
    resp.total = if after.is_empty() && ids.len() <= page {
        // The first page holds every candidate: no need to count them again.
        ids.len() as u64
    } else {
        let mut p = Vec::new();
        let c = candidates_sql(s, "", &scope, old, &mut p);
        t.query(&format!("SELECT count(*) FROM ({c}) x"), &p)?[0][0].int() as u64
    };

    let mut bytes = 0usize;
    let mut done = 0usize;
    let mut last_done: Option<Uuid> = None;
    let mut pulled = 0usize;
    for id_text in ids.iter().take(page) {
        if bytes > PAGE_BYTES {
            break;
        }
        done += 1;
        let Ok(id) = Uuid::parse_str(id_text) else {
            continue;
        };
        last_done = Some(id);
        let Some(row) = household_row(t, id)? else {
            continue;
        };
        let in_s = held
            && location_at(t, id, &row, s)?
                .is_some_and(|(a, p)| old_scope.contains(&a, p.as_deref()));
        let in_t = location_at(t, id, &row, target)?
            .is_some_and(|(a, p)| scope.contains(&a, p.as_deref()));
        match (in_s, in_t) {
            (true, true) => {
                if row.last_seq <= s {
                    continue;
                }
                let changes = changes_between(t, id, s, target, Some(&user.device))?;
                if changes.iter().any(|c| c.is_empty()) {
                    // Pruned (this device was away long): send the whole state instead.
                    let (snap, changes) = state_at(t, id, &row, target)?;
                    bytes += add_state(resp, id, snap, changes, &mut pulled);
                } else if !changes.is_empty() {
                    bytes += add_state(resp, id, None, changes, &mut pulled);
                }
            }
            (false, true) => {
                if row.created_seq > s {
                    let foreign = t.query(
                        "SELECT count(*) FROM changes WHERE household_id = $1 AND seq <= $2 AND device <> $3",
                        &[id_text.as_str().into(), target.into(), user.device.as_str().into()],
                    )?[0][0]
                        .int();
                    if foreign == 0 {
                        // This device made every change of it: it has it all.
                        continue;
                    }
                }
                let (snap, changes) = state_at(t, id, &row, target)?;
                bytes += add_state(resp, id, snap, changes, &mut pulled);
            }
            (true, false) => resp.drops.push(id),
            (false, false) => {
                // Not in scope at S (e.g. created after S), not now: this device still
                // holds it if it pushed to it since S — then it must drop it too.
                // (A household created after T belongs to the next window.)
                if row.created_seq <= target
                    && !t
                        .query(
                            "SELECT 1 FROM changes WHERE household_id = $1 AND device = $2 AND seq > $3 AND seq <= $4 LIMIT 1",
                            &[id_text.as_str().into(), user.device.as_str().into(), s.into(), target.into()],
                        )?
                        .is_empty()
                {
                    resp.drops.push(id);
                }
            }
        }
    }
    let more = ids.len() > done;
    if !more && held {
        // Erasures in this window: dropped by devices whose scope held them.
        resp.drops.extend(crate::erase::erased_between(
            t,
            s,
            target,
            &[&old_scope, &scope],
        )?);
    }
    resp.more = more;
    if more {
        let last = last_done.unwrap_or_default();
        resp.next_cursor = Cursor {
            seq: s as u64,
            target: Some(target as u64),
            after: Some(last),
            scope: old_scope.clone(),
            mac: None,
        };
        let mut p = Vec::new();
        let c = candidates_sql(s, &last.to_string(), &scope, old, &mut p);
        resp.remaining = t.query(&format!("SELECT count(*) FROM ({c}) x"), &p)?[0][0].int() as u64;
    } else {
        resp.next_cursor = Cursor {
            seq: target as u64,
            target: None,
            after: None,
            scope,
            mac: None,
        };
        resp.remaining = 0;
    }
    crate::cursor::sign(&key, &user.device, &mut resp.next_cursor);
    Ok(pulled)
}

/// Materialises the pushed households' documents into `cache` (read-only work). An entry
/// that a concurrent write makes stale is simply not used.
fn prewarm(
    t: &mut dyn Sql,
    cache: &DocCache,
    groups: &[HouseholdChanges],
) -> Result<(), ServerError> {
    for g in groups {
        let id = g.household_id;
        let Some(row) = household_row(t, id)? else {
            continue;
        };
        if cache.has(id, row.last_seq) {
            continue;
        }
        if let Ok(doc) = load_doc(t, id, &row) {
            cache.put(id, row.last_seq, doc);
        }
    }
    Ok(())
}

/// One sync request: push (serialized write), then one page of pull (read).
pub fn sync(
    db: &crate::db::Db,
    user: &User,
    req: &SyncRequest,
) -> Result<(SyncResponse, PushOutcome, usize), ServerError> {
    sync_cached(db, &DocCache::new(0), user, req)
}

/// [`sync`] keeping materialised documents in `cache` between requests.
pub fn sync_cached(
    db: &crate::db::Db,
    cache: &DocCache,
    user: &User,
    req: &SyncRequest,
) -> Result<(SyncResponse, PushOutcome, usize), ServerError> {
    let pushed = if req.changes.is_empty() {
        PushOutcome::default()
    } else {
        if cache.max > 0 {
            // Load the documents before taking the write lock, so pushes of different
            // households load in parallel and the writer only applies and stores.
            db.read(|t| prewarm(t, cache, &req.changes))?;
        }
        let (out, keep) = db.tx(true, |t| push_cached(t, user, &req.changes, cache))?;
        for k in keep {
            if k.compact {
                // The new snapshot is made here, outside the lock; it is stored only if
                // nothing was written to the household meanwhile.
                let snap = k.doc.automerge().save_nocompress();
                let r = db.tx(true, |t| -> Result<u64, crate::db::DbError> {
                    t.exec(
                        "UPDATE households SET snapshot = $2, snapshot_seq = $3, pending = 0
                         WHERE id = $1 AND last_seq = $3",
                        &[k.id.to_string().into(), snap.into(), k.last_seq.into()],
                    )
                });
                // The push is committed either way; a later push tries again.
                if let Err(e) = r {
                    tracing::warn!(household = %k.id, error = %e, "compaction skipped");
                }
            }
            cache.put(k.id, k.last_seq, k.doc);
        }
        out
    };
    let mut resp = SyncResponse {
        acked: pushed.acked.len() as u32,
        acked_digest: ByteBuf::from(ack_digest(pushed.acked.iter().map(|h| h.as_slice())).to_vec()),
        rejected: pushed.rejected.clone(),
        ..SyncResponse::default()
    };
    let pulled = db.read(|t| pull(t, user, req.cursor.as_ref(), req.page_size, &mut resp))?;
    Ok((resp, pushed, pulled))
}

/// A household as JSON for `GET /v1/households/{id}`, if the user's scope holds it.
pub fn household_json(
    t: &mut dyn Sql,
    user: &User,
    id: Uuid,
) -> Result<serde_json::Value, ServerError> {
    let row = household_row(t, id)?
        .ok_or_else(|| ServerError::NotFound(format!("rumah tangga {id} (household)")))?;
    if !user.scope().contains(&row.area, row.posyandu.as_deref()) {
        return Err(ServerError::OutOfScope);
    }
    let doc = load_doc(t, id, &row)?;
    let view = doc
        .read()
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    serde_json::to_value(view).map_err(|e| ServerError::Internal(e.to_string()))
}

/// Server figures for `/metrics`.
pub fn counts(t: &mut dyn Sql) -> Result<(i64, i64, i64), ServerError> {
    let c = t.query("SELECT value FROM counters WHERE name = 'seq'", &[])?[0][0].int();
    let h = t.query("SELECT count(*) FROM households", &[])?[0][0].int();
    let u = t.query("SELECT count(*) FROM users", &[])?[0][0].int();
    Ok((c, h, u))
}

/// The materialised document of a household and the sequence number of its last change,
/// or `None` when the server does not hold it (for the reports' projections).
pub fn household_doc(
    t: &mut dyn Sql,
    id: Uuid,
) -> Result<Option<(HouseholdDoc, i64)>, ServerError> {
    let Some(row) = household_row(t, id)? else {
        return Ok(None);
    };
    let doc = load_doc(t, id, &row)?;
    Ok(Some((doc, row.last_seq)))
}
