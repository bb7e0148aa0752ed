//! Integration tests of the local store on real SQLite files in temporary directories.

use chrono::NaiveDate;
use kunjung_core::checklist::{AnswerValue, VisitAnswers};
use kunjung_core::{FieldEdit, NewHousehold, NewMember, NewVisit, Relation, Sex};
use kunjung_store::{ListFilter, Store, StoreError};

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn hh(area: &str, rt: &str) -> NewHousehold {
    NewHousehold {
        area_code: area.into(),
        rt: rt.into(),
        rw: "1".into(),
        dusun: Some("Krajan".into()),
        posyandu_id: Some("psy-1".into()),
        address: Some("Jalan Melati 7".into()),
        kk: None,
    }
}

fn member(name: &str, sex: Sex, bd: &str, nik: Option<&str>) -> NewMember {
    NewMember {
        name: name.into(),
        sex,
        birth_date: d(bd),
        birth_date_estimated: false,
        nik: nik.map(String::from),
        kk: None,
        relation: Some(Relation::Head),
        mother_id: None,
        jkn: None,
    }
}

#[test]
fn write_read_search_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), None, "kader1").unwrap();
    let h1 = s.create_household(&hh("32.14.01.2001", "3")).unwrap();
    let h2 = s.create_household(&hh("32.14.02.2002", "4")).unwrap();
    let m = s
        .add_member(
            h1,
            &member(
                "Siti Aminah",
                Sex::F,
                "1990-05-12",
                Some("3214015205900001"),
            ),
        )
        .unwrap();
    assert!(m.warnings.is_empty());
    let bad_nik = s
        .add_member(
            h2,
            &member("Budi Santoso", Sex::M, "1985-01-01", Some("12345")),
        )
        .unwrap();
    assert_eq!(bad_nik.warnings[0].code, "nik_format");
    let child = s
        .add_member(h1, &member("Ahmad Fauzi", Sex::M, "2025-06-01", None))
        .unwrap();
    let v = s
        .add_visit(&NewVisit {
            member_id: child.id,
            date: d("2026-01-10"),
            weight_kg: Some(8.1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(v.household_id, h1);
    assert!(v.referral_id.is_none());
    let detail = s.household_detail(h1).unwrap();
    assert_eq!(
        detail.view.visits[0].stage.map(|s| s.code()),
        Some("toddler")
    );

    // Search by name prefix, accent-insensitive, by NIK prefix, by address.
    let hits = s.search("siti am", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].member_id.as_deref(),
        Some(m.id.to_string().as_str())
    );
    assert_eq!(s.search("3214015", 10).unwrap().len(), 1);
    assert_eq!(
        s.search("melati", 10)
            .unwrap()
            .iter()
            .filter(|h| h.member_id.is_none())
            .count(),
        2
    );
    assert!(s.search("zzz", 10).unwrap().is_empty());

    // Lists filter by area prefix and life stage.
    assert_eq!(s.list_households(&ListFilter::default()).unwrap().len(), 2);
    let only = s
        .list_households(&ListFilter {
            area: Some("32.14.01".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].head_name.as_deref(), Some("Siti Aminah"));
    assert_eq!(only[0].member_count, 2);
    assert_eq!(only[0].visit_count, 1);
    let toddlers = s
        .list_households(&ListFilter {
            stage: Some("toddler".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(toddlers.len(), 1);
    assert!(s
        .list_households(&ListFilter {
            area: Some("32.1".into()),
            ..Default::default()
        })
        .is_err());

    // Reopen: everything is still there and consistent.
    drop(s);
    let mut s = Store::open(dir.path(), None).unwrap();
    assert_eq!(s.household_count().unwrap(), 2);
    assert!(s.check_consistency().unwrap().is_empty());
    s.rebuild().unwrap();
    assert!(s.check_consistency().unwrap().is_empty());
    assert_eq!(s.search("budi", 5).unwrap().len(), 1);
}

#[test]
fn danger_sign_creates_referral_in_same_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), None, "kader1").unwrap();
    let h = s.create_household(&hh("32.14.01.2001", "3")).unwrap();
    let m = s
        .add_member(h, &member("Rina", Sex::F, "1996-02-02", None))
        .unwrap();
    s.add_pregnancy(
        m.id,
        &kunjung_core::Pregnancy {
            hpht: Some(d("2025-12-01")),
            ..Default::default()
        },
    )
    .unwrap();
    let v = s
        .add_visit(&NewVisit {
            member_id: m.id,
            date: d("2026-03-01"),
            danger_signs: vec!["preg_bleeding".into()],
            answers: VisitAnswers::from_json(&serde_json::json!({"buku_kia": true})).unwrap(),
            ..Default::default()
        })
        .unwrap();
    let rid = v.referral_id.unwrap();
    let refs = s.list_referrals(Some("open"), None).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].id, rid.to_string());
    assert_eq!(
        s.household_detail(h).unwrap().view.visits[0]
            .stage
            .map(|s| s.code()),
        Some("pregnancy")
    );
    // The bidan answers the referral.
    s.edit(
        h,
        &[
            FieldEdit {
                path: format!("referrals/{rid}/status"),
                value: Some(AnswerValue::Text("examined".into())),
            },
            FieldEdit {
                path: format!("referrals/{rid}/feedback"),
                value: Some(AnswerValue::Text("Dirujuk ke RS".into())),
            },
        ],
        "referral.update",
    )
    .unwrap();
    let r = &s.list_referrals(None, None).unwrap()[0];
    assert_eq!(r.status, "examined");
    assert_eq!(r.feedback.as_deref(), Some("Dirujuk ke RS"));
    assert_eq!(s.list_visits(None, true, 10).unwrap().len(), 1);
    s.add_review(v.id, Some("ok")).unwrap();
    assert!(s.list_visits(None, true, 10).unwrap().is_empty());
    assert!(s.check_consistency().unwrap().is_empty());
}

