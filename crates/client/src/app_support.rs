//! What the app needs besides the plain store and `sync::sync`: the store shared between
//! the app's commands and its background sync (a long first sync never holds it for more
//! than one chunk of at most 100 households at a time, ~50 ms), a quick reachability probe made without the store (so
//! the app never waits on a dead network with its store taken), the time of the last
//! verified sync, and exports written into a folder with a generated name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use kunjung_store::{Store, StoreError};
use parking_lot::{Mutex, MutexGuard};

use crate::sync::{sync_with, Progress, StoreAccess, SyncError, SyncOptions, SyncSummary};

/// Meta key the sync engine writes when the server acknowledged every local change.
const META_VERIFIED_AT: &str = "sync.verified_at_ms";

/// The app's store (absent while locked), shared by its commands and its sync.
///
/// Commands take the store with [`SharedStore::lock`] for one operation. A sync
/// ([`SharedStore::sync`]) takes it only for each short piece of store work and hands it
/// over fairly in between (`unlock_fair`), so a command waiting for it gets it next: the
/// UI stays usable during a long first sync. Syncs themselves run one at a time.
#[derive(Default)]
pub struct SharedStore {
    store: Mutex<Option<Store>>,
    syncing: Mutex<()>,
}

impl SharedStore {
    pub fn new() -> SharedStore {
        SharedStore::default()
    }

    /// The store for one operation (`None` while locked).
    pub fn lock(&self) -> MutexGuard<'_, Option<Store>> {
        self.store.lock()
    }

    /// Whether a sync is running now.
    pub fn is_syncing(&self) -> bool {
        self.syncing.is_locked()
    }

    /// Syncs with the server (after any sync already running). While it runs, commands
    /// get the store between its steps. Fails with `PinRequired` when the store is locked
    /// (before or during the sync).
    pub fn sync(
        &self,
        opts: &SyncOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<SyncSummary, SyncError> {
        let _one = self.syncing.lock();
        sync_with(Fair(&self.store), opts, progress)
    }
}

/// Store access for the sync engine that hands the store over fairly after each step.
struct Fair<'a>(&'a Mutex<Option<Store>>);

impl StoreAccess for Fair<'_> {
    fn with<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, SyncError>,
    ) -> Result<R, SyncError> {
        let mut guard = self.0.lock();
        let r = match guard.as_mut() {
            Some(s) => f(s),
            None => Err(SyncError::Store(StoreError::PinRequired)),
        };
        MutexGuard::unlock_fair(guard);
        r
    }
}

/// Whether the server answers `GET /v1/health` within `timeout`.
pub fn reachable(server: &str, timeout: Duration) -> bool {
    let Ok(client) = reqwest::blocking::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
    else {
        return false;
    };
    let url = format!("{}/v1/health", server.trim_end_matches('/'));
    client
        .get(url)
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// When the last sync was verified (ms since the epoch), if ever.
pub fn verified_at(store: &Store) -> Result<Option<i64>, StoreError> {
    Ok(store
        .meta(META_VERIFIED_AT)?
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0))
}

/// `kunjung export` into `dir` under a generated name
/// (`kunjung-<area or semua>-<YYYY-MM>-<YYYYMMDD-HHMMSS>.xlsx`, `.json` for FHIR, a folder
/// for CSV). Returns the path written and the export's summary (rows per table, or FHIR
/// entries).
pub fn export_to(
    store: &mut Store,
    dir: &Path,
    format: &str,
    area: Option<&str>,
    month: Option<&str>,
    today: NaiveDate,
) -> Result<(PathBuf, serde_json::Value), String> {
    let format = format.trim().to_lowercase();
    let area = area.map(str::trim).filter(|a| !a.is_empty());
    let month = month.map(str::trim).filter(|m| !m.is_empty());
    let ym = match month {
        Some(m) => m.parse::<kunjung_core::schedule::YearMonth>()?,
        None => kunjung_core::schedule::YearMonth::of(today),
    };
    let ext = match format.as_str() {
        "xlsx" => ".xlsx",
        "fhir" => ".json",
        "csv" => "",
        _ => {
            return Err(format!(
                "format '{format}' tidak dikenal: csv|xlsx|fhir (unknown format)"
            ))
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "folder {} tidak bisa dibuat: {e} (cannot create the folder)",
            dir.display()
        )
    })?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let what = area.map(crate::fhir::area_digits).unwrap_or("semua".into());
    let kind = if format == "fhir" { "-fhir" } else { "" };
    let out = dir.join(format!("kunjung-{what}-{ym}{kind}-{stamp}{ext}"));
    let summary = crate::export::run_export(store, &format, &out, area, month, today)?;
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_unreachable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(!reachable(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(500)
        ));
    }

    #[test]
    fn export_to_writes_a_named_file_and_refuses_unknown_formats() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::init(&dir.path().join("store"), None, "puskesmas").unwrap();
        let today = "2026-11-20".parse().unwrap();
        let out = dir.path().join("exports");
        let (p, sum) = export_to(&mut s, &out, "xlsx", None, Some("2026-11"), today).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("kunjung-semua-2026-11-") && name.ends_with(".xlsx"),
            "{name}"
        );
        assert!(std::fs::metadata(&p).unwrap().len() > 0);
        assert_eq!(sum["format"], "xlsx");
        let (p, _) = export_to(&mut s, &out, "fhir", Some("32.14.01"), None, today).unwrap();
        assert!(p.to_string_lossy().contains("-fhir-"), "{}", p.display());
        let e = export_to(&mut s, &out, "pdf", None, None, today).unwrap_err();
        assert!(e.contains("tidak dikenal") && e.contains("unknown"), "{e}");
        let e = export_to(&mut s, &out, "csv", None, Some("2026-13"), today).unwrap_err();
        assert!(!e.is_empty());
    }
}
