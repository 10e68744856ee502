//! Tauri commands the web UI may call (`invoke('get_settings')`, `invoke('set_settings',
//! {change: {agent_port: 7171}})`). Errors reach the UI as `{code, message}`.

use crate::desktop::Desktop;
use crate::error::DesktopError;
use crate::settings::{SettingsChange, SettingsView};
use tauri::{AppHandle, State};

#[tauri::command]
pub fn get_settings(desktop: State<'_, Desktop>) -> SettingsView {
    desktop.settings.view()
}

#[tauri::command]
pub fn set_settings(app: AppHandle, change: SettingsChange) -> Result<SettingsView, DesktopError> {
    crate::desktop::update_settings(&app, &change)
}
