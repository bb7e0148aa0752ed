//! Convergence property test through the real server code: N simulated devices make
//! random offline operations (create households, add/edit/void members and visits, move
//! households between posyandu and desa, concurrent edits of the same fields) and sync in
//! random orders with random partitions — responses lost after the server stored the push,
//! pulls cut off after a few pages, small page sizes. Each device's request and the
//! server's answer go through the real wire encoding (`kunjung_protocol::encode/decode`)
//! and the real sync logic (`kunjung_sync_server::sync::sync`) over the real SQLite
//! storage. A device mirrors the client engine (`crates/client/src/sync.rs`): a change is
//! acknowledged only on a matching receipt, the cursor is kept only after its page.
//!
//! After a final full sync of every device: each device holds exactly the households its
//! scope holds on the server, with identical heads and identical read views; every
//! acknowledged change is on the server and on every device holding its household; every
//! device has nothing left to push; the server stored each change once.
//!
//! `KUNJUNG_CONVERGENCE_CASES` (default 10,000 in total, split over four tests) and
//! `KUNJUNG_CONVERGENCE_SEED` set the run; `cargo xtask soak` runs many more.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, ReadDoc};
use kunjung_core::checklist::AnswerValue;
use kunjung_core::{CommitMeta, FieldEdit, HouseholdDoc, NewHousehold, NewMember, NewVisit, Sex};
use kunjung_protocol::{
    ack_digest, ByteBuf, Cursor, HouseholdChanges, Role, SyncRequest, SyncResponse,
};
use kunjung_sync_server::auth::User;
use kunjung_sync_server::Db;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

const DESA_A: &str = "32.14.01.2001";
const DESA_A2: &str = "32.14.01.2002";
/// Where a household can be: (desa, posyandu).
const PLACES: &[(&str, &str)] = &[(DESA_A, "PSY-A"), (DESA_A, "PSY-B"), (DESA_A2, "PSY-C")];

struct Dev {
    user: User,
    docs: BTreeMap<Uuid, HouseholdDoc>,
    /// Local changes not yet acknowledged, oldest first: (household, hash, bytes).
    pending: Vec<(Uuid, Vec<u8>, Vec<u8>)>,
    cursor: Option<Cursor>,
    page_size: Option<u32>,
    actor: ActorId,
    /// Codes of the last refused pushes (for failure messages).
    rejected: Vec<String>,
}

/// The outcome a partition imposes on one sync.
#[derive(Clone, Copy, Debug)]
enum Net {
    /// Every page goes through.
    Up,
    /// The first request reaches the server, its answer is lost.
    LostAnswer,
    /// Only this many pages arrive, then the link goes down.
    Pages(usize),
}

impl Dev {
    fn new(i: usize, role: Role, posyandu: &[&str], areas: &[&str], rng: &mut ChaCha8Rng) -> Dev {
        let mut actor = [0u8; 16];
        rng.fill(&mut actor);
        Dev {
            user: User {
                username: format!("user{i}"),
                role,
                posyandu: posyandu.iter().map(|s| s.to_string()).collect(),
                areas: areas.iter().map(|s| s.to_string()).collect(),
                device: format!("device-{i}"),
            },
            docs: BTreeMap::new(),
            pending: Vec::new(),
            cursor: None,
            page_size: [None, Some(1), Some(2), Some(3)][rng.gen_range(0..4)],
            actor: ActorId::from(actor.as_slice()),
            rejected: Vec::new(),
        }
    }

    fn meta(&self, t: i64) -> CommitMeta {
        CommitMeta {
            user: self.user.username.clone(),
            time_ms: 1_764_000_000_000 + t,
        }
    }

    fn record(&mut self, id: Uuid, change: Option<automerge::Change>) {
        if let Some(c) = change {
            self.pending
                .push((id, c.hash().0.to_vec(), c.raw_bytes().to_vec()));
        }
    }

