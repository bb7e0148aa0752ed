//! Crash safety with real processes: the server SIGKILLed at random moments while devices
//! push and pull (on SQLite, and on PostgreSQL when `KUNJUNG_TEST_POSTGRES` is set), the
//! `kunjung sync` client process SIGKILLed mid-push and mid-pull, and full disks (a small
//! tmpfs when this machine allows mounting one, otherwise a file-size limit on the
//! process) for the server database and the client store. After each: nothing that was
//! acknowledged is lost, nothing is stored twice, the databases open and check clean.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use kunjung_client::sync::{sync, SyncError, SyncOptions};
use kunjung_store::Store;
use kunjung_sync_server::Db;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn server_hashes(db: &Db) -> BTreeSet<Vec<u8>> {
    db.tx(false, |t| t.query("SELECT hash FROM changes", &[]))
        .unwrap()
        .into_iter()
        .map(|r| r[0].blob().to_vec())
        .collect()
}

fn marked(store: &Store) -> BTreeSet<Vec<u8>> {
    let mut st = store
        .connection()
        .prepare("SELECT hash FROM changes WHERE synced = 1 AND local = 1")
        .unwrap();
    let out: BTreeSet<Vec<u8>> = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    out
}

fn integrity_ok(db: &Db) {
    if db.backend() == "sqlite" {
        let r = db
            .tx(false, |t| t.query("PRAGMA integrity_check", &[]))
            .unwrap();
        assert_eq!(r[0][0].text(), Some("ok"));
    }
}

fn quick(url: &str, user: &str) -> SyncOptions {
    let mut o = SyncOptions::new(url, user, Some(PASSWORD.into()));
    o.tries = 1;
    o.page_size = Some(4);
    o.max_push = 5;
    o
}

/// Devices keep writing and syncing from threads; the server is SIGKILLed at a random
/// moment, checked and restarted, `rounds` times.
fn server_killed_mid_commit(db_url: &str, rounds: usize, seed: u64) {
    let mut server = Server::start(db_url);
    for u in ["kader1", "kader2", "kader3"] {
        server.add_user(u, "kader", &["PSY-A"]);
    }
    let db = Db::open(db_url).unwrap();
    let mut devs: Vec<Device> = ["kader1", "kader2", "kader3"]
        .iter()
        .map(|u| Device::new(u))
        .collect();
    for d in devs.iter_mut() {
        d.household(DESA_A, "PSY-A");
        assert!(d.sync(&server).verified);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut completed = 0;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url.clone();
        let handles: Vec<_> = devs
            .drain(..)
            .enumerate()
            .map(|(i, mut d)| {
                let stop = stop.clone();
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut n = 0;
                    let mut ok = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let ids: Vec<_> = d.ids().into_iter().collect();
                        let h = ids[n % ids.len()];
                        if n % 3 == 0 {
                            d.household(DESA_A, "PSY-A");
                        } else {
                            let m = d.member(h, &format!("Anggota {i}-{n}"));
                            d.visit(m, "kunjungan");
                        }
                        n += 1;
                        let o = quick(&url, &d.user);
                        if sync(&mut d.store, &o, &mut |_| {}).is_ok() {
                            ok += 1;
                        }
                    }
                    (d, ok)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        server.kill(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let (d, ok) = h.join().unwrap();
            completed += ok;
            devs.push(d);
        }
        integrity_ok(&db);
        let held = server_hashes(&db);
        for d in devs.iter_mut() {
            assert!(
                marked(&d.store).is_subset(&held),
                "round {round}: an acknowledged change was lost"
            );
            assert!(d.store.check_consistency().unwrap().is_empty());
        }
        server.restart();
    }
    // Everyone catches up; nothing was stored twice.
    for _ in 0..2 {
        for d in devs.iter_mut() {
            assert!(d.sync(&server).verified);
        }
    }
    let states: Vec<_> = devs.iter_mut().map(|d| d.state()).collect();
    assert_eq!(states[0], states[1]);
    assert_eq!(states[1], states[2]);
    let all = devs[0].hashes();
    assert_eq!(server_hashes(&db).len(), all.len());
    assert_eq!(server.metric("kunjung_change_sequence"), all.len() as i64);
    eprintln!(
        "{}: {rounds} kills, {completed} syncs completed in between, {} changes, 0 lost, 0 duplicated",
        db.backend(),
        all.len()
    );
}

/// Kills per backend: `KUNJUNG_CRASH_KILLS` (the long run, `cargo xtask soak`), else the
/// short default; `KUNJUNG_CRASH_SEED` varies the moments.
fn kills(default: usize) -> (usize, u64) {
    let n = std::env::var("KUNJUNG_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let seed = std::env::var("KUNJUNG_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (n, seed)
}

#[test]
fn server_sigkill_mid_commit_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (n, seed) = kills(8);
    server_killed_mid_commit(&sqlite_db(dir.path()), n, 1 + seed);
}

#[test]
fn server_sigkill_mid_commit_postgres() {
    if let Some(db) = postgres_db("crash") {
        let (n, seed) = kills(5);
        server_killed_mid_commit(&db, n, 2 + seed);
    }
}

/// The `kunjung` CLI of this build (built once if missing).
fn kunjung_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let bin = profile_dir.join("kunjung");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "kunjung-client", "--bin", "kunjung"])
                .arg("--target-dir")
                .arg(profile_dir.parent().unwrap())
                .status()
                .unwrap();
            assert!(status.success(), "building kunjung failed");
        }
        bin
    })
}

