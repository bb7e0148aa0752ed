//! The server's test suite, run against both storage implementations: SQLite always, and
//! PostgreSQL when `KUNJUNG_TEST_POSTGRES` names a database (each test gets its own
//! schema). Without it the PostgreSQL half prints a notice and passes, unless
//! `KUNJUNG_REQUIRE_POSTGRES=1`, when it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use automerge::ActorId;
use kunjung_core::{CommitMeta, FieldEdit, HouseholdDoc, NewHousehold};
use kunjung_protocol::{
    ByteBuf, Cursor, HouseholdChanges, Role, SyncRequest, SyncResponse, VERSION_HEADER,
};
use kunjung_sync_server::auth::{self, User};
use kunjung_sync_server::http::{AppState, ROUTES};
use kunjung_sync_server::{admin, sync, Db, ServerError};
use uuid::Uuid;

const DESA_A: &str = "32.14.01.2001";
const DESA_B: &str = "32.14.02.2002";

#[path = "server/reports.rs"]
mod reports;

#[path = "server/audit.rs"]
mod audit;
#[path = "server/layout.rs"]
mod layout;

/// A fresh database of each backend for one test.
fn backends(test: &str) -> Vec<(String, Db)> {
    backend_urls(test)
        .into_iter()
        .map(|(name, url)| (name, Db::open(&url).unwrap()))
        .collect()
}

