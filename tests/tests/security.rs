//! Security through a real `kunjung-server` process: the authorization matrix (every
//! role, a disabled account and no token × every route × a household in scope, out of
//! scope, moved into and moved out of scope), login rate limiting and lockout, tokens and
//! passwords hashed at rest, the audit log, and per-household erasure (UU PDP) reaching the
//! devices on their next sync.

mod common;

use std::collections::BTreeMap;

use common::*;
use kunjung_core::FieldEdit;
use kunjung_protocol::{ByteBuf, HouseholdChanges, SyncRequest, SyncResponse, VERSION_HEADER};
use kunjung_sync_server::http::ROUTES;
use kunjung_sync_server::Db;
use sha2::Digest;
use uuid::Uuid;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn login_status(url: &str, user: &str, password: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{url}/v1/login"))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": user, "password": password, "device_id": format!("dev-{user}")}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default())
}

fn login(url: &str, user: &str) -> String {
    let (s, v) = login_status(url, user, PASSWORD);
    assert_eq!(s, 200, "{user}: {v}");
    v["token"].as_str().unwrap().to_string()
}

fn sync_raw(url: &str, token: Option<&str>, req: &SyncRequest) -> Result<SyncResponse, u16> {
    let mut r = client()
        .post(format!("{url}/v1/sync"))
        .header(VERSION_HEADER, "1")
        .header("content-type", "application/cbor")
        .body(kunjung_protocol::encode(req).unwrap());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().unwrap();
    match r.status().as_u16() {
        200 => Ok(kunjung_protocol::decode(&r.bytes().unwrap()).unwrap()),
        s => Err(s),
    }
}

fn call(url: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let full = format!("{url}{path}");
    let mut r = match method {
        "GET" => client().get(&full),
        _ => client().post(&full),
    }
    .header(VERSION_HEADER, "1");
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap().status().as_u16()
}

/// A change to `h` made from the admin device's copy (as a device of `who` would).
fn change_for(admin: &mut Device, h: Uuid, who: &str) -> Vec<u8> {
    let mut doc = admin.store.doc(h).unwrap();
    doc.set_actor(automerge::ActorId::random());
    doc.edit(
        &[FieldEdit {
            path: "household/address".into(),
            value: Some(text(&format!("oleh {who}"))),
        }],
        &kunjung_core::CommitMeta::now(who),
        "edit",
    )
    .unwrap()
    .change
    .unwrap()
    .raw_bytes()
    .to_vec()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// In PSY-A, DESA_A; stays.
    InScope,
    /// In PSY-C, DESA_B; stays.
    OutOfScope,
    /// Moved from PSY-C (DESA_B) into PSY-A (DESA_A).
    MovedIn,
    /// Moved from PSY-A (DESA_A) out to PSY-C (DESA_B).
    MovedOut,
}