#[test]
fn encrypted_store_leaks_nothing_and_wrong_pin_is_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), Some("246810"), "kader1").unwrap();
    let h = s.create_household(&hh("32.14.01.2001", "3")).unwrap();
    s.add_member(
        h,
        &member(
            "Kartini Wulandari",
            Sex::F,
            "1990-05-12",
            Some("3214015205900001"),
        ),
    )
    .unwrap();
    drop(s);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for needle in [
            &b"Kartini"[..],
            b"Wulandari",
            b"3214015205900001",
            b"Melati",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext found"
            );
        }
    }
    assert!(matches!(
        Store::open(dir.path(), Some("000000")),
        Err(StoreError::WrongPin)
    ));
    assert!(matches!(
        Store::open(dir.path(), None),
        Err(StoreError::PinRequired)
    ));
    assert_eq!(StoreError::WrongPin.to_string(), "PIN salah (wrong PIN)");
    let s = Store::open(dir.path(), Some("246810")).unwrap();
    assert_eq!(s.search("kartini", 5).unwrap().len(), 1);
    // Made with 8 kB pages (recorded in kunjung.json: SQLCipher needs it to open).
    let page: String = s
        .connection()
        .query_row("PRAGMA cipher_page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page, "8192");
    assert_eq!(
        Store::config(dir.path()).unwrap().unwrap().page_size,
        Some(8192)
    );
    assert!(Store::init(tempfile::tempdir().unwrap().path(), Some("12"), "k").is_err());
}

