//! A throwaway PostgreSQL server on loopback for the tests: initdb into a temporary
//! directory, start on a free port, stop and delete on drop. Runs as the `postgres` user
//! when we are root (PostgreSQL refuses to run as root).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn pg_bin() -> Result<PathBuf> {
    let base = PathBuf::from("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&base)
        .with_context(|| "PostgreSQL is not installed (/usr/lib/postgresql missing)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().context("no PostgreSQL initdb found")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Postgres {
    pub fn start() -> Result<Postgres> {
        let bin = pg_bin()?;
        let as_postgres = crate::sh::output("id", &["-u"])?.trim() == "0";
        let dir = std::env::temp_dir().join(format!("kunjung-pg-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("sock"))?;
        if as_postgres {
            crate::sh::run(
                "chown",
                &["-R", "postgres:postgres", &dir.to_string_lossy()],
                &[],
            )?;
        }
        let port = free_port()?;
        let pg = Postgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        pg.exec(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=300",
            port,
            pg.dir.join("sock").display()
        );
        let log = pg.dir.join("log").to_string_lossy().to_string();
        pg.exec(
            "pg_ctl",
            &["-D", &pg.data(), "-o", &opts, "-l", &log, "-w", "start"],
        )?;
        pg.exec(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "kunjung_test",
            ],
        )?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().to_string()
    }

    fn exec(&self, tool: &str, args: &[&str]) -> Result<()> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("cannot run {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The postmaster's process id (its backends are its children).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/kunjung_test", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.exec(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
