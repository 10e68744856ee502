//! Persistence of the last desired set in `state_dir/desired.json`, so the agent keeps enforcing
//! it across its own restarts while the control plane is unreachable.

use std::io::Write;
use std::path::{Path, PathBuf};

use corral_proto::DesiredSet;

use crate::error::AgentError;

const FILE: &str = "desired.json";

pub fn desired_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// `Ok(None)` when no desired set was ever received: the agent then leaves the engine alone
/// rather than treating "unknown" as "empty" and removing every managed container.
pub fn load_desired(state_dir: &Path) -> Result<Option<DesiredSet>, AgentError> {
    let path = desired_path(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::state_dir(state_dir, &e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| AgentError::CorruptState { path, reason: e.to_string() })
}

/// Saves the set without registry passwords: they are sent again on every connect, and a file
/// on disk is one more place to steal them from. An agent restarted while the control plane is
/// away can therefore pull only from registries that need no login until it is back.
pub fn save_desired(state_dir: &Path, desired: &DesiredSet) -> Result<(), AgentError> {
    let kept = DesiredSet { registries: crate::registries::without_logins(&desired.registries), ..desired.clone() };
    let bytes = serde_json::to_vec_pretty(&kept).expect("a desired set always serializes");
    std::fs::create_dir_all(state_dir).map_err(|e| AgentError::state_dir(state_dir, &e))?;
    write_atomically(&desired_path(state_dir), &bytes).map_err(|e| AgentError::state_dir(state_dir, &e))
}

/// Writes a sibling temp file, fsyncs it and renames it over `path`, so a crash or power loss
/// leaves either the old or the new content, never a torn file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with_mode(path, bytes, 0o644)
}

/// [`write_atomically`] for secrets: the file is readable by its owner only, from the start.
pub(crate) fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with_mode(path, bytes, 0o600)
}

fn write_atomically_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is only durable once the directory entry is synced.
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{ContainerSpec, PortSpec, Protocol};

    fn sample() -> DesiredSet {
        DesiredSet {
            revision: 7,
            containers: vec![ContainerSpec {
                name: "s-web-1".into(),
                image: "corral-test/busybox:latest".into(),
                command: vec!["httpd".into(), "-f".into()],
                env: vec!["A=1".into()],
                ports: vec![PortSpec { host_port: Some(8080), container_port: 80, protocol: Protocol::Tcp }],
                labels: [("io.corral.stack".to_string(), "s".to_string())].into(),
                stopped: false,
                pull: Default::default(),
                restart_generation: 0,
                network: Default::default(),
            }],
            load_balancer: Default::default(),
            pull: Vec::new(),
            registries: Vec::new(),
            network: None,
        }
    }

    #[test]
    fn registry_passwords_never_reach_the_disk() {
        use corral_proto::registry::{RegistryAuth, RegistryEntry};
        let dir = tempfile::tempdir().unwrap();
        let mut set = sample();
        let auth = Some(RegistryAuth { username: "ci".into(), password: "pw-not-on-disk".into() });
        set.registries = vec![RegistryEntry { host: "r.example".into(), ca_pem: Some("CA".into()), auth }];
        save_desired(dir.path(), &set).unwrap();
        let text = std::fs::read_to_string(desired_path(dir.path())).unwrap();
        assert!(!text.contains("pw-not-on-disk") && text.contains("r.example"), "{text}");
        assert_eq!(load_desired(dir.path()).unwrap().unwrap().registries[0].auth, None);
    }

    #[test]
    fn missing_file_means_no_desired_set() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_desired(dir.path()).unwrap(), None);
    }

    #[test]
    fn desired_set_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        save_desired(dir.path(), &sample()).unwrap();
        assert_eq!(load_desired(dir.path()).unwrap(), Some(sample()));
        let mut newer = sample();
        newer.revision = 8;
        newer.containers.clear();
        save_desired(dir.path(), &newer).unwrap();
        assert_eq!(load_desired(dir.path()).unwrap(), Some(newer));
    }

    #[test]
    fn atomic_write_leaves_no_temp_files_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old content that is longer").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, vec!["f".to_string()]);
    }

    #[test]
    fn failed_atomic_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        // A directory in the way makes the rename fail after the temp file was written.
        let blocked = dir.path().join("d");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), "x").unwrap();
        assert!(write_atomically(&blocked, b"new").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp.")).count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(desired_path(dir.path()), "{not json").unwrap();
        let err = load_desired(dir.path()).unwrap_err();
        assert!(err.to_string().contains("desired.json"), "{err}");
    }
}
