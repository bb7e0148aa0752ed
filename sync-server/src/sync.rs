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
use crate::db::{DbError, Sql, Value};
use crate::error::ServerError;

/// Pending changes folded into a household's stored snapshot once this many accumulate
/// (by the push that reaches it on the slow path, else by the background compactor).
pub const COMPACT_AFTER: i64 = 16;
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
    /// Households that got new changes.
    pub written: Vec<Uuid>,
}

#[derive(Clone)]
struct HouseholdRow {
    area: String,
    posyandu: Option<String>,
    created_seq: i64,
    last_seq: i64,
    move_seq: i64,
    snapshot_seq: i64,
    pending: i64,
    /// [`ActorSeqs`] as JSON; none for rows kept before it was.
    actors: Option<String>,
}

/// A household's index row (without its snapshot, which only some paths need).
fn household_row(t: &mut dyn Sql, id: Uuid) -> Result<Option<HouseholdRow>, ServerError> {
    let rows = t.query(
        "SELECT area_code, posyandu_id, created_seq, last_seq, move_seq, snapshot_seq, pending, actors
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
        actors: r[7].text().map(String::from),
    }))
}

fn snapshot(t: &mut dyn Sql, id: Uuid) -> Result<Vec<u8>, ServerError> {
    Ok(t.query(
        "SELECT bytes FROM snapshots WHERE household_id = $1",
        &[id.to_string().into()],
    )?
    .into_iter()
    .next()
    .and_then(|mut r| r.pop())
    .map(Value::into_blob)
    .unwrap_or_default())
}

/// Stores a household's snapshot (`snapshots`, a table of its own: the index row in
/// `households` stays small, so the pushes that rewrite it never touch these pages).
/// Written in the same transaction as the `households.snapshot_seq` it belongs to; a
/// compaction first updates that row under its condition ("no one replaced the snapshot
/// meanwhile") and stores the bytes only if the row matched.
pub(crate) fn store_snapshot(t: &mut dyn Sql, id: &str, bytes: &[u8]) -> Result<(), DbError> {
    t.exec(
        "INSERT INTO snapshots(household_id, bytes) VALUES ($1, $2)
         ON CONFLICT (household_id) DO UPDATE SET bytes = excluded.bytes",
        &[id.into(), bytes.into()],
    )?;
    Ok(())
}

fn put_snapshot(t: &mut dyn Sql, id: Uuid, bytes: Vec<u8>) -> Result<(), DbError> {
    store_snapshot(t, &id.to_string(), &bytes)
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
#[derive(Clone)]
pub struct DocCache {
    docs: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Uuid, (i64, HouseholdDoc)>>>,
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

/// Map keys whose change may move a household or touch its identity or layout: a change
/// with an op on one of them, on the document root, or inside a list or text, goes
/// through the household's document (the slow path).
const DOCUMENT_KEYS: &[&str] = &[
    "id",
    "area_code",
    "posyandu_id",
    "household",
    "members",
    "visits",
    "referrals",
    "reviews",
    "schema",
];

/// Whether a change only writes fields of records below the document's top level (a new
/// visit, an edited field): it cannot move the household, change its id or bring in
/// another household's history, so it is stored from its header alone (the fast path).
fn record_only(c: &automerge::Change) -> bool {
    use automerge::legacy::{Key, ObjectId};
    c.author().is_none()
        && c.decode().operations.iter().all(|op| {
            matches!(op.obj, ObjectId::Id(_))
                && matches!(&op.key, Key::Map(k) if !DOCUMENT_KEYS.contains(&k.as_str()))
        })
}

/// One household's pushed changes, parsed and classified before the write transaction.
pub struct Prepared {
    pub household_id: Uuid,
    /// The parsed changes, or why one of them is corrupt.
    changes: Result<Vec<automerge::Change>, String>,
    /// Every change is [`record_only`].
    record_only: bool,
}

/// Parses and classifies pushed changes (CPU work, done outside the write lock).
pub fn prepare(groups: &[HouseholdChanges]) -> Vec<Prepared> {
    groups
        .iter()
        .map(|g| {
            let mut parsed = Vec::with_capacity(g.changes.len());
            let mut corrupt = None;
            for c in &g.changes {
                match kunjung_core::doc::parse_change(c) {
                    Ok(ch) => parsed.push(ch),
                    Err(e) => corrupt = Some(e.to_string()),
                }
            }
            let record = corrupt.is_none() && parsed.iter().all(record_only);
            Prepared {
                household_id: g.household_id,
                changes: match corrupt {
                    Some(e) => Err(e),
                    None => Ok(parsed),
                },
                record_only: record,
            }
        })
        .collect()
}

/// Highest change sequence number per actor (hex) of a household: a pushed change whose
/// actor already has its sequence number is a fork Automerge would refuse.
type ActorSeqs = std::collections::BTreeMap<String, u64>;

fn actor_seqs_of(text: Option<&str>) -> Option<ActorSeqs> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

fn note_actor(seqs: &mut ActorSeqs, c: &automerge::Change) {
    let e = seqs.entry(c.actor_id().to_hex_string()).or_insert(0);
    *e = (*e).max(c.seq());
}

/// Which household each stored change among a push's hashes and dependencies belongs
/// to, looked up in a few queries up front (one per 64 hashes) and kept up to date as
/// the push stores changes.
struct Stored(std::collections::HashMap<Vec<u8>, String>);

/// The value counts of [`Stored::lookup`]'s statements (a chunk is padded to the next):
/// a handful of cached statements, and an end-of-day push (a dozen dependencies) binds 16
/// values, not 64. The last is the most hashes per query.
const LOOKUP_SIZES: [usize; 4] = [8, 16, 32, 64];
const LOOKUP_CHUNK: usize = LOOKUP_SIZES[LOOKUP_SIZES.len() - 1];

/// The hash lookups of [`Stored::lookup`], one per [`LOOKUP_SIZES`].
static LOOKUP_SQL: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
    LOOKUP_SIZES.map(|n| {
        let ph: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        format!(
            "SELECT hash, household_id FROM changes WHERE hash IN ({})",
            ph.join(", ")
        )
    })
});