    /// Places this device may create households in.
    fn own_places(&self) -> Vec<(&'static str, &'static str)> {
        let scope = self.user.scope();
        PLACES
            .iter()
            .copied()
            .filter(|(a, p)| scope.contains(a, Some(p)))
            .collect()
    }

    /// One random offline operation. Returns false when nothing applied.
    fn random_op(&mut self, rng: &mut ChaCha8Rng, t: i64) -> bool {
        let meta = self.meta(t);
        let ids: Vec<Uuid> = self.docs.keys().copied().collect();
        let pick = rng.gen_range(0..100);
        if ids.is_empty() || pick < 12 {
            let places = self.own_places();
            let Some(&(area, posyandu)) = places.choose(rng) else {
                return false;
            };
            let id = Uuid::from_u128(rng.gen());
            let w = HouseholdDoc::create(
                id,
                &NewHousehold {
                    area_code: area.into(),
                    rt: "1".into(),
                    rw: "2".into(),
                    dusun: None,
                    posyandu_id: Some(posyandu.into()),
                    address: Some(format!("Kp. {}", rng.gen_range(0..100))),
                    kk: None,
                },
                self.actor.clone(),
                &meta,
            )
            .unwrap();
            self.docs.insert(id, w.result);
            self.record(id, w.change);
            return true;
        }
        let id = *ids.choose(rng).unwrap();
        let doc = self.docs.get_mut(&id).unwrap();
        let view = doc.read().unwrap();
        let members: Vec<Uuid> = view
            .members
            .iter()
            .filter(|m| !m.voided)
            .map(|m| m.id)
            .collect();
        let visits: Vec<Uuid> = view.visits.iter().map(|v| v.id).collect();
        let edit = |path: String, v: AnswerValue| {
            vec![FieldEdit {
                path,
                value: Some(v),
            }]
        };
        let written = match pick {
            12..=29 => doc
                .add_member(
                    &NewMember {
                        name: format!("Anggota {}", rng.gen_range(0..1000)),
                        sex: if rng.gen() { Sex::F } else { Sex::M },
                        birth_date: chrono::NaiveDate::from_ymd_opt(1990, 5, 1).unwrap(),
                        birth_date_estimated: false,
                        nik: None,
                        kk: None,
                        relation: None,
                        mother_id: None,
                        jkn: None,
                    },
                    &meta,
                )
                .map(|w| w.change),
            30..=49 if !members.is_empty() => doc
                .add_visit(
                    &NewVisit {
                        member_id: *members.choose(rng).unwrap(),
                        date: chrono::NaiveDate::from_ymd_opt(2025, 11, rng.gen_range(1..20))
                            .unwrap(),
                        weight_kg: Some(rng.gen_range(30..90) as f64),
                        notes: Some(format!("catatan {}", rng.gen_range(0..1000))),
                        ..NewVisit::default()
                    },
                    &meta,
                )
                .map(|w| w.change),
            50..=59 => {
                // Few values, so concurrent edits of the same field are frequent.
                let v = format!("Jl. Mawar {}", rng.gen_range(0..4));
                doc.edit(
                    &edit("household/address".into(), AnswerValue::Text(v)),
                    &meta,
                    "edit",
                )
                .map(|w| w.change)
            }
            60..=69 if !members.is_empty() => {
                let m = members.choose(rng).unwrap();
                let v = format!("Siti {}", rng.gen_range(0..4));
                doc.edit(
                    &edit(format!("members/{m}/name"), AnswerValue::Text(v)),
                    &meta,
                    "edit",
                )
                .map(|w| w.change)
            }
            70..=77 if !visits.is_empty() => {
                let v = visits.choose(rng).unwrap();
                let n = format!("diperbaiki {}", rng.gen_range(0..4));
                doc.edit(
                    &edit(format!("visits/{v}/notes"), AnswerValue::Text(n)),
                    &meta,
                    "edit",
                )
                .map(|w| w.change)
            }
            78..=84 if !visits.is_empty() => {
                let v = visits.choose(rng).unwrap();
                doc.edit(
                    &[
                        FieldEdit {
                            path: format!("visits/{v}/voided"),
                            value: Some(AnswerValue::Bool(true)),
                        },
                        FieldEdit {
                            path: format!("visits/{v}/void_reason"),
                            value: Some(AnswerValue::Text("salah catat".into())),
                        },
                    ],
                    &meta,
                    "void",
                )
                .map(|w| w.change)
            }
            85..=89 if !members.is_empty() => {
                let m = members.choose(rng).unwrap();
                doc.edit(
                    &edit(format!("members/{m}/voided"), AnswerValue::Bool(true)),
                    &meta,
                    "void",
                )
                .map(|w| w.change)
            }
            90..=99 => {
                let (area, posyandu) = *PLACES.choose(rng).unwrap();
                doc.move_household(
                    area,
                    "3",
                    "4",
                    Some(posyandu),
                    chrono::NaiveDate::from_ymd_opt(2025, 11, 20).unwrap(),
                    &meta,
                )
                .map(|w| w.change)
            }
            _ => return false,
        };
        let change = written.unwrap();
        self.record(id, change);
        true
    }

