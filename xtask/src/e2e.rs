//! `cargo xtask e2e`: end-to-end tests of the real Tauri app.
//!
//! Installs what they need (Debian packages for WebKitGTK, WebKitWebDriver and Xvfb;
//! `tauri-driver` from crates.io; the UI's npm packages), checks that the TypeScript
//! bindings are fresh and the UI type-checks, builds the UI and the app with the UI
//! embedded (`--features custom-protocol`) and the sync server, then drives the app through
//! tauri-driver under Xvfb with `ui/e2e/app.e2e.mjs` (which starts and stops the server). Phone-size screenshots land in `target/e2e-screenshots/`.
//!
//! `--no-build` skips the checks and builds (re-run the flow on the last build).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sh;

/// Debian packages the app and its end-to-end tests need.
const PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "libwebkit2gtk-4.1-dev",
    "libxdo-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "webkit2gtk-driver",
    "xvfb",
    "xauth",
    "nodejs",
    "npm",
];

const TAURI_DRIVER_VERSION: &str = "2.1.0";

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn has(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tauri-driver`, installed with cargo when missing.
fn tauri_driver() -> Result<String> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("no CARGO_HOME or HOME")?;
    let bin = home.join("bin/tauri-driver");
    if !bin.exists() {
        sh::run(
            "cargo",
            &[
                "install",
                "tauri-driver",
                "--version",
                TAURI_DRIVER_VERSION,
                "--locked",
            ],
            &[],
        )?;
    }
    Ok(bin.to_string_lossy().into_owned())
}

pub fn run(args: &[String]) -> Result<()> {
    let no_build = args.iter().any(|a| a == "--no-build");
    let root = sh::root();
    let ui = root.join("ui");
    let ui_s = ui.to_string_lossy().to_string();
    let started = std::time::Instant::now();
    // Node and npm may come from elsewhere (nvm, the machine image): only install when absent.
    let pkgs: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !(matches!(*p, "nodejs" | "npm") && has("npm")))
        .collect();
    sh::apt_install(&pkgs)?;
    let driver = tauri_driver()?;
    let target = target_dir(&root);
    let app = target.join("debug/kunjung-app");
    if !no_build {
        sh::run(
            "npm",
            &["--prefix", &ui_s, "ci", "--no-audit", "--no-fund"],
            &[],
        )?;
        sh::run("npm", &["--prefix", &ui_s, "run", "build"], &[])?;
        // Bindings fresh (ts-rs) and the app's unit tests; then the UI type-checks.
        sh::run("cargo", &["test", "-p", "kunjung-app"], &[])?;
        sh::run("npm", &["--prefix", &ui_s, "run", "check"], &[])?;
        sh::run(
            "cargo",
            &[
                "build",
                "-p",
                "kunjung-app",
                "--features",
                "custom-protocol",
            ],
            &[],
        )?;
        sh::run("cargo", &["build", "-p", "kunjung-sync-server"], &[])?;
    }
    let server = target.join("debug/kunjung-server");
    if !app.exists() || !server.exists() {
        bail!("the app or the sync server is missing: run without --no-build");
    }
    let shots = root.join("target/e2e-screenshots");
    let work = target.join("e2e-work");
    let script = ui.join("e2e/app.e2e.mjs");
    let (app_s, shots_s, work_s) = (
        app.to_string_lossy().to_string(),
        shots.to_string_lossy().to_string(),
        work.to_string_lossy().to_string(),
    );
    let flow = std::time::Instant::now();
    sh::run(
        "xvfb-run",
        &[
            "-a",
            "-s",
            "-screen 0 1280x1024x24",
            "node",
            &script.to_string_lossy(),
        ],
        &[
            ("APP_BIN", &app_s),
            ("SERVER_BIN", &server.to_string_lossy()),
            ("SHOTS", &shots_s),
            ("WORK", &work_s),
            ("TAURI_DRIVER", &driver),
            ("KUNJUNG_SYNC_MAX_BACKOFF_MS", "2000"),
            ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
            // Without a desktop session the default GTK input method blocks when a text
            // field takes focus, and WebKitWebDriver with it.
            ("GTK_IM_MODULE", "gtk-im-context-simple"),
        ],
    )?;
    eprintln!(
        "xtask: e2e passed (flow {:.0} s, total {:.0} s); screenshots in {}",
        flow.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    Ok(())
}