/// The URL of a fresh database of each backend (PostgreSQL: a schema of its own).
fn backend_urls(test: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut v = vec![(
        "sqlite".to_string(),
        format!("sqlite:{}", dir.join("server.db").display()),
    )];
    match std::env::var("KUNJUNG_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("t_{}_{}_{}", test, std::process::id(), rand_suffix());
            let sep = if url.contains('?') { '&' } else { '?' };
            v.push(("postgres".into(), format!("{url}{sep}schema={schema}")));
        }
        _ => {
            assert!(
                std::env::var("KUNJUNG_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KUNJUNG_REQUIRE_POSTGRES=1 but KUNJUNG_TEST_POSTGRES is not set"
            );
            eprintln!("notice: KUNJUNG_TEST_POSTGRES not set; {test} runs on SQLite only");
        }
    }
    v
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

fn user(db: &Db, name: &str, role: Role, posyandu: &[&str], areas: &[&str]) -> User {
    let p: Vec<String> = posyandu.iter().map(|s| s.to_string()).collect();
    let a: Vec<String> = areas.iter().map(|s| s.to_string()).collect();
    db.tx(true, |t| {
        auth::add_user(t, name, role, &p, &a, "kata-sandi-1")
    })
    .unwrap();
    let (token, _, _) = db
        .tx(false, |t| {
            auth::login(t, name, "kata-sandi-1", &format!("dev-{name}"))
        })
        .unwrap();
    db.tx(false, |t| auth::authenticate(t, &token)).unwrap()
}

fn meta() -> CommitMeta {
    CommitMeta {
        user: "t".into(),
        time_ms: 1_795_000_000_000,
    }
}

/// The change that moves `doc`'s household to desa B, posyandu B (RT 3 / RW 4).
fn move_to_desa_b(doc: &mut HouseholdDoc) -> Vec<u8> {
    doc.move_household(
        DESA_B,
        "3",
        "4",
        Some("PSY-B"),
        chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        &meta(),
    )
    .unwrap()
    .change
    .unwrap()
    .raw_bytes()
    .to_vec()
}

/// A new household: (id, doc, its first change).
fn household(area: &str, posyandu: &str) -> (Uuid, HouseholdDoc, Vec<u8>) {
    let id = Uuid::now_v7();
    let w = HouseholdDoc::create(
        id,
        &NewHousehold {
            area_code: area.into(),
            rt: "1".into(),
            rw: "2".into(),
            dusun: None,
            posyandu_id: Some(posyandu.into()),
            address: None,
            kk: None,
        },
        ActorId::random(),
        &meta(),
    )
    .unwrap();
    (id, w.result, w.change.unwrap().raw_bytes().to_vec())
}

fn edit(doc: &mut HouseholdDoc, path: &str, v: &str) -> Vec<u8> {
    doc.edit(
        &[FieldEdit {
            path: path.into(),
            value: Some(kunjung_core::checklist::AnswerValue::Text(v.into())),
        }],
        &meta(),
        "edit",
    )
    .unwrap()
    .change
    .unwrap()
    .raw_bytes()
    .to_vec()
}

fn push(db: &Db, u: &User, id: Uuid, changes: &[Vec<u8>]) -> sync::PushOutcome {
    db.tx(true, |t| {
        sync::push(
            t,
            u,
            &[HouseholdChanges {
                household_id: id,
                changes: changes.iter().map(|c| ByteBuf::from(c.clone())).collect(),
            }],
        )
    })
    .unwrap()
}

/// Pulls every page from `cursor`; returns the pages.
fn pull_all(db: &Db, u: &User, cursor: &mut Option<Cursor>, page: u32) -> Vec<SyncResponse> {
    let mut pages = Vec::new();
    loop {
        let mut r = SyncResponse::default();
        db.tx(false, |t| {
            sync::pull(t, u, cursor.as_ref(), Some(page), &mut r)
        })
        .unwrap();
        *cursor = Some(r.next_cursor.clone());
        let more = r.more;
        pages.push(r);
        if !more {
            return pages;
        }
        assert!(pages.len() < 10_000, "pull does not finish");
    }
}

fn received(pages: &[SyncResponse]) -> (BTreeSet<Uuid>, BTreeSet<Uuid>, usize) {
    let mut snaps = BTreeSet::new();
    let mut drops = BTreeSet::new();
    let mut changes = 0;
    for p in pages {
        snaps.extend(p.snapshots.iter().map(|s| s.household_id));
        drops.extend(p.drops.iter().copied());
        changes += p.changes.iter().map(|c| c.changes.len()).sum::<usize>();
    }
    (snaps, drops, changes)
}

#[test]
fn scope_push_pull_move_and_drop() {
    for (backend, db) in backends("scope") {
        let kader_a = user(&db, "kader-a", Role::Kader, &["PSY-A"], &[]);
        let kader_b = user(&db, "kader-b", Role::Kader, &["PSY-B"], &[]);
        let bidan_a = user(&db, "bidan-a", Role::Bidan, &[], &[DESA_A]);
        let admin = user(&db, "admin", Role::Admin, &[], &[]);

        let (ha, mut doc_a, c0) = household(DESA_A, "PSY-A");
        let out = push(&db, &kader_a, ha, std::slice::from_ref(&c0));
        assert_eq!((out.stored, out.rejected.len()), (1, 0), "{backend}");
        // A retry is acknowledged and not stored twice.
        let again = push(&db, &kader_a, ha, std::slice::from_ref(&c0));
        assert_eq!((again.stored, again.acked.len()), (0, 1), "{backend}");

        // Kader B can neither write to it nor create a household outside her posyandu.
        let c1 = edit(&mut doc_a, "household/address", "Jl. Mawar 1");
        let out = push(&db, &kader_b, ha, std::slice::from_ref(&c1));
        assert_eq!(out.stored, 0, "{backend}");
        assert_eq!(out.rejected[0].code, "out_of_scope", "{backend}");
        let (hx, _, cx) = household(DESA_A, "PSY-A");
        let out = push(&db, &kader_b, hx, &[cx]);
        assert_eq!(out.rejected[0].code, "out_of_scope", "{backend}");

        // Nobody but those in scope receives it.
        let mut cur_b = None;
        let (snaps, _, _) = received(&pull_all(&db, &kader_b, &mut cur_b, 100));
        assert!(snaps.is_empty(), "{backend}");
        let mut cur_bidan = None;
        let (snaps, _, _) = received(&pull_all(&db, &bidan_a, &mut cur_bidan, 100));
        assert_eq!(snaps, BTreeSet::from([ha]), "{backend}");
        // Its creator gets nothing back: she made every change of it.
        let mut cur_a = None;
        let (snaps, _, _) = received(&pull_all(&db, &kader_a, &mut cur_a, 100));
        assert!(snaps.is_empty(), "{backend}");

        // Kader A edits; the bidan receives the change, not a snapshot.
        assert_eq!(push(&db, &kader_a, ha, std::slice::from_ref(&c1)).stored, 1);
        let (snaps, _, n) = received(&pull_all(&db, &bidan_a, &mut cur_bidan, 100));
        assert!(snaps.is_empty(), "{backend}");
        assert_eq!(n, 1, "{backend}");

        // The admin moves it to desa B, posyandu B: A's devices are told to drop it,
        // B's kader receives it whole.
        let mv = move_to_desa_b(&mut doc_a);
        assert_eq!(push(&db, &admin, ha, &[mv]).stored, 1, "{backend}");
        let (_, drops, _) = received(&pull_all(&db, &kader_a, &mut cur_a, 100));
        assert_eq!(drops, BTreeSet::from([ha]), "{backend}");
        let (_, drops, _) = received(&pull_all(&db, &bidan_a, &mut cur_bidan, 100));
        assert_eq!(drops, BTreeSet::from([ha]), "{backend}");
        let (snaps, _, _) = received(&pull_all(&db, &kader_b, &mut cur_b, 100));
        assert_eq!(snaps, BTreeSet::from([ha]), "{backend}");
        // Kader A can no longer write to it; kader B can.
        let c2 = edit(&mut doc_a, "household/address", "Jl. Melati 2");
        let out = push(&db, &kader_a, ha, std::slice::from_ref(&c2));
        assert_eq!(out.rejected[0].code, "out_of_scope", "{backend}");
        assert_eq!(push(&db, &kader_b, ha, &[c2]).stored, 1, "{backend}");
        // The JSON view is scoped too.
        let view = db
            .tx(false, |t| sync::household_json(t, &kader_b, ha))
            .unwrap();
        assert_eq!(view["household"]["address"], "Jl. Melati 2", "{backend}");
        let err = db
            .tx(false, |t| sync::household_json(t, &kader_a, ha))
            .unwrap_err();
        assert_eq!(err.code(), "out_of_scope", "{backend}");
    }
}

#[test]
fn first_sync_pages_resume_and_never_repeat() {
    for (backend, db) in backends("pages") {
        let kader = user(&db, "kader", Role::Kader, &["PSY-A"], &[]);
        let other = user(&db, "other", Role::Kader, &["PSY-A"], &[]);
        let mut ids = BTreeSet::new();
        for i in 0..25 {
            let psy = if i % 5 == 0 { "PSY-B" } else { "PSY-A" };
            let (id, _, c) = household(DESA_A, psy);
            let admin_like = user_for(&db, psy);
            assert_eq!(push(&db, &admin_like, id, &[c]).stored, 1);
            if psy == "PSY-A" {
                ids.insert(id);
            }
        }
        // Interrupted after two pages: resuming from the saved cursor finishes the rest,
        // and every household arrives exactly once.
        let mut cursor = None;
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut r = SyncResponse::default();
            db.tx(false, |t| {
                sync::pull(t, &kader, cursor.as_ref(), Some(4), &mut r)
            })
            .unwrap();
            assert!(r.more, "{backend}");
            assert_eq!(r.total, 20, "{backend}");
            got.extend(r.snapshots.iter().map(|s| s.household_id));
            cursor = Some(r.next_cursor);
        }
        // Meanwhile another device adds one more.
        let (late, _, c) = household(DESA_A, "PSY-A");
        assert_eq!(push(&db, &other, late, &[c]).stored, 1);
        let pages = pull_all(&db, &kader, &mut cursor, 4);
        for p in &pages {
            got.extend(p.snapshots.iter().map(|s| s.household_id));
        }
        let unique: BTreeSet<Uuid> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len(), "{backend}: a household came twice");
        assert_eq!(unique, ids, "{backend}");
        // The late one comes with the next sync.
        let (snaps, _, _) = received(&pull_all(&db, &kader, &mut cursor, 4));
        assert_eq!(snaps, BTreeSet::from([late]), "{backend}");
        let (snaps, drops, n) = received(&pull_all(&db, &kader, &mut cursor, 4));
        assert!(snaps.is_empty() && drops.is_empty() && n == 0, "{backend}");
    }
}

