//! Pulled changes through the fast path (a new visit stored without its document) and
//! through the full path (load, apply, project everything) give the same store: the same
//! documents, rows, conflicts, tasks and search results. Real SQLite files.

use std::collections::BTreeMap;

use automerge::ReadDoc;
use chrono::NaiveDate;
use kunjung_core::checklist::{AnswerValue, VisitAnswers};
use kunjung_core::{FieldEdit, HouseholdDoc, NewHousehold, NewMember, NewVisit, Relation, Sex};
use kunjung_store::{prepare_document, ListFilter, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

fn member(name: &str, sex: Sex, birth: NaiveDate, relation: Relation) -> NewMember {
    NewMember {
        name: name.into(),
        sex,
        birth_date: birth,
        birth_date_estimated: false,
        nik: None,
        kk: None,
        relation: Some(relation),
        mother_id: None,
        jkn: None,
    }
}

/// A village of `n` households (a mother, a young child, an elder), as the server holds it.
fn village(dir: &std::path::Path, n: usize) -> Vec<Vec<u8>> {
    let mut s = Store::init(dir, None, "admin").unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let h = s
            .create_household(&NewHousehold {
                area_code: "32.14.01.2001".into(),
                rt: format!("{}", i % 4 + 1),
                rw: "1".into(),
                dusun: Some("Krajan".into()),
                posyandu_id: Some("psy-1".into()),
                address: Some(format!("Jalan Melati {i}")),
                kk: None,
            })
            .unwrap();
        let mother = s
            .add_member(
                h,
                &member(
                    &format!("Siti {i}"),
                    Sex::F,
                    d("1994-05-12"),
                    Relation::Head,
                ),
            )
            .unwrap();
        let child = s
            .add_member(
                h,
                &member(
                    &format!("Ahmad {i}"),
                    Sex::M,
                    today() - chrono::Duration::days(200),
                    Relation::Child,
                ),
            )
            .unwrap();
        s.add_member(
            h,
            &member(
                &format!("Mbah {i}"),
                Sex::M,
                d("1950-01-01"),
                Relation::Parent,
            ),
        )
        .unwrap();
        s.add_visit(&NewVisit {
            member_id: child.id,
            date: today() - chrono::Duration::days(30),
            weight_kg: Some(7.0),
            ..Default::default()
        })
        .unwrap();
        s.add_visit(&NewVisit {
            member_id: mother.id,
            date: today() - chrono::Duration::days(20),
            bp_systolic: Some(120),
            ..Default::default()
        })
        .unwrap();
        out.push(s.doc(h).unwrap().save());
    }
    out
}

/// A device that took the village by a first sync (snapshots, as the sync engine stores
/// them).
fn device(dir: &std::path::Path, user: &str, village: &[Vec<u8>]) -> Store {
    let mut s = Store::init(dir, None, user).unwrap();
    let ctx = s.projection_context().unwrap();
    let docs = village
        .iter()
        .map(|b| prepare_document(b.clone(), &ctx).unwrap())
        .collect();
    s.store_documents(docs).unwrap();
    s
}

/// One random piece of a kader's or bidan's work on a household.
fn work(s: &mut Store, rng: &mut StdRng, id: Uuid, day: i64) {
    let view = s.household_detail(id).unwrap().view;
    let date = today() - chrono::Duration::days(day);
    let pick = rng.gen_range(0..10);
    match pick {
        // Mostly new visits (the fast path), with a referral, checklist answers,
        // education, or voided.
        0..=5 => {
            let m = &view.members[rng.gen_range(0..view.members.len())];
            let mut answers = BTreeMap::new();
            if rng.gen_bool(0.5) {
                answers.insert("imm_bcg".to_string(), AnswerValue::Text(date.to_string()));
            }
            if rng.gen_bool(0.5) {
                answers.insert("weighed_this_month".to_string(), AnswerValue::Bool(true));
            }
            let v = s
                .add_visit(&NewVisit {
                    member_id: m.id,
                    date,
                    weight_kg: Some(rng.gen_range(5.0..70.0)),
                    bp_systolic: rng.gen_bool(0.5).then_some(130),
                    answers: VisitAnswers::from_map(answers).unwrap(),
                    danger_signs: if rng.gen_bool(0.2) {
                        vec!["preg_bleeding".into()]
                    } else {
                        Vec::new()
                    },
                    refer_reason: rng.gen_bool(0.1).then(|| "demam".to_string()),
                    education: if rng.gen_bool(0.3) {
                        [("gizi".to_string(), date.to_string())].into()
                    } else {
                        BTreeMap::new()
                    },
                    ..Default::default()
                })
                .unwrap();
            if rng.gen_bool(0.1) {
                s.edit(
                    id,
                    &[FieldEdit {
                        path: format!("visits/{}/voided", v.id),
                        value: Some(AnswerValue::Bool(true)),
                    }],
                    "visit.void",
                )
                .unwrap();
            }
        }
        // An edit of a field others may edit too (conflicts).
        6 => {
            let v = &view.visits[rng.gen_range(0..view.visits.len())];
            s.edit(
                id,
                &[FieldEdit {
                    path: format!("visits/{}/weight_kg", v.id),
                    value: Some(AnswerValue::Num(rng.gen_range(5.0..70.0))),
                }],
                "visit.edit",
            )
            .unwrap();
        }
        7 => {
            let v = &view.visits[rng.gen_range(0..view.visits.len())];
            s.add_review(v.id, Some("baik")).unwrap();
        }
        8 => {
            s.add_member(
                id,
                &member("Budi Santoso", Sex::M, d("2001-02-03"), Relation::Other),
            )
            .unwrap();
        }
        _ => {
            s.edit(
                id,
                &[FieldEdit {
                    path: "household/address".into(),
                    value: Some(AnswerValue::Text(format!("Gang {}", rng.gen_range(0..9)))),
                }],
                "household.edit",
            )
            .unwrap();
        }
    }
}

