//! The sync workloads of issue 9, each run on Kunjung and on the peer in the same run:
//! Kunjung's release `kunjung-server` process and its real client store and sync engine
//! over HTTP; the peer is PouchDB (leveldb) replicating to pouchdb-server on loopback
//! (`bench/peer/peer.js`). A counting proxy sits between each client and its server.
//!
//! 1. first sync of a village (2,000 households) to a new device;
//! 2. end of day: one kader's 30 new visits to a server holding 20,000 households;
//! 3. 100 devices doing their end of day at once;
//! 5. device storage per 1,000 visits, before and after compaction.
//!
//! (Workload 4, local operations, is in `bench.rs`; its peer half is `peer_local` here.)

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::NaiveDate;
use kunjung_client::seed::{self, SeedOptions, DEMO_AREA};
use kunjung_client::sync::{sync, SyncOptions};
use kunjung_core::NewVisit;
use kunjung_store::Store;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::proxy::{Proxy, Wire};
use super::{cht, Row};

const PASSWORD: &str = "bench-password-2026";
const DB: &str = "medic";
const SEED: u64 = 1;
const VILLAGE_USER: &str = "village";

/// A child process killed when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// CPU time (user + system, all threads) the process has used so far, in seconds.
    pub fn cpu(&self) -> f64 {
        cpu_of(&self.0.id().to_string())
    }
}

/// CPU time (user + system, all threads) of process `pid` ("self" for this one), in seconds.
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here).
    (ticks(11) + ticks(12)) / 100.0
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default()
}

fn opts(first: usize, households: usize) -> SeedOptions {
    SeedOptions {
        households,
        seed: SEED,
        today: today(),
        visits_per_household: 20,
        first,
    }
}

/// The posyandu (desa index, posyandu index) of seed household `i`.
fn household_index(desa: usize, psy: usize, m: usize) -> usize {
    8 * m + desa + 4 * psy
}

fn kader(desa: usize, psy: usize) -> String {
    format!("kader-{}", DEMO_AREA[desa].posyandu[psy])
}

/// Installs the peer's npm packages (`npm ci`, no install scripts: leveldown loads the
/// prebuilt binary shipped in its npm tarball, and pouchdb-server's optional sqlite3 build
/// — which would fetch from GitHub — is never needed).
pub fn ensure_peer(root: &Path) -> Result<PathBuf> {
    let dir = root.join("bench/peer");
    if which("node").is_none() || which("npm").is_none() {
        crate::sh::apt_install(&["nodejs", "npm"])?;
    }
    if !dir
        .join("node_modules/pouchdb-server/package.json")
        .exists()
        || !dir.join("node_modules/pouchdb/package.json").exists()
    {
        let d = dir.to_str().context("path")?;
        crate::sh::run(
            "npm",
            &[
                "--prefix",
                d,
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
            ],
            &[],
        )?;
    }
    Ok(dir)
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
    })
}

