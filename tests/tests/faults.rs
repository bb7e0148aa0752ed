//! A fault-injecting proxy on loopback between the real client sync engine (real store)
//! and a real `kunjung-server` process: delays, connections closed before the request is
//! forwarded, answers lost after the server stored the push, truncated requests, truncated
//! answers, duplicated requests and reset connections. Sync completes when the network
//! allows; when it does not, it says so (an error, or `verified: false`), and no change is
//! ever marked as acknowledged unless the server holds it.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kunjung_client::sync::{sync, SyncError, SyncOptions};
use kunjung_sync_server::Db;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Pass,
    /// 20–250 ms before forwarding.
    Delay,
    /// The connection is closed before anything reaches the server.
    CloseBefore,
    /// The request reaches the server (which stores the push); the answer is lost.
    LoseAnswer,
    /// Only the first half of the request reaches the server.
    TruncateRequest,
    /// Only the first half of the answer reaches the client.
    TruncateAnswer,
    /// The request reaches the server twice; the client gets the second answer.
    Duplicate,
    /// The connection is reset (closed with the request body unread: RST).
    Reset,
}

const FAULTS: &[Fault] = &[
    Fault::Delay,
    Fault::CloseBefore,
    Fault::LoseAnswer,
    Fault::TruncateRequest,
    Fault::TruncateAnswer,
    Fault::Duplicate,
    Fault::Reset,
];

struct Plan {
    rng: ChaCha8Rng,
    /// Probability that a request meets a fault.
    p: f64,
    kinds: Vec<Fault>,
}

