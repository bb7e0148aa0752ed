//! Multi-device sync through real `kunjung-server` processes over HTTP (SPEC §4): devices
//! edit offline and converge in any order, scopes hold for every role and endpoint,
//! disabled accounts stop at once, and a server killed mid-sync loses and duplicates
//! nothing. Each scenario runs on SQLite; the convergence scenario also on PostgreSQL
//! when `KUNJUNG_TEST_POSTGRES` is set (required with `KUNJUNG_REQUIRE_POSTGRES=1`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use kunjung_client::sync::{sync, SyncError, SyncOptions};
use kunjung_core::checklist::AnswerValue;
use kunjung_core::{FieldEdit, NewHousehold};
use kunjung_protocol::{ByteBuf, HouseholdChanges, SyncRequest, SyncResponse, VERSION_HEADER};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use uuid::Uuid;

mod common;
use common::*;

/// Three devices edit the same households offline and sync in random orders.
fn converge(db: &str, seed: u64) {
    let server = Server::start(db);
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.add_user("kader2", "kader", &["PSY-A"]);
    server.add_user("bidan", "bidan", &[DESA_A]);
    let mut devs = [
        Device::new("kader1"),
        Device::new("kader2"),
        Device::new("bidan"),
    ];

    let (h1, m1) = devs[0].household(DESA_A, "PSY-A");
    let (h2, m2) = devs[0].household(DESA_A, "PSY-A");
    let v1 = devs[0].visit(m1, "kunjungan pertama");
    assert!(devs[0].sync(&server).verified);
    for d in devs.iter_mut().skip(1) {
        let s = d.sync(&server);
        assert_eq!(s.snapshots, 2);
        assert!(s.verified);
    }

    // Offline edits.
    // Different fields of the same household.
    devs[0].set(h1, "household/address", text("Jl. Mawar 1"));
    devs[1].set(h1, "household/kk", text("3214010101010001"));
    // The same field on all three: a conflict, kept.
    devs[0].set(h1, &format!("members/{m1}/name"), text("Siti A."));
    devs[1].set(h1, &format!("members/{m1}/name"), text("Sity Aminah"));
    devs[2].set(
        h1,
        &format!("members/{m1}/name"),
        text("Siti Aminah binti Ahmad"),
    );
    // Adds on every side.
    let va = devs[0].visit(m2, "dari kader1");
    let vb = devs[1].visit(m2, "dari kader2");
    let mc = devs[2].member(h2, "Bayi Siti");
    // A void against an edit of the same visit.
    devs[0].set(h1, &format!("visits/{v1}/voided"), AnswerValue::Bool(true));
    devs[0].set(h1, &format!("visits/{v1}/void_reason"), text("salah catat"));
    devs[1].set(
        h1,
        &format!("visits/{v1}/notes"),
        text("catatan diperbaiki"),
    );
    // A household created offline.
    let (h3, _) = devs[1].household(DESA_A, "PSY-A");

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..3 {
        let mut order = [0usize, 1, 2];
        order.shuffle(&mut rng);
        for i in order {
            let s = devs[i].sync(&server);
            assert!(s.verified, "device {i}: {s:?}");
            assert!(s.rejected.is_empty());
        }
    }
    let states: Vec<_> = devs.iter_mut().map(|d| d.state()).collect();
    assert_eq!(
        states[0].keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([h1, h2, h3])
    );
    assert_eq!(states[0], states[1], "seed {seed}");
    assert_eq!(states[1], states[2], "seed {seed}");

    // Nothing lost.
    let d = devs[2].store.household_detail(h1).unwrap();
    assert_eq!(d.view.household.address.as_deref(), Some("Jl. Mawar 1"));
    assert_eq!(d.view.household.kk.as_deref(), Some("3214010101010001"));
    let v = d.view.visits.iter().find(|v| v.id == v1).unwrap();
    assert!(v.voided, "the void is kept");
    assert_eq!(
        v.notes.as_deref(),
        Some("catatan diperbaiki"),
        "the edit is kept"
    );
    let conflict = d
        .conflicts
        .iter()
        .find(|c| c.path == format!("members/{m1}/name"))
        .expect("the same-field edits are listed as a conflict");
    assert_eq!(conflict.values.len(), 3);
    let d2 = devs[0].store.household_detail(h2).unwrap();
    let visits: BTreeSet<Uuid> = d2.view.visits.iter().map(|v| v.id).collect();
    assert!(visits.contains(&va) && visits.contains(&vb));
    assert!(d2.view.members.iter().any(|m| m.id == mc));
    // Nothing duplicated: the server stored each change exactly once.
    let all = devs[0].hashes();
    assert_eq!(all, devs[1].hashes());
    assert_eq!(server.metric("kunjung_change_sequence"), all.len() as i64);
    // A further sync has nothing to move.
    let s = devs[0].sync(&server);
    assert_eq!((s.pushed, s.pulled, s.round_trips), (0, 0, 1));
}

