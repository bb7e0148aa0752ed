//! Storage: one small trait, [`Sql`], with exactly two implementations — SQLite (rusqlite,
//! the embedded default) and PostgreSQL (the `postgres` client). All server logic is
//! written once over `&mut dyn Sql` in portable SQL (`$1`-style parameters, `ON CONFLICT`,
//! `RETURNING`), so the same test suite exercises both.
//!
//! Sequence numbers: every write transaction that stores changes first updates the single
//! `counters` row. PostgreSQL holds that row lock until commit, so sequence numbers are
//! assigned and committed in order and a reader's cursor can never skip a change that
//! commits late; SQLite has one writer anyway (`BEGIN IMMEDIATE`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A column value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Value {
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            _ => 0,
        }
    }
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn blob(&self) -> &[u8] {
        match self {
            Value::Blob(b) => b,
            _ => &[],
        }
    }
    pub fn into_blob(self) -> Vec<u8> {
        match self {
            Value::Blob(b) => b,
            _ => Vec::new(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

pub type Row = Vec<Value>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("kesalahan SQLite: {0} (SQLite error)")]
    Sqlite(#[from] rusqlite::Error),
    #[error("kesalahan PostgreSQL: {0} (PostgreSQL error)")]
    Postgres(#[from] postgres::Error),
    #[error("alamat basis data tidak dikenal: {0}; pakai sqlite:BERKAS atau postgres://… (unknown database URL)")]
    BadUrl(String),
    /// The shared transaction of a group commit failed (or a piece of it panicked).
    #[error("transaksi bersama gagal: {0} (group commit failed)")]
    Group(String),
    /// A stored record that does not decode (e.g. an audit body).
    #[error("data tersimpan rusak: {0} (corrupt stored record)")]
    Corrupt(String),
}

/// The storage trait: run a statement, or run a query and get its rows. Implemented by an
/// open transaction of each backend.
pub trait Sql {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
}

/// `$1` → `?1` for SQLite.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

struct SqliteTx<'a>(rusqlite::Transaction<'a>);

impl Sql for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut st = self.0.prepare_cached(&sqlite_sql(sql))?;
        Ok(st.execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))? as u64)
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut st = self.0.prepare_cached(&sqlite_sql(sql))?;
        let n = st.column_count();
        let rows = st
            .query_map(
                rusqlite::params_from_iter(params.iter().map(to_sqlite)),
                |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Value::Null,
                                rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                                rusqlite::types::ValueRef::Real(f) => Value::Int(f as i64),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Value::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                            })
                        })
                        .collect::<rusqlite::Result<Row>>()
                },
            )?
            .collect::<rusqlite::Result<Vec<Row>>>()?;
        Ok(rows)
    }
}

/// A parameter as SQLite's, borrowed (a pushed change's bytes are not copied to bind them).
fn to_sqlite(v: &Value) -> rusqlite::types::ToSqlOutput<'_> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    ToSqlOutput::Borrowed(match v {
        Value::Null => ValueRef::Null,
        Value::Int(i) => ValueRef::Integer(*i),
        Value::Text(s) => ValueRef::Text(s.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
    })
}

mod pg {
    //! PostgreSQL parameter and column conversions.
    use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

    use super::Value;

    impl ToSql for Value {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut postgres::types::private::BytesMut,
        ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            match self {
                Value::Null => Ok(IsNull::Yes),
                Value::Int(i) => match *ty {
                    Type::INT4 => (*i as i32).to_sql(ty, out),
                    Type::INT2 => (*i as i16).to_sql(ty, out),
                    Type::BOOL => (*i != 0).to_sql(ty, out),
                    _ => i.to_sql(ty, out),
                },
                Value::Text(s) => s.to_sql(ty, out),
                Value::Blob(b) => b.to_sql(ty, out),
            }
        }
        fn accepts(_: &Type) -> bool {
            true
        }
        to_sql_checked!();
    }

    pub fn column(row: &postgres::Row, i: usize) -> Result<Value, postgres::Error> {
        let ty = row.columns()[i].type_().clone();
        Ok(match ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v as i64)),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v as i64)),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v as i64)),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            _ => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
        }
        .unwrap_or(Value::Null))
    }
}