struct Proxy {
    addr: String,
    plan: Arc<Mutex<Plan>>,
    seen: Arc<Mutex<Vec<Fault>>>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

fn read_head(s: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((head, len))
}

/// The request with `Connection: close`, so each connection carries one exchange.
fn with_close(head: &[u8], body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if line.to_lowercase().starts_with("connection:") || line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if i == 0 {
            out.push_str("Connection: close\r\n");
        }
    }
    out.push_str("\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

fn exchange(upstream: &str, req: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    up.write_all(req).ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).ok()?;
    Some(resp)
}

impl Proxy {
    fn start(upstream: &str, seed: u64, p: f64, kinds: &[Fault]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            addr: format!("http://{}", listener.local_addr().unwrap()),
            plan: Arc::new(Mutex::new(Plan {
                rng: ChaCha8Rng::seed_from_u64(seed),
                p,
                kinds: kinds.to_vec(),
            })),
            seen: Arc::default(),
            stop: Arc::default(),
            requests: Arc::default(),
        };
        let upstream = upstream.trim_start_matches("http://").to_string();
        let (plan, seen, stop, requests) = (
            proxy.plan.clone(),
            proxy.seen.clone(),
            proxy.stop.clone(),
            proxy.requests.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (conn, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                conn.set_nonblocking(false).unwrap();
                let (plan, seen, requests, upstream) = (
                    plan.clone(),
                    seen.clone(),
                    requests.clone(),
                    upstream.clone(),
                );
                std::thread::spawn(move || {
                    let (fault, delay) = {
                        let mut p = plan.lock().unwrap();
                        let pf = p.p;
                        let f = if p.rng.gen_bool(pf) {
                            let kinds = p.kinds.clone();
                            *kinds.choose(&mut p.rng).unwrap()
                        } else {
                            Fault::Pass
                        };
                        (f, p.rng.gen_range(20..250))
                    };
                    requests.fetch_add(1, Ordering::Relaxed);
                    seen.lock().unwrap().push(fault);
                    handle(conn, &upstream, fault, delay);
                });
            }
        });
        proxy
    }

    fn set(&self, p: f64, kinds: &[Fault]) {
        let mut plan = self.plan.lock().unwrap();
        plan.p = p;
        plan.kinds = kinds.to_vec();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn handle(mut client: TcpStream, upstream: &str, fault: Fault, delay: u64) {
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let Some((head, len)) = read_head(&mut client) else {
        return;
    };
    if fault == Fault::Reset {
        // The body is left unread: closing with unread bytes sends a reset (RST).
        drop(client);
        return;
    }
    let mut body = vec![0u8; len];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    let req = with_close(&head, &body);
    let answer = match fault {
        Fault::CloseBefore => return,
        Fault::TruncateRequest => {
            if let Ok(mut up) = TcpStream::connect(upstream) {
                let _ = up.write_all(&req[..req.len() / 2]);
            }
            return;
        }
        Fault::Delay => {
            std::thread::sleep(Duration::from_millis(delay));
            exchange(upstream, &req)
        }
        Fault::Duplicate => {
            let _ = exchange(upstream, &req);
            exchange(upstream, &req)
        }
        _ => exchange(upstream, &req),
    };
    let Some(answer) = answer else { return };
    match fault {
        Fault::LoseAnswer => {}
        Fault::TruncateAnswer => {
            let _ = client.write_all(&answer[..answer.len() / 2]);
        }
        _ => {
            let _ = client.write_all(&answer);
        }
    }
}

/// Change hashes the server holds (read from its database file).
fn server_hashes(db: &Db) -> BTreeSet<Vec<u8>> {
    db.tx(false, |t| t.query("SELECT hash FROM changes", &[]))
        .unwrap()
        .into_iter()
        .map(|r| r[0].blob().to_vec())
        .collect()
}

/// Change hashes this store has marked as acknowledged.
fn marked(d: &Device) -> BTreeSet<Vec<u8>> {
    let conn = d.store.connection();
    let mut st = conn
        .prepare("SELECT hash FROM changes WHERE synced = 1 AND local = 1")
        .unwrap();
    let out: BTreeSet<Vec<u8>> = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    out
}

fn options(url: &str, user: &str) -> SyncOptions {
    let mut o = SyncOptions::new(url, user, Some(PASSWORD.into()));
    o.tries = 3;
    o.backoff = Duration::from_millis(5);
    o.max_push = 7; // several push rounds per sync
    o.page_size = Some(3);
    o
}

fn random_edit(d: &mut Device, rng: &mut ChaCha8Rng, n: usize) {
    let ids: Vec<_> = d.ids().into_iter().collect();
    match rng.gen_range(0..4) {
        0 | 1 if !ids.is_empty() => {
            let h = *ids.choose(rng).unwrap();
            d.set(h, "household/address", text(&format!("Jl. {n}")));
        }
        2 if !ids.is_empty() => {
            let h = *ids.choose(rng).unwrap();
            let m = d.member(h, &format!("Anggota {n}"));
            d.visit(m, &format!("kunjungan {n}"));
        }
        _ => {
            d.household(DESA_A, "PSY-A");
        }
    }
}

/// Random faults on 40% of requests: each sync either completes (then it is verified and
/// the server holds every local change) or fails with an error; either way every change
/// marked acknowledged is on the server. When the network heals, both devices converge
/// and the server stored each change once despite duplicated and replayed requests.
#[test]
fn flaky_network_completes_or_says_so_and_never_lies() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(dir.path());
    let server = Server::start(&url);
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.add_user("kader2", "kader", &["PSY-A"]);
    let db = Db::open(&url).unwrap();
    let proxy = Proxy::start(&server.url, 11, 0.4, FAULTS);
    let mut devs = [Device::new("kader1"), Device::new("kader2")];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut ok, mut failed) = (0, 0);
    for round in 0..40 {
        let i = rng.gen_range(0..2);
        for k in 0..rng.gen_range(1..5) {
            random_edit(&mut devs[i], &mut rng, round * 10 + k);
        }
        let o = options(&proxy.addr, &devs[i].user);
        let before = devs[i].store.unsynced_count().unwrap();
        let r = sync(&mut devs[i].store, &o, &mut |_| {});
        let held = server_hashes(&db);
        let marked_now = marked(&devs[i]);
        assert!(
            marked_now.is_subset(&held),
            "round {round}: a change marked acknowledged is not on the server"
        );
        match r {
            Ok(s) => {
                ok += 1;
                assert_eq!(s.verified, s.unsynced == 0, "round {round}: {s:?}");
                assert!(s.verified, "round {round}: nothing is rejected here: {s:?}");
                assert_eq!(devs[i].store.unsynced_count().unwrap(), 0);
            }
            Err(e) => {
                failed += 1;
                assert!(
                    matches!(e, SyncError::Network { .. } | SyncError::Protocol(_)),
                    "round {round}: {e}"
                );
                assert!(devs[i].store.unsynced_count().unwrap() <= before);
            }
        }
    }
    let seen = proxy.seen.lock().unwrap().clone();
    let kinds: BTreeSet<Fault> = seen.iter().copied().collect();
    for f in FAULTS {
        assert!(kinds.contains(f), "fault {f:?} never happened");
    }
    eprintln!(
        "flaky network: {ok} syncs completed, {failed} failed honestly, {} requests, {} faults",
        seen.len(),
        seen.iter().filter(|f| **f != Fault::Pass).count()
    );
    assert!(ok > 0 && failed > 0, "both outcomes were exercised");

    // The network heals.
    proxy.set(0.0, FAULTS);
    for _ in 0..2 {
        for d in devs.iter_mut() {
            let o = options(&proxy.addr, &d.user);
            let s = sync(&mut d.store, &o, &mut |_| {}).unwrap();
            assert!(s.verified);
        }
    }
    let [a, b] = &mut devs;
    assert_eq!(a.state(), b.state());
    let all = a.hashes();
    assert_eq!(all, b.hashes());
    assert_eq!(
        server_hashes(&db).len(),
        all.len(),
        "each change stored once"
    );
}