impl Stored {
    fn fetch<'a>(
        t: &mut dyn Sql,
        groups: impl Iterator<Item = &'a Prepared>,
    ) -> Result<Stored, ServerError> {
        let mut s = Stored(Default::default());
        s.add(t, groups)?;
        Ok(s)
    }

    /// Looks up the hashes and dependencies of more groups.
    fn add<'a>(
        &mut self,
        t: &mut dyn Sql,
        groups: impl Iterator<Item = &'a Prepared>,
    ) -> Result<(), ServerError> {
        let mut want: std::collections::BTreeSet<Vec<u8>> = Default::default();
        for g in groups {
            for c in g.changes.iter().flatten() {
                want.insert(c.hash().0.to_vec());
                want.extend(c.deps().iter().map(|d| d.0.to_vec()));
            }
        }
        self.lookup(t, want)
    }

    /// Looks up which household holds each of these hashes.
    fn lookup(
        &mut self,
        t: &mut dyn Sql,
        want: std::collections::BTreeSet<Vec<u8>>,
    ) -> Result<(), ServerError> {
        if want.is_empty() {
            return Ok(());
        }
        let want: Vec<Vec<u8>> = want.into_iter().collect();
        for chunk in want.chunks(LOOKUP_CHUNK) {
            // Padded with the first hash up to the statement's count.
            let k = LOOKUP_SIZES
                .iter()
                .position(|&n| n >= chunk.len())
                .unwrap_or(LOOKUP_SIZES.len() - 1);
            let (n, sql) = (LOOKUP_SIZES[k], LOOKUP_SQL[k].as_str());
            let mut params: Vec<Value> = chunk.iter().map(|h| h.clone().into()).collect();
            while params.len() < n {
                params.push(chunk[0].clone().into());
            }
            for r in t.query(sql, &params)? {
                self.0.insert(
                    r[0].blob().to_vec(),
                    r[1].text().unwrap_or_default().to_string(),
                );
            }
        }
        Ok(())
    }

    fn household(&self, hash: &[u8]) -> Option<&str> {
        self.0.get(hash).map(String::as_str)
    }
}

/// Stores the pushed changes the user may write. Runs inside a serialized transaction.
pub fn push(
    t: &mut dyn Sql,
    user: &User,
    groups: &[HouseholdChanges],
) -> Result<PushOutcome, ServerError> {
    let (out, _) = push_prepared(t, user, &prepare(groups), &DocCache::new(0))?;
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
    push_prepared(t, user, &prepare(groups), cache)
}

/// Sequence numbers of one piece of write work, assigned in memory under the counter's
/// lock (the serialized transaction holds it: `BEGIN IMMEDIATE` on SQLite, the counter
/// row's lock on PostgreSQL) and written back once at the end ([`Seqs::flush`]), instead
/// of one counter update per household.
#[derive(Default)]
struct Seqs {
    /// The counter as read, and the last number assigned since.
    read: Option<(i64, i64)>,
}

impl Seqs {
    /// Assigns `n` numbers; returns the last one.
    fn alloc(&mut self, t: &mut dyn Sql, n: i64) -> Result<i64, ServerError> {
        let (start, last) = match self.read {
            Some(r) => r,
            None => {
                let v = t.query("SELECT value FROM counters WHERE name = 'seq'", &[])?[0][0].int();
                (v, v)
            }
        };
        self.read = Some((start, last + n));
        Ok(last + n)
    }

    /// Takes back the last `n` numbers assigned (their writes did not happen).
    fn unalloc(&mut self, n: i64) {
        if let Some((start, last)) = self.read {
            self.read = Some((start, last - n));
        }
    }

    fn flush(&self, t: &mut dyn Sql) -> Result<(), ServerError> {
        if let Some((start, last)) = self.read {
            if last != start {
                t.exec(
                    "UPDATE counters SET value = $1 WHERE name = 'seq'",
                    &[last.into()],
                )?;
            }
        }
        Ok(())
    }
}

/// Appends changes to the log with the sequence numbers ending at `last`.
#[allow(clippy::too_many_arguments)]
fn append(
    t: &mut dyn Sql,
    user: &User,
    id: Uuid,
    ready: &[automerge::Change],
    last: i64,
    now: i64,
    out: &mut PushOutcome,
    stored: &mut Stored,
) -> Result<(), ServerError> {
    let mut seq = last - ready.len() as i64;
    let key = id.to_string();
    for c in ready {
        seq += 1;
        stored.0.insert(c.hash().0.to_vec(), key.clone());
        t.exec(
            "INSERT INTO changes(seq, hash, household_id, device, username, bytes, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                seq.into(),
                c.hash().0.to_vec().into(),
                key.as_str().into(),
                user.device.as_str().into(),
                user.username.as_str().into(),
                c.raw_bytes().to_vec().into(),
                now.into(),
            ],
        )?;
        out.acked.push(c.hash().0.to_vec());
    }
    out.stored += ready.len();
    out.written.push(id);
    Ok(())
}

const MISSING_DEPS: &str =
    "perubahan sebelumnya belum diterima server; kirim ulang nanti (earlier changes missing; retry)";

