//! The local store: one SQLite file per device user (SQLCipher-encrypted when a PIN is
//! set), holding the household documents, the change log and the SQL projections the UI
//! lists and searches (SPEC §3).
//!
//! Every write is one SQLite transaction that stores the new Automerge change, updates the
//! document row and the projections together, so a crash (even `kill -9`) never leaves them
//! apart. Projections can be rebuilt from the documents at any time (`rebuild`).

pub mod app_support;
pub mod app_views;
mod crypto;
mod fastapply;
mod merge;
mod project;
mod query;
mod report;
mod schema;
mod snapshot;
mod tasks;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use automerge::ActorId;
use kunjung_core::doc::{CommitMeta, Written};
use kunjung_core::{
    CoreError, FieldEdit, HouseholdDoc, HouseholdView, NewHousehold, NewMember, NewVisit,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crypto::KdfParams;
pub use query::{HouseholdRow, ListFilter, ReferralRow, SearchHit, VisitRow};
/// The SQLite connection type (for tools such as the benchmarks).
pub use rusqlite::Connection as RawConnection;
pub use tasks::TaskRow;

/// The schema version this Kunjung writes (older stores are migrated when opened).
pub const SCHEMA_VERSION: i64 = schema::LATEST;

/// File names inside the data directory.
pub const DB_FILE: &str = "kunjung.db";
pub const CONFIG_FILE: &str = "kunjung.json";

/// Changes folded into a household's snapshot once this many are pending.
const COMPACT_AFTER: i64 = 64;
/// Loaded documents kept in memory.
const CACHE_DOCS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PIN salah (wrong PIN)")]
    WrongPin,
    #[error("penyimpanan ini terenkripsi: isi PIN lewat KUNJUNG_PIN (this store is encrypted: set KUNJUNG_PIN)")]
    PinRequired,
    #[error("belum ada data di {0}: jalankan `kunjung init` dulu (no store here: run `kunjung init` first)")]
    NotInitialized(PathBuf),
    #[error("data sudah ada di {0} (a store already exists here)")]
    AlreadyInitialized(PathBuf),
    #[error("penyimpanan dibuat oleh versi Kunjung yang lebih baru (skema {found}, versi ini {supported}); perbarui aplikasi (store written by a newer Kunjung)")]
    NewerSchema { found: i64, supported: i64 },
    #[error("penyimpanan penuh: tidak ada ruang disk; data lama tetap aman (disk full; nothing stored was lost)")]
    DiskFull,
    #[error("tidak ditemukan: {0} (not found)")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("kesalahan basis data: {0} (database error)")]
    Sqlite(rusqlite::Error),
    #[error("kesalahan berkas: {0} (file error)")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.code {
                rusqlite::ErrorCode::DiskFull => return StoreError::DiskFull,
                rusqlite::ErrorCode::NotADatabase => return StoreError::WrongPin,
                _ => {}
            }
        }
        StoreError::Sqlite(e)
    }
}

impl StoreError {
    /// Stable machine-readable code for the CLI and the app.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::WrongPin => "wrong_pin",
            StoreError::PinRequired => "pin_required",
            StoreError::NotInitialized(_) => "not_initialized",
            StoreError::AlreadyInitialized(_) => "already_initialized",
            StoreError::NewerSchema { .. } => "newer_schema",
            StoreError::DiskFull => "disk_full",
            StoreError::NotFound(_) => "not_found",
            StoreError::Invalid(_) => "invalid",
            StoreError::Core(e) => e.code(),
            StoreError::Sqlite(_) => "database",
            StoreError::Io(_) => "io",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `kunjung.json`: what must be known before the database can be opened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreConfig {
    pub format: u32,
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    /// The SQLite page size the store was made with; an encrypted store cannot be opened
    /// without it (SQLCipher's `cipher_page_size`). None: SQLite's 4096 (stores made before
    /// schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
}

/// The page size of new stores: a household snapshot (about 2 kB) fills half of a 4 kB
/// page and leaves the rest unused; on 8 kB pages far less is left over (a village device:
/// `docs` 4.8 MB instead of 5.9 MB for 3.9 MB of snapshots).
const PAGE_SIZE: u32 = 8192;

/// A change waiting to be acknowledged by the server.
#[derive(Debug, Clone)]
pub struct PendingChange {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub household_id: Uuid,
    pub bytes: Vec<u8>,
}

/// Result of adding a member.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MemberAdded {
    pub id: Uuid,
    pub household_id: Uuid,
    pub warnings: Vec<kunjung_core::ids::NikWarning>,
}

/// Result of adding a visit.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct VisitAdded {
    pub id: Uuid,
    pub household_id: Uuid,
    pub referral_id: Option<Uuid>,
}

/// A household as `household show` returns it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HouseholdDetail {
    #[serde(flatten)]
    pub view: HouseholdView,
    pub conflicts: Vec<kunjung_core::Conflict>,
}

/// The local store.
pub struct Store {
    conn: Connection,
    dir: PathBuf,
    actor: ActorId,
    user: String,
    cache: HashMap<Uuid, HouseholdDoc>,
    cache_order: VecDeque<Uuid>,
    /// zstd dictionaries of the snapshots (`snapshot`), and the one new snapshots use.
    dicts: snapshot::Dicts,
    dict: Option<std::sync::Arc<snapshot::Dict>>,
}