#[test]
fn authorization_matrix_every_role_route_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_db(dir.path()));
    server.add_user("admin", "admin", &[]);
    server.add_user("kader", "kader", &["PSY-A"]);
    server.add_user("bidan", "bidan", &[DESA_A]);
    server.add_user("puskesmas", "puskesmas", &["32.14.01"]);
    server.add_user("disabled", "kader", &["PSY-A"]);
    let mut admin = Device::new("admin");
    let (h_in, _) = admin.household(DESA_A, "PSY-A");
    let (h_out, _) = admin.household(DESA_B, "PSY-C");
    let (h_moved_in, _) = admin.household(DESA_B, "PSY-C");
    let (h_moved_out, _) = admin.household(DESA_A, "PSY-A");
    assert!(admin.sync(&server).verified);
    // Everyone takes a first pull before the moves, so the moves reach them as changes
    // of scope (snapshots and drops), not as a first sync.
    let roles = ["kader", "bidan", "puskesmas", "admin"];
    let tokens: BTreeMap<&str, String> =
        roles.iter().map(|r| (*r, login(&server.url, r))).collect();
    let first: BTreeMap<&str, SyncResponse> = roles
        .iter()
        .map(|r| {
            (
                *r,
                sync_raw(&server.url, Some(&tokens[r]), &SyncRequest::default()).unwrap(),
            )
        })
        .collect();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    admin
        .store
        .move_household(h_moved_in, DESA_A, "1", "1", Some("PSY-A"), day)
        .unwrap();
    admin
        .store
        .move_household(h_moved_out, DESA_B, "1", "1", Some("PSY-C"), day)
        .unwrap();
    assert!(admin.sync(&server).verified);
    let disabled_token = login(&server.url, "disabled");
    server.admin(&["user", "disable", "--username", "disabled"]);

    let place_of = [
        (h_in, Place::InScope),
        (h_out, Place::OutOfScope),
        (h_moved_in, Place::MovedIn),
        (h_moved_out, Place::MovedOut),
    ];
    // Which places each role may read and write now (the admin: everything; the
    // puskesmas 32.14.01 covers DESA_A only, DESA_B is 32.15).
    let allowed = |role: &str, p: Place| match role {
        "admin" => true,
        "kader" | "bidan" | "puskesmas" => matches!(p, Place::InScope | Place::MovedIn),
        _ => false,
    };
    let mut checked = 0;
    let mut routes_seen = std::collections::BTreeSet::new();
    let callers: Vec<(&str, Option<String>)> = roles
        .iter()
        .map(|r| (*r, Some(tokens[r].clone())))
        .chain([("disabled", Some(disabled_token)), ("anonymous", None)])
        .collect();
    for (role, token) in &callers {
        let token = token.as_deref();
        let signed_in = !matches!(*role, "disabled" | "anonymous");
        for (method, route) in ROUTES {
            routes_seen.insert((*method, *route));
            match (*method, *route) {
                // Admins only (/metrics also takes the scrape token, checked below).
                ("GET", "/metrics") | ("GET", "/v1/admin/users") => {
                    let want = match *role {
                        "admin" => 200,
                        "disabled" | "anonymous" => 401,
                        _ => 403,
                    };
                    assert_eq!(call(&server.url, method, route, token), want, "{role}");
                    checked += 1;
                }
                ("GET", "/v1/health") | ("GET", "/v1/openapi.json") => {
                    assert_eq!(
                        call(&server.url, method, route, token),
                        200,
                        "{role} {route}"
                    );
                    checked += 1;
                }
                ("POST", "/v1/login") => {
                    // Covered below (rate limiting); a login needs no token.
                    checked += 1;
                }
                ("POST", "/v1/logout") => {
                    // Checked last (it ends the token); without a valid token: 401.
                    if !signed_in {
                        assert_eq!(call(&server.url, method, route, token), 401, "{role}");
                    }
                    checked += 1;
                }
                ("GET", "/v1/me") => {
                    let want = if signed_in { 200 } else { 401 };
                    assert_eq!(call(&server.url, method, route, token), want, "{role}");
                    checked += 1;
                }
                ("GET", "/v1/households/{id}") => {
                    for (h, p) in place_of {
                        let want = if !signed_in {
                            401
                        } else if allowed(role, p) {
                            200
                        } else {
                            403
                        };
                        let path = format!("/v1/households/{h}");
                        assert_eq!(
                            call(&server.url, method, &path, token),
                            want,
                            "{role} {p:?}"
                        );
                        checked += 1;
                    }
                    // An id that does not exist: 404 for the signed-in, 401 otherwise.
                    let path = format!("/v1/households/{}", Uuid::now_v7());
                    let want = if signed_in { 404 } else { 401 };
                    assert_eq!(call(&server.url, method, &path, token), want, "{role}");
                }
                ("POST", "/v1/sync") => {
                    for (h, p) in place_of {
                        let req = SyncRequest {
                            cursor: None,
                            changes: vec![HouseholdChanges {
                                household_id: h,
                                changes: vec![ByteBuf::from(change_for(&mut admin, h, role))],
                            }],
                            page_size: None,
                        };
                        match sync_raw(&server.url, token, &req) {
                            Err(status) => {
                                assert!(!signed_in, "{role} {p:?}: {status}");
                                assert_eq!(status, 401, "{role} {p:?}");
                            }
                            Ok(resp) => {
                                assert!(signed_in, "{role} {p:?} was let in");
                                if allowed(role, p) {
                                    assert_eq!(
                                        (resp.acked, resp.rejected.len()),
                                        (1, 0),
                                        "{role} {p:?}"
                                    );
                                } else {
                                    assert_eq!(resp.acked, 0, "{role} {p:?}: unauthorized write");
                                    assert_eq!(resp.rejected[0].code, "out_of_scope");
                                }
                                // The first pull of a fresh cursor is exactly the scope.
                                let got = resp.snapshots.iter().any(|s| s.household_id == h);
                                assert_eq!(got, allowed(role, p), "{role} {p:?}: read");
                            }
                        }
                        checked += 1;
                    }
                    if signed_in {
                        // Incremental pull after the moves: moved in arrives, moved out is dropped.
                        let req = SyncRequest {
                            cursor: Some(first[role].next_cursor.clone()),
                            ..SyncRequest::default()
                        };
                        let resp = sync_raw(&server.url, token, &req).unwrap();
                        let sent = |h: Uuid| {
                            resp.snapshots.iter().any(|s| s.household_id == h)
                                || resp.changes.iter().any(|c| c.household_id == h)
                        };
                        for (h, p) in place_of {
                            if !allowed(role, p) {
                                assert!(!sent(h), "{role} {p:?}: unauthorized read");
                            }
                        }
                        if *role != "admin" {
                            assert!(sent(h_moved_in), "{role}: moved in arrives");
                            assert!(
                                resp.drops.contains(&h_moved_out),
                                "{role}: moved out dropped"
                            );
                            assert!(!resp.drops.contains(&h_out), "{role}");
                        }
                    }
                }
                ("GET", "/v1/reports/monthly") | ("GET", "/v1/reports/duplicates") => {
                    // Reports: admin everything, puskesmas its area, bidan her desa, a kader
                    // none (her posyandu's recap is on her device); `area=` outside the
                    // caller's scope is refused.
                    let query = |area: Option<&str>| {
                        let mut q = format!("{route}?month=2026-11");
                        if let Some(a) = area {
                            q.push_str(&format!("&area={a}"));
                        }
                        q
                    };
                    for (area, inside) in
                        [(None, true), (Some(DESA_A), true), (Some(DESA_B), false)]
                    {
                        let want = match *role {
                            "disabled" | "anonymous" => 401,
                            "kader" => 403,
                            "admin" => 200,
                            _ if inside => 200,
                            _ => 403,
                        };
                        let path = if route.ends_with("monthly") {
                            query(area)
                        } else {
                            match area {
                                Some(a) => format!("{route}?area={a}"),
                                None => route.to_string(),
                            }
                        };
                        assert_eq!(
                            call(&server.url, method, &path, token),
                            want,
                            "{role} {path}"
                        );
                        checked += 1;
                    }
                }
                other => panic!("route {other:?} has no row in the authorization matrix"),
            }
        }
    }
    assert_eq!(routes_seen.len(), ROUTES.len());
    // The scrape token (KUNJUNG_METRICS_TOKEN) opens /metrics and nothing else.
    assert_eq!(
        call(&server.url, "GET", "/metrics", Some(METRICS_TOKEN)),
        200
    );
    assert_eq!(call(&server.url, "GET", "/v1/me", Some(METRICS_TOKEN)), 401);
    assert_eq!(
        call(&server.url, "GET", "/v1/admin/users", Some(METRICS_TOKEN)),
        401
    );
    checked += 3;
    for role in roles {
        assert_eq!(
            call(&server.url, "POST", "/v1/logout", Some(&tokens[role])),
            204
        );
        assert_eq!(call(&server.url, "GET", "/v1/me", Some(&tokens[role])), 401);
    }
    eprintln!("authorization matrix: {checked} checks, 0 unauthorized reads or writes");
}

