//! `cargo xtask bench [--quick]`: Kunjung against the peer (PouchDB replicating to
//! pouchdb-server, as CHT syncs) on the same data in one run — the sync workloads in
//! `peer.rs` — and the local-store workloads here on a seeded store (20,000 households ≈
//! 100,000 members ≈ 400,000 visits; `--quick`: 2,000), with PouchDB's CHT-style indexes
//! as the peer (on 2,000 households; `--quick`: 500). Prints a table, writes `target/bench/results.json` as `[{workload, metric,
//! unit, kunjung, peer, ratio}]` (ratio = kunjung / peer) and the table in
//! `docs/BENCHMARKS.md` between its generated-table markers.
//!
//! Always runs optimised: when called from a debug build it re-runs itself with --release.

mod cht;
mod peer;
mod proxy;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use kunjung_client::seed::{generate_parallel, SeedOptions};
use kunjung_core::NewVisit;
use kunjung_store::{ListFilter, Store};
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub metric: String,
    pub unit: String,
    pub kunjung: f64,
    pub peer: Option<f64>,
    pub ratio: Option<f64>,
}

/// A figure with no peer counterpart.
pub fn row(workload: &str, metric: &str, unit: &str, v: f64) -> Row {
    Row {
        workload: workload.into(),
        metric: metric.into(),
        unit: unit.into(),
        kunjung: v,
        peer: None,
        ratio: None,
    }
}

/// The `p` quantile (0..=1) of sorted figures (NaN when empty).
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

const TODAY: &str = "2026-11-01";
const SEED_VERSION: &str = "seed-v2";

/// The local-store data set: the demo seed with ~20 visits per household (as in issue 9).
fn local_seed(first: usize, households: usize) -> SeedOptions {
    SeedOptions {
        households,
        seed: 42,
        today: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
        visits_per_household: 20,
        first,
    }
}

/// Builds (or reuses) the benchmark store: households with ~20 visits each, all synced
/// and compacted, as on a device after its first sync.
fn seeded_store(dir: &Path, households: usize) -> Result<()> {
    seed_store(dir, SEED_VERSION, households, None, "bench", local_seed)
}

/// Builds (or reuses, by the `tag` marker file) a store of `households` generated in
/// chunks of 2,000 by `opts(first, n)`, optionally PIN-encrypted, then checkpointed and
/// vacuumed as on a device after its first sync.
pub fn seed_store(
    dir: &Path,
    tag: &str,
    households: usize,
    pin: Option<&str>,
    label: &str,
    opts: impl Fn(usize, usize) -> SeedOptions,
) -> Result<()> {
    // A store of an older schema is made again (opening it would migrate it first).
    let marker = dir.join(format!(
        "{tag}-{households}-schema{}.ok",
        kunjung_store::SCHEMA_VERSION
    ));
    if marker.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let t = Instant::now();
    let mut s = Store::init(dir, pin, label)?;
    let mut done = 0;
    while done < households {
        let n = (households - done).min(2000);
        let docs = generate_parallel(&opts(done, n))?;
        s.insert_documents(&docs, true)?;
        done += n;
        eprintln!(
            "{label}: seeded {done}/{households} households ({:.0} s)",
            t.elapsed().as_secs_f64()
        );
    }
    s.connection()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")?;
    std::fs::write(&marker, b"")?;
    Ok(())
}

fn encrypted_copy(src: &Path, dst: &Path, pin: &str) -> Result<()> {
    if dst.exists() {
        std::fs::remove_dir_all(dst)?;
    }
    std::fs::create_dir_all(dst)?;
    let kdf = kunjung_store::KdfParams::new_random();
    let key = kdf.derive(pin)?;
    let conn = rusqlite_conn(src)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    // The same page size as the store it copies (what `Store::init` makes).
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "ATTACH DATABASE '{}' AS enc KEY \"x'{}'\"; PRAGMA enc.cipher_page_size = {page_size};
         SELECT sqlcipher_export('enc'); PRAGMA enc.user_version = {version}; DETACH DATABASE enc;",
        dst.join(kunjung_store::DB_FILE).display(),
        hex_encode(&key)
    ))?;
    let cfg = kunjung_store::StoreConfig {
        format: 1,
        encrypted: true,
        kdf: Some(kdf),
        page_size: Some(page_size as u32),
    };
    std::fs::write(
        dst.join(kunjung_store::CONFIG_FILE),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    Ok(())
}