/// The fast path for an existing household whose new changes are all [`record_only`]:
/// dependencies checked against the log, actor sequence numbers against the household's
/// index row, then appended. Gives the changes back (nothing written) when the household
/// needs the slow path after all (an index row from before `actors` was kept, or a change
/// Automerge would refuse as a fork).
#[allow(clippy::too_many_arguments)]
fn push_fast(
    t: &mut dyn Sql,
    user: &User,
    id: Uuid,
    row: &HouseholdRow,
    new: Vec<automerge::Change>,
    now: i64,
    out: &mut PushOutcome,
    stored: &mut Stored,
    seqs_out: &mut Seqs,
) -> Result<Option<Vec<automerge::Change>>, ServerError> {
    let Some(mut seqs) = actor_seqs_of(row.actors.as_deref()) else {
        return Ok(Some(new));
    };
    let key = id.to_string();
    let mut known: std::collections::HashSet<automerge::ChangeHash> = Default::default();
    let mut left: Vec<usize> = (0..new.len()).collect();
    let mut order: Vec<usize> = Vec::with_capacity(new.len());
    // Dependencies first (a device sends oldest first, so this is usually one pass).
    loop {
        let mut progress = false;
        let mut still = Vec::new();
        for i in left {
            let c = &new[i];
            let mut ok = true;
            for d in c.deps() {
                if known.contains(d) {
                    continue;
                }
                if stored.household(&d.0) == Some(key.as_str()) {
                    known.insert(*d);
                } else {
                    ok = false;
                    break;
                }
            }
            if ok {
                let have = seqs
                    .get(&c.actor_id().to_hex_string())
                    .copied()
                    .unwrap_or(0);
                if c.seq() <= have {
                    return Ok(Some(new));
                }
                note_actor(&mut seqs, c);
                known.insert(c.hash());
                order.push(i);
                progress = true;
            } else {
                still.push(i);
            }
        }
        left = still;
        if !progress || left.is_empty() {
            break;
        }
    }
    for &i in &left {
        reject(
            out,
            id,
            Some(new[i].hash().0.to_vec()),
            "missing_dependencies",
            MISSING_DEPS.into(),
        );
    }
    if order.is_empty() {
        return Ok(None);
    }
    let mut slots: Vec<Option<automerge::Change>> = new.into_iter().map(Some).collect();
    let ready: Vec<automerge::Change> = order.iter().filter_map(|&i| slots[i].take()).collect();
    let n = ready.len() as i64;
    let last = seqs_out.alloc(t, n)?;
    append(t, user, id, &ready, last, now, out, stored)?;
    t.exec(
        "UPDATE households SET last_seq = $2, pending = pending + $3, actors = $4 WHERE id = $1",
        &[
            key.into(),
            last.into(),
            n.into(),
            serde_json::to_string(&seqs).unwrap_or_default().into(),
        ],
    )?;
    Ok(None)
}

/// What a read connection saw of a push's households before the write lock: their
/// index rows, which are erased, and which of the pushed hashes and their dependencies
/// the log held ([`precheck`]).
pub struct Precheck {
    stored: Stored,
    rows: std::collections::HashMap<Uuid, HouseholdRow>,
    erased: std::collections::HashSet<Uuid>,
}

/// Reads what [`plan`] needs, on a read connection (no lock).
///
/// Only the hashes whose answer can matter are looked up: every dependency outside the
/// push, and a pushed change only when its actor sequence number is not above the
/// household's highest for that actor (a retry, or a fork). A change above it cannot be
/// stored under this household yet — [`plan`] takes it as new (and a copy stored under
/// another household is refused by its insert). At the end of a day that is a few
/// dependencies per household instead of every hash.
pub fn precheck(t: &mut dyn Sql, groups: &[Prepared]) -> Result<Precheck, ServerError> {
    let fast: Vec<&Prepared> = groups.iter().filter(|g| g.record_only).collect();
    let mut rows = std::collections::HashMap::new();
    let mut erased = std::collections::HashSet::new();
    for g in &fast {
        let id = g.household_id;
        if crate::erase::is_erased(t, id)? {
            erased.insert(id);
        } else if let Some(r) = household_row(t, id)? {
            rows.insert(id, r);
        }
    }
    let mut want: std::collections::BTreeSet<Vec<u8>> = Default::default();
    for g in &fast {
        let Ok(changes) = &g.changes else { continue };
        let seqs = rows
            .get(&g.household_id)
            .and_then(|r: &HouseholdRow| actor_seqs_of(r.actors.as_deref()));
        let own: std::collections::HashSet<automerge::ChangeHash> =
            changes.iter().map(|c| c.hash()).collect();
        for c in changes {
            let have = seqs
                .as_ref()
                .map(|s| s.get(&c.actor_id().to_hex_string()).copied().unwrap_or(0));
            if have.is_none_or(|h| c.seq() <= h) {
                want.insert(c.hash().0.to_vec());
            }
            want.extend(
                c.deps()
                    .iter()
                    .filter(|d| !own.contains(d))
                    .map(|d| d.0.to_vec()),
            );
        }
    }
    let mut stored = Stored(Default::default());
    stored.lookup(t, want)?;
    Ok(Precheck {
        stored,
        rows,
        erased,
    })
}

/// One household's push planned before the write lock from a [`Precheck`]: every change
/// [`record_only`], the household's index row in scope, every dependency in its log (or
/// earlier in the push) and every actor sequence number new. Inside the lock it only
/// needs the row unchanged since (`last_seq` still `expected_last`), checked by the very
/// update that stores the new counters; otherwise the household takes the checks inside
/// the lock as before.
pub struct FastPlan {
    expected_last: i64,
    /// Where the household was when read.
    area: String,
    posyandu: Option<String>,
    /// Indexes into the group's changes, dependencies first.
    ready: Vec<usize>,
    /// The household's [`ActorSeqs`] after them, as JSON.
    actors: String,
    /// Already stored under this household (a retry).
    acked: Vec<Vec<u8>>,
}

/// Plans the fast path of each household that can take it (see [`FastPlan`]); `None`
/// for the others. CPU work on what [`precheck`] read, done outside the write lock.
pub fn plan(user: &User, groups: &[Prepared], pre: &Precheck) -> Vec<Option<FastPlan>> {
    let scope = user.scope();
    groups.iter().map(|g| plan_one(&scope, g, pre)).collect()
}

