//! Reliability runs (issue 8): the property-based API tester against the server's OpenAPI
//! description, cargo-fuzz, and the long convergence soak.
//!
//! - `schemathesis(max_examples)` — installs the pinned schemathesis from PyPI in a virtual
//!   environment under `target/schemathesis`, starts a real `kunjung-server` on a fresh
//!   SQLite file with an admin account, and runs schemathesis over every operation of
//!   `/v1/openapi.json` with the `not_a_server_error` check (no 5xx). Part of
//!   `cargo xtask test`.
//! - `fuzz [--seconds N] [--target T]` — installs cargo-fuzz, builds the targets in `fuzz/`
//!   on stable Rust with `RUSTC_BOOTSTRAP=1` (for cargo-fuzz's `-Z` flags) and runs each
//!   for N seconds (default 300); a crash is copied to `fuzz/regressions/<target>/`, which
//!   the normal test suite replays. `--secs` small is the short run of `cargo xtask test`.
//! - `soak [--cases N] [--kills K] [--seed S]` — the convergence property test in release
//!   mode with N cases (default 200,000) from base seed S (default: the time); the server
//!   SIGKILLed mid-commit K times (default 100) on SQLite and on a real PostgreSQL; then
//!   the fuzz regression test with 100× its mutated inputs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::sh;

/// schemathesis, pinned (its CLI changed between 3.x and 4.x).
pub const SCHEMATHESIS: &str = "schemathesis==4.32.5";
pub const FUZZ_TARGETS: &[&str] = &["protocol_decode", "document_load", "csv_import"];

fn venv_bin(name: &str) -> PathBuf {
    sh::root().join("target/schemathesis/bin").join(name)
}

fn ensure_schemathesis() -> Result<()> {
    let st = venv_bin("st");
    if st.exists()
        && sh::output(st.to_str().unwrap_or_default(), &["--version"])
            .map(|v| v.contains(SCHEMATHESIS.trim_start_matches("schemathesis==")))
            .unwrap_or(false)
    {
        return Ok(());
    }
    sh::apt_install(&["python3-venv", "curl"])?;
    let venv = sh::root().join("target/schemathesis");
    sh::run(
        "python3",
        &["-m", "venv", "--clear", venv.to_str().unwrap_or_default()],
        &[],
    )?;
    sh::run(
        venv_bin("pip").to_str().unwrap_or_default(),
        &["install", "-q", "--disable-pip-version-check", SCHEMATHESIS],
        &[],
    )
}

