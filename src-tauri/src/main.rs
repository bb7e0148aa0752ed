//! Desktop entry point; the app itself is in `lib.rs` so the same code runs on Android/iOS.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    kunjung_app_lib::run()
}