#[test]
fn three_devices_converge_sqlite() {
    for seed in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        converge(&sqlite_db(dir.path()), seed);
    }
}

#[test]
fn three_devices_converge_postgres() {
    if let Some(db) = postgres_db("converge") {
        converge(&db, 7);
    }
}

/// Sends a hand-made sync request with a token; returns the decoded answer or the status.
fn raw_sync(url: &str, token: &str, req: &SyncRequest) -> Result<SyncResponse, u16> {
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/sync"))
        .header(VERSION_HEADER, "1")
        .header("content-type", "application/cbor")
        .header("content-encoding", "zstd")
        .bearer_auth(token)
        .body(kunjung_protocol::encode(req).unwrap())
        .send()
        .unwrap();
    if r.status().as_u16() != 200 {
        return Err(r.status().as_u16());
    }
    Ok(kunjung_protocol::decode(&r.bytes().unwrap()).unwrap())
}

fn login(url: &str, user: &str) -> String {
    let r: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/login"))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": user, "password": PASSWORD, "device_id": format!("raw-{user}")}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

fn get(url: &str, token: Option<&str>) -> u16 {
    let mut r = reqwest::blocking::Client::new()
        .get(url)
        .header(VERSION_HEADER, "1");
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap().status().as_u16()
}

#[test]
fn kader_never_sees_nor_writes_another_posyandu() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_db(dir.path()));
    server.add_user("kader-a", "kader", &["PSY-A"]);
    server.add_user("kader-b", "kader", &["PSY-B"]);
    let mut a = Device::new("kader-a");
    let mut b = Device::new("kader-b");
    let (ha, _) = a.household(DESA_A, "PSY-A");
    let (hb, _) = b.household(DESA_A, "PSY-B");
    assert!(a.sync(&server).verified);
    assert!(b.sync(&server).verified);
    assert!(a.sync(&server).verified);
    assert_eq!(a.ids(), BTreeSet::from([ha]));
    assert_eq!(b.ids(), BTreeSet::from([hb]));

    // B gets hold of A's household (a copied file) and tries to push into it.
    let bundle = a.store.export_bundle(Some(ha)).unwrap();
    b.store.import_bundle(&bundle).unwrap();
    b.set(ha, "household/address", text("ditulis oleh kader B"));
    let s = b.sync(&server);
    assert!(!s.verified, "a rejected push is not a verified sync");
    assert!(s
        .rejected
        .iter()
        .all(|r| r.household_id == ha && r.code == "out_of_scope"));
    assert!(!s.rejected.is_empty());
    // Nothing of it reached the server or A.
    a.sync(&server);
    let d = a.store.household_detail(ha).unwrap();
    assert_eq!(d.view.household.address.as_deref(), Some("Kp. Awal"));
    let tb = login(&server.url, "kader-b");
    assert_eq!(
        get(&format!("{}/v1/households/{ha}", server.url), Some(&tb)),
        403
    );
    assert_eq!(
        get(&format!("{}/v1/households/{hb}", server.url), Some(&tb)),
        200
    );

    // `kunjung sync` on that store: the JSON summary still printed, the exit status non-zero.
    let Device { store, dir, .. } = b;
    drop(store);
    let out = Command::new(client_bin())
        .arg("--data")
        .arg(dir.path())
        .args(["sync", "--server", &server.url, "--user", "kader-b"])
        .env("KUNJUNG_PASSWORD", PASSWORD)
        .env_remove("KUNJUNG_PIN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unverified sync exits non-zero");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["verified"], false);
    assert!(summary["unsynced"].as_i64().unwrap() > 0);
    assert!(
        stderr.contains("kunjung: sinkronisasi belum terverifikasi")
            && stderr.contains("(sync not verified"),
        "{stderr}"
    );
}

