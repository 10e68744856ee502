//! The control plane running inside the app: where it listens, the URLs the UI and agents use,
//! and a clean stop (shutdown broadcast, then wait until it has closed the store).
//!
//! Agents reach the app over the LAN, so that port speaks TLS with the control plane's own CA
//! (agents pin its fingerprint from the join command). The window and the browser on this
//! machine use a second, plain-HTTP listener bound to loopback: the web view would otherwise
//! have to trust a private CA, and traffic that never leaves the machine gains nothing from TLS.

use crate::credentials::{Backend, Credential};
use crate::error::DesktopError;
use corral_server::state::AppState;
use corral_server::{Config, ControlPlane, ServerError, TlsMode};
use corral_store::SealingKey;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tokio::sync::{broadcast, Mutex};
use tokio::task::JoinHandle;

/// Overrides the listen address (`IP:PORT`) from the settings, e.g. for tests.
pub const LISTEN_ENV: &str = "CORRAL_DESKTOP_LISTEN";
/// Overrides the window's plain loopback listener (`IP:PORT`, loopback only); a free port by default.
pub const LOCAL_LISTEN_ENV: &str = "CORRAL_DESKTOP_LOCAL_LISTEN";

/// A started control plane, serving until [`shutdown`](RunningControlPlane::shutdown).
pub struct RunningControlPlane {
    pub state: AppState,
    pub data_dir: PathBuf,
    /// Loopback URL of the API, for the window and the browser on this machine.
    pub api: String,
    /// URL agents on the LAN use (`https://` unless the app listens on loopback only).
    pub agent_url: String,
    /// The CA agents pin (`sha256:HEX`), when the LAN port speaks TLS.
    pub ca_fingerprint: Option<String>,
    /// The LAN port.
    pub port: u16,
    pub token: String,
    stop: broadcast::Sender<()>,
    task: Mutex<Option<JoinHandle<Result<(), ServerError>>>>,
}

/// Where to listen: `CORRAL_DESKTOP_LISTEN` if set, else every interface on the settings' port.
pub fn listen_addr(agent_port: u16) -> Result<SocketAddr, DesktopError> {
    addr_from_env(LISTEN_ENV).map(|addr| addr.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), agent_port)))
}

/// Where the window's plain listener goes: `CORRAL_DESKTOP_LOCAL_LISTEN` if set (the control
/// plane refuses a non-loopback one), else a free loopback port.
pub fn local_listen_addr() -> Result<SocketAddr, DesktopError> {
    addr_from_env(LOCAL_LISTEN_ENV).map(|addr| addr.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)))
}

fn addr_from_env(var: &str) -> Result<Option<SocketAddr>, DesktopError> {
    match std::env::var(var) {
        Ok(text) => text.parse().map(Some).map_err(|e| DesktopError::Listen(format!("{var}={text:?} is not IP:PORT ({e})"))),
        Err(_) => Ok(None),
    }
}