/// `kunjung sync` processes SIGKILLed mid-push and mid-pull, then run to the end.
#[test]
fn client_sigkill_mid_sync() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(dir.path());
    let server = Server::start(&url);
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.add_user("kader2", "kader", &["PSY-A"]);
    let db = Db::open(&url).unwrap();
    let a = Device::new("kader1");
    let b = Device::new("kader2");
    let (a_dir, b_dir) = (a.dir.path().to_path_buf(), b.dir.path().to_path_buf());
    let mut a = a;
    for i in 0..60 {
        let (_, m) = a.household(DESA_A, "PSY-A");
        a.visit(m, &format!("kunjungan {i}"));
    }
    drop(a.store);
    drop(b.store);
    let run = |data: &Path, user: &str| {
        Command::new(kunjung_bin())
            .arg("--data")
            .arg(data)
            .args([
                "sync",
                "--server",
                &server.url,
                "--user",
                user,
                "--page-size",
                "3",
            ])
            .env("KUNJUNG_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut killed = 0;
    // Syncs got fast (a fully synced device finishes in well under 100 ms), so the kill
    // comes early and the rounds go on until enough of them landed mid-sync.
    for round in 0..48 {
        if killed >= 10 {
            break;
        }
        let (data, user) = if round % 2 == 0 {
            (&a_dir, "kader1")
        } else {
            (&b_dir, "kader2")
        };
        let mut child = run(data, user);
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..120)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let mut s = Store::open(data, None).expect("the store opens after a kill");
        assert!(s.check_consistency().unwrap().is_empty(), "round {round}");
        assert!(marked(&s).is_subset(&server_hashes(&db)), "round {round}");
        let ids = s.household_ids().unwrap();
        if round % 4 == 1 && !ids.is_empty() {
            // And a local write between kills.
            s.edit(
                ids[round % ids.len()],
                &[kunjung_core::FieldEdit {
                    path: "household/address".into(),
                    value: Some(text(&format!("alamat {round}"))),
                }],
                "edit",
            )
            .unwrap();
        }
    }
    assert!(killed >= 8, "enough runs were killed mid-sync ({killed})");
    for _ in 0..2 {
        for (data, user) in [(&a_dir, "kader1"), (&b_dir, "kader2")] {
            let out = run(data, user).wait_with_output().unwrap();
            assert!(out.status.success());
        }
    }
    let mut a = Store::open(&a_dir, None).unwrap();
    let mut b = Store::open(&b_dir, None).unwrap();
    assert_eq!(a.unsynced_count().unwrap(), 0);
    assert_eq!(b.unsynced_count().unwrap(), 0);
    let ids = a.household_ids().unwrap();
    assert_eq!(ids.len(), 60);
    let set = |v: Vec<uuid::Uuid>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(set(b.household_ids().unwrap()), set(ids.clone()));
    let mut hashes = BTreeSet::new();
    for id in ids {
        let (da, db_) = (a.doc(id).unwrap(), b.doc(id).unwrap());
        assert_eq!(da.heads(), db_.heads());
        hashes.extend(da.changes_since(&[]).iter().map(|c| c.hash().0.to_vec()));
    }
    assert_eq!(server_hashes(&db), hashes, "stored once, nothing lost");
}

/// A small filesystem for `dir`: a tmpfs of `kb` KiB when this machine lets us mount
/// one (root with CAP_SYS_ADMIN), else None (the caller limits file sizes instead).
struct SmallDisk {
    dir: PathBuf,
    mounted: bool,
}

