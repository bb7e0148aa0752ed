//! `cargo xtask bench-report [--households N] [--visits V] [--db URL]`: the server's
//! monthly report over a puskesmas area of N seeded households (default 20,000, ~V = 20
//! visits each), pushed through the real sync path into a fresh SQLite (or the given
//! PostgreSQL) database. Prints the time of the first report (every projection built from
//! the documents — what computing on request would cost each time), a warm report, a
//! report after 1 % of the households changed, the duplicate check, one report over HTTP,
//! and the projection table's size.
//!
//! Always runs optimised: from a debug build it re-runs itself with --release.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use kunjung_client::seed::{generate_parallel, SeedOptions};
use kunjung_core::report::Grouping;
use kunjung_core::NewVisit;
use kunjung_protocol::{ByteBuf, HouseholdChanges, Role};
use kunjung_sync_server::auth::{self, User};
use kunjung_sync_server::{report, sync, Db};

use crate::bench::{print_table, row};

const TODAY: &str = "2026-11-24";
const MONTH: &str = "2026-10";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// CPU seconds this process has used (user + system), from /proc (the machine may be
/// shared, so wall time alone overstates the work).
fn cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // Fields 14 and 15 of stat (utime, stime), counted after the command name.
            let u: f64 = rest.get(11)?.parse().ok()?;
            let k: f64 = rest.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Runs `f`, returning its result, wall seconds and CPU seconds.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64, f64)> {
    let (t, c) = (Instant::now(), cpu());
    let out = f()?;
    Ok((out, secs(t), cpu() - c))
}