#[test]
fn another_user_on_the_device_gets_none_of_the_previous_users_households() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_db(dir.path()));
    server.add_user("kader-a", "kader", &["PSY-A"]);
    server.add_user("kader-b", "kader", &["PSY-B"]);
    let mut b = Device::new("kader-b");
    let (hb, _) = b.household(DESA_A, "PSY-B");
    assert!(b.sync(&server).verified);
    let mut dev = Device::new("kader-a");
    let (ha, ma) = dev.household(DESA_A, "PSY-A");
    assert!(dev.sync(&server).verified);
    assert_eq!(dev.ids(), BTreeSet::from([ha]));

    // A records a visit and does not sync; B picks up the phone: refused, nothing lost.
    dev.visit(ma, "belum terkirim");
    dev.user = "kader-b".into();
    let o = dev.options(&server);
    let e = sync(&mut dev.store, &o, &mut |_| {}).unwrap_err();
    assert_eq!(e.code(), "other_user_unsynced");
    assert!(
        e.to_string().contains("sinkronkan dulu sebagai kader-a")
            && e.to_string()
                .contains("(1 unsynced changes of user kader-a"),
        "{e}"
    );
    assert_eq!(dev.ids(), BTreeSet::from([ha]));
    assert_eq!(dev.store.unsynced_count().unwrap(), 1);

    // A wrong password for B costs A nothing either.
    dev.user = "kader-a".into();
    assert!(dev.sync(&server).verified);
    dev.user = "kader-b".into();
    let mut o = dev.options(&server);
    o.password = Some("salah-sekali".into());
    assert!(sync(&mut dev.store, &o, &mut |_| {}).is_err());
    assert_eq!(dev.ids(), BTreeSet::from([ha]));

    // B logs in: A's household is gone from the device, B's arrives, and the file no
    // longer holds A's household's address.
    dev.set(ha, "household/address", text("Jl. Rahasia Kader A 17"));
    dev.user = "kader-a".into();
    assert!(dev.sync(&server).verified);
    let holds_address = |dir: &std::path::Path| {
        let needle = b"Jl. Rahasia Kader A 17";
        std::fs::read_dir(dir).unwrap().any(|f| {
            let f = f.unwrap().path();
            f.is_file()
                && std::fs::read(&f)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
        })
    };
    assert!(
        holds_address(dev.dir.path()),
        "the address is on the device"
    );
    dev.user = "kader-b".into();
    assert!(dev.sync(&server).verified);
    assert_eq!(dev.ids(), BTreeSet::from([hb]));
    assert!(dev.store.household_detail(ha).is_err());
    assert!(
        !holds_address(dev.dir.path()),
        "no file of the device still holds A's address"
    );
    // And back to A: her household comes back from the server, B's leaves.
    dev.user = "kader-a".into();
    assert!(dev.sync(&server).verified);
    assert_eq!(dev.ids(), BTreeSet::from([ha]));
}