    /// Syncs like the client engine does, through the real wire format and server code.
    /// Returns the hashes the server acknowledged with a matching receipt.
    fn sync(&mut self, db: &Db, net: Net) -> Vec<(Uuid, Vec<u8>)> {
        let mut acked = Vec::new();
        let mut pages = 0;
        loop {
            let pending = self.pending.clone();
            let mut groups: Vec<HouseholdChanges> = Vec::new();
            for (h, _, bytes) in &pending {
                match groups.iter_mut().find(|g| g.household_id == *h) {
                    Some(g) => g.changes.push(ByteBuf::from(bytes.clone())),
                    None => groups.push(HouseholdChanges {
                        household_id: *h,
                        changes: vec![ByteBuf::from(bytes.clone())],
                    }),
                }
            }
            let req = SyncRequest {
                cursor: self.cursor.clone(),
                changes: groups,
                page_size: self.page_size,
            };
            let wire = kunjung_protocol::encode(&req).unwrap();
            let req: SyncRequest = kunjung_protocol::decode(&wire).unwrap();
            let (resp, _, _) = kunjung_sync_server::sync::sync(db, &self.user, &req).unwrap();
            let wire = kunjung_protocol::encode(&resp).unwrap();
            match net {
                Net::LostAnswer => return acked,
                Net::Pages(n) if pages >= n => return acked,
                _ => {}
            }
            pages += 1;
            let resp: SyncResponse = kunjung_protocol::decode(&wire).unwrap();

            // The receipt, exactly as the client checks it.
            let mut rejected_households = BTreeSet::new();
            let mut rejected_hashes = BTreeSet::new();
            for r in &resp.rejected {
                self.rejected.push(format!("{} {}", r.household_id, r.code));
                match &r.hash {
                    Some(h) => rejected_hashes.insert(h.to_vec()),
                    None => rejected_households.insert(r.household_id),
                };
            }
            let expected: Vec<&(Uuid, Vec<u8>, Vec<u8>)> = pending
                .iter()
                .filter(|(h, hash, _)| {
                    !rejected_households.contains(h) && !rejected_hashes.contains(hash)
                })
                .collect();
            let digest = ack_digest(expected.iter().map(|(_, h, _)| h.as_slice()));
            if resp.acked as usize == expected.len()
                && resp.acked_digest.as_slice() == digest.as_slice()
            {
                let done: BTreeSet<&Vec<u8>> = expected.iter().map(|(_, h, _)| h).collect();
                acked.extend(expected.iter().map(|(id, h, _)| (*id, h.clone())));
                self.pending.retain(|(_, h, _)| !done.contains(h));
            }
            for id in &resp.drops {
                self.docs.remove(id);
                self.pending.retain(|(h, _, _)| h != id);
            }
            for s in &resp.snapshots {
                let incoming = HouseholdDoc::load(&s.bytes).unwrap();
                let id = incoming.id().unwrap();
                assert_eq!(id, s.household_id);
                match self.docs.get_mut(&id) {
                    Some(d) => {
                        d.merge(&incoming).unwrap();
                    }
                    None => {
                        let mut d = incoming;
                        d.set_actor(self.actor.clone());
                        self.docs.insert(id, d);
                    }
                }
            }
            for g in &resp.changes {
                match self.docs.get_mut(&g.household_id) {
                    Some(d) => {
                        d.apply_changes(&g.changes).unwrap();
                    }
                    None => {
                        let mut am = automerge::Automerge::new();
                        let parsed: Vec<_> = g
                            .changes
                            .iter()
                            .map(|c| kunjung_core::doc::parse_change(c).unwrap())
                            .collect();
                        am.apply_changes(parsed).unwrap();
                        let mut d = HouseholdDoc::from_automerge(am).unwrap();
                        assert_eq!(d.id().unwrap(), g.household_id);
                        d.set_actor(self.actor.clone());
                        self.docs.insert(g.household_id, d);
                    }
                }
            }
            self.cursor = Some(resp.next_cursor.clone());
            if !resp.more {
                return acked;
            }
        }
    }
}