impl SmallDisk {
    fn new(dir: &Path, kb: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kb}k"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        SmallDisk {
            dir: dir.to_path_buf(),
            mounted,
        }
    }

    /// Gives the filesystem room again.
    fn grow(&self) {
        if self.mounted {
            let ok = Command::new("mount")
                .args(["-o", "remount,size=256m"])
                .arg(&self.dir)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
    }

    /// A command under this disk's limit: on a tmpfs as it is; otherwise through `sh` with
    /// `ulimit -f` (and SIGXFSZ ignored, so writes fail with EFBIG instead of killing).
    fn command(&self, limited: bool, kb: u64, program: &Path) -> Command {
        if self.mounted || !limited {
            Command::new(program)
        } else {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "ulimit -f {}; trap '' XFSZ; exec \"$0\" \"$@\"",
                    kb
                ))
                .arg(program);
            c
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

/// The server's database on a full disk: pushes get a clear 507 `storage_full`, nothing
/// is marked acknowledged that is not stored, the server stays up, and once there is room
/// again the same device completes its sync; the database checks clean.
#[test]
fn server_disk_full() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = 1024;
    let disk = SmallDisk::new(&tmp.path().join("disk"), kb);
    let url = sqlite_db(&disk.dir);
    // Users are added without the limit (the first process creates the schema).
    let mut server = Server::start(&url);
    server.add_user("kader1", "kader", &["PSY-A"]);
    server.kill();
    let spawn = |limited: bool| {
        let mut child = disk
            .command(limited, kb, server_bin())
            .args(["--db", &url, "serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        (child, addr)
    };
    let (mut child, addr) = spawn(true);
    let db = Db::open(&url).unwrap();
    let mut d = Device::new("kader1");
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let noise = |rng: &mut ChaCha8Rng| -> String {
        (0..3000)
            .map(|_| char::from(rng.gen_range(b'a'..=b'z')))
            .collect()
    };
    let mut full = None;
    for i in 0..400 {
        let (_, m) = d.household(DESA_A, "PSY-A");
        let note = noise(&mut rng);
        d.visit(m, &note);
        let o = quick(&addr, "kader1");
        match sync(&mut d.store, &o, &mut |_| {}) {
            Ok(s) => assert!(s.verified),
            Err(e) => {
                full = Some((i, e));
                break;
            }
        }
        assert!(marked(&d.store).is_subset(&server_hashes(&db)));
    }
    let (at, e) = full.expect("the disk filled up");
    match &e {
        SyncError::Server {
            status,
            code,
            message,
        } if disk.mounted || *status == 507 => {
            assert_eq!((*status, code.as_str()), (507, "storage_full"), "{message}");
            assert!(message.contains("(server storage full"));
        }
        // Under `ulimit -f` SQLite may see EFBIG: a disk I/O error, still no loss.
        SyncError::Server { status, code, .. } if !disk.mounted => {
            assert_eq!((*status, code.as_str()), (500, "database"));
        }
        other => panic!("expected storage_full, got {other}"),
    }
    assert!(marked(&d.store).is_subset(&server_hashes(&db)));
    assert!(d.store.unsynced_count().unwrap() > 0);
    // Still up.
    let h = reqwest::blocking::get(format!("{addr}/v1/health")).unwrap();
    assert_eq!(h.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
    integrity_ok(&db);

    // Room again (or no limit): the same device completes.
    disk.grow();
    let (mut child, addr) = spawn(false);
    let s = sync(&mut d.store, &quick(&addr, "kader1"), &mut |_| {}).unwrap();
    assert!(s.verified, "{s:?}");
    let _ = child.kill();
    let _ = child.wait();
    integrity_ok(&db);
    let mut hashes = BTreeSet::new();
    for id in d.ids() {
        let doc = d.store.doc(id).unwrap();
        hashes.extend(doc.changes_since(&[]).iter().map(|c| c.hash().0.to_vec()));
    }
    assert_eq!(server_hashes(&db), hashes);
    eprintln!(
        "server disk full after {at} households ({}), recovered",
        if disk.mounted { "tmpfs" } else { "ulimit -f" }
    );
}

/// On a tmpfs a full disk is ENOSPC, which SQLite reports as SQLITE_FULL (our clear
/// "penyimpanan penuh … (disk full …)"); under `ulimit -f` a write past the limit can also
/// be EFBIG, which SQLite reports as a disk I/O error.
fn clear_disk_error(disk: &SmallDisk, err: &str) -> bool {
    (err.contains("penyimpanan penuh") && err.contains("(disk full"))
        || (!disk.mounted && err.contains("disk I/O error"))
}

/// The client store on a full disk: `kunjung` answers `disk_full` in both languages, the
/// store still opens, checks clean and holds every write that succeeded.
#[test]
fn client_disk_full() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for a fresh store (8 kB pages) and its WAL with the first 5 households.
    let kb = 1536;
    let disk = SmallDisk::new(&tmp.path().join("disk"), kb);
    let data = disk.dir.join("store");
    let kunjung = |limited: bool, args: &[&str]| {
        disk.command(limited, kb, kunjung_bin())
            .arg("--data")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(kunjung(false, &["init"]).status.success());
    let out = kunjung(true, &["demo-seed", "--households", "5", "--seed", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = Store::open(&data, None).unwrap().household_ids().unwrap();
    assert_eq!(before.len(), 5);
    let out = kunjung(true, &["demo-seed", "--households", "3000", "--seed", "2"]);
    assert!(!out.status.success(), "the disk filled up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(clear_disk_error(&disk, &err), "clear error: {err}");
    // While the disk is still full the store either opens, or says clearly why not.
    match Store::open(&data, None) {
        Ok(mut s) => assert!(s.check_consistency().unwrap().is_empty()),
        Err(e) => assert!(clear_disk_error(&disk, &e.to_string()), "{e}"),
    }
    disk.grow();
    let mut s = Store::open(&data, None).expect("opens once there is room");
    assert!(s.check_consistency().unwrap().is_empty());
    let after = s.household_ids().unwrap();
    for id in &before {
        assert!(after.contains(id), "earlier household {id} kept");
        s.household_detail(*id).unwrap();
    }
    drop(s);
    let out = kunjung(false, &["store", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = before[0].to_string();
    let out = kunjung(false, &["household", "show", &h]);
    assert!(out.status.success());
}