/// More devices syncing at once than the server answers at once
/// (`KUNJUNG_SYNC_CONCURRENCY=2`): the others wait their turn (none fails or times out),
/// and every device ends with every household of the posyandu. The group commit's
/// counters add up: every write ran in some batch.
#[test]
fn syncs_beyond_the_concurrency_limit_wait_their_turn() {
    const N: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&sqlite_db(dir.path()), &[("KUNJUNG_SYNC_CONCURRENCY", "2")]);
    let mut devs: Vec<Device> = (0..N)
        .map(|i| {
            server.add_user(&format!("kader{i}"), "kader", &["PSY-A"]);
            Device::new(&format!("kader{i}"))
        })
        .collect();
    let mut made = BTreeSet::new();
    for d in devs.iter_mut() {
        let (h, m) = d.household(DESA_A, "PSY-A");
        d.visit(m, "kunjungan");
        made.insert(h);
    }
    let pieces0 = server.metric("kunjung_write_pieces_total");
    // All at once, twice: the pushes (and what was already there), then the rest.
    for _ in 0..2 {
        std::thread::scope(|sc| {
            for d in devs.iter_mut() {
                let server = &server;
                sc.spawn(move || assert!(d.sync(server).verified));
            }
        });
    }
    for d in devs.iter_mut() {
        assert_eq!(d.ids(), made);
    }
    let batches = server.metric("kunjung_write_batches_total");
    let pieces = server.metric("kunjung_write_pieces_total");
    // Every sync wrote (its push or its audit events) in some batch.
    assert!(pieces - pieces0 >= 2 * N as i64, "{pieces0} -> {pieces}");
    assert!(
        batches >= 1 && batches <= pieces,
        "{batches} batches, {pieces} pieces"
    );
}

#[test]
fn disabled_user_token_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_db(dir.path()));
    server.add_user("kader", "kader", &["PSY-A"]);
    let mut d = Device::new("kader");
    d.household(DESA_A, "PSY-A");
    assert!(d.sync(&server).verified);
    let token = login(&server.url, "kader");
    assert_eq!(get(&format!("{}/v1/me", server.url), Some(&token)), 200);
    server.admin(&["user", "disable", "--username", "kader"]);
    assert_eq!(get(&format!("{}/v1/me", server.url), Some(&token)), 401);
    d.household(DESA_A, "PSY-A");
    let o = d.options(&server);
    match sync(&mut d.store, &o, &mut |_| {}) {
        Err(SyncError::Server { code, .. }) => assert_eq!(code, "account_disabled"),
        other => panic!("expected account_disabled, got {other:?}"),
    }
    assert_eq!(
        d.store.unsynced_count().unwrap(),
        2,
        "the new household stays pending"
    );
}

#[test]
fn authorization_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_db(dir.path()));
    server.add_user("admin", "admin", &[]);
    server.add_user("kader", "kader", &["PSY-A"]);
    server.add_user("bidan", "bidan", &[DESA_A]);
    server.add_user("puskesmas", "puskesmas", &["32.14.01"]);
    let mut admin = Device::new("admin");
    let (h1, _) = admin.household(DESA_A, "PSY-A"); // everyone's
    let (h2, _) = admin.household(DESA_A2, "PSY-C"); // puskesmas and admin
    let (h3, _) = admin.household(DESA_B, "PSY-B"); // admin only
    assert!(admin.sync(&server).verified);
    let all = [h1, h2, h3];
    let scope: BTreeMap<&str, Vec<Uuid>> = BTreeMap::from([
        ("kader", vec![h1]),
        ("bidan", vec![h1]),
        ("puskesmas", vec![h1, h2]),
        ("admin", vec![h1, h2, h3]),
    ]);
    for (role, inside) in &scope {
        let token = login(&server.url, role);
        // GET /v1/me: any signed-in user; nobody without a token.
        assert_eq!(get(&format!("{}/v1/me", server.url), Some(&token)), 200);
        assert_eq!(get(&format!("{}/v1/me", server.url), None), 401);
        // GET /v1/admin/users: admin only.
        let want = if *role == "admin" { 200 } else { 403 };
        assert_eq!(
            get(&format!("{}/v1/admin/users", server.url), Some(&token)),
            want,
            "{role}"
        );
        assert_eq!(get(&format!("{}/v1/admin/users", server.url), None), 401);
        for h in all {
            // GET /v1/households/{id}: in scope or 403.
            let want = if inside.contains(&h) { 200 } else { 403 };
            let url = format!("{}/v1/households/{h}", server.url);
            assert_eq!(get(&url, Some(&token)), want, "{role} {h}");
            assert_eq!(get(&url, None), 401);
            // POST /v1/sync push: stored in scope, rejected outside.
            let mut doc = admin.store.doc(h).unwrap();
            doc.set_actor(automerge::ActorId::random());
            let change = doc
                .edit(
                    &[FieldEdit {
                        path: "household/address".into(),
                        value: Some(text(&format!("oleh {role}"))),
                    }],
                    &kunjung_core::CommitMeta::now(*role),
                    "edit",
                )
                .unwrap()
                .change
                .unwrap();
            let req = SyncRequest {
                cursor: None,
                changes: vec![HouseholdChanges {
                    household_id: h,
                    changes: vec![ByteBuf::from(change.raw_bytes().to_vec())],
                }],
                page_size: None,
            };
            let resp = raw_sync(&server.url, &token, &req).unwrap();
            if inside.contains(&h) {
                assert_eq!((resp.acked, resp.rejected.len()), (1, 0), "{role} {h}");
            } else {
                assert_eq!(resp.acked, 0, "{role} {h}");
                assert_eq!(resp.rejected[0].code, "out_of_scope", "{role} {h}");
            }
            assert_eq!(raw_sync(&server.url, "forged", &req).unwrap_err(), 401);
        }
        // POST /v1/sync pull: exactly the scope, as snapshots.
        let resp = raw_sync(&server.url, &token, &SyncRequest::default()).unwrap();
        let got: BTreeSet<Uuid> = resp.snapshots.iter().map(|s| s.household_id).collect();
        let want: BTreeSet<Uuid> = inside.iter().copied().collect();
        assert_eq!(got, want, "{role}");
    }
}

