//! The native menu bar: File (backup, restore, what closing does, quit), Environment (one
//! checkable item per environment, switching the UI) and Help.

use crate::desktop::{self, Desktop};
use crate::settings::{OnClose, SettingsChange};
use crate::{actions, database};
use corral_server::events::Resource;
use std::sync::Mutex;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Manager, Wry};
use tauri_plugin_dialog::MessageDialogKind;
use tokio::sync::broadcast::error::RecvError;

const BACKUP: &str = "backup";
const RESTORE: &str = "restore";
const QUIT: &str = "quit";
const OPEN_BROWSER: &str = "open-browser";
const OPEN_DATA: &str = "open-data";
const ABOUT: &str = "about";
const ON_CLOSE_PREFIX: &str = "on-close:";
const ENV_PREFIX: &str = "env:";

const ON_CLOSE_CHOICES: [(OnClose, &str, &str); 3] =
    [(OnClose::Ask, "ask", "Ask"), (OnClose::Tray, "tray", "Keep running in the tray"), (OnClose::Stop, "stop", "Stop Corral")];

/// The menu items that change while the app runs.
pub struct MenuHandles {
    environment: Submenu<Wry>,
    /// The environment names the Environment menu lists now.
    listed: Mutex<Vec<String>>,
    on_close: Vec<(OnClose, CheckMenuItem<Wry>)>,
}

/// Builds the menu bar, sets it on the app and keeps the handles for later updates.
pub fn install(app: &AppHandle, environments: &[String], on_close: OnClose) -> tauri::Result<()> {
    let on_close_items = ON_CLOSE_CHOICES
        .iter()
        .map(|(choice, id, text)| {
            CheckMenuItem::with_id(app, format!("{ON_CLOSE_PREFIX}{id}"), *text, true, *choice == on_close, None::<&str>).map(|item| (*choice, item))
        })
        .collect::<tauri::Result<Vec<_>>>()?;
    let when_closed = Submenu::with_items(
        app,
        "When the window closes",
        true,
        &on_close_items.iter().map(|(_, item)| item as &dyn tauri::menu::IsMenuItem<Wry>).collect::<Vec<_>>(),
    )?;
    let file = Submenu::with_items(
        app,
        "File",
        true,
        &[
            &MenuItem::with_id(app, BACKUP, "Back up database…", true, None::<&str>)?,
            &MenuItem::with_id(app, RESTORE, "Restore database…", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &when_closed,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, QUIT, "Quit", true, Some("CmdOrCtrl+Q"))?,
        ],
    )?;
    let environment = Submenu::with_items(app, "Environment", true, &[])?;
    let help = Submenu::with_items(
        app,
        "Help",
        true,
        &[
            &MenuItem::with_id(app, OPEN_BROWSER, "Open in browser", true, None::<&str>)?,
            &MenuItem::with_id(app, OPEN_DATA, "Open data folder", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, ABOUT, "About Corral", true, None::<&str>)?,
        ],
    )?;
    app.set_menu(Menu::with_items(app, &[&file, &environment, &help])?)?;
    app.manage(MenuHandles { environment, listed: Mutex::default(), on_close: on_close_items });
    list_environments(app, environments);
    Ok(())
}

pub fn on_event(app: &AppHandle, event: MenuEvent) {
    let id = event.id().as_ref();
    let desktop = app.state::<Desktop>();
    match id {
        BACKUP => database::backup(app),
        RESTORE => database::restore(app),
        QUIT => desktop::quit(app),
        OPEN_BROWSER => open(app, &desktop.control_plane.browser_url()),
        OPEN_DATA => open(app, &desktop.control_plane.data_dir.to_string_lossy()),
        ABOUT => about(app),
        _ => {
            if let Some(name) = id.strip_prefix(ENV_PREFIX) {
                select_environment(app, name);
            } else if let Some(choice) = id.strip_prefix(ON_CLOSE_PREFIX) {
                set_on_close(app, choice);
            }
        }
    }
}

