//! Applying pulled changes a page at a time: one transaction for many households, and a
//! fast path that stores a change which only adds visits and referrals (the common end of
//! day: another kader's new visit) without loading the household's document.
//!
//! The fast path (see `kunjung_core::fastapply` for what a change must be) needs the
//! household's fast index (`docs.fast`), valid only while `docs.fast_heads` is the digest
//! of `docs.heads` (any
//! other write of the document leaves it stale, and the next pull of that household takes
//! the full path, which writes a fresh one). A change qualifies when it depends on exactly
//! the document's heads and every record key it takes is new. It is stored as the full
//! path stores it — the bytes in `changes`, `docs.pending` + 1, the new heads — so the next
//! load (snapshot + pending changes) gives the same document; its visit and referral rows
//! are inserted, the household's counters updated, and its tasks marked stale
//! (`tasks_on = NULL`): `Store::refresh_tasks` recomputes them from the document before
//! tasks are read. Conflicts cannot change: nothing is overwritten. A cached copy of the
//! document is dropped.
//!
//! Every other household takes the full path (load, apply, project everything), in the
//! same transaction.

use std::collections::BTreeSet;

use automerge::{Change, ChangeHash};
use kunjung_core::fastapply::{new_records, FastIndex, NewRecords};
use kunjung_core::{CoreError, HouseholdDoc};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

use crate::{heads_text, load_doc, now_ms, project, Result, Store, StoreError};

/// What the fast path stores for one household.
struct Plan {
    records: Vec<NewRecords>,
    index: FastIndex,
    heads: String,
}

/// Reads the listed visit and referral ids of a household (its projection rows).
fn listed(tx: &Transaction<'_>, id: &str) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut out = (BTreeSet::new(), BTreeSet::new());
    let mut stmt = tx.prepare_cached(
        "SELECT v.id FROM visits v JOIN households h ON h.rid = v.hh WHERE h.id = ?1",
    )?;
    for r in stmt.query_map([id], |r| project::uuid_text(r.get_ref(0)?.as_blob()?))? {
        out.0.insert(r?);
    }
    let mut stmt = tx.prepare_cached("SELECT id FROM referrals WHERE household_id = ?1")?;
    for r in stmt.query_map([id], |r| r.get::<_, String>(0))? {
        out.1.insert(r?);
    }
    Ok(out)
}

/// Writes the fast index of a document whose projection rows are current.
pub(crate) fn write_index(tx: &Transaction<'_>, id: Uuid, doc: &HouseholdDoc) -> Result<()> {
    let ids = id.to_string();
    let (visits, referrals) = listed(tx, &ids)?;
    let index = doc.fast_index(&visits, &referrals)?;
    put_index(tx, &ids, &heads_text(doc), &index)
}

/// The fast index as stored: a few dozen bytes per household (a device's storage counts,
/// issue 9). Actors are written once, as bytes, and named by their place in that list.
/// Layout (varints are LEB128): actor count, each actor (length, bytes); the `visits` and
/// `referrals` object ids (counter, actor index); `max_op`; clock entries (count, then
/// actor index and sequence number each); `unlisted` and `reviewed` (count, then each
/// string as length and bytes). An index that does not decode is treated as missing (the
/// household takes the full path, which writes a fresh one).
pub(crate) fn index_bytes(index: &FastIndex) -> Result<Vec<u8>> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let bad = |what: &str| StoreError::Invalid(format!("fast index: {what}"));
    let mut actors: Vec<Vec<u8>> = Vec::new();
    let mut actor_index = |hex_actor: &str| -> Result<u64> {
        let a = hex::decode(hex_actor).map_err(|_| bad("actor"))?;
        Ok(match actors.iter().position(|x| *x == a) {
            Some(i) => i as u64,
            None => {
                actors.push(a);
                (actors.len() - 1) as u64
            }
        })
    };
    let obj = |id: &str, actor_index: &mut dyn FnMut(&str) -> Result<u64>| -> Result<(u64, u64)> {
        let (counter, actor) = id.split_once('@').ok_or_else(|| bad("object id"))?;
        Ok((
            counter.parse().map_err(|_| bad("object id"))?,
            actor_index(actor)?,
        ))
    };
    let visits = obj(&index.visits, &mut actor_index)?;
    let referrals = obj(&index.referrals, &mut actor_index)?;
    let mut clock = Vec::with_capacity(index.clock.len());
    for (actor, seq) in &index.clock {
        clock.push((actor_index(actor)?, *seq));
    }
    let mut out = Vec::with_capacity(64);
    varint(&mut out, actors.len() as u64);
    for a in &actors {
        bytes(&mut out, a);
    }
    for (counter, actor) in [visits, referrals] {
        varint(&mut out, counter);
        varint(&mut out, actor);
    }
    varint(&mut out, index.max_op);
    varint(&mut out, clock.len() as u64);
    for (actor, seq) in clock {
        varint(&mut out, actor);
        varint(&mut out, seq);
    }
    for list in [&index.unlisted, &index.reviewed] {
        varint(&mut out, list.len() as u64);
        for k in list {
            bytes(&mut out, k.as_bytes());
        }
    }
    Ok(out)
}

