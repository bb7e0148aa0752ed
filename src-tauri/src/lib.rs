//! Kunjung app shell (Tauri 2). Thin by design (docs/ARCHITECTURE.md): every command is a
//! few lines calling `kunjung-store` or `kunjung-client`; there is no SQL, no Automerge and
//! no clinical rule here. The UI reaches these commands only through `ui/src/lib/api.ts`.
//!
//! The store lives in the app data directory, or in `KUNJUNG_DATA` / `--data=DIR` when set
//! (tests, demo).

mod commands;
mod error;
mod reports;
mod review;
mod session;
mod sync;

#[cfg(test)]
mod bindings;

use std::path::PathBuf;
use std::sync::Arc;

use kunjung_store::Store;
use tauri::Manager;

pub use error::{AppError, ErrorBody, Result};

/// The unlocked store, shared by the commands and the background sync thread (which takes
/// it only between network round trips, one household at a time).
pub type SharedStore = Arc<kunjung_client::app_support::SharedStore>;

/// State of the running app.
pub struct App {
    pub data_dir: PathBuf,
    pub store: SharedStore,
    pub sync: sync::SyncWorker,
}

impl App {
    /// Runs `f` on the unlocked store (`Locked` before the PIN was entered).
    pub fn with<T>(&self, f: impl FnOnce(&mut Store) -> kunjung_store::Result<T>) -> Result<T> {
        with_store(&self.store, f)
    }
}

/// Runs `f` on the store behind `shared`, if unlocked.
pub fn with_store<T>(
    shared: &SharedStore,
    f: impl FnOnce(&mut Store) -> kunjung_store::Result<T>,
) -> Result<T> {
    let mut guard = shared.lock();
    let store = guard.as_mut().ok_or(AppError::Locked)?;
    Ok(f(store)?)
}

/// `--data=DIR` (a second instance in the tests), else `KUNJUNG_DATA`, else the app data dir.
fn data_dir(app: &tauri::App) -> PathBuf {
    if let Some(d) = std::env::args().find_map(|a| a.strip_prefix("--data=").map(PathBuf::from)) {
        return d;
    }
    match std::env::var_os("KUNJUNG_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => app
            .path()
            .app_data_dir()
            .unwrap_or_else(|_| kunjung_client::default_data_dir()),
    }
}

#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    tauri::Builder::default()
        .setup(|app| {
            let store: SharedStore = Arc::default();
            let sync = sync::SyncWorker::start(app.handle().clone(), store.clone());
            app.manage(App {
                data_dir: data_dir(app),
                store,
                sync,
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            session::app_status,
            session::setup,
            session::unlock,
            session::lock,
            session::get_settings,
            session::set_setting,
            commands::list_households,
            commands::search,
            commands::household,
            commands::create_household,
            commands::edit_household,
            commands::add_member,
            commands::check_nik,
            commands::add_pregnancy,
            commands::visit_form,
            commands::add_visit,
            commands::tasks,
            commands::get_draft,
            commands::save_draft,
            commands::clear_draft,
            commands::draft_keys,
            review::list_referrals,
            review::update_referral,
            review::review_queue,
            review::acknowledge_visit,
            review::conflicts,
            review::resolve_conflict,
            review::growth_chart,
            reports::dashboard,
            reports::export,
            reports::household_history,
            reports::field_history,
            sync::sync_state,
            sync::sync_now,
            sync::sign_in,
        ])
        .run(tauri::generate_context!())
        .expect("error while running the Kunjung app");
}
