//! What the running app shares between its menus, tray, window and commands, and the app-level
//! flows: closing the window (tray or stop), quitting cleanly, following the UI's environment.

use crate::control_plane::RunningControlPlane;
use crate::error::DesktopError;
use crate::settings::{OnClose, SettingsChange, SettingsStore, SettingsView};
use crate::{actions, menu, tray};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tauri::{AppHandle, Manager, WebviewWindow};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind, MessageDialogResult};

/// Label of the one window.
pub const MAIN_WINDOW: &str = "main";
/// Test hook: answers the close question without a dialog (`tray` or `stop`).
pub const ON_CLOSE_ENV: &str = "CORRAL_DESKTOP_ON_CLOSE";

pub struct Desktop {
    pub control_plane: RunningControlPlane,
    pub settings: SettingsStore,
    /// The UI's own window title, put back after a backup showed its progress there.
    pub title: Mutex<String>,
    /// The environment the UI shows, as its title says; checked in the Environment menu.
    pub selected_env: Mutex<Option<String>>,
    quitting: AtomicBool,
    stopped: AtomicBool,
}

impl Desktop {
    pub fn new(control_plane: RunningControlPlane, settings: SettingsStore) -> Self {
        Desktop {
            control_plane,
            settings,
            title: Mutex::new("Corral".into()),
            selected_env: Mutex::default(),
            quitting: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// Whether the control plane has shut down (then the app may exit).
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub fn selected_env(&self) -> Option<String> {
        self.selected_env.lock().expect("lock").clone()
    }
}

pub fn main_window(app: &AppHandle) -> Option<WebviewWindow> {
    app.get_webview_window(MAIN_WINDOW)
}

/// Stops the control plane (shutdown broadcast, then waits until it closed the store) and
/// exits. Menu Quit, tray Quit, "Stop" on close and SIGTERM all end here.
pub fn quit(app: &AppHandle) {
    let desktop = app.state::<Desktop>();
    if desktop.quitting.swap(true, Ordering::SeqCst) {
        return;
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let desktop = app.state::<Desktop>();
        tracing::info!("stopping the control plane");
        let code = match desktop.control_plane.shutdown().await {
            Ok(()) => {
                tracing::info!("control plane stopped cleanly");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "the control plane did not stop cleanly");
                1
            }
        };
        desktop.stopped.store(true, Ordering::SeqCst);
        app.exit(code);
    });
}

/// The main window asked to close: keep running in the tray, or stop, as the user says.
pub fn on_close_requested(app: &AppHandle) {
    match close_choice(app) {
        OnClose::Tray => hide_to_tray(app),
        OnClose::Stop => quit(app),
        OnClose::Ask => ask_on_close(app),
    }
}

fn close_choice(app: &AppHandle) -> OnClose {
    if let Some(text) = std::env::var(ON_CLOSE_ENV).ok().filter(|t| !t.is_empty()) {
        match text.parse() {
            Ok(choice) => return choice,
            Err(e) => tracing::warn!(error = %e, "ignoring {ON_CLOSE_ENV}"),
        }
    }
    app.state::<Desktop>().settings.get().on_close
}

const KEEP: &str = "Keep running in the tray";
const STOP: &str = "Stop Corral";

fn ask_on_close(app: &AppHandle) {
    let handle = app.clone();
    app.dialog()
        .message(
            "Keep Corral running in the tray?\n\n\
             Agents stay connected and services keep healing while the window is closed. \
             Stopping shuts down the control plane until you start Corral again.\n\n\
             To stop asking, choose under File → When the window closes.",
        )
        .title("Close Corral")
        .kind(MessageDialogKind::Info)
        .buttons(MessageDialogButtons::YesNoCancelCustom(KEEP.into(), STOP.into(), "Cancel".into()))
        .show_with_result(move |answer| match answer {
            MessageDialogResult::Custom(label) if label == KEEP => hide_to_tray(&handle),
            MessageDialogResult::Yes => hide_to_tray(&handle),
            MessageDialogResult::Custom(label) if label == STOP => quit(&handle),
            MessageDialogResult::No => quit(&handle),
            _ => {}
        });
}

/// Hides the window behind a tray icon; the control plane keeps serving.
fn hide_to_tray(app: &AppHandle) {
    let Some(window) = main_window(app) else { return };
    match tray::ensure(app) {
        Ok(()) => {
            let _ = window.hide();
            tracing::info!("window hidden; Corral keeps running in the tray");
        }
        Err(e) => {
            // Without a tray icon a hidden window could not come back: minimize instead.
            tracing::warn!(error = %e, "no tray icon; minimizing the window instead");
            let _ = window.minimize();
        }
    }
}

/// Brings the window back from the tray.
pub fn show_window(app: &AppHandle) {
    if let Some(window) = main_window(app) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

/// Saves a settings change and reflects it in the menu; nothing changes on error.
pub fn update_settings(app: &AppHandle, change: &SettingsChange) -> Result<SettingsView, DesktopError> {
    let view = app.state::<Desktop>().settings.update(change)?;
    menu::show_on_close(app, view.settings.on_close);
    Ok(view)
}

/// The UI changed `document.title`: the window shows it, and the Environment menu checks the
/// environment it names.
pub fn on_title_changed(window: &WebviewWindow, title: String) {
    let app = window.app_handle();
    let desktop = app.state::<Desktop>();
    let _ = window.set_title(&title);
    let env = actions::environment_in_title(&title).map(str::to_string);
    *desktop.title.lock().expect("lock") = title;
    if env.is_some() {
        *desktop.selected_env.lock().expect("lock") = env.clone();
        menu::check_environment(app, env.as_deref());
    }
}

/// Shows what an operation is doing in the window title; `None` puts the UI's title back.
pub fn show_status(app: &AppHandle, status: Option<&str>) {
    let Some(window) = main_window(app) else { return };
    let title = app.state::<Desktop>().title.lock().expect("lock").clone();
    let _ = match status {
        Some(status) => window.set_title(&format!("{title} — {status}")),
        None => window.set_title(&title),
    };
}

/// An information or error message box; does not block the caller.
pub fn message(app: &AppHandle, title: &str, text: impl Into<String>, kind: MessageDialogKind) {
    app.dialog().message(text).title(title).kind(kind).show(|_| {});
}