/// Reads what [`index_bytes`] wrote; None when it does not decode.
fn index_from(data: &[u8]) -> Option<FastIndex> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&b, rest) = self.0.split_first()?;
                self.0 = rest;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }
        fn bytes(&mut self) -> Option<&[u8]> {
            let n = usize::try_from(self.varint()?).ok()?;
            if n > self.0.len() {
                return None;
            }
            let (b, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(b)
        }
        fn len(&mut self) -> Option<usize> {
            // Every entry takes at least one byte: a longer count is corrupt.
            usize::try_from(self.varint()?)
                .ok()
                .filter(|n| *n <= self.0.len())
        }
    }
    let mut r = R(data);
    let mut actors = Vec::new();
    for _ in 0..r.len()? {
        actors.push(hex::encode(r.bytes()?));
    }
    let actor = |i: u64| actors.get(usize::try_from(i).ok()?).cloned();
    let obj = |r: &mut R<'_>| -> Option<String> {
        let counter = r.varint()?;
        Some(format!("{counter}@{}", actor(r.varint()?)?))
    };
    let visits = obj(&mut r)?;
    let referrals = obj(&mut r)?;
    let max_op = r.varint()?;
    let mut clock = std::collections::BTreeMap::new();
    for _ in 0..r.len()? {
        let a = actor(r.varint()?)?;
        clock.insert(a, r.varint()?);
    }
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        for _ in 0..r.len()? {
            list.push(String::from_utf8(r.bytes()?.to_vec()).ok()?);
        }
    }
    let [unlisted, reviewed] = lists;
    r.0.is_empty().then_some(FastIndex {
        visits,
        referrals,
        max_op,
        clock,
        unlisted,
        reviewed,
    })
}

/// Which heads an index was written for: the first 8 bytes of each head hash (SHA-256),
/// XORed (a set, so order does not matter). It only tells a current index from a stale
/// one, and the heads come from this store's own writes: a chance match of a stale index
/// is 2^-64. Empty for heads that do not parse (never matches: the full path).
pub(crate) fn heads_digest(heads: &str) -> Vec<u8> {
    let mut out = [0u8; 8];
    let mut any = false;
    for h in heads.split(',').filter(|h| !h.is_empty()) {
        match hex::decode(h) {
            Ok(b) if b.len() >= 8 => {
                for (o, x) in out.iter_mut().zip(&b[..8]) {
                    *o ^= x;
                }
                any = true;
            }
            _ => return Vec::new(),
        }
    }
    if any {
        out.to_vec()
    } else {
        Vec::new()
    }
}

fn put_index(tx: &Transaction<'_>, ids: &str, heads: &str, index: &FastIndex) -> Result<()> {
    tx.prepare_cached("UPDATE docs SET fast_heads = ?2, fast = ?3 WHERE household_id = ?1")?
        .execute(params![ids, heads_digest(heads), index_bytes(index)?])?;
    Ok(())
}

/// Whether household row `hh` lists a visit `key` (false for a key that is no UUID: no
/// row can have it).
fn visit_listed(tx: &Transaction<'_>, hh: i64, key: &str) -> Result<bool> {
    let Ok(blob) = project::uuid_blob(key) else {
        return Ok(false);
    };
    Ok(tx
        .prepare_cached("SELECT 1 FROM visits WHERE hh = ?1 AND id = ?2")?
        .query_row(params![hh, blob], |_| Ok(()))
        .optional()?
        .is_some())
}

