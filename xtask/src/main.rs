//! `cargo xtask …`: the commands the README names.
//!
//! - `test`  — installs what the tests need (Debian packages, PostgreSQL), starts a throwaway
//!   PostgreSQL on loopback, then runs fmt, clippy and every test. CI runs exactly this.
//! - `demo`  — builds and runs the demo.
//! - `bench [--quick] [--sync-only] [--local-only [--households N]]` — Kunjung against the peer (PouchDB/pouchdb-server) and local-store
//!   benchmarks; prints a table, writes `target/bench/results.json` and docs/BENCHMARKS.md.
//! - `bench-check` — the short bench check `test` runs (20 households on both systems).
//! - `e2e [--no-build]` — the real app driven end to end under Xvfb (also part of `test`).
//! - `appbench [--quick] [--no-build] [--runs N]` — the app's cold start and binary size.
//! - `soak [--cases N] [--kills K] [--seed S]`, `fuzz [--seconds N] [--target T]` — the
//!   long reliability runs (issue 8, `docs/RELIABILITY.md`).
//! - `load [first-sync]` — many devices syncing against a real server (SQLite, PostgreSQL);
//!   `first-sync`: a new device's first sync of a 2,000-household village.

mod appbench;
mod arch;
mod bench;
mod bench_report;
mod demo;
mod e2e;
mod fhir;
mod load;
mod pg;
mod reliability;
mod sh;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = sh::root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-check") => bench::check(),
        Some("bench-report") => bench_report::run(&args[1..]),
        Some("e2e") => e2e::run(&args[1..]),
        Some("appbench") => appbench::run(&args[1..]),
        Some("soak") => reliability::soak(&args[1..]),
        Some("fuzz") => reliability::fuzz(&args[1..]),
        Some("schemathesis") => reliability::schemathesis(25),
        Some("load") => load::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask test [--no-lint] [--no-e2e] | demo | bench [--quick] [--sync-only] [--local-only [--households N]] | bench-check | bench-report [--households N] | e2e [--no-build] | appbench [--quick] [--no-build] [--runs N] | soak [--cases N] [--kills K] [--seed S] | fuzz [--seconds N] [--target T] | schemathesis | load [first-sync]");
            bail!("unknown command")
        }
    }
}

/// Debian packages the tests need (the app's own come with `e2e`).
const TEST_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "postgresql",
    "jq",
    "libwebkit2gtk-4.1-dev",
    "libxdo-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
];

/// Everything, in the order a failure is cheapest to find: lints, then unit and integration
/// tests (with a real PostgreSQL and the FHIR validator), then the real app driven end to
/// end (`cargo xtask e2e` alone). `--no-lint` skips fmt/clippy; `--no-e2e` (or
/// `KUNJUNG_NO_E2E=1`) skips the app run.
fn test(args: &[String]) -> Result<()> {
    let no_lint = args.iter().any(|a| a == "--no-lint");
    let e2e =
        !(args.iter().any(|a| a == "--no-e2e") || std::env::var_os("KUNJUNG_NO_E2E").is_some());
    sh::apt_install(TEST_PACKAGES)?;
    if !no_lint {
        sh::run("cargo", &["fmt", "--all", "--check"], &[])?;
        // --workspace includes src-tauri (not a default member), so the app is linted too.
        sh::run(
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )?;
    }
    fhir::ensure_validator()?;
    let pg = pg::Postgres::start()?;
    let url = pg.url();
    eprintln!("xtask: PostgreSQL ready at {url}");
    let env = [
        ("KUNJUNG_TEST_POSTGRES", url.as_str()),
        ("KUNJUNG_REQUIRE_POSTGRES", "1"),
    ];
    let r = sh::run("cargo", &["test", "--workspace", "--no-fail-fast"], &env);
    drop(pg);
    r?;
    // The benchmark harness on a 20-household village: the peer (PouchDB replicating to
    // pouchdb-server, npm install included) really replicates, Kunjung's device holds the
    // server's households, both through the counting proxy.
    bench::check()?;
    // The property-based API tester against the OpenAPI description (no 5xx, issue 8).
    // (The fuzz targets run on stable inside `cargo test`: tests/tests/fuzz_regressions.rs;
    // the coverage-guided cargo-fuzz run is `cargo xtask fuzz`.)
    reliability::schemathesis(25)?;
    if e2e {
        e2e::run_with(&[], true)?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}
