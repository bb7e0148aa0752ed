//! Bad input against the HTTP server (in process, real HTTP on loopback, real SQLite
//! file): malformed and oversized bodies, compression bombs, deep CBOR, wrong content
//! types, corrupt Automerge bytes, changes for other or out-of-scope households, replayed
//! and expired tokens, path tricks, very long strings and invalid UTF-8. Each request-level
//! error is a 4xx with a JSON `{code, message}` (Bahasa Indonesia first, English in
//! brackets); a refused change inside an otherwise valid push is answered in-band
//! (`rejected[]` with a code), since one push carries many households. After every attempt
//! the server still answers and the stored data is byte-for-byte what it was.

use std::io::Write;

use automerge::ActorId;
use kunjung_core::{CommitMeta, FieldEdit, HouseholdDoc, NewHousehold};
use kunjung_protocol::{
    ByteBuf, Cursor, ErrorBody, HouseholdChanges, Role, SyncRequest, SyncResponse, VERSION_HEADER,
};
use kunjung_sync_server::auth;
use kunjung_sync_server::db::{Value, TABLES};
use kunjung_sync_server::http::AppState;
use kunjung_sync_server::Db;
use uuid::Uuid;

const DESA_A: &str = "32.14.01.2001";
const PASSWORD: &str = "kata-sandi-1";

struct Srv {
    base: String,
    /// A second connection to the server's database, to look at what is stored.
    db: Db,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    c: reqwest::blocking::Client,
}

impl Srv {
    fn start() -> Srv {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("s.db").display());
        let db = Db::open(&url).unwrap();
        db.tx(true, |t| {
            auth::add_user(t, "kader-a", Role::Kader, &["PSY-A".into()], &[], PASSWORD)?;
            auth::add_user(t, "kader-b", Role::Kader, &["PSY-B".into()], &[], PASSWORD)
        })
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = kunjung_sync_server::http::router(AppState::new(db).unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Srv {
            base: format!("http://{addr}"),
            db: Db::open(&url).unwrap(),
            _rt: rt,
            _dir: dir,
            c: reqwest::blocking::Client::new(),
        }
    }

    fn login(&self, user: &str, device: &str) -> String {
        let r: serde_json::Value = self
            .c
            .post(format!("{}/v1/login", self.base))
            .header(VERSION_HEADER, "1")
            .json(&serde_json::json!({"username": user, "password": PASSWORD, "device_id": device}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["token"].as_str().unwrap().to_string()
    }

    fn sync_raw(
        &self,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        self.c
            .post(format!("{}/v1/sync", self.base))
            .header(VERSION_HEADER, "1")
            .header("content-type", content_type)
            .header("content-encoding", "zstd")
            .bearer_auth(token)
            .body(body)
            .send()
            .unwrap()
    }

    fn sync(&self, token: &str, req: &SyncRequest) -> SyncResponse {
        let r = self.sync_raw(
            token,
            "application/cbor",
            kunjung_protocol::encode(req).unwrap(),
        );
        assert_eq!(r.status().as_u16(), 200);
        kunjung_protocol::decode(&r.bytes().unwrap()).unwrap()
    }

    /// Everything stored except the tokens and audit tables (logins and refusals add rows
    /// there by design).
    fn dump(&self) -> Vec<(String, Vec<Vec<Value>>)> {
        TABLES
            .iter()
            .filter(|t| !["tokens", "audit_log", "audit_households"].contains(*t))
            .map(|t| {
                let rows = self
                    .db
                    .tx(false, |x| {
                        x.query(&format!("SELECT * FROM {t} ORDER BY 1, 2"), &[])
                    })
                    .unwrap();
                (t.to_string(), rows)
            })
            .collect()
    }

    /// A GET written byte for byte on a raw connection: (status, body).
    fn raw_get(&self, path: &str, token: &str) -> (u16, String) {
        use std::io::Read;
        let addr = self.base.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{VERSION_HEADER}: 1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (status, body)
    }

    fn alive(&self) {
        let r = self
            .c
            .get(format!("{}/v1/health", self.base))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "the server stays up");
    }
}

/// Asserts a 4xx with a JSON error body carrying `code` and a bilingual message.
fn expect_error(r: reqwest::blocking::Response, status: u16, code: &str, what: &str) {
    assert_eq!(r.status().as_u16(), status, "{what}");
    let body = r.bytes().unwrap();
    let e: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "{what}: not a JSON error: {:?}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(e.code, code, "{what}: {}", e.message);
    assert!(
        e.message.contains('(') && e.message.ends_with(')'),
        "{what}: message is Indonesian then (English): {}",
        e.message
    );
}

fn meta() -> CommitMeta {
    CommitMeta {
        user: "t".into(),
        time_ms: 1_795_000_000_000,
    }
}

fn household(posyandu: &str) -> (Uuid, HouseholdDoc, Vec<u8>) {
    let id = Uuid::now_v7();
    let w = HouseholdDoc::create(
        id,
        &NewHousehold {
            area_code: DESA_A.into(),
            rt: "1".into(),
            rw: "2".into(),
            dusun: None,
            posyandu_id: Some(posyandu.into()),
            address: Some("Kp. Awal".into()),
            kk: None,
        },
        ActorId::random(),
        &meta(),
    )
    .unwrap();
    let c = w.change.unwrap().raw_bytes().to_vec();
    (id, w.result, c)
}

fn push(id: Uuid, changes: Vec<Vec<u8>>) -> SyncRequest {
    SyncRequest {
        cursor: None,
        changes: vec![HouseholdChanges {
            household_id: id,
            changes: changes.into_iter().map(ByteBuf::from).collect(),
        }],
        page_size: None,
    }
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, 3).unwrap()
}

