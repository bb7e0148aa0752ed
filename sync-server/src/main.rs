//! `kunjung-server`: the sync server and its administration commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kunjung_protocol::Role;
use kunjung_sync_server::{admin, audit, auth, erase, http, report, Db};

#[derive(Parser)]
#[command(
    name = "kunjung-server",
    version,
    about = "Server sinkronisasi Kunjung (Kunjung sync server)"
)]
struct Cli {
    /// Database: sqlite:PATH or postgres://user@host/db (optionally ?schema=NAME).
    #[arg(
        long,
        global = true,
        env = "KUNJUNG_DB",
        default_value = "sqlite:kunjung-server.db"
    )]
    db: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API; prints `listening on http://ADDR` once bound (port 0 picks one).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Area(AreaCmd),
    /// Write a backup of the whole database to a file.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into an empty database (SQLite or PostgreSQL).
    Restore {
        #[arg(long = "from")]
        from: PathBuf,
    },
    /// Fold pending changes into the stored household snapshots.
    Compact,
    /// Compact, then free the bytes of changes the snapshots hold that are older than
    /// --older-than-days (hashes are kept; devices away longer get snapshots).
    Prune {
        #[arg(long, default_value_t = 90)]
        older_than_days: u32,
    },
    /// Suspected duplicate households (same No. KK, or a member with the same NIK or name +
    /// birth date), as JSON; the same rules as `kunjung duplicates` on a device.
    Duplicates {
        /// Area code or prefix (e.g. 32.14.01); all households when absent.
        #[arg(long)]
        area: Option<String>,
    },
    /// Build the report projections of changed households ahead of the first report.
    ReportRefresh {
        #[arg(long)]
        area: Option<String>,
    },
    #[command(subcommand)]
    Household(HouseholdCmd),
    /// Read the audit log (who read and changed what), newest first, one JSON object a line.
    Audit {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        household: Option<uuid::Uuid>,
        /// Only events at or after this time (milliseconds since the Unix epoch).
        #[arg(long)]
        since_ms: Option<i64>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum HouseholdCmd {
    /// Erase a household on request (UU PDP): removed from the server now and from every
    /// device at its next sync.
    Erase {
        #[arg(long)]
        id: uuid::Uuid,
        /// Why (e.g. the request letter's number); kept in the audit log.
        #[arg(long)]
        reason: String,
        /// The administrator doing it.
        #[arg(long, env = "USER")]
        by: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create an account; the password is read from KUNJUNG_PASSWORD.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["kader", "bidan", "puskesmas", "admin"])]
        role: String,
        /// Posyandu id(s) of a kader.
        #[arg(long)]
        posyandu: Vec<String>,
        /// Area code prefix(es) of a bidan or puskesmas (e.g. 32.14.01.2001 or 32.14.01).
        #[arg(long)]
        area: Vec<String>,
    },
    /// Disable an account; its tokens stop working at once.
    Disable {
        #[arg(long)]
        username: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[arg(long)]
        username: String,
    },
    /// Set a new password (from KUNJUNG_PASSWORD) and revoke the account's tokens.
    ResetPassword {
        #[arg(long)]
        username: String,
    },
    /// List accounts as JSON.
    List,
}

#[derive(Subcommand)]
enum AreaCmd {
    /// Import Kemendagri wilayah codes from a CSV file (`code,name` per line).
    Import { file: PathBuf },
}