/// A network that never lets an answer through: every sync fails with a network error
/// (after its retries), nothing is marked, `verified` is never set; the server may hold
/// the pushed changes (its answers were lost), and when the network comes back the device
/// learns they are acknowledged without storing anything twice.
#[test]
fn dead_network_never_marks_anything() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(dir.path());
    let server = Server::start(&url);
    server.add_user("kader1", "kader", &["PSY-A"]);
    let db = Db::open(&url).unwrap();
    let mut d = Device::new("kader1");
    // A first verified sync (so the token is valid and sync goes straight to /v1/sync).
    let s = d.sync(&server);
    assert!(s.verified);
    let verified_at = d.store.meta("sync.verified_at_ms").unwrap();
    assert!(verified_at.is_some());
    for i in 0..6 {
        let (_, m) = d.household(DESA_A, "PSY-A");
        d.visit(m, &format!("kunjungan {i}"));
    }
    let pending = d.store.unsynced_count().unwrap();
    assert_eq!(pending, 18);
    for (seed, kind) in [
        Fault::CloseBefore,
        Fault::Reset,
        Fault::TruncateRequest,
        Fault::TruncateAnswer,
        Fault::LoseAnswer,
    ]
    .into_iter()
    .enumerate()
    {
        let proxy = Proxy::start(&server.url, seed as u64, 1.0, &[kind]);
        let mut o = options(&proxy.addr, "kader1");
        o.max_push = 1000;
        o.tries = 2;
        let r = sync(&mut d.store, &o, &mut |_| {});
        assert!(
            matches!(r, Err(SyncError::Network { .. })),
            "{kind:?}: {r:?}"
        );
        assert_eq!(d.store.unsynced_count().unwrap(), pending, "{kind:?}");
        assert!(marked(&d).is_subset(&server_hashes(&db)));
        assert_eq!(
            d.store.meta("sync.verified_at_ms").unwrap(),
            verified_at,
            "{kind:?}: verified time unchanged"
        );
    }
    // The lost answers: the server holds the changes, the device does not know it yet.
    assert_eq!(server_hashes(&db).len(), 18);
    let s = d.sync(&server);
    assert!(s.verified);
    assert_eq!(s.pushed, 18, "acknowledged now");
    assert_eq!(server_hashes(&db).len(), 18, "stored once");
    assert_eq!(server.metric("kunjung_change_sequence"), 18);
}