fn rusqlite_conn(dir: &Path) -> Result<kunjung_store::RawConnection> {
    Ok(kunjung_store::RawConnection::open(
        dir.join(kunjung_store::DB_FILE),
    )?)
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn run(args: &[String]) -> Result<()> {
    let root = crate::sh::root();
    if cfg!(debug_assertions) || std::env::var_os("KUNJUNG_BENCH_BUILT").is_none() {
        // One build of both (one feature resolution), then the optimised bench itself.
        crate::sh::run(
            "cargo",
            &[
                "build",
                "--release",
                "--quiet",
                "-p",
                "xtask",
                "-p",
                "kunjung-sync-server",
            ],
            &[],
        )?;
        let bin = target_dir(&root).join("release/xtask");
        let mut a = vec!["bench"];
        a.extend(args.iter().map(String::as_str));
        return crate::sh::run(
            bin.to_str().context("path")?,
            &a,
            &[("KUNJUNG_BENCH_BUILT", "1")],
        );
    }
    let started = Instant::now();
    let quick = args.iter().any(|a| a == "--quick");
    let households = if quick { 2_000 } else { 20_000 };
    let server_bin = target_dir(&root).join("release/kunjung-server");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    if args.iter().any(|a| a == "--local-only") {
        // Workload 4's Kunjung rows alone (no peer), on `--households N` (default 2,000),
        // for work on the store.
        let n = args
            .iter()
            .position(|a| a == "--households")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(2_000);
        let dir = out_dir.join(format!("store-{n}"));
        seeded_store(&dir, n)?;
        print_table(&local_ops(&dir, n)?.rows);
        return Ok(());
    }
    let mut rows = Vec::new();
    let sizes = peer::Sizes {
        village: 2_000,
        big: if quick { 4_000 } else { 20_000 },
        devices: 100,
    };
    peer::run(&root, &server_bin, &sizes, &mut rows)?;
    eprintln!(
        "bench: sync workloads done ({:.0} s)",
        started.elapsed().as_secs_f64()
    );

    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&rows)?,
    )?;
    if args.iter().any(|a| a == "--sync-only") {
        // Workloads 1, 2, 3 and 5 only (for working on sync or storage): no table in the
        // docs, since the local and app rows are missing.
        print_table(&rows);
        return Ok(());
    }

    // Workload 4. Kunjung's local rows on the big store; the comparison with the peer on
    // 2,000 households, because PouchDB's first index build over a 20,000-household
    // device (≈ 490,000 documents) alone takes about an hour here (see docs/BENCHMARKS.md).
    let store_dir = out_dir.join(format!("store-{households}"));
    seeded_store(&store_dir, households)?;
    let local = local_ops(&store_dir, households)?;
    // `--quick` compares on 500 (the peer's index build over 2,000 alone is minutes).
    let cmp = if quick { 500 } else { 2_000 };
    let local = if households == cmp {
        local
    } else {
        rows.extend(local.rows);
        let dir = out_dir.join(format!("store-{cmp}"));
        seeded_store(&dir, cmp)?;
        local_ops(&dir, cmp)?
    };
    let n = 150.min(local.searches.len());
    let p = match peer::peer_local(
        &root,
        cmp,
        &local.searches[..n],
        &local.visits[..n.min(local.visits.len())],
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: peer local operations failed: {e:#}");
            serde_json::Value::Null
        }
    };
    let peer_of = |metric: &str| -> Option<f64> {
        let k = match metric {
            "open + first page (p50)" => "open_page_p50",
            "open + first page (p95)" => "open_page_p95",
            "search by name (p50)" => "search_p50",
            "search by name (p95)" => "search_p95",
            "add a visit (p50)" => "add_p50",
            "add a visit (p95)" => "add_p95",
            _ => return None,
        };
        p[k].as_f64()
    };
    for mut r in local.rows {
        if let Some(v) = peer_of(&r.metric) {
            r.workload = format!("4. {}", r.workload);
            r.peer = Some(v);
            r.ratio = Some(r.kunjung / v);
        }
        rows.push(r);
    }
    rows.push(Row {
        workload: format!("4. local store, {cmp} households"),
        metric: "peer: building its indexes (first query after sync)".into(),
        unit: "s".into(),
        kunjung: f64::NAN,
        peer: p["index_ms"].as_f64().map(|v| v / 1000.0),
        ratio: None,
    });
    rows.extend(encrypted_open(&store_dir, &out_dir)?);
    // Issue 5's figures: the real app's cold start and its binary size. A failure there
    // (no display libraries, say) still leaves the rest of the table written, then fails.
    let app = crate::appbench::rows(quick);
    if let Ok(r) = &app {
        rows.extend(r.iter().cloned());
    }
    print_table(&rows);
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&rows)?)?;
    eprintln!("bench: wrote {}", path.display());
    write_doc(&root, &rows, quick, started.elapsed().as_secs_f64())?;
    app.map(|_| ())
        .context("the app's figures (cargo xtask appbench)")
}