#[test]
fn killed_server_mid_sync_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&sqlite_db(dir.path()));
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.add_user("kader2", "kader", &["PSY-A"]);
    let mut a = Device::new("kader1");
    for i in 0..40 {
        let (_, m) = a.household(DESA_A, "PSY-A");
        a.visit(m, &format!("kunjungan {i}"));
    }
    assert!(a.sync(&server).verified);

    // B's first sync, in pages of 5; the server dies after the second page.
    let mut b = Device::new("kader2");
    let mut o = b.options(&server);
    o.page_size = Some(5);
    let mut pages = 0;
    let srv = &mut server;
    let r = sync(&mut b.store, &o, &mut |_| {
        pages += 1;
        if pages == 2 {
            srv.kill();
        }
    });
    assert!(matches!(r, Err(SyncError::Network { .. })), "{r:?}");
    // Pages are stored whole; the page after the second may already have arrived (it is
    // asked for while the second is stored) before the server died.
    let partial = b.ids().len();
    assert!(
        (10..40).contains(&partial) && partial.is_multiple_of(5),
        "{partial}"
    );
    server.restart();
    // It resumes where it stopped: the rest arrives, nothing twice.
    let mut o = b.options(&server);
    o.page_size = Some(5);
    let mut seen = 0;
    let s = sync(&mut b.store, &o, &mut |p| seen = p.remaining).unwrap();
    assert_eq!(seen, 0);
    assert_eq!(s.snapshots, 40 - partial, "resumed, not restarted");
    assert_eq!(b.state(), a.state());

    // B edits offline; the server is killed while B pushes (whenever that falls).
    let ids: Vec<Uuid> = b.ids().into_iter().collect();
    for (i, h) in ids.iter().enumerate() {
        b.set(*h, "household/address", text(&format!("alamat baru {i}")));
    }
    let url = server.url.clone();
    let mut o = SyncOptions::new(&url, "kader2", Some(PASSWORD.into()));
    o.tries = 1;
    let handle = std::thread::spawn(move || {
        let r = sync(&mut b.store, &o, &mut |_| {});
        (b, r.is_ok())
    });
    std::thread::sleep(Duration::from_millis(5));
    server.kill();
    let (mut b, _) = handle.join().unwrap();
    server.restart();
    let s = b.sync(&server);
    assert!(s.verified);
    assert_eq!(b.store.unsynced_count().unwrap(), 0);
    a.sync(&server);
    assert_eq!(a.state(), b.state());
    // Each change stored once.
    assert_eq!(
        server.metric("kunjung_change_sequence"),
        a.hashes().len() as i64
    );
}