fn plan_one(scope: &Scope, g: &Prepared, pre: &Precheck) -> Option<FastPlan> {
    let id = g.household_id;
    let parsed = g.changes.as_ref().ok()?;
    if !g.record_only || pre.erased.contains(&id) {
        return None;
    }
    let row = pre.rows.get(&id)?;
    if !scope.contains(&row.area, row.posyandu.as_deref()) {
        return None;
    }
    let mut seqs = actor_seqs_of(row.actors.as_deref())?;
    let key = id.to_string();
    let mut acked = Vec::new();
    let mut new: Vec<usize> = Vec::new();
    for (i, ch) in parsed.iter().enumerate() {
        match pre.stored.household(&ch.hash().0) {
            Some(other) if other == key => acked.push(ch.hash().0.to_vec()),
            // Stored under another household: refused inside the lock.
            Some(_) => return None,
            None => {
                if !new.iter().any(|&j| parsed[j].hash() == ch.hash()) {
                    new.push(i);
                }
            }
        }
    }
    let mut known: std::collections::HashSet<automerge::ChangeHash> = Default::default();
    let mut ready = Vec::with_capacity(new.len());
    let mut left = new;
    while !left.is_empty() {
        let before = left.len();
        let mut still = Vec::new();
        for i in std::mem::take(&mut left) {
            let c = &parsed[i];
            let deps_ok = c
                .deps()
                .iter()
                .all(|d| known.contains(d) || pre.stored.household(&d.0) == Some(key.as_str()));
            if !deps_ok {
                still.push(i);
                continue;
            }
            let have = seqs
                .get(&c.actor_id().to_hex_string())
                .copied()
                .unwrap_or(0);
            if c.seq() <= have {
                // Automerge would refuse it as a fork: the slow path says so.
                return None;
            }
            note_actor(&mut seqs, c);
            known.insert(c.hash());
            ready.push(i);
        }
        if still.len() == before {
            // A dependency the reader did not see: checked inside the lock (and refused
            // there if it is still missing).
            return None;
        }
        left = still;
    }
    Some(FastPlan {
        expected_last: row.last_seq,
        area: row.area.clone(),
        posyandu: row.posyandu.clone(),
        ready,
        actors: serde_json::to_string(&seqs).unwrap_or_default(),
        acked,
    })
}

/// Stores prepared pushes (see [`prepare`]). Runs inside a serialized transaction.
pub fn push_prepared(
    t: &mut dyn Sql,
    user: &User,
    groups: &[Prepared],
    cache: &DocCache,
) -> Result<(PushOutcome, Vec<Kept>), ServerError> {
    let none: Vec<Option<FastPlan>> = groups.iter().map(|_| None).collect();
    push_planned(t, user, groups, &none, cache)
}

/// [`push_prepared`] with fast plans made before the lock (see [`FastPlan`]).
pub fn push_planned(
    t: &mut dyn Sql,
    user: &User,
    groups: &[Prepared],
    plans: &[Option<FastPlan>],
    cache: &DocCache,
) -> Result<(PushOutcome, Vec<Kept>), ServerError> {
    let mut keep = Vec::new();
    let scope = user.scope();
    let mut out = PushOutcome::default();
    let now = now_ms();
    let mut seqs = Seqs::default();
    // The log's view of the hashes of the households checked inside the lock.
    let mut stored = Stored::fetch(
        t,
        groups
            .iter()
            .zip(plans)
            .filter(|(_, p)| p.is_none())
            .map(|(g, _)| g),
    )?;
    for (g, p) in groups.iter().zip(plans) {
        let id = g.household_id;
        if let (Some(p), Ok(parsed)) = (p, &g.changes) {
            if push_plan(
                t,
                user,
                id,
                parsed,
                p,
                now,
                &mut seqs,
                &mut out,
                &mut stored,
            )? {
                continue;
            }
            // The household changed since it was read: checked inside the lock.
            stored.add(t, std::iter::once(g))?;
        }
        let parsed = match &g.changes {
            Ok(p) => p,
            Err(e) => {
                reject(&mut out, id, None, "corrupt_change", e.clone());
                continue;
            }
        };
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
        let mut new: Vec<automerge::Change> = Vec::new();
        for ch in parsed {
            let h = ch.hash().0.to_vec();
            if let Some(other) = stored.household(&h) {
                if other == id.to_string() {
                    out.acked.push(h);
                } else {
                    // Stored under another household id: not this one.
                    reject(
                        &mut out,
                        id,
                        Some(h),
                        "wrong_household",
                        WRONG_HOUSEHOLD.into(),
                    );
                }
            } else if !new.iter().any(|c| c.hash() == ch.hash()) {
                new.push(ch.clone());
            }
        }
        if new.is_empty() {
            continue;
        }
        if let (Some(r), true) = (&row, g.record_only) {
            match push_fast(t, user, id, r, new, now, &mut out, &mut stored, &mut seqs)? {
                None => continue,
                Some(back) => new = back,
            }
        }
        if let Some(k) = push_slow(
            t,
            user,
            &scope,
            id,
            row,
            new,
            cache,
            now,
            &mut out,
            &mut stored,
            &mut seqs,
        )? {
            keep.push(k);
        }
    }
    seqs.flush(t)?;
    Ok((out, keep))
}

const WRONG_HOUSEHOLD: &str =
    "perubahan milik rumah tangga lain (change belongs to another household)";