#[test]
fn login_rate_limit_lockout_and_hashes_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = sqlite_db(dir.path());
    let server = Server::start(&db_url);
    server.add_user("kader", "kader", &["PSY-A"]);
    server.add_user("other", "kader", &["PSY-A"]);
    for i in 0..5 {
        let (s, v) = login_status(&server.url, "kader", "salah-salah");
        assert_eq!(s, 401, "attempt {i}: {v}");
        assert_eq!(v["code"], "invalid_credentials");
    }
    // Locked out, even with the right password.
    let r = client()
        .post(format!("{}/v1/login", server.url))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": "kader", "password": PASSWORD, "device_id": "d"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 300);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["code"], "rate_limited");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("(too many login attempts"));
    // Another account is not affected; unknown usernames are limited the same way.
    let token = login(&server.url, "other");
    for _ in 0..5 {
        assert_eq!(login_status(&server.url, "nobody", "x").0, 401);
    }
    assert_eq!(login_status(&server.url, "nobody", "x").0, 429);
    // A name longer than any account's (the audit log keeps 64 characters of it).
    let long = "n".repeat(100);
    for _ in 0..5 {
        assert_eq!(login_status(&server.url, &long, "x").0, 401);
    }
    assert_eq!(login_status(&server.url, &long, "x").0, 429);
    // A restart does not lift a lockout: the counters are rebuilt from the audit log.
    let mut server = server;
    server.kill();
    server.restart();
    assert_eq!(login_status(&server.url, "kader", PASSWORD).0, 429);
    assert_eq!(login_status(&server.url, "nobody", "x").0, 429);
    assert_eq!(login_status(&server.url, &long, "x").0, 429);
    assert_eq!(login_status(&server.url, "other", PASSWORD).0, 200);

    // Hashed at rest: the token and the password appear nowhere in the database files.
    let db = Db::open(&db_url).unwrap();
    let rows = db
        .tx(false, |t| {
            t.query("SELECT hash FROM tokens WHERE username = 'other'", &[])
        })
        .unwrap();
    let want = sha2::Sha256::digest(token.as_bytes()).to_vec();
    assert!(rows.iter().any(|r| r[0].blob() == want.as_slice()));
    let hashes = db
        .tx(false, |t| t.query("SELECT password_hash FROM users", &[]))
        .unwrap();
    for h in &hashes {
        assert!(h[0].text().unwrap().starts_with("$argon2id$"), "Argon2id");
    }
    drop(db);
    let mut bytes = Vec::new();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(f.unwrap().path()).unwrap());
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(token.as_bytes()), "the token is stored in clear");
    assert!(
        !contains(PASSWORD.as_bytes()),
        "the password is stored in clear"
    );
}

