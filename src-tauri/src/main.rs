//! Corral desktop app. For now a shell: one window titled "Corral" that shows the bundled web UI
//! (ui/dist, embedded at build time). The control plane will start in-process here later.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    tauri::Builder::default()
        .run(tauri::generate_context!())
        .expect("error while running the Corral desktop app");
}