fn heads(d: &HouseholdDoc) -> Vec<String> {
    let mut h: Vec<String> = d.heads().iter().map(|h| h.to_string()).collect();
    h.sort();
    h
}

/// Every household on the server, read through a full pull by an admin device.
fn server_docs(db: &Db) -> BTreeMap<Uuid, HouseholdDoc> {
    let admin = User {
        username: "auditor".into(),
        role: Role::Admin,
        posyandu: vec![],
        areas: vec![],
        device: "auditor-device".into(),
    };
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let req = SyncRequest {
            cursor,
            changes: vec![],
            page_size: Some(2000),
        };
        let (resp, _, _) = kunjung_sync_server::sync::sync(db, &admin, &req).unwrap();
        for s in &resp.snapshots {
            out.insert(s.household_id, HouseholdDoc::load(&s.bytes).unwrap());
        }
        assert!(resp.changes.is_empty() && resp.drops.is_empty());
        cursor = Some(resp.next_cursor);
        if !resp.more {
            return out;
        }
    }
}

fn stored_changes(db: &Db) -> i64 {
    db.tx(
        false,
        |t| -> Result<i64, kunjung_sync_server::db::DbError> {
            Ok(t.query("SELECT count(*) FROM changes", &[])?[0][0].int())
        },
    )
    .unwrap()
}