#[test]
fn audit_log_and_erasure_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = sqlite_db(dir.path());
    let server = Server::start(&db_url);
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.add_user("kader2", "kader", &["PSY-A"]);
    server.add_user("bidan", "bidan", &[DESA_A]);
    let mut a = Device::new("kader1");
    let mut b = Device::new("kader2");
    let (h, m) = a.household(DESA_A, "PSY-A");
    a.visit(m, "kunjungan");
    // A marker to look for in the database files after the erasure.
    const MARKER: &str = "Jalan Rahasia Nomor 7f3e";
    a.set(h, "household/address", text(MARKER));
    let (keep, _) = a.household(DESA_A, "PSY-A");
    assert!(a.sync(&server).verified);
    assert!(b.sync(&server).verified);
    assert!(b.ids().contains(&h));
    let bidan = login(&server.url, "bidan");
    assert_eq!(
        call(
            &server.url,
            "GET",
            &format!("/v1/households/{h}"),
            Some(&bidan)
        ),
        200
    );
    assert_eq!(login_status(&server.url, "bidan", "salah-salah").0, 401);

    // The audit log: who wrote, who read, who signed in or failed to.
    let audit = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = std::process::Command::new(server_bin())
            .args(["--db", &server.db, "audit"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let hid = h.to_string();
    let events = audit(&["--household", &hid]);
    let has = |events: &[serde_json::Value], user: &str, action: &str| {
        events
            .iter()
            .any(|e| e["username"] == user && e["action"] == action)
    };
    assert!(has(&events, "kader1", "write"), "{events:?}");
    assert!(has(&events, "kader2", "read"), "{events:?}");
    assert!(has(&events, "bidan", "read"), "{events:?}");
    assert!(!has(&events, "bidan", "write"));
    let logins = audit(&["--user", "bidan"]);
    assert!(has(&logins, "bidan", "login"));
    assert!(has(&logins, "bidan", "login_failed"));
    assert!(events.iter().all(|e| e["household_id"] == hid.as_str()));

    // B edits the household offline; meanwhile the family asks for erasure.
    b.set(h, "household/address", text("ditulis sebelum penghapusan"));
    // A keeps a copy to try to bring it back later.
    let bundle = a.store.export_bundle(Some(h)).unwrap();
    // A report projection of the household exists before the erasure, and must go with it.
    server.admin(&["report-refresh"]);
    let views = Db::open(&db_url)
        .unwrap()
        .tx(false, |t| {
            t.query(
                "SELECT count(*) FROM report_views WHERE household_id = $1",
                &[hid.as_str().into()],
            )
        })
        .unwrap()[0][0]
        .int();
    assert_eq!(views, 1, "report-refresh made no view to erase");
    server.admin(&[
        "household",
        "erase",
        "--id",
        &hid,
        "--reason",
        "surat 12/2026",
        "--by",
        "admin-dinkes",
    ]);
    let db = Db::open(&db_url).unwrap();
    for table in ["changes", "locations", "report_views"] {
        let n = db
            .tx(false, |t| {
                t.query(
                    &format!("SELECT count(*) FROM {table} WHERE household_id = $1"),
                    &[hid.as_str().into()],
                )
            })
            .unwrap()[0][0]
            .int();
        assert_eq!(n, 0, "{table} still holds the erased household");
    }
    // Nor do its bytes linger in free pages or the WAL (secure_delete, then a truncating
    // checkpoint): the marker is nowhere in the files.
    let path = db_url.strip_prefix("sqlite:").unwrap();
    for file in [path.to_string(), format!("{path}-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{file} still holds the erased household's address"
        );
    }
    assert_eq!(
        call(
            &server.url,
            "GET",
            &format!("/v1/households/{h}"),
            Some(&bidan)
        ),
        404
    );
    let s = a.sync(&server);
    assert!(s.verified);
    assert_eq!(s.dropped, 1);
    assert!(!a.ids().contains(&h) && a.ids().contains(&keep));
    let s = b.sync(&server);
    assert_eq!(s.dropped, 1, "{s:?}");
    assert!(s
        .rejected
        .iter()
        .all(|r| r.household_id == h && r.code == "erased"));
    assert!(!b.ids().contains(&h));
    assert_eq!(
        b.store.unsynced_count().unwrap(),
        0,
        "its unsent edit went with it"
    );
    assert!(b.sync(&server).verified);
    // A stale copy cannot bring it back.
    let mut c = Device::new("kader1");
    c.store.import_bundle(&bundle).unwrap();
    let s = c.sync(&server);
    assert!(!s.verified);
    assert!(s
        .rejected
        .iter()
        .any(|r| r.household_id == h && r.code == "erased"));
    let n = db
        .tx(false, |t| {
            t.query(
                "SELECT count(*) FROM households WHERE id = $1",
                &[hid.as_str().into()],
            )
        })
        .unwrap()[0][0]
        .int();
    assert_eq!(n, 0);
    // The erasure is in the audit log, with who and why; erasing twice is refused.
    let events = audit(&["--household", &hid]);
    let e = events.iter().find(|e| e["action"] == "erase").unwrap();
    assert_eq!(e["username"], "admin-dinkes");
    assert_eq!(e["detail"], "surat 12/2026");
    let out = std::process::Command::new(server_bin())
        .args([
            "--db",
            &server.db,
            "household",
            "erase",
            "--id",
            &hid,
            "--reason",
            "x",
            "--by",
            "y",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A forged cursor gets no drop instructions naming households outside the caller's
/// scope: its scope counts only when the server signed it for this device (or it is the
/// caller's own), and an erasure is dropped only by devices whose scope held the
/// household. A real change of scope (the account edited in the database) still moves the
/// device: the signed cursor's old scope is trusted.
#[test]
fn forged_cursors_get_no_drops_outside_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = sqlite_db(dir.path());
    let server = Server::start(&db_url);
    server.add_user("admin", "admin", &[]);
    server.add_user("kader", "kader", &["PSY-A"]);
    let mut admin = Device::new("admin");
    let (h_a, _) = admin.household(DESA_A, "PSY-A");
    let (h_a_erased, _) = admin.household(DESA_A, "PSY-A");
    let (h_c, _) = admin.household(DESA_B, "PSY-C");
    let (h_c_moved, _) = admin.household(DESA_B, "PSY-C");
    let (h_c_erased, _) = admin.household(DESA_B, "PSY-C");
    assert!(admin.sync(&server).verified);
    let outside = [h_c, h_c_moved, h_c_erased];

    let token = login(&server.url, "kader");
    let first = sync_raw(&server.url, Some(&token), &SyncRequest::default()).unwrap();
    let cursor0 = first.next_cursor.clone();
    assert!(cursor0.mac.is_some(), "the server signs its cursors");
    // Meanwhile: a move between two places outside the kader's scope, and two erasures.
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    admin
        .store
        .move_household(h_c_moved, DESA_B, "2", "2", Some("PSY-D"), day)
        .unwrap();
    assert!(admin.sync(&server).verified);
    for h in [h_a_erased, h_c_erased] {
        server.admin(&[
            "household",
            "erase",
            "--id",
            &h.to_string(),
            "--reason",
            "uji",
            "--by",
            "admin",
        ]);
    }

    let all = kunjung_protocol::Scope {
        all: true,
        ..Default::default()
    };
    let mut altered = cursor0.clone();
    altered.scope = all.clone();
    let forged = [
        kunjung_protocol::Cursor {
            seq: cursor0.seq,
            scope: all.clone(),
            ..Default::default()
        },
        kunjung_protocol::Cursor {
            seq: 0,
            scope: all.clone(),
            ..Default::default()
        },
        altered,
        kunjung_protocol::Cursor {
            seq: cursor0.seq,
            scope: all.clone(),
            mac: Some("0".repeat(32)),
            ..Default::default()
        },
    ];
    for (i, c) in forged.iter().enumerate() {
        let mut c = Some(c.clone());
        let mut pages = 0;
        while let Some(cursor) = c.take() {
            let r = sync_raw(
                &server.url,
                Some(&token),
                &SyncRequest {
                    cursor: Some(cursor),
                    changes: vec![],
                    page_size: Some(2),
                },
            )
            .unwrap();
            for h in &outside {
                assert!(
                    !r.drops.contains(h),
                    "forged cursor {i}: a drop names a household outside the scope"
                );
                assert!(
                    r.snapshots.iter().all(|s| s.household_id != *h)
                        && r.changes.iter().all(|x| x.household_id != *h),
                    "forged cursor {i}: data outside the scope"
                );
            }
            if r.more {
                c = Some(r.next_cursor);
            } else {
                assert!(
                    r.drops.contains(&h_a_erased),
                    "forged cursor {i}: the erasure in the scope is still dropped"
                );
            }
            pages += 1;
            assert!(pages < 20);
        }
    }
    // The real cursor: only the erasure in the scope.
    let r = sync_raw(
        &server.url,
        Some(&token),
        &SyncRequest {
            cursor: Some(cursor0.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.drops, vec![h_a_erased]);
    // Another device of the same user cannot use this device's signed cursor with a
    // scope it never held (the signature binds the device).
    let other = client()
        .post(format!("{}/v1/login", server.url))
        .header(VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": "kader", "password": PASSWORD, "device_id": "dev-lain"}))
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // A real change of scope: the kader moves to PSY-C (edited in the database). Her
    // signed cursor's old scope is trusted: PSY-A's household is dropped, PSY-C's arrives.
    let cursor1 = r.next_cursor;
    Db::open(&db_url)
        .unwrap()
        .tx(false, |t| {
            t.exec(
                "UPDATE users SET posyandu = $1 WHERE username = 'kader'",
                &[r#"["PSY-C"]"#.into()],
            )
        })
        .unwrap();
    let stolen = sync_raw(
        &server.url,
        Some(&other),
        &SyncRequest {
            cursor: Some(cursor1.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        stolen.drops.is_empty(),
        "another device's signed cursor: {:?}",
        stolen.drops
    );
    let r = sync_raw(
        &server.url,
        Some(&token),
        &SyncRequest {
            cursor: Some(cursor1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.drops, vec![h_a], "the scope change drops PSY-A");
    assert!(r.snapshots.iter().any(|s| s.household_id == h_c));
}