/// Runs a `peer.js` command and returns its JSON answer.
fn node(peer: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new("node")
        .arg("--max-old-space-size=8192")
        .arg(peer.join("peer.js"))
        .args(args)
        .output()
        .context("run node")?;
    if !out.status.success() {
        bail!(
            "peer.js {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("peer.js answer: {text}"))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn wait_http(addr: SocketAddr, what: &str) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not start")
}

/// pouchdb-server 4.2.0 as shipped (express-pouchdb, compression on, leveldb).
pub struct PeerServer {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl PeerServer {
    pub fn start(peer: &Path, dir: &Path) -> Result<PeerServer> {
        std::fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("node")
            .arg(peer.join("node_modules/pouchdb-server/bin/pouchdb-server"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--dir", dir.join("db").to_str().context("path")?])
            .arg("--no-stdout-logs")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start pouchdb-server")?;
        let s = PeerServer {
            proc: Proc(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        wait_http(s.addr, "pouchdb-server")?;
        // Create the database (PUT /medic) over plain HTTP.
        let mut c = TcpStream::connect(s.addr)?;
        write!(
            c,
            "PUT /{DB} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        BufReader::new(c).read_line(&mut answer)?;
        ensure!(
            answer.contains(" 201") || answer.contains(" 412"),
            "PUT /{DB}: {answer}"
        );
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://{}/{DB}", self.addr)
    }
}

/// The release (or test) `kunjung-server` on SQLite.
pub struct KunjungServer {
    pub proc: Proc,
    pub url: String,
    pub addr: SocketAddr,
    pub db: String,
}

impl KunjungServer {
    pub fn start(bin: &Path, dir: &Path) -> Result<KunjungServer> {
        std::fs::create_dir_all(dir)?;
        let db = format!("sqlite:{}", dir.join("server.db").display());
        let add = |user: &str, role: &str, flag: &str, value: &str| -> Result<()> {
            let mut a = vec![
                "--db",
                &db,
                "user",
                "add",
                "--username",
                user,
                "--role",
                role,
            ];
            if !flag.is_empty() {
                a.extend([flag, value]);
            }
            let out = Command::new(bin)
                .args(&a)
                .env("KUNJUNG_PASSWORD", PASSWORD)
                .output()?;
            ensure!(
                out.status.success(),
                "user add {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        add("admin", "admin", "", "")?;
        add(VILLAGE_USER, "puskesmas", "--area", "32.14")?;
        for (d, desa) in DEMO_AREA.iter().enumerate() {
            for p in 0..2 {
                add(&kader(d, p), "kader", "--posyandu", desa.posyandu[p])?;
            }
        }
        let mut child = Command::new(bin)
            .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start kunjung-server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let proc = Proc(child);
        let mut url = String::new();
        for line in BufReader::new(stdout).lines() {
            if let Some(u) = line?.strip_prefix("listening on ") {
                url = u.trim().to_string();
                break;
            }
        }
        ensure!(!url.is_empty(), "kunjung-server did not report its address");
        let addr: SocketAddr = url.trim_start_matches("http://").parse()?;
        Ok(KunjungServer {
            proc,
            url,
            addr,
            db,
        })
    }

    /// Household ids the server holds (read from its SQLite file).
    pub fn household_ids(&self) -> Result<Vec<String>> {
        let path = self.db.trim_start_matches("sqlite:");
        let c = kunjung_store::RawConnection::open(path)?;
        let mut st = c.prepare("SELECT id FROM households ORDER BY id")?;
        let v = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }
}

fn sync_opts(url: &str, user: &str) -> SyncOptions {
    SyncOptions::new(url, user, Some(PASSWORD.to_string()))
}

fn run_sync(store: &mut Store, url: &str, user: &str) -> Result<kunjung_client::sync::SyncSummary> {
    let s = sync(store, &sync_opts(url, user), &mut |_| {})?;
    ensure!(
        s.verified && s.rejected.is_empty(),
        "sync not verified: {s:?}"
    );
    Ok(s)
}

/// Seeds households `first..first+n` on both servers (not timed, not through the proxies):
/// Kunjung through an admin device's push, the peer by bulk-loading the same content.
fn seed_both(
    admin: &mut Store,
    ks: &KunjungServer,
    peer: &Path,
    ps: &PeerServer,
    work: &Path,
    first: usize,
    n: usize,
) -> Result<cht::Written> {
    let mut total = cht::Written::default();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(2000);
        let docs = seed::generate_parallel(&opts(first + done, k))?;
        let file = work.join(format!("seed-{}.jsonl", first + done));
        let w = cht::write(&file, &docs, false)?;
        total.docs += w.docs;
        total.bytes += w.bytes;
        total.visits += w.visits;
        admin.insert_documents(&docs, false)?;
        run_sync(admin, &ks.url, "admin")?;
        let r = node(peer, &["load", &ps.url(), file.to_str().context("path")?])?;
        ensure!(
            num(&r, "loaded") as u64 == w.docs,
            "peer load: {r} (expected {} docs)",
            w.docs
        );
        done += k;
        eprintln!("bench: servers hold {} households", first + done);
    }
    Ok(total)
}

fn gzip_size(file: &Path) -> Result<u64> {
    let out = Command::new("gzip")
        .arg("-c")
        .arg("-6")
        .arg(file)
        .output()?;
    ensure!(out.status.success(), "gzip failed");
    Ok(out.stdout.len() as u64)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(it) = std::fs::read_dir(dir) else {
        return 0;
    };
    it.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// A row comparing both systems.
pub fn pair(workload: &str, metric: &str, unit: &str, k: f64, p: f64) -> Row {
    Row {
        workload: workload.into(),
        metric: metric.into(),
        unit: unit.into(),
        kunjung: k,
        peer: Some(p),
        ratio: (p != 0.0 && p.is_finite()).then(|| k / p),
    }
}

fn wire_rows(rows: &mut Vec<Row>, w: &str, k: Wire, p: Wire) {
    rows.push(pair(
        w,
        "bytes on the wire (both ways)",
        "bytes",
        k.total() as f64,
        p.total() as f64,
    ));
    rows.push(pair(
        w,
        "bytes up (device → server)",
        "bytes",
        k.up as f64,
        p.up as f64,
    ));
    rows.push(pair(
        w,
        "bytes down (server → device)",
        "bytes",
        k.down as f64,
        p.down as f64,
    ));
    rows.push(pair(
        w,
        "HTTP requests",
        "count",
        k.requests as f64,
        p.requests as f64,
    ));
    rows.push(pair(
        w,
        "TCP connections",
        "count",
        k.connections as f64,
        p.connections as f64,
    ));
}

/// One kader's visits of the day: one per household, to its first member, on `today()`.
fn add_visits(
    store: &mut Store,
    households: &[uuid::Uuid],
    rng: &mut impl Rng,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for h in households {
        let view = store.household_detail(*h)?.view;
        let member = view.members.iter().find(|m| !m.voided).context("member")?;
        let v = NewVisit {
            member_id: member.id,
            date: today(),
            weight_kg: Some((rng.gen_range(40.0..80.0f64) * 10.0).round() / 10.0),
            bp_systolic: Some(rng.gen_range(100..150)),
            bp_diastolic: Some(rng.gen_range(60..95)),
            reported_to_nakes: Some(false),
            ..Default::default()
        };
        let added = store.add_visit(&v)?;
        let view = store.household_detail(*h)?.view;
        let visit = view
            .visits
            .iter()
            .find(|x| x.id == added.id)
            .context("added visit")?;
        out.push(cht::visit_doc(&view.household, visit));
    }
    Ok(out)
}

fn seed_ids(desa: usize, psy: usize, group: usize, n: usize) -> Result<Vec<uuid::Uuid>> {
    (group * n..(group + 1) * n)
        .map(|m| Ok(seed::household(&opts(0, 1), household_index(desa, psy, m))?.id()?))
        .collect()
}

fn write_jsonl(path: &Path, docs: &[Value]) -> Result<()> {
    let mut s = String::new();
    for d in docs {
        s.push_str(&serde_json::to_string(d)?);
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// Pages per table and index of a store (SQLite's `dbstat`), largest first, in MB; FTS5's
/// shadow tables are summed as `search*`.
fn storage_breakdown(c: &kunjung_store::RawConnection) -> Result<String> {
    let mut st = c.prepare(
        "SELECT CASE WHEN name LIKE 'search%' THEN 'search*' ELSE name END AS n, sum(pgsize)
         FROM dbstat GROUP BY n ORDER BY 2 DESC",
    )?;
    let parts = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(parts
        .iter()
        .map(|(n, b)| format!("{n} {:.2}", *b as f64 / 1e6))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Sizes of the settings of a run.
pub struct Sizes {
    pub village: usize,
    pub big: usize,
    pub devices: usize,
}

pub fn run(root: &Path, server_bin: &Path, sizes: &Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let peer = ensure_peer(root)?;
    let work = root.join("target/bench/sync");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let ks = KunjungServer::start(server_bin, &work.join("kunjung-server"))?;
    let ps = PeerServer::start(&peer, &work.join("pouchdb-server"))?;
    let kp = Proxy::start(ks.addr)?;
    let pp = Proxy::start(ps.addr)?;
    let purl = format!("{}/{DB}", pp.url());
    let mut admin = Store::init(&work.join("admin"), None, "admin")?;

    // ---- 1. first sync of a village ----------------------------------------------------
    let seeded = seed_both(&mut admin, &ks, &peer, &ps, &work, 0, sizes.village)?;
    let json_gz = gzip_size(&work.join("seed-0.jsonl"))?;
    let w1 = format!("1. first sync, village of {} households", sizes.village);
    let dev = work.join("device-village");
    let mut s = Store::init(&dev, None, VILLAGE_USER)?;
    kp.take();
    let cpu0 = ks.proc.cpu();
    let t = Instant::now();
    let sum = run_sync(&mut s, &kp.url(), VILLAGE_USER)?;
    let k_secs = t.elapsed().as_secs_f64();
    let k_cpu = ks.proc.cpu() - cpu0;
    let k_wire = kp.take();
    ensure!(
        s.household_count()? as usize == sizes.village,
        "device holds {} households",
        s.household_count()?
    );
    let peer_dev = work.join("peer-device-village");
    pp.take();
    let cpu0 = ps.proc.cpu();
    let r = node(
        &peer,
        &["replicate", &purl, peer_dev.to_str().context("path")?],
    )?;
    let p_cpu = ps.proc.cpu() - cpu0;
    let p_wire = pp.take();
    ensure!(
        num(&r, "local_docs") == num(&r, "remote_docs")
            && num(&r, "local_docs") as u64 == seeded.docs,
        "peer did not replicate the village: {r}"
    );
    rows.push(pair(
        &w1,
        "documents (peer: CHT docs; Kunjung: households)",
        "count",
        sizes.village as f64,
        seeded.docs as f64,
    ));
    rows.push(pair(&w1, "time", "s", k_secs, num(&r, "ms") / 1000.0));
    wire_rows(rows, &w1, k_wire, p_wire);
    rows.push(pair(&w1, "server CPU time", "s", k_cpu, p_cpu));
    rows.push(Row {
        workload: w1.clone(),
        metric: format!(
            "village as CHT JSON (gzip -6: {:.1} MB)",
            json_gz as f64 / 1e6
        ),
        unit: "MB".into(),
        kunjung: f64::NAN,
        peer: Some(seeded.bytes as f64 / 1e6),
        ratio: None,
    });
    eprintln!(
        "bench: first sync: kunjung {k_secs:.2} s {} requests ({} round trips counted by the client); peer {r}",
        k_wire.requests, sum.round_trips
    );

    // ---- 5. device storage -------------------------------------------------------------
    let w5 = format!(
        "5. device storage, village of {} households ({} visits)",
        sizes.village, seeded.visits
    );
    let per_k = |b: f64| b / seeded.visits as f64 * 1000.0;
    s.connection()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    let k_before = dir_size(&dev) as f64;
    eprintln!(
        "bench: device after first sync, by table and index: {}",
        storage_breakdown(s.connection())?
    );
    // Kept for a closer look (`sqlite3 … "SELECT name, sum(pgsize) FROM dbstat …"`).
    std::fs::copy(
        dev.join(kunjung_store::DB_FILE),
        work.join("device-village-first-sync.db"),
    )?;
    s.compact()?;
    // VACUUM in WAL mode writes the new file into the WAL: checkpoint after it.
    s.connection()
        .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
    let k_after = dir_size(&dev) as f64;
    eprintln!(
        "bench: device after compaction, by table and index: {}",
        storage_breakdown(s.connection())?
    );
    drop(s);
    let r = node(&peer, &["compact", peer_dev.to_str().context("path")?])?;
    rows.push(pair(
        &w5,
        "after first sync, per 1,000 visits",
        "bytes",
        per_k(k_before),
        per_k(num(&r, "before")),
    ));
    rows.push(pair(
        &w5,
        "after compaction, per 1,000 visits",
        "bytes",
        per_k(k_after),
        per_k(num(&r, "after")),
    ));
    rows.push(pair(
        &w5,
        "after first sync, whole device",
        "MB",
        k_before / 1e6,
        num(&r, "before") / 1e6,
    ));

    // ---- 2. end of day -----------------------------------------------------------------
    if sizes.big > sizes.village {
        seed_both(
            &mut admin,
            &ks,
            &peer,
            &ps,
            &work,
            sizes.village,
            sizes.big - sizes.village,
        )?;
    }
    let w2 = format!(
        "2. end of day, 30 visits, server with {} households",
        sizes.big
    );
    let kader_dir = work.join("device-kader-0-0");
    let user = kader(0, 0);
    let mut s = Store::init(&kader_dir, None, &user)?;
    run_sync(&mut s, &ks.url, &user)?; // her first sync, earlier
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let day = add_visits(&mut s, &seed_ids(0, 0, 0, 30)?, &mut rng)?;
    kp.take();
    let t = Instant::now();
    let sum = run_sync(&mut s, &kp.url(), &user)?;
    let k_ms = t.elapsed().as_secs_f64() * 1000.0;
    let k_wire = kp.take();
    ensure!(sum.pushed == 30, "pushed {}", sum.pushed);
    let eod = work.join("eod.jsonl");
    write_jsonl(&eod, &day)?;
    node(
        &peer,
        &["mark", &ps.url(), peer_dev.to_str().context("path")?],
    )?;
    pp.take();
    let r = node(
        &peer,
        &[
            "push",
            &purl,
            peer_dev.to_str().context("path")?,
            eod.to_str().context("path")?,
        ],
    )?;
    let p_wire = pp.take();
    ensure!(num(&r, "docs_written") == 30.0, "peer pushed {r}");
    rows.push(pair(
        &w2,
        "time (Kunjung: push + pull check; peer: push)",
        "ms",
        k_ms,
        num(&r, "ms"),
    ));
    wire_rows(rows, &w2, k_wire, p_wire);
    drop(s);

    // ---- 3. many devices at once -------------------------------------------------------
    let w3 = format!(
        "3. {} devices' end of day at once (30 visits each)",
        sizes.devices
    );
    // One synced device per posyandu; each of the n devices is a copy of its posyandu's
    // (with its own device id and login), as kaders of one posyandu hold the same data.
    let mut templates = Vec::new();
    for d in 0..4 {
        for p in 0..2 {
            let dir = work.join(format!("device-kader-{d}-{p}"));
            if !dir.exists() {
                let mut s = Store::init(&dir, None, &kader(d, p))?;
                run_sync(&mut s, &ks.url, &kader(d, p))?;
            }
            Store::open(&dir, None)?
                .connection()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            templates.push(dir);
        }
    }
    let mut stores = Vec::new();
    let mut peer_docs = Vec::new();
    for i in 0..sizes.devices {
        let (d, p) = ((i % 8) / 2, i % 2);
        let dir = work.join(format!("many/device-{i}"));
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&templates[i % 8])? {
            let e = e?;
            std::fs::copy(e.path(), dir.join(e.file_name()))?;
        }
        {
            let c = kunjung_store::RawConnection::open(dir.join(kunjung_store::DB_FILE))?;
            c.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'device'",
                [uuid::Uuid::new_v4().simple().to_string()],
            )?;
            c.execute("UPDATE meta SET value = '' WHERE key = 'sync.token'", [])?;
        }
        let user = kader(d, p);
        let mut s = Store::open(&dir, None)?;
        run_sync(&mut s, &ks.url, &user)?; // login and catch up, earlier in the day
        let docs = add_visits(&mut s, &seed_ids(d, p, i / 8 + 1, 30)?, &mut rng)?;
        let mut earlier = docs[0].clone();
        earlier["_id"] =
            Value::String(format!("{}-earlier", docs[0]["_id"].as_str().unwrap_or("")));
        let posyandu = DEMO_AREA[d].posyandu[p];
        for doc in std::iter::once(earlier).chain(docs) {
            peer_docs.push(serde_json::json!({ "device": i, "posyandu": posyandu, "doc": doc }));
        }
        stores.push((s, user));
    }
    let many = work.join("many.jsonl");
    write_jsonl(&many, &peer_docs)?;
    kp.take();
    let barrier = Arc::new(Barrier::new(stores.len() + 1));
    let mut k_devices_cpu = f64::NAN;
    let url = kp.url();
    let k_pulled = AtomicU64::new(0);
    let (k_total, mut k_times, k_cpu) = std::thread::scope(|sc| -> Result<(f64, Vec<f64>, f64)> {
        let handles: Vec<_> = stores
            .iter_mut()
            .map(|(s, user)| {
                let (b, url, k_pulled) = (barrier.clone(), url.clone(), &k_pulled);
                sc.spawn(move || -> Result<f64> {
                    b.wait();
                    let t = Instant::now();
                    let sum = run_sync(s, &url, user)?;
                    ensure!(sum.pushed == 30, "pushed {}", sum.pushed);
                    k_pulled.fetch_add(sum.pulled as u64, Ordering::Relaxed);
                    Ok(t.elapsed().as_secs_f64() * 1000.0)
                })
            })
            .collect();
        let cpu0 = ks.proc.cpu();
        let own0 = cpu_of("self");
        barrier.wait();
        let t = Instant::now();
        let mut times = Vec::new();
        for h in handles {
            times.push(
                h.join()
                    .map_err(|_| anyhow::anyhow!("device thread panicked"))??,
            );
        }
        k_devices_cpu = cpu_of("self") - own0;
        Ok((t.elapsed().as_secs_f64(), times, ks.proc.cpu() - cpu0))
    })?;
    let k_wire = kp.take();
    k_times.sort_by(f64::total_cmp);
    // The peer: as many PouchDB devices in one Node process, each pushing the same visits
    // and pulling its posyandu's new reports, as the Kunjung devices do.
    let mut child = Command::new("node")
        .arg(peer.join("peer.js"))
        .args([
            "many",
            &purl,
            work.join("peer-many").to_str().context("path")?,
        ])
        .arg(&many)
        .arg(sizes.devices.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = lines.next().context("peer many: no answer")??;
    ensure!(ready.contains("ready"), "peer many: {ready}");
    pp.take();
    let cpu0 = ps.proc.cpu();
    let child_pid = child.id().to_string();
    let dev0 = cpu_of(&child_pid);
    writeln!(stdin, "go")?;
    let answer = lines.next().context("peer many: no result")??;
    let p_cpu = ps.proc.cpu() - cpu0;
    let p_devices_cpu = cpu_of(&child_pid) - dev0;
    let p_wire = pp.take();
    drop(stdin);
    ensure!(child.wait()?.success(), "peer many failed");
    let r: Value = serde_json::from_str(&answer)?;
    ensure!(
        num(&r, "docs") as usize == 30 * sizes.devices,
        "peer many: {r}"
    );
    let n = sizes.devices as f64;
    let p_total = num(&r, "total_ms") / 1000.0;
    rows.push(pair(&w3, "total time", "s", k_total, p_total));
    rows.push(pair(
        &w3,
        "server throughput",
        "syncs/s",
        n / k_total,
        n / p_total,
    ));
    rows.push(pair(
        &w3,
        "received by the devices (Kunjung: changes; peer: documents)",
        "count",
        k_pulled.into_inner() as f64,
        num(&r, "pulled"),
    ));
    rows.push(pair(&w3, "server CPU time", "s", k_cpu, p_cpu));
    rows.push(pair(
        &w3,
        "server CPU per sync",
        "ms",
        k_cpu / n * 1000.0,
        p_cpu / n * 1000.0,
    ));
    rows.push(pair(
        &w3,
        "devices' CPU time (all clients, one process)",
        "s",
        k_devices_cpu,
        p_devices_cpu,
    ));
    rows.push(pair(
        &w3,
        "per-device sync time (p50)",
        "ms",
        super::pct(&k_times, 0.5),
        num(&r, "p50_ms"),
    ));
    rows.push(pair(
        &w3,
        "per-device sync time (p99)",
        "ms",
        super::pct(&k_times, 0.99),
        num(&r, "p99_ms"),
    ));
    wire_rows(rows, &w3, k_wire, p_wire);
    Ok(())
}

/// The peer half of workload 4: the same households as CHT documents in a local PouchDB,
/// the same searches and visits. Returns peer.js's answer.
pub fn peer_local(
    root: &Path,
    households: usize,
    searches: &[String],
    visits: &[Value],
) -> Result<Value> {
    let peer = ensure_peer(root)?;
    let out = root.join("target/bench");
    let dir = out.join(format!("peer-local-{households}"));
    let marker = out.join(format!("peer-local-{households}.ok"));
    if !marker.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let t = Instant::now();
        let mut done = 0;
        while done < households {
            let n = (households - done).min(2000);
            let docs = seed::generate_parallel(&super::local_seed(done, n))?;
            let file = out.join("peer-local-chunk.jsonl");
            cht::write(&file, &docs, false)?;
            node(
                &peer,
                &[
                    "fill",
                    dir.to_str().context("path")?,
                    file.to_str().context("path")?,
                ],
            )?;
            done += n;
            eprintln!(
                "bench: peer local store {done}/{households} households ({:.0} s)",
                t.elapsed().as_secs_f64()
            );
        }
        std::fs::write(&marker, b"")?;
    }
    let q = out.join("peer-local-queries.json");
    std::fs::write(
        &q,
        serde_json::to_vec(&serde_json::json!({ "searches": searches, "visits": visits }))?,
    )?;
    node(
        &peer,
        &[
            "local",
            dir.to_str().context("path")?,
            q.to_str().context("path")?,
        ],
    )
}

/// The short check inside `cargo xtask test`: a small village on both systems, through the
/// counting proxies; asserts that the peer really replicated (both sides hold the same
/// number of documents) and that Kunjung's device holds the server's households.
pub fn check(root: &Path, server_bin: &Path) -> Result<()> {
    let t = Instant::now();
    let peer = ensure_peer(root)?;
    let work = tempfile::tempdir()?;
    let ks = KunjungServer::start(server_bin, &work.path().join("kunjung-server"))?;
    let ps = PeerServer::start(&peer, &work.path().join("pouchdb-server"))?;
    let kp = Proxy::start(ks.addr)?;
    let pp = Proxy::start(ps.addr)?;
    let mut admin = Store::init(&work.path().join("admin"), None, "admin")?;
    let seeded = seed_both(&mut admin, &ks, &peer, &ps, work.path(), 0, 20)?;
    let mut dev = Store::init(&work.path().join("device"), None, VILLAGE_USER)?;
    run_sync(&mut dev, &kp.url(), VILLAGE_USER)?;
    let kw = kp.take();
    let mut on_device: Vec<String> = dev.household_ids()?.iter().map(|u| u.to_string()).collect();
    on_device.sort();
    let on_server = ks.household_ids()?;
    ensure!(
        on_server.len() == 20,
        "server holds {} households",
        on_server.len()
    );
    ensure!(
        on_device == on_server,
        "device households differ from the server's"
    );
    ensure!(kw.requests >= 1 && kw.down > 0, "proxy saw nothing: {kw:?}");
    let pdev = work.path().join("peer-device");
    let r = node(
        &peer,
        &[
            "replicate",
            &format!("{}/{DB}", pp.url()),
            pdev.to_str().context("path")?,
        ],
    )?;
    let pw = pp.take();
    ensure!(
        num(&r, "local_docs") == num(&r, "remote_docs")
            && num(&r, "local_docs") as u64 == seeded.docs,
        "peer did not replicate: {r} (seeded {} docs)",
        seeded.docs
    );
    let counted = node(&peer, &["count", pdev.to_str().context("path")?])?;
    ensure!(
        num(&counted, "doc_count") as u64 == seeded.docs,
        "peer device: {counted}"
    );
    ensure!(pw.requests > 2 && pw.down > 0, "proxy saw nothing: {pw:?}");
    eprintln!(
        "xtask: bench check ok in {:.0} s: 20 households; Kunjung device = server ({} requests, {} B); peer {} docs on both sides ({} requests, {} B)",
        t.elapsed().as_secs_f64(),
        kw.requests,
        kw.total(),
        seeded.docs,
        pw.requests,
        pw.total()
    );
    Ok(())
}
