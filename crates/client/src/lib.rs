//! The Kunjung client: demo data generation, shared command helpers and (with the sync
//! issue) the sync engine. The `kunjung` binary (`main.rs`) is a thin command-line layer
//! over this crate and `kunjung-store`.

pub mod app_support;
pub mod export;
pub mod fhir;
pub mod import;
pub mod seed;
pub mod sync;

use std::path::{Path, PathBuf};

/// The data directory: `--data`, else `KUNJUNG_DATA`, else `$XDG_DATA_HOME/kunjung` or
/// `~/.local/share/kunjung`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return Path::new(&x).join("kunjung");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return Path::new(&h).join(".local/share/kunjung");
    }
    PathBuf::from("kunjung-data")
}
