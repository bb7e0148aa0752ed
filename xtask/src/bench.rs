//! `cargo xtask bench [--quick]`: local-store benchmarks on a seeded store (20,000
//! households ≈ 100,000 members ≈ 1,000,000 visits; `--quick`: 2,000 households). Prints a
//! table and writes `target/bench/results.json` as `[{workload, metric, unit, kunjung,
//! peer, ratio}]`. The peer columns are filled by the peer benchmarks (issue 9).
//!
//! Always runs optimised: when called from a debug build it re-runs itself with --release.

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

fn row(workload: &str, metric: &str, unit: &str, v: f64) -> Row {
    Row {
        workload: workload.into(),
        metric: metric.into(),
        unit: unit.into(),
        kunjung: v,
        peer: None,
        ratio: None,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
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
const SEED_VERSION: &str = "seed-v1";

/// Builds (or reuses) the benchmark store: households with ~50 visits each, all synced
/// and compacted, as on a device after its first sync.
fn seeded_store(dir: &Path, households: usize) -> Result<()> {
    let marker = dir.join(format!("{SEED_VERSION}-{households}.ok"));
    if marker.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let t = Instant::now();
    let mut s = Store::init(dir, None, "bench")?;
    let today: NaiveDate = TODAY.parse()?;
    let chunk = 2000;
    let mut done = 0;
    while done < households {
        let n = (households - done).min(chunk);
        let opts = SeedOptions {
            households: n,
            seed: 42,
            today,
            visits_per_household: 50,
            first: done,
        };
        let docs = generate_parallel(&opts)?;
        s.insert_documents(&docs, true)?;
        done += n;
        eprintln!(
            "bench: seeded {done}/{households} households ({:.0} s)",
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
    conn.execute_batch(&format!(
        "ATTACH DATABASE '{}' AS enc KEY \"x'{}'\"; SELECT sqlcipher_export('enc');
         PRAGMA enc.user_version = {version}; DETACH DATABASE enc;",
        dst.join(kunjung_store::DB_FILE).display(),
        hex_encode(&key)
    ))?;
    let cfg = kunjung_store::StoreConfig {
        format: 1,
        encrypted: true,
        kdf: Some(kdf),
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
    if cfg!(debug_assertions) {
        let mut a = vec!["run", "--release", "--quiet", "-p", "xtask", "--", "bench"];
        a.extend(args.iter().map(String::as_str));
        return crate::sh::run("cargo", &a, &[]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let households = if quick { 2_000 } else { 20_000 };
    let root = crate::sh::root();
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let store_dir = out_dir.join(format!("store-{households}"));
    seeded_store(&store_dir, households)?;
    let mut rows = local_ops(&store_dir, households)?;
    rows.extend(encrypted_open(&store_dir, &out_dir)?);
    print_table(&rows);
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&rows)?)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn local_ops(dir: &Path, households: usize) -> Result<Vec<Row>> {
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

    let mut s = Store::open(dir, None)?;
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
            "SELECT id FROM members WHERE birth_date <= '2026-01-01' AND voided = 0 ORDER BY random() LIMIT 300",
        )?;
        let v = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        v
    };
    let date: NaiveDate = TODAY.parse()?;
    let mut t_add = Vec::new();
    for m in &members {
        let v = NewVisit {
            member_id: m.parse()?,
            date,
            weight_kg: Some(rng.gen_range(40.0..80.0)),
            ..Default::default()
        };
        let t = Instant::now();
        s.add_visit(&v)?;
        t_add.push(ms(t));
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
    Ok(rows)
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
