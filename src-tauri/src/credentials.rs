//! The admin token and the key join tokens are sealed with, in the OS keyring (Secret Service
//! on Linux, the Keychain on macOS, the Credential Manager on Windows), so neither lies in
//! plaintext in the data dir. Entries are keyed by service (`corral-desktop` for the token,
//! `corral-desktop-sealing-key` for the key) and the data dir's path as the account: two data
//! dirs (e.g. `--data-dir`) keep two of each.

use crate::error::DesktopError;
use std::path::Path;

pub const SERVICE: &str = "corral-desktop";
/// The keyring service of the sealing key.
pub const SEALING_KEY_SERVICE: &str = "corral-desktop-sealing-key";
/// Picks the store: `os` (the default), `keyutils` (Linux kernel keyring) or `file`.
pub const BACKEND_ENV: &str = "CORRAL_DESKTOP_KEYRING";

/// Where the admin token is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The platform's keyring; on Linux the Secret Service (GNOME Keyring, KWallet), which
    /// keeps secrets across reboots.
    Os,
    /// The Linux kernel keyring (keyutils): needs no D-Bus, for headless sessions and tests;
    /// forgotten at reboot.
    Keyutils,
    /// The `admin-token` file in the data dir (mode 0600), like a headless `corral server`.
    File,
}

impl Backend {
    /// The backend `CORRAL_DESKTOP_KEYRING` names; the OS keyring when unset.
    pub fn from_env() -> Result<Backend, DesktopError> {
        match std::env::var(BACKEND_ENV).unwrap_or_default().as_str() {
            "" | "os" => Ok(Backend::Os),
            "keyutils" if cfg!(target_os = "linux") => Ok(Backend::Keyutils),
            "file" => Ok(Backend::File),
            other => Err(DesktopError::Keyring(format!(
                "{BACKEND_ENV}={other:?} is not a keyring: use os, file{}",
                if cfg!(target_os = "linux") { " or keyutils" } else { "" }
            ))),
        }
    }
}

/// The admin token's entry for one data dir.
pub struct Credential {
    entry: keyring::Entry,
    backend: Backend,
}

impl Credential {
    /// The entry for `data_dir`'s admin token; `backend` must be a keyring, not [`Backend::File`].
    pub fn admin_token(backend: Backend, data_dir: &Path) -> Result<Credential, DesktopError> {
        Credential::new(backend, SERVICE, data_dir)
    }

    /// The entry for the key `data_dir`'s join tokens are sealed with.
    pub fn sealing_key(backend: Backend, data_dir: &Path) -> Result<Credential, DesktopError> {
        Credential::new(backend, SEALING_KEY_SERVICE, data_dir)
    }

    fn new(backend: Backend, service: &str, data_dir: &Path) -> Result<Credential, DesktopError> {
        let account = data_dir.to_string_lossy();
        let entry = match backend {
            Backend::Os => keyring::Entry::new(service, &account),
            #[cfg(target_os = "linux")]
            Backend::Keyutils => {
                keyring::keyutils::KeyutilsCredential::new_with_target(None, service, &account).map(|c| keyring::Entry::new_with_credential(Box::new(c)))
            }
            _ => return Err(DesktopError::Keyring(format!("{backend:?} is not a keyring"))),
        }
        .map_err(|e| unavailable(backend, e))?;
        Ok(Credential { entry, backend })
    }

    pub fn store(&self, secret: &str) -> Result<(), DesktopError> {
        self.entry.set_password(secret).map_err(|e| unavailable(self.backend, e))
    }

    /// The stored token; `None` when this data dir has none in the keyring.
    pub fn read(&self) -> Result<Option<String>, DesktopError> {
        match self.entry.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(unavailable(self.backend, e)),
        }
    }

    /// Removes the entry; removing one that is not there is fine. (The app itself never
    /// forgets its token; tests clean up with it.)
    #[cfg(test)]
    pub fn delete(&self) -> Result<(), DesktopError> {
        match self.entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(unavailable(self.backend, e)),
        }
    }
}

