//! The client sync engine (SPEC §4): pushes the store's unsynced changes and pulls the
//! user's scope from the sync server, page by page, until both sides are done.
//!
//! Safe to interrupt anywhere: a change is marked synced only when the server's receipt
//! (a digest over exactly the acknowledged hashes) matches, and the cursor is saved only
//! after its page is stored, so a retry repeats at most one page, which applies
//! idempotently. A page of snapshots (a first sync) is decoded and projected on every
//! core while it is written, one transaction per chunk of households; a page of changes
//! is applied one transaction per chunk too (`Store::apply_pulled`, which stores a new
//! visit without loading its document); the next page is requested while this one is
//! stored. Network errors and server unavailability are retried with backoff; an
//! expired or revoked token leads to one fresh login.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kunjung_protocol::{
    ack_digest, decode, encode, ByteBuf, Cursor, ErrorBody, HouseholdChanges, LoginRequest,
    LoginResponse, SyncRequest, SyncResponse, CONTENT_TYPE_CBOR, ENCODING_ZSTD, PROTOCOL_VERSION,
    VERSION_HEADER,
};
use kunjung_store::{Store, StoreError};
use serde::Serialize;
use uuid::Uuid;

const META_SERVER_ID: &str = "sync.server_id";
const META_USER: &str = "sync.user";
const META_TOKEN: &str = "sync.token";
const META_TOKEN_EXPIRES: &str = "sync.token_expires_ms";
const META_CURSOR: &str = "sync.cursor";
const META_VERIFIED_AT: &str = "sync.verified_at_ms";

/// Errors of a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server menjawab {status}: {message} [{code}]")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    #[error("tidak dapat menghubungi server setelah {tries} percobaan: {last} (cannot reach the server)")]
    Network { tries: u32, last: String },
    #[error(transparent)]
    Protocol(#[from] kunjung_protocol::ProtocolError),
    #[error(
        "kata sandi diperlukan: isi KUNJUNG_PASSWORD (password required: set KUNJUNG_PASSWORD)"
    )]
    PasswordRequired,
    #[error(
        "perangkat ini masih menyimpan {unsynced} perubahan milik pengguna {previous} yang belum terkirim: sinkronkan dulu sebagai {previous} ({unsynced} unsynced changes of user {previous} are on this device: sync as {previous} first)"
    )]
    OtherUserUnsynced { previous: String, unsynced: i64 },
}

impl SyncError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            SyncError::Store(e) => e.code(),
            SyncError::Server { code, .. } => code,
            SyncError::Network { .. } => "network",
            SyncError::Protocol(e) => e.code(),
            SyncError::PasswordRequired => "password_required",
            SyncError::OtherUserUnsynced { .. } => "other_user_unsynced",
        }
    }
}

/// What to sync with.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub username: String,
    /// Needed only when there is no valid token in the store.
    pub password: Option<String>,
    /// Households per page (the server caps it).
    pub page_size: Option<u32>,
    /// Local changes pushed per request.
    pub max_push: usize,
    /// Tries per request on network errors or an unavailable server.
    pub tries: u32,
    /// First backoff delay; doubles each try.
    pub backoff: Duration,
}

impl SyncOptions {
    pub fn new(server: &str, username: &str, password: Option<String>) -> SyncOptions {
        SyncOptions {
            server: server.trim_end_matches('/').to_string(),
            username: username.to_string(),
            password,
            page_size: None,
            max_push: 5000,
            tries: 6,
            backoff: Duration::from_millis(250),
        }
    }
}

/// A pushed change the server refused, as shown to the user.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedChange {
    pub household_id: Uuid,
    pub code: String,
    pub message: String,
}

/// The JSON summary `kunjung sync` prints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncSummary {
    /// Local changes the server acknowledged in this sync.
    pub pushed: usize,
    /// Changes and snapshots received and stored.
    pub pulled: usize,
    /// HTTP requests made (logins included).
    pub round_trips: usize,
    /// HTTP/1.1 bytes: request and status lines, headers and bodies.
    pub bytes_sent: usize,
    pub bytes_received: usize,
    /// True only when the server acknowledged every local change.
    pub verified: bool,
    /// Local changes still waiting for the server.
    pub unsynced: i64,
    pub snapshots: usize,
    pub dropped: usize,
    pub rejected: Vec<RejectedChange>,
}

