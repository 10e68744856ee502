//! The desktop app's own settings, one JSON file in the app's config dir. Read once at start:
//! a changed agent port applies at the next start (the listener is bound by then).

use crate::error::DesktopError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the settings file in the app's config dir.
pub const SETTINGS_FILE: &str = "settings.json";
/// The port agents on the LAN reach the control plane on, unless the settings say otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7070;

/// What closing the main window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnClose {
    /// Ask each time (keep running in the tray, or stop).
    #[default]
    Ask,
    /// Hide the window; the control plane keeps running, with a tray icon to come back.
    Tray,
    /// Stop the control plane and quit.
    Stop,
}

impl std::str::FromStr for OnClose {
    type Err = DesktopError;
    fn from_str(s: &str) -> Result<Self, DesktopError> {
        match s {
            "ask" => Ok(OnClose::Ask),
            "tray" => Ok(OnClose::Tray),
            "stop" => Ok(OnClose::Stop),
            other => Err(DesktopError::BadSettings(format!("on_close {other:?} is not one of ask, tray, stop"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Port of the LAN listener agents (and browsers on other machines) connect to.
    pub agent_port: u16,
    pub on_close: OnClose,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { agent_port: DEFAULT_AGENT_PORT, on_close: OnClose::Ask }
    }
}

/// A change sent by the UI: absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    pub agent_port: Option<u16>,
    pub on_close: Option<OnClose>,
}

/// What `get_settings` / `set_settings` answer: the saved settings plus what is in force now,
/// so the UI can say when a restart is needed.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    #[serde(flatten)]
    pub settings: Settings,
    /// The port the control plane listens on in this run.
    pub listening_port: u16,
    /// The saved agent port differs from the one in use: it applies at the next start.
    pub restart_needed: bool,
}

impl Settings {
    /// Reads the settings file; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Settings, DesktopError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(source) => return Err(DesktopError::SettingsFile { path: path.into(), source }),
        };
        let settings: Settings =
            serde_json::from_str(&text).map_err(|e| DesktopError::BadSettings(format!("{} is not valid ({e}); fix or delete it", path.display())))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Like [`load`](Settings::load), but a broken file never stops the app: it says why and
    /// starts with the defaults (the file is left as it is until the next save).
    pub fn load_or_default(path: &Path) -> Settings {
        Settings::load(path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "using default settings");
            Settings::default()
        })
    }

    pub fn validate(&self) -> Result<(), DesktopError> {
        if self.agent_port == 0 {
            return Err(DesktopError::BadSettings("agent_port must be between 1 and 65535".into()));
        }
        Ok(())
    }

    /// The settings with `change` applied, checked; `self` is unchanged on error.
    pub fn with(&self, change: &SettingsChange) -> Result<Settings, DesktopError> {
        let next = Settings { agent_port: change.agent_port.unwrap_or(self.agent_port), on_close: change.on_close.unwrap_or(self.on_close) };
        next.validate()?;
        Ok(next)
    }

    /// Writes the file atomically (temp file + rename): a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), DesktopError> {
        let io = |source| DesktopError::SettingsFile { path: path.into(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("settings always serialize");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// The settings as loaded at start, where they are saved, and the port in force.
pub struct SettingsStore {
    path: PathBuf,
    current: std::sync::Mutex<Settings>,
    listening_port: u16,
}

impl SettingsStore {
    pub fn new(path: PathBuf, settings: Settings, listening_port: u16) -> Self {
        SettingsStore { path, current: std::sync::Mutex::new(settings), listening_port }
    }

    pub fn get(&self) -> Settings {
        self.current.lock().expect("settings lock").clone()
    }

    pub fn view(&self) -> SettingsView {
        let settings = self.get();
        SettingsView { restart_needed: settings.agent_port != self.listening_port, settings, listening_port: self.listening_port }
    }

    /// Applies and saves `change`; on any error nothing changes, in memory or on disk.
    pub fn update(&self, change: &SettingsChange) -> Result<SettingsView, DesktopError> {
        {
            let mut current = self.current.lock().expect("settings lock");
            let next = current.with(change)?;
            next.save(&self.path)?;
            *current = next;
        }
        Ok(self.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_means_defaults_and_saved_settings_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(SETTINGS_FILE);
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let store = SettingsStore::new(path.clone(), Settings::default(), 7070);
        let view = store.update(&SettingsChange { agent_port: Some(7171), on_close: Some(OnClose::Tray) }).unwrap();
        assert!(view.restart_needed);
        assert_eq!(Settings::load(&path).unwrap(), Settings { agent_port: 7171, on_close: OnClose::Tray });
    }

    #[test]
    fn bad_changes_and_files_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SETTINGS_FILE);
        let store = SettingsStore::new(path.clone(), Settings::default(), 7070);
        let err = store.update(&SettingsChange { agent_port: Some(0), on_close: None }).unwrap_err();
        assert_eq!(err.code(), "bad_settings");
        assert!(err.to_string().contains("agent_port"), "{err}");
        assert!(!path.exists(), "a refused change writes nothing");
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["code"], "bad_settings");

        std::fs::write(&path, "{\"agent_port\": \"x\"}").unwrap();
        let err = Settings::load(&path).unwrap_err();
        assert!(err.to_string().contains("fix or delete it"), "{err}");
        assert_eq!(Settings::load_or_default(&path), Settings::default());
    }
}
