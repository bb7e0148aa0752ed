//! `cargo xtask load`: many simulated devices on loopback syncing concurrently, for a
//! bounded time, against a real `kunjung-server` process (release build) on SQLite and on
//! PostgreSQL (a throwaway one from [`crate::pg`]).
//!
//! Each device is a sync client speaking the protocol over HTTP (its own Automerge actor,
//! token, cursor, unsynced queue): kader devices, four per posyandu, each holding its
//! posyandu's households. Before the clock starts every device prepares its end-of-day
//! batches (30 new visits over 10 households, the `#4` workload), so the load generator
//! spends its CPU on HTTP, not on Automerge. During the run each device syncs on its own
//! schedule (open loop: `--rate` syncs per second in all, spread evenly over devices with
//! random phases): push the batch plus anything not yet acknowledged, pull until done.
//! A sync's latency is the time of all its requests.
//!
//! Afterwards every device syncs once more and the run is verified: a new device with the
//! real client engine (`kunjung_client::sync`, a real store) pulls the whole server as
//! admin; every acknowledged change must be in it, the server must hold each change once
//! (its sequence equals the distinct changes), and every device's households (what it
//! started with, pushed and received) must have the same heads as the server's.
//!
//! Figures: throughput, p50/p99/max latency, errors, the server's CPU time (and
//! PostgreSQL's) from `/proc`, bytes. `cargo xtask load first-sync` measures a new
//! device's first sync of a 2,000-household village with the real engine instead.
//!
//! The short version ([`tests`]) runs in `cargo test`: a few devices for two seconds, no
//! errors and nothing lost (no timing assertions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use automerge::{Automerge, ChangeHash};
use chrono::NaiveDate;
use kunjung_client::seed::{generate_parallel, SeedOptions};
use kunjung_core::checklist::AnswerValue;
use kunjung_core::doc::CommitMeta;
use kunjung_core::{FieldEdit, HouseholdDoc, NewVisit};
use kunjung_protocol::{
    ack_digest, ByteBuf, Cursor, HouseholdChanges, LoginRequest, LoginResponse, SyncRequest,
    SyncResponse, CONTENT_TYPE_CBOR, ENCODING_ZSTD, PROTOCOL_VERSION, VERSION_HEADER,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PASSWORD: &str = "kata-sandi-beban";
/// The scrape token the load servers accept on `/metrics` (`KUNJUNG_METRICS_TOKEN`).
const METRICS_TOKEN: &str = "token-metrik-beban-0123456789";
const TODAY: &str = "2026-11-01";

/// One load run.
#[derive(Debug, Clone)]
pub struct Config {
    pub devices: usize,
    /// Devices (kader) per posyandu; they share its households.
    pub per_posyandu: usize,
    /// Households per posyandu.
    pub households: usize,
    /// Average visits of each seeded household's history.
    pub history_visits: usize,
    /// New visits per end-of-day sync, over `households_per_sync` households.
    pub visits_per_sync: usize,
    pub households_per_sync: usize,
    /// Syncs per second offered by all devices together.
    pub rate: f64,
    pub seconds: f64,
    pub seed: u64,
    /// Print progress on stderr.
    pub verbose: bool,
}

impl Config {
    pub fn full() -> Config {
        Config {
            devices: 200,
            per_posyandu: 4,
            households: 40,
            history_visits: 20,
            visits_per_sync: 30,
            households_per_sync: 10,
            rate: 500.0,
            seconds: 20.0,
            seed: 7,
            verbose: true,
        }
    }

    fn posyandu(&self) -> usize {
        self.devices.div_ceil(self.per_posyandu)
    }
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub backend: String,
    pub devices: usize,
    pub households: usize,
    pub offered_rate: f64,
    pub seconds: f64,
    pub syncs: u64,
    pub throughput: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub changes_acked: u64,
    pub server_cpu_s: f64,
    pub db_cpu_s: f64,
    pub server_cpu_ms_per_sync: f64,
    /// CPU of this load generator per sync (it shares the machine's cores).
    pub generator_cpu_ms_per_sync: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub server_rss_mb: f64,
    pub lost: usize,
    pub duplicated: i64,
    pub diverged: usize,
}

/// Resident memory of a process in MB.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A `kunjung-server` process.
pub struct Server {
    bin: PathBuf,
    db: String,
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(bin: &Path, db: &str, env: &[(&str, &str)]) -> Result<Server> {
        let mut child = Command::new(bin)
            .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
            // `KUNJUNG_LOAD_SERVER_LOG=debug` shows the server's sync phases and log restarts.
            .env(
                "RUST_LOG",
                std::env::var("KUNJUNG_LOAD_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("KUNJUNG_METRICS_TOKEN", METRICS_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("unexpected server output: {line:?}");
        };
        Ok(Server {
            bin: bin.to_path_buf(),
            db: db.to_string(),
            url: addr.to_string(),
            child,
        })
    }

    pub fn admin(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(&self.bin)
            .args(["--db", &self.db])
            .args(args)
            .env("KUNJUNG_PASSWORD", PASSWORD)
            .output()?;
        ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metric(&self, name: &str) -> Result<i64> {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", self.url))
            .bearer_auth(METRICS_TOKEN)
            .send()?;
        let status = r.status();
        let text = r.text()?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| {
                let head: String = text.chars().take(300).collect();
                format!("metric {name}: HTTP {status}: {head}")
            })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds of a process (and its reaped children) from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12, 13, 14]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// CPU seconds of a process tree rooted at `pid` (PostgreSQL's postmaster and backends).
fn tree_cpu_seconds(root: u32) -> f64 {
    let mut total = cpu_seconds(root);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let ppid = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok());
            if ppid == Some(root) {
                total += cpu_seconds(pid);
            }
        }
    }
    total
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CBOR + zstd at a fast level: the server's work to decode it is the same as for the
/// app's level-19 bodies, and the generator's CPU stays off the server's two cores.
fn encode_fast<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>> {
    Ok(kunjung_protocol::encode_level(msg, 1)?)
}

/// An acknowledged change: its household and bytes.
type Acked = (uuid::Uuid, Vec<u8>);

/// A simulated device.
struct Device {
    user: String,
    token: String,
    cursor: Option<Cursor>,
    /// End-of-day batches prepared before the run.
    batches: Vec<Vec<HouseholdChanges>>,
    next: usize,
    /// Pushed but not yet acknowledged.
    unacked: Vec<HouseholdChanges>,
    /// Hashes of the prepared changes by their bytes, so a sync's receipt is checked
    /// without parsing its changes again (the generator shares the server's cores).
    hash_of: HashMap<Vec<u8>, Vec<u8>>,
    /// Acknowledged changes by hash: household and bytes.
    acked: HashMap<Vec<u8>, Acked>,
    /// Snapshots and changes received, per household, in order.
    received: BTreeMap<uuid::Uuid, Vec<Vec<u8>>>,
    latencies: Vec<f64>,
    /// When each sync started (seconds after the clock started), beside `latencies`.
    started: Vec<f64>,
    errors: Vec<String>,
    /// Its own connection to the server (made on first use).
    conn: Option<Conn>,
    requests: u64,
    sent: u64,
    got: u64,
}

struct Net {
    client: reqwest::blocking::Client,
    url: String,
}

/// One device's HTTP/1.1 keep-alive connection, written and read on the device's own
/// thread. reqwest's blocking client hands every request to one runtime thread shared by
/// all devices: two more thread switches per request (~12 % of the generator's samples),
/// and one thread on the path of every device's sync, on the two cores the server is
/// measured on. Sync requests are idempotent, so a request on a kept connection that
/// fails is sent once more on a new one (as reqwest does for a connection the server
/// closed).
struct Conn {
    /// `host:port`.
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(url: &str) -> Result<Conn> {
        let addr = url
            .strip_prefix("http://")
            .context("load runs over plain http")?
            .trim_end_matches('/')
            .to_string();
        Ok(Conn {
            addr,
            stream: None,
            buf: Vec::new(),
        })
    }

    /// POSTs `body` to `path`; the status and the response body.
    fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        self.buf.clear();
        write!(
            self.buf,
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        )?;
        for (k, v) in headers {
            write!(self.buf, "{k}: {v}\r\n")?;
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(body);
        loop {
            let kept = self.stream.is_some();
            if !kept {
                let s = TcpStream::connect(&self.addr)
                    .with_context(|| format!("connect {}", self.addr))?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                self.stream = Some(BufReader::with_capacity(64 << 10, s));
            }
            let Some(s) = self.stream.as_mut() else {
                bail!("no connection");
            };
            match exchange(s, &self.buf) {
                Ok((status, b, keep)) => {
                    if !keep {
                        self.stream = None;
                    }
                    return Ok((status, b));
                }
                Err(e) => {
                    self.stream = None;
                    if !kept {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Writes one request and reads its response: status, body, whether the connection
/// stays open. Bodies come with a length or chunked.
fn exchange(s: &mut BufReader<TcpStream>, request: &[u8]) -> Result<(u16, Vec<u8>, bool)> {
    s.get_mut().write_all(request)?;
    let mut line = String::new();
    ensure!(s.read_line(&mut line)? > 0, "connection closed");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut len, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        ensure!(
            s.read_line(&mut line)? > 0,
            "connection closed in the headers"
        );
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = Some(v.parse::<usize>()?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                keep = !v.eq_ignore_ascii_case("close");
            }
        }
    }
    let mut b = Vec::new();
    if chunked {
        loop {
            line.clear();
            s.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or_default();
            let n = usize::from_str_radix(size, 16).with_context(|| format!("chunk {line:?}"))?;
            if n == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if s.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = b.len();
            b.resize(at + n, 0);
            s.read_exact(&mut b[at..])?;
            line.clear();
            s.read_line(&mut line)?;
        }
    } else {
        b.resize(len.context("a response without a length")?, 0);
        s.read_exact(&mut b)?;
    }
    Ok((status, b, keep))
}

impl Net {
    fn new(url: &str) -> Result<Net> {
        Ok(Net {
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(1024)
                .build()?,
            url: url.to_string(),
        })
    }

    fn login(&self, user: &str, device_id: &str) -> Result<String> {
        let r = self
            .client
            .post(format!("{}/v1/login", self.url))
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string())
            .json(&LoginRequest {
                username: user.into(),
                password: PASSWORD.into(),
                device_id: device_id.into(),
            })
            .send()?;
        ensure!(r.status().is_success(), "login {user}: {}", r.status());
        Ok(r.json::<LoginResponse>()?.token)
    }
}

impl Device {
    /// One request: push `changes`, pull one page.
    fn request(&mut self, net: &Net, changes: Vec<HouseholdChanges>) -> Result<SyncResponse> {
        let req = SyncRequest {
            cursor: self.cursor.clone(),
            changes,
            page_size: None,
        };
        let body = encode_fast(&req)?;
        self.requests += 1;
        self.sent += body.len() as u64;
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Conn::new(&net.url)?),
        };
        let version = PROTOCOL_VERSION.to_string();
        let bearer = format!("Bearer {}", self.token);
        let (status, b) = conn.post(
            "/v1/sync",
            &[
                (VERSION_HEADER, version.as_str()),
                ("content-type", CONTENT_TYPE_CBOR),
                ("content-encoding", ENCODING_ZSTD),
                ("authorization", bearer.as_str()),
            ],
            &body,
        )?;
        self.got += b.len() as u64;
        ensure!(
            (200..300).contains(&status),
            "HTTP {status}: {}",
            String::from_utf8_lossy(&b)
        );
        let mut resp: SyncResponse = kunjung_protocol::decode(&b)?;
        // The receipt must cover exactly what was pushed.
        let pushed: Vec<(Vec<u8>, Acked)> = req
            .changes
            .iter()
            .flat_map(|g| g.changes.iter().map(|c| (g.household_id, c)))
            .map(|(h, c)| {
                let hash = match self.hash_of.get(c.as_slice()) {
                    Some(x) => x.clone(),
                    None => change_hash(c),
                };
                (hash, (h, c.to_vec()))
            })
            .collect();
        ensure!(
            resp.rejected.is_empty(),
            "rejected: {} {}",
            resp.rejected[0].code,
            resp.rejected[0].message
        );
        let digest = ack_digest(pushed.iter().map(|(h, _)| h.as_slice()));
        ensure!(
            resp.acked as usize == pushed.len() && resp.acked_digest.as_slice() == digest,
            "receipt does not match the push ({} of {})",
            resp.acked,
            pushed.len()
        );
        for (h, c) in pushed {
            self.acked.insert(h, c);
        }
        for s in std::mem::take(&mut resp.snapshots) {
            self.received
                .entry(s.household_id)
                .or_default()
                .push(s.bytes.into_vec());
        }
        for g in std::mem::take(&mut resp.changes) {
            let e = self.received.entry(g.household_id).or_default();
            e.extend(g.changes.into_iter().map(ByteBuf::into_vec));
        }
        self.cursor = Some(resp.next_cursor.clone());
        Ok(resp)
    }

    /// A whole sync: push everything unacknowledged (plus `batch`), pull until done.
    fn sync(&mut self, net: &Net, batch: Option<Vec<HouseholdChanges>>) -> Result<()> {
        if let Some(b) = batch {
            self.unacked.extend(b);
        }
        let push = std::mem::take(&mut self.unacked);
        match self.request(net, push.clone()) {
            Ok(mut resp) => {
                while resp.more {
                    resp = self.request(net, Vec::new())?;
                }
                Ok(())
            }
            Err(e) => {
                self.unacked = push;
                Err(e)
            }
        }
    }
}

fn change_hash(bytes: &[u8]) -> Vec<u8> {
    kunjung_core::doc::parse_change(bytes)
        .map(|c| c.hash().0.to_vec())
        .unwrap_or_default()
}

/// The seeded households of each posyandu (saved documents), created by the posyandu's
/// first device.
fn seed_households(cfg: &Config) -> Result<Vec<Vec<HouseholdDoc>>> {
    let today: NaiveDate = TODAY.parse()?;
    let n = cfg.posyandu() * cfg.households;
    let docs = generate_parallel(&SeedOptions {
        households: n,
        seed: cfg.seed,
        today,
        visits_per_household: cfg.history_visits,
        first: 0,
    })?;
    let mut out: Vec<Vec<HouseholdDoc>> = (0..cfg.posyandu()).map(|_| Vec::new()).collect();
    for (i, mut d) in docs.into_iter().enumerate() {
        let p = i % cfg.posyandu();
        d.edit(
            &[FieldEdit {
                path: "household/posyandu_id".into(),
                value: Some(AnswerValue::Text(posyandu_id(p))),
            }],
            &CommitMeta {
                user: kader(p),
                time_ms: 1_700_000_000_000,
            },
            "beban: posyandu",
        )?;
        out[p].push(d);
    }
    Ok(out)
}

fn posyandu_id(p: usize) -> String {
    format!("load-psy-{p:03}")
}

fn kader(p: usize) -> String {
    format!("load-k{p:03}")
}

/// End-of-day batches for one device, made on its own copy of its posyandu's households.
fn prepare_batches(
    cfg: &Config,
    base: &[Vec<u8>],
    actor: &automerge::ActorId,
    user: &str,
    count: usize,
    rng: &mut ChaCha8Rng,
    hash_of: &mut HashMap<Vec<u8>, Vec<u8>>,
) -> Result<Vec<Vec<HouseholdChanges>>> {
    let mut docs: Vec<HouseholdDoc> = base
        .iter()
        .map(|b| {
            let mut d = HouseholdDoc::load(b)?;
            d.set_actor(actor.clone());
            Ok(d)
        })
        .collect::<Result<_>>()?;
    let ids: Vec<uuid::Uuid> = docs.iter().map(|d| d.id()).collect::<Result<_, _>>()?;
    let mut members: Vec<Vec<uuid::Uuid>> = Vec::new();
    for d in &docs {
        let v = d.read()?;
        members.push(
            v.members
                .iter()
                .filter(|m| !m.voided && m.death_date.is_none() && m.moved_out_date.is_none())
                .map(|m| m.id)
                .collect(),
        );
    }
    let date: NaiveDate = TODAY.parse()?;
    let per_household = cfg.visits_per_sync.div_ceil(cfg.households_per_sync).max(1);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut batch: Vec<HouseholdChanges> = Vec::new();
        let mut left = cfg.visits_per_sync;
        let mut tries = 0;
        while left > 0 && tries < 1000 {
            tries += 1;
            let h = rng.gen_range(0..docs.len());
            if members[h].is_empty() || batch.iter().any(|g| g.household_id == ids[h]) {
                continue;
            }
            let mut changes = Vec::new();
            for _ in 0..per_household.min(left) {
                let m = members[h][rng.gen_range(0..members[h].len())];
                let w = docs[h].add_visit(
                    &NewVisit {
                        member_id: m,
                        date,
                        weight_kg: Some(rng.gen_range(8.0..80.0)),
                        notes: Some("kunjungan rumah (beban)".into()),
                        ..NewVisit::default()
                    },
                    &CommitMeta {
                        user: user.into(),
                        time_ms: 1_800_000_000_000,
                    },
                );
                // A member the rules refuse (e.g. not visitable now) is skipped.
                if let Ok(w) = w {
                    if let Some(c) = w.change {
                        hash_of.insert(c.raw_bytes().to_vec(), c.hash().0.to_vec());
                        changes.push(ByteBuf::from(c.raw_bytes().to_vec()));
                        left -= 1;
                    }
                }
            }
            if !changes.is_empty() {
                batch.push(HouseholdChanges {
                    household_id: ids[h],
                    changes,
                });
            }
        }
        out.push(batch);
    }
    Ok(out)
}

/// Runs the load against a started server on `db` and verifies the result.
pub fn run_on(
    cfg: &Config,
    server_bin: &Path,
    db: &str,
    db_root_pid: Option<u32>,
) -> Result<Report> {
    let backend = if db.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let log = |m: String| {
        if cfg.verbose {
            eprintln!("load[{backend}]: {m}");
        }
    };
    let server = Server::start(server_bin, db, &[])?;
    let posyandu = cfg.posyandu();
    let t = Instant::now();
    for p in 0..posyandu {
        server.admin(&[
            "user",
            "add",
            "--username",
            &kader(p),
            "--role",
            "kader",
            "--posyandu",
            &posyandu_id(p),
        ])?;
    }
    server.admin(&["user", "add", "--username", "load-admin", "--role", "admin"])?;
    log(format!(
        "{posyandu} accounts ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));

    let t = Instant::now();
    let households = seed_households(cfg)?;
    let seeded_changes: usize = households
        .iter()
        .flatten()
        .map(|d| d.changes_since(&[]).len())
        .sum();
    log(format!(
        "seeded {} households, {seeded_changes} changes ({:.1} s)",
        posyandu * cfg.households,
        t.elapsed().as_secs_f64()
    ));

    // Devices: log in, the first of each posyandu pushes its households, the rest pull.
    let net = Net::new(&server.url)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut devices: Vec<Device> = Vec::new();
    let mut actors = Vec::new();
    for i in 0..cfg.devices {
        let p = i / cfg.per_posyandu;
        let actor = automerge::ActorId::from(rng.gen::<[u8; 16]>().to_vec());
        let device_id = actor.to_hex_string();
        let user = kader(p);
        let token = net.login(&user, &device_id)?;
        actors.push(actor);
        devices.push(Device {
            user,
            token,
            cursor: None,
            batches: Vec::new(),
            next: 0,
            unacked: Vec::new(),
            hash_of: HashMap::new(),
            acked: HashMap::new(),
            received: BTreeMap::new(),
            latencies: Vec::new(),
            started: Vec::new(),
            errors: Vec::new(),
            conn: None,
            requests: 0,
            sent: 0,
            got: 0,
        });
    }
    let t = Instant::now();
    let base: Vec<Vec<Vec<u8>>> = households
        .iter()
        .map(|hs| hs.iter().map(|d| d.automerge().save_nocompress()).collect())
        .collect();
    for (i, d) in devices.iter_mut().enumerate() {
        let p = i / cfg.per_posyandu;
        if i % cfg.per_posyandu == 0 {
            for chunk in households[p].chunks(10) {
                let groups = chunk
                    .iter()
                    .map(|h| {
                        Ok(HouseholdChanges {
                            household_id: h.id()?,
                            changes: h
                                .changes_since(&[])
                                .iter()
                                .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                                .collect(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                d.sync(&net, Some(groups))?;
            }
            // What it pushed is its own starting state, not a later push.
            d.acked.clear();
        }
    }
    for (i, d) in devices.iter_mut().enumerate() {
        if i % cfg.per_posyandu != 0 {
            d.sync(&net, None)?;
        }
        // The first sync is setup, not load.
        d.received.clear();
        d.requests = 0;
        d.sent = 0;
        d.got = 0;
    }
    log(format!(
        "households pushed and first syncs done ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));

    // Batches, made in parallel before the clock starts.
    let t = Instant::now();
    let period = cfg.devices as f64 / cfg.rate;
    let per_device = (cfg.seconds / period).ceil() as usize + 2;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let work: Vec<(usize, &mut Device)> = devices.iter_mut().enumerate().collect();
    let chunks: Vec<Vec<(usize, &mut Device)>> = {
        let mut v: Vec<Vec<(usize, &mut Device)>> = (0..threads).map(|_| Vec::new()).collect();
        for (k, w) in work.into_iter().enumerate() {
            v[k % threads].push(w);
        }
        v
    };
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let base = &base;
                let actors = &actors;
                s.spawn(move || -> Result<()> {
                    for (i, d) in chunk {
                        let p = i / cfg.per_posyandu;
                        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (i as u64) << 8);
                        d.batches = prepare_batches(
                            cfg,
                            &base[p],
                            &actors[i],
                            &d.user,
                            per_device,
                            &mut rng,
                            &mut d.hash_of,
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("batch thread panicked"))??;
        }
        Ok(())
    })?;
    log(format!(
        "{} batches of {} visits prepared ({:.1} s); running {} devices at {} syncs/s for {} s",
        per_device * cfg.devices,
        cfg.visits_per_sync,
        t.elapsed().as_secs_f64(),
        cfg.devices,
        cfg.rate,
        cfg.seconds
    ));

    // The run.
    let batches0 = server.metric("kunjung_write_batches_total").unwrap_or(0);
    let cpu0 = cpu_seconds(server.pid());
    let gen0 = cpu_seconds(std::process::id());
    let db0 = db_root_pid.map(tree_cpu_seconds).unwrap_or(0.0);
    let start = Instant::now() + Duration::from_millis(200);
    let start_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        + 0.2;
    let deadline = start + Duration::from_secs_f64(cfg.seconds);
    let syncs = AtomicU64::new(0);
    let net = &net;
    std::thread::scope(|s| {
        for (i, d) in devices.iter_mut().enumerate() {
            let syncs = &syncs;
            let phase = period * ((i as f64 * 0.618_033_988_7) % 1.0);
            s.spawn(move || {
                let mut at = start + Duration::from_secs_f64(phase);
                while at < deadline && d.next < d.batches.len() {
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    let batch = std::mem::take(&mut d.batches[d.next]);
                    d.next += 1;
                    let t = Instant::now();
                    match d.sync(net, Some(batch)) {
                        Ok(()) => {
                            d.latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                            d.started.push(t.duration_since(start).as_secs_f64());
                            syncs.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => d.errors.push(format!("{e:#}")),
                    }
                    at += Duration::from_secs_f64(period);
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(server.pid()) - cpu0;
    let gen_cpu = cpu_seconds(std::process::id()) - gen0;
    let db_cpu = db_root_pid.map(tree_cpu_seconds).unwrap_or(0.0) - db0;
    let syncs = syncs.load(Ordering::Relaxed);
    let server_rss = rss_mb(server.pid());
    let batches = server.metric("kunjung_write_batches_total").unwrap_or(0) - batches0;
    log(format!(
        "{syncs} syncs in {elapsed:.1} s ({batches} write transactions, {:.1} syncs each); final syncs and checks",
        syncs as f64 / batches.max(1) as f64
    ));

    // Final syncs: everything pushed, everything pulled.
    for d in devices.iter_mut() {
        let mut last = None;
        for _ in 0..5 {
            match d.sync(net, None) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(format!("{e:#}")),
            }
        }
        if let Some(e) = last {
            d.errors.push(format!("final sync: {e}"));
        }
    }

    // The server's contents, through the real client engine into a real store.
    let t = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut store = kunjung_store::Store::init(dir.path(), None, "load-admin")?;
    let opts =
        kunjung_client::sync::SyncOptions::new(&server.url, "load-admin", Some(PASSWORD.into()));
    let summary = kunjung_client::sync::sync(&mut store, &opts, &mut |_| {})?;
    ensure!(summary.verified, "admin device not verified");
    let mut server_heads: BTreeMap<uuid::Uuid, Vec<ChangeHash>> = BTreeMap::new();
    let mut on_server: std::collections::HashSet<Vec<u8>> = Default::default();
    for id in store.household_ids()? {
        let d = store.doc(id)?;
        let mut h = d.heads();
        h.sort();
        server_heads.insert(id, h);
        on_server.extend(
            d.changes_since(&[])
                .into_iter()
                .map(|c| c.hash().0.to_vec()),
        );
    }
    let mut lost = 0usize;
    let mut distinct: BTreeSet<Vec<u8>> = BTreeSet::new();
    for d in &devices {
        for h in d.acked.keys() {
            distinct.insert(h.clone());
        }
    }
    for h in &distinct {
        if !on_server.contains(h) {
            lost += 1;
        }
    }
    let seq = server.metric("kunjung_change_sequence")?;
    let duplicated = seq - (seeded_changes + distinct.len()) as i64;

    // Every device's copy: its start, what it pushed, what it received.
    let mut diverged = 0usize;
    for (i, d) in devices.iter().enumerate() {
        let p = i / cfg.per_posyandu;
        for (k, b) in base[p].iter().enumerate() {
            let mut am = Automerge::load(b)?;
            let id = households[p][k].id()?;
            for (h, c) in d.acked.values() {
                if *h == id {
                    am.load_incremental(c)?;
                }
            }
            if let Some(r) = d.received.get(&id) {
                for c in r {
                    am.load_incremental(c)?;
                }
            }
            let mut h = am.get_heads();
            h.sort();
            if server_heads.get(&id) != Some(&h) {
                diverged += 1;
            }
        }
        for id in d.received.keys() {
            if !households[p].iter().any(|h| h.id().ok() == Some(*id)) {
                diverged += 1;
                eprintln!("load: device {i} received household {id} outside its posyandu");
            }
        }
    }
    log(format!("verified ({:.1} s)", t.elapsed().as_secs_f64()));

    // Every sync's start and latency, to tell stalls (slow syncs bunched in time) from
    // saturation (slow syncs everywhere).
    let mut trace =
        format!("# clock started at unix time {start_epoch:.3}\ndevice,started_s,latency_ms\n");
    for (i, d) in devices.iter().enumerate() {
        for (s, l) in d.started.iter().zip(&d.latencies) {
            trace.push_str(&format!("{i},{s:.4},{l:.2}\n"));
        }
    }
    let trace_path = crate::sh::root().join(format!("target/load/latencies-{backend}.csv"));
    std::fs::create_dir_all(trace_path.parent().expect("target/load"))?;
    std::fs::write(&trace_path, trace)?;
    log(format!("latencies in {}", trace_path.display()));
    let mut lat: Vec<f64> = devices
        .iter()
        .flat_map(|d| d.latencies.iter().copied())
        .collect();
    lat.sort_by(f64::total_cmp);
    let errors: Vec<String> = devices
        .iter()
        .flat_map(|d| d.errors.iter().cloned())
        .collect();
    Ok(Report {
        backend: backend.into(),
        devices: cfg.devices,
        households: posyandu * cfg.households,
        offered_rate: cfg.rate,
        seconds: elapsed,
        syncs,
        throughput: syncs as f64 / elapsed,
        requests: devices.iter().map(|d| d.requests).sum(),
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        errors: errors.len() as u64,
        first_errors: errors.into_iter().take(5).collect(),
        changes_acked: distinct.len() as u64,
        server_cpu_s: server_cpu,
        db_cpu_s: db_cpu,
        server_cpu_ms_per_sync: if syncs > 0 {
            (server_cpu + db_cpu) * 1000.0 / syncs as f64
        } else {
            0.0
        },
        generator_cpu_ms_per_sync: if syncs > 0 {
            gen_cpu * 1000.0 / syncs as f64
        } else {
            0.0
        },
        bytes_sent: devices.iter().map(|d| d.sent).sum(),
        bytes_received: devices.iter().map(|d| d.got).sum(),
        server_rss_mb: server_rss,
        lost,
        duplicated,
        diverged,
    })
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} needs a value")),
        None => Ok(default),
    }
}

/// Builds the release server and returns its path.
fn release_server() -> Result<PathBuf> {
    crate::sh::run(
        "cargo",
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "kunjung-sync-server",
            "--bin",
            "kunjung-server",
        ],
        &[],
    )?;
    Ok(crate::sh::root().join("target/release/kunjung-server"))
}

/// `cargo xtask load [--db sqlite|postgres|both] [--devices N] [--rate R] [--seconds S]
/// [--households H]` or `cargo xtask load first-sync [--households N]`.
pub fn run(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        let mut a = vec!["run", "--release", "--quiet", "-p", "xtask", "--", "load"];
        a.extend(args.iter().map(String::as_str));
        return crate::sh::run("cargo", &a, &[]);
    }
    // `--server-bin PATH` measures another build (e.g. the one before a change).
    let bin = match args.iter().position(|a| a == "--server-bin") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--server-bin needs a path")?),
        None => release_server()?,
    };
    let out_dir = crate::sh::root().join("target/load");
    std::fs::create_dir_all(&out_dir)?;
    if args.first().map(String::as_str) == Some("first-sync") {
        let n = arg(args, "--households", 2000usize)?;
        let r = first_sync(&bin, n, true)?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        std::fs::write(
            out_dir.join("first-sync.json"),
            serde_json::to_vec_pretty(&r)?,
        )?;
        return Ok(());
    }
    let mut cfg = Config::full();
    cfg.devices = arg(args, "--devices", cfg.devices)?;
    cfg.rate = arg(args, "--rate", cfg.rate)?;
    cfg.seconds = arg(args, "--seconds", cfg.seconds)?;
    cfg.households = arg(args, "--households", cfg.households)?;
    let which: String = arg(args, "--db", "both".to_string())?;
    let mut reports = Vec::new();
    if which == "sqlite" || which == "both" {
        // `--keep DIR` leaves the server's database there for a look afterwards.
        let keep: String = arg(args, "--keep", String::new())?;
        let dir = tempfile::tempdir()?;
        let path = if keep.is_empty() {
            dir.path().join("load.db")
        } else {
            std::fs::create_dir_all(&keep)?;
            let p = Path::new(&keep).join("load.db");
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
            }
            p
        };
        let db = format!("sqlite:{}", path.display());
        reports.push(run_on(&cfg, &bin, &db, None)?);
    }
    if which == "postgres" || which == "both" {
        let pg = crate::pg::Postgres::start()?;
        let db = format!("{}?schema=load", pg.url());
        reports.push(run_on(&cfg, &bin, &db, pg.postmaster_pid())?);
    }
    println!("| backend | devices | offered/s | syncs/s | p50 ms | p99 ms | max ms | errors | server CPU ms/sync | generator CPU ms/sync | server RSS MB | lost | duplicated | diverged |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &reports {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.0} | {} | {} | {} |",
            r.backend,
            r.devices,
            r.offered_rate,
            r.throughput,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.server_cpu_ms_per_sync,
            r.generator_cpu_ms_per_sync,
            r.server_rss_mb,
            r.lost,
            r.duplicated,
            r.diverged
        );
        for e in &r.first_errors {
            println!("  error: {e}");
        }
    }
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&reports)?,
    )?;
    eprintln!("load: wrote {}", out_dir.join("results.json").display());
    let bad = reports
        .iter()
        .any(|r| r.errors > 0 || r.lost > 0 || r.duplicated != 0 || r.diverged > 0);
    ensure!(
        !bad,
        "load: errors, lost, duplicated or diverged data (see above)"
    );
    Ok(())
}

/// First sync of a village to a new device, with the real client engine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FirstSync {
    pub households: usize,
    pub members: usize,
    pub visits: usize,
    pub seconds: f64,
    pub http_requests: usize,
    pub bytes_on_wire: usize,
    pub bytes_per_household: f64,
    pub resumed_households_before: u64,
    pub resumed_second_run_households: u64,
    pub resumed_total: usize,
}

/// Seeds `n` households (the demo area: 4 desa, 8 posyandu) onto a server on SQLite, then
/// a new puskesmas device syncs them all. Then an interrupted first sync: the server is
/// killed after the first page and restarted, and the second run fetches only the rest.
pub fn first_sync(bin: &Path, n: usize, verbose: bool) -> Result<FirstSync> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite:{}", dir.path().join("village.db").display());
    let mut server = Server::start(bin, &db, &[])?;
    server.admin(&["user", "add", "--username", "seeder", "--role", "admin"])?;
    server.admin(&[
        "user",
        "add",
        "--username",
        "pkm",
        "--role",
        "puskesmas",
        "--area",
        "32.14",
    ])?;
    let t = Instant::now();
    let docs = generate_parallel(&SeedOptions::new(n, 11, TODAY.parse()?))?;
    let (mut members, mut visits) = (0, 0);
    for d in &docs {
        let v = d.read()?;
        members += v.members.len();
        visits += v.visits.len();
    }
    let net = Net::new(&server.url)?;
    let token = net.login("seeder", "seeder-device")?;
    let mut seeder = Device {
        user: "seeder".into(),
        token,
        cursor: None,
        batches: Vec::new(),
        next: 0,
        unacked: Vec::new(),
        hash_of: HashMap::new(),
        acked: HashMap::new(),
        received: BTreeMap::new(),
        latencies: Vec::new(),
        started: Vec::new(),
        errors: Vec::new(),
        conn: None,
        requests: 0,
        sent: 0,
        got: 0,
    };
    for chunk in docs.chunks(100) {
        let groups = chunk
            .iter()
            .map(|h| {
                Ok(HouseholdChanges {
                    household_id: h.id()?,
                    changes: h
                        .changes_since(&[])
                        .iter()
                        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        seeder.sync(&net, Some(groups))?;
    }
    if verbose {
        eprintln!(
            "first-sync: seeded {n} households, {members} members, {visits} visits ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }

    let dev = tempfile::tempdir()?;
    let mut store = kunjung_store::Store::init(dev.path(), None, "pkm")?;
    let opts = kunjung_client::sync::SyncOptions::new(&server.url, "pkm", Some(PASSWORD.into()));
    let t = Instant::now();
    let s = kunjung_client::sync::sync(&mut store, &opts, &mut |_| {})?;
    let seconds = t.elapsed().as_secs_f64();
    ensure!(s.verified, "first sync not verified");
    let got = store.household_ids()?.len();
    ensure!(got == n, "first sync brought {got} of {n} households");
    if verbose {
        eprintln!(
            "first-sync: {n} households in {seconds:.2} s, {} requests",
            s.round_trips
        );
    }

    // Interrupted: a second new device, the server killed after its first page.
    let dev2 = tempfile::tempdir()?;
    let mut store2 = kunjung_store::Store::init(dev2.path(), None, "pkm")?;
    let mut o2 = opts.clone();
    o2.page_size = Some((n as u32 / 4).max(1));
    o2.tries = 1;
    let pid = server.pid();
    let mut first_page_done = 0;
    let interrupted = kunjung_client::sync::sync(&mut store2, &o2, &mut |p| {
        if p.page == 1 {
            first_page_done = p.total - p.remaining;
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    ensure!(
        interrupted.is_err(),
        "the interrupted sync did not notice the kill"
    );
    let before = store2.household_ids()?.len();
    server = Server::start(bin, &db, &[])?;
    let mut o3 = o2.clone();
    o3.server = server.url.clone();
    o3.tries = 3;
    let s2 = kunjung_client::sync::sync(&mut store2, &o3, &mut |_| {})?;
    ensure!(s2.verified, "resumed sync not verified");
    let total = store2.household_ids()?.len();
    ensure!(
        total == n,
        "resumed sync ends with {total} of {n} households"
    );
    // Whole pages only; the second may already have arrived (it is asked for while the
    // first is stored) before the server died.
    ensure!(
        before as u64 >= first_page_done && before < n,
        "stored {before} before the kill, expected at least the first page ({first_page_done})"
    );
    drop(server);
    Ok(FirstSync {
        households: n,
        members,
        visits,
        seconds,
        http_requests: s.round_trips,
        bytes_on_wire: s.bytes_sent + s.bytes_received,
        bytes_per_household: (s.bytes_sent + s.bytes_received) as f64 / n as f64,
        resumed_households_before: before as u64,
        resumed_second_run_households: s2.snapshots as u64,
        resumed_total: total,
    })
}

#[cfg(test)]
mod tests {
    //! The short load run: a few devices for two seconds on SQLite (and PostgreSQL when
    //! `KUNJUNG_TEST_POSTGRES` is set): no errors, nothing lost, every device converges.
    use super::*;

    /// The debug `kunjung-server` next to this test binary (`cargo test --workspace`
    /// builds it; built here if missing).
    fn server_bin() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let bin = profile.join("kunjung-server");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "-p",
                    "kunjung-sync-server",
                    "--bin",
                    "kunjung-server",
                ])
                .arg("--target-dir")
                .arg(profile.parent().unwrap())
                .status()
                .expect("cargo build");
            assert!(status.success(), "building kunjung-server failed");
        }
        bin
    }

    fn small() -> Config {
        Config {
            devices: 6,
            per_posyandu: 3,
            households: 6,
            history_visits: 6,
            visits_per_sync: 6,
            households_per_sync: 3,
            rate: 12.0,
            seconds: 2.0,
            seed: 3,
            verbose: false,
        }
    }

    fn check(r: &Report) {
        assert_eq!(r.errors, 0, "errors: {:?}", r.first_errors);
        assert!(r.syncs >= 6, "only {} syncs", r.syncs);
        assert!(r.changes_acked > 0);
        assert_eq!(r.lost, 0, "acknowledged changes missing on the server");
        assert_eq!(r.duplicated, 0, "changes stored more than once");
        assert_eq!(r.diverged, 0, "devices differ from the server");
    }

    #[test]
    fn short_load_loses_nothing_sqlite() {
        let bin = server_bin();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite:{}", dir.path().join("load.db").display());
        check(&run_on(&small(), &bin, &db, None).unwrap());
    }

    #[test]
    fn short_load_loses_nothing_postgres() {
        let Ok(url) = std::env::var("KUNJUNG_TEST_POSTGRES") else {
            assert!(
                std::env::var("KUNJUNG_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KUNJUNG_REQUIRE_POSTGRES=1 but KUNJUNG_TEST_POSTGRES is not set"
            );
            eprintln!("notice: KUNJUNG_TEST_POSTGRES not set; short load skips PostgreSQL");
            return;
        };
        let bin = server_bin();
        let sep = if url.contains('?') { '&' } else { '?' };
        let db = format!("{url}{sep}schema=load_{}", std::process::id());
        check(&run_on(&small(), &bin, &db, None).unwrap());
    }

    #[test]
    fn first_sync_resumes_after_interruption() {
        let r = first_sync(&server_bin(), 40, false).unwrap();
        assert_eq!(r.resumed_total, 40);
        assert!(r.resumed_households_before > 0);
        // The second run fetched only what the first did not store.
        assert_eq!(
            r.resumed_second_run_households,
            40 - r.resumed_households_before
        );
    }
}
