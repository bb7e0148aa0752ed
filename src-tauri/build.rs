//! Tauri build script: reads tauri.conf.json and the capabilities.

fn main() {
    tauri_build::build()
}