/// Opens the control plane on `data_dir` and starts serving, its admin token kept in `keyring`.
/// When the wanted port is taken (another control plane on this machine), a free port is used
/// instead.
pub async fn start(data_dir: &Path, wanted: SocketAddr, keyring: Backend) -> Result<RunningControlPlane, DesktopError> {
    let local = local_listen_addr()?;
    let sealing_key = sealing_key(data_dir, keyring)?;
    let config = |listen| {
        let mut config = config(data_dir, listen, local);
        config.admin_token_file = keyring == Backend::File;
        config.sealing_key = sealing_key.clone();
        config
    };
    // The port is known before opening, so the join command can name it.
    let wanted = if wanted.port() == 0 { free_port(wanted.ip())? } else { wanted };
    let control_plane = match ControlPlane::open(config(wanted)).await {
        Err(ServerError::Listen { .. }) => {
            let free = free_port(wanted.ip())?;
            tracing::warn!(%wanted, port = free.port(), "port taken; the control plane listens on a free port instead");
            ControlPlane::open(config(free)).await?
        }
        other => other?,
    };
    let token = admin_token(data_dir, control_plane.new_admin_token.clone(), keyring)?;
    let state = control_plane.state().clone();
    let port = control_plane.local_addr().port();
    let ca_fingerprint = control_plane.ca_fingerprint().map(str::to_string);
    // What join commands name: the machine's LAN address (the control plane detects it, as
    // `corral server` does), or the URL an administrator set in Settings.
    let agent_url = corral_server::api::hosts::agent_url(&state).await.map_err(|e| DesktopError::Listen(format!("the URL agents join at: {e}")))?.url;
    let api = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), control_plane.local_addr_plain().map_or(port, |a| a.port()));
    let (stop, shutdown) = broadcast::channel(1);
    let task = tokio::spawn(control_plane.run(shutdown));
    Ok(RunningControlPlane {
        state,
        data_dir: data_dir.to_path_buf(),
        api: format!("http://{api}"),
        agent_url,
        ca_fingerprint,
        port,
        token,
        stop,
        task: Mutex::new(Some(task)),
    })
}

/// The admin token: the new one (stored in the keyring) or the stored one. An `admin-token`
/// file (from an older version, or left when the keyring was unavailable) moves into the
/// keyring. When the keyring cannot be used the file is used instead, with a warning.
fn admin_token(data_dir: &Path, new: Option<String>, keyring: Backend) -> Result<String, DesktopError> {
    let file = data_dir.join(corral_server::ADMIN_TOKEN_FILE);
    let read_file = || -> Result<String, DesktopError> { Ok(std::fs::read_to_string(&file).map_err(DesktopError::AdminToken)?.trim().to_string()) };
    if keyring == Backend::File {
        return new.map_or_else(read_file, Ok);
    }
    let (token, from_file) = match new {
        Some(token) => (token, false),
        None if file.exists() => (read_file()?, true),
        None => {
            let stored = Credential::admin_token(keyring, data_dir)?.read()?;
            return stored.ok_or_else(|| {
                DesktopError::Keyring(format!(
                    "the admin token of {} is neither in the OS keyring (service {}) nor in {}; \
                     the kernel keyring (CORRAL_DESKTOP_KEYRING=keyutils) forgets it at reboot",
                    data_dir.display(),
                    crate::credentials::SERVICE,
                    file.display()
                ))
            });
        }
    };
    match Credential::admin_token(keyring, data_dir).and_then(|c| c.store(&token)) {
        Ok(()) => {
            if from_file || file.exists() {
                std::fs::remove_file(&file).map_err(DesktopError::AdminToken)?;
                tracing::info!(file = %file.display(), "admin token moved from its file into the OS keyring");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, file = %file.display(), "keeping the admin token in a plaintext file instead");
            if !from_file {
                corral_server::write_admin_token_file(data_dir, &token)?;
            }
        }
    }
    Ok(token)
}

/// The key join tokens are sealed with, from the keyring, made on the first start; `None` leaves
/// it to the control plane's `sealing.key` file (the file backend, or a keyring that cannot store
/// it, with a warning). A key file from an older version, or left when the keyring was
/// unavailable, moves into the keyring. A keyring that cannot be read is an error rather than a
/// new key: a new key would replace every join token.
fn sealing_key(data_dir: &Path, keyring: Backend) -> Result<Option<SealingKey>, DesktopError> {
    if keyring == Backend::File {
        return Ok(None);
    }
    let credential = Credential::sealing_key(keyring, data_dir)?;
    let file = data_dir.join(corral_server::SEALING_KEY_FILE);
    if let Some(stored) = credential.read()? {
        return SealingKey::from_hex(&stored).map(Some).ok_or_else(|| {
            DesktopError::Keyring(format!(
                "the sealing key of {} in the OS keyring (service {}) is not 64 hex digits; delete that entry to start with a new key \
                 (join tokens are then replaced; joined hosts keep working)",
                data_dir.display(),
                crate::credentials::SEALING_KEY_SERVICE
            ))
        });
    }
    let key = if file.exists() { SealingKey::load_or_create(&file).map_err(|e| DesktopError::Keyring(e.to_string()))? } else { SealingKey::generate() };
    match credential.store(&key.to_hex()) {
        Ok(()) => {
            if file.exists() {
                std::fs::remove_file(&file).map_err(DesktopError::AdminToken)?;
                tracing::info!(file = %file.display(), "sealing key moved from its file into the OS keyring");
            }
            Ok(Some(key))
        }
        Err(e) => {
            tracing::warn!(error = %e, file = %file.display(), "keeping the sealing key in a file instead");
            Ok(None)
        }
    }
}