#[test]
fn bad_sync_bodies_get_4xx_and_change_nothing() {
    let s = Srv::start();
    let ta = s.login("kader-a", "dev-a");
    let (ha, mut doc_a, c0) = household("PSY-A");
    let r = s.sync(&ta, &push(ha, vec![c0.clone()]));
    assert_eq!((r.acked, r.rejected.len()), (1, 0));
    let before = s.dump();
    let check = |what: &str| {
        s.alive();
        assert_eq!(s.dump(), before, "{what}: stored data unchanged");
    };

    // Not zstd, zstd of garbage, truncated, empty.
    let good = kunjung_protocol::encode(&SyncRequest::default()).unwrap();
    for (what, body) in [
        ("random bytes", b"\x00\x01not a message at all".to_vec()),
        ("zstd of non-CBOR", zstd(b"{\"json\": true}")),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "CBOR of the wrong shape",
            zstd(&{
                let mut v = Vec::new();
                ciborium::into_writer(&vec!["a", "b"], &mut v).unwrap();
                v
            }),
        ),
    ] {
        expect_error(
            s.sync_raw(&ta, "application/cbor", body),
            400,
            "bad_message",
            what,
        );
        check(what);
    }

    // Deeply nested CBOR (100,000 open arrays) must not overflow the stack.
    let deep = zstd(&vec![0x81u8; 100_000]);
    expect_error(
        s.sync_raw(&ta, "application/cbor", deep),
        400,
        "bad_message",
        "deep CBOR",
    );
    check("deep CBOR");

    // A compression bomb: 1 GiB of zeros in a few KB, refused past the inflate limit.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let r = s.sync_raw(&ta, "application/cbor", bomb);
    assert_eq!(r.status().as_u16(), 400, "compression bomb");
    check("compression bomb");

    // Oversized body (over the 32 MiB limit).
    let big = vec![7u8; kunjung_sync_server::http::SYNC_BODY_LIMIT + 1024];
    expect_error(
        s.sync_raw(&ta, "application/cbor", big),
        413,
        "too_large",
        "oversized",
    );
    check("oversized");

    // Wrong content types.
    for ct in [
        "application/json",
        "text/plain",
        "",
        "application/x-www-form-urlencoded",
    ] {
        expect_error(
            s.sync_raw(&ta, ct, good.clone()),
            415,
            "unsupported_media_type",
            ct,
        );
    }
    check("content types");

    // Corrupt Automerge bytes: every single-byte flip of a real change, and garbage.
    let edit = doc_a
        .edit(
            &[FieldEdit {
                path: "household/address".into(),
                value: Some(kunjung_core::AnswerValue::Text("Jl. Baru".into())),
            }],
            &meta(),
            "edit",
        )
        .unwrap()
        .change
        .unwrap()
        .raw_bytes()
        .to_vec();
    let mut codes = std::collections::BTreeSet::new();
    for i in 0..edit.len() {
        let mut bad = edit.clone();
        bad[i] ^= 0x5a;
        let r = s.sync(&ta, &push(ha, vec![bad]));
        assert_eq!(r.acked, 0, "flipped byte {i} was stored");
        assert_eq!(r.rejected.len(), 1, "flipped byte {i}");
        codes.insert(r.rejected[0].code.clone());
    }
    for c in &codes {
        assert!(
            ["corrupt_change", "corrupt_document", "invalid"].contains(&c.as_str()),
            "rejection code {c}"
        );
    }
    for garbage in [vec![], vec![0u8; 3], b"\x85\x6f\x4a\x83garbage".to_vec()] {
        let r = s.sync(&ta, &push(ha, vec![garbage]));
        assert_eq!(
            (r.acked, r.rejected[0].code.as_str()),
            (0, "corrupt_change")
        );
    }
    check("corrupt changes");

    // A real change under another household's id.
    let (hx, _, cx) = household("PSY-A");
    let r = s.sync(&ta, &push(ha, vec![cx.clone()]));
    assert_eq!(r.acked, 0);
    assert!(!r.rejected.is_empty());
    // ... and one already stored, claimed for another household.
    let r = s.sync(&ta, &push(hx, vec![c0.clone()]));
    assert_eq!(r.acked, 0);
    assert_eq!(r.rejected[0].code, "wrong_household");
    check("wrong household");

    // Out of scope: kader B pushes into A's household and creates one in PSY-A.
    let tb = s.login("kader-b", "dev-b");
    let r = s.sync(&tb, &push(ha, vec![edit.clone()]));
    assert_eq!((r.acked, r.rejected[0].code.as_str()), (0, "out_of_scope"));
    let (hy, _, cy) = household("PSY-A");
    let r = s.sync(&tb, &push(hy, vec![cy]));
    assert_eq!((r.acked, r.rejected[0].code.as_str()), (0, "out_of_scope"));
    assert!(r.snapshots.is_empty(), "B pulls nothing of PSY-A");
    check("out of scope");

    // A replayed push is acknowledged again but stored once.
    let r = s.sync(&ta, &push(ha, vec![c0.clone()]));
    assert_eq!((r.acked, r.rejected.len()), (1, 0));
    check("replayed push");

    // Hostile cursors: sequence numbers past the end or wrapping, huge page sizes, a
    // scope forged to "everything".
    let now_seq =
        s.db.tx(false, |x| {
            x.query("SELECT value FROM counters WHERE name = 'seq'", &[])
        })
        .unwrap()[0][0]
            .int() as u64;
    for cursor in [
        Cursor {
            seq: u64::MAX,
            target: Some(u64::MAX),
            after: Some(Uuid::max()),
            scope: Default::default(),
            mac: None,
        },
        Cursor {
            seq: i64::MAX as u64 + 1,
            target: None,
            after: None,
            scope: kunjung_protocol::Scope {
                all: true,
                ..Default::default()
            },
            mac: Some("00".repeat(16)),
        },
        Cursor {
            seq: now_seq,
            target: None,
            after: None,
            scope: kunjung_protocol::Scope {
                all: true,
                ..Default::default()
            },
            mac: Some("00".repeat(16)),
        },
    ] {
        let r = s.sync_raw(
            &tb,
            "application/cbor",
            kunjung_protocol::encode(&SyncRequest {
                cursor: Some(cursor),
                changes: vec![],
                page_size: Some(u32::MAX),
            })
            .unwrap(),
        );
        let status = r.status().as_u16();
        assert!(status == 200 || status == 400, "hostile cursor: {status}");
        if status == 200 {
            let resp: SyncResponse = kunjung_protocol::decode(&r.bytes().unwrap()).unwrap();
            assert!(
                resp.snapshots.iter().all(|x| x.household_id != ha)
                    && resp.changes.iter().all(|x| x.household_id != ha),
                "a forged cursor scope leaks nothing"
            );
        }
    }
    check("hostile cursors");

    // The good path still works after all that.
    let r = s.sync(&ta, &push(ha, vec![edit]));
    assert_eq!((r.acked, r.rejected.len()), (1, 0));
}