fn run(cli: Cli) -> Result<()> {
    // Logs on stderr: the server's, and for every command a migration of an older
    // database layout when opening it (`Db::migrate`); other commands stay quiet.
    let level = if matches!(cli.cmd, Cmd::Serve { .. }) {
        "info"
    } else {
        "warn,kunjung_sync_server::db=info"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .init();
    let db = Db::open(&cli.db)
        .with_context(|| format!("membuka basis data (opening database) {}", cli.db))?;
    match cli.cmd {
        Cmd::Serve { listen } => {
            let nice = request_nice();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_start(move || lower_priority(nice))
                .build()?;
            rt.block_on(http::serve(http::AppState::new(db)?, &listen))?;
        }
        Cmd::User(u) => match u {
            UserCmd::Add {
                username,
                role,
                posyandu,
                area,
            } => {
                let role = Role::parse(&role).context("role")?;
                let pw = admin::password_from_env()?;
                db.tx(true, |t| {
                    auth::add_user(t, &username, role, &posyandu, &area, &pw)
                })?;
                println!("{}", serde_json::json!({"created": username, "role": role}));
            }
            UserCmd::Disable { username } => {
                db.tx(true, |t| auth::set_disabled(t, &username, true))?;
                println!("{}", serde_json::json!({"disabled": username}));
            }
            UserCmd::Enable { username } => {
                db.tx(true, |t| auth::set_disabled(t, &username, false))?;
                println!("{}", serde_json::json!({"enabled": username}));
            }
            UserCmd::ResetPassword { username } => {
                let pw = admin::password_from_env()?;
                db.tx(true, |t| auth::reset_password(t, &username, &pw))?;
                println!("{}", serde_json::json!({"password_reset": username}));
            }
            UserCmd::List => {
                let a = db.tx(false, auth::list_accounts)?;
                println!("{}", serde_json::to_string_pretty(&a)?);
            }
        },
        Cmd::Area(AreaCmd::Import { file }) => {
            let (n, skipped) = admin::import_areas(&db, &file)?;
            println!("{}", serde_json::json!({"imported": n, "skipped": skipped}));
        }
        Cmd::Backup { out } => {
            let n = admin::backup(&db, &out)?;
            println!("{}", serde_json::json!({"rows": n, "out": out}));
        }
        Cmd::Restore { from } => {
            let n = admin::restore(&db, &from)?;
            println!("{}", serde_json::json!({"rows": n}));
        }
        Cmd::Duplicates { area } => {
            let (pairs, _) = report::duplicates(&db, &report::admin_user(), area.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&pairs)?);
        }
        Cmd::ReportRefresh { area } => {
            let stats = report::refresh(&db, area.as_deref())?;
            println!("{}", serde_json::to_string(&stats)?);
        }
        Cmd::Compact => {
            let n = admin::compact(&db)?;
            println!("{}", serde_json::json!({"compacted": n}));
        }
        Cmd::Prune { older_than_days } => {
            let compacted = admin::compact(&db)?;
            let (n, bytes) = admin::prune(&db, older_than_days)?;
            println!(
                "{}",
                serde_json::json!({"compacted": compacted, "pruned_changes": n, "freed_bytes": bytes})
            );
        }
        Cmd::Household(HouseholdCmd::Erase { id, reason, by }) => {
            let e = erase::erase(&db, id, &by, &reason)?;
            println!("{}", serde_json::to_string(&e)?);
        }
        Cmd::Audit {
            user,
            household,
            since_ms,
            limit,
        } => {
            for e in audit::query(&db, user.as_deref(), household, since_ms, limit)? {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kesalahan (error): {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How much lower than the process's own the priority of the threads serving requests is
/// (env `KUNJUNG_REQUEST_NICE`, 0 to 19, default 5): the database writer and the WAL
/// checkpointer, started from the main thread, keep the normal one (see
/// `kunjung_sync_server::group::spawn_writer`).
fn request_nice() -> i32 {
    std::env::var("KUNJUNG_REQUEST_NICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .clamp(0, 19)
}

/// Raises the calling thread's nice value by `by` (on Linux the nice value is per thread;
/// raising it needs no privilege).
fn lower_priority(by: i32) {
    #[cfg(target_os = "linux")]
    if by > 0 {
        let tid = Some(rustix::thread::gettid());
        if let Ok(now) = rustix::process::getpriority_process(tid) {
            let _ = rustix::process::setpriority_process(tid, now + by);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}