fn user_for(db: &Db, posyandu: &str) -> User {
    let name = format!("k-{posyandu}");
    let exists = db.tx(false, |t| auth::get_account(t, &name)).is_ok();
    if exists {
        let (token, _, _) = db
            .tx(false, |t| auth::login(t, &name, "kata-sandi-1", "dev"))
            .unwrap();
        return db.tx(false, |t| auth::authenticate(t, &token)).unwrap();
    }
    user(db, &name, Role::Kader, &[posyandu], &[])
}

#[test]
fn concurrent_writers_never_skipped_by_a_reader() {
    for (backend, db) in backends("concurrent") {
        let db = Arc::new(db);
        let reader = user(&db, "reader", Role::Admin, &[], &[]);
        let writers: Vec<User> = (0..4)
            .map(|i| user(&db, &format!("w{i}"), Role::Admin, &[], &[]))
            .collect();
        // Each writer owns a household and pushes edits to it.
        let mut handles = Vec::new();
        let mut expected = BTreeMap::new();
        for w in writers {
            let (id, mut doc, c0) = household(DESA_A, "PSY-A");
            let mut changes = vec![c0];
            for i in 0..30 {
                changes.push(edit(&mut doc, "household/address", &format!("no {i}")));
            }
            expected.insert(id, changes.len());
            let db = db.clone();
            handles.push(std::thread::spawn(move || {
                for c in changes {
                    let out = push(&db, &w, id, &[c]);
                    assert_eq!(out.stored, 1);
                }
            }));
        }
        // The reader pulls all the while; what it gets, in order, must add up to
        // every change exactly once, with no gaps.
        let mut cursor = None;
        let mut got: BTreeMap<Uuid, usize> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut apply = |pages: Vec<SyncResponse>, got: &mut BTreeMap<Uuid, usize>| {
            for p in pages {
                for s in p.snapshots {
                    let doc = HouseholdDoc::load(&s.bytes).unwrap();
                    let n = doc.changes_since(&[]).len();
                    for c in doc.changes_since(&[]) {
                        assert!(seen.insert(c.hash()), "{backend}: duplicate");
                    }
                    got.insert(s.household_id, n);
                }
                for g in p.changes {
                    for c in &g.changes {
                        let h = kunjung_core::doc::parse_change(c).unwrap().hash();
                        assert!(seen.insert(h), "{backend}: duplicate change");
                    }
                    *got.get_mut(&g.household_id)
                        .expect("changes before snapshot") += g.changes.len();
                }
            }
        };
        while handles.iter().any(|h| !h.is_finished()) {
            apply(pull_all(&db, &reader, &mut cursor, 2), &mut got);
        }
        for h in handles {
            h.join().unwrap();
        }
        apply(pull_all(&db, &reader, &mut cursor, 2), &mut got);
        assert_eq!(got, expected, "{backend}");
    }
}