#[test]
fn two_stores_merge_and_show_conflicts() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Store::init(da.path(), None, "kader_a").unwrap();
    let mut b = Store::init(db.path(), None, "kader_b").unwrap();
    let h = a.create_household(&hh("32.14.01.2001", "3")).unwrap();
    let m = a
        .add_member(h, &member("Sri", Sex::F, "1980-01-01", None))
        .unwrap();
    b.import_bundle(&a.export_bundle(None).unwrap()).unwrap();
    assert_ne!(a.device_id(), b.device_id());
    // Concurrent: same field, a visit on each side.
    a.edit(
        h,
        &[FieldEdit {
            path: format!("members/{}/name", m.id),
            value: Some(AnswerValue::Text("Sri Wahyuni".into())),
        }],
        "member.edit",
    )
    .unwrap();
    b.edit(
        h,
        &[FieldEdit {
            path: format!("members/{}/name", m.id),
            value: Some(AnswerValue::Text("Sri Wahyuningsih".into())),
        }],
        "member.edit",
    )
    .unwrap();
    a.add_visit(&NewVisit {
        member_id: m.id,
        date: d("2026-02-01"),
        ..Default::default()
    })
    .unwrap();
    b.add_visit(&NewVisit {
        member_id: m.id,
        date: d("2026-02-02"),
        ..Default::default()
    })
    .unwrap();
    // Exchange the unsynced changes both ways.
    let from_a: Vec<Vec<u8>> = a
        .unsynced(1000)
        .unwrap()
        .into_iter()
        .map(|c| c.bytes)
        .collect();
    let from_b: Vec<Vec<u8>> = b
        .unsynced(1000)
        .unwrap()
        .into_iter()
        .filter(|c| c.household_id == h)
        .map(|c| c.bytes)
        .collect();
    b.apply_changes(h, &from_a, false).unwrap();
    a.apply_changes(h, &from_b, false).unwrap();
    let (va, vb) = (
        a.household_detail(h).unwrap(),
        b.household_detail(h).unwrap(),
    );
    assert_eq!(va.view, vb.view);
    assert_eq!(va.view.visits.len(), 2);
    assert_eq!(va.conflicts.len(), 1);
    assert_eq!(va.conflicts[0].values.len(), 2);
    let listed = a
        .list_households(&ListFilter {
            has_conflicts: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(a.check_consistency().unwrap().is_empty());
    assert!(b.check_consistency().unwrap().is_empty());
    // Resolving clears the conflict projection.
    a.edit(
        h,
        &[FieldEdit {
            path: format!("members/{}/name", m.id),
            value: Some(AnswerValue::Text("Sri Wahyuni".into())),
        }],
        "conflict.resolve",
    )
    .unwrap();
    assert_eq!(
        a.list_households(&ListFilter {
            has_conflicts: true,
            ..Default::default()
        })
        .unwrap()
        .len(),
        0
    );
    assert!(a.check_consistency().unwrap().is_empty());
}

#[test]
fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), None, "k").unwrap();
    let h = s.create_household(&hh("32.14.01.2001", "3")).unwrap();
    let m = s
        .add_member(h, &member("Sri", Sex::F, "1980-01-01", None))
        .unwrap();
    let before = s.household_detail(h).unwrap().view;
    assert!(s
        .import_bundle(b"KJB1\x10\x00\x00\x00garbagegarbage!!")
        .is_err());
    assert!(s.import_bundle(b"nope").is_err());
    assert!(s.apply_changes(h, &[b"corrupt".to_vec()], false).is_err());
    assert!(s
        .add_visit(&NewVisit {
            member_id: m.id,
            date: d("2026-01-01"),
            weight_kg: Some(-1.0),
            ..Default::default()
        })
        .is_err());
    assert!(s.create_household(&hh("32.14.01", "3")).is_err());
    assert_eq!(s.household_detail(h).unwrap().view, before);
    assert_eq!(s.household_count().unwrap(), 1);
    assert!(s.check_consistency().unwrap().is_empty());
    assert!(matches!(
        Store::open(tempfile::tempdir().unwrap().path(), None),
        Err(StoreError::NotInitialized(_))
    ));
    assert!(matches!(
        Store::init(dir.path(), None, "k"),
        Err(StoreError::AlreadyInitialized(_))
    ));
}

#[test]
fn compaction_keeps_unsynced_changes_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), None, "k").unwrap();
    let h = s.create_household(&hh("32.14.01.2001", "3")).unwrap();
    let m = s
        .add_member(h, &member("Sri", Sex::F, "1980-01-01", None))
        .unwrap();
    for i in 0..150 {
        s.add_visit(&NewVisit {
            member_id: m.id,
            date: d("2026-01-01"),
            weight_kg: Some(50.0 + i as f64 / 10.0),
            ..Default::default()
        })
        .unwrap();
    }
    assert_eq!(s.unsynced_count().unwrap(), 152);
    synced_and_compacted(&mut s);
    assert_eq!(s.unsynced_count().unwrap(), 0);
    let n: i64 = s
        .connection()
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    drop(s);
    let mut s = Store::open(dir.path(), None).unwrap();
    assert_eq!(s.household_detail(h).unwrap().view.visits.len(), 150);
    assert!(s.check_consistency().unwrap().is_empty());
}