pub struct PgConn {
    client: postgres::Client,
    cache: std::collections::HashMap<String, postgres::Statement>,
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    cache: &'a mut std::collections::HashMap<String, postgres::Statement>,
}

impl PgTx<'_> {
    fn stmt(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.cache.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

impl Sql for PgTx<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let st = self.stmt(sql)?;
        let p: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        Ok(self.tx.execute(&st, &p)?)
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let st = self.stmt(sql)?;
        let p: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.tx.query(&st, &p)?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| pg::column(r, i)).collect())
            .collect::<Result<Vec<Row>, postgres::Error>>()
            .map_err(DbError::from)
    }
}

/// A bounded pool: at most `max` connections open; a caller waits for a free one.
pub struct Pool<C> {
    state: Mutex<(Vec<C>, usize)>,
    free: Condvar,
    max: usize,
}

impl<C> Pool<C> {
    fn new(max: usize) -> Pool<C> {
        Pool {
            state: Mutex::new((Vec::new(), 0)),
            free: Condvar::new(),
            max: max.max(1),
        }
    }

    /// An idle connection, or `Ok(None)` when the caller may open a new one (counted).
    fn take(&self) -> Option<C> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = st.0.pop() {
                return Some(c);
            }
            if st.1 < self.max {
                st.1 += 1;
                return None;
            }
            st = self.free.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Returns a connection (`Some`) or gives up an opened slot (`None`, a broken one).
    fn give(&self, c: Option<C>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match c {
            Some(c) => st.0.push(c),
            None => st.1 = st.1.saturating_sub(1),
        }
        self.free.notify_one();
    }
}

/// The open database: which backend, and its connections.
///
/// SQLite (WAL): one writer connection, used by every [`Db::tx`], and a pool of read-only
/// connections for [`Db::read`]; WAL readers see a committed snapshot and never wait for
/// the writer. PostgreSQL: one bounded pool of connections.
pub enum Db {
    Sqlite {
        conn: Arc<Mutex<rusqlite::Connection>>,
        path: String,
        readers: Pool<rusqlite::Connection>,
        group: crate::group::Group,
    },
    Postgres {
        config: Box<postgres::Config>,
        schema: Option<String>,
        pool: Pool<PgConn>,
        group: crate::group::Group,
    },
}

/// How long an SQLite connection waits for a lock before failing with "busy" (the
/// checkpointer lowers the writer's for its RESTART and sets it back to this).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the checkpointer runs ([`Db::spawn_checkpointer`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The log (frames of one page) is started over once it holds this many: 32 MB of 4 KB
/// pages, about a third of a second of writes at 500 syncs/s. Below it the checkpointer
/// only copies beside the writer. Starting over holds the writer's lock (fsyncs, and
/// waiting for readers on older snapshots): done every round at 256 frames, that blocked
/// the writer ~30 % of the time at 400 syncs/s.
pub const CHECKPOINT_RESTART_FRAMES: i64 = 8192;
/// Up to this many more copying passes beside the writer before the RESTART, stopping
/// after one that copied fewer than this many frames, so the writer's lock is held for
/// fewer of them.
const CHECKPOINT_CATCH_UP: (usize, i64) = (3, 64);
/// How long the RESTART step waits, holding the writer's lock, for readers on an older
/// snapshot to finish.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(20);