pub fn run(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        let mut a = vec![
            "run",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "--",
            "bench-report",
        ];
        a.extend(args.iter().map(String::as_str));
        return crate::sh::run("cargo", &a, &[]);
    }
    let households: usize = arg(args, "--households")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let visits: usize = arg(args, "--visits")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let url = arg(args, "--db")
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("server.db").display()));
    let db = Db::open(&url).context("database")?;
    let backend = db.backend();
    let w = format!("server report, {households} households ({backend})");
    let today: NaiveDate = TODAY.parse()?;

    // Accounts: an admin to push, a puskesmas over the whole demo area (two kecamatan).
    let areas = vec!["32.14.01".to_string(), "32.14.02".to_string()];
    // A `--db` that already holds the seeded households (a previous run) is reused.
    let existing = db.tx(false, |t| t.query("SELECT count(*) FROM households", &[]))?[0][0].int();
    let reuse = existing as usize == households;
    if reuse {
        // Measure the first report from scratch again.
        report::ensure_table(&db)?;
        db.tx(true, |t| t.exec("DELETE FROM report_views", &[]))?;
    } else {
        db.tx(true, |t| {
            auth::add_user(t, "admin", Role::Admin, &[], &[], "kata-sandi-1")?;
            auth::add_user(t, "pkm", Role::Puskesmas, &[], &areas, "kata-sandi-1")
        })?;
    }
    let as_user = |name: &str, role, areas: &[String]| User {
        username: name.into(),
        role,
        posyandu: Vec::new(),
        areas: areas.to_vec(),
        device: format!("bench-{name}"),
    };
    let admin = as_user("admin", Role::Admin, &[]);
    let pkm = as_user("pkm", Role::Puskesmas, &areas);

    // Seed and push through the sync path, in chunks.
    let t = Instant::now();
    let mut pushed = 0;
    let mut visits_total = 0;
    let mut sample = Vec::new();
    let chunk = 2000;
    let mut done = 0;
    while done < households {
        let n = (households - done).min(chunk);
        if reuse {
            let docs = generate_parallel(&SeedOptions {
                households: n,
                seed: 42,
                today,
                visits_per_household: visits,
                first: done,
            })?;
            sample.extend(docs.into_iter().step_by(100));
            done += n;
            continue;
        }
        let docs = generate_parallel(&SeedOptions {
            households: n,
            seed: 42,
            today,
            visits_per_household: visits,
            first: done,
        })?;
        for batch in docs.chunks(100) {
            let groups: Vec<HouseholdChanges> = batch
                .iter()
                .map(|d| {
                    Ok(HouseholdChanges {
                        household_id: d.id()?,
                        changes: d
                            .changes_since(&[])
                            .iter()
                            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
                            .collect(),
                    })
                })
                .collect::<Result<_, kunjung_core::CoreError>>()?;
            let out = db.tx(true, |t| sync::push(t, &admin, &groups))?;
            anyhow::ensure!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
            pushed += out.stored;
        }
        for d in &docs {
            visits_total += d.read()?.visits.len();
        }
        // Every 100th household gets a new visit later (1 % changed).
        sample.extend(docs.into_iter().step_by(100));
        done += n;
        eprintln!(
            "bench-report: pushed {done}/{households} households, {pushed} changes ({:.0} s)",
            secs(t)
        );
    }
    let mut rows = vec![
        row(&w, "households in scope", "count", households as f64),
        row(&w, "visits", "count", visits_total as f64),
        row(&w, "seed + push (setup)", "s", secs(t)),
    ];

    let q = report::MonthlyQuery {
        month: MONTH.parse().map_err(anyhow::Error::msg)?,
        area: None,
        grouping: Grouping::Posyandu,
    };
    let ((cold, stats), wall, cpu_s) = timed(|| Ok(report::monthly(&db, &pkm, &q, today)?))?;
    rows.push(row(
        &w,
        "first report (all projections built from documents)",
        "s",
        wall,
    ));
    rows.push(row(&w, "first report, CPU", "s", cpu_s));
    anyhow::ensure!(stats.refreshed == households && cold.total.households > 0);
    let mut warm = Vec::new();
    for _ in 0..3 {
        let ((r, stats), wall, cpu_s) = timed(|| Ok(report::monthly(&db, &pkm, &q, today)?))?;
        warm.push((wall, cpu_s));
        anyhow::ensure!(stats.refreshed == 0 && r == cold, "warm report differs");
    }
    warm.sort_by(|a, b| a.0.total_cmp(&b.0));
    rows.push(row(
        &w,
        "report, projections fresh (median of 3)",
        "s",
        warm[1].0,
    ));
    rows.push(row(&w, "report, projections fresh, CPU", "s", warm[1].1));
    let (_, wall, cpu_s) = timed(|| Ok(report::refresh(&db, None)?))?;
    rows.push(row(
        &w,
        "of which: read + decode the projections",
        "s",
        wall,
    ));
    rows.push(row(&w, "of which: read + decode, CPU", "s", cpu_s));

    // A day's work: one new visit in 1 % of the households.
    let mut changed = 0;
    for doc in &mut sample {
        let v = doc.read()?;
        let Some(m) = v.members.first() else { continue };
        // The kader's next device session (a fresh actor, as after a reinstall).
        doc.set_actor(automerge::ActorId::random());
        let written = doc.add_visit(
            &NewVisit {
                member_id: m.id,
                date: today,
                weight_kg: Some(60.0),
                ..Default::default()
            },
            &kunjung_core::CommitMeta {
                user: "bench".into(),
                time_ms: today
                    .and_hms_opt(12, 0, 0)
                    .context("time")?
                    .and_utc()
                    .timestamp_millis(),
            },
        )?;
        let change = written.change.context("visit change")?;
        let g = HouseholdChanges {
            household_id: doc.id()?,
            changes: vec![ByteBuf::from(change.raw_bytes().to_vec())],
        };
        let out = db.tx(true, |t| sync::push(t, &admin, &[g]))?;
        anyhow::ensure!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
        changed += out.stored;
    }
    anyhow::ensure!(changed > 0, "no household changed");
    let t = Instant::now();
    let (_, stats) = report::monthly(&db, &pkm, &q, today)?;
    rows.push(row(
        &w,
        &format!("report after 1 % changed ({} rebuilt)", stats.refreshed),
        "s",
        secs(t),
    ));
    let t = Instant::now();
    let (pairs, _) = report::duplicates(&db, &pkm, None)?;
    rows.push(row(&w, "duplicate check (fresh)", "s", secs(t)));
    rows.push(row(
        &w,
        "suspected duplicate pairs",
        "count",
        pairs.len() as f64,
    ));

    // The same report over HTTP, with a real login.
    let rt = tokio::runtime::Runtime::new()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let app = kunjung_sync_server::http::router(kunjung_sync_server::http::AppState::new(
        Db::open(&url)?,
    )?);
    rt.spawn(async move { axum::serve(listener, app).await });
    let c = reqwest::blocking::Client::new();
    let login: serde_json::Value = c
        .post(format!("http://{addr}/v1/login"))
        .header(kunjung_protocol::VERSION_HEADER, "1")
        .json(&serde_json::json!({"username": "pkm", "password": "kata-sandi-1", "device_id": "bench"}))
        .send()?
        .json()?;
    let token = login["token"].as_str().context("token")?;
    let t = Instant::now();
    let resp = c
        .get(format!(
            "http://{addr}/v1/reports/monthly?month={MONTH}&by=posyandu"
        ))
        .header(kunjung_protocol::VERSION_HEADER, "1")
        .bearer_auth(token)
        .send()?;
    anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
    let body = resp.bytes()?;
    rows.push(row(&w, "GET /v1/reports/monthly over HTTP", "s", secs(t)));
    rows.push(row(
        &w,
        "report response size",
        "KB",
        body.len() as f64 / 1024.0,
    ));

    // Where the decode time goes.
    let blobs: Vec<Vec<u8>> = db
        .tx(false, |t| t.query("SELECT view FROM report_views", &[]))?
        .into_iter()
        .map(|mut r| std::mem::replace(&mut r[0], kunjung_sync_server::db::Value::Null).into_blob())
        .collect();
    let (jsons, wall, _) = timed(|| {
        blobs
            .iter()
            .map(|b| Ok(zstd::stream::decode_all(b.as_slice())?))
            .collect::<Result<Vec<Vec<u8>>>>()
    })?;
    rows.push(row(&w, "profile: zstd only", "s", wall));
    let (_, wall, _) = timed(|| {
        for j in &jsons {
            let _: serde_json::Value = serde_json::from_slice(j)?;
        }
        Ok(())
    })?;
    rows.push(row(&w, "profile: JSON parse to Value", "s", wall));
    let (_, wall, _) = timed(|| {
        for j in &jsons {
            let _: kunjung_core::HouseholdView = serde_json::from_slice(j)?;
        }
        Ok(())
    })?;
    rows.push(row(&w, "profile: JSON to HouseholdView", "s", wall));
    let size = db.tx(false, |t| {
        t.query("SELECT sum(length(view)) FROM report_views", &[])
    })?;
    let bytes = size[0][0].int() as f64;
    rows.push(row(
        &w,
        "projection size per household",
        "KB",
        bytes / households as f64 / 1024.0,
    ));
    print_table(&rows);
    let kn = cold
        .total
        .indicator("kn_lengkap")
        .map(|i| (i.numerator, i.denominator));
    eprintln!(
        "bench-report: {MONTH} KN lengkap {kn:?}; {} groups",
        cold.groups.len()
    );
    Ok(())
}
