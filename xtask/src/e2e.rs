//! `cargo xtask e2e`: end-to-end tests of the real Tauri app.
//!
//! Installs what they need (Debian packages for WebKitGTK, WebKitWebDriver and Xvfb;
//! `tauri-driver` from crates.io; the UI's npm packages), checks that the TypeScript
//! bindings are fresh and the UI type-checks, builds the UI and the app with the UI
//! embedded (`--features custom-protocol`) and the sync server, then drives the app through
//! tauri-driver under Xvfb with `ui/e2e/app.e2e.mjs` (which starts and stops the server).
//! Phone-size screenshots land in `target/e2e-screenshots/`.
//!
//! `--no-build` skips the checks and builds (re-run the flow on the last build).
//!
//! Robust on a busy machine: Xvfb picks its own display, tauri-driver and WebKitWebDriver
//! run on free ports (chosen by the script), every wait in the script ends on a condition
//! (with a generous time-out, `E2E_TIMEOUT_MS`), the whole flow has a deadline
//! (`E2E_FLOW_TIMEOUT_S`), and every process it started is ended by process group.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sh;

/// Debian packages the app and its end-to-end tests need.
pub(crate) const PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "libwebkit2gtk-4.1-dev",
    "libxdo-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "webkit2gtk-driver",
    "xvfb",
    "locales",
    "nodejs",
    "npm",
];

const TAURI_DRIVER_VERSION: &str = "2.1.0";

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// [`PACKAGES`] less Node and npm when an npm is already on the PATH: they may come from
/// elsewhere (nvm, the machine image), and Debian's npm then conflicts with that Node.
pub fn packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| !(matches!(*p, "nodejs" | "npm") && has("npm")))
        .collect()
}

fn has(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tauri-driver`, installed with cargo when missing.
pub(crate) fn tauri_driver() -> Result<String> {
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

/// The Indonesian locale, so WebKit shows dates (and the date inputs' field order) as in
/// Indonesia; generated once when the machine does not have it. Not fatal: the UI also
/// writes each chosen date out in Indonesian next to its input.
pub(crate) fn ensure_locale() {
    let have = sh::output("locale", &["-a"]).unwrap_or_default();
    if have.lines().any(|l| l.eq_ignore_ascii_case("id_ID.utf8")) {
        return;
    }
    if let Err(e) = sh::run(
        "localedef",
        &["-i", "id_ID", "-f", "UTF-8", "id_ID.UTF-8"],
        &[],
    ) {
        eprintln!("xtask: no id_ID.UTF-8 locale ({e}); date inputs follow the C locale");
    }
}

/// How long the whole flow may take before it is ended (E2E_FLOW_TIMEOUT_S, default 20
/// minutes: a passing run takes a few minutes even on a cold, busy 2-core machine).
fn flow_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("E2E_FLOW_TIMEOUT_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20 * 60),
    )
}

/// Ends a process group (`kill -SIG -PGID`); errors (already gone) are ignored.
fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// A headless X server on a display it picks itself (`-displayfd`), so runs side by side
/// never race for a display number (as `xvfb-run -a` can). Ended on drop.
pub(crate) struct Xvfb {
    child: Child,
    pub(crate) display: String,
}

impl Xvfb {
    pub(crate) fn start() -> Result<Xvfb> {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x1024x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start Xvfb")?;
        let mut line = String::new();
        let out = child.stdout.take().context("Xvfb stdout")?;
        // Xvfb writes the display number once it accepts connections.
        BufReader::new(out).read_line(&mut line)?;
        let n = line.trim();
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Xvfb did not start (it printed {line:?})");
        }
        Ok(Xvfb {
            display: format!(":{n}"),
            child,
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the flow script in its own process group with a deadline; whatever happens, the
/// script's processes and the WebDriver/app group it reports in `driver.pgid` are ended.
pub(crate) fn run_flow(script: &Path, env: &[(&str, &str)], work: &Path) -> Result<()> {
    let timeout = flow_timeout();
    eprintln!(
        "xtask: $ node {} (time-out {} s)",
        script.display(),
        timeout.as_secs()
    );
    let mut child = Command::new("node")
        .arg(script)
        .envs(env.iter().copied())
        .process_group(0)
        .spawn()
        .context("cannot start node")?;
    let pgid = child.id();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = match status {
        Some(st) => st,
        None => {
            // SIGTERM first: the script's handler ends tauri-driver, WebKitWebDriver and the
            // app; then whatever is left gets SIGKILL.
            kill_group(pgid, "-TERM");
            let grace = Instant::now() + Duration::from_secs(10);
            while child.try_wait()?.is_none() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(100));
            }
            kill_group(pgid, "-KILL");
            let _ = child.wait();
            cleanup_driver(work);
            bail!("the e2e flow did not finish within {} s", timeout.as_secs());
        }
    };
    // Whatever the script left in its group (the sync server); the script itself ended the
    // driver group (its exit handler runs on success and failure alike).
    kill_group(pgid, "-KILL");
    if !status.success() {
        bail!("the e2e flow failed: {status}");
    }
    Ok(())
}

/// Ends the tauri-driver process groups the script recorded (left over only when the
/// script itself had to be killed).
fn cleanup_driver(work: &Path) {
    if let Ok(s) = std::fs::read_to_string(work.join("driver.pgid")) {
        for pgid in s.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            kill_group(pgid, "-KILL");
        }
    }
}

/// `cargo xtask e2e [--no-build]`. `from_test`: called by `cargo xtask test`, which has
/// already run the app's unit and binding tests with the workspace.
pub fn run(args: &[String]) -> Result<()> {
    run_with(args, false)
}

pub fn run_with(args: &[String], from_test: bool) -> Result<()> {
    let no_build = args.iter().any(|a| a == "--no-build");
    let root = sh::root();
    let ui = root.join("ui");
    let ui_s = ui.to_string_lossy().to_string();
    let started = Instant::now();
    sh::apt_install(&packages())?;
    ensure_locale();
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
        // Bindings fresh (ts-rs) and the app's unit tests (already run by `cargo xtask
        // test`); then the UI type-checks.
        if !from_test {
            sh::run("cargo", &["test", "-p", "kunjung-app"], &[])?;
        }
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
    let exports = work.join("exports").to_string_lossy().to_string();
    let flow = Instant::now();
    let xvfb = Xvfb::start()?;
    let r = run_flow(
        &script,
        &[
            ("DISPLAY", &xvfb.display),
            ("APP_BIN", &app_s),
            ("SERVER_BIN", &server.to_string_lossy()),
            ("SHOTS", &shots_s),
            ("WORK", &work_s),
            ("TAURI_DRIVER", &driver),
            ("KUNJUNG_SYNC_MAX_BACKOFF_MS", "2000"),
            ("KUNJUNG_EXPORT_DIR", &exports),
            ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
            // Without a desktop session the default GTK input method blocks when a text
            // field takes focus, and WebKitWebDriver with it.
            ("GTK_IM_MODULE", "gtk-im-context-simple"),
            // Dates, numbers and the date inputs' field order as in Indonesia.
            ("LANG", "id_ID.UTF-8"),
            ("LC_ALL", ""),
            ("TZ", "Asia/Jakarta"),
        ],
        &work,
    );
    drop(xvfb);
    r?;
    eprintln!(
        "xtask: e2e passed (flow {:.0} s, total {:.0} s); screenshots in {}",
        flow.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    Ok(())
}
