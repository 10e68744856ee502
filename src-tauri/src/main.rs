//! Corral desktop app: double-click it and the control plane runs inside it, with its database
//! in the app's data dir and its agent endpoint on the LAN (port 7070, or a free one if another
//! control plane holds 7070). The window shows the bundled web UI, told where the API is.
//!
//! Everything but what needs a desktop goes through the same REST API browsers and the CLI use.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::net::SocketAddr;
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

/// Where agents on the LAN reach the control plane unless `CORRAL_DESKTOP_LISTEN` says otherwise.
const DEFAULT_LISTEN: &str = "0.0.0.0:7070";

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .try_init();
    tauri::Builder::default()
        .setup(|app| {
            let data_dir = app.path().app_data_dir()?;
            let (api, token) = tauri::async_runtime::block_on(start_control_plane(data_dir))?;
            tracing::info!(%api, "control plane started inside the desktop app");
            // The bundled UI learns where the API is, and the admin token, before it runs.
            let script = format!("window.__CORRAL__ = {};", serde_json::json!({ "api": api, "token": token }));
            WebviewWindowBuilder::new(app, "main", WebviewUrl::App("index.html".into()))
                .title("Corral")
                .inner_size(1280.0, 800.0)
                .min_inner_size(800.0, 500.0)
                .initialization_script(&script)
                .build()?;
            Ok(())
        })
        .run(tauri::generate_context!())
        .expect("error while running the Corral desktop app");
}

/// Opens the control plane and runs it for the life of the app; returns the API's loopback URL
/// and the admin token.
async fn start_control_plane(data_dir: std::path::PathBuf) -> Result<(String, String), Box<dyn std::error::Error>> {
    let wanted: SocketAddr = std::env::var("CORRAL_DESKTOP_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into()).parse()?;
    let control_plane = match corral_server::ControlPlane::open(corral_server::Config::new(data_dir.clone(), wanted)).await {
        Ok(cp) => cp,
        Err(corral_server::ServerError::Listen { .. }) => {
            tracing::warn!(%wanted, "port taken; the control plane listens on a free port instead");
            let any = SocketAddr::new(wanted.ip(), 0);
            corral_server::ControlPlane::open(corral_server::Config::new(data_dir.clone(), any)).await?
        }
        Err(e) => return Err(e.into()),
    };
    let token = match &control_plane.new_admin_token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(data_dir.join(corral_server::ADMIN_TOKEN_FILE))?.trim().to_string(),
    };
    let api = format!("http://127.0.0.1:{}", control_plane.local_addr().port());
    let (_stop, shutdown) = tokio::sync::broadcast::channel::<()>(1);
    tauri::async_runtime::spawn(async move {
        // Dropping the sender's last clone never fires; the control plane ends with the app.
        let _keep = _stop;
        if let Err(e) = control_plane.run(shutdown).await {
            tracing::error!(error = %e, "the control plane stopped");
        }
    });
    Ok((api, token))
}