/// The keyring's failure plus what to install or unlock.
fn unavailable(backend: Backend, e: keyring::Error) -> DesktopError {
    let hint = match backend {
        Backend::Keyutils => {
            "the kernel keyring needs a session keyring: run the app inside `keyctl session -` \
                              (package keyutils)"
        }
        _ if cfg!(target_os = "linux") => {
            "install and unlock a Secret Service keyring on the session D-Bus \
             (GNOME Keyring: package gnome-keyring; KDE: KWallet), or set CORRAL_DESKTOP_KEYRING=keyutils \
             for the kernel keyring (forgotten at reboot)"
        }
        _ if cfg!(target_os = "macos") => "unlock the login keychain (Keychain Access)",
        _ if cfg!(target_os = "windows") => "check that the Credential Manager service is running",
        _ => "this platform has no supported keyring",
    };
    DesktopError::Keyring(format!("the OS keyring is unavailable ({e}): {hint}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_bad_backend_name_is_refused_with_the_choices() {
        std::env::set_var(BACKEND_ENV, "vault");
        let err = Backend::from_env().unwrap_err().to_string();
        std::env::remove_var(BACKEND_ENV);
        assert!(err.contains("\"vault\" is not a keyring: use os, file"), "{err}");
    }

    /// Store, read, delete through the kernel keyring. It needs a session keyring that can be
    /// written, as inside `keyctl session -`; elsewhere the test says why it skipped.
    #[cfg(target_os = "linux")]
    #[test]
    fn keyutils_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let Some(cred) = usable_keyutils(dir.path(), "credentials::tests::keyutils_round_trip") else { return };
        assert_eq!(cred.read().unwrap(), None, "a fresh data dir has no token");
        cred.store("corral_secret-1").unwrap();
        assert_eq!(cred.read().unwrap().as_deref(), Some("corral_secret-1"));
        // Another data dir is another account.
        let other = tempfile::tempdir().unwrap();
        let other = Credential::admin_token(Backend::Keyutils, other.path()).unwrap();
        assert_eq!(other.read().unwrap(), None);
        cred.store("corral_secret-2").unwrap();
        assert_eq!(cred.read().unwrap().as_deref(), Some("corral_secret-2"), "storing again replaces");
        cred.delete().unwrap();
        assert_eq!(cred.read().unwrap(), None);
        cred.delete().unwrap();
    }

    /// The kernel keyring for `data_dir` when a probe entry can be written there. Otherwise
    /// the test `name` runs again in a child inside `keyctl session -` (which must pass), or,
    /// without `keyctl`, is skipped with the reason on stderr; either way `None` is returned.
    #[cfg(target_os = "linux")]
    pub(crate) fn usable_keyutils(data_dir: &Path, name: &str) -> Option<Credential> {
        use std::io::Write;
        const CHILD: &str = "CORRAL_TEST_IN_KEYCTL_SESSION";
        let probe = Credential::admin_token(Backend::Keyutils, &data_dir.join("probe")).and_then(|c| c.store("probe").and_then(|()| c.delete()));
        let reason = match probe {
            Ok(()) => return Some(Credential::admin_token(Backend::Keyutils, data_dir).unwrap()),
            Err(e) if std::env::var_os(CHILD).is_some() => panic!("no usable keyring inside `keyctl session -`: {e}"),
            Err(e) => e,
        };
        let exe = std::env::current_exe().unwrap();
        let child = std::process::Command::new("keyctl").args(["session", "-"]).arg(exe).args(["--exact", name, "--nocapture"]).env(CHILD, "1").output();
        match child {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success() && text.contains("1 passed"), "{name} inside `keyctl session -`:\n{text}{}", String::from_utf8_lossy(&out.stderr));
            }
            // Written past the test harness's capture, so a skip shows in `cargo test` output.
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {name}: no writable session keyring ({reason}) \
                    and cannot run `keyctl` ({e}); install keyutils"
                );
            }
        }
        None
    }
}
