//! First-run setup, PIN unlock and settings (kept in the store's meta table).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tauri::State;

use crate::{App, AppError, Result};
use kunjung_store::Store;

/// What the start screen needs to know.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AppStatus {
    pub initialized: bool,
    pub encrypted: bool,
    pub unlocked: bool,
    pub user: Option<String>,
    pub device: Option<String>,
    pub data_dir: String,
    pub version: String,
}

/// Settings the user can change (language, server address, account name).
pub const SETTINGS: &[&str] = &["language", "server", "account", "role", "area"];

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetupInput {
    pub pin: String,
    pub user: String,
}

#[tauri::command(async)]
pub fn app_status(app: State<'_, App>) -> Result<AppStatus> {
    let config = Store::config(&app.data_dir)?;
    let guard = app.store.lock();
    Ok(AppStatus {
        initialized: config.is_some(),
        encrypted: config.map(|c| c.encrypted).unwrap_or(false),
        unlocked: guard.is_some(),
        user: guard.as_ref().map(|s| s.user().to_string()),
        device: guard.as_ref().map(|s| s.device_id()),
        data_dir: app.data_dir.display().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// Creates the encrypted store on first run.
#[tauri::command(async)]
pub fn setup(app: State<'_, App>, input: SetupInput) -> Result<AppStatus> {
    let user = input.user.trim();
    if user.is_empty() {
        return Err(AppError::Invalid(
            "nama pengguna wajib diisi (user name required)".into(),
        ));
    }
    let store = Store::init(&app.data_dir, Some(&input.pin), user)?;
    *app.store.lock() = Some(store);
    app.sync.kick();
    app_status(app)
}

/// Opens the store with the PIN (offline: the PIN decrypts the local database).
#[tauri::command(async)]
pub fn unlock(app: State<'_, App>, pin: String) -> Result<AppStatus> {
    let store = Store::open(&app.data_dir, Some(&pin))?;
    *app.store.lock() = Some(store);
    app.sync.kick();
    app_status(app)
}

#[tauri::command(async)]
pub fn lock(app: State<'_, App>) -> Result<AppStatus> {
    *app.store.lock() = None;
    app_status(app)
}

#[tauri::command(async)]
pub fn get_settings(app: State<'_, App>) -> Result<BTreeMap<String, String>> {
    app.with(|s| {
        let mut out = BTreeMap::new();
        for k in SETTINGS {
            if let Some(v) = s.meta(&format!("setting:{k}"))? {
                out.insert(k.to_string(), v);
            }
        }
        Ok(out)
    })
}

#[tauri::command(async)]
pub fn set_setting(app: State<'_, App>, key: String, value: String) -> Result<()> {
    if !SETTINGS.contains(&key.as_str()) {
        return Err(AppError::Invalid(format!(
            "pengaturan tidak dikenal: {key} (unknown setting)"
        )));
    }
    app.with(|s| s.set_meta(&format!("setting:{key}"), value.trim()))?;
    app.sync.kick();
    Ok(())
}
