//! Start-up of the windowed app: settings, the in-process control plane, menus, the window,
//! and the run loop that lets the app exit only once the control plane has stopped.

use crate::control_plane;
use crate::desktop::{self, Desktop, MAIN_WINDOW};
use crate::settings::{Settings, SettingsStore, SETTINGS_FILE};
use crate::{actions, commands, menu};
use tauri::{App, AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindowBuilder, WindowEvent};

pub fn run() -> anyhow::Result<()> {
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .invoke_handler(tauri::generate_handler![commands::get_settings, commands::set_settings])
        .setup(|app| setup(app).map_err(Into::into))
        .on_menu_event(menu::on_event)
        .on_window_event(|window, event| match event {
            WindowEvent::CloseRequested { api, .. } if window.label() == MAIN_WINDOW => {
                api.prevent_close();
                desktop::on_close_requested(window.app_handle());
            }
            _ => {}
        })
        .build(tauri::generate_context!())?;
    app.run(on_run_event);
    Ok(())
}

fn setup(app: &mut App) -> anyhow::Result<()> {
    let settings_path = app.path().app_config_dir()?.join(SETTINGS_FILE);
    let settings = Settings::load_or_default(&settings_path);
    let data_dir = app.path().app_data_dir()?;
    let listen = control_plane::listen_addr(settings.agent_port)?;
    let control_plane = tauri::async_runtime::block_on(control_plane::start(&data_dir, listen, crate::credentials::Backend::from_env()?))?;
    tracing::info!(api = %control_plane.api, agent_url = %control_plane.agent_url,
        ca_fingerprint = control_plane.ca_fingerprint.as_deref().unwrap_or("none (plain HTTP)"), data_dir = %data_dir.display(),
        "control plane started inside the desktop app");
    let environments = tauri::async_runtime::block_on(actions::environment_names(&control_plane.state))?;
    let script = actions::init_script(&control_plane.api, &control_plane.token, &control_plane.agent_url);
    let on_close = settings.on_close;
    let store = SettingsStore::new(settings_path, settings, control_plane.port);
    app.manage(Desktop::new(control_plane, store));
    menu::install(app.handle(), &environments, on_close)?;
    menu::follow_environments(app.handle());
    WebviewWindowBuilder::new(app, MAIN_WINDOW, WebviewUrl::App("index.html".into()))
        .title("Corral")
        .inner_size(1280.0, 800.0)
        .min_inner_size(800.0, 500.0)
        .initialization_script(&script)
        .on_document_title_changed(|window, title| desktop::on_title_changed(&window, title))
        .build()?;
    stop_on_signals(app.handle());
    Ok(())
}

fn on_run_event(app: &AppHandle, event: RunEvent) {
    if let RunEvent::ExitRequested { api, .. } = event {
        // Whatever asked to exit, the control plane closes its store first.
        if !app.state::<Desktop>().stopped() {
            api.prevent_exit();
            desktop::quit(app);
        }
    }
}

/// SIGTERM / SIGINT (a session logging out, Ctrl-C in a terminal) stop the app cleanly too.
fn stop_on_signals(app: &AppHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tracing::warn!("cannot watch for SIGTERM/SIGINT");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received");
            desktop::quit(&app);
        });
    }
}