#[test]
fn tokens_paths_strings_and_utf8() {
    let s = Srv::start();
    let ta = s.login("kader-a", "dev-a");
    let (ha, _, c0) = household("PSY-A");
    s.sync(&ta, &push(ha, vec![c0]));
    let before = s.dump();
    let get = |path: &str, token: Option<&str>| {
        let mut r =
            s.c.get(format!("{}{path}", s.base))
                .header(VERSION_HEADER, "1");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };

    // Replayed token after logout.
    let t = s.login("kader-a", "dev-x");
    assert_eq!(get("/v1/me", Some(&t)).status().as_u16(), 200);
    let r =
        s.c.post(format!("{}/v1/logout", s.base))
            .header(VERSION_HEADER, "1")
            .bearer_auth(&t)
            .send()
            .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    expect_error(
        get("/v1/me", Some(&t)),
        401,
        "unauthorized",
        "replayed token",
    );
    expect_error(
        s.sync_raw(
            &t,
            "application/cbor",
            kunjung_protocol::encode(&SyncRequest::default()).unwrap(),
        ),
        401,
        "unauthorized",
        "replayed token on sync",
    );

    // Expired token (its expiry moved into the past in the database).
    let t = s.login("kader-a", "dev-y");
    s.db.tx(false, |x| {
        x.exec(
            "UPDATE tokens SET expires_at = $1 WHERE device = 'dev-y'",
            &[Value::Int(auth::now_ms() - 1)],
        )
    })
    .unwrap();
    expect_error(
        get("/v1/me", Some(&t)),
        401,
        "unauthorized",
        "expired token",
    );
    // Forged, truncated, over-long and non-UTF-8 tokens.
    let long_token = "x".repeat(10_000);
    for bad in ["forged", &ta[..ta.len() - 1], long_token.as_str()] {
        expect_error(
            get("/v1/me", Some(bad)),
            401,
            "unauthorized",
            "forged token",
        );
    }
    let r =
        s.c.get(format!("{}/v1/me", s.base))
            .header(VERSION_HEADER, "1")
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
            )
            .send()
            .unwrap();
    expect_error(r, 401, "unauthorized", "non-UTF-8 token");
    let r =
        s.c.get(format!("{}/v1/me", s.base))
            .header(VERSION_HEADER, "1")
            .header("authorization", format!("Basic {ta}"))
            .send()
            .unwrap();
    expect_error(r, 401, "unauthorized", "wrong auth scheme");

    // Path tricks, sent byte for byte (a client library would normalise them): none
    // reaches another route or a file, each is a 4xx with a JSON code.
    let paths: Vec<(String, u16)> = [
        ("/v1/households/../admin/users", 404),
        ("/v1/households/%2e%2e%2fadmin%2fusers", 400),
        ("/v1/households/..%2F..%2Fetc%2Fpasswd", 400),
        ("/v1/households/not-a-uuid", 400),
        ("/v1/households/%00", 400),
        ("/v1/households/%ff%fe", 400),
        (&*format!("/v1/households/{ha}%00"), 400),
        (&*format!("/v1/households/{ha}/../{ha}"), 404),
        (&*format!("/v1/households/{}", "a".repeat(20_000)), 400),
        ("/v1/households/", 404),
        ("/v1//households", 404),
        ("/v1/admin/users/../../households", 404),
        ("/../../../etc/passwd", 404),
        ("/v1/health/../admin/users", 404),
    ]
    .iter()
    .map(|(p, s)| (p.to_string(), *s))
    .collect();
    for (path, status) in &paths {
        let (path, status) = (path.as_str(), *status);
        let (got, body) = s.raw_get(path, &ta);
        assert_eq!(got, status, "{path}: {body}");
        let e: ErrorBody = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{path}: not a JSON error: {body}"));
        assert!(!e.code.is_empty());
    }
    assert_eq!(
        get(&format!("/v1/households/{ha}"), Some(&ta))
            .status()
            .as_u16(),
        200
    );
    // Uppercase UUIDs are the same household, not a way around scope.
    let tb = s.login("kader-b", "dev-b");
    expect_error(
        get(
            &format!("/v1/households/{}", ha.to_string().to_uppercase()),
            Some(&tb),
        ),
        403,
        "out_of_scope",
        "uppercase id",
    );

    // Login: very long strings, invalid UTF-8, wrong types, missing fields, not JSON.
    let login = |body: Vec<u8>| {
        s.c.post(format!("{}/v1/login", s.base))
            .header(VERSION_HEADER, "1")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap()
    };
    let long = "a".repeat(100_000);
    expect_error(
        login(
            serde_json::to_vec(
                &serde_json::json!({"username": long, "password": "x", "device_id": "d"}),
            )
            .unwrap(),
        ),
        413,
        "too_large",
        "100 KB username",
    );
    let long = "ü".repeat(8_000);
    expect_error(
        login(
            serde_json::to_vec(
                &serde_json::json!({"username": long, "password": long, "device_id": "d"}),
            )
            .unwrap(),
        ),
        401,
        "invalid_credentials",
        "16 KB username and password",
    );
    expect_error(
        login(serde_json::to_vec(&serde_json::json!({"username": "kader-a", "password": PASSWORD, "device_id": "d".repeat(5000)})).unwrap()),
        400,
        "bad_request",
        "long device id",
    );
    expect_error(
        login(
            b"{\"username\": \"kader-a\xff\", \"password\": \"x\", \"device_id\": \"d\"}".to_vec(),
        ),
        400,
        "bad_request",
        "invalid UTF-8",
    );
    for (what, body) in [
        ("not JSON", b"username=kader-a&password=x".to_vec()),
        (
            "wrong types",
            br#"{"username": 1, "password": [], "device_id": {}}"#.to_vec(),
        ),
        ("missing fields", br#"{"username": "kader-a"}"#.to_vec()),
        ("empty", Vec::new()),
        (
            "null bytes",
            b"{\"username\": \"a\\u0000b\", \"password\": \"x\", \"device_id\": \"\"}".to_vec(),
        ),
    ] {
        expect_error(login(body), 400, "bad_request", what);
    }
    expect_error(
        s.c.post(format!("{}/v1/login", s.base))
            .header(VERSION_HEADER, "1")
            .body(vec![b'['; 60_000])
            .send()
            .unwrap(),
        400,
        "bad_request",
        "deep JSON",
    );
    // Non-numeric protocol header.
    let r =
        s.c.get(format!("{}/v1/me", s.base))
            .header(VERSION_HEADER, "1; drop table")
            .bearer_auth(&ta)
            .send()
            .unwrap();
    expect_error(r, 426, "client_too_old", "bad protocol header");
    // Wrong method.
    let r = s.c.delete(format!("{}/v1/sync", s.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);

    s.alive();
    assert_eq!(s.dump(), before, "stored data unchanged");
}