fn target_dir(root: &Path) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The short check `cargo xtask test` runs (see `peer::check`), with the debug server that
/// `cargo test --workspace` has just built (built here only when missing: building the one
/// package alone would resolve other features and rebuild shared dependencies).
pub fn check() -> Result<()> {
    let root = crate::sh::root();
    let bin = target_dir(&root).join("debug/kunjung-server");
    if !bin.exists() {
        crate::sh::run(
            "cargo",
            &["build", "--workspace", "--bins", "--exclude", "kunjung-app"],
            &[],
        )?;
    }
    peer::check(&root, &bin)
}

const DOC_BEGIN: &str = "<!-- bench:table:begin (written by cargo xtask bench) -->";
const DOC_END: &str = "<!-- bench:table:end -->";

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|x| x.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|k| k / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let node = crate::sh::output("node", &["--version"]).unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem:.0} GiB RAM, {}; Node {}",
        std::env::consts::OS,
        node.trim()
    )
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| workload | metric | unit | Kunjung | peer | ratio |\n|---|---|---|---:|---:|---:|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.metric,
            r.unit,
            fmt(r.kunjung),
            r.peer.map(fmt).unwrap_or_else(|| "–".into()),
            r.ratio
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "–".into())
        ));
    }
    t
}

/// Puts the table (with machine, date and how to reproduce) into docs/BENCHMARKS.md
/// between the markers, keeping the hand-written text around it.
fn write_doc(root: &Path, rows: &[Row], quick: bool, secs: f64) -> Result<()> {
    let path = root.join("docs/BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let body = format!(
        "{DOC_BEGIN}\n\nRun: `cargo xtask bench{}` on {} UTC, {:.0} s in all.  \nMachine: {} \
         (shared with other engineers' builds while it ran).  \nReproduce: `cargo xtask bench` (full) or `cargo xtask bench --quick` (smaller server and local store); figures \
         land in `target/bench/results.json`.\n\n{}\n{DOC_END}",
        if quick { " --quick" } else { "" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        secs,
        machine(),
        table(rows)
    );
    let new = match (old.find(DOC_BEGIN), old.find(DOC_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &old[..a], body, &old[b + DOC_END.len()..])
        }
        _ => format!("{old}\n{body}\n"),
    };
    std::fs::write(&path, new)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// What the local workloads did, so the peer can do the same.
struct Local {
    rows: Vec<Row>,
    searches: Vec<String>,
    visits: Vec<serde_json::Value>,
}

fn local_ops(dir: &Path, households: usize) -> Result<Local> {
    let w = format!("local store, {households} households");
    let mut rows = Vec::new();
    // Size on disk per visit (documents + projections + search index), before any writes.
    let (visits, members): (i64, i64) = {
        let s = Store::open(dir, None)?;
        let v = s
            .connection()
            .query_row("SELECT count(*) FROM visits", [], |r| r.get(0))?;
        let m = s
            .connection()
            .query_row("SELECT count(*) FROM members", [], |r| r.get(0))?;
        (v, m)
    };
    let bytes = dir_size(dir) as f64;
    rows.push(row(&w, "visits in store", "count", visits as f64));
    rows.push(row(&w, "members in store", "count", members as f64));
    rows.push(row(
        &w,
        "store size per visit (docs + projections + FTS)",
        "bytes",
        bytes / visits as f64,
    ));
    rows.push(row(&w, "store size", "MB", bytes / 1e6));

    // Open + first page, in a fresh connection each time.
    let mut t_open = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let s = Store::open(dir, None)?;
        let page = s.list_households(&ListFilter {
            limit: Some(50),
            ..Default::default()
        })?;
        anyhow::ensure!(page.len() == 50, "first page has {} rows", page.len());
        t_open.push(ms(t));
    }
    t_open.sort_by(f64::total_cmp);
    rows.push(row(&w, "open + first page (p50)", "ms", pct(&t_open, 0.5)));
    rows.push(row(&w, "open + first page (p95)", "ms", pct(&t_open, 0.95)));

    let mut s = Store::open(dir, None)?;
    let mut searches = Vec::new();
    // Search by name: prefixes of real names in the store.
    let names: Vec<String> = {
        let mut stmt = s
            .connection()
            .prepare("SELECT name FROM members ORDER BY random() LIMIT 400")?;
        let v = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        v
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut t_search = Vec::new();
    for n in &names {
        let words: Vec<&str> = n.split(' ').collect();
        let q = match rng.gen_range(0..3) {
            0 => words[0].to_string(),
            1 => format!("{} {}", words[0], &words[1][..words[1].len().min(3)]),
            _ => words[1][..words[1].len().min(4)].to_string(),
        };
        searches.push(q.clone());
        let t = Instant::now();
        let hits = s.search(&q, 20)?;
        t_search.push(ms(t));
        anyhow::ensure!(!hits.is_empty(), "no hit for {q}");
    }
    t_search.sort_by(f64::total_cmp);
    rows.push(row(&w, "search by name (p50)", "ms", pct(&t_search, 0.5)));
    rows.push(row(&w, "search by name (p95)", "ms", pct(&t_search, 0.95)));

    // Add a visit to random members of random households.
    let members: Vec<String> = {
        let mut stmt = s.connection().prepare(
            "SELECT lower(hex(id)) FROM members WHERE birth_date <= '2026-01-01' AND voided = 0 ORDER BY random() LIMIT 300",
        )?;
        let v = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        v
    };
    let date: NaiveDate = TODAY.parse()?;
    let mut t_add = Vec::new();
    let mut added = Vec::new();
    for m in &members {
        let v = NewVisit {
            member_id: m.parse()?,
            date,
            weight_kg: Some(rng.gen_range(40.0..80.0)),
            ..Default::default()
        };
        let t = Instant::now();
        added.push(s.add_visit(&v)?);
        t_add.push(ms(t));
    }
    // The same visits, as the peer's report documents.
    let mut visits = Vec::new();
    for a in &added {
        let view = s.household_detail(a.household_id)?.view;
        if let Some(v) = view.visits.iter().find(|v| v.id == a.id) {
            visits.push(cht::visit_doc(&view.household, v));
        }
    }
    t_add.sort_by(f64::total_cmp);
    rows.push(row(&w, "add a visit (p50)", "ms", pct(&t_add, 0.5)));
    rows.push(row(&w, "add a visit (p95)", "ms", pct(&t_add, 0.95)));

    // Open a household (document + view + conflicts), as the detail screen does.
    let hh: Vec<String> = {
        let mut stmt = s
            .connection()
            .prepare("SELECT id FROM households ORDER BY random() LIMIT 200")?;
        let v = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        v
    };
    drop(s);
    let mut s = Store::open(dir, None)?;
    let mut t_show = Vec::new();
    for h in &hh {
        let t = Instant::now();
        let d = s.household_detail(h.parse()?)?;
        t_show.push(ms(t));
        anyhow::ensure!(!d.view.members.is_empty());
    }
    t_show.sort_by(f64::total_cmp);
    rows.push(row(&w, "open a household (p95)", "ms", pct(&t_show, 0.95)));
    Ok(Local {
        rows,
        searches,
        visits,
    })
}

fn encrypted_open(plain: &Path, out: &Path) -> Result<Vec<Row>> {
    let enc = out.join("store-encrypted");
    encrypted_copy(plain, &enc, "246810").context("encrypted copy")?;
    let mut t_open = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = Store::open(&enc, Some("246810"))?;
        let page = s.list_households(&ListFilter {
            limit: Some(50),
            ..Default::default()
        })?;
        anyhow::ensure!(page.len() == 50);
        t_open.push(ms(t));
    }
    t_open.sort_by(f64::total_cmp);
    Ok(vec![row(
        "local store, encrypted (SQLCipher + Argon2id)",
        "open + first page (p50)",
        "ms",
        pct(&t_open, 0.5),
    )])
}

pub fn print_table(rows: &[Row]) {
    println!("| workload | metric | unit | kunjung | peer | ratio |");
    println!("|---|---|---|---:|---:|---:|");
    for r in rows {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into());
        println!(
            "| {} | {} | {} | {:.3} | {} | {} |",
            r.workload,
            r.metric,
            r.unit,
            r.kunjung,
            f(r.peer),
            f(r.ratio)
        );
    }
}