fn free_port(ip: IpAddr) -> Result<SocketAddr, DesktopError> {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).and_then(|l| l.local_addr()).map_err(|e| DesktopError::Listen(format!("no free port on {ip}: {e}")))
}

fn config(data_dir: &Path, listen: SocketAddr, local: SocketAddr) -> Config {
    let mut config = Config::new(data_dir.to_path_buf(), listen);
    config.tls = TlsMode::Auto;
    let tls = config.tls.serves_tls(listen);
    if tls {
        config.local_listen = Some(local);
    }
    // No advertised URL: the control plane names its LAN address in join commands whatever
    // listener the UI asks on, and an administrator can set another in Settings.
    config
}

impl RunningControlPlane {
    /// The web UI in a browser, signed in with the admin token.
    pub fn browser_url(&self) -> String {
        format!("{}/#token={}", self.api, self.token)
    }

    /// Stops serving, closes agent sessions and the store; returns once all that is done.
    /// Later calls return at once.
    pub async fn shutdown(&self) -> Result<(), ServerError> {
        let Some(task) = self.task.lock().await.take() else { return Ok(()) };
        let _ = self.stop.send(());
        match task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_on_a_fresh_data_dir_and_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let cp = start(dir.path(), ([127, 0, 0, 1], 0).into(), Backend::File).await.unwrap();
        assert_eq!(crate::actions::environment_names(&cp.state).await.unwrap(), ["Default"]);
        assert_eq!(cp.agent_url, format!("http://127.0.0.1:{}", cp.port));
        assert!(cp.browser_url().ends_with(&format!("/#token={}", cp.token)));
        cp.shutdown().await.unwrap();
        // Quit from the tray after a signal already stopped it: a second stop is a no-op.
        cp.shutdown().await.unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", cp.port)).is_err(), "the port is closed after shutdown");
    }

