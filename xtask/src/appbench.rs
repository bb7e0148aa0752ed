//! `cargo xtask appbench [--quick] [--no-build] [--runs N]`: the app's own figures (issue 5
//! targets), printed as a table and written to `target/bench/app-results.json` in the rows
//! format of `cargo xtask bench` (`{workload, metric, unit, kunjung, peer, ratio}`):
//!
//! - **cold start to a usable household list** on a 20,000-household encrypted store
//!   (`--quick`: 2,000): the release app, a fresh process each run, driven under Xvfb by
//!   tauri-driver (`ui/e2e/coldstart.mjs`): process start → PIN screen, PIN submitted →
//!   first page of the list shown, their sum (the user's typing left out), p50 and max.
//!   The OS file cache is warm (the store was just written; dropping it would slow the
//!   other work on a shared machine).
//! - **release binary size**: `kunjung-app` as built and stripped, and the UI bundle.
//!
//! `cargo xtask bench` runs the same measurement ([`rows`]) and adds its rows to its table.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use kunjung_client::seed::SeedOptions;
use serde::Deserialize;

use crate::bench::{self, pct, row, Row};
use crate::{e2e, sh};

const PIN: &str = "246810";
const TODAY: &str = "2026-11-01";
const SEED_VERSION: &str = "app-seed-v1";

/// One cold start, as `coldstart.mjs` reports it.
#[derive(Debug, Deserialize)]
struct Run {
    launch_ms: f64,
    unlock_ms: f64,
    list_ms: f64,
    page_ms: f64,
    rows: u64,
}

/// An encrypted store with `households` seeded households (~50 visits each, synced and
/// compacted, as after a first sync), reused while its marker exists.
fn seeded_store(dir: &Path, households: usize) -> Result<()> {
    let today: NaiveDate = TODAY.parse()?;
    bench::seed_store(
        dir,
        SEED_VERSION,
        households,
        Some(PIN),
        "appbench",
        |first, n| SeedOptions {
            households: n,
            seed: 42,
            today,
            visits_per_household: 50,
            first,
        },
    )
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Builds the release app with the UI embedded.
fn build(root: &Path) -> Result<()> {
    let ui = root.join("ui").to_string_lossy().to_string();
    sh::run(
        "npm",
        &["--prefix", &ui, "ci", "--no-audit", "--no-fund"],
        &[],
    )?;
    sh::run("npm", &["--prefix", &ui, "run", "build"], &[])?;
    sh::run(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "kunjung-app",
            "--features",
            "custom-protocol",
        ],
        &[],
    )
}

/// The figures (building the release app unless `no_build`).
pub fn measure(households: usize, runs: usize, no_build: bool) -> Result<Vec<Row>> {
    let root = sh::root();
    sh::apt_install(&e2e::packages())?;
    e2e::ensure_locale();
    let driver = e2e::tauri_driver()?;
    if !no_build {
        build(&root)?;
    }
    let target = e2e::target_dir(&root);
    let app = target.join("release/kunjung-app");
    anyhow::ensure!(
        app.exists(),
        "{} missing: run without --no-build",
        app.display()
    );
    let mut rows = Vec::new();

    // Size: as built, stripped (what a package ships), and the embedded UI.
    let size = std::fs::metadata(&app)?.len() as f64 / 1e6;
    let stripped = target.join("release/kunjung-app.stripped");
    let strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&app)
        .status();
    rows.push(row("app release binary", "kunjung-app size", "MB", size));
    if strip.is_ok_and(|s| s.success()) {
        let s = std::fs::metadata(&stripped)?.len() as f64 / 1e6;
        rows.push(row("app release binary", "kunjung-app stripped", "MB", s));
        let _ = std::fs::remove_file(&stripped);
    }
    let dist = root.join("ui/dist");
    if dist.exists() {
        let ui = dir_bytes(&dist) as f64 / 1e3;
        rows.push(row(
            "app release binary",
            "UI bundle (ui/dist, embedded)",
            "kB",
            ui,
        ));
    }

    // Cold start.
    let out = target.join("bench");
    std::fs::create_dir_all(&out)?;
    let store = out.join(format!("app-store-{households}"));
    seeded_store(&store, households).context("seeding the store")?;
    let work = out.join("appbench-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let xvfb = e2e::Xvfb::start()?;
    let runs_s = runs.to_string();
    let r = e2e::run_flow(
        &root.join("ui/e2e/coldstart.mjs"),
        &[
            ("DISPLAY", &xvfb.display),
            ("APP_BIN", &app.to_string_lossy()),
            ("DATA", &store.to_string_lossy()),
            ("PIN", PIN),
            ("RUNS", &runs_s),
            ("WORK", &work.to_string_lossy()),
            ("TAURI_DRIVER", &driver),
            ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
            ("GTK_IM_MODULE", "gtk-im-context-simple"),
            // No server: the background sync stays idle ("no server").
            ("KUNJUNG_SYNC_MAX_BACKOFF_MS", "60000"),
        ],
        &work,
    );
    drop(xvfb);
    r?;
    let text = std::fs::read_to_string(work.join("coldstart.jsonl"))?;
    let runs: Vec<Run> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    anyhow::ensure!(!runs.is_empty(), "no cold-start runs");
    anyhow::ensure!(runs.iter().all(|r| r.rows > 0), "the list showed no rows");
    let w = format!("app cold start, {households} households (encrypted)");
    let stat = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (pct(&v, 0.5), v[v.len() - 1])
    };
    for (metric, f) in [
        (
            "start → PIN screen",
            (|r: &Run| r.launch_ms) as fn(&Run) -> f64,
        ),
        ("PIN → list shown", |r: &Run| r.unlock_ms),
        ("start → usable list (no typing)", |r: &Run| r.list_ms),
        ("webview navigation → list shown", |r: &Run| r.page_ms),
    ] {
        let (p50, max) = stat(f);
        rows.push(row(&w, &format!("{metric} (p50)"), "ms", p50));
        rows.push(row(&w, &format!("{metric} (max)"), "ms", max));
    }
    Ok(rows)
}

/// For `cargo xtask bench`: the figures, building the release app if needed.
pub fn rows(quick: bool) -> Result<Vec<Row>> {
    measure(if quick { 2_000 } else { 20_000 }, 3, false)
}

pub fn run(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        // Seeding runs optimised, as in `bench`.
        let mut a = vec![
            "run",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "--",
            "appbench",
        ];
        a.extend(args.iter().map(String::as_str));
        return sh::run("cargo", &a, &[]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let no_build = args.iter().any(|a| a == "--no-build");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let households = if quick { 2_000 } else { 20_000 };
    let rows = measure(households, runs, no_build)?;
    println!("| workload | metric | unit | kunjung |");
    println!("|---|---|---|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} |",
            r.workload, r.metric, r.unit, r.kunjung
        );
    }
    let path = sh::root().join("target/bench/app-results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&rows)?)?;
    eprintln!("appbench: wrote {}", path.display());
    Ok(())
}