/// The app's long first sync (many pages) never keeps the store from the app: commands get
/// it between the sync's steps, and what they write meanwhile is pushed before the sync
/// ends (issue 5: "a long first sync must not block other commands").
#[test]
fn a_long_first_sync_leaves_the_store_to_the_app_between_steps() {
    use kunjung_client::app_support::SharedStore;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_db(dir.path()));
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.add_user("kader2", "kader", &["PSY-A"]);
    let mut a = Device::new("kader1");
    for i in 0..40 {
        let (_, m) = a.household(DESA_A, "PSY-A");
        a.visit(m, &format!("kunjungan {i}"));
    }
    assert!(a.sync(&server).verified);

    let b = Device::new("kader2");
    let mut o = b.options(&server);
    o.page_size = Some(2); // 20 pages
    let Device {
        store, dir: _dir, ..
    } = b;
    let shared = SharedStore::new();
    *shared.lock() = Some(store);
    let pages = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let (mut during, mut written) = (0, None);
    let summary = std::thread::scope(|sc| {
        let t = sc.spawn(|| {
            let r = shared.sync(&o, &mut |_| {
                pages.fetch_add(1, Ordering::SeqCst);
            });
            done.store(true, Ordering::SeqCst);
            r
        });
        while !done.load(Ordering::SeqCst) {
            {
                let mut g = shared.lock();
                let p = pages.load(Ordering::SeqCst);
                if p > 0 && !done.load(Ordering::SeqCst) {
                    during += 1;
                    let s = g.as_mut().unwrap();
                    // A read and, once, a write: what a cadre does while the sync runs.
                    assert!(s.household_ids().unwrap().len() >= 2);
                    if written.is_none() && p >= 3 {
                        written = Some(
                            s.create_household(&NewHousehold {
                                area_code: DESA_A.into(),
                                rt: "9".into(),
                                rw: "9".into(),
                                dusun: None,
                                posyandu_id: Some("PSY-A".into()),
                                address: Some("ditulis saat sinkron".into()),
                                kk: None,
                            })
                            .unwrap(),
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        t.join().unwrap().unwrap()
    });
    assert!(pages.load(Ordering::SeqCst) >= 20, "a long, many-page sync");
    assert!(during > 0, "the app never got the store during the sync");
    let written = written.expect("a household written mid-sync");
    let mut s = shared.lock().take().unwrap();
    assert_eq!(s.household_ids().unwrap().len(), 41);
    // Pushed in the same sync when it was written before the last page, else in the next.
    if !summary.verified {
        assert!(sync(&mut s, &o, &mut |_| {}).unwrap().verified);
    }
    assert_eq!(s.unsynced_count().unwrap(), 0);
    a.sync(&server);
    assert!(
        a.ids().contains(&written),
        "the mid-sync household reached the server"
    );
}

/// A network error is retried with backoff: the sync starts while the server is down and
/// completes once it comes up on the same address.
#[test]
fn sync_retries_with_backoff_until_the_server_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&sqlite_db(dir.path()));
    server.add_user("kader1", "kader", &["PSY-A"]);
    let mut a = Device::new("kader1");
    let (_, m) = a.household(DESA_A, "PSY-A");
    a.visit(m, "sebelum server hidup");
    let addr = server.url.trim_start_matches("http://").to_string();
    server.kill();
    let mut o = a.options(&server);
    o.tries = 8;
    o.backoff = Duration::from_millis(100);
    let handle = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = sync(&mut a.store, &o, &mut |_| {});
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(400));
    server.restart_on(&addr);
    let (r, took) = handle.join().unwrap();
    let s = r.expect("the sync succeeds once the server is up");
    assert!(s.verified);
    assert!(s.round_trips >= 2, "it retried: {} requests", s.round_trips);
    assert!(
        took >= Duration::from_millis(300),
        "it waited between tries"
    );
}