/// Stores a [`FastPlan`] if the household's row is as it was read; `false` (nothing
/// written) otherwise.
#[allow(clippy::too_many_arguments)]
fn push_plan(
    t: &mut dyn Sql,
    user: &User,
    id: Uuid,
    parsed: &[automerge::Change],
    p: &FastPlan,
    now: i64,
    seqs: &mut Seqs,
    out: &mut PushOutcome,
    stored: &mut Stored,
) -> Result<bool, ServerError> {
    let key = id.to_string();
    if p.ready.is_empty() {
        // Everything already stored: committed before the reader looked.
        out.acked.extend(p.acked.iter().cloned());
        return Ok(true);
    }
    let n = p.ready.len() as i64;
    let last = seqs.alloc(t, n)?;
    let updated = t.exec(
        "UPDATE households SET last_seq = $2, pending = pending + $3, actors = $4
         WHERE id = $1 AND last_seq = $5",
        &[
            key.as_str().into(),
            last.into(),
            n.into(),
            p.actors.as_str().into(),
            p.expected_last.into(),
        ],
    )?;
    if updated == 0 {
        // Written since it was read. Usually another device's visits to the same
        // household, which leave the plan valid: the household did not move, and this
        // push's actor sequence numbers are still new (else: the checks inside the lock).
        let Some(row) = household_row(t, id)? else {
            seqs.unalloc(n);
            return Ok(false);
        };
        let Some(mut now_seqs) = actor_seqs_of(row.actors.as_deref()) else {
            seqs.unalloc(n);
            return Ok(false);
        };
        let fresh = row.area == p.area
            && row.posyandu == p.posyandu
            && p.ready.iter().all(|&i| {
                let c = &parsed[i];
                let ok = now_seqs
                    .get(&c.actor_id().to_hex_string())
                    .is_none_or(|&have| c.seq() > have);
                note_actor(&mut now_seqs, c);
                ok
            });
        if !fresh {
            seqs.unalloc(n);
            return Ok(false);
        }
        t.exec(
            "UPDATE households SET last_seq = $2, pending = pending + $3, actors = $4 WHERE id = $1",
            &[
                key.as_str().into(),
                last.into(),
                n.into(),
                serde_json::to_string(&now_seqs).unwrap_or_default().into(),
            ],
        )?;
    }
    let mut seq = last - n;
    for &i in &p.ready {
        let c = &parsed[i];
        seq += 1;
        let h = c.hash().0.to_vec();
        // A hash stored since the reader looked can only be under another household
        // (this one's row is unchanged): refused, and the transaction with it.
        let inserted = t.exec(
            "INSERT INTO changes(seq, hash, household_id, device, username, bytes, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING",
            &[
                seq.into(),
                h.clone().into(),
                key.as_str().into(),
                user.device.as_str().into(),
                user.username.as_str().into(),
                c.raw_bytes().into(),
                now.into(),
            ],
        )?;
        if inserted == 0 {
            return Err(ServerError::Conflict(WRONG_HOUSEHOLD.into()));
        }
        stored.0.insert(h.clone(), key.clone());
        out.acked.push(h);
    }
    out.acked.extend(p.acked.iter().cloned());
    out.stored += p.ready.len();
    out.written.push(id);
    Ok(true)
}

/// The slow path: the changes are applied to the household's document, which decides
/// whether they belong to it, where it is afterwards (a move) and, for a new household,
/// whether it was created in scope.
#[allow(clippy::too_many_arguments)]
fn push_slow(
    t: &mut dyn Sql,
    user: &User,
    scope: &Scope,
    id: Uuid,
    row: Option<HouseholdRow>,
    new: Vec<automerge::Change>,
    cache: &DocCache,
    now: i64,
    out: &mut PushOutcome,
    stored: &mut Stored,
    seq_alloc: &mut Seqs,
) -> Result<Option<Kept>, ServerError> {
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
            reject(out, id, None, e.code(), e.to_string());
            return Ok(None);
        }
    };
    let (area, posyandu) = match doc.location() {
        Ok(l) => l,
        Err(e) => {
            reject(out, id, None, e.code(), e.to_string());
            return Ok(None);
        }
    };
    // A new household is in scope if it was created in scope (it may have moved out
    // before its first sync: the move then reaches the new scope like any other).
    if row.is_none()
        && !scope.contains(&area, posyandu.as_deref())
        && !created_in_scope(&doc, scope)
    {
        reject(
            out,
            id,
            None,
            "out_of_scope",
            ServerError::OutOfScope.to_string(),
        );
        return Ok(None);
    }
    // Changes whose dependencies the server lacks wait on the device until they can apply.
    let am = doc.automerge();
    let (ready, waiting): (Vec<_>, Vec<_>) = new
        .into_iter()
        .partition(|c| am.get_change_by_hash(&c.hash()).is_some());
    let cacheable = waiting.is_empty();
    for c in waiting {
        reject(
            out,
            id,
            Some(c.hash().0.to_vec()),
            "missing_dependencies",
            MISSING_DEPS.into(),
        );
    }
    if ready.is_empty() {
        return Ok(None);
    }
    // Actor sequence numbers for the fast path: kept up to date here, or (an index row
    // from before they were kept) taken from the whole document once.
    let mut seqs = match row
        .as_ref()
        .and_then(|r| actor_seqs_of(r.actors.as_deref()))
    {
        Some(s) => s,
        None => {
            let mut s = ActorSeqs::new();
            for c in am.get_changes(&[]) {
                note_actor(&mut s, &c);
            }
            s
        }
    };
    for c in &ready {
        note_actor(&mut seqs, c);
    }
    let seqs = serde_json::to_string(&seqs).unwrap_or_default();
    let n = ready.len() as i64;
    let last = seq_alloc.alloc(t, n)?;
    append(t, user, id, &ready, last, now, out, stored)?;
    let mut compact = false;
    match row {
        None => {
            t.exec(
                "INSERT INTO households(id, area_code, posyandu_id, created_seq, last_seq, move_seq, snapshot_seq, pending, actors)
                 VALUES ($1, $2, $3, $4, $4, $4, $4, 0, $5)",
                &[
                    id.to_string().into(),
                    area.as_str().into(),
                    posyandu.clone().into(),
                    last.into(),
                    seqs.into(),
                ],
            )?;
            put_snapshot(t, id, doc.automerge().save_nocompress())?;
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
                compact = true;
            }
            if due && cache.max == 0 {
                t.exec(
                    "UPDATE households SET area_code = $2, posyandu_id = $3, last_seq = $4, move_seq = $5,
                     snapshot_seq = $4, pending = 0, actors = $6 WHERE id = $1",
                    &[
                        id.to_string().into(),
                        area.into(),
                        posyandu.into(),
                        last.into(),
                        move_seq.into(),
                        seqs.into(),
                    ],
                )?;
                put_snapshot(t, id, doc.automerge().save_nocompress())?;
            } else {
                t.exec(
                    "UPDATE households SET area_code = $2, posyandu_id = $3, last_seq = $4, move_seq = $5,
                     pending = pending + $6, actors = $7 WHERE id = $1",
                    &[
                        id.to_string().into(),
                        area.into(),
                        posyandu.into(),
                        last.into(),
                        move_seq.into(),
                        n.into(),
                        seqs.into(),
                    ],
                )?;
            }
        }
    }
    // A document holding queued changes (missing dependencies) is not the stored state.
    Ok(cacheable.then_some(Kept {
        id,
        last_seq: last,
        doc,
        compact,
    }))
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

