//! The `kunjung` command-line contract, tried as a user would, and the kill -9 crash test,
//! all on the real binary and real SQLite files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kunjung");

fn kunjung(data: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KUNJUNG_PIN")
        .output()
        .expect("run kunjung");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(data: &Path, args: &[&str]) -> Value {
    let (ok, v, err) = kunjung(data, args);
    assert!(ok, "kunjung {args:?} failed: {err}");
    v
}

#[test]
fn cli_contract_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["init"]);
    let h = ok(
        d,
        &[
            "household",
            "add",
            "--area",
            "32.14.01.2001",
            "--rt",
            "003",
            "--rw",
            "001",
            "--dusun",
            "Krajan",
            "--posyandu",
            "psy-1",
            "--address",
            "Jl. Melati 5",
        ],
    );
    let hid = h["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&hid).unwrap().get_version_num(), 7);
    let mother = ok(
        d,
        &[
            "member",
            "add",
            "--household",
            &hid,
            "--name",
            "Siti Aminah",
            "--sex",
            "F",
            "--birth-date",
            "1994-05-12",
            "--nik",
            "3214015205940001",
            "--relation",
            "spouse",
        ],
    );
    let mid = mother["id"].as_str().unwrap().to_string();
    let baby = ok(
        d,
        &[
            "member",
            "add",
            "--household",
            &hid,
            "--name",
            "Rizki",
            "--sex",
            "M",
            "--birth-date",
            "2026-06-01",
            "--relation",
            "child",
            "--mother",
            &mid,
        ],
    );
    let bid = baby["id"].as_str().unwrap().to_string();
    let answers = d.join("answers.json");
    std::fs::write(&answers, r#"{"exclusive_breastfeeding": true, "imm_bcg": "2026-07-01", "item_from_newer_app": "ya"}"#).unwrap();
    let v = ok(
        d,
        &[
            "visit",
            "add",
            "--member",
            &bid,
            "--date",
            "2026-11-01",
            "--weight-kg",
            "7.9",
            "--height-cm",
            "66.5",
            "--measured",
            "lying",
            "--answers",
            answers.to_str().unwrap(),
            "--danger",
            "inf_fast_breathing",
            "--refer",
            "napas cepat",
        ],
    );
    assert!(v["referral_id"].is_string());

    let show = ok(d, &["household", "show", &hid]);
    assert_eq!(show["members"].as_array().unwrap().len(), 2);
    let visit = &show["visits"][0];
    assert_eq!(visit["weight_kg"], 7.9);
    assert_eq!(visit["stage"], "infant");
    assert_eq!(visit["answers"]["item_from_newer_app"], "ya");
    assert_eq!(show["referrals"][0]["status"], "open");
    assert!(show["conflicts"].as_array().unwrap().is_empty());

    let list = ok(d, &["household", "list", "--area", "32.14.01"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        ok(d, &["household", "list", "--area", "32.15"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let hits = ok(d, &["search", "siti", "--limit", "5"]);
    assert_eq!(hits[0]["member_id"], mid.as_str());
    assert_eq!(hits[0]["household_id"], hid.as_str());
    assert_eq!(hits[0]["area_code"], "32.14.01.2001");
    let history = ok(d, &["history", &hid]);
    let whats: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["what"].as_str())
        .collect();
    assert_eq!(whats[0], "household.create");
    assert!(whats.iter().any(|w| w.starts_with("visit.add")));
    assert!(history[0]["actor"].as_str().unwrap().len() == 32);

    // The bidan answers the referral; the cadre sees the feedback.
    let rid = show["referrals"][0]["id"].as_str().unwrap().to_string();
    ok(
        d,
        &[
            "referral",
            "update",
            &rid,
            "--status",
            "examined",
            "--feedback",
            "Sudah diperiksa, rawat jalan",
        ],
    );
    let refs = ok(d, &["referral", "list"]);
    assert_eq!(refs[0]["feedback"], "Sudah diperiksa, rawat jalan");

    // Rebuild gives the same lists.
    let before = ok(d, &["household", "list"]);
    ok(d, &["store", "rebuild"]);
    assert_eq!(ok(d, &["household", "list"]), before);
    assert_eq!(ok(d, &["store", "check"])["ok"], true);
}

#[test]
fn cli_errors_are_clear_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (success, _, err) = kunjung(d, &["household", "list"]);
    assert!(!success);
    assert!(err.contains("kunjung init"), "{err}");
    ok(d, &["init"]);
    let hid = ok(
        d,
        &[
            "household",
            "add",
            "--area",
            "32.14.01.2001",
            "--rt",
            "3",
            "--rw",
            "1",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mid = ok(
        d,
        &[
            "member",
            "add",
            "--household",
            &hid,
            "--name",
            "Ani",
            "--sex",
            "F",
            "--birth-date",
            "2000-01-01",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = ok(d, &["household", "show", &hid]);
    for (args, needle) in [
        (
            vec![
                "household",
                "add",
                "--area",
                "32.14",
                "--rt",
                "3",
                "--rw",
                "1",
            ],
            "PP.KK.CC.DDDD",
        ),
        (
            vec![
                "member",
                "add",
                "--household",
                &hid,
                "--name",
                "X",
                "--sex",
                "Q",
                "--birth-date",
                "2000-01-01",
            ],
            "F atau M",
        ),
        (
            vec![
                "visit",
                "add",
                "--member",
                &mid,
                "--date",
                "2026-01-01",
                "--weight-kg",
                "0",
            ],
            "berat badan",
        ),
        (
            vec![
                "visit",
                "add",
                "--member",
                &mid,
                "--date",
                "2026-01-01",
                "--danger",
                "bogus",
            ],
            "tanda bahaya",
        ),
        (
            vec!["visit", "add", "--member", &mid, "--date", "1999-01-01"],
            "sebelum tanggal lahir",
        ),
        (
            vec![
                "visit",
                "add",
                "--member",
                &mid,
                "--date",
                "2026-01-01",
                "--answers",
                "/nonexistent.json",
            ],
            "tidak bisa membaca",
        ),
        (
            vec!["household", "show", "01900000-0000-7000-8000-000000000000"],
            "tidak ditemukan",
        ),
    ] {
        let (success, _, err) = kunjung(d, &args);
        assert!(!success, "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.starts_with("kunjung: "), "{err}");
    }
    let bad = d.join("bad.json");
    std::fs::write(&bad, r#"{"buku_kia": "mungkin"}"#).unwrap();
    let (success, _, err) = kunjung(
        d,
        &[
            "visit",
            "add",
            "--member",
            &mid,
            "--date",
            "2026-01-01",
            "--answers",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!success && err.contains("buku_kia"), "{err}");
    assert_eq!(ok(d, &["household", "show", &hid]), before);
}

#[test]
fn encrypted_store_via_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |pin: Option<&str>, args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("--data").arg(d).args(args);
        match pin {
            Some(p) => c.env("KUNJUNG_PIN", p),
            None => c.env_remove("KUNJUNG_PIN"),
        };
        c.output().unwrap()
    };
    assert!(!run(None, &["init", "--encrypt"]).status.success());
    assert!(run(Some("135790"), &["init", "--encrypt"]).status.success());
    let out = run(
        Some("135790"),
        &[
            "household",
            "add",
            "--area",
            "32.14.01.2001",
            "--rt",
            "1",
            "--rw",
            "1",
            "--address",
            "Gang Kenanga",
        ],
    );
    assert!(out.status.success());
    let wrong = run(Some("000000"), &["household", "list"]);
    assert!(!wrong.status.success());
    assert_eq!(
        String::from_utf8_lossy(&wrong.stderr).trim(),
        "kunjung: PIN salah (wrong PIN)"
    );
    let none = run(None, &["household", "list"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("KUNJUNG_PIN"));
    let good = run(Some("135790"), &["search", "kenanga"]);
    let hits: Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 1);
}

#[test]
fn growth_cli() {
    let dir = tempfile::tempdir().unwrap();
    let g = ok(
        dir.path(),
        &[
            "growth",
            "--sex",
            "F",
            "--birth-date",
            "2025-01-01",
            "--date",
            "2026-01-01",
            "--weight-kg",
            "8.9",
            "--length-cm",
            "74.0",
            "--measured",
            "lying",
        ],
    );
    assert_eq!(g["age_days"], 365);
    assert!(g["weight_for_age"]["z"].is_number());
    assert!(g["weight_for_age"]["category"].is_string());
    let none = ok(
        dir.path(),
        &[
            "growth",
            "--sex",
            "M",
            "--birth-date",
            "2025-01-01",
            "--date",
            "2026-01-01",
            "--weight-kg",
            "9",
        ],
    );
    assert!(none["length_height_for_age"].is_null());
    let (success, _, err) = kunjung(
        dir.path(),
        &[
            "growth",
            "--sex",
            "M",
            "--birth-date",
            "2025-01-01",
            "--date",
            "2026-01-01",
            "--weight-kg",
            "0",
        ],
    );
    assert!(!success && err.contains("kunjung: "), "{err}");
}

#[test]
fn demo_seed_is_deterministic() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [a.path(), b.path()] {
        ok(d, &["init"]);
        let r = ok(
            d,
            &[
                "demo-seed",
                "--households",
                "30",
                "--seed",
                "9",
                "--today",
                "2026-10-01",
            ],
        );
        assert_eq!(r["households"], 30);
        assert!(r["visits"].as_u64().unwrap() > 200);
    }
    let la = ok(a.path(), &["household", "list"]);
    assert_eq!(la, ok(b.path(), &["household", "list"]));
    let first = la[0]["id"].as_str().unwrap();
    assert_eq!(
        ok(a.path(), &["household", "show", first]),
        ok(b.path(), &["household", "show", first])
    );
    // All life stages are present.
    for stage in [
        "pregnancy",
        "infant",
        "toddler",
        "school_adolescent",
        "adult",
        "elderly",
    ] {
        let n = ok(a.path(), &["household", "list", "--stage", stage])
            .as_array()
            .unwrap()
            .len();
        assert!(n > 0, "no household with a member in {stage}");
    }
}

/// A real child process writing in a loop is killed with SIGKILL at random moments, many
/// times. After each kill the store must open, every write the child acknowledged must be
/// there, nothing duplicated, and projections must match documents.
#[test]
fn kill_9_never_loses_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["init"]);
    let hid = ok(
        d,
        &[
            "household",
            "add",
            "--area",
            "32.14.01.2001",
            "--rt",
            "1",
            "--rw",
            "1",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut acked_visits = std::collections::HashSet::new();
    let mut acked_members = std::collections::HashSet::new();
    let mut last_edit: std::collections::HashMap<String, String> = Default::default();
    let mut landed: std::collections::HashSet<String> = Default::default();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let rounds = 25;
    for round in 0..rounds {
        let mut child = Command::new(BIN)
            .arg("--data")
            .arg(d)
            .args(["debug-write-loop", "--household", &hid])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Kill after a number of acknowledged writes (0..40) plus a random sub-write delay.
        let after = (seed % 40) as usize;
        let delay_us = (seed >> 8) % 3000;
        let mut reader = BufReader::new(stdout);
        let mut seen = 0;
        let mut line = String::new();
        while seen < after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            record(&line, &mut acked_visits, &mut acked_members, &mut last_edit);
            seen += 1;
        }
        std::thread::sleep(Duration::from_micros(delay_us));
        child.kill().unwrap();
        // Lines written before the kill were acknowledged too.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        for l in rest.lines() {
            record(l, &mut acked_visits, &mut acked_members, &mut last_edit);
        }
        child.wait().unwrap();

        let show = ok(d, &["household", "show", &hid]);
        let visits: Vec<String> = show["visits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
        let unique: std::collections::HashSet<_> = visits.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            visits.len(),
            "round {round}: duplicated visits"
        );
        for v in &acked_visits {
            assert!(
                unique.contains(v),
                "round {round}: acknowledged visit {v} lost"
            );
        }
        let members: std::collections::HashMap<String, String> = show["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for m in &acked_members {
            assert!(
                members.contains_key(m),
                "round {round}: acknowledged member {m} lost"
            );
        }
        // At most the one write in flight at the kill may have landed unacknowledged.
        let new_unacked: Vec<&String> = unique
            .iter()
            .filter(|v| !acked_visits.contains(*v) && !landed.contains(*v))
            .collect();
        assert!(
            new_unacked.len() <= 1,
            "round {round}: unacknowledged visits appeared: {new_unacked:?}"
        );
        landed.extend(unique.iter().cloned());
        for (m, name) in &last_edit {
            let now = &members[m];
            let num = |s: &str| s.trim_start_matches("Ubah ").parse::<usize>().unwrap_or(0);
            assert!(
                now == name || (now.starts_with("Ubah ") && num(now) > num(name)),
                "round {round}: edit of {m} lost: {now} vs {name}"
            );
        }
        assert_eq!(
            ok(d, &["store", "check"])["ok"],
            true,
            "round {round}: projections out of step"
        );
    }
    assert!(
        acked_visits.len() > 50,
        "the test should have written a fair amount"
    );
}

fn record(
    line: &str,
    visits: &mut std::collections::HashSet<String>,
    members: &mut std::collections::HashSet<String>,
    edits: &mut std::collections::HashMap<String, String>,
) {
    let mut parts = line.trim().splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("visit"), Some(id), _) => {
            visits.insert(id.to_string());
        }
        (Some("member"), Some(id), _) => {
            members.insert(id.to_string());
        }
        (Some("edit"), Some(id), Some(name)) => {
            edits.insert(id.to_string(), name.to_string());
        }
        _ => {}
    }
}