#[test]
fn accounts_tokens_and_disabling() {
    for (backend, db) in backends("accounts") {
        let u = user(&db, "siti", Role::Kader, &["PSY-A"], &[]);
        assert_eq!(u.role, Role::Kader);
        let (token, exp, _) = db
            .tx(false, |t| auth::login(t, "siti", "kata-sandi-1", "hp-1"))
            .unwrap();
        assert!(exp > auth::now_ms());
        assert!(db.tx(false, |t| auth::authenticate(t, &token)).is_ok());
        let wrong = db.tx(false, |t| auth::login(t, "siti", "salah-salah", "hp-1"));
        assert!(
            matches!(wrong, Err(ServerError::InvalidCredentials)),
            "{backend}"
        );
        let dup = db.tx(true, |t| {
            auth::add_user(t, "siti", Role::Kader, &["X".into()], &[], "kata-sandi-1")
        });
        assert!(matches!(dup, Err(ServerError::Conflict(_))), "{backend}");
        // Tokens are stored hashed.
        let raw = db
            .tx(false, |t| t.query("SELECT hash FROM tokens", &[]))
            .unwrap();
        assert!(raw.iter().all(|r| r[0].blob() != token.as_bytes()));
        // Disabling stops the token at once; enabling does not bring it back.
        db.tx(true, |t| auth::set_disabled(t, "siti", true))
            .unwrap();
        assert!(matches!(
            db.tx(false, |t| auth::authenticate(t, &token)),
            Err(ServerError::Unauthorized)
        ));
        assert!(matches!(
            db.tx(false, |t| auth::login(t, "siti", "kata-sandi-1", "hp-1")),
            Err(ServerError::AccountDisabled)
        ));
        db.tx(true, |t| auth::set_disabled(t, "siti", false))
            .unwrap();
        assert!(db.tx(false, |t| auth::authenticate(t, &token)).is_err());
        // A password reset revokes tokens too.
        let (t2, _, _) = db
            .tx(false, |t| auth::login(t, "siti", "kata-sandi-1", "hp-1"))
            .unwrap();
        db.tx(true, |t| auth::reset_password(t, "siti", "kata-sandi-2"))
            .unwrap();
        assert!(
            db.tx(false, |t| auth::authenticate(t, &t2)).is_err(),
            "{backend}"
        );
        assert!(db
            .tx(false, |t| auth::login(t, "siti", "kata-sandi-2", "hp-1"))
            .is_ok());
    }
}

