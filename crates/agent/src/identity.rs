//! The host's stable identity, kept in `state_dir/host-id` so a restarted agent is the same host,
//! and its own credential, `state_dir/credential`, which replaces the join token after joining.

use std::path::Path;

use crate::error::AgentError;
use crate::state::{write_atomically, write_private_atomically};

const FILE: &str = "host-id";
const CREDENTIAL_FILE: &str = "credential";

/// The credential the control plane issued to this host, if it has joined.
pub fn load_credential(state_dir: &Path) -> Result<Option<String>, AgentError> {
    match std::fs::read_to_string(state_dir.join(CREDENTIAL_FILE)) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|c| !c.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::state_dir(state_dir, &e)),
    }
}

/// Keeps the credential from the welcome, readable by the agent's user only.
pub fn save_credential(state_dir: &Path, credential: &str) -> Result<(), AgentError> {
    write_private_atomically(&state_dir.join(CREDENTIAL_FILE), format!("{credential}\n").as_bytes()).map_err(|e| AgentError::state_dir(state_dir, &e))
}

/// Forgets a revoked credential, so the next start says hello with the join token.
pub fn forget_credential(state_dir: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(state_dir.join(CREDENTIAL_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AgentError::state_dir(state_dir, &e)),
        _ => Ok(()),
    }
}

/// Returns the host id stored in `state_dir`, creating the dir and a fresh UUID v4 on first start.
pub fn load_or_create_host_id(state_dir: &Path) -> Result<String, AgentError> {
    let path = state_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            uuid::Uuid::parse_str(id).map_err(|e| AgentError::CorruptState { path: path.clone(), reason: format!("not a UUID: {e}") })?;
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|e| AgentError::state_dir(state_dir, &e))?;
            let id = uuid::Uuid::new_v4().to_string();
            write_atomically(&path, format!("{id}\n").as_bytes()).map_err(|e| AgentError::state_dir(state_dir, &e))?;
            tracing::info!(host_id = %id, path = %path.display(), "created a new host identity");
            Ok(id)
        }
        Err(e) => Err(AgentError::state_dir(state_dir, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let first = load_or_create_host_id(&state).unwrap();
        assert!(uuid::Uuid::parse_str(&first).is_ok());
        let second = load_or_create_host_id(&state).unwrap();
        assert_eq!(first, second);
        assert_eq!(std::fs::read_to_string(state.join(FILE)).unwrap().trim(), first);
    }

    #[test]
    fn the_credential_is_private_and_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_credential(dir.path()).unwrap(), None);
        save_credential(dir.path(), "corral_host_x").unwrap();
        assert_eq!(load_credential(dir.path()).unwrap().as_deref(), Some("corral_host_x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CREDENTIAL_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        forget_credential(dir.path()).unwrap();
        forget_credential(dir.path()).unwrap();
        assert_eq!(load_credential(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_garbled_identity_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not-a-uuid").unwrap();
        let err = load_or_create_host_id(dir.path()).unwrap_err();
        assert!(matches!(err, AgentError::CorruptState { .. }), "{err}");
    }
}