/// One randomized case. Returns (operations, syncs, acknowledged changes).
fn case(seed: u64) -> (usize, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let db = Db::open("sqlite::memory:").unwrap();
    let roster: [(Role, &[&str], &[&str]); 6] = [
        (Role::Kader, &["PSY-A"], &[]),
        (Role::Kader, &["PSY-A"], &[]),
        (Role::Kader, &["PSY-B"], &[]),
        (Role::Bidan, &[], &[DESA_A]),
        (Role::Puskesmas, &[], &["32.14.01"]),
        (Role::Kader, &["PSY-B", "PSY-C"], &[]),
    ];
    let n = rng.gen_range(2..=5);
    let mut picks: Vec<usize> = (0..roster.len()).collect();
    picks.shuffle(&mut rng);
    let mut devs: Vec<Dev> = picks[..n]
        .iter()
        .enumerate()
        .map(|(i, &r)| Dev::new(i, roster[r].0, roster[r].1, roster[r].2, &mut rng))
        .collect();
    let mut acked: BTreeMap<Vec<u8>, Uuid> = BTreeMap::new();
    let steps = rng.gen_range(5..40);
    let (mut ops, mut syncs) = (0, 0);
    for t in 0..steps {
        let d = rng.gen_range(0..n);
        if rng.gen_bool(0.65) {
            ops += devs[d].random_op(&mut rng, t) as usize;
        } else {
            let net = match rng.gen_range(0..10) {
                0..=5 => Net::Up,
                6 | 7 => Net::LostAnswer,
                _ => Net::Pages(rng.gen_range(1..3)),
            };
            syncs += 1;
            for (id, h) in devs[d].sync(&db, net) {
                acked.insert(h, id);
            }
        }
    }
    // The network heals: everyone syncs, in a random order, until nothing moves.
    for _ in 0..3 {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for i in order {
            syncs += 1;
            for (id, h) in devs[i].sync(&db, Net::Up) {
                acked.insert(h, id);
            }
        }
    }

    let server = server_docs(&db);
    let mut all_hashes = BTreeSet::new();
    for d in server.values() {
        for c in d.changes_since(&[]) {
            all_hashes.insert(c.hash());
        }
    }
    assert_eq!(
        stored_changes(&db),
        all_hashes.len() as i64,
        "seed {seed}: each change stored once"
    );
    for (h, id) in &acked {
        let hash = automerge::ChangeHash(h.as_slice().try_into().unwrap());
        let doc = server
            .get(id)
            .unwrap_or_else(|| panic!("seed {seed}: acknowledged household {id} missing"));
        assert!(
            doc.automerge().get_change_by_hash(&hash).is_some(),
            "seed {seed}: acknowledged change lost on the server"
        );
        for d in &devs {
            if let Some(doc) = d.docs.get(id) {
                assert!(doc.automerge().get_change_by_hash(&hash).is_some());
            }
        }
    }
    for (i, d) in devs.iter().enumerate() {
        assert!(
            d.pending.is_empty(),
            "seed {seed}: device {i} ({:?}) still has {} unacknowledged changes; refused: {:?}",
            d.user.role,
            d.pending.len(),
            d.rejected
        );
        let scope = d.user.scope();
        let want: BTreeSet<Uuid> = server
            .iter()
            .filter(|(_, doc)| {
                let h = doc.read().unwrap().household;
                scope.contains(h.area_code.as_str(), h.posyandu_id.as_deref())
            })
            .map(|(id, _)| *id)
            .collect();
        let got: BTreeSet<Uuid> = d.docs.keys().copied().collect();
        assert_eq!(got, want, "seed {seed}: device {i} holds its scope");
        for (id, doc) in &d.docs {
            let s = &server[id];
            assert_eq!(heads(doc), heads(s), "seed {seed}: device {i} {id} heads");
            assert_eq!(
                serde_json::to_value(doc.read().unwrap()).unwrap(),
                serde_json::to_value(s.read().unwrap()).unwrap(),
                "seed {seed}: device {i} {id} view"
            );
        }
    }
    (ops, syncs, acked.len())
}

fn cases(part: u64, parts: u64) {
    let total: u64 = std::env::var("KUNJUNG_CONVERGENCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let base: u64 = std::env::var("KUNJUNG_CONVERGENCE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let n = total / parts + u64::from(part < total % parts);
    let start = std::time::Instant::now();
    let (mut ops, mut syncs, mut acked) = (0, 0, 0);
    for i in 0..n {
        let seed = base + i * parts + part;
        let (o, s, a) = case(seed);
        ops += o;
        syncs += s;
        acked += a;
    }
    eprintln!(
        "convergence part {part}: {n} cases, {ops} operations, {syncs} syncs, {acked} acknowledged changes, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn converges_part_0() {
    cases(0, 4);
}

#[test]
fn converges_part_1() {
    cases(1, 4);
}

#[test]
fn converges_part_2() {
    cases(2, 4);
}

#[test]
fn converges_part_3() {
    cases(3, 4);
}