/// What a pull page needs to know about the window: its start `s` and the scope held
/// then (`held`: the device has a cursor), its end `target`, and the user's scope now.
struct Window<'a> {
    s: i64,
    target: i64,
    held: bool,
    old_scope: &'a Scope,
    scope: &'a Scope,
}

/// One candidate household's part of a pull; returns the payload bytes added.
fn pull_household(
    t: &mut dyn Sql,
    user: &User,
    w: &Window<'_>,
    id: Uuid,
    resp: &mut SyncResponse,
    pulled: &mut usize,
) -> Result<usize, ServerError> {
    let (s, target) = (w.s, w.target);
    let id_text = id.to_string();
    let Some(row) = household_row(t, id)? else {
        return Ok(0);
    };
    let in_s = w.held
        && location_at(t, id, &row, s)?
            .is_some_and(|(a, p)| w.old_scope.contains(&a, p.as_deref()));
    let in_t =
        location_at(t, id, &row, target)?.is_some_and(|(a, p)| w.scope.contains(&a, p.as_deref()));
    let mut bytes = 0;
    match (in_s, in_t) {
        (true, true) => {
            if row.last_seq <= s {
                return Ok(0);
            }
            let changes = changes_between(t, id, s, target, Some(&user.device))?;
            if changes.iter().any(|c| c.is_empty()) {
                // Pruned (this device was away long): send the whole state instead.
                let (snap, changes) = state_at(t, id, &row, target)?;
                bytes += add_state(resp, id, snap, changes, pulled);
            } else if !changes.is_empty() {
                bytes += add_state(resp, id, None, changes, pulled);
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
                    return Ok(0);
                }
            }
            let (snap, changes) = state_at(t, id, &row, target)?;
            bytes += add_state(resp, id, snap, changes, pulled);
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
    Ok(bytes)
}

/// A whole window in one page, with one query for the changes of the households that
/// stayed where they were (the common end-of-day pull: other devices' new visits), and
/// the per-household rules of [`pull_household`] only for households created or moved
/// in the window or whose change bytes were pruned. `None` when the window holds more
/// households than a page: the caller pages through it instead.
fn pull_window(
    t: &mut dyn Sql,
    user: &User,
    w: &Window<'_>,
    page: usize,
    resp: &mut SyncResponse,
) -> Result<Option<usize>, ServerError> {
    let (s, target) = (w.s, w.target);
    let mut params: Vec<Value> = vec![s.into()];
    let cond = scope_sql(w.scope, &mut params);
    let changed: Vec<(String, i64, i64)> = t
        .query(
            &format!(
                "SELECT id, created_seq, move_seq FROM households WHERE last_seq > $1 AND {cond}"
            ),
            &params,
        )?
        .into_iter()
        .map(|r| {
            (
                r[0].text().unwrap_or_default().to_string(),
                r[1].int(),
                r[2].int(),
            )
        })
        .collect();
    // No DISTINCT (the set below removes repeats): with it SQLite walked the whole
    // table in household order instead of the few rows after `s` in `locations_seq`.
    let moved: Vec<String> = t
        .query(
            "SELECT household_id FROM locations WHERE seq > $1 AND is_move = 1",
            &[s.into()],
        )?
        .into_iter()
        .filter_map(|r| r[0].text().map(String::from))
        .collect();
    let mut special: std::collections::BTreeSet<String> = moved.into_iter().collect();
    let mut simple = 0usize;
    for (id, created, move_seq) in &changed {
        if *created > s || *move_seq > s {
            special.insert(id.clone());
        } else if !special.contains(id) {
            simple += 1;
        }
    }
    let total = simple + special.len();
    if total > page {
        return Ok(None);
    }
    let mut pulled = 0usize;
    if simple > 0 {
        // In scope at S and at T (created before S, not moved since): the changes in
        // (S, T] that this device did not push itself.
        let mut params: Vec<Value> = vec![s.into(), target.into(), user.device.as_str().into()];
        let cond = scope_sql(w.scope, &mut params);
        let cond = cond
            .replace("posyandu_id", "h.posyandu_id")
            .replace("area_code", "h.area_code");
        let rows = t.query(
            &format!(
                "SELECT h.id, c.bytes FROM households h JOIN changes c ON c.household_id = h.id
                 WHERE h.last_seq > $1 AND h.created_seq <= $1 AND h.move_seq <= $1 AND {cond}
                   AND c.seq > $1 AND c.seq <= $2 AND c.device <> $3
                 ORDER BY h.id, c.seq"
            ),
            &params,
        )?;
        let size: usize = rows.iter().map(|r| r[1].blob().len()).sum();
        if size > PAGE_BYTES {
            return Ok(None);
        }
        let mut cur: Option<(String, Vec<ByteBuf>)> = None;
        let mut groups: Vec<(String, Vec<ByteBuf>)> = Vec::new();
        for mut r in rows {
            let id = r[0].text().unwrap_or_default().to_string();
            let b = ByteBuf::from(std::mem::replace(&mut r[1], Value::Null).into_blob());
            match &mut cur {
                Some((c, v)) if *c == id => v.push(b),
                _ => {
                    if let Some(g) = cur.take() {
                        groups.push(g);
                    }
                    cur = Some((id, vec![b]));
                }
            }
        }
        groups.extend(cur);
        for (id_text, changes) in groups {
            if special.contains(&id_text) {
                continue;
            }
            let Ok(id) = Uuid::parse_str(&id_text) else {
                continue;
            };
            if changes.iter().any(|c| c.is_empty()) {
                // Pruned: the per-household rules send the whole state instead.
                pull_household(t, user, w, id, resp, &mut pulled)?;
                continue;
            }
            add_state(resp, id, None, changes, &mut pulled);
        }
    }
    for id_text in &special {
        if let Ok(id) = Uuid::parse_str(id_text) {
            pull_household(t, user, w, id, resp, &mut pulled)?;
        }
    }
    // Erasures in this window: every device that synced before drops them.
    resp.drops.extend(crate::erase::erased_between(
        t,
        s,
        target,
        &[w.old_scope, w.scope],
    )?);
    resp.total = total as u64;
    resp.more = false;
    resp.remaining = 0;
    resp.next_cursor = Cursor {
        seq: target as u64,
        target: None,
        after: None,
        scope: w.scope.clone(),
        mac: None,
    };
    Ok(Some(pulled))
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
    let w = Window {
        s,
        target,
        held,
        old_scope: &old_scope,
        scope: &scope,
    };
    // A device that holds a cursor in its scope and is not paging (an end-of-day sync).
    if held && !changed_scope && after.is_empty() && cursor.and_then(|c| c.target).is_none() {
        if let Some(pulled) = pull_window(t, user, &w, page, resp)? {
            crate::cursor::sign(&key, &user.device, &mut resp.next_cursor);
            return Ok(pulled);
        }
    }

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
        bytes += pull_household(t, user, &w, id, resp, &mut pulled)?;
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
fn prewarm(t: &mut dyn Sql, cache: &DocCache, groups: &[Prepared]) -> Result<(), ServerError> {
    // Only households whose changes take the slow path need their document.
    for g in groups
        .iter()
        .filter(|g| !g.record_only && g.changes.is_ok())
    {
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
        // Parse and classify before taking the write lock.
        let prepared = prepare(&req.changes);
        // Read what the write needs before taking the write lock: the households' rows
        // and the log's view of the pushed hashes (for the fast plans), and the documents
        // of households taking the slow path, so pushes of different households do this
        // in parallel and the writer only checks that nothing changed and stores.
        let pre = db.read(|t| -> Result<Precheck, ServerError> {
            if cache.max > 0 && prepared.iter().any(|g| !g.record_only) {
                prewarm(t, cache, &prepared)?;
            }
            precheck(t, &prepared)
        })?;
        let plans = plan(user, &prepared, &pre);
        drop(pre);
        // Group commit: pushes arriving meanwhile share one transaction and one commit.
        let (u, c) = (user.clone(), cache.clone());
        let (out, keep) = db.grouped(move |t| push_planned(t, &u, &prepared, &plans, &c))?;
        store_kept(db, cache, keep);
        out
    };
    let mut resp = answer_for(&pushed);
    let pulled = db.read(|t| pull(t, user, req.cursor.as_ref(), req.page_size, &mut resp))?;
    Ok((resp, pushed, pulled))
}

/// Puts documents a push materialised back into the cache, storing the snapshots that
/// are due (made here, outside the write lock; stored only if nothing was written to the
/// household meanwhile).
fn store_kept(db: &crate::db::Db, cache: &DocCache, keep: Vec<Kept>) {
    for k in keep {
        if k.compact {
            // The new snapshot is made here, outside the lock; it is stored only if
            // nothing was written to the household meanwhile.
            let snap = k.doc.automerge().save_nocompress();
            let (id, last) = (k.id.to_string(), k.last_seq);
            let r = db.grouped(move |t| -> Result<u64, crate::db::DbError> {
                let n = t.exec(
                    "UPDATE households SET snapshot_seq = $2, pending = 0
                     WHERE id = $1 AND last_seq = $2",
                    &[id.as_str().into(), last.into()],
                )?;
                if n > 0 {
                    store_snapshot(t, &id, &snap)?;
                }
                Ok(n)
            });
            // The push is committed either way; a later push tries again.
            if let Err(e) = r {
                tracing::warn!(household = %k.id, error = %e, "compaction skipped");
            }
        }
        cache.put(k.id, k.last_seq, k.doc);
    }
}

/// What the read transaction of [`sync_request`] produced.
struct Read {
    user: User,
    req: SyncRequest,
    prepared: Vec<Prepared>,
    plans: Vec<Option<FastPlan>>,
    /// The pull, when it could be answered before the push (see [`sync_request`]).
    pulled: Option<(SyncResponse, usize)>,
}

/// One sync request as the HTTP handler runs it (`body` is the encoded
/// [`SyncRequest`]); returns the user, the answer, what the push did and how many changes
/// and snapshots were pulled.
///
/// The token check, the decoding, the push's pre-checks ([`precheck`], [`plan`]) and —
/// when every pushed household takes the fast path, the end-of-day case — the pull run in
/// **one** read transaction; then **one** grouped write holds the push and the request's
/// audit events, and the answer is sent once it has committed. A fast-path push cannot
/// create, move or erase a household and the pull never sends a device its own changes,
/// so pulling first gives the same answer (its window simply ends before this push). Any
/// other push keeps the order push, pull, audit.
pub fn sync_request(
    db: &crate::db::Db,
    cache: &DocCache,
    token: &str,
    body: &[u8],
) -> Result<(User, SyncResponse, PushOutcome, usize), ServerError> {
    let asked = std::time::Instant::now();
    let mut reading = asked;
    let r = db.read(|t| -> Result<Read, ServerError> {
        reading = std::time::Instant::now();
        let user = crate::auth::authenticate(t, token)?;
        let req: SyncRequest = kunjung_protocol::decode(body)?;
        let prepared = prepare(&req.changes);
        if cache.max > 0 && prepared.iter().any(|g| !g.record_only) {
            prewarm(t, cache, &prepared)?;
        }
        let pre = precheck(t, &prepared)?;
        let plans = plan(&user, &prepared, &pre);
        let pulled = if plans.iter().all(Option::is_some) {
            let mut resp = SyncResponse::default();
            let n = pull(t, &user, req.cursor.as_ref(), req.page_size, &mut resp)?;
            Some((resp, n))
        } else {
            None
        };
        Ok(Read {
            user,
            req,
            prepared,
            plans,
            pulled,
        })
    })?;
    let Read {
        user,
        req,
        prepared,
        plans,
        pulled,
    } = r;
    let Some((mut resp, n)) = pulled else {
        // Push, then pull, then the audit events.
        let (out, keep) = if prepared.is_empty() {
            (PushOutcome::default(), Vec::new())
        } else {
            let (u, c) = (user.clone(), cache.clone());
            db.grouped(move |t| push_planned(t, &u, &prepared, &plans, &c))?
        };
        store_kept(db, cache, keep);
        let mut resp = answer_for(&out);
        let n = db.read(|t| pull(t, &user, req.cursor.as_ref(), req.page_size, &mut resp))?;
        crate::audit::record_grouped(db, crate::audit::sync_events(&user, &req, &resp));
        return Ok((user, resp, out, n));
    };
    // The pull's audit events are known now; the push's once it ran.
    let read_events = crate::audit::sync_events(&user, &SyncRequest::default(), &resp);
    let pushed: Vec<HouseholdChanges> = req
        .changes
        .iter()
        .map(|g| HouseholdChanges {
            household_id: g.household_id,
            changes: vec![ByteBuf::new(); g.changes.len()],
        })
        .collect();
    let writing = std::time::Instant::now();
    let (u, c) = (user.clone(), cache.clone());
    let (out, keep) = db.grouped(move |t| -> Result<_, ServerError> {
        let (out, keep) = push_planned(t, &u, &prepared, &plans, &c)?;
        let shape = SyncRequest {
            changes: pushed.clone(),
            ..SyncRequest::default()
        };
        let mut events = crate::audit::sync_events(&u, &shape, &answer_for(&out));
        events.extend(read_events.iter().cloned());
        crate::audit::write(t, &events)?;
        Ok((out, keep))
    })?;
    // Where a sync's time went (`RUST_LOG=debug`): waiting for a read connection, the
    // read transaction, the group commit (queueing behind the writer included).
    let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
    tracing::debug!(
        reader_wait_ms = ms(asked, reading),
        read_ms = ms(reading, writing),
        write_ms = writing.elapsed().as_secs_f64() * 1e3,
        "sync phases"
    );
    store_kept(db, cache, keep);
    let head = answer_for(&out);
    resp.acked = head.acked;
    resp.acked_digest = head.acked_digest;
    resp.rejected = head.rejected;
    Ok((user, resp, out, n))
}

/// The push part of an answer.
fn answer_for(pushed: &PushOutcome) -> SyncResponse {
    SyncResponse {
        acked: pushed.acked.len() as u32,
        acked_digest: ByteBuf::from(ack_digest(pushed.acked.iter().map(|h| h.as_slice())).to_vec()),
        rejected: pushed.rejected.clone(),
        ..SyncResponse::default()
    }
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

/// Households with new changes since the compactor last looked (in memory: after a
/// restart the compactor starts from a scan of `pending`).
#[derive(Default)]
pub struct Dirty(std::sync::Mutex<std::collections::HashSet<Uuid>>);

impl Dirty {
    pub fn note(&self, ids: &[Uuid]) {
        if ids.is_empty() {
            return;
        }
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.extend(ids.iter().copied());
    }

    fn take(&self) -> Vec<Uuid> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.drain().collect()
    }
}

/// Folds a household's pending changes into its stored snapshot, off the request path:
/// the document is loaded on a read connection and saved, and the snapshot stored only if
/// no one replaced it meanwhile (pushes that came in between stay pending). Returns
/// whether it folded anything.
pub fn compact_household(db: &crate::db::Db, id: Uuid) -> Result<bool, ServerError> {
    let Some((row, doc)) = db.read(|t| -> Result<_, ServerError> {
        let Some(row) = household_row(t, id)? else {
            return Ok(None);
        };
        if row.pending == 0 {
            return Ok(None);
        }
        let doc = load_doc(t, id, &row)?;
        Ok(Some((row, doc)))
    })?
    else {
        return Ok(false);
    };
    let snap = doc.automerge().save_nocompress();
    let (last, pending, snap_seq) = (row.last_seq, row.pending, row.snapshot_seq);
    let n = db.grouped(move |t| -> Result<u64, crate::db::DbError> {
        let key = id.to_string();
        let n = t.exec(
            "UPDATE households SET snapshot_seq = $2, pending = pending - $3
             WHERE id = $1 AND snapshot_seq = $4",
            &[
                key.as_str().into(),
                last.into(),
                pending.into(),
                snap_seq.into(),
            ],
        )?;
        if n > 0 {
            store_snapshot(t, &key, &snap)?;
        }
        Ok(n)
    })?;
    Ok(n > 0)
}

/// The background compactor: every second, folds the households written since with at
/// least [`COMPACT_AFTER`] pending changes, using at most about a quarter of one core
/// (it sleeps three times as long as it worked), so it never competes hard with syncs;
/// under a burst the backlog waits and a household's pending changes are simply loaded
/// with its snapshot when someone needs the document.
pub fn spawn_compactor(st: std::sync::Arc<crate::http::AppState>) {
    let run = move || {
        // Households left with pending changes by an earlier run.
        if let Ok(rows) = st.db.read(|t| {
            t.query(
                "SELECT id FROM households WHERE pending >= $1",
                &[COMPACT_AFTER.into()],
            )
        }) {
            let ids: Vec<Uuid> = rows
                .iter()
                .filter_map(|r| r[0].text().and_then(|s| Uuid::parse_str(s).ok()))
                .collect();
            st.dirty.note(&ids);
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let ids = st.dirty.take();
            let mut due = Vec::new();
            for chunk in ids.chunks(500) {
                let r = st.db.read(|t| -> Result<Vec<(i64, Uuid)>, ServerError> {
                    let mut out = Vec::new();
                    for id in chunk {
                        if let Some(row) = household_row(t, *id)? {
                            out.push((row.pending, *id));
                        }
                    }
                    Ok(out)
                });
                match r {
                    Ok(v) => due.extend(v.into_iter().filter(|(p, _)| *p >= COMPACT_AFTER)),
                    Err(e) => tracing::warn!(error = %e, "compactor"),
                }
            }
            // The most pending first.
            due.sort_by_key(|d| std::cmp::Reverse(d.0));
            for (_, id) in due {
                let t0 = std::time::Instant::now();
                // A document that fails to load (or makes Automerge panic) is skipped and
                // retried later; it must not end the compactor for every other household.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compact_household(&st.db, id)
                }));
                match r {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(household = %id, error = %e, "compaction skipped");
                        st.dirty.note(&[id]);
                    }
                    Err(_) => tracing::error!(household = %id, "compaction panicked; skipped"),
                }
                std::thread::sleep(t0.elapsed() * 3);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("compactor".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "no background compactor");
    }
}