fn read_config(dir: &Path) -> Result<Option<StoreConfig>> {
    let p = dir.join(CONFIG_FILE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            StoreError::Invalid(format!("{} rusak: {e} (corrupt config)", p.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn open_conn(path: &Path, key: Option<[u8; 32]>, page_size: Option<u32>) -> Result<Connection> {
    let conn = Connection::open(path)?;
    if let Some(key) = key {
        // SQLCipher would print its own error lines on a wrong key; the caller reports it.
        let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex::encode(key)))?;
        if let Some(n) = page_size {
            conn.execute_batch(&format!("PRAGMA cipher_page_size = {n};"))?;
        }
    } else if let Some(n) = page_size {
        // Only takes effect on a new, empty database (before WAL mode writes its header).
        conn.execute_batch(&format!("PRAGMA page_size = {n};"))?;
    }
    // Reading the schema is the first access that needs the right key.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| match StoreError::from(e) {
        StoreError::Sqlite(_) if key.is_some() => StoreError::WrongPin,
        other => other,
    })?;
    // WAL + synchronous=NORMAL: a committed transaction survives a killed process (the
    // crash tests kill -9 mid-write); a power cut may lose the last moments of writes but
    // never corrupts the file. FULL would add an fsync (~6 ms here) to every visit saved.
    // secure_delete: a household dropped from the device (erased, moved away, another
    // user) is overwritten in the file, not just unlinked (health data, UU 27/2022 PDP).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA secure_delete = ON;",
    )?;
    Ok(conn)
}

