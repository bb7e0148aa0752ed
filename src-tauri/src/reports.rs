//! The puskesmas dashboard, exports and the change history: one store/client call each.

use std::path::PathBuf;

use kunjung_core::doc::FieldVersion;
use kunjung_core::report::Grouping;
use kunjung_core::schedule::YearMonth;
use kunjung_core::ChangeInfo;
use kunjung_store::app_views::Dashboard;
use serde::Serialize;
use tauri::{Manager, State};
use uuid::Uuid;

use crate::{App, AppError, Result};

/// Months in the dashboard's trend chart.
const TREND_MONTHS: usize = 6;

fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

/// The monthly recap of `month` (`YYYY-MM`) grouped `by` posyandu or desa, with the trend.
#[tauri::command(async)]
pub fn dashboard(
    app: State<'_, App>,
    month: String,
    by: String,
    area: Option<String>,
) -> Result<Dashboard> {
    let month: YearMonth = month.parse().map_err(AppError::Invalid)?;
    let by = Grouping::parse(&by).ok_or_else(|| {
        AppError::Invalid(format!(
            "kelompok '{by}' harus posyandu atau desa (group by posyandu or desa)"
        ))
    })?;
    let area = area.filter(|a| !a.trim().is_empty());
    app.with(|s| s.dashboard(month, area.as_deref(), by, TREND_MONTHS, today()))
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ExportDone {
    pub path: String,
    /// Rows per table (CSV/XLSX) or `entries` (FHIR), as the `kunjung export` command says.
    pub summary: serde_json::Value,
}

/// `KUNJUNG_EXPORT_DIR`, else the Downloads folder (`Kunjung/` in it), else the data folder.
fn export_dir(app: &tauri::AppHandle, data_dir: &std::path::Path) -> PathBuf {
    if let Some(d) = std::env::var_os("KUNJUNG_EXPORT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    app.path()
        .download_dir()
        .map(|d| d.join("Kunjung"))
        .unwrap_or_else(|_| data_dir.join("exports"))
}

/// The register and recap as CSV (a folder) or XLSX, or a FHIR Bundle, into the export
/// folder under a generated name.
#[tauri::command(async)]
pub fn export(
    handle: tauri::AppHandle,
    app: State<'_, App>,
    format: String,
    area: Option<String>,
    month: Option<String>,
) -> Result<ExportDone> {
    let dir = export_dir(&handle, &app.data_dir);
    let mut out = Err(AppError::Locked);
    app.with(|s| {
        out = kunjung_client::app_support::export_to(
            s,
            &dir,
            &format,
            area.as_deref(),
            month.as_deref(),
            today(),
        )
        .map_err(AppError::Invalid);
        Ok(())
    })?;
    let (path, summary) = out?;
    Ok(ExportDone {
        path: path.display().to_string(),
        summary,
    })
}

/// Every change of a household, newest first (who, device, when, what).
#[tauri::command(async)]
pub fn household_history(app: State<'_, App>, id: Uuid) -> Result<Vec<ChangeInfo>> {
    app.with(|s| s.household_history(id))
}

/// Every value a field had, newest first, with who set it and when.
#[tauri::command(async)]
pub fn field_history(app: State<'_, App>, id: Uuid, path: String) -> Result<Vec<FieldVersion>> {
    app.with(|s| s.field_history(id, &path))
}
