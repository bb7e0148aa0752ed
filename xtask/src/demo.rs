//! `cargo xtask demo`: the sync server on its embedded SQLite default with a seeded demo
//! area (Kabupaten Purwakarta, four desa) and an account for each role, plus the app signed
//! in as a demo kader. Stops the server when the app window closes (or on Ctrl-C when there
//! is no display).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::sh;

/// Demo accounts: (username, role, scope flag, scope value, password).
const ACCOUNTS: &[(&str, &str, &str, &str, &str)] = &[
    ("admin", "admin", "", "", "admin-demo-2026"),
    (
        "kader-mawar",
        "kader",
        "--posyandu",
        "psy-sukamaju-mawar",
        "kader-demo-2026",
    ),
    (
        "kader-melati",
        "kader",
        "--posyandu",
        "psy-sukamaju-melati",
        "kader-demo-2026",
    ),
    (
        "bidan-sukamaju",
        "bidan",
        "--area",
        "32.14.01.2001",
        "bidan-demo-2026",
    ),
    (
        "puskesmas-purwakarta",
        "puskesmas",
        "--area",
        "32.14.01",
        "puskesmas-demo-2026",
    ),
];
const KADER: &str = "kader-mawar";
const KADER_PIN: &str = "123456";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kunjung(bin: &Path, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut all = vec!["--data", data.to_str().context("path")?];
    all.extend_from_slice(args);
    sh::run(bin.to_str().context("path")?, &all, env)
}

/// Builds the app with the UI embedded (release).
fn build_app(root: &Path, target: &Path) -> Result<std::path::PathBuf> {
    sh::apt_install(&[
        "libwebkit2gtk-4.1-dev",
        "libxdo-dev",
        "libayatana-appindicator3-dev",
        "librsvg2-dev",
    ])?;
    let ui = root.join("ui");
    let ui_s = ui.to_str().context("path")?;
    sh::run(
        "npm",
        &["--prefix", ui_s, "ci", "--no-audit", "--no-fund"],
        &[],
    )?;
    sh::run("npm", &["--prefix", ui_s, "run", "build"], &[])?;
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
    )?;
    Ok(target.join("release/kunjung-app"))
}

pub fn run(args: &[String]) -> Result<()> {
    let households: usize = args
        .iter()
        .position(|a| a == "--households")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let no_app = args.iter().any(|a| a == "--no-app");
    let root = sh::root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    sh::apt_install(&["build-essential", "pkg-config", "libssl-dev"])?;
    sh::run(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "kunjung-client",
            "-p",
            "kunjung-sync-server",
        ],
        &[],
    )?;
    let app = if no_app {
        None
    } else {
        Some(build_app(&root, &target)?)
    };
    let (kunjung_bin, server_bin) = (
        target.join("release/kunjung"),
        target.join("release/kunjung-server"),
    );
    let demo = root.join("target/demo");
    if demo.exists() {
        std::fs::remove_dir_all(&demo)?;
    }
    std::fs::create_dir_all(&demo)?;
    let db = format!("sqlite:{}", demo.join("server.db").display());

    for (user, role, flag, value, password) in ACCOUNTS {
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
            a.extend([*flag, *value]);
        }
        sh::run(
            server_bin.to_str().context("path")?,
            &a,
            &[("KUNJUNG_PASSWORD", password)],
        )?;
    }
    let mut child = Command::new(&server_bin)
        .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .context("start kunjung-server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let server = Server(child);
    let mut url = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(u) = line.strip_prefix("listening on ") {
            url = u.trim().to_string();
            break;
        }
    }
    if url.is_empty() {
        bail!("kunjung-server did not report its address");
    }

    // The admin seeds the demo area and pushes it to the server.
    let admin = demo.join("admin");
    kunjung(&kunjung_bin, &admin, &["init", "--user", "admin"], &[])?;
    let n = households.to_string();
    kunjung(
        &kunjung_bin,
        &admin,
        &["demo-seed", "--households", &n],
        &[],
    )?;
    kunjung(
        &kunjung_bin,
        &admin,
        &["sync", "--server", &url, "--user", "admin"],
        &[("KUNJUNG_PASSWORD", ACCOUNTS[0].4)],
    )?;
    // The kader's device: encrypted with her PIN, first sync pulls her posyandu.
    let kader = demo.join("kader");
    kunjung(
        &kunjung_bin,
        &kader,
        &["init", "--encrypt", "--user", KADER],
        &[("KUNJUNG_PIN", KADER_PIN)],
    )?;
    let pin = [
        ("KUNJUNG_PIN", KADER_PIN),
        ("KUNJUNG_PASSWORD", ACCOUNTS[1].4),
    ];
    kunjung(
        &kunjung_bin,
        &kader,
        &["sync", "--server", &url, "--user", KADER],
        &pin,
    )?;
    kunjung(
        &kunjung_bin,
        &kader,
        &["setting", "set", "server", &url],
        &pin,
    )?;
    kunjung(
        &kunjung_bin,
        &kader,
        &["setting", "set", "account", KADER],
        &pin,
    )?;

    println!("\n== Kunjung demo ==");
    println!(
        "Server: {url}  (SQLite: {})",
        demo.join("server.db").display()
    );
    println!("Accounts (username / role / password):");
    for (user, role, _, value, password) in ACCOUNTS {
        println!("  {user:<22} {role:<10} {password:<20} {value}");
    }
    println!("Kader device: {} (PIN {KADER_PIN})", kader.display());
    println!(
        "CLI: KUNJUNG_PIN={KADER_PIN} {} --data {} household list --limit 5",
        kunjung_bin.display(),
        kader.display()
    );
    match app {
        Some(app)
            if std::env::var_os("DISPLAY").is_some()
                || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
        {
            println!(
                "Opening the app as {KADER} (PIN {KADER_PIN}); close its window to stop the demo."
            );
            let status = Command::new(&app)
                .arg(format!("--data={}", kader.display()))
                .status()
                .context("start the app")?;
            eprintln!("xtask: app exited ({status}); stopping the server");
        }
        _ => {
            println!("No display (or --no-app): the server keeps running; press Ctrl-C to stop.");
            let mut s = server;
            let _ = s.0.wait();
            return Ok(());
        }
    }
    drop(server);
    Ok(())
}
