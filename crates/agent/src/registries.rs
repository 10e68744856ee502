//! Registries on the host: the private CAs the control plane sends are installed where the
//! engine looks for them (`CERTS_DIR/HOST[:PORT]/ca.crt`, `/etc/docker/certs.d` by default), and
//! a pull ([`crate::pull`]) takes the login of the registry its image comes from.
//!
//! The agent removes only CA files it wrote itself: it remembers what it wrote
//! (`STATE_DIR/registry-cas.json`, host → SHA-256 of the file) and leaves alone a file that is
//! not its own or that someone changed since. Which files to write and remove is decided by the
//! pure [`plan_cas`]; [`apply_cas`] carries it out.
//!
//! Passwords live in memory only: [`crate::state::save_desired`] drops them before the desired
//! set reaches the disk, and nothing here logs them ([`RegistryAuth`]'s `Debug` hides them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::auth::DockerCredentials;
use corral_proto::registry::{registry_of, RegistryAuth, RegistryEntry};
use sha2::{Digest, Sha256};

/// Where Docker engines look for registries' CAs.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";
const OWNED_FILE: &str = "registry-cas.json";
const CA_FILE: &str = "ca.crt";

/// Where CA files go, and where the agent remembers which ones it wrote.
#[derive(Debug, Clone)]
pub struct CaFiles {
    pub certs_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// One change to the certs dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaStep {
    /// Write the registry's CA (new, or changed since the agent wrote it).
    Write { host: String, pem: String },
    /// The registry is gone (or has no CA any more): remove the file the agent wrote for it.
    Remove { host: String },
    /// Stop tracking a file that is gone or was changed by someone else; it is left alone.
    Forget { host: String },
    /// A `ca.crt` the agent did not write is where this registry's CA goes: leave it, say so.
    Blocked { host: String },
}

pub fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A registry host is used as a directory name: only what [`corral_proto::registry`] hosts may
/// hold (letters, digits, `.`, `-`, one `:`), never a path.
fn safe_dir_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 260
        && !host.starts_with('.')
        && !host.contains("..")
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

/// Decides what to change in the certs dir. `owned` is what the agent wrote before (host →
/// hash), `on_disk` the hash of each relevant `ca.crt` now (`None`: no file).
pub fn plan_cas(wanted: &[RegistryEntry], owned: &BTreeMap<String, String>, on_disk: &BTreeMap<String, Option<String>>) -> Vec<CaStep> {
    let mut steps = Vec::new();
    let wanted: BTreeMap<&str, &str> =
        wanted.iter().filter(|r| safe_dir_name(&r.host)).filter_map(|r| r.ca_pem.as_deref().map(|pem| (r.host.as_str(), pem))).collect();
    for (host, pem) in &wanted {
        let now = on_disk.get(*host).cloned().flatten();
        let want = sha256(pem);
        match (now, owned.get(*host)) {
            (Some(now), _) if now == want => {
                if owned.get(*host) != Some(&want) {
                    // The same content, written by someone else or before a lost state dir: not ours to remove.
                    steps.push(CaStep::Forget { host: host.to_string() });
                }
            }
            (None, _) => steps.push(CaStep::Write { host: host.to_string(), pem: pem.to_string() }),
            (Some(now), Some(mine)) if now == *mine => steps.push(CaStep::Write { host: host.to_string(), pem: pem.to_string() }),
            (Some(_), _) => steps.push(CaStep::Blocked { host: host.to_string() }),
        }
    }
    for (host, mine) in owned.iter().filter(|(h, _)| !wanted.contains_key(h.as_str())) {
        match on_disk.get(host).cloned().flatten() {
            Some(now) if now == *mine => steps.push(CaStep::Remove { host: host.clone() }),
            _ => steps.push(CaStep::Forget { host: host.clone() }),
        }
    }
    steps
}

impl CaFiles {
    fn path(&self, host: &str) -> PathBuf {
        self.certs_dir.join(host).join(CA_FILE)
    }

    fn owned(&self) -> BTreeMap<String, String> {
        std::fs::read(self.state_dir.join(OWNED_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Brings the certs dir in line with `registries`; problems are logged and retried on the
    /// next pass (a CA that cannot be installed shows as the pull's certificate error).
    pub fn apply(&self, registries: &[RegistryEntry]) {
        let mut owned = self.owned();
        let hosts = registries.iter().map(|r| r.host.clone()).chain(owned.keys().cloned());
        let on_disk: BTreeMap<String, Option<String>> =
            hosts.filter(|h| safe_dir_name(h)).map(|h| (h.clone(), std::fs::read_to_string(self.path(&h)).ok().map(|t| sha256(&t)))).collect();
        let steps = plan_cas(registries, &owned, &on_disk);
        if steps.is_empty() {
            return;
        }
        for step in steps {
            match step {
                CaStep::Write { host, pem } => match self.write(&host, &pem) {
                    Ok(()) => {
                        tracing::info!(registry = %host, path = %self.path(&host).display(), "registry CA installed");
                        owned.insert(host, sha256(&pem));
                    }
                    Err(e) => tracing::error!(registry = %host, path = %self.path(&host).display(), error = %e, "cannot install the registry's CA"),
                },
                CaStep::Remove { host } => {
                    let path = self.path(&host);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            // The directory too, when nothing else (a client cert) is in it.
                            let _ = std::fs::remove_dir(path.parent().expect("a CA file is in its host's dir"));
                            tracing::info!(registry = %host, path = %path.display(), "registry CA removed");
                            owned.remove(&host);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            owned.remove(&host);
                        }
                        Err(e) => tracing::error!(registry = %host, path = %path.display(), error = %e, "cannot remove the registry's CA"),
                    }
                }
                CaStep::Forget { host } => {
                    owned.remove(&host);
                }
                CaStep::Blocked { host } => tracing::warn!(
                    registry = %host,
                    path = %self.path(&host).display(),
                    "a CA file that Corral did not write is in the way; leaving it (remove it to let Corral install the registry's CA)"
                ),
            }
        }
        let bytes = serde_json::to_vec_pretty(&owned).expect("a map of strings serializes");
        if let Err(e) = std::fs::create_dir_all(&self.state_dir).and_then(|()| crate::state::write_atomically(&self.state_dir.join(OWNED_FILE), &bytes)) {
            tracing::error!(error = %e, "cannot record which registry CAs this agent installed");
        }
    }

    fn write(&self, host: &str, pem: &str) -> std::io::Result<()> {
        let path = self.path(host);
        std::fs::create_dir_all(path.parent().expect("a CA file is in its host's dir"))?;
        crate::state::write_atomically(&path, pem.as_bytes())
    }
}

/// The login for pulling `image`, if the desired set carries one for its registry.
pub fn auth_for<'a>(image: &str, registries: &'a [RegistryEntry]) -> Option<&'a RegistryAuth> {
    let host = registry_of(image);
    registries.iter().find(|r| r.host == host).and_then(|r| r.auth.as_ref())
}