struct ServerProc {
    child: std::process::Child,
    url: String,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary `cargo test --workspace` built (built here only if missing: a `-p`
/// build would resolve other features and compile much again).
fn server_bin() -> Result<PathBuf> {
    let bin = sh::root().join("target/debug/kunjung-server");
    if !bin.exists() {
        sh::run(
            "cargo",
            &["build", "-q", "--workspace", "--bin", "kunjung-server"],
            &[],
        )?;
    }
    Ok(bin)
}

fn start_server(bin: &Path, db: &str) -> Result<ServerProc> {
    let mut child = Command::new(bin)
        .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting kunjung-server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected server output {line:?}"))?
        .to_string();
    Ok(ServerProc { child, url })
}

/// Runs schemathesis against a real server: fails on any 5xx.
pub fn schemathesis(max_examples: u32) -> Result<()> {
    let start = Instant::now();
    ensure_schemathesis()?;
    let bin = server_bin()?;
    let dir = sh::root().join("target/schemathesis-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = format!("sqlite:{}", dir.join("server.db").display());
    let password = "kata-sandi-uji";
    for (user, role, scope) in [
        ("admin", "admin", vec![]),
        ("kader", "kader", vec!["--posyandu", "PSY-A"]),
    ] {
        let mut args = vec![
            "--db",
            &db,
            "user",
            "add",
            "--username",
            user,
            "--role",
            role,
        ];
        args.extend(scope);
        let out = Command::new(&bin)
            .args(&args)
            .env("KUNJUNG_PASSWORD", password)
            .output()?;
        if !out.status.success() {
            bail!("user add: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let server = start_server(&bin, &db)?;
    // A token for the authenticated operations.
    let body =
        format!(r#"{{"username":"admin","password":"{password}","device_id":"schemathesis"}}"#);
    let login = sh::output(
        "curl",
        &[
            "-sf",
            "-H",
            "Kunjung-Protocol: 1",
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            &format!("{}/v1/login", server.url),
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&login).context("login answer")?;
    let token = v["token"].as_str().context("token")?.to_string();
    let examples = max_examples.to_string();
    let auth = format!("Authorization: Bearer {token}");
    let report = dir.join("report");
    let st = venv_bin("st");
    let r = sh::run(
        st.to_str().unwrap_or_default(),
        &[
            "run",
            &format!("{}/v1/openapi.json", server.url),
            "--checks",
            "not_a_server_error",
            "--max-examples",
            &examples,
            "--seed",
            "8",
            "--workers",
            "2",
            "-H",
            &auth,
            "-H",
            "Kunjung-Protocol: 1",
            "--exclude-path",
            "/v1/logout",
            // CBOR bodies: schemathesis cannot generate them ("serialization not
            // possible"); sync bodies are covered by bad_input.rs and the fuzz targets.
            "--exclude-path",
            "/v1/sync",
            "--report",
            "junit",
            "--report-dir",
            report.to_str().unwrap_or_default(),
            "--generation-database",
            ":memory:",
            "--no-color",
        ],
        &[],
    );
    // Logout last (it ends the token), then check the server is still up.
    let _ = sh::output(
        "curl",
        &[
            "-s",
            "-X",
            "POST",
            "-H",
            "Kunjung-Protocol: 1",
            "-H",
            &auth,
            &format!("{}/v1/logout", server.url),
        ],
    );
    let health = sh::output("curl", &["-sf", &format!("{}/v1/health", server.url)]);
    drop(server);
    r?;
    health.context("the server is down after schemathesis")?;
    eprintln!(
        "xtask: schemathesis: no 5xx ({max_examples} examples per operation, {:.0} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        sh::run(
            "cargo",
            &["install", "--locked", "cargo-fuzz", "--version", "0.13.1"],
            &[],
        )?;
    }
    Ok(())
}

/// cargo-fuzz over every target for `secs` seconds each.
pub fn fuzz(args: &[String]) -> Result<()> {
    let mut secs = 300u64;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" | "--seconds" => secs = it.next().context("--seconds N")?.parse()?,
            "--target" => only = Some(it.next().context("--target NAME")?.clone()),
            other => bail!("fuzz: unknown argument {other}"),
        }
    }
    ensure_cargo_fuzz()?;
    let root = sh::root();
    let fuzz_dir = root.join("fuzz");
    let env = [("RUSTC_BOOTSTRAP", "1")];
    let start = Instant::now();
    // The fuzz crate is its own workspace; its lock file follows the main one (copied on
    // every run, so it never drifts; not committed).
    std::fs::copy(root.join("Cargo.lock"), fuzz_dir.join("Cargo.lock"))?;
    let fuzz_target_dir = root.join("target/fuzz");
    let td = fuzz_target_dir.to_str().unwrap_or_default().to_string();
    std::env::set_current_dir(&fuzz_dir)?;
    sh::run(
        "cargo",
        &[
            "fuzz",
            "build",
            "-O",
            "--sanitizer",
            "none",
            "--target-dir",
            &td,
        ],
        &env,
    )?;
    let built = start.elapsed().as_secs_f64();
    let mut summary = Vec::new();
    for t in FUZZ_TARGETS {
        if only.as_deref().is_some_and(|o| o != *t) {
            continue;
        }
        let corpus = root.join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        let seeds = fuzz_dir.join("seeds").join(t);
        let artifacts = root.join("target/fuzz-artifacts").join(t);
        std::fs::create_dir_all(&artifacts)?;
        let t0 = Instant::now();
        let out = Command::new("cargo")
            .args([
                "fuzz",
                "run",
                "-O",
                "--sanitizer",
                "none",
                "--target-dir",
                &td,
                t,
            ])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg("-rss_limit_mb=2048")
            .envs(env)
            .stderr(Stdio::piped())
            .output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into());
        let cov = log
            .lines()
            .rev()
            .find(|l| l.contains(" cov: "))
            .and_then(|l| l.split(" cov: ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let elapsed = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            // Keep every crash as a regression input for the normal test suite.
            let reg = fuzz_dir.join("regressions").join(t);
            std::fs::create_dir_all(&reg)?;
            for e in std::fs::read_dir(&artifacts)?.flatten() {
                std::fs::copy(e.path(), reg.join(e.file_name()))?;
            }
            eprintln!("{log}");
            bail!(
                "fuzz target {t} crashed; inputs copied to {}",
                reg.display()
            );
        }
        let corpus_n = std::fs::read_dir(&corpus)?.count();
        summary.push(format!(
            "{t}: {runs} runs in {elapsed:.0} s, coverage {cov}, corpus {corpus_n}, 0 crashes"
        ));
    }
    std::env::set_current_dir(&root)?;
    eprintln!("xtask: fuzz (build {built:.0} s)");
    for s in &summary {
        eprintln!("xtask: fuzz: {s}");
    }
    Ok(())
}

/// The long runs: convergence, the server SIGKILLed mid-commit on SQLite and on a real
/// PostgreSQL, and the stable mutation fuzzer.
pub fn soak(args: &[String]) -> Result<()> {
    let mut cases = 200_000u64;
    let mut kills = 100u64;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        * 1_000_000;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cases" => cases = it.next().context("--cases N")?.parse()?,
            "--kills" => kills = it.next().context("--kills N")?.parse()?,
            "--seed" => seed = it.next().context("--seed S")?.parse()?,
            other => bail!("soak: unknown argument {other}"),
        }
    }
    let start = Instant::now();
    let c = cases.to_string();
    let s = seed.to_string();
    eprintln!("xtask: soak: {cases} convergence cases from seed {seed}");
    sh::run(
        "cargo",
        &[
            "test",
            "--release",
            "-p",
            "kunjung-sync-server",
            "--test",
            "convergence",
            "--",
            "--nocapture",
            "--test-threads",
            "2",
        ],
        &[
            ("KUNJUNG_CONVERGENCE_CASES", c.as_str()),
            ("KUNJUNG_CONVERGENCE_SEED", s.as_str()),
        ],
    )?;
    let conv = start.elapsed().as_secs_f64();

    // The server SIGKILLed mid-commit, `kills` times on each backend: the release server,
    // as deployed (the test binaries start the server and client of their own profile, so
    // build those first: not stale).
    let t0 = Instant::now();
    sh::run(
        "cargo",
        &[
            "build",
            "-q",
            "--release",
            "--workspace",
            "--bin",
            "kunjung-server",
            "--bin",
            "kunjung",
        ],
        &[],
    )?;
    let pg = crate::pg::Postgres::start()?;
    let url = pg.url();
    let k = kills.to_string();
    let crash_seed = (seed % 1_000_000_007).to_string();
    let r = sh::run(
        "cargo",
        &[
            "test",
            "--release",
            "-p",
            "kunjung-tests",
            "--test",
            "crash",
            "server_sigkill",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        &[
            ("KUNJUNG_TEST_POSTGRES", url.as_str()),
            ("KUNJUNG_REQUIRE_POSTGRES", "1"),
            ("KUNJUNG_CRASH_KILLS", k.as_str()),
            ("KUNJUNG_CRASH_SEED", crash_seed.as_str()),
        ],
    );
    drop(pg);
    r?;
    let crash = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    sh::run(
        "cargo",
        &[
            "test",
            "--release",
            "-p",
            "kunjung-tests",
            "--test",
            "fuzz_regressions",
            "--",
            "--nocapture",
        ],
        &[("KUNJUNG_FUZZ_ITERS", "300000")],
    )?;
    eprintln!(
        "xtask: soak: {cases} convergence cases in {conv:.0} s; {kills} server kills on SQLite and {kills} on PostgreSQL in {crash:.0} s; 300,000 mutated inputs per fuzz target in {:.0} s; total {:.0} s",
        t0.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
