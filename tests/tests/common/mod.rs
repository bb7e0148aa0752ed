//! Helpers shared by the multi-device and reliability tests (sync, faults, crash safety):
//! a real `kunjung-server` process on port 0, devices with their own real store, and
//! small HTTP helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kunjung_client::sync::{sync, SyncOptions, SyncSummary};
use kunjung_core::checklist::AnswerValue;
use kunjung_core::{FieldEdit, NewHousehold, NewMember, NewVisit, Sex};
use kunjung_store::Store;
use uuid::Uuid;

pub const DESA_A: &str = "32.14.01.2001";
pub const DESA_A2: &str = "32.14.01.2002";
pub const DESA_B: &str = "32.15.01.2001";
pub const PASSWORD: &str = "kata-sandi-uji";
/// The scrape token the test servers accept on `/metrics` (`KUNJUNG_METRICS_TOKEN`).
pub const METRICS_TOKEN: &str = "token-metrik-uji-0123456789";

/// A binary of this build's profile (built once if missing: in the profile of the test
/// binary, so a release test run gets release binaries).
fn built_bin(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir.join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", name])
            .arg("--target-dir")
            .arg(profile_dir.parent().unwrap());
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building {name} failed");
    }
    bin
}

/// The `kunjung-server` binary of this build (built once if missing).
pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("kunjung-sync-server", "kunjung-server"))
}

/// The `kunjung` binary of this build (built once if missing).
pub fn client_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("kunjung-client", "kunjung"))
}

/// A server process on a database, bound to port 0.
pub struct Server {
    pub db: String,
    pub child: Option<Child>,
    pub url: String,
    /// Extra environment of the server process.
    pub env: Vec<(String, String)>,
}

impl Server {
    pub fn start(db: &str) -> Server {
        Server::start_with(db, &[])
    }

    /// [`Server::start`] with extra environment variables for the server process.
    pub fn start_with(db: &str, env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            db: db.to_string(),
            child: None,
            url: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        self.restart_on("127.0.0.1:0");
    }

    /// Starts the server again on `listen` (e.g. the address it had before).
    pub fn restart_on(&mut self, listen: &str) {
        let mut child = Command::new(server_bin())
            .args(["--db", &self.db, "serve", "--listen", listen])
            .env("RUST_LOG", "warn")
            .env("KUNJUNG_METRICS_TOKEN", METRICS_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected server output: {line:?}"));
        self.url = addr.to_string();
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn admin(&self, args: &[&str]) {
        let out = Command::new(server_bin())
            .args(["--db", &self.db])
            .args(args)
            .env("KUNJUNG_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn add_user(&self, name: &str, role: &str, scope: &[&str]) {
        let mut args = vec!["user", "add", "--username", name, "--role", role];
        for s in scope {
            args.push(if role == "kader" {
                "--posyandu"
            } else {
                "--area"
            });
            args.push(s);
        }
        self.admin(&args);
    }

    pub fn metric(&self, name: &str) -> i64 {
        let text = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", self.url))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn sqlite_db(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("server.db").display())
}

/// The PostgreSQL database for a test, in its own schema, if configured.
pub fn postgres_db(test: &str) -> Option<String> {
    match std::env::var("KUNJUNG_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let sep = if url.contains('?') { '&' } else { '?' };
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            Some(format!(
                "{url}{sep}schema=m_{test}_{}_{nanos}",
                std::process::id()
            ))
        }
        _ => {
            assert!(
                std::env::var("KUNJUNG_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KUNJUNG_REQUIRE_POSTGRES=1 but KUNJUNG_TEST_POSTGRES is not set"
            );
            eprintln!("notice: KUNJUNG_TEST_POSTGRES not set; {test} skips PostgreSQL");
            None
        }
    }
}

pub struct Device {
    pub store: Store,
    pub user: String,
    pub dir: tempfile::TempDir,
}

impl Device {
    pub fn new(user: &str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        Device {
            store: Store::init(dir.path(), None, user).unwrap(),
            user: user.to_string(),
            dir,
        }
    }

    pub fn options(&self, server: &Server) -> SyncOptions {
        let mut o = SyncOptions::new(&server.url, &self.user, Some(PASSWORD.into()));
        o.backoff = Duration::from_millis(20);
        o.tries = 3;
        o
    }

    pub fn sync(&mut self, server: &Server) -> SyncSummary {
        let o = self.options(server);
        sync(&mut self.store, &o, &mut |_| {}).unwrap()
    }

    pub fn household(&mut self, area: &str, posyandu: &str) -> (Uuid, Uuid) {
        let h = self
            .store
            .create_household(&NewHousehold {
                area_code: area.into(),
                rt: "1".into(),
                rw: "2".into(),
                dusun: None,
                posyandu_id: Some(posyandu.into()),
                address: Some("Kp. Awal".into()),
                kk: None,
            })
            .unwrap();
        let m = self.member(h, "Siti Aminah");
        (h, m)
    }

    pub fn member(&mut self, h: Uuid, name: &str) -> Uuid {
        self.store
            .add_member(
                h,
                &NewMember {
                    name: name.into(),
                    sex: Sex::F,
                    birth_date: chrono::NaiveDate::from_ymd_opt(1990, 5, 1).unwrap(),
                    birth_date_estimated: false,
                    nik: None,
                    kk: None,
                    relation: None,
                    mother_id: None,
                    jkn: None,
                },
            )
            .unwrap()
            .id
    }

    pub fn visit(&mut self, member: Uuid, note: &str) -> Uuid {
        self.store
            .add_visit(&NewVisit {
                member_id: member,
                date: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
                notes: Some(note.into()),
                ..NewVisit::default()
            })
            .unwrap()
            .id
    }

    pub fn set(&mut self, h: Uuid, path: &str, v: AnswerValue) {
        self.store
            .edit(
                h,
                &[FieldEdit {
                    path: path.into(),
                    value: Some(v),
                }],
                "edit",
            )
            .unwrap();
    }

    pub fn ids(&self) -> BTreeSet<Uuid> {
        self.store.household_ids().unwrap().into_iter().collect()
    }

    /// Every change hash of every household here.
    pub fn hashes(&mut self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for id in self.ids() {
            for c in self.store.doc(id).unwrap().changes_since(&[]) {
                out.insert(c.hash().to_string());
            }
        }
        out
    }

    pub fn state(&mut self) -> BTreeMap<Uuid, (Vec<String>, serde_json::Value)> {
        let mut out = BTreeMap::new();
        for id in self.ids() {
            let d = self.store.household_detail(id).unwrap();
            let doc = self.store.doc(id).unwrap();
            let mut heads: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
            heads.sort();
            out.insert(id, (heads, serde_json::to_value(&d).unwrap()));
        }
        out
    }
}

pub fn text(s: &str) -> AnswerValue {
    AnswerValue::Text(s.into())
}
