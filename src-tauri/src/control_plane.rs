//! The control plane running inside the app: where it listens, the URLs the UI and agents use,
//! and a clean stop (shutdown broadcast, then wait until it has closed the store).

use crate::error::DesktopError;
use corral_server::state::AppState;
use corral_server::{Config, ControlPlane, ServerError};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tokio::sync::{broadcast, Mutex};
use tokio::task::JoinHandle;

/// Overrides the listen address (`IP:PORT`) from the settings, e.g. for tests.
pub const LISTEN_ENV: &str = "CORRAL_DESKTOP_LISTEN";

/// A started control plane, serving until [`shutdown`](RunningControlPlane::shutdown).
pub struct RunningControlPlane {
    pub state: AppState,
    pub data_dir: PathBuf,
    /// Loopback URL of the API, for the window and the browser on this machine.
    pub api: String,
    /// URL agents on the LAN use.
    pub agent_url: String,
    pub port: u16,
    pub token: String,
    stop: broadcast::Sender<()>,
    task: Mutex<Option<JoinHandle<Result<(), ServerError>>>>,
}

/// Where to listen: `CORRAL_DESKTOP_LISTEN` if set, else every interface on the settings' port.
pub fn listen_addr(agent_port: u16) -> Result<SocketAddr, DesktopError> {
    match std::env::var(LISTEN_ENV) {
        Ok(text) => text
            .parse()
            .map_err(|e| DesktopError::Listen(format!("{LISTEN_ENV}={text:?} is not IP:PORT ({e})"))),
        Err(_) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), agent_port)),
    }
}

/// The address agents use: the listen address itself when it names one interface, else the
/// machine's first non-loopback IPv4 address (loopback when it has none).
pub fn agent_ip(listen: IpAddr) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|iface| !iface.is_loopback())
        .map(|iface| iface.ip())
        .find(IpAddr::is_ipv4)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Opens the control plane on `data_dir` and starts serving. When the wanted port is taken
/// (another control plane on this machine), a free port is used instead.
pub async fn start(data_dir: &Path, wanted: SocketAddr) -> Result<RunningControlPlane, DesktopError> {
    let control_plane = match ControlPlane::open(config(data_dir, wanted)).await {
        Err(ServerError::Listen { .. }) if wanted.port() != 0 => {
            // The port is picked before opening so the join command can name it.
            let free = std::net::TcpListener::bind(SocketAddr::new(wanted.ip(), 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| DesktopError::Listen(format!("no free port on {}: {e}", wanted.ip())))?;
            tracing::warn!(%wanted, port = free.port(), "port taken; the control plane listens on a free port instead");
            ControlPlane::open(config(data_dir, free)).await?
        }
        other => other?,
    };
    let token = match &control_plane.new_admin_token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(data_dir.join(corral_server::ADMIN_TOKEN_FILE))
            .map_err(DesktopError::AdminToken)?
            .trim()
            .to_string(),
    };
    let state = control_plane.state().clone();
    let port = control_plane.local_addr().port();
    let agent_url = state.config.advertise_url.clone().unwrap_or_else(|| url(wanted.ip(), port));
    let (stop, shutdown) = broadcast::channel(1);
    let task = tokio::spawn(control_plane.run(shutdown));
    Ok(RunningControlPlane {
        state,
        data_dir: data_dir.to_path_buf(),
        api: format!("http://127.0.0.1:{port}"),
        agent_url,
        port,
        token,
        stop,
        task: Mutex::new(Some(task)),
    })
}

fn config(data_dir: &Path, listen: SocketAddr) -> Config {
    let mut config = Config::new(data_dir.to_path_buf(), listen);
    // The UI asks for the join command over loopback; agents need the LAN address instead.
    // (Port 0 is only known once bound: then the join command names the caller's address.)
    if listen.port() != 0 {
        config.advertise_url = Some(url(listen.ip(), listen.port()));
    }
    config
}

fn url(listen: IpAddr, port: u16) -> String {
    format!("http://{}", SocketAddr::new(agent_ip(listen), port))
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
        let cp = start(dir.path(), ([127, 0, 0, 1], 0).into()).await.unwrap();
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
        let cp = start(dir.path(), wanted).await.unwrap();
        assert_ne!(cp.port, wanted.port());
        assert_eq!(cp.agent_url, format!("http://127.0.0.1:{}", cp.port));
        cp.shutdown().await.unwrap();
    }

    #[test]
    fn agents_get_a_lan_address_when_listening_everywhere() {
        assert_eq!(agent_ip("10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
        let ip = agent_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(ip.is_ipv4() && !ip.is_unspecified(), "{ip}");
    }
}