    #[tokio::test]
    async fn a_taken_port_falls_back_to_a_free_one_that_agents_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let wanted = taken.local_addr().unwrap();
        let cp = start(dir.path(), wanted, Backend::File).await.unwrap();
        assert_ne!(cp.port, wanted.port());
        assert_eq!(cp.agent_url, format!("http://127.0.0.1:{}", cp.port));
        cp.shutdown().await.unwrap();
    }

    /// First start: the token goes to the keyring, no file; later starts read it back; a file
    /// from an older version moves into the keyring.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_admin_token_lives_in_the_keyring_not_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let Some(cred) = crate::credentials::tests::usable_keyutils(dir.path(), "control_plane::tests::the_admin_token_lives_in_the_keyring_not_in_a_file")
        else {
            return;
        };
        let file = dir.path().join(corral_server::ADMIN_TOKEN_FILE);
        let loopback = ([127, 0, 0, 1], 0).into();
        let cp = start(dir.path(), loopback, Backend::Keyutils).await.unwrap();
        let token = cp.token.clone();
        let join_token = cp.state.store.join_token(cp.state.store.ensure_default_environment().await.unwrap().id).await.unwrap();
        cp.shutdown().await.unwrap();
        assert!(!file.exists(), "no plaintext admin-token file");
        assert_eq!(cred.read().unwrap().as_deref(), Some(token.as_str()));
        let key_file = dir.path().join(corral_server::SEALING_KEY_FILE);
        assert!(!key_file.exists(), "no sealing key file beside the database");
        let sealing = Credential::sealing_key(Backend::Keyutils, dir.path()).unwrap();
        let key = sealing.read().unwrap().expect("the sealing key is in the keyring");

        let cp = start(dir.path(), loopback, Backend::Keyutils).await.unwrap();
        assert_eq!(cp.token, token, "a later start reads the token from the keyring");
        let env = cp.state.store.ensure_default_environment().await.unwrap();
        assert_eq!(cp.state.store.join_token(env.id).await.unwrap(), join_token, "the join token opens with the key from the keyring");
        cp.shutdown().await.unwrap();
        assert_eq!(sealing.read().unwrap(), Some(key.clone()), "the same key on every start");

        // An older version left the key in a file: it moves into the keyring.
        sealing.delete().unwrap();
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        let cp = start(dir.path(), loopback, Backend::Keyutils).await.unwrap();
        assert_eq!(cp.state.store.join_token(env.id).await.unwrap(), join_token);
        cp.shutdown().await.unwrap();
        assert!(!key_file.exists(), "the key file is deleted once the key is in the keyring");
        assert_eq!(sealing.read().unwrap(), Some(key));
        sealing.delete().unwrap();

        // An older version left the token in the file and nothing in the keyring.
        cred.delete().unwrap();
        corral_server::write_admin_token_file(dir.path(), &token).unwrap();
        let cp = start(dir.path(), loopback, Backend::Keyutils).await.unwrap();
        assert_eq!(cp.token, token);
        cp.shutdown().await.unwrap();
        assert!(!file.exists(), "the old file is deleted once the token is in the keyring");
        assert_eq!(cred.read().unwrap().as_deref(), Some(token.as_str()));

        // Neither keyring entry nor file: a clear error naming both.
        cred.delete().unwrap();
        let err = start(dir.path(), loopback, Backend::Keyutils).await.err().expect("no token anywhere").to_string();
        assert!(err.contains("neither in the OS keyring") && err.contains("admin-token"), "{err}");
    }

    /// Listening on every interface: the LAN port speaks TLS only, agents are told `https://`
    /// and the CA to pin, and the window gets a plain loopback listener of its own.
    #[tokio::test]
    async fn the_lan_port_speaks_tls_and_the_window_uses_plain_loopback() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let cp = start(dir.path(), (Ipv4Addr::UNSPECIFIED, 0).into(), Backend::File).await.unwrap();
        let pin = cp.ca_fingerprint.clone().expect("a CA for the LAN port");
        assert!(pin.starts_with("sha256:"), "{pin}");
        assert!(cp.agent_url.starts_with("https://") && cp.agent_url.ends_with(&format!(":{}", cp.port)), "{}", cp.agent_url);
        let api_port: u16 = cp.api.strip_prefix("http://127.0.0.1:").expect("a loopback API").parse().unwrap();
        assert_ne!(api_port, cp.port);

        let get = |port: u16, path: &'static str| {
            let token = cp.token.clone();
            tokio::task::spawn_blocking(move || {
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                tcp.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                write!(tcp, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
                let mut answer = Vec::new();
                let _ = tcp.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer).into_owned()
            })
        };
        let answer = get(api_port, "/v1/hosts/join-command").await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(&format!("--ca-fingerprint {pin}")) && answer.contains(&cp.agent_url), "{answer}");
        let plain_to_tls = get(cp.port, "/v1/health").await.unwrap();
        assert!(!plain_to_tls.starts_with("HTTP/1.1 200"), "plain HTTP on the LAN port: {plain_to_tls}");
        cp.shutdown().await.unwrap();
    }
}
