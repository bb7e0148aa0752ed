//! The FHIR R4 validator used by the export tests: the PyPI package `fhir.resources`
//! 6.1.0, the last release whose models are FHIR R4 4.0.1 (6.2.0 onwards are R4B 4.3.0,
//! 7.x and later R5), with pydantic 1.x which that release needs. It is installed in a
//! virtual environment under `target/fhir-validator` (not system-wide), once.
//!
//! `ensure_validator()` installs it if needed and sets `KUNJUNG_FHIR_VALIDATOR=1`,
//! `KUNJUNG_REQUIRE_FHIR=1` and `KUNJUNG_FHIR_PYTHON` for the `cargo test` run started
//! afterwards by this process (the test in `crates/client/tests/reports.rs` reads them).

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::sh;

/// The pinned packages: FHIR R4 4.0.1 models and the pydantic major version they need.
pub const PACKAGES: &[&str] = &["fhir.resources==6.1.0", "pydantic[email]>=1.10,<2"];

/// The virtual environment's Python.
pub fn python() -> PathBuf {
    sh::root().join("target/fhir-validator/bin/python")
}

fn check() -> bool {
    let py = python();
    py.exists()
        && sh::output(
            py.to_str().unwrap_or_default(),
            &[
                "-c",
                "import fhir.resources as f; assert f.__fhir_version__ == '4.0.1'; print('ok')",
            ],
        )
        .map(|o| o.trim() == "ok")
        .unwrap_or(false)
}

/// Installs the validator when it is missing and exports the variables the test reads.
pub fn ensure_validator() -> Result<()> {
    if !check() {
        sh::apt_install(&["python3", "python3-venv", "python3-pip"])?;
        let dir = sh::root().join("target/fhir-validator");
        let dir_s = dir.to_string_lossy().to_string();
        sh::run("python3", &["-m", "venv", &dir_s], &[])?;
        let py = python();
        let py_s = py.to_string_lossy().to_string();
        let mut args = vec![
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ];
        args.extend(PACKAGES);
        sh::run(&py_s, &args, &[])?;
        if !check() {
            bail!("fhir.resources (FHIR R4 4.0.1) tidak terpasang (validator install failed)");
        }
    }
    std::env::set_var("KUNJUNG_FHIR_VALIDATOR", "1");
    std::env::set_var("KUNJUNG_REQUIRE_FHIR", "1");
    std::env::set_var("KUNJUNG_FHIR_PYTHON", python());
    Ok(())
}