/// Progress of a sync, reported after each page.
#[derive(Debug, Clone)]
pub struct Progress {
    pub page: usize,
    /// Households in this pull and how many remain.
    pub total: u64,
    pub remaining: u64,
    pub pushed: usize,
    pub pulled: usize,
}

impl Progress {
    /// One line for stderr, Bahasa Indonesia first.
    pub fn line(&self) -> String {
        let done = self.total.saturating_sub(self.remaining);
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        format!(
            "sinkronisasi: halaman {}, {}/{} rumah tangga ({}%), terkirim {}, diterima {} (sync: page {}, {}/{} households, pushed {}, pulled {})",
            self.page, done, self.total, pct, self.pushed, self.pulled, self.page, done, self.total, self.pushed, self.pulled
        )
    }
}

struct Http {
    client: reqwest::blocking::Client,
    opts: SyncOptions,
}

/// Requests made and bytes counted (kept apart from the summary so that a request can run
/// on another thread).
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    round_trips: usize,
    bytes_sent: usize,
    bytes_received: usize,
}

impl SyncSummary {
    fn count(&mut self, t: Traffic) {
        self.round_trips += t.round_trips;
        self.bytes_sent += t.bytes_sent;
        self.bytes_received += t.bytes_received;
    }
}

enum Answer {
    Ok(Vec<u8>),
    Err(u16, ErrorBody),
}

fn header_bytes(h: &reqwest::header::HeaderMap) -> usize {
    h.iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum()
}