#[test]
fn backup_and_restore_keep_everything() {
    for (backend, db) in backends("backup") {
        let k = user(&db, "kader", Role::Kader, &["PSY-A"], &[]);
        let (id, mut doc, c0) = household(DESA_A, "PSY-A");
        let c1 = edit(&mut doc, "household/address", "Jl. Kenanga");
        push(&db, &k, id, &[c0, c1]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.kjb");
        let rows = admin::backup(&db, &file).unwrap();
        assert!(rows > 5);
        // Restore into a fresh SQLite database (also how a server moves between backends).
        let fresh = Db::open(&format!("sqlite:{}", dir.path().join("r.db").display())).unwrap();
        assert_eq!(admin::restore(&fresh, &file).unwrap(), rows, "{backend}");
        let view = fresh
            .tx(false, |t| sync::household_json(t, &k, id))
            .unwrap();
        assert_eq!(view["household"]["address"], "Jl. Kenanga");
        assert!(fresh
            .tx(false, |t| auth::login(t, "kader", "kata-sandi-1", "d"))
            .is_ok());
        // Never over existing data.
        assert!(admin::restore(&fresh, &file).is_err());
    }
}

/// The HTTP layer, in process on port 0: routes match `openapi.json` both ways, errors
/// are JSON with codes, old clients get 426.
#[test]
fn http_routes_match_openapi_and_errors_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite:{}", dir.path().join("h.db").display())).unwrap();
    db.tx(true, |t| {
        auth::add_user(t, "admin", Role::Admin, &[], &[], "kata-sandi-1")?;
        auth::add_user(t, "lain", Role::Admin, &[], &[], "kata-sandi-2")
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = kunjung_sync_server::http::router(AppState::new(db).unwrap());
    rt.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let base = format!("http://{addr}");
    let c = reqwest::blocking::Client::new();

    // openapi.json ⇔ the route table.
    let spec: serde_json::Value = c
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut described = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            described.insert((m.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(described, routed);

    // Every route exists in the router (answers something other than 404/405).
    let login: serde_json::Value = c
        .post(format!("{base}/v1/login"))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": "admin", "password": "kata-sandi-1", "device_id": "d1"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    for (m, p) in ROUTES {
        if *p == "/v1/logout" {
            continue; // below, last: it ends the token
        }
        let url = format!("{base}{}", p.replace("{id}", &Uuid::now_v7().to_string()));
        let req = match *m {
            "GET" => c.get(&url),
            _ => c.post(&url),
        };
        let status = req
            .header(VERSION_HEADER, "1")
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status()
            .as_u16();
        if *p == "/v1/households/{id}" {
            assert_eq!(status, 404, "{m} {p}");
        } else {
            assert!(status != 404 && status != 405, "{m} {p}: {status}");
        }
    }

    let r = c
        .post(format!("{base}/v1/logout"))
        .header(VERSION_HEADER, "1")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = c
        .get(format!("{base}/v1/me"))
        .header(VERSION_HEADER, "1")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a logged-out token still works");
    let login: serde_json::Value = c
        .post(format!("{base}/v1/login"))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": "admin", "password": "kata-sandi-1", "device_id": "d1"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();

    // A client without (or below) the protocol version gets 426 and a JSON body.
    let r = c.post(format!("{base}/v1/sync")).send().unwrap();
    assert_eq!(r.status().as_u16(), 426);
    let e: kunjung_protocol::ErrorBody = r.json().unwrap();
    assert_eq!(e.code, "client_too_old");
    assert!(e.message.contains("(client too old"));
    let r = c
        .post(format!("{base}/v1/sync"))
        .header(VERSION_HEADER, "0")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 426);
    // Unknown paths and bad tokens answer JSON with a code.
    let r = c.get(format!("{base}/v1/nope")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        r.json::<kunjung_protocol::ErrorBody>().unwrap().code,
        "not_found"
    );
    let r = c
        .get(format!("{base}/v1/me"))
        .header(VERSION_HEADER, "1")
        .bearer_auth("forged")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<kunjung_protocol::ErrorBody>().unwrap().code,
        "unauthorized"
    );
    // Garbage sync bodies are a clear 400, wrong content type 415.
    let r = c
        .post(format!("{base}/v1/sync"))
        .header(VERSION_HEADER, "1")
        .header("content-type", "application/cbor")
        .bearer_auth(&token)
        .body(b"garbage".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<kunjung_protocol::ErrorBody>().unwrap().code,
        "bad_message"
    );
    let r = c
        .post(format!("{base}/v1/sync"))
        .header(VERSION_HEADER, "1")
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // A real (empty) sync round trip over HTTP.
    let body = kunjung_protocol::encode(&SyncRequest::default()).unwrap();
    let r = c
        .post(format!("{base}/v1/sync"))
        .header(VERSION_HEADER, "1")
        .header("content-type", "application/cbor")
        .header("content-encoding", "zstd")
        .bearer_auth(&token)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-encoding"], "zstd");
    let resp: SyncResponse = kunjung_protocol::decode(&r.bytes().unwrap()).unwrap();
    assert!(!resp.more);
    // Login is rate-limited per username.
    for _ in 0..auth::LOGIN_FAILURES {
        let r = c
            .post(format!("{base}/v1/login"))
            .header(VERSION_HEADER, "1")
            .json(&serde_json::json!({"username": "admin", "password": "salah-salah", "device_id": "d1"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = c
        .post(format!("{base}/v1/login"))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": "admin", "password": "kata-sandi-1", "device_id": "d1"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.json::<kunjung_protocol::ErrorBody>().unwrap().code,
        "rate_limited"
    );
    // ... and per client address, over every username tried from it.
    for i in auth::LOGIN_FAILURES..auth::LOGIN_FAILURES_PER_ADDRESS {
        let r = c
            .post(format!("{base}/v1/login"))
            .header(VERSION_HEADER, "1")
            .json(&serde_json::json!({"username": format!("coba-{i}"), "password": "salah-salah", "device_id": "d1"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "attempt {i}");
    }
    let r = c
        .post(format!("{base}/v1/login"))
        .header(VERSION_HEADER, "1")
        .json(
            &serde_json::json!({"username": "lain", "password": "kata-sandi-2", "device_id": "d1"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429, "the address is locked out");
    // Metrics need an admin's token (no scrape token is configured here).
    let r = c.get(format!("{base}/metrics")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401, "metrics without a token");
    let r = c
        .get(format!("{base}/metrics"))
        .bearer_auth("token-metrik-palsu-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "metrics with a forged token");
    // Metrics count what happened.
    let m = c
        .get(format!("{base}/metrics"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains(&format!(
            "kunjung_login_failures_total {}",
            auth::LOGIN_FAILURES_PER_ADDRESS
        )),
        "{m}"
    );
    assert!(m.contains("route=\"/v1/sync\",status=\"426\""), "{m}");
}

/// Pruned change bytes: a device that was away gets the household as a snapshot and ends
/// with every change; a new device's first sync is whole; a re-push is acknowledged once.
#[test]
fn pruned_changes_reach_late_devices_as_snapshots() {
    for (name, db) in backends("prune") {
        let k1 = user(&db, "k1", Role::Kader, &["PSY-A"], &[]);
        let k2 = user(&db, "k2", Role::Kader, &["PSY-A"], &[]);
        let (id, mut doc, first) = household(DESA_A, "PSY-A");
        assert_eq!(push(&db, &k1, id, std::slice::from_ref(&first)).stored, 1);
        // k2 holds the household at this cursor, then goes away.
        let mut c2 = None;
        let (snaps, _, _) = received(&pull_all(&db, &k2, &mut c2, 100));
        assert_eq!(snaps, BTreeSet::from([id]));
        let later: Vec<Vec<u8>> = (0..5)
            .map(|i| edit(&mut doc, "household/address", &format!("Jl. {i}")))
            .collect();
        assert_eq!(push(&db, &k1, id, &later).stored, 5);
        admin::compact(&db).unwrap();
        let (n, bytes) = admin::prune(&db, 0).unwrap();
        assert_eq!(n, 6, "{name}: every change is in the snapshot");
        assert!(bytes > 0);
        assert_eq!(admin::prune(&db, 0).unwrap().0, 0, "{name}: pruned once");

        // k2 comes back: a snapshot, not empty changes.
        let pages = pull_all(&db, &k2, &mut c2, 100);
        let mut am = automerge::Automerge::new();
        for p in &pages {
            for s in &p.snapshots {
                am.load_incremental(&s.bytes).unwrap();
            }
            for g in &p.changes {
                for c in &g.changes {
                    assert!(!c.is_empty(), "{name}: an empty (pruned) change was sent");
                    am.load_incremental(c).unwrap();
                }
            }
        }
        assert_eq!(am.get_heads(), doc.heads(), "{name}: k2 has every change");

        // A new device: the whole household in its first sync.
        let k3 = user(&db, "k3", Role::Kader, &["PSY-A"], &[]);
        let mut c3 = None;
        let pages = pull_all(&db, &k3, &mut c3, 100);
        let snap = &pages[0].snapshots[0].bytes;
        assert_eq!(HouseholdDoc::load(snap).unwrap().heads(), doc.heads());

        // Re-pushing a pruned change: acknowledged, not stored again.
        let again = push(&db, &k1, id, std::slice::from_ref(&first));
        assert_eq!((again.acked.len(), again.stored), (1, 0), "{name}");
        // And the household still loads on the server.
        let v = db.read(|t| sync::household_json(t, &k1, id)).unwrap();
        assert_eq!(v["household"]["address"], "Jl. 4", "{name}");
    }
}

/// Erasure on both backends: the rows go, the household's places stay in
/// `erased_locations`, and the drop reaches exactly the devices whose scope held it (also
/// a household moved just before it was erased), a forged cursor scope included.
#[test]
fn erasure_drops_reach_only_the_scopes_that_held_the_household() {
    for (backend, db) in backends("erase") {
        let admin = user(&db, "admin", Role::Admin, &[], &[]);
        let ka = user(&db, "ka", Role::Kader, &["PSY-A"], &[]);
        let kb = user(&db, "kb", Role::Kader, &["PSY-B"], &[]);
        let kc = user(&db, "kc", Role::Kader, &["PSY-C"], &[]);
        let (h1, _, c1) = household(DESA_A, "PSY-A");
        let (h2, mut d2, c2) = household(DESA_A, "PSY-A");
        let (h3, _, c3) = household(DESA_B, "PSY-C");
        for (h, c) in [(h1, c1), (h2, c2), (h3, c3)] {
            assert_eq!(push(&db, &admin, h, &[c]).stored, 1, "{backend}");
        }
        let mut cursors: Vec<Option<Cursor>> = vec![None, None, None];
        for (u, c) in [&ka, &kb, &kc].into_iter().zip(cursors.iter_mut()) {
            pull_all(&db, u, c, 100);
        }
        let forged_b = Some(Cursor {
            seq: cursors[1].as_ref().unwrap().seq,
            scope: kunjung_protocol::Scope {
                all: true,
                ..Default::default()
            },
            ..Default::default()
        });
        // h2 moves from PSY-A to PSY-B, then all three are erased before anyone syncs.
        let mv = move_to_desa_b(&mut d2);
        assert_eq!(push(&db, &admin, h2, &[mv]).stored, 1, "{backend}");
        for h in [h1, h2, h3] {
            let e = kunjung_sync_server::erase::erase(&db, h, "admin", "uji").unwrap();
            assert!(e.wal_cleared, "{backend}");
        }
        let count = |sql: &str, h: Uuid| {
            db.tx(false, |t| t.query(sql, &[h.to_string().into()]))
                .unwrap()[0][0]
                .int()
        };
        for h in [h1, h2, h3] {
            for table in ["changes", "locations", "snapshots"] {
                let sql = format!("SELECT count(*) FROM {table} WHERE household_id = $1");
                assert_eq!(count(&sql, h), 0, "{backend} {table}");
            }
        }
        let places = "SELECT count(*) FROM erased_locations WHERE household_id = $1";
        assert_eq!(count(places, h2), 2, "{backend}: PSY-A and PSY-B");

        let want = [
            BTreeSet::from([h1, h2]),
            BTreeSet::from([h2]),
            BTreeSet::from([h3]),
        ];
        for (i, u) in [&ka, &kb, &kc].into_iter().enumerate() {
            let (_, drops, _) = received(&pull_all(&db, u, &mut cursors[i], 100));
            assert_eq!(drops, want[i], "{backend}: {}", u.username);
        }
        let mut forged = forged_b;
        let (snaps, drops, _) = received(&pull_all(&db, &kb, &mut forged, 1));
        assert_eq!(drops, BTreeSet::from([h2]), "{backend}: forged scope");
        assert!(snaps.is_empty(), "{backend}");
    }
}

/// Group commit (`Db::grouped`): pieces queued while another batch commits share one
/// transaction, and a piece that fails (an error, a panic, a constraint) costs the others
/// nothing — its own writes are gone, theirs are all there.
#[test]
fn group_commit_keeps_every_piece_apart() {
    for (backend, db) in backends("group") {
        group_pieces_apart(&backend, &db, None);
    }
}

/// The same with the server's dedicated writer thread (`group::spawn_writer`): every
/// batch runs there, and the callers get their own results as before.
#[test]
fn group_commit_keeps_every_piece_apart_on_a_dedicated_writer() {
    for (backend, db) in backends("groupw") {
        let db = Arc::new(db);
        kunjung_sync_server::group::spawn_writer(db.clone(), |d| d).unwrap();
        group_pieces_apart(&backend, &db, Some("writer"));
    }
}

fn group_pieces_apart(backend: &str, db: &Db, writer: Option<&'static str>) {
    use kunjung_sync_server::db::DbError;
    use std::sync::atomic::{AtomicBool, Ordering};
    {
        db.tx(true, |t| {
            t.exec(
                "CREATE TABLE gc(k BIGINT PRIMARY KEY, v TEXT NOT NULL)",
                &[],
            )
            .map(|_| ())
        })
        .unwrap();
        let db = &db;
        let started = Arc::new(AtomicBool::new(false));
        let results: Vec<(i64, Result<(), DbError>)> = std::thread::scope(|s| {
            // The first piece holds the writer long enough for the others to queue up
            // behind it and go in together.
            let flag = started.clone();
            let slow = s.spawn(move || {
                db.grouped(move |t| {
                    // Run by the dedicated writer when there is one, else by a caller.
                    let on = std::thread::current().name().map(str::to_string);
                    if let Some(w) = writer {
                        assert_eq!(on.as_deref(), Some(w), "piece run off the writer");
                    }
                    flag.store(true, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    t.exec(
                        "INSERT INTO gc(k, v) VALUES ($1, $2)",
                        &[0i64.into(), "a".into()],
                    )
                    .map(|_| ())
                })
            });
            while !started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let rest: Vec<_> = (1..=12i64)
                .map(|k| {
                    s.spawn(move || {
                        let r = db.grouped(move |t| {
                            // Key 11 takes the slow piece's key: a constraint error.
                            let key = if k == 11 { 0 } else { k };
                            t.exec(
                                "INSERT INTO gc(k, v) VALUES ($1, $2)",
                                &[key.into(), "ok".into()],
                            )?;
                            match k {
                                5 => Err(DbError::Group("gagal sengaja".into())),
                                9 => panic!("sengaja panik"),
                                _ => Ok(()),
                            }
                        });
                        (k, r)
                    })
                })
                .collect();
            let mut out = vec![(0, slow.join().unwrap())];
            out.extend(rest.into_iter().map(|h| h.join().unwrap()));
            out
        });
        for (k, r) in &results {
            assert_eq!(
                r.is_err(),
                [5, 9, 11].contains(k),
                "{backend}: piece {k}: {r:?}"
            );
        }
        let rows: BTreeMap<i64, String> = db
            .tx(false, |t| t.query("SELECT k, v FROM gc ORDER BY k", &[]))
            .unwrap()
            .into_iter()
            .map(|r| (r[0].int(), r[1].text().unwrap().to_string()))
            .collect();
        let want: BTreeMap<i64, String> = [0, 1, 2, 3, 4, 6, 7, 8, 10, 12]
            .into_iter()
            .map(|k| (k, if k == 0 { "a" } else { "ok" }.to_string()))
            .collect();
        assert_eq!(rows, want, "{backend}");
    }
}

/// SQLite: under steady writes with readers always busy, the checkpointer keeps the
/// write-ahead log short (it starts over), so no commit has to copy a long log. Without
/// it the log would hold every frame written (the automatic checkpoint's limit is far
/// beyond what this test writes).
#[test]
fn checkpointer_keeps_the_log_short_under_steady_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let db = Db::open(&format!("sqlite:{}", path.display())).unwrap();
    db.tx(true, |t| {
        t.exec(
            "CREATE TABLE ck(k INTEGER PRIMARY KEY, v BLOB NOT NULL)",
            &[],
        )
        .map(|_| ())
    })
    .unwrap();
    // A short log: the test writes ~15 MB, under the server's threshold (32 MB).
    db.spawn_checkpointer_at(256);
    let stop = AtomicBool::new(false);
    let row = vec![7u8; 6000];
    let mut written = 0usize;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    db.read(|t| t.query("SELECT count(*), max(k) FROM ck", &[]))
                        .unwrap();
                }
            });
        }
        let start = std::time::Instant::now();
        let mut k = 0i64;
        // About 6 MB/s, each row its own commit.
        while start.elapsed() < std::time::Duration::from_millis(2500) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            {
                k += 1;
                let (key, v) = (k, row.clone());
                db.grouped(move |t| {
                    t.exec(
                        "INSERT INTO ck(k, v) VALUES ($1, $2)",
                        &[key.into(), v.clone().into()],
                    )
                    .map(|_| ())
                })
                .unwrap();
                written += row.len();
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    assert!(written > 4 << 20, "wrote only {written} bytes");
    eprintln!("log {wal} bytes for {written} bytes written");
    // A log that never started over holds every frame written (more than `written`).
    // Three quarters leaves room for a loaded machine, where a reader preempted mid-read
    // makes some RESTARTs give up (CI saw 35 %, four CPU burners beside the whole suite
    // 23-38 %, a quiet machine under 10 %).
    assert!(
        wal < written / 4 * 3,
        "the log grew to {wal} bytes for {written} bytes written: it never started over"
    );
}

/// The real server: the threads serving requests run at a lower priority than the
/// database writer and the checkpointer (`KUNJUNG_REQUEST_NICE`, default 5), so on a busy
/// machine the one serial step of every push is not starved by the requests queued on it.
#[cfg(target_os = "linux")]
#[test]
fn request_threads_yield_to_the_writer() {
    use std::io::{BufRead, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("nice.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kunjung-server"))
        .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
        .env_remove("KUNJUNG_REQUEST_NICE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    // One request, so the runtime's threads have all started.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // (thread id, name, nice) of every thread of the server.
    let threads: Vec<(u32, String, i64)> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let tid = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            // Field 19 (nice), counted from field 3 (state) after the name.
            Some((
                tid,
                name.to_string(),
                rest.split(' ').nth(16)?.parse().ok()?,
            ))
        })
        .collect();
    let pid = child.id();
    let _ = child.kill();
    let _ = child.wait();
    let nice_of = |n: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(_, name, _)| name == n)
            .map(|(_, _, v)| *v)
            .collect()
    };
    let base: Vec<i64> = threads
        .iter()
        .filter(|(tid, _, _)| *tid == pid)
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(base.len(), 1, "{threads:?}");
    assert_eq!(nice_of("writer"), base, "{threads:?}");
    assert_eq!(nice_of("checkpoint"), base, "{threads:?}");
    // The runtime's threads ("tokio-rt-worker"; "tokio-runtime-w" in older versions).
    let workers: Vec<i64> = threads
        .iter()
        .filter(|(_, name, _)| name.starts_with("tokio-r"))
        .map(|(_, _, v)| *v)
        .collect();
    assert!(!workers.is_empty(), "{threads:?}");
    assert!(
        workers.iter().all(|&n| n == (base[0] + 5).min(19)),
        "{threads:?}"
    );
}
