//! The background sync thread and the always-visible sync state.
//!
//! The thread never holds the store while it waits on the network, so the UI never
//! blocks and a form in progress is never lost. It wakes up when something changed
//! (`kick`), when the user asks (`sync_now`) and on a timer; while the server cannot be
//! reached it retries with exponential backoff, so the app syncs by itself once
//! connectivity returns. Every change of state goes to the UI as a `sync-state` event.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

use crate::{with_store, App, AppError, Result, SharedStore};

/// What the state bar shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SyncState {
    /// `locked`, `no_server`, `signed_out`, `offline`, `syncing`, `verified` or `error`.
    pub phase: String,
    /// Local changes the server has not acknowledged yet.
    pub pending: i64,
    /// 0.0–1.0 while syncing.
    pub progress: Option<f64>,
    /// When the server last acknowledged every local change (ms since the epoch).
    pub verified_at: Option<i64>,
    /// Changes the server acknowledged in the last sync.
    pub acknowledged: i64,
    /// Changes and snapshots received in the last sync (the UI reloads what it shows).
    pub pulled: i64,
    pub message: Option<String>,
    /// Seconds until the next automatic attempt while offline.
    pub retry_in_s: Option<u64>,
}

enum Msg {
    /// Something changed locally: refresh the count, sync soon.
    Kick,
    /// The user pressed the sync button: try now, reset the backoff.
    Now,
}

pub struct SyncWorker {
    tx: Mutex<Sender<Msg>>,
    state: Arc<Mutex<SyncState>>,
    handle: AppHandle,
}

/// Shows `s` in the state bar (an event to the UI) when it changed.
fn publish_to(handle: &AppHandle, cur: &Mutex<SyncState>, s: SyncState) {
    let mut cur = cur.lock().unwrap_or_else(|p| p.into_inner());
    if *cur != s {
        *cur = s.clone();
        let _ = handle.emit("sync-state", s);
    }
}

/// First retry delay; doubles up to `max_backoff()`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

fn max_backoff() -> Duration {
    // KUNJUNG_SYNC_MAX_BACKOFF_MS lets tests keep the retries short.
    std::env::var("KUNJUNG_SYNC_MAX_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(300))
}

impl SyncWorker {
    pub fn start(handle: AppHandle, store: SharedStore) -> SyncWorker {
        let (tx, rx) = channel();
        let state = Arc::new(Mutex::new(SyncState {
            phase: "locked".into(),
            ..Default::default()
        }));
        let shared = state.clone();
        let h = handle.clone();
        std::thread::spawn(move || {
            let mut backoff = FIRST_BACKOFF;
            let mut wait = max_backoff();
            loop {
                let now = match rx.recv_timeout(wait) {
                    Ok(Msg::Now) => true,
                    Ok(Msg::Kick) | Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                if now {
                    backoff = FIRST_BACKOFF;
                }
                let publish = |s: SyncState| publish_to(&h, &shared, s);
                let before = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let next = engine::step(&store, &before, &publish);
                wait = if next.phase == "offline" || next.phase == "error" {
                    let w = backoff;
                    backoff = (backoff * 2).min(max_backoff());
                    w
                } else {
                    backoff = FIRST_BACKOFF;
                    max_backoff().min(Duration::from_secs(60))
                };
                publish(SyncState {
                    retry_in_s: (next.phase == "offline").then_some(wait.as_secs()),
                    ..next
                });
            }
        });
        SyncWorker {
            tx: Mutex::new(tx),
            state,
            handle,
        }
    }

    /// Shows the progress of a sync run outside the worker (the first sign-in).
    fn progress(&self, p: &kunjung_client::sync::Progress) {
        let done = p.total.saturating_sub(p.remaining) as f64;
        let cur = self.state();
        publish_to(
            &self.handle,
            &self.state,
            SyncState {
                phase: "syncing".into(),
                progress: Some(if p.total == 0 {
                    1.0
                } else {
                    done / p.total as f64
                }),
                ..cur
            },
        );
    }

    /// Something changed locally (or the store was unlocked).
    pub fn kick(&self) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Kick);
    }

    fn now(&self) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Now);
    }

    pub fn state(&self) -> SyncState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

mod engine;

/// First sign-in to the server (or again after the token expired): saves the server and
/// account, then syncs with the password, which is never stored.
#[tauri::command(async)]
pub fn sign_in(
    app: State<'_, App>,
    server: String,
    account: String,
    password: String,
) -> Result<SyncState> {
    let opts = engine::options(server.trim(), account.trim(), Some(password));
    app.with(|s| {
        s.set_meta("setting:server", server.trim())?;
        s.set_meta("setting:account", account.trim())
    })?;
    // The engine's blocking HTTP client may not run on the async runtime's threads; the
    // store stays usable by other commands during this (first, maybe long) sync.
    let shared = &app.store;
    let r = std::thread::scope(|sc| {
        sc.spawn(|| shared.sync(&opts, &mut |p| app.sync.progress(p)))
            .join()
    })
    .map_err(|_| AppError::Sync("sign-in thread panicked".into()))?;
    let state = app.with(|s| {
        let verified = kunjung_client::app_support::verified_at(s)?;
        Ok(engine::outcome(r, s.unsynced_count()?, verified))
    })?;
    app.sync.kick();
    match state.phase.as_str() {
        "verified" => Ok(state),
        "offline" => Err(AppError::Sync(state.phase)),
        _ => Err(AppError::SignIn(state.message.unwrap_or(state.phase))),
    }
}

#[tauri::command]
pub fn sync_state(app: State<'_, App>) -> SyncState {
    app.sync.state()
}

/// Sync now (the sync button); the result arrives as `sync-state` events.
#[tauri::command]
pub fn sync_now(app: State<'_, App>) -> Result<SyncState> {
    app.sync.now();
    Ok(app.sync.state())
}