/// The device's unsynced changes grouped per household, in order, as a pull brings them
/// (and marked synced, as after a push).
fn take_changes(s: &mut Store) -> Vec<(Uuid, Vec<Vec<u8>>)> {
    let pending = s.unsynced(100_000).unwrap();
    let mut groups: Vec<(Uuid, Vec<Vec<u8>>)> = Vec::new();
    for p in &pending {
        match groups.iter_mut().find(|(h, _)| *h == p.household_id) {
            Some((_, g)) => g.push(p.bytes.clone()),
            None => groups.push((p.household_id, vec![p.bytes.clone()])),
        }
    }
    s.mark_synced_hashes(pending.into_iter().map(|p| p.hash))
        .unwrap();
    groups
}

/// Applies through the full path only: without fast index rows, every household loads
/// its document.
fn apply_full(s: &mut Store, groups: &[(Uuid, Vec<Vec<u8>>)]) {
    s.connection()
        .execute("UPDATE docs SET fast = NULL, fast_heads = NULL", [])
        .unwrap();
    s.apply_pulled(groups, true).unwrap();
}

fn stale_tasks(s: &Store) -> i64 {
    s.connection()
        .query_row(
            "SELECT count(*) FROM households WHERE tasks_on IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

/// Everything a user or the sync engine can see of the two stores is the same.
fn assert_same(fast: &mut Store, full: &mut Store, ids: &[Uuid]) {
    assert_eq!(fast.check_consistency().unwrap(), Vec::<String>::new());
    assert_eq!(full.check_consistency().unwrap(), Vec::<String>::new());
    for id in ids {
        let (a, b) = (fast.doc(*id).unwrap(), full.doc(*id).unwrap());
        assert_eq!(a.heads(), b.heads());
        let hashes = |d: &HouseholdDoc| {
            let mut v: Vec<_> = d.changes_since(&[]).iter().map(|c| c.hash()).collect();
            v.sort();
            v
        };
        assert_eq!(hashes(&a), hashes(&b));
        assert_eq!(
            json(&fast.household_detail(*id).unwrap()),
            json(&full.household_detail(*id).unwrap())
        );
    }
    // Tasks are read after refresh_tasks recomputed the stale ones.
    assert_eq!(
        json(&fast.tasks(None, None).unwrap()),
        json(&full.tasks(None, None).unwrap())
    );
    assert_eq!(stale_tasks(fast), 0);
    let all = ListFilter {
        limit: Some(10_000),
        ..Default::default()
    };
    let due = ListFilter {
        has_due_tasks: true,
        ..all.clone()
    };
    for f in [&all, &due] {
        assert_eq!(
            json(&fast.list_households(f).unwrap()),
            json(&full.list_households(f).unwrap())
        );
    }
    assert_eq!(
        json(&fast.list_visits(None, false, 10_000).unwrap()),
        json(&full.list_visits(None, false, 10_000).unwrap())
    );
    assert_eq!(
        json(&fast.list_visits(None, true, 10_000).unwrap()),
        json(&full.list_visits(None, true, 10_000).unwrap())
    );
    assert_eq!(
        json(&fast.list_referrals(None, None).unwrap()),
        json(&full.list_referrals(None, None).unwrap())
    );
    for q in ["Siti", "Budi", "Melati", "Gang"] {
        let sorted = |s: &Store| {
            let mut v: Vec<_> = s
                .search(q, 1000)
                .unwrap()
                .iter()
                .map(|h| json(h).to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(fast), sorted(full), "search {q}");
    }
    assert_eq!(
        json(&fast.all_conflicts().unwrap()),
        json(&full.all_conflicts().unwrap())
    );
}

#[test]
fn fast_and_full_paths_give_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let village = village(&dir.path().join("server"), 8);
    let ids: Vec<Uuid> = village
        .iter()
        .map(|b| HouseholdDoc::load(b).unwrap().id().unwrap())
        .collect();
    let mut fast = device(&dir.path().join("fast"), "bidan", &village);
    let mut full = device(&dir.path().join("full"), "bidan", &village);
    let mut kaders: Vec<Store> = (0..3)
        .map(|k| {
            device(
                &dir.path().join(format!("k{k}")),
                &format!("kader{k}"),
                &village,
            )
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(9);
    let mut fast_used = 0;
    for round in 0..8 {
        // Each kader works on a few households (sometimes the same ones: concurrent
        // changes, conflicting edits).
        let mut pulled = Vec::new();
        for k in kaders.iter_mut() {
            for _ in 0..rng.gen_range(1..6) {
                let id = ids[rng.gen_range(0..ids.len())];
                let day = rng.gen_range(0..60);
                work(k, &mut rng, id, day);
            }
            pulled.push(take_changes(k));
        }
        // The kaders catch up with each other, so the next round's changes build on
        // this one's (the fast path needs changes right after what the device holds).
        for (i, k) in kaders.iter_mut().enumerate() {
            for (j, groups) in pulled.iter().enumerate() {
                if i != j {
                    k.apply_pulled(groups, true).unwrap();
                }
            }
        }
        for groups in &pulled {
            // In pages of a few households, as the server sends them.
            for chunk in groups.chunks(rng.gen_range(1..4)) {
                fast.apply_pulled(chunk, true).unwrap();
                apply_full(&mut full, chunk);
            }
        }
        assert_eq!(stale_tasks(&full), 0);
        fast_used += stale_tasks(&fast);
        assert_same(&mut fast, &mut full, &ids);
        if round == 4 {
            // Compaction folds the changes into snapshots; nothing visible changes.
            fast.compact().unwrap();
            assert_same(&mut fast, &mut full, &ids);
        }
    }
    assert!(fast_used > 5, "fast path taken {fast_used} times");
    // The documents as stored (snapshot + pending changes) load the same from disk.
    drop(fast);
    let mut fast = Store::open(&dir.path().join("fast"), None).unwrap();
    assert_same(&mut fast, &mut full, &ids);
    // Pulling the same pages again changes nothing.
    for k in kaders.iter_mut() {
        let again: Vec<(Uuid, Vec<Vec<u8>>)> = ids
            .iter()
            .map(|id| {
                let d = k.doc(*id).unwrap();
                let c = d.changes_since(&[]);
                (*id, c.iter().map(|c| c.raw_bytes().to_vec()).collect())
            })
            .collect();
        assert_eq!(fast.apply_pulled(&again, true).unwrap(), 0);
    }
    assert_same(&mut fast, &mut full, &ids);
}

#[test]
fn changes_the_fast_path_cannot_prove_safe_take_the_full_path() {
    let dir = tempfile::tempdir().unwrap();
    let village = village(&dir.path().join("server"), 2);
    let id = HouseholdDoc::load(&village[0]).unwrap().id().unwrap();
    let mut fast = device(&dir.path().join("fast"), "bidan", &village);
    let mut full = device(&dir.path().join("full"), "bidan", &village);
    let base = HouseholdDoc::load(&village[0]).unwrap();
    let view = base.read().unwrap();
    let meta = kunjung_core::CommitMeta::now("kader9");
    let visits = base
        .automerge()
        .get(automerge::ROOT, "visits")
        .unwrap()
        .unwrap()
        .1;
    let hh = base
        .automerge()
        .get(automerge::ROOT, "household")
        .unwrap()
        .unwrap()
        .1;

    // A new visit and a household field in one change (hand-made with Automerge).
    let mut mixed = base.automerge().fork();
    let vid = Uuid::now_v7();
    {
        use automerge::transaction::Transactable;
        let mut tx = mixed.transaction();
        let o = tx
            .put_object(&visits, vid.to_string(), automerge::ObjType::Map)
            .unwrap();
        tx.put(&o, "member_id", view.members[0].id.to_string())
            .unwrap();
        tx.put(&o, "date", today().to_string()).unwrap();
        tx.put(&hh, "address", "Jalan Baru 1").unwrap();
        tx.commit();
    }
    let c = mixed.get_last_local_change().unwrap().raw_bytes().to_vec();
    let groups = vec![(id, vec![c])];
    fast.apply_pulled(&groups, true).unwrap();
    apply_full(&mut full, &groups);
    assert_eq!(stale_tasks(&fast), 0, "the full path stored it");
    let detail = fast.household_detail(id).unwrap();
    assert_eq!(
        detail.view.household.address.as_deref(),
        Some("Jalan Baru 1")
    );
    assert!(detail.view.visits.iter().any(|v| v.id == vid));
    assert_same(&mut fast, &mut full, &[id]);

    // A visit without a date (`read` skips it) still takes its key: a later visit at
    // the same key from a device that never saw it is a conflict, found by the full path.
    let at = fast.doc(id).unwrap();
    let mut odd = at.automerge().fork();
    let key = Uuid::now_v7();
    {
        use automerge::transaction::Transactable;
        let mut tx = odd.transaction();
        let o = tx
            .put_object(&visits, key.to_string(), automerge::ObjType::Map)
            .unwrap();
        tx.put(&o, "member_id", view.members[0].id.to_string())
            .unwrap();
        tx.commit();
    }
    let mut other = at.automerge().fork();
    {
        use automerge::transaction::Transactable;
        let mut tx = other.transaction();
        let o = tx
            .put_object(&visits, key.to_string(), automerge::ObjType::Map)
            .unwrap();
        tx.put(&o, "member_id", view.members[0].id.to_string())
            .unwrap();
        tx.put(&o, "date", today().to_string()).unwrap();
        tx.commit();
    }
    for doc in [&odd, &other] {
        let groups = vec![(
            id,
            vec![doc.get_last_local_change().unwrap().raw_bytes().to_vec()],
        )];
        fast.apply_pulled(&groups, true).unwrap();
        apply_full(&mut full, &groups);
    }
    let detail = fast.household_detail(id).unwrap();
    assert!(
        detail
            .conflicts
            .iter()
            .any(|c| c.path == format!("visits/{key}")),
        "{:?}",
        detail.conflicts
    );
    assert_same(&mut fast, &mut full, &[id]);

    // Two different changes with the same actor and sequence number (a forked device):
    // the second is refused, by either path, and nothing of its page is stored.
    let at = fast.doc(id).unwrap();
    let mut a = at.clone();
    let mut b = at.clone();
    let actor = automerge::ActorId::random();
    a.set_actor(actor.clone());
    b.set_actor(actor);
    let visit = |d: &mut HouseholdDoc, w: f64| {
        d.add_visit(
            &NewVisit {
                member_id: view.members[0].id,
                date: today(),
                weight_kg: Some(w),
                ..Default::default()
            },
            &meta,
        )
        .unwrap()
        .change
        .unwrap()
        .raw_bytes()
        .to_vec()
    };
    let (ca, cb) = (visit(&mut a, 50.0), visit(&mut b, 51.0));
    let first = vec![(id, vec![ca])];
    fast.apply_pulled(&first, true).unwrap();
    apply_full(&mut full, &first);
    assert_eq!(stale_tasks(&fast), 1, "the fast path stored the first");
    let other = HouseholdDoc::load(&village[1]).unwrap();
    let other_id = other.id().unwrap();
    let mut o = other.clone();
    let ok = visit_other(&mut o, &meta);
    let second = vec![(other_id, vec![ok]), (id, vec![cb])];
    let before = fast.list_visits(None, false, 1000).unwrap().len();
    assert!(fast.apply_pulled(&second, true).is_err());
    full.connection()
        .execute("UPDATE docs SET fast = NULL, fast_heads = NULL", [])
        .unwrap();
    assert!(full.apply_pulled(&second, true).is_err());
    assert_eq!(fast.list_visits(None, false, 1000).unwrap().len(), before);
    assert_same(&mut fast, &mut full, &[id, other_id]);
}

fn visit_other(d: &mut HouseholdDoc, meta: &kunjung_core::CommitMeta) -> Vec<u8> {
    let m = d.read().unwrap().members[0].id;
    d.add_visit(
        &NewVisit {
            member_id: m,
            date: today(),
            weight_kg: Some(60.0),
            ..Default::default()
        },
        meta,
    )
    .unwrap()
    .change
    .unwrap()
    .raw_bytes()
    .to_vec()
}