/// [`auth_for`] as the engine takes it with a pull.
pub fn credentials_for(image: &str, registries: &[RegistryEntry]) -> Option<DockerCredentials> {
    auth_for(image, registries).map(|a| DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.password.clone()),
        serveraddress: Some(registry_of(image)),
        ..Default::default()
    })
}

/// The desired set's registries without their passwords, for what goes to disk.
pub fn without_logins(registries: &[RegistryEntry]) -> Vec<RegistryEntry> {
    registries.iter().map(|r| RegistryEntry { auth: None, ..r.clone() }).collect()
}

/// The path the CA of `host` is installed at under `certs_dir`.
pub fn ca_path(certs_dir: &Path, host: &str) -> PathBuf {
    certs_dir.join(host).join(CA_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, pem: Option<&str>) -> RegistryEntry {
        RegistryEntry { host: host.into(), ca_pem: pem.map(str::to_string), auth: None }
    }

    #[test]
    fn cas_are_written_replaced_and_removed_only_when_the_agent_wrote_them() {
        let owned: BTreeMap<String, String> = [("mine.example".to_string(), sha256("OLD")), ("gone.example".to_string(), sha256("G"))].into();
        let disk: BTreeMap<String, Option<String>> = [
            ("new.example".to_string(), None),
            ("mine.example".to_string(), Some(sha256("OLD"))),
            ("theirs.example".to_string(), Some(sha256("HAND-MADE"))),
            ("gone.example".to_string(), Some(sha256("G"))),
        ]
        .into();
        let wanted = [entry("new.example", Some("N")), entry("mine.example", Some("NEW")), entry("theirs.example", Some("T")), entry("plain.example", None)];
        let steps = plan_cas(&wanted, &owned, &disk);
        assert_eq!(
            steps,
            [
                CaStep::Write { host: "mine.example".into(), pem: "NEW".into() },
                CaStep::Write { host: "new.example".into(), pem: "N".into() },
                CaStep::Blocked { host: "theirs.example".into() },
                CaStep::Remove { host: "gone.example".into() },
            ]
        );
        let changed_by_hand: BTreeMap<String, Option<String>> = [("gone.example".to_string(), Some(sha256("EDITED")))].into();
        assert_eq!(plan_cas(&[], &owned, &changed_by_hand), [CaStep::Forget { host: "gone.example".into() }, CaStep::Forget { host: "mine.example".into() }]);
        assert!(plan_cas(&[entry("../etc", Some("X")), entry("a/b", Some("X"))], &BTreeMap::new(), &BTreeMap::new()).is_empty(), "never a path");
    }

    #[test]
    fn ca_files_follow_the_registries() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles { certs_dir: dir.path().join("certs.d"), state_dir: dir.path().join("state") };
        files.apply(&[entry("r.example:5443", Some("PEM-1"))]);
        let path = ca_path(&files.certs_dir, "r.example:5443");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "PEM-1");
        files.apply(&[entry("r.example:5443", Some("PEM-2"))]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "PEM-2");
        std::fs::create_dir_all(files.certs_dir.join("other.example")).unwrap();
        std::fs::write(ca_path(&files.certs_dir, "other.example"), "HAND").unwrap();
        files.apply(&[entry("other.example", Some("CORRAL"))]);
        assert!(!path.exists() && !path.parent().unwrap().exists(), "the removed registry's CA and dir are gone");
        assert_eq!(std::fs::read_to_string(ca_path(&files.certs_dir, "other.example")).unwrap(), "HAND", "a file it did not write stays");
    }

    #[test]
    fn logins_are_found_by_the_image_registry_and_never_saved() {
        let login = RegistryAuth { username: "ci".into(), password: "pw".into() };
        let registries = [RegistryEntry { host: "r.example:5000".into(), ca_pem: Some("CA".into()), auth: Some(login.clone()) }];
        assert_eq!(auth_for("r.example:5000/team/app:1", &registries), Some(&login));
        assert_eq!(auth_for("team/app", &registries), None);
        assert_eq!(without_logins(&registries), [entry("r.example:5000", Some("CA"))]);
    }
}
