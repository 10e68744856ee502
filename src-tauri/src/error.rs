//! The desktop shell's one error type. Tauri commands return it to the web UI serialized as
//! `{code, message}`, the same shape as the REST API's errors, so the UI shows both alike.

use serde::ser::SerializeStruct;

#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    #[error("settings: {0}")]
    BadSettings(String),
    #[error("cannot read or write the settings file {path}: {source}")]
    SettingsFile { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    ControlPlane(#[from] corral_server::ServerError),
    #[error(transparent)]
    Store(#[from] corral_store::StoreError),
    #[error("cannot use the control plane's address: {0}")]
    Listen(String),
    #[error("cannot read the admin token: {0}")]
    AdminToken(std::io::Error),
    #[error("{0}")]
    Keyring(String),
}

impl DesktopError {
    /// Stable, machine-readable kind of error, for the UI to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            DesktopError::BadSettings(_) => "bad_settings",
            DesktopError::SettingsFile { .. } => "settings_file",
            DesktopError::ControlPlane(_) => "control_plane",
            DesktopError::Store(_) => "store",
            DesktopError::Listen(_) => "listen",
            DesktopError::AdminToken(_) => "admin_token",
            DesktopError::Keyring(_) => "keyring",
        }
    }
}

impl serde::Serialize for DesktopError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("DesktopError", 2)?;
        s.serialize_field("code", self.code())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}