impl Store {
    /// Creates a new store in `dir` (encrypted when `pin` is given).
    pub fn init(dir: &Path, pin: Option<&str>, user: &str) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        if dir.join(CONFIG_FILE).exists() || dir.join(DB_FILE).exists() {
            return Err(StoreError::AlreadyInitialized(dir.to_path_buf()));
        }
        let (config, key) = match pin {
            Some(pin) => {
                crypto::check_new_pin(pin)?;
                let kdf = KdfParams::new_random();
                let key = kdf.derive(pin)?;
                (
                    StoreConfig {
                        format: 1,
                        encrypted: true,
                        kdf: Some(kdf),
                        page_size: Some(PAGE_SIZE),
                    },
                    Some(key),
                )
            }
            None => (
                StoreConfig {
                    format: 1,
                    encrypted: false,
                    kdf: None,
                    page_size: Some(PAGE_SIZE),
                },
                None,
            ),
        };
        let mut conn = open_conn(&dir.join(DB_FILE), key, config.page_size)?;
        schema::migrate(&mut conn)?;
        let actor = ActorId::random();
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('device', ?1), ('user', ?2), ('created_at', ?3)",
            params![actor.to_hex_string(), user, now_ms().to_string()],
        )?;
        // The config is written last: a store without it is an unfinished init.
        let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&config).map_err(|e| StoreError::Invalid(e.to_string()))?,
        )?;
        std::fs::rename(&tmp, dir.join(CONFIG_FILE))?;
        Ok(Store::from_conn(conn, dir, actor, user.to_string()))
    }

    /// Opens the store in `dir`; `pin` is needed when it is encrypted.
    pub fn open(dir: &Path, pin: Option<&str>) -> Result<Store> {
        let config =
            read_config(dir)?.ok_or_else(|| StoreError::NotInitialized(dir.to_path_buf()))?;
        let key = if config.encrypted {
            let pin = pin.ok_or(StoreError::PinRequired)?;
            let kdf = config
                .kdf
                .as_ref()
                .ok_or_else(|| StoreError::Invalid("kdf".into()))?;
            Some(kdf.derive(pin)?)
        } else {
            None
        };
        let mut conn = open_conn(&dir.join(DB_FILE), key, config.page_size)?;
        let migrated = schema::migrate(&mut conn)? < schema::COMPACT_FROM;
        let get = |k: &str| -> Result<String> {
            Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))?)
        };
        let actor = ActorId::from(
            hex::decode(get("device")?).map_err(|e| StoreError::Invalid(e.to_string()))?,
        );
        let user = get("user")?;
        let mut s = Store::from_conn(conn, dir, actor, user);
        s.load_dicts()?;
        if migrated {
            // The projections were rewritten: compress the snapshots with a dictionary
            // and give the space back to the device.
            s.train_dictionary()?;
            s.conn
                .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        }
        Ok(s)
    }

    /// Whether the store in `dir` is encrypted (None when there is no store).
    pub fn config(dir: &Path) -> Result<Option<StoreConfig>> {
        read_config(dir)
    }

    fn from_conn(conn: Connection, dir: &Path, actor: ActorId, user: String) -> Store {
        Store {
            conn,
            dir: dir.to_path_buf(),
            actor,
            user,
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
            dicts: snapshot::Dicts::new(),
            dict: None,
        }
    }

    /// Reads the snapshot dictionaries; the newest is the one new snapshots use.
    fn load_dicts(&mut self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT dict FROM zdicts ORDER BY created_at, id")?;
        let rows: Vec<Vec<u8>> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        for bytes in rows {
            let d = std::sync::Arc::new(snapshot::Dict::new(&bytes).ok_or_else(|| {
                StoreError::Invalid("kamus cuplikan rusak (corrupt snapshot dictionary)".into())
            })?);
            self.dicts.insert(d.id(), d.clone());
            self.dict = Some(d);
        }
        Ok(())
    }

    /// Trains the store's snapshot dictionary once it holds enough households (see
    /// `snapshot`), then recompresses every snapshot with it. Returns whether it trained.
    fn train_dictionary(&mut self) -> Result<bool> {
        if self.dict.is_some() {
            return Ok(false);
        }
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM docs", [], |r| r.get(0))?;
        if (n as usize) < snapshot::TRAIN_AFTER {
            return Ok(false);
        }
        let stored: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare(
                "SELECT snapshot FROM docs WHERE rowid IN (SELECT rowid FROM docs ORDER BY random() LIMIT ?1)",
            )?;
            let v = stmt
                .query_map([snapshot::TRAIN_SAMPLES as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        let samples = stored
            .iter()
            .map(|s| snapshot::decode(s, &self.dicts).map(|b| b.into_owned()))
            .collect::<Result<Vec<_>>>()?;
        let Some(bytes) = snapshot::train(&samples) else {
            return Ok(false);
        };
        let Some(d) = snapshot::Dict::new(&bytes) else {
            return Ok(false);
        };
        let added = self.conn.execute(
            "INSERT OR IGNORE INTO zdicts(id, dict, created_at) VALUES (?1, ?2, ?3)",
            params![d.id(), bytes, now_ms()],
        )?;
        if added == 0 {
            // An older dictionary had the same id (unlikely): keep the store as it is.
            return Ok(false);
        }
        let d = std::sync::Arc::new(d);
        self.dicts.insert(d.id(), d.clone());
        self.dict = Some(d);
        self.recompress_snapshots()?;
        Ok(true)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This device's id (the Automerge actor of its changes).
    pub fn device_id(&self) -> String {
        self.actor.to_hex_string()
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn set_user(&mut self, user: &str) -> Result<()> {
        self.set_meta("user", user)?;
        self.user = user.to_string();
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn commit_meta(&self) -> CommitMeta {
        CommitMeta {
            user: self.user.clone(),
            time_ms: now_ms(),
        }
    }

    // ---- documents -----------------------------------------------------------------

    fn load_doc_from_db(&self, id: Uuid) -> Result<HouseholdDoc> {
        load_doc(&self.conn, &self.actor, &self.dicts, id)
    }

    /// Takes a document out of the cache (or loads it); put it back with `cache_put`.
    fn take_doc(&mut self, id: Uuid) -> Result<HouseholdDoc> {
        if let Some(d) = self.cache.remove(&id) {
            return Ok(d);
        }
        self.load_doc_from_db(id)
    }

    fn cache_put(&mut self, id: Uuid, doc: HouseholdDoc) {
        if self.cache.insert(id, doc).is_none() {
            self.cache_order.push_back(id);
        }
        while self.cache.len() > CACHE_DOCS {
            match self.cache_order.pop_front() {
                Some(old) => {
                    self.cache.remove(&old);
                }
                None => break,
            }
        }
        self.cache_order.retain(|k| self.cache.contains_key(k));
    }

    /// Reads a household document (a copy).
    pub fn doc(&mut self, id: Uuid) -> Result<HouseholdDoc> {
        let d = self.take_doc(id)?;
        let copy = d.clone();
        self.cache_put(id, d);
        Ok(copy)
    }

    pub fn household_ids(&self) -> Result<Vec<Uuid>> {
        let mut stmt = self
            .conn
            .prepare("SELECT household_id FROM docs ORDER BY household_id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().and_then(|s| Uuid::parse_str(&s).ok()))
            .collect();
        Ok(ids)
    }

    /// Runs a local write on a household: the change, the document row and the
    /// projections are written in one transaction.
    fn write<T>(
        &mut self,
        id: Uuid,
        op: impl FnOnce(&mut HouseholdDoc, &CommitMeta) -> kunjung_core::error::Result<Written<T>>,
        project: impl FnOnce(&T) -> project::Mode,
    ) -> Result<T> {
        let mut doc = self.take_doc(id)?;
        let meta = self.commit_meta();
        let w = match op(&mut doc, &meta) {
            Ok(w) => w,
            Err(e) => {
                // The document is unchanged (failed transactions roll back).
                self.cache_put(id, doc);
                return Err(e.into());
            }
        };
        match self.persist_local(id, &doc, w.change.as_ref(), project(&w.result)) {
            Ok(()) => {
                self.cache_put(id, doc);
                Ok(w.result)
            }
            // The SQL transaction rolled back; the in-memory copy is dropped so it is
            // reloaded from what is really stored.
            Err(e) => Err(e),
        }
    }

    fn persist_local(
        &mut self,
        id: Uuid,
        doc: &HouseholdDoc,
        change: Option<&automerge::Change>,
        mode: project::Mode,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        if let Some(c) = change {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO changes(hash, household_id, bytes, local, synced, created_at) VALUES (?1, ?2, ?3, 1, 0, ?4)",
            )?
            .execute(params![c.hash().0.as_slice(), id.to_string(), c.raw_bytes(), now])?;
        }
        let heads = heads_text(doc);
        let pending: i64 = tx
            .prepare_cached(
                "UPDATE docs SET heads = ?2, pending = pending + ?3, updated_at = ?4 WHERE household_id = ?1 RETURNING pending",
            )?
            .query_row(params![id.to_string(), heads, change.is_some() as i64, now], |r| r.get(0))?;
        project::apply(&tx, id, doc, mode)?;
        if pending >= COMPACT_AFTER {
            compact_one(&tx, id, doc, self.dict.as_deref())?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- local operations ------------------------------------------------------------

    /// Registers a household.
    pub fn create_household(&mut self, h: &NewHousehold) -> Result<Uuid> {
        let id = kunjung_core::ids::new_id();
        let meta = self.commit_meta();
        let w = HouseholdDoc::create(id, h, self.actor.clone(), &meta)?;
        let doc = w.result;
        let tx = self.conn.transaction()?;
        let now = now_ms();
        let snapshot = snapshot::encode_doc(&doc, self.dict.as_deref());
        tx.execute(
            "INSERT INTO docs(household_id, snapshot, heads, pending, updated_at) VALUES (?1, ?2, ?3, 0, ?4)",
            params![id.to_string(), snapshot, heads_text(&doc), now],
        )?;
        if let Some(c) = &w.change {
            tx.execute(
                "INSERT INTO changes(hash, household_id, bytes, local, synced, in_snapshot, created_at) VALUES (?1, ?2, ?3, 1, 0, 1, ?4)",
                params![c.hash().0.as_slice(), id.to_string(), c.raw_bytes(), now],
            )?;
        }
        project::apply(&tx, id, &doc, project::Mode::Full { conflicts: false })?;
        tx.commit()?;
        self.cache_put(id, doc);
        Ok(id)
    }

    /// The household a member belongs to.
    pub fn household_of_member(&self, member_id: Uuid) -> Result<Uuid> {
        let s: String = self
            .conn
            .query_row(
                "SELECT h.id FROM members m JOIN households h ON h.rid = m.hh WHERE m.id = ?1",
                [member_id.as_bytes()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("anggota {member_id} (member)")))?;
        Uuid::parse_str(&s).map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// The household a visit belongs to.
    pub fn household_of_visit(&self, visit_id: Uuid) -> Result<Uuid> {
        let s: String = self
            .conn
            .query_row(
                // No index on visit ids (storage): a scan, for one review at a time.
                "SELECT h.id FROM visits v JOIN households h ON h.rid = v.hh WHERE v.id = ?1",
                [visit_id.as_bytes()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("kunjungan {visit_id} (visit)")))?;
        Uuid::parse_str(&s).map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// The household a referral belongs to.
    pub fn household_of_referral(&self, referral_id: Uuid) -> Result<Uuid> {
        let s: String = self
            .conn
            .query_row(
                "SELECT household_id FROM referrals WHERE id = ?1",
                [referral_id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("rujukan {referral_id} (referral)")))?;
        Uuid::parse_str(&s).map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// Adds a member; NIK problems come back as warnings (the NIK is stored anyway).
    pub fn add_member(&mut self, household_id: Uuid, m: &NewMember) -> Result<MemberAdded> {
        let warnings = m
            .nik
            .as_deref()
            .map(|n| kunjung_core::ids::check_nik(n, Some(m.sex), Some(m.birth_date)))
            .unwrap_or_default();
        let id = self.write(
            household_id,
            |d, meta| d.add_member(m, meta),
            |_| project::Mode::Full { conflicts: false },
        )?;
        Ok(MemberAdded {
            id,
            household_id,
            warnings,
        })
    }

    /// Records a visit (and its referral when it has danger signs or a reason). The life
    /// stage is derived from the member when not given.
    pub fn add_visit(&mut self, v: &NewVisit) -> Result<VisitAdded> {
        let household_id = self.household_of_member(v.member_id)?;
        let mut v = v.clone();
        if v.stage.is_none() {
            let doc = self.take_doc(household_id)?;
            let member = doc.member(v.member_id);
            self.cache_put(household_id, doc);
            v.stage = kunjung_core::lifestage::life_stage(&member?, v.date);
        }
        let (id, referral_id) = self.write(
            household_id,
            |d, meta| d.add_visit(&v, meta),
            |&(visit, referral)| project::Mode::VisitAdded { visit, referral },
        )?;
        Ok(VisitAdded {
            id,
            household_id,
            referral_id,
        })
    }

    /// Records a pregnancy (HPHT/HPL) for a member.
    pub fn add_pregnancy(&mut self, member_id: Uuid, p: &kunjung_core::Pregnancy) -> Result<Uuid> {
        let hid = self.household_of_member(member_id)?;
        self.write(
            hid,
            |d, meta| d.add_pregnancy(member_id, p, meta),
            |_| project::Mode::Full { conflicts: false },
        )
    }

    /// A bidan's acknowledgement of a visit.
    pub fn add_review(&mut self, visit_id: Uuid, comment: Option<&str>) -> Result<Uuid> {
        let hid = self.household_of_visit(visit_id)?;
        self.write(
            hid,
            |d, meta| d.add_review(visit_id, comment, meta),
            |_| project::Mode::Full { conflicts: false },
        )
    }

    /// Field edits on one household, as one change.
    pub fn edit(&mut self, household_id: Uuid, edits: &[FieldEdit], what: &str) -> Result<()> {
        let had_conflicts = self.conflict_count(household_id)? > 0;
        self.write(
            household_id,
            |d, meta| d.edit(edits, meta, what),
            |_| project::Mode::Full {
                conflicts: had_conflicts,
            },
        )
    }

    /// Moves a household to another area.
    pub fn move_household(
        &mut self,
        household_id: Uuid,
        to_area: &str,
        rt: &str,
        rw: &str,
        posyandu_id: Option<&str>,
        date: chrono::NaiveDate,
    ) -> Result<()> {
        self.write(
            household_id,
            |d, meta| d.move_household(to_area, rt, rw, posyandu_id, date, meta),
            |_| project::Mode::Full { conflicts: false },
        )
    }

    fn conflict_count(&self, household_id: Uuid) -> Result<i64> {
        Ok(self
            .conn
            .query_row(
                "SELECT conflict_count FROM households WHERE id = ?1",
                [household_id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    // ---- merging what comes from elsewhere -------------------------------------------

    /// Applies changes received for a household (from the server or another device).
    /// `acknowledged` marks them as already held by the server. Creates the household when
    /// it is new here. Returns how many changes were new.
    pub fn apply_changes(
        &mut self,
        household_id: Uuid,
        changes: &[Vec<u8>],
        acknowledged: bool,
    ) -> Result<usize> {
        self.apply_pulled(&[(household_id, changes.to_vec())], acknowledged)
    }

    /// Creates a household from the changes received for it (it is new here).
    fn create_from_changes(
        &mut self,
        household_id: Uuid,
        changes: &[Vec<u8>],
        acknowledged: bool,
    ) -> Result<usize> {
        let mut parsed = Vec::new();
        for c in changes {
            parsed.push(kunjung_core::doc::parse_change(c)?);
        }
        let mut am = automerge::Automerge::new();
        am.apply_changes(parsed).map_err(CoreError::from)?;
        let mut d = HouseholdDoc::from_automerge(am)?;
        if d.id()? != household_id {
            return Err(StoreError::Invalid(
                "id rumah tangga tidak cocok (household id mismatch)".into(),
            ));
        }
        d.set_actor(self.actor.clone());
        self.insert_new_doc(household_id, &d, changes, acknowledged)?;
        let n = changes.len();
        self.cache_put(household_id, d);
        Ok(n)
    }

    fn insert_new_doc(
        &mut self,
        id: Uuid,
        doc: &HouseholdDoc,
        changes: &[Vec<u8>],
        acknowledged: bool,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO docs(household_id, snapshot, heads, pending, updated_at) VALUES (?1, ?2, ?3, 0, ?4)",
            params![
                id.to_string(),
                snapshot::encode_doc(doc, self.dict.as_deref()),
                heads_text(doc),
                now
            ],
        )?;
        for c in changes {
            let ch = kunjung_core::doc::parse_change(c)?;
            tx.execute(
                "INSERT OR IGNORE INTO changes(hash, household_id, bytes, local, synced, in_snapshot, created_at) VALUES (?1, ?2, ?3, 0, ?4, 1, ?5)",
                params![ch.hash().0.as_slice(), id.to_string(), c, acknowledged as i64, now],
            )?;
        }
        tx.execute(
            "DELETE FROM changes WHERE household_id = ?1 AND synced = 1 AND in_snapshot = 1",
            [id.to_string()],
        )?;
        project::apply(&tx, id, doc, project::Mode::Full { conflicts: true })?;
        fastapply::write_index(&tx, id, doc)?;
        tx.commit()?;
        Ok(())
    }

    /// Merges a whole document (a snapshot from the server, or from a bundle file).
    /// `acknowledged`: the server already holds everything in it.
    pub fn apply_document(&mut self, bytes: &[u8], acknowledged: bool) -> Result<Uuid> {
        let incoming = HouseholdDoc::load(bytes)?;
        let id = incoming.id()?;
        if !self.has_household(id)? {
            let mut d = incoming;
            d.set_actor(self.actor.clone());
            let tx = self.conn.transaction()?;
            tx.execute(
                "INSERT INTO docs(household_id, snapshot, heads, pending, updated_at) VALUES (?1, ?2, ?3, 0, ?4)",
                params![
                    id.to_string(),
                    snapshot::encode_saved(bytes, self.dict.as_deref()),
                    heads_text(&d),
                    now_ms()
                ],
            )?;
            if !acknowledged {
                // Keep its changes so they can be pushed to the server later.
                for c in d.changes_since(&[]) {
                    tx.execute(
                        "INSERT OR IGNORE INTO changes(hash, household_id, bytes, local, synced, in_snapshot, created_at) VALUES (?1, ?2, ?3, 0, 0, 1, ?4)",
                        params![c.hash().0.as_slice(), id.to_string(), c.raw_bytes(), now_ms()],
                    )?;
                }
            }
            project::apply(&tx, id, &d, project::Mode::Full { conflicts: true })?;
            fastapply::write_index(&tx, id, &d)?;
            tx.commit()?;
            self.cache_put(id, d);
            return Ok(id);
        }
        let changes: Vec<Vec<u8>> = {
            let mine = self.doc(id)?;
            incoming
                .changes_since(&mine.heads())
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect()
        };
        if !changes.is_empty() {
            self.apply_changes(id, &changes, acknowledged)?;
        }
        Ok(id)
    }

    /// What [`prepare_document`] needs from this store to project documents elsewhere.
    pub fn projection_context(&self) -> Result<ProjectionContext> {
        Ok(ProjectionContext {
            cfg: project::schedule_config(&self.conn)?,
            on: project::today(),
            dict: self.dict.clone(),
        })
    }

    /// Stores whole documents the server already holds (a first sync's snapshots), decoded
    /// and projected beforehand by [`prepare_document`] (on other threads), in one
    /// transaction: all of them or, on an error, none. A household already here is merged
    /// as [`Store::apply_document`] does. Returns how many were new here.
    pub fn store_documents(&mut self, docs: Vec<PreparedDocument>) -> Result<usize> {
        let mut fresh = Vec::with_capacity(docs.len());
        let mut merge = Vec::new();
        {
            let mut seen = std::collections::HashSet::new();
            for d in docs {
                if !seen.insert(d.id) || self.has_household(d.id)? {
                    merge.push(d);
                } else {
                    fresh.push(d);
                }
            }
        }
        let tx = self.conn.transaction()?;
        let now = now_ms();
        for d in &fresh {
            let ids = d.id.to_string();
            // Prepared before this store had its dictionary: compressed again with it.
            let want = self.dict.as_ref().map(|d| d.id());
            let stored = if want.is_some() && snapshot::dict_id(&d.stored) != want {
                std::borrow::Cow::Owned(snapshot::encode_saved(&d.bytes, self.dict.as_deref()))
            } else {
                std::borrow::Cow::Borrowed(&d.stored)
            };
            tx.prepare_cached(
                "INSERT INTO docs(household_id, snapshot, heads, pending, updated_at, fast_heads, fast)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
            )?
            .execute(params![
                ids,
                stored,
                d.heads,
                now,
                fastapply::heads_digest(&d.heads),
                d.index
            ])?;
            project::write_new(&tx, d.id, &d.rows)?;
        }
        tx.commit()?;
        for d in &merge {
            self.apply_document(&d.bytes, true)?;
        }
        self.train_dictionary()?;
        Ok(fresh.len())
    }

    /// Stores whole documents made elsewhere in one transaction (demo data, imports).
    /// With `synced = false` their changes are kept to be pushed to the server.
    pub fn insert_documents(&mut self, docs: &[HouseholdDoc], synced: bool) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        for doc in docs {
            let id = doc.id()?;
            tx.prepare_cached(
                "INSERT INTO docs(household_id, snapshot, heads, pending, updated_at) VALUES (?1, ?2, ?3, 0, ?4)",
            )?
            .execute(params![
                id.to_string(),
                snapshot::encode_doc(doc, self.dict.as_deref()),
                heads_text(doc),
                now
            ])?;
            if !synced {
                let mut ins = tx.prepare_cached(
                    "INSERT OR IGNORE INTO changes(hash, household_id, bytes, local, synced, in_snapshot, created_at) VALUES (?1, ?2, ?3, 1, 0, 1, ?4)",
                )?;
                for c in doc.changes_since(&[]) {
                    ins.execute(params![
                        c.hash().0.as_slice(),
                        id.to_string(),
                        c.raw_bytes(),
                        now
                    ])?;
                }
            }
            project::apply(&tx, id, doc, project::Mode::Full { conflicts: false })?;
        }
        tx.commit()?;
        self.train_dictionary()?;
        Ok(())
    }

    /// The Automerge actor of this device (to create documents with).
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    pub fn has_household(&self, id: Uuid) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM docs WHERE household_id = ?1",
                [id.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Removes a household from this device (it left the user's scope, or was erased on
    /// request). Unsynced local changes of it are dropped too.
    pub fn drop_household(&mut self, id: Uuid) -> Result<()> {
        self.cache.remove(&id);
        let tx = self.conn.transaction()?;
        project::delete(&tx, id)?;
        tx.execute(
            "DELETE FROM changes WHERE household_id = ?1",
            [id.to_string()],
        )?;
        tx.execute("DELETE FROM docs WHERE household_id = ?1", [id.to_string()])?;
        tx.commit()?;
        self.truncate_wal();
        Ok(())
    }

    /// After a removal: the WAL still holds the removed rows' old pages until a
    /// checkpoint; fold it into the (securely overwritten) file and empty it. Best effort:
    /// a reader holding the WAL makes it a no-op until next time.
    fn truncate_wal(&self) {
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// A new random device id, for [`Store::forget_households`].
    pub fn fresh_device_id() -> String {
        ActorId::random().to_hex_string()
    }

    /// Removes every household from this device, in one transaction, and from then on
    /// the store is the new device `device` (from [`Store::fresh_device_id`]): another
    /// user is about to sync here, and what the previous user's scope brought must not
    /// stay for them (UU 27/2022 PDP). The server skips sending a device what it made
    /// itself, so a store that forgot its households must not keep that device's id.
    /// Returns how many were removed. Refuses, removing nothing, while any local change
    /// is unsynced.
    pub fn forget_households(&mut self, device: &str) -> Result<usize> {
        let actor = ActorId::from(
            hex::decode(device).map_err(|e| StoreError::Invalid(format!("device id: {e}")))?,
        );
        let unsynced = self.unsynced_count()?;
        if unsynced > 0 {
            return Err(StoreError::Invalid(format!(
                "{unsynced} perubahan belum terkirim ke server ({unsynced} changes not yet sent to the server)"
            )));
        }
        let ids = self.household_ids()?;
        self.cache.clear();
        self.cache_order.clear();
        let tx = self.conn.transaction()?;
        for id in &ids {
            project::delete(&tx, *id)?;
        }
        tx.execute("DELETE FROM changes", [])?;
        tx.execute("DELETE FROM docs", [])?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'device'",
            [actor.to_hex_string()],
        )?;
        tx.commit()?;
        self.actor = actor;
        self.truncate_wal();
        Ok(ids.len())
    }

    // ---- sync support --------------------------------------------------------------------

    /// Local changes the server has not acknowledged yet, oldest first.
    pub fn unsynced(&self, limit: usize) -> Result<Vec<PendingChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, hash, household_id, bytes FROM changes WHERE synced = 0 ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(PendingChange {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                    household_id: Uuid::parse_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    bytes: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn unsynced_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM changes WHERE synced = 0", [], |r| {
                r.get(0)
            })?)
    }

    /// Marks changes acknowledged by the server.
    pub fn mark_synced_hashes(
        &mut self,
        hashes: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt =
                tx.prepare_cached("UPDATE changes SET synced = 1 WHERE hash = ?1 AND synced = 0")?;
            for h in hashes {
                n += stmt.execute([h])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    // ---- maintenance ---------------------------------------------------------------------

    /// Folds pending changes into snapshots and drops change bytes no longer needed.
    pub fn compact(&mut self) -> Result<usize> {
        let ids: Vec<Uuid> = {
            let mut stmt = self
                .conn
                .prepare("SELECT household_id FROM docs WHERE pending > 0")?;
            let v = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .filter_map(|r| r.ok().and_then(|s| Uuid::parse_str(&s).ok()))
                .collect();
            v
        };
        for id in &ids {
            let doc = self.doc(*id)?;
            let tx = self.conn.transaction()?;
            compact_one(&tx, *id, &doc, self.dict.as_deref())?;
            tx.commit()?;
        }
        self.conn.execute(
            "DELETE FROM changes WHERE synced = 1 AND in_snapshot = 1",
            [],
        )?;
        if !self.train_dictionary()? {
            self.recompress_snapshots()?;
        }
        Ok(ids.len())
    }

    /// Rewrites snapshots still in the plain form of older stores, or compressed without
    /// the store's current dictionary, in the current form (see `snapshot`); the documents
    /// do not change.
    fn recompress_snapshots(&mut self) -> Result<usize> {
        let want = self.dict.as_ref().map(|d| d.id());
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT household_id, substr(snapshot, 1, 32) FROM docs")?;
            let v = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?
                .filter_map(|r| match r {
                    Ok((id, head)) => {
                        let zstd = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
                        (!zstd || snapshot::dict_id(&head) != want).then_some(Ok(id))
                    }
                    Err(e) => Some(Err(e)),
                })
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        let tx = self.conn.transaction()?;
        for id in &ids {
            let stored: Vec<u8> = tx
                .prepare_cached("SELECT snapshot FROM docs WHERE household_id = ?1")?
                .query_row([id], |r| r.get(0))?;
            let bytes = snapshot::decode(&stored, &self.dicts)?;
            tx.prepare_cached("UPDATE docs SET snapshot = ?2 WHERE household_id = ?1")?
                .execute(params![
                    id,
                    snapshot::encode_saved(&bytes, self.dict.as_deref())
                ])?;
        }
        tx.commit()?;
        Ok(ids.len())
    }

    /// Rebuilds every projection from the documents.
    pub fn rebuild(&mut self) -> Result<usize> {
        self.cache.clear();
        self.cache_order.clear();
        let ids = self.household_ids()?;
        let mut docs = Vec::with_capacity(ids.len());
        for id in &ids {
            docs.push((*id, self.load_doc_from_db(*id)?));
        }
        let tx = self.conn.transaction()?;
        project::clear_all(&tx)?;
        for (id, doc) in &docs {
            project::apply(&tx, *id, doc, project::Mode::Full { conflicts: true })?;
        }
        tx.commit()?;
        Ok(ids.len())
    }

    /// Compares every projection with its document; returns the differences found (empty
    /// when consistent). Used by the crash tests.
    pub fn check_consistency(&mut self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let integrity: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            problems.push(format!("integrity_check: {integrity}"));
        }
        for id in self.household_ids()? {
            let doc = self.load_doc_from_db(id)?;
            let have = project::current_rows(&self.conn, id)?;
            let on = have
                .household
                .tasks_on
                .parse()
                .unwrap_or_else(|_| project::today());
            let mut want =
                project::expected_rows(&doc, &project::schedule_config(&self.conn)?, on)?;
            if have.household.tasks_on.is_empty() {
                // Marked stale by a pulled visit: recomputed before tasks are read.
                want.tasks = have.tasks.clone();
                want.household.tasks_on = String::new();
                want.household.due_tasks = have.household.due_tasks;
            }
            if want != have {
                problems.push(format!("household {id}: projection differs from document"));
            }
        }
        Ok(problems)
    }

    /// Full household for display: document view plus conflicts.
    pub fn household_detail(&mut self, id: Uuid) -> Result<HouseholdDetail> {
        let doc = self.doc(id)?;
        Ok(HouseholdDetail {
            view: doc.read()?,
            conflicts: doc.conflicts(),
        })
    }

    /// Saves every household document into one bundle (for a file transfer between
    /// devices with no network): `KJB1` then, per document, a u32 length and the bytes.
    pub fn export_bundle(&mut self, only: Option<Uuid>) -> Result<Vec<u8>> {
        let ids = match only {
            Some(id) => vec![id],
            None => self.household_ids()?,
        };
        let mut out = b"KJB1".to_vec();
        for id in ids {
            let bytes = self.doc(id)?.save();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Merges a bundle made by `export_bundle`. Returns the households touched.
    pub fn import_bundle(&mut self, bundle: &[u8]) -> Result<Vec<Uuid>> {
        let bad = || StoreError::Invalid("berkas bundel rusak (corrupt bundle file)".into());
        if bundle.len() < 4 || &bundle[..4] != b"KJB1" {
            return Err(bad());
        }
        let mut docs = Vec::new();
        let mut i = 4;
        while i < bundle.len() {
            let len_bytes: [u8; 4] = bundle
                .get(i..i + 4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            let len = u32::from_le_bytes(len_bytes) as usize;
            i += 4;
            let bytes = bundle.get(i..i + len).ok_or_else(bad)?;
            // Check everything before storing anything.
            HouseholdDoc::load(bytes)?;
            docs.push(bytes);
            i += len;
        }
        let mut ids = Vec::new();
        for d in docs {
            ids.push(self.apply_document(d, false)?);
        }
        Ok(ids)
    }
}

/// The schedule settings and the day projections are computed for (see
/// [`Store::projection_context`]).
#[derive(Debug, Clone)]
pub struct ProjectionContext {
    cfg: kunjung_core::schedule::ScheduleConfig,
    on: chrono::NaiveDate,
    dict: Option<std::sync::Arc<snapshot::Dict>>,
}

/// A whole household document decoded, checked and projected, ready for
/// [`Store::store_documents`].
pub struct PreparedDocument {
    id: Uuid,
    bytes: Vec<u8>,
    stored: Vec<u8>,
    heads: String,
    rows: project::Rows,
    /// Its fast index (see `fastapply`), as stored.
    index: Vec<u8>,
}

impl PreparedDocument {
    pub fn household_id(&self) -> Uuid {
        self.id
    }
}

/// Decodes a saved household document (a server snapshot) and computes its projection
/// rows, without the store, so that many can be prepared in parallel. The bytes become
/// the stored snapshot (compressed, see `snapshot`), not a new save of the document.
pub fn prepare_document(bytes: Vec<u8>, ctx: &ProjectionContext) -> Result<PreparedDocument> {
    let doc = HouseholdDoc::load(&bytes)?;
    let id = doc.id()?;
    let rows = project::rows_for_new(&doc, &ctx.cfg, ctx.on)?;
    let ids = |v: Vec<String>| v.into_iter().collect::<std::collections::BTreeSet<_>>();
    let index = fastapply::index_bytes(&doc.fast_index(
        &ids(rows.visits.iter().map(|v| v.id.clone()).collect()),
        &ids(rows.referrals.iter().map(|r| r.id.clone()).collect()),
    )?)?;
    Ok(PreparedDocument {
        index,
        id,
        heads: heads_text(&doc),
        stored: snapshot::encode_saved(&bytes, ctx.dict.as_deref()),
        bytes,
        rows,
    })
}

/// Loads a household document from its snapshot and pending changes.
fn load_doc(
    conn: &Connection,
    actor: &ActorId,
    dicts: &snapshot::Dicts,
    id: Uuid,
) -> Result<HouseholdDoc> {
    let snapshot: Vec<u8> = conn
        .query_row(
            "SELECT snapshot FROM docs WHERE household_id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("rumah tangga {id} (household)")))?;
    let mut stmt = conn.prepare_cached(
        "SELECT bytes FROM changes WHERE household_id = ?1 AND in_snapshot = 0 ORDER BY seq",
    )?;
    let changes: Vec<Vec<u8>> = stmt
        .query_map([id.to_string()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let snapshot = snapshot::decode(&snapshot, dicts)?;
    let mut doc = HouseholdDoc::load_with_changes(&snapshot, changes.iter().map(|c| c.as_slice()))?;
    doc.set_actor(actor.clone());
    Ok(doc)
}

fn heads_text(doc: &HouseholdDoc) -> String {
    doc.heads()
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn compact_one(
    tx: &rusqlite::Transaction<'_>,
    id: Uuid,
    doc: &HouseholdDoc,
    dict: Option<&snapshot::Dict>,
) -> Result<()> {
    tx.execute(
        "UPDATE docs SET snapshot = ?2, heads = ?3, pending = 0 WHERE household_id = ?1",
        params![
            id.to_string(),
            snapshot::encode_doc(doc, dict),
            heads_text(doc)
        ],
    )?;
    tx.execute(
        "UPDATE changes SET in_snapshot = 1 WHERE household_id = ?1 AND in_snapshot = 0",
        [id.to_string()],
    )?;
    tx.execute(
        "DELETE FROM changes WHERE household_id = ?1 AND synced = 1 AND in_snapshot = 1",
        [id.to_string()],
    )?;
    Ok(())
}