impl Http {
    fn post(
        &self,
        traffic: &mut Traffic,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, SyncError> {
        let url = format!("{}{}", self.opts.server, path);
        let mut last = String::new();
        let mut delay = self.opts.backoff;
        for attempt in 1..=self.opts.tries.max(1) {
            let mut req = self
                .client
                .post(&url)
                .header(VERSION_HEADER, PROTOCOL_VERSION.to_string())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
            if content_type == CONTENT_TYPE_CBOR {
                req = req.header(reqwest::header::CONTENT_ENCODING, ENCODING_ZSTD);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let req = req.build().map_err(|e| SyncError::Network {
                tries: attempt,
                last: e.to_string(),
            })?;
            let host = req.url().host_str().map(|h| h.len() + 12).unwrap_or(0);
            let sent = format!("POST {path} HTTP/1.1\r\n").len()
                + header_bytes(req.headers())
                + host
                + 24 // content-length
                + 2
                + body.len();
            traffic.round_trips += 1;
            traffic.bytes_sent += sent;
            match self.client.execute(req) {
                Err(e) => last = e.to_string(),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let bytes = resp.bytes();
                    match bytes {
                        Err(e) => last = e.to_string(),
                        Ok(b) => {
                            traffic.bytes_received += 17 + header_bytes(&headers) + 2 + b.len();
                            if status == 200 || status == 204 {
                                return Ok(Answer::Ok(b.to_vec()));
                            }
                            let err: ErrorBody = serde_json::from_slice(&b).unwrap_or(ErrorBody {
                                code: format!("http_{status}"),
                                message: String::from_utf8_lossy(&b).into_owned(),
                            });
                            // Worth retrying: the server is restarting or overloaded.
                            if matches!(status, 500 | 502 | 503 | 504) {
                                last = format!("{status} {}", err.message);
                            } else {
                                return Ok(Answer::Err(status, err));
                            }
                        }
                    }
                }
            }
            if attempt < self.opts.tries {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        Err(SyncError::Network {
            tries: self.opts.tries,
            last,
        })
    }

    /// Logs in as this device, or as the new device `as_device` the store is about to
    /// become (see [`sync`]).
    fn login(
        &self,
        traffic: &mut Traffic,
        store: &mut impl StoreAccess,
        as_device: Option<&str>,
    ) -> Result<String, SyncError> {
        let password = self
            .opts
            .password
            .clone()
            .ok_or(SyncError::PasswordRequired)?;
        let body = serde_json::to_vec(&LoginRequest {
            username: self.opts.username.clone(),
            password,
            device_id: match as_device {
                Some(d) => d.to_string(),
                None => store.with(|s| Ok(s.device_id()))?,
            },
        })
        .unwrap_or_default();
        match self.post(traffic, "/v1/login", None, "application/json", body)? {
            Answer::Ok(b) => {
                let r: LoginResponse = serde_json::from_slice(&b).map_err(|e| {
                    SyncError::Protocol(kunjung_protocol::ProtocolError::Decode(e.to_string()))
                })?;
                store.with(|store| {
                    // Another server (not just another address): its cursor means nothing here.
                    if store.meta(META_SERVER_ID)?.as_deref() != Some(r.server_id.as_str()) {
                        reset(store)?;
                        store.set_meta(META_SERVER_ID, &r.server_id)?;
                    }
                    store.set_meta(META_TOKEN, &r.token)?;
                    store.set_meta(META_TOKEN_EXPIRES, &r.expires_at_ms.to_string())?;
                    Ok(())
                })?;
                Ok(r.token)
            }
            Answer::Err(status, e) => Err(SyncError::Server {
                status,
                code: e.code,
                message: e.message,
            }),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Forgets the sync position and token (a new server or user), so the next sync starts
/// over with snapshots.
pub fn reset(store: &Store) -> Result<(), StoreError> {
    for k in [META_TOKEN, META_TOKEN_EXPIRES, META_CURSOR] {
        store.set_meta(k, "")?;
    }
    Ok(())
}

/// How the sync engine reaches the store. It asks for the store only around store work,
/// one short piece at a time (never while it waits on the network), so an app can keep
/// using the same store during a long first sync (see `app_support::SharedStore`).
pub trait StoreAccess {
    /// Runs `f` on the store.
    fn with<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, SyncError>,
    ) -> Result<R, SyncError>;
}

impl StoreAccess for &mut Store {
    fn with<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, SyncError>,
    ) -> Result<R, SyncError> {
        f(self)
    }
}

/// Syncs the store with the server until nothing is left to push or pull.
pub fn sync(
    store: &mut Store,
    opts: &SyncOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<SyncSummary, SyncError> {
    sync_with(store, opts, progress)
}

/// [`sync`] through a [`StoreAccess`]: the store is taken for each short piece of store
/// work (reading what to push, marking a receipt, storing one chunk of up to 100
/// households of a page, saving the cursor) and given back
/// in between.
pub fn sync_with(
    mut store: impl StoreAccess,
    opts: &SyncOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<SyncSummary, SyncError> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| SyncError::Network {
            tries: 0,
            last: e.to_string(),
        })?;
    let http = Http {
        client,
        opts: opts.clone(),
    };
    let mut summary = SyncSummary::default();
    let mut traffic = Traffic::default();
    // Another user than the one who last synced here: the previous user's households
    // leave the device once the new user has logged in (never before: a wrong password
    // must not cost anyone their data), and never while a change of theirs is unsent.
    let new_device = store.with(|store| {
        let previous = store.meta(META_USER)?.filter(|u| !u.is_empty());
        match previous {
            Some(p) if p != opts.username => {
                let unsynced = store.unsynced_count()?;
                if unsynced > 0 {
                    return Err(SyncError::OtherUserUnsynced {
                        previous: p,
                        unsynced,
                    });
                }
                Ok(Some(Store::fresh_device_id()))
            }
            Some(_) => Ok(None),
            None => {
                // First sync of this store: what is here was made on it.
                reset(store)?;
                store.set_meta(META_USER, &opts.username)?;
                Ok(None)
            }
        }
    })?;
    let token = store.with(|store| {
        if new_device.is_some() {
            return Ok(None);
        }
        let token = store.meta(META_TOKEN)?.filter(|t| !t.is_empty());
        let expires: i64 = store
            .meta(META_TOKEN_EXPIRES)?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(token.filter(|_| expires > now_ms() + 60_000))
    })?;
    let token = match token {
        Some(t) => Ok(t),
        None => http.login(&mut traffic, &mut store, new_device.as_deref()),
    };
    summary.count(std::mem::take(&mut traffic));
    let token = token?;
    if let Some(device) = &new_device {
        store.with(|store| {
            store.forget_households(device)?;
            // Start over with snapshots; the token is the new user's, from the login just made.
            store.set_meta(META_CURSOR, "")?;
            store.set_meta(META_USER, &opts.username)?;
            Ok(())
        })?;
    }
    let result = std::thread::scope(|scope| {
        pull_loop(scope, &http, &mut store, token, &mut summary, progress)
    });
    result?;
    let unsynced = store.with(|store| {
        let unsynced = store.unsynced_count()?;
        // Changes are marked synced only on a matching receipt, so none left means every
        // local change was acknowledged by the server.
        if unsynced == 0 {
            store.set_meta(META_VERIFIED_AT, &now_ms().to_string())?;
        }
        Ok(unsynced)
    })?;
    summary.unsynced = unsynced;
    summary.verified = unsynced == 0;
    Ok(summary)
}

/// A request running on another thread, with what it counted.
type Prefetch<'scope> = std::thread::ScopedJoinHandle<'scope, (Result<Answer, SyncError>, Traffic)>;

/// Households stored per transaction when a page brings snapshots or changes: a chunk is
/// written all or nothing, and the store is handed back between chunks.
const STORE_CHUNK: usize = 100;

/// Push and pull rounds until nothing is left. While a pull-only page is being stored, the
/// next page is already asked for on another thread (its request pushes nothing and
/// carries the cursor of the page being stored; it is used only once that page and its
/// cursor are stored).
fn pull_loop<'scope, S: StoreAccess>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    http: &'scope Http,
    store: &mut S,
    mut token: String,
    summary: &mut SyncSummary,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), SyncError> {
    let opts = &http.opts;
    let mut page = 0;
    let mut relogged = false;
    let mut prefetched: Option<Prefetch<'scope>> = None;
    loop {
        let (pending, answer) = match prefetched.take() {
            Some(h) => {
                let (answer, t) = h.join().unwrap_or_else(|_| {
                    (
                        Err(SyncError::Network {
                            tries: 0,
                            last: "request thread panicked".into(),
                        }),
                        Traffic::default(),
                    )
                });
                summary.count(t);
                (Vec::new(), answer?)
            }
            None => {
                let (pending, cursor) = store.with(|store| {
                    let pending = store.unsynced(opts.max_push.max(1))?;
                    let cursor = store
                        .meta(META_CURSOR)?
                        .filter(|c| !c.is_empty())
                        .and_then(|c| Cursor::from_text(&c).ok());
                    Ok((pending, cursor))
                })?;
                let body = encode(&SyncRequest {
                    cursor,
                    changes: group_changes(&pending),
                    page_size: opts.page_size,
                })?;
                let mut t = Traffic::default();
                let answer = http.post(&mut t, "/v1/sync", Some(&token), CONTENT_TYPE_CBOR, body);
                summary.count(t);
                (pending, answer?)
            }
        };
        let resp: SyncResponse = match answer {
            Answer::Ok(b) => decode(&b)?,
            Answer::Err(401, _) if !relogged => {
                relogged = true;
                let mut t = Traffic::default();
                let fresh = http.login(&mut t, store, None);
                summary.count(t);
                token = fresh?;
                continue;
            }
            Answer::Err(status, e) => {
                return Err(SyncError::Server {
                    status,
                    code: e.code,
                    message: e.message,
                })
            }
        };
        page += 1;

        // The receipt: exactly the pushed hashes minus the rejected ones.
        let mut rejected_households = HashSet::new();
        let mut rejected_hashes = HashSet::new();
        for r in &resp.rejected {
            match &r.hash {
                Some(h) => {
                    rejected_hashes.insert(h.to_vec());
                }
                None => {
                    rejected_households.insert(r.household_id);
                }
            }
            summary.rejected.push(RejectedChange {
                household_id: r.household_id,
                code: r.code.clone(),
                message: r.message.clone(),
            });
        }
        let expected: Vec<Vec<u8>> = pending
            .iter()
            .filter(|p| {
                !rejected_households.contains(&p.household_id) && !rejected_hashes.contains(&p.hash)
            })
            .map(|p| p.hash.clone())
            .collect();
        let digest = ack_digest(expected.iter().map(|h| h.as_slice()));
        let newly_acked = if resp.acked as usize == expected.len()
            && resp.acked_digest.as_slice() == digest.as_slice()
        {
            let n = expected.len();
            if n > 0 {
                store.with(|store| Ok(store.mark_synced_hashes(expected)?))?;
            }
            n
        } else {
            // Not a receipt for what was sent: nothing is marked; the next sync resends.
            0
        };
        summary.pushed += newly_acked;

        if resp.more && pending.is_empty() {
            let body = encode(&SyncRequest {
                cursor: Some(resp.next_cursor.clone()),
                changes: Vec::new(),
                page_size: opts.page_size,
            })?;
            let token = token.clone();
            prefetched = Some(scope.spawn(move || {
                let mut t = Traffic::default();
                let answer = http.post(&mut t, "/v1/sync", Some(&token), CONTENT_TYPE_CBOR, body);
                (answer, t)
            }));
        }

        // Store the page, then its cursor.
        for id in &resp.drops {
            if store.with(|store| {
                let had = store.has_household(*id)?;
                if had {
                    store.drop_household(*id)?;
                }
                Ok(had)
            })? {
                summary.dropped += 1;
            }
        }
        let snapshots = resp.snapshots.len();
        store_snapshots(
            store,
            resp.snapshots
                .into_iter()
                .map(|s| s.bytes.into_vec())
                .collect(),
        )?;
        summary.snapshots += snapshots;
        summary.pulled += snapshots;
        let groups: Vec<(Uuid, Vec<Vec<u8>>)> = resp
            .changes
            .into_iter()
            .map(|g| {
                let changes = g.changes.into_iter().map(|c| c.into_vec()).collect();
                (g.household_id, changes)
            })
            .collect();
        for chunk in groups.chunks(STORE_CHUNK) {
            store.with(|store| Ok(store.apply_pulled(chunk, true)?))?;
            summary.pulled += chunk.iter().map(|(_, c)| c.len()).sum::<usize>();
        }
        store.with(|store| Ok(store.set_meta(META_CURSOR, &resp.next_cursor.to_text())?))?;
        progress(&Progress {
            page,
            total: resp.total,
            remaining: resp.remaining,
            pushed: summary.pushed,
            pulled: summary.pulled,
        });
        // Done when nothing is left to pull and either every local change is acknowledged
        // or this round pushed some and none was acknowledged (what is left was refused).
        // Changes written meanwhile (the app keeps working during a sync) go in another
        // round.
        if !resp.more
            && ((!pending.is_empty() && newly_acked == 0)
                || store.with(|store| Ok(store.unsynced_count()?))? == 0)
        {
            return Ok(());
        }
    }
}

/// The pushed changes grouped by household, in order.
fn group_changes(pending: &[kunjung_store::PendingChange]) -> Vec<HouseholdChanges> {
    let mut groups: Vec<HouseholdChanges> = Vec::new();
    let mut index: BTreeMap<Uuid, usize> = BTreeMap::new();
    for p in pending {
        let i = *index.entry(p.household_id).or_insert_with(|| {
            groups.push(HouseholdChanges {
                household_id: p.household_id,
                changes: Vec::new(),
            });
            groups.len() - 1
        });
        groups[i].changes.push(ByteBuf::from(p.bytes.clone()));
    }
    groups
}

/// Stores a page's snapshots: worker threads (one per core) decode the documents and
/// compute their projection rows, chunk by chunk, while this thread writes the chunks
/// they finish, one transaction each.
fn store_snapshots<S: StoreAccess>(
    store: &mut S,
    snapshots: Vec<Vec<u8>>,
) -> Result<(), SyncError> {
    if snapshots.is_empty() {
        return Ok(());
    }
    let ctx = store.with(|s| Ok(s.projection_context()?))?;
    let mut chunks = std::collections::VecDeque::new();
    let mut it = snapshots.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push_back(it.by_ref().take(STORE_CHUNK).collect::<Vec<_>>());
    }
    let n_chunks = chunks.len();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, n_chunks);
    let queue = std::sync::Mutex::new(chunks);
    type Prepared = Result<Vec<kunjung_store::PreparedDocument>, StoreError>;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Prepared>(workers);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, ctx) = (&queue, &ctx);
            scope.spawn(move || loop {
                let Some(chunk) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    return;
                };
                let prepared = chunk
                    .into_iter()
                    .map(|b| kunjung_store::prepare_document(b, ctx))
                    .collect::<Result<Vec<_>, _>>();
                let failed = prepared.is_err();
                // A closed channel: the writer stopped on an error.
                if tx.send(prepared).is_err() || failed {
                    return;
                }
            });
        }
        drop(tx);
        let mut result = Ok(());
        for _ in 0..n_chunks {
            let Ok(prepared) = rx.recv() else {
                // A worker ended without its chunk (it panicked).
                result = Err(SyncError::Store(StoreError::Invalid(
                    "dokumen tidak dapat diproses (a document could not be processed)".into(),
                )));
                break;
            };
            if let Err(e) = prepared
                .map_err(SyncError::from)
                .and_then(|docs| store.with(|s| Ok(s.store_documents(docs)?)))
            {
                result = Err(e);
                break;
            }
        }
        // Stop the workers at their next chunk.
        if let Ok(mut q) = queue.lock() {
            q.clear();
        }
        drop(rx);
        result
    })
}