fn open(app: &AppHandle, target: &str) {
    if let Err(e) = open::that_detached(target) {
        desktop::message(app, "Corral", format!("Could not open {target}: {e}"), MessageDialogKind::Error);
    }
}

fn about(app: &AppHandle) {
    let desktop = app.state::<Desktop>();
    let cp = &desktop.control_plane;
    let text = format!(
        "Corral {}\n\nControl plane: {}\nAgents join at: {}{}\nData folder: {}",
        env!("CARGO_PKG_VERSION"),
        cp.api,
        cp.agent_url,
        cp.ca_fingerprint.as_deref().map(|pin| format!("\nCA fingerprint: {pin}")).unwrap_or_default(),
        cp.data_dir.display()
    );
    desktop::message(app, "About Corral", text, MessageDialogKind::Info);
}

fn select_environment(app: &AppHandle, name: &str) {
    if let Some(window) = desktop::main_window(app) {
        if let Err(e) = window.eval(actions::select_environment_script(name)) {
            tracing::warn!(error = %e, "could not switch the UI's environment");
        }
    }
    // A check item toggles itself on click; the UI's title confirms the switch later.
    check_environment(app, Some(name));
}

fn set_on_close(app: &AppHandle, choice: &str) {
    let change = choice.parse().map(|on_close| SettingsChange { on_close: Some(on_close), ..Default::default() });
    if let Err(e) = change.and_then(|change| desktop::update_settings(app, &change)) {
        desktop::message(app, "Corral", e.to_string(), MessageDialogKind::Error);
        show_on_close(app, app.state::<Desktop>().settings.get().on_close);
    }
}

/// Checks exactly the item of `on_close` under File → When the window closes.
pub fn show_on_close(app: &AppHandle, on_close: OnClose) {
    for (choice, item) in &app.state::<MenuHandles>().on_close {
        let _ = item.set_checked(*choice == on_close);
    }
}

/// Checks exactly the item of `selected` in the Environment menu.
pub fn check_environment(app: &AppHandle, selected: Option<&str>) {
    let Ok(items) = app.state::<MenuHandles>().environment.items() else { return };
    for item in items {
        if let Some(check) = item.as_check_menuitem() {
            let name = check.id().as_ref().strip_prefix(ENV_PREFIX).map(str::to_string);
            let _ = check.set_checked(name.as_deref() == selected);
        }
    }
}

/// Rebuilds the Environment menu whenever the control plane says the set of environments
/// changed (API, CLI, UI or a restore), until it stops.
pub fn follow_environments(app: &AppHandle) {
    let app = app.clone();
    let state = app.state::<Desktop>().control_plane.state.clone();
    let mut changes = state.events.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) if change.resource != Resource::Environments => continue,
                    // Missed notifications: re-reading is always right.
                    Ok(_) | Err(RecvError::Lagged(_)) => refresh_environments(&app),
                    Err(RecvError::Closed) => break,
                },
                _ = shutdown.recv() => break,
            }
        }
    });
}

/// Re-reads the environments and rebuilds the Environment menu if they changed.
pub fn refresh_environments(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<Desktop>().control_plane.state.clone();
        match actions::environment_names(&state).await {
            Ok(names) => list_environments(&app, &names),
            Err(e) => tracing::warn!(error = %e, "could not read the environments for the menu"),
        }
    });
}

fn list_environments(app: &AppHandle, names: &[String]) {
    let handles = app.state::<MenuHandles>();
    let mut listed = handles.listed.lock().expect("lock");
    if *listed == names {
        return;
    }
    if let Ok(items) = handles.environment.items() {
        for item in items {
            let _ = handles.environment.remove(&item);
        }
    }
    let selected = app.state::<Desktop>().selected_env();
    for name in names {
        let checked = selected.as_deref() == Some(name.as_str());
        match CheckMenuItem::with_id(app, format!("{ENV_PREFIX}{name}"), name, true, checked, None::<&str>) {
            Ok(item) => {
                let _ = handles.environment.append(&item);
            }
            Err(e) => tracing::warn!(error = %e, "could not add {name} to the Environment menu"),
        }
    }
    *listed = names.to_vec();
}