/// The busy handler of the RESTART step: waits in steps of 0.2 ms up to
/// [`CHECKPOINT_WAIT`] (SQLite's own handler sleeps 1, 2, 5, 10 … ms).
fn checkpoint_wait(tries: i32) -> bool {
    const STEP: Duration = Duration::from_micros(200);
    if STEP * (tries.max(0) as u32) >= CHECKPOINT_WAIT {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

/// The SQLite writer's page cache in KB (env `KUNJUNG_WRITER_CACHE_MB`, default 16 MB).
/// The writer maps the file (`mmap_size`), so pages it only reads need no cache; and at
/// every commit SQLite walks the whole cache once (`pcache1TruncateUnsafe`: a b-tree
/// split that reorders its new pages parks one under the lock-byte page's number, past
/// the end of any database below 1 GB, so the commit's truncation to the database's size
/// takes the slow path over every slot). That walk was ~4 % of the server's CPU with a
/// 64 MB cache.
fn writer_cache_kb() -> usize {
    std::env::var("KUNJUNG_WRITER_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&mb| mb > 0)
        .unwrap_or(16)
        * 1024
}

/// Read connections for SQLite (env `KUNJUNG_DB_READERS`).
fn sqlite_readers() -> usize {
    std::env::var("KUNJUNG_DB_READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// PostgreSQL connections (env `KUNJUNG_DB_CONNECTIONS`).
fn pg_connections() -> usize {
    std::env::var("KUNJUNG_DB_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS changes(
    seq BIGINT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, household_id TEXT NOT NULL,
    device TEXT NOT NULL, username TEXT NOT NULL, bytes BLOB NOT NULL, received_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_household ON changes(household_id, seq);
CREATE TABLE IF NOT EXISTS households(
    id TEXT PRIMARY KEY, area_code TEXT NOT NULL, posyandu_id TEXT,
    created_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, move_seq BIGINT NOT NULL,
    snapshot_seq BIGINT NOT NULL, pending BIGINT NOT NULL, actors TEXT);
CREATE TABLE IF NOT EXISTS snapshots(household_id TEXT PRIMARY KEY, bytes BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS households_last ON households(last_seq);
CREATE INDEX IF NOT EXISTS households_posyandu ON households(posyandu_id, id);
CREATE INDEX IF NOT EXISTS households_area ON households(area_code, id);
CREATE TABLE IF NOT EXISTS locations(
    household_id TEXT NOT NULL, seq BIGINT NOT NULL, area_code TEXT NOT NULL, posyandu_id TEXT,
    is_move BIGINT NOT NULL, PRIMARY KEY(household_id, seq));
CREATE INDEX IF NOT EXISTS locations_seq ON locations(seq);
CREATE TABLE IF NOT EXISTS users(
    username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    posyandu TEXT NOT NULL, areas TEXT NOT NULL, disabled BIGINT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(
    hash BLOB PRIMARY KEY, username TEXT NOT NULL, device TEXT NOT NULL,
    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, revoked BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens(username);
CREATE TABLE IF NOT EXISTS areas(code TEXT PRIMARY KEY, name TEXT NOT NULL);
INSERT INTO counters(name, value) VALUES ('seq', 0) ON CONFLICT (name) DO NOTHING;
INSERT INTO meta(key, value) VALUES ('schema', '3') ON CONFLICT (key) DO NOTHING;
";

/// The layout version kept in `meta` (`schema`): 1 had each household's snapshot inline
/// in `households`; 2 keeps it in `snapshots`; 3: on SQLite `changes.seq` is the rowid
/// (nothing changed on PostgreSQL). See [`Db::migrate`].
pub const SCHEMA_VERSION: &str = "3";

/// [`SCHEMA`] for SQLite: `changes.seq` as the rowid (`INTEGER PRIMARY KEY`), so a stored
/// change writes three b-trees (the table, the hash and the household index), not four.
fn sqlite_schema() -> String {
    SCHEMA.replace(
        "seq BIGINT PRIMARY KEY, hash",
        "seq INTEGER PRIMARY KEY, hash",
    )
}

/// The tables, in an order that restores cleanly.
pub const TABLES: &[&str] = &[
    "meta",
    "counters",
    "users",
    "tokens",
    "areas",
    "changes",
    "households",
    "snapshots",
    "locations",
    "erased",
    "erased_locations",
    "audit_log",
    "audit_households",
];

impl Db {
    /// Opens `sqlite:PATH` or `postgres://…` (an extra `schema=NAME` query parameter puts
    /// every table in that schema, created if missing) and creates the tables.
    pub fn open(url: &str) -> Result<Db, DbError> {
        let db = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            let conn = rusqlite::Connection::open(path)?;
            // secure_delete: deleted and replaced content (an erased household, an old
            // snapshot) is overwritten with zeros, not left in free pages.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
            )?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            stable_plans(&conn)?;
            // A larger page cache (the default 2 MB made every push re-read index pages;
            // not too large, see [`writer_cache_kb`]) and memory-mapped reads; checkpoints
            // are left to [`Db::spawn_checkpointer`] when serving, with the automatic one
            // as a backstop far enough out that it rarely runs inside a request.
            conn.execute_batch(&format!(
                "PRAGMA cache_size = -{}; PRAGMA mmap_size = 1073741824;
                 PRAGMA wal_autocheckpoint = 20000;",
                writer_cache_kb()
            ))?;
            // Every statement of a sync stays prepared (the default 16 made them evict
            // each other).
            conn.set_prepared_statement_cache_capacity(256);
            conn.execute_batch(&sqlite_schema())?;
            Db::Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                path: path.to_string(),
                readers: Pool::new(sqlite_readers()),
                group: Default::default(),
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (base, schema) = split_schema(url);
            let mut config: postgres::Config =
                base.parse().map_err(|_| DbError::BadUrl(url.to_string()))?;
            config.connect_timeout(Duration::from_secs(10));
            let db = Db::Postgres {
                config: Box::new(config),
                schema,
                pool: Pool::new(pg_connections()),
                group: Default::default(),
            };
            let mut c = db.pg_take()?;
            let r = c.client.batch_execute(&SCHEMA.replace("BLOB", "BYTEA"));
            db.pg_give(c);
            r?;
            db
        } else {
            return Err(DbError::BadUrl(url.to_string()));
        };
        db.migrate()?;
        // Tables of the reliability and data-protection modules (issue 8).
        crate::erase::init(&db)?;
        crate::cursor::init(&db)?;
        crate::audit::init(&db)?;
        // Made here too (not only on a first report) so erasure can always clear it.
        crate::report::ensure_table(&db)?;
        Ok(db)
    }

    /// Brings a database made by an older version to the current layout, in one
    /// transaction each (so an interrupted migration leaves the old layout, and the next
    /// open runs it again; on the current layout it does nothing):
    /// - `households.actors` (the highest change sequence number per actor, for pushes
    ///   stored from their headers), added at the end;
    /// - layout 2: each household's snapshot moves from `households.snapshot` (inline in
    ///   the index row, so every write of the row rewrote its overflow pages) to
    ///   `snapshots`, and the column is dropped;
    /// - layout 3, SQLite only: `changes` rebuilt with `seq` as the rowid
    ///   ([`sqlite_rowid_changes`]).
    fn migrate(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite { conn, .. } => {
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                let has = |c: &rusqlite::Connection, col: &str| -> Result<bool, DbError> {
                    let n: i64 = c.query_row(
                        "SELECT count(*) FROM pragma_table_info('households') WHERE name = ?1",
                        [col],
                        |r| r.get(0),
                    )?;
                    Ok(n > 0)
                };
                if !has(&c, "actors")? {
                    c.execute_batch("ALTER TABLE households ADD COLUMN actors TEXT")?;
                }
                if has(&c, "snapshot")? {
                    let t0 = std::time::Instant::now();
                    tracing::info!("moving household snapshots to their own table (layout 2)");
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    // Checked again under the write lock: another process may have done it.
                    if has(&tx, "snapshot")? {
                        let n = tx.execute(
                            "INSERT INTO snapshots(household_id, bytes) SELECT id, snapshot FROM households WHERE true
                             ON CONFLICT (household_id) DO UPDATE SET bytes = excluded.bytes",
                            [],
                        )?;
                        // Rewrites every row without it (secure_delete zeroes the freed pages).
                        tx.execute_batch("ALTER TABLE households DROP COLUMN snapshot")?;
                        tx.commit()?;
                        tracing::info!(households = n, ms = t0.elapsed().as_millis() as u64, "snapshots moved");
                    }
                }
                sqlite_rowid_changes(&mut c)?;
            }
            // READ COMMITTED (`tx(true, …)`): each statement sees what others committed.
            Db::Postgres { .. } => self.tx(true, |t| {
                t.exec(
                    "ALTER TABLE households ADD COLUMN IF NOT EXISTS actors TEXT",
                    &[],
                )?;
                let inline = |t: &mut dyn Sql| -> Result<bool, DbError> {
                    Ok(!t
                        .query(
                            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                             AND table_name = 'households' AND column_name = 'snapshot'",
                            &[],
                        )?
                        .is_empty())
                };
                // Checked again under the table's lock, so two servers opening at once
                // migrate once.
                if inline(t)? && {
                    t.exec("LOCK TABLE households IN ACCESS EXCLUSIVE MODE", &[])?;
                    inline(t)?
                } {
                    tracing::info!("moving household snapshots to their own table (layout 2)");
                    let n = t.exec(
                        "INSERT INTO snapshots(household_id, bytes) SELECT id, snapshot FROM households WHERE true
                         ON CONFLICT (household_id) DO UPDATE SET bytes = excluded.bytes",
                        &[],
                    )?;
                    // PostgreSQL only marks the column dropped: the old bytes stay in the
                    // table until its rows are rewritten (`VACUUM FULL households`).
                    t.exec("ALTER TABLE households DROP COLUMN snapshot", &[])?;
                    tracing::info!(households = n, "snapshots moved");
                }
                Ok::<_, DbError>(())
            })?,
        }
        // Every step above is done (or was not needed).
        self.tx(false, |t| {
            t.exec(
                "INSERT INTO meta(key, value) VALUES ('schema', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[SCHEMA_VERSION.into()],
            )
            .map(|_| ())
        })
    }

    /// [`Db::spawn_checkpointer_at`] with [`CHECKPOINT_RESTART_FRAMES`].
    pub fn spawn_checkpointer(&self) {
        self.spawn_checkpointer_at(CHECKPOINT_RESTART_FRAMES);
    }

    /// SQLite (a file): keeps the write-ahead log short from a thread of its own, so no
    /// commit ever has to checkpoint; the log starts over once it holds `restart_frames`
    /// (tests use a short log).
    ///
    /// Under a steady load a checkpoint that runs beside the writer never catches up with
    /// it: commits keep adding frames while it copies, so the log never starts over. It
    /// then grows to the automatic checkpoint's limit and one commit copies all of it
    /// (about 80 MB, 100 ms, every 0.75 s at 400 syncs/s, with every waiting sync behind
    /// it). So every [`CHECKPOINT_EVERY`] this thread copies what it can beside the
    /// writer (PASSIVE). Once the log is long enough it catches up with a few more passes
    /// ([`CHECKPOINT_CATCH_UP`]), then, holding the writer's lock for the few frames
    /// committed meanwhile, finishes with RESTART: the log is then fully copied and the
    /// next commit writes it from the start. RESTART waits for readers on older snapshots
    /// only briefly ([`CHECKPOINT_WAIT`]); if one is still reading it gives up and the
    /// next round tries again. Nothing to do on PostgreSQL or in memory.
    pub fn spawn_checkpointer_at(&self, restart_frames: i64) {
        let Db::Sqlite { path, conn, .. } = self else {
            return;
        };
        if path.is_empty() || path.contains(":memory:") {
            return;
        }
        let (path, writer) = (path.clone(), conn.clone());
        let run = move || {
            let c = match rusqlite::Connection::open(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "no background checkpoints");
                    return;
                }
            };
            let _ = c.execute_batch("PRAGMA busy_timeout = 1000;");
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                // Its columns: busy, the frames in the log, the frames copied.
                let passive = || {
                    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })
                };
                let mut copied = match passive() {
                    Ok((log, _)) if log < restart_frames => continue,
                    Ok((_, copied)) => copied,
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint");
                        continue;
                    }
                };
                let (passes, enough) = CHECKPOINT_CATCH_UP;
                for _ in 0..passes {
                    match passive() {
                        Ok((_, now)) if now - copied >= enough => copied = now,
                        _ => break,
                    }
                }
                let asked = std::time::Instant::now();
                let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                let held = std::time::Instant::now();
                let r = w
                    .busy_handler(Some(checkpoint_wait))
                    .and_then(|_| w.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())));
                let _ = w.busy_timeout(BUSY_TIMEOUT);
                drop(w);
                // How long the writer waited on this step (`RUST_LOG=debug`).
                tracing::debug!(
                    copied,
                    wait_ms = (held - asked).as_secs_f64() * 1e3,
                    held_ms = held.elapsed().as_secs_f64() * 1e3,
                    "log started over"
                );
                if let Err(e) = r {
                    tracing::warn!(error = %e, "checkpoint");
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(run)
        {
            tracing::warn!(error = %e, "no background checkpoints");
        }
    }

    /// This database's random identity (made on first use, kept by backup and restore).
    pub fn server_id(&self) -> Result<String, DbError> {
        self.tx(false, |t| {
            let id: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
            t.exec(
                "INSERT INTO meta(key, value) VALUES ('server_id', $1) ON CONFLICT (key) DO NOTHING",
                &[id.into()],
            )?;
            Ok(t.query("SELECT value FROM meta WHERE key = 'server_id'", &[])?[0][0]
                .text()
                .unwrap_or_default()
                .to_string())
        })
    }

    /// SQLite: copies the WAL into the database file and truncates it to zero bytes, so
    /// page images from before an erasure do not stay in the WAL. `Ok(false)` when a
    /// reader kept it from completing. PostgreSQL: nothing (see docs/RELIABILITY.md).
    pub fn checkpoint(&self) -> Result<bool, DbError> {
        match self {
            Db::Sqlite { conn, .. } => {
                let c = conn.lock().unwrap_or_else(|e| e.into_inner());
                let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                Ok(busy == 0)
            }
            Db::Postgres { .. } => Ok(true),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    fn pg_connect(&self) -> Result<PgConn, DbError> {
        let Db::Postgres { config, schema, .. } = self else {
            unreachable!("pg_connect on sqlite")
        };
        let mut client = config.connect(postgres::NoTls)?;
        if let Some(s) = schema {
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{s}\"; SET search_path TO \"{s}\";"
            ))?;
        }
        Ok(PgConn {
            client,
            cache: Default::default(),
        })
    }

    /// A pooled PostgreSQL connection (waits while all are busy).
    fn pg_take(&self) -> Result<PgConn, DbError> {
        let Db::Postgres { pool, .. } = self else {
            unreachable!("pg_take on sqlite")
        };
        match pool.take() {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.pg_connect().inspect_err(|_| pool.give(None)),
        }
    }

    fn pg_give(&self, c: PgConn) {
        if let Db::Postgres { pool, .. } = self {
            pool.give((!c.client.is_closed()).then_some(c));
        }
    }

    /// Runs `f` in one transaction. With `serialize`, the transaction first takes the
    /// sequence counter's lock, so it runs alone among writers. Every `tx` may write; on
    /// SQLite they all share the one writer connection.
    pub fn tx<T, E: From<DbError>>(
        &self,
        serialize: bool,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Db::Sqlite { conn, .. } => {
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                let behavior = if serialize {
                    rusqlite::TransactionBehavior::Immediate
                } else {
                    rusqlite::TransactionBehavior::Deferred
                };
                sqlite_run(&mut c, behavior, f)
            }
            Db::Postgres { .. } => self.pg_run(
                if serialize {
                    PgMode::Serialize
                } else {
                    PgMode::Snapshot
                },
                f,
            ),
        }
    }

    /// Runs `f` in a serialized transaction (like `tx(true, f)`) shared with the other
    /// grouped work that arrives meanwhile (group commit, see [`crate::group`]): one
    /// commit for many concurrent pushes and audit writes. Returns once it committed.
    pub fn grouped<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&mut dyn Sql) -> Result<T, E> + Send + 'static,
    {
        self.group().run(self, f)
    }

    /// How many requests may use the database at once by default: twice the SQLite read
    /// connections (while half read, the others wait for the writer's next batch), or the
    /// PostgreSQL pool's size.
    pub fn default_concurrency(&self) -> usize {
        match self {
            Db::Sqlite { .. } => 2 * sqlite_readers(),
            Db::Postgres { .. } => pg_connections(),
        }
    }

    /// The group commit's queue ([`crate::group`]).
    pub fn group(&self) -> &crate::group::Group {
        let (Db::Sqlite { group, .. } | Db::Postgres { group, .. }) = self;
        group
    }

    /// Runs `f` in a read-only transaction that sees one committed snapshot. On SQLite it
    /// runs on a pooled read connection, concurrently with the writer and other readers.
    pub fn read<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            // An in-memory database exists only on the writer's connection.
            Db::Sqlite { path, .. } if path.is_empty() || path.contains(":memory:") => {
                self.tx(false, f)
            }
            Db::Sqlite { path, readers, .. } => {
                let mut c = match readers.take() {
                    Some(c) => c,
                    None => match open_reader(path) {
                        Ok(c) => c,
                        Err(e) => {
                            readers.give(None);
                            return Err(E::from(e));
                        }
                    },
                };
                let out = sqlite_run(&mut c, rusqlite::TransactionBehavior::Deferred, f);
                readers.give(Some(c));
                out
            }
            Db::Postgres { .. } => self.pg_run(PgMode::ReadOnly, f),
        }
    }

    fn pg_run<T, E: From<DbError>>(
        &self,
        mode: PgMode,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut c = self.pg_take()?;
        let result = (|| {
            // Readers see one consistent snapshot (REPEATABLE READ), so a pull page's
            // window, its changes and its household snapshots all agree; writers
            // stay READ COMMITTED and serialise on the counter row.
            let tx = match mode {
                PgMode::Serialize => c.client.transaction(),
                PgMode::Snapshot => c
                    .client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .start(),
                PgMode::ReadOnly => c
                    .client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            }
            .map_err(DbError::from)?;
            let mut t = PgTx {
                tx,
                cache: &mut c.cache,
            };
            if mode == PgMode::Serialize {
                t.exec("UPDATE counters SET value = value WHERE name = 'seq'", &[])?;
            }
            let out = f(&mut t)?;
            t.tx.commit().map_err(DbError::from)?;
            Ok(out)
        })();
        self.pg_give(c);
        result
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PgMode {
    Serialize,
    Snapshot,
    ReadOnly,
}

/// Layout 3 on SQLite: rebuilds `changes` with `seq INTEGER PRIMARY KEY` (the rowid) when
/// it still has `seq BIGINT PRIMARY KEY` (a separate unique index, a fourth b-tree written
/// by every stored change). One transaction, so an interruption leaves the old table;
/// progress is logged every 100,000 sequence numbers.
fn sqlite_rowid_changes(c: &mut rusqlite::Connection) -> Result<(), DbError> {
    let seq_type = |c: &rusqlite::Connection| -> Result<String, DbError> {
        Ok(c.query_row(
            "SELECT type FROM pragma_table_info('changes') WHERE name = 'seq'",
            [],
            |r| r.get(0),
        )?)
    };
    if seq_type(c)?.eq_ignore_ascii_case("INTEGER") {
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if seq_type(&tx)?.eq_ignore_ascii_case("INTEGER") {
        return Ok(());
    }
    let (total, lo, hi): (i64, i64, i64) = tx.query_row(
        "SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM changes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    tracing::info!(
        changes = total,
        "rebuilding changes with seq as the rowid (layout 3)"
    );
    tx.execute_batch(
        "DROP TABLE IF EXISTS changes_v3;
         CREATE TABLE changes_v3(
            seq INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, household_id TEXT NOT NULL,
            device TEXT NOT NULL, username TEXT NOT NULL, bytes BLOB NOT NULL,
            received_at BIGINT NOT NULL);",
    )?;
    const STEP: i64 = 100_000;
    let (mut from, mut done) = (lo - 1, 0usize);
    while from < hi {
        let to = from.saturating_add(STEP).min(hi);
        done += tx.execute(
            "INSERT INTO changes_v3(seq, hash, household_id, device, username, bytes, received_at)
             SELECT seq, hash, household_id, device, username, bytes, received_at FROM changes
             WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
            [from, to],
        )?;
        from = to;
        if from < hi {
            tracing::info!(
                done,
                total,
                ms = t0.elapsed().as_millis() as u64,
                "rebuilding changes"
            );
        }
    }
    tx.execute_batch(
        "DROP TABLE changes;
         ALTER TABLE changes_v3 RENAME TO changes;
         CREATE INDEX changes_household ON changes(household_id, seq);",
    )?;
    tx.commit()?;
    tracing::info!(
        changes = done,
        ms = t0.elapsed().as_millis() as u64,
        "changes rebuilt"
    );
    Ok(())
}

/// Turns on SQLite's query planner stability guarantee: a statement's plan no longer
/// depends on the values bound to it. Without it, a statement where one candidate plan
/// leaves a `col = $n` term unused (the token check's join, a household's changes by
/// `household_id` and rowid range) was compiled again on every run that bound a text or
/// blob there: ~4 % of the server's CPU at 400 syncs/s, for plans that never changed
/// (the server keeps no statistics that could make them change).
fn stable_plans(c: &rusqlite::Connection) -> Result<(), DbError> {
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn open_reader(path: &str) -> Result<rusqlite::Connection, DbError> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // No memory map and a small cache: in WAL mode a reader that finds the log changed
    // since its last transaction (after nearly every group commit, under load) drops its
    // whole page cache and unmaps its whole memory map, and then faults the pages back
    // in; the munmap (a TLB shootdown on every core) and the faults were ~7 % of the
    // server's CPU. Reading the few pages a request needs with pread costs less.
    c.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -4096; PRAGMA mmap_size = 0;")?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    stable_plans(&c)?;
    c.set_prepared_statement_cache_capacity(256);
    Ok(c)
}

fn sqlite_run<T, E: From<DbError>>(
    c: &mut rusqlite::Connection,
    behavior: rusqlite::TransactionBehavior,
    f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
) -> Result<T, E> {
    let tx = c
        .transaction_with_behavior(behavior)
        .map_err(DbError::from)?;
    let mut t = SqliteTx(tx);
    let out = f(&mut t)?;
    t.0.commit().map_err(DbError::from)?;
    Ok(out)
}

fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_string());
                false
            }
            None => true,
        })
        .collect();
    let schema = schema
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if rest.is_empty() {
        (base.to_string(), schema)
    } else {
        (format!("{base}?{}", rest.join("&")), schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_parameter_is_taken_out() {
        assert_eq!(
            split_schema("postgres://u@h/db?schema=t1&sslmode=disable"),
            (
                "postgres://u@h/db?sslmode=disable".into(),
                Some("t1".into())
            )
        );
        assert_eq!(
            split_schema("postgres://u@h/db?schema=x;drop"),
            ("postgres://u@h/db".into(), None)
        );
    }

    /// The token check (a join) and a household's changes (an index or a rowid range)
    /// are compiled once per connection, not again on every run (see [`stable_plans`]).
    #[test]
    fn statements_are_not_compiled_again_on_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("s.db").display())).unwrap();
        let token =
            "SELECT u.username, t.device FROM tokens t JOIN users u ON u.username = t.username
                     WHERE t.hash = $1 AND t.revoked = 0";
        let changes = "SELECT bytes FROM changes WHERE household_id = $1 AND seq > $2 ORDER BY seq";
        for i in 0..20i64 {
            db.tx(true, |t| {
                t.exec(
                    "INSERT INTO changes(seq, hash, household_id, device, username, bytes, received_at)
                     VALUES ($1, $2, 'h', 'd', 'u', x'00', 0)",
                    &[(i + 1).into(), vec![i as u8; 32].into()],
                )
            })
            .unwrap();
            db.read(|t| -> Result<_, DbError> {
                t.query(token, &[vec![i as u8; 32].into()])?;
                t.query(changes, &[format!("h{}", i % 3).into(), i.into()])
            })
            .unwrap();
        }
        let Db::Sqlite { readers, .. } = &db else {
            unreachable!()
        };
        let c = readers.take().expect("the reader used above");
        for sql in [token, changes] {
            let st = c.prepare_cached(&sqlite_sql(sql)).unwrap();
            let again = st.get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(again, 0, "compiled again {again} times: {sql}");
        }
        readers.give(Some(c));
    }

    #[test]
    fn sqlite_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("s.db").display())).unwrap();
        let rows = db
            .tx(true, |t| -> Result<_, DbError> {
                t.exec(
                    "INSERT INTO areas(code, name) VALUES ($1, $2)",
                    &["32".into(), "Jawa Barat".into()],
                )?;
                t.query(
                    "SELECT code, name FROM areas WHERE code = $1",
                    &["32".into()],
                )
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![Value::from("32"), Value::from("Jawa Barat")]]
        );
    }
}