#[test]
fn tasks_projection_follows_visits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), None, "k").unwrap();
    let h = s.create_household(&hh("32.14.01.2001", "3")).unwrap();
    let today = chrono::Local::now().date_naive();
    let birth = today - chrono::Duration::days(45);
    let baby = s
        .add_member(h, &member("Bayi Ani", Sex::F, &birth.to_string(), None))
        .unwrap();
    let tasks = s.tasks(None, None).unwrap();
    let bcg = tasks
        .iter()
        .find(|t| t.service == "imm_bcg")
        .expect("BCG task for a 45-day-old");
    assert_ne!(bcg.status, "done");
    assert_eq!(bcg.member_id, baby.id.to_string());
    assert_eq!(
        s.list_households(&ListFilter {
            has_due_tasks: true,
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    // Recording BCG in a visit marks it done in the same write.
    let answers =
        VisitAnswers::from_json(&serde_json::json!({"imm_bcg": today.to_string()})).unwrap();
    s.add_visit(&NewVisit {
        member_id: baby.id,
        date: today,
        answers,
        ..Default::default()
    })
    .unwrap();
    let bcg = s
        .tasks(None, None)
        .unwrap()
        .into_iter()
        .find(|t| t.service == "imm_bcg")
        .unwrap();
    assert_eq!(bcg.status, "done");
    // Another day: computed from the documents, the projection is untouched.
    let later = s
        .tasks(Some(today + chrono::Duration::days(400)), None)
        .unwrap();
    assert!(later.iter().any(|t| t.service.starts_with("imm_mr")));
    assert!(s.check_consistency().unwrap().is_empty());
}

/// A household with a member and two visits (one with a conflict-free edit), saved as the
/// server sends snapshots: without Automerge's compression.
fn saved_household(s: &mut Store, rt: &str) -> (uuid::Uuid, Vec<u8>) {
    let h = s.create_household(&hh("32.14.01.2001", rt)).unwrap();
    let m = s
        .add_member(h, &member(&format!("Sri {rt}"), Sex::F, "1990-01-01", None))
        .unwrap();
    for day in ["2026-01-05", "2026-02-05"] {
        s.add_visit(&NewVisit {
            member_id: m.id,
            date: d(day),
            weight_kg: Some(52.0),
            ..Default::default()
        })
        .unwrap();
    }
    (h, s.doc(h).unwrap().automerge().save_nocompress())
}

#[test]
fn prepared_documents_store_in_one_transaction_like_apply_document() {
    let src_dir = tempfile::tempdir().unwrap();
    let mut src = Store::init(src_dir.path(), None, "kader1").unwrap();
    let docs: Vec<(uuid::Uuid, Vec<u8>)> = (1..=5)
        .map(|i| saved_household(&mut src, &i.to_string()))
        .collect();

    // One store through the per-household path, one through prepare + store_documents.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Store::init(da.path(), None, "pkm").unwrap();
    let mut b = Store::init(db.path(), None, "pkm").unwrap();
    for (_, bytes) in &docs {
        a.apply_document(bytes, true).unwrap();
    }
    // One household is already on b: it is merged, not inserted twice.
    b.apply_document(&docs[0].1, true).unwrap();
    let ctx = b.projection_context().unwrap();
    let prepared: Vec<_> = docs
        .iter()
        .map(|(_, bytes)| kunjung_store::prepare_document(bytes.clone(), &ctx).unwrap())
        .collect();
    assert_eq!(prepared[2].household_id(), docs[2].0);
    assert_eq!(b.store_documents(prepared).unwrap(), 4);
    assert!(b.check_consistency().unwrap().is_empty());
    let f = ListFilter::default();
    assert_eq!(
        serde_json::to_value(a.list_households(&f).unwrap()).unwrap(),
        serde_json::to_value(b.list_households(&f).unwrap()).unwrap()
    );
    for (id, _) in &docs {
        assert_eq!(a.doc(*id).unwrap().heads(), b.doc(*id).unwrap().heads());
    }
    assert_eq!(b.search("Sri", 10).unwrap().len(), 5);
    // Stored compressed: smaller than what came.
    let (stored, came): (i64, usize) = (
        b.connection()
            .query_row("SELECT sum(length(snapshot)) FROM docs", [], |r| r.get(0))
            .unwrap(),
        docs.iter().map(|(_, b)| b.len()).sum(),
    );
    assert!((stored as usize) < came, "{stored} >= {came}");
    assert!(kunjung_store::prepare_document(b"not a document".to_vec(), &ctx).is_err());
}

/// Marks every local change as acknowledged by the server, then compacts.
fn synced_and_compacted(s: &mut Store) {
    let all: Vec<Vec<u8>> = s
        .unsynced(100_000)
        .unwrap()
        .into_iter()
        .map(|c| c.hash)
        .collect();
    s.mark_synced_hashes(all).unwrap();
    s.compact().unwrap();
}

#[test]
fn snapshots_of_an_older_store_still_open_and_compact_rewrites_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::init(dir.path(), None, "kader1").unwrap();
    let (h, _) = saved_household(&mut s, "3");
    synced_and_compacted(&mut s);
    let before = s.household_detail(h).unwrap();
    // What an older Kunjung wrote: Automerge's own compressed save, no zstd.
    let plain = s.doc(h).unwrap().save();
    s.connection()
        .execute(
            "UPDATE docs SET snapshot = ?1 WHERE household_id = ?2",
            rusqlite::params![plain, h.to_string()],
        )
        .unwrap();
    drop(s);
    let mut s = Store::open(dir.path(), None).unwrap();
    let after = s.household_detail(h).unwrap();
    assert_eq!(
        serde_json::to_value(&before).unwrap(),
        serde_json::to_value(&after).unwrap()
    );
    s.compact().unwrap();
    let head: Vec<u8> = s
        .connection()
        .query_row(
            "SELECT substr(snapshot, 1, 4) FROM docs WHERE household_id = ?1",
            [h.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(head, [0x28, 0xb5, 0x2f, 0xfd], "rewritten as zstd");
    drop(s);
    let mut s = Store::open(dir.path(), None).unwrap();
    assert_eq!(
        serde_json::to_value(&before).unwrap(),
        serde_json::to_value(s.household_detail(h).unwrap()).unwrap()
    );
    assert!(s.check_consistency().unwrap().is_empty());
}

/// A store written by schema 2 (`tests/fixtures/store-v2`, made with the `kunjung` command
/// of that version: 5 demo households, a visit with a danger sign and its referral, a
/// review, a voided visit, a conflict, 136 unsynced changes) opens with this version: its
/// projections are rewritten in the new form with nothing lost, and `expected.json` (what
/// the old version listed) is what this one lists.
#[test]
fn a_store_of_schema_2_is_migrated_with_nothing_lost() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v2");
    let dir = tempfile::tempdir().unwrap();
    for f in ["kunjung.db", "kunjung.json"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json")).unwrap()).unwrap();
    let mut s = Store::open(dir.path(), None).unwrap();
    let version: i64 = s
        .connection()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 3, "{version}");
    // An older store keeps its page size (4096, none recorded).
    assert_eq!(Store::config(dir.path()).unwrap().unwrap().page_size, None);
    let page: i64 = s
        .connection()
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page, 4096);
    // The projections were converted, not rebuilt: still consistent with the documents
    // (tasks included, for the day they were computed).
    assert!(s.check_consistency().unwrap().is_empty());
    assert_eq!(
        serde_json::to_value(s.list_households(&ListFilter::default()).unwrap()).unwrap(),
        expected["households"]
    );
    for q in ["a", "siti rah", "jl", "3214"] {
        assert_eq!(
            serde_json::to_value(s.search(q, 100).unwrap()).unwrap(),
            expected["search"][q],
            "search {q}"
        );
    }
    assert_eq!(
        serde_json::to_value(s.list_visits(None, true, 1000).unwrap()).unwrap(),
        expected["review_queue"]
    );
    assert_eq!(
        serde_json::to_value(s.list_referrals(None, None).unwrap()).unwrap(),
        expected["referrals"]
    );
    let conflicts = serde_json::to_value(s.all_conflicts().unwrap()).unwrap();
    assert_eq!(conflicts.as_array().unwrap().len(), 1);
    assert_eq!(s.unsynced_count().unwrap(), 136);
    // Lookups by member and visit id still find their household.
    let v = &expected["review_queue"][0];
    let hid: uuid::Uuid = v["household_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        s.household_of_visit(v["id"].as_str().unwrap().parse().unwrap())
            .unwrap(),
        hid
    );
    assert_eq!(
        s.household_of_member(v["member_id"].as_str().unwrap().parse().unwrap())
            .unwrap(),
        hid
    );
    // Writes and a rebuild work on the migrated store and agree with each other.
    s.add_visit(&NewVisit {
        member_id: v["member_id"].as_str().unwrap().parse().unwrap(),
        date: d("2026-11-02"),
        weight_kg: Some(9.0),
        ..Default::default()
    })
    .unwrap();
    let listed = serde_json::to_value(s.list_visits(None, false, 1000).unwrap()).unwrap();
    s.rebuild().unwrap();
    assert!(s.check_consistency().unwrap().is_empty());
    assert_eq!(
        serde_json::to_value(s.list_visits(None, false, 1000).unwrap()).unwrap(),
        listed
    );
    drop(s);
    // Opening again does not migrate again.
    let s = Store::open(dir.path(), None).unwrap();
    assert_eq!(
        serde_json::to_value(s.list_households(&ListFilter::default()).unwrap())
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

/// Once a store holds 100 households, its snapshots are compressed with a dictionary
/// trained on them (kept in the store): smaller, and read back the same after reopening.
#[test]
fn snapshots_get_a_dictionary_of_the_store_and_read_back_the_same() {
    let src_dir = tempfile::tempdir().unwrap();
    let mut src = Store::init(src_dir.path(), None, "kader1").unwrap();
    let docs: Vec<(uuid::Uuid, Vec<u8>)> = (1..=110)
        .map(|i| saved_household(&mut src, &i.to_string()))
        .collect();
    let dicts = |s: &Store| -> i64 {
        s.connection()
            .query_row("SELECT count(*) FROM zdicts", [], |r| r.get(0))
            .unwrap()
    };
    let stored = |s: &Store| -> i64 {
        s.connection()
            .query_row("SELECT sum(length(snapshot)) FROM docs", [], |r| r.get(0))
            .unwrap()
    };
    // Written one by one: no dictionary yet.
    assert_eq!(dicts(&src), 0);
    let before = stored(&src);

    // A first sync: snapshots stored in chunks; the dictionary comes after the first 100.
    let dir = tempfile::tempdir().unwrap();
    let mut b = Store::init(dir.path(), None, "pkm").unwrap();
    for chunk in docs.chunks(60) {
        let ctx = b.projection_context().unwrap();
        let prepared: Vec<_> = chunk
            .iter()
            .map(|(_, bytes)| kunjung_store::prepare_document(bytes.clone(), &ctx).unwrap())
            .collect();
        b.store_documents(prepared).unwrap();
    }
    assert_eq!(dicts(&b), 1);
    assert!(stored(&b) * 4 < before * 3, "{} vs {before}", stored(&b));
    assert!(b.check_consistency().unwrap().is_empty());
    drop(b);
    let mut b = Store::open(dir.path(), None).unwrap();
    for (id, _) in &docs {
        assert_eq!(b.doc(*id).unwrap().heads(), src.doc(*id).unwrap().heads());
    }
    // Local writes and compaction keep using it.
    let m = b.household_detail(docs[0].0).unwrap().view.members[0].id;
    b.add_visit(&NewVisit {
        member_id: m,
        date: d("2026-03-05"),
        ..Default::default()
    })
    .unwrap();
    synced_and_compacted(&mut b);
    assert_eq!(dicts(&b), 1);
    assert_eq!(b.doc(docs[0].0).unwrap().read().unwrap().visits.len(), 3);
    assert!(b.check_consistency().unwrap().is_empty());

    // A store filled one household at a time gets its dictionary when compacted.
    synced_and_compacted(&mut src);
    assert_eq!(dicts(&src), 1);
    assert!(stored(&src) * 4 < before * 3);
    drop(src);
    let mut src = Store::open(src_dir.path(), None).unwrap();
    assert!(src.check_consistency().unwrap().is_empty());
}
