//! The tray icon, created the first time the window hides: Show Corral / Quit.

use crate::desktop;
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::AppHandle;

const TRAY: &str = "corral";
const SHOW: &str = "tray-show";
const QUIT: &str = "tray-quit";

/// Makes sure the tray icon is there.
pub fn ensure(app: &AppHandle) -> tauri::Result<()> {
    if app.tray_by_id(TRAY).is_some() {
        return Ok(());
    }
    let menu = Menu::with_items(
        app,
        &[&MenuItem::with_id(app, SHOW, "Show Corral", true, None::<&str>)?, &MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?],
    )?;
    let mut tray = TrayIconBuilder::with_id(TRAY).tooltip("Corral").menu(&menu).on_menu_event(|app, event| match event.id().as_ref() {
        SHOW => desktop::show_window(app),
        QUIT => desktop::quit(app),
        _ => {}
    });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    Ok(())
}