fn referral_listed(tx: &Transaction<'_>, key: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM referrals WHERE id = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The fast path's plan for a household's changes, or None when they need the document.
fn plan(tx: &Transaction<'_>, id: Uuid, parsed: &[Change]) -> Result<Option<Plan>> {
    type Row = (String, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);
    let row: Option<Row> = tx
        .prepare_cached(
            "SELECT d.heads, d.fast_heads, d.fast, h.rid FROM docs d
             LEFT JOIN households h ON h.id = d.household_id
             WHERE d.household_id = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((heads, Some(index_heads), Some(data), Some(hh))) = row else {
        return Ok(None);
    };
    if heads_digest(&heads) != index_heads || index_heads.is_empty() || parsed.is_empty() {
        return Ok(None);
    }
    let Some(mut index) = index_from(&data) else {
        return Ok(None);
    };
    let mut current: Vec<ChangeHash> = Vec::new();
    for h in heads.split(',').filter(|h| !h.is_empty()) {
        match h.parse() {
            Ok(h) => current.push(h),
            Err(_) => return Ok(None),
        }
    }
    current.sort();
    let mut records = Vec::with_capacity(parsed.len());
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for c in parsed {
        let mut deps = c.deps().to_vec();
        deps.sort();
        if current.is_empty() || deps != current {
            return Ok(None);
        }
        let Some((rec, next)) = new_records(c, &index) else {
            return Ok(None);
        };
        for k in &rec.visit_keys {
            if !taken.insert(format!("v/{k}")) || visit_listed(tx, hh, k)? {
                return Ok(None);
            }
        }
        for k in &rec.referral_keys {
            if !taken.insert(format!("r/{k}")) || referral_listed(tx, k)? {
                return Ok(None);
            }
        }
        records.push(rec);
        index = next;
        current = vec![c.hash()];
    }
    Ok(Some(Plan {
        records,
        index,
        heads: current
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }))
}

fn insert_changes(
    tx: &Transaction<'_>,
    ids: &str,
    changes: &[Vec<u8>],
    parsed: &[Change],
    acknowledged: bool,
    now: i64,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO changes(hash, household_id, bytes, local, synced, created_at) VALUES (?1, ?2, ?3, 0, ?4, ?5)
         ON CONFLICT(hash) DO UPDATE SET synced = max(synced, excluded.synced)",
    )?;
    for (c, bytes) in parsed.iter().zip(changes) {
        stmt.execute(params![
            c.hash().0.as_slice(),
            ids,
            bytes,
            acknowledged as i64,
            now
        ])?;
    }
    Ok(())
}

/// Stores a planned household: the changes, the document row, the new rows and counters.
fn write_fast(
    tx: &Transaction<'_>,
    id: Uuid,
    changes: &[Vec<u8>],
    parsed: &[Change],
    plan: &Plan,
    acknowledged: bool,
    now: i64,
) -> Result<()> {
    let ids = id.to_string();
    insert_changes(tx, &ids, changes, parsed, acknowledged, now)?;
    tx.prepare_cached(
        "UPDATE docs SET heads = ?2, pending = pending + ?3, updated_at = ?4 WHERE household_id = ?1",
    )?
    .execute(params![ids, plan.heads, parsed.len() as i64, now])?;
    let (mut visits, mut last, mut open) = (0i64, None::<String>, 0i64);
    let mut strings = project::Interner::new(tx);
    for rec in &plan.records {
        for (v, reviewed) in &rec.visits {
            let row = project::visit_row(v, *reviewed);
            if !v.voided {
                visits += 1;
                if last.as_ref().is_none_or(|l| row.date > *l) {
                    last = Some(row.date.clone());
                }
            }
            project::insert_visit(tx, &mut strings, &ids, &row)?;
        }
        for r in &rec.referrals {
            if r.status != kunjung_core::ReferralStatus::Closed {
                open += 1;
            }
            project::insert_referral(tx, &ids, &project::referral_row(r))?;
        }
    }
    tx.prepare_cached(
        "UPDATE households SET visit_count = visit_count + ?2,
            last_visit = CASE WHEN ?3 IS NOT NULL AND (last_visit IS NULL OR ?3 > last_visit) THEN ?3 ELSE last_visit END,
            open_referrals = open_referrals + ?4, tasks_on = NULL, updated_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![ids, visits, last, open, now])?;
    put_index(tx, &ids, &plan.heads, &plan.index)
}

/// The full path for a household already here, inside the page's transaction. Returns
/// the document (to cache once committed) and how many changes were new.
fn apply_full(
    tx: &Transaction<'_>,
    id: Uuid,
    mut doc: HouseholdDoc,
    changes: &[Vec<u8>],
    parsed: &[Change],
    acknowledged: bool,
    now: i64,
) -> Result<(HouseholdDoc, usize)> {
    let new = doc.apply_changes(changes)?;
    let ids = id.to_string();
    if new.is_empty() {
        // Already had them all: still record the server's acknowledgement.
        if acknowledged {
            let mut stmt =
                tx.prepare_cached("UPDATE changes SET synced = 1 WHERE hash = ?1 AND synced = 0")?;
            for c in parsed {
                stmt.execute([c.hash().0.as_slice()])?;
            }
        }
        return Ok((doc, 0));
    }
    insert_changes(tx, &ids, changes, parsed, acknowledged, now)?;
    tx.prepare_cached(
        "UPDATE docs SET heads = ?2, pending = pending + ?3, updated_at = ?4 WHERE household_id = ?1",
    )?
    .execute(params![ids, heads_text(&doc), new.len() as i64, now])?;
    project::apply(tx, id, &doc, project::Mode::Full { conflicts: true })?;
    write_index(tx, id, &doc)?;
    Ok((doc, new.len()))
}

impl Store {
    /// Applies pulled changes of many households (a page), all of them in one
    /// transaction or, on an error, none (households new here are created first, one
    /// transaction each). `acknowledged`: the server already holds them. Households whose
    /// changes only add visits and referrals are stored without loading their documents
    /// (see the module docs). Returns how many changes were new.
    pub fn apply_pulled(
        &mut self,
        groups: &[(Uuid, Vec<Vec<u8>>)],
        acknowledged: bool,
    ) -> Result<usize> {
        let mut total = 0;
        let mut here = Vec::with_capacity(groups.len());
        for (id, changes) in groups {
            let here_already = self
                .conn
                .prepare_cached("SELECT 1 FROM docs WHERE household_id = ?1")?
                .exists([id.to_string()])?;
            if here_already {
                here.push((*id, changes));
            } else {
                total += self.create_from_changes(*id, changes, acknowledged)?;
            }
        }
        let mut parsed = Vec::with_capacity(here.len());
        for (_, changes) in &here {
            parsed.push(
                changes
                    .iter()
                    .map(|c| kunjung_core::doc::parse_change(c))
                    .collect::<Result<Vec<_>, CoreError>>()?,
            );
        }
        let now = now_ms();
        let actor = self.actor.clone();
        let mut loaded = Vec::new();
        {
            let tx = self.conn.transaction()?;
            for ((id, changes), parsed) in here.iter().zip(&parsed) {
                let id = *id;
                if let Some(p) = plan(&tx, id, parsed)? {
                    write_fast(&tx, id, changes, parsed, &p, acknowledged, now)?;
                    self.cache.remove(&id);
                    total += parsed.len();
                    continue;
                }
                let doc = match self.cache.remove(&id) {
                    Some(d) => d,
                    None => load_doc(&tx, &actor, &self.dicts, id)?,
                };
                let (doc, n) = apply_full(&tx, id, doc, changes, parsed, acknowledged, now)?;
                total += n;
                loaded.push((id, doc));
            }
            tx.commit()?;
        }
        for (id, doc) in loaded {
            self.cache_put(id, doc);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_round_trips_and_a_damaged_one_is_refused() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba98765432100123456789abcdef";
        let index = FastIndex {
            visits: format!("2@{a}"),
            referrals: format!("3@{a}"),
            max_op: 300_000,
            clock: [(a.to_string(), 41), (b.to_string(), 1)].into(),
            unlisted: vec!["bukan-uuid".into()],
            reviewed: vec!["0191e2c0-0000-7000-8000-000000000001".into()],
        };
        let bytes = index_bytes(&index).unwrap();
        assert_eq!(index_from(&bytes), Some(index.clone()));
        assert!(bytes.len() < 120, "{} bytes", bytes.len());
        for n in 0..bytes.len() {
            assert_eq!(index_from(&bytes[..n]), None, "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(index_from(&longer), None);
        let plain = FastIndex {
            unlisted: vec![],
            reviewed: vec![],
            clock: [(a.to_string(), 7)].into(),
            ..index
        };
        assert!(index_bytes(&plain).unwrap().len() <= 30);
        let (ha, hb) = (format!("{a}{a}"), format!("{b}{b}"));
        let both = heads_digest(&format!("{ha},{hb}"));
        assert_eq!(both.len(), 8);
        assert_eq!(both, heads_digest(&format!("{hb},{ha}")));
        assert_ne!(both, heads_digest(&ha));
        assert!(heads_digest("zz").is_empty() && heads_digest("").is_empty());
    }
}
