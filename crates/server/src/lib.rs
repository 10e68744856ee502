//! Corral's control plane.
//!
//! - [`ControlPlane`]: opens the store, bootstraps a fresh data dir, binds the listener and
//!   runs the API and the control loop until shutdown.
//! - [`api`]: REST + JSON under `/v1` (axum), one file per resource; [`api::router`] builds it
//!   from one route table that gives every route its access policy.
//! - [`access`]: who is asking (API keys, sessions) and what they may do; the audit log.
//! - [`agent_session`]: the `/v1/agent` WebSocket session of one agent.
//! - [`hub`]: which agents are connected and the desired set each should run.
//! - [`events`]: which resource lists changed, for the `/v1/events` stream.
//! - [`backup`]: online backups of the database and restoring one without a restart.
//! - [`status`]: one state word and reason per container and service, as lists show them.
//! - [`reconcile`]: the level-triggered loop from desired state to placements to desired sets.
//! - [`network`]: the managed network: environments' ranges, hosts' leases, each host's plan.
//! - [`lb`]: load-balancer services: rule syntax, and listeners with backends from observed state.
//! - [`metrics`]: monitoring: agents' stats, history roll-ups, the Prometheus page.
//! - [`tls`]: the control plane's own CA, and TLS on the LAN listener.
//! - [`validate`]: checks on user input; [`error`]: the API's one error type.
//!
//! Placement itself is the pure `corral-scheduler` crate; persistence is `corral-store`.

pub mod access;
pub mod adopt;
pub mod agent_session;
pub mod api;
pub mod backup;
pub mod error;
pub mod events;
pub mod hub;
pub mod lb;
pub mod metrics;
pub mod names;
pub mod network;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod tls;
pub mod tunnels;
pub mod validate;

use crate::hub::Hub;
use crate::reconcile::{ReconcileTrigger, Reconciler};
use crate::state::AppState;
use corral_store::{Store, StoreError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Name of the file in the data dir that holds the first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Name of the admin's API key that `admin-token` holds.
pub const ADMIN_TOKEN_NAME: &str = "admin";
/// Name of the database file in the data dir.
pub const DATABASE_FILE: &str = "corral.db";
/// Name of the file in the data dir that holds the key join tokens are sealed with, unless the
/// embedder provides the key ([`Config::sealing_key`]) or names another file.
pub const SEALING_KEY_FILE: &str = "sealing.key";

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Once the control plane is open, the address it is bound to (a port 0 made real).
    pub listen: SocketAddr,
    /// URL hosts use to reach this control plane, for the join command; by default one built
    /// from `listen` (on every interface: this machine's address), never from a request.
    pub advertise_url: Option<String>,
    /// Built web UI to serve at `/`.
    pub ui_dir: Option<PathBuf>,
    /// Binary served at `/v1/agent/binary`; by default this process's own executable.
    pub agent_binary: Option<PathBuf>,
    pub heartbeat_interval: Duration,
    /// After services are rebuilt from container labels (lost database), how long to wait for
    /// other hosts to re-join before adding or removing instances.
    pub adoption_window: Duration,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// Whether `listen` speaks TLS with the control plane's own CA.
    pub tls: TlsMode,
    /// An extra plain-HTTP listener on loopback while `listen` speaks TLS (for a local window).
    pub local_listen: Option<SocketAddr>,
    /// Whether a newly made admin token is also written to `admin-token` in the data dir.
    /// The desktop app turns this off: it keeps the token in the OS keyring instead and gets
    /// it from [`ControlPlane::new_admin_token`].
    pub admin_token_file: bool,
    /// The key join tokens are sealed with, when the embedder keeps it (the desktop app keeps it
    /// in the OS keyring). Without one it is read from, or created in, [`Config::sealing_key_file`].
    pub sealing_key: Option<corral_store::SealingKey>,
    /// Where the sealing key file is; `sealing.key` in the data dir by default. Keeping it on
    /// another disk than the database keeps backups of the disk from holding both.
    pub sealing_key_file: Option<PathBuf>,
    /// The most hosts one join token value may bring into its environment; 0 for no limit.
    /// Rotating the token starts a new count.
    pub max_hosts_per_join_token: u32,
}

/// Hosts one join token may bring in unless configured otherwise.
pub const DEFAULT_MAX_HOSTS_PER_JOIN_TOKEN: u32 = 100;

/// Whether the main listener speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// TLS unless the listen address is loopback: traffic that never leaves the machine needs
    /// no certificate, and every client on it can keep using plain `http://127.0.0.1`.
    Auto,
    On,
    /// Plain HTTP on any address (what embedders that have not moved to TLS yet use).
    #[default]
    Off,
}

impl TlsMode {
    pub fn serves_tls(self, listen: SocketAddr) -> bool {
        match self {
            TlsMode::Auto => !listen.ip().is_loopback(),
            TlsMode::On => true,
            TlsMode::Off => false,
        }
    }
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Config {
            data_dir,
            listen,
            advertise_url: None,
            ui_dir: None,
            agent_binary: None,
            heartbeat_interval: Duration::from_secs(1),
            adoption_window: Duration::from_secs(30),
            session_ttl: Duration::from_secs(12 * 3600),
            tls: TlsMode::default(),
            local_listen: None,
            admin_token_file: true,
            sealing_key: None,
            sealing_key_file: None,
            max_hosts_per_join_token: DEFAULT_MAX_HOSTS_PER_JOIN_TOKEN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source} (is another control plane running? pick another --listen)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    SealingKey(#[from] corral_store::sealing::KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("--local-listen {0} is not a loopback address; plain HTTP is only served on loopback")]
    LocalNotLoopback(SocketAddr),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// A control plane with its store open and its port bound, ready to [`run`](ControlPlane::run).
pub struct ControlPlane {
    state: AppState,
    listener: TcpListener,
    /// Plain HTTP on loopback beside a TLS `listener`.
    local_listener: Option<TcpListener>,
    /// Present when `listener` speaks TLS.
    tls: Option<tls::Tls>,
    reconciler: Reconciler,
    /// The admin token, when this start created it (a fresh data dir); shown once.
    pub new_admin_token: Option<String>,
}

impl ControlPlane {
    pub async fn open(config: Config) -> Result<ControlPlane, ServerError> {
        let data_dir = config.data_dir.clone();
        // The database holds join tokens and services' environment values: no other local user
        // may even list the dir (an existing one is tightened too).
        corral_store::files::private_dir(&data_dir).map_err(|source| ServerError::DataDir { path: data_dir.clone(), source })?;
        let token_file = data_dir.join(ADMIN_TOKEN_FILE);
        corral_store::files::make_private(&token_file).map_err(|source| ServerError::DataDir { path: token_file, source })?;
        let key = match &config.sealing_key {
            Some(key) => key.clone(),
            None => corral_store::SealingKey::load_or_create(&config.sealing_key_file.clone().unwrap_or_else(|| data_dir.join(SEALING_KEY_FILE)))?,
        };
        let (store, sealed) = Store::open_sealed(&data_dir.join(DATABASE_FILE), key).await?;
        log_sealing(&sealed);
        store.ensure_default_environment().await?;
        network::number_environments(&store).await?;
        let new_admin_token = bootstrap_admin_token(&store, &data_dir, config.admin_token_file).await?;
        store.mark_all_hosts_disconnected().await?;
        let bind = |addr: SocketAddr| async move { TcpListener::bind(addr).await.map_err(|source| ServerError::Listen { addr, source }) };
        let listener = bind(config.listen).await?;
        let config = Config { listen: listener.local_addr().map_err(|source| ServerError::Listen { addr: config.listen, source })?, ..config };
        let tls = if config.tls.serves_tls(config.listen) {
            // The URL an administrator stored names a host agents dial too.
            let stored = store.settings().await?.advertise_url;
            let names: Vec<String> = [config.advertise_url.as_deref(), stored.as_deref()].into_iter().flatten().filter_map(url_host).collect();
            Some(tls::load_or_create(&data_dir, &names)?)
        } else {
            None
        };
        let local_listener = match (config.local_listen, &tls) {
            (Some(addr), _) if !addr.ip().is_loopback() => return Err(ServerError::LocalNotLoopback(addr)),
            (Some(addr), Some(_)) => Some(bind(addr).await?),
            // Without TLS the main listener already speaks plain HTTP.
            _ => None,
        };
        let hub = Arc::new(Hub::default());
        let trigger = ReconcileTrigger::default();
        let unplaced = Arc::default();
        let avoid: reconcile::AvoidHints = Arc::default();
        let events = events::Events::default();
        let reconciler = Reconciler {
            events: events.clone(),
            store: store.clone(),
            hub: hub.clone(),
            trigger: trigger.clone(),
            unplaced: Arc::clone(&unplaced),
            avoid: Arc::clone(&avoid),
        };
        let state = AppState {
            store,
            hub,
            reconcile: trigger,
            config: Arc::new(config),
            unplaced,
            avoid,
            events,
            access: Arc::default(),
            tickets: Arc::default(),
            environment_names: Arc::default(),
            shutdown: broadcast::channel(1).0,
            metrics: Arc::default(),
            ca: tls.as_ref().map(|t| Arc::new(t.ca.clone())),
            tls: tls.as_ref().map(|t| t.certs.clone()),
        };
        Ok(ControlPlane { state, listener, local_listener, tls, reconciler, new_admin_token })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The plain loopback listener's address, when one serves beside a TLS listener.
    pub fn local_addr_plain(&self) -> Option<SocketAddr> {
        self.local_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The CA clients pin (`sha256:HEX`), when the main listener speaks TLS.
    pub fn ca_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca.fingerprint.as_str())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` fires, then closes agent sessions and the store.
    pub async fn run(self, mut shutdown: broadcast::Receiver<()>) -> Result<(), ServerError> {
        use axum::serve::ListenerExt;
        let ControlPlane { state, listener, local_listener, tls, reconciler, .. } = self;
        // The listener does not wait for the loop: its first pass runs in the loop's own task, so
        // no database content can keep the API from answering. Agents that connect first are
        // told nothing until that pass has computed their host's set (`hub::DesiredWatch`).
        let loop_task = tokio::spawn(reconciler.run(state.shutdown.subscribe()));
        let rollups = tokio::spawn(metrics::run_rollups(state.store.clone(), state.metrics.clone(), state.shutdown.subscribe()));
        let app = |scheme| api::router(state.clone(), scheme).into_make_service_with_connect_info::<SocketAddr>();
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let stopped = |mut rx: broadcast::Receiver<()>| async move {
            let _ = rx.recv().await;
        };
        let mut servers = tokio::task::JoinSet::new();
        match tls {
            Some(tls) => {
                tracing::info!(%addr, fingerprint = %tls.ca.fingerprint, "control plane listening (TLS)");
                // `tap_io` only lends the TLS listener axum's connect-info for socket addresses.
                let listener = tls::TlsListener::new(listener, tls.acceptor).map_err(ServerError::Serve)?.tap_io(|_| {});
                let serve = axum::serve(listener, app(access::Scheme::Https)).with_graceful_shutdown(stopped(state.shutdown.subscribe()));
                servers.spawn(async move { serve.await });
                if let Some(local) = local_listener {
                    tracing::info!(addr = %local.local_addr().map_err(ServerError::Serve)?, "plain HTTP for this machine only");
                    let serve = axum::serve(local, app(access::Scheme::Http)).with_graceful_shutdown(stopped(state.shutdown.subscribe()));
                    servers.spawn(async move { serve.await });
                }
            }
            None => {
                tracing::info!(%addr, "control plane listening");
                let serve = axum::serve(listener, app(access::Scheme::Http)).with_graceful_shutdown(stopped(state.shutdown.subscribe()));
                servers.spawn(async move { serve.await });
            }
        }
        let stop = state.shutdown.clone();
        tokio::spawn(async move {
            let _ = shutdown.recv().await;
            let _ = stop.send(());
        });
        let mut result = Ok(());
        while let Some(done) = servers.join_next().await {
            if let Ok(Err(e)) = done {
                // One listener failing stops the others too.
                let _ = state.shutdown.send(());
                result = Err(ServerError::Serve(e));
            }
        }
        let _ = loop_task.await;
        let _ = rollups.await;
        state.store.close().await;
        result
    }
}

/// Says what opening the database did to its join tokens, when it did anything.
pub fn log_sealing(report: &corral_store::SealReport) {
    if report.sealed > 0 {
        tracing::info!(tokens = report.sealed, "join tokens stored in plaintext by an older version are now sealed");
    }
    if !report.replaced.is_empty() {
        tracing::warn!(
            environments = ?report.replaced,
            "join tokens sealed with another key (another control plane's backup, or a lost key file) cannot be read and were replaced; \
             joined hosts keep working, new hosts need the new join command (`corral host join-command`)"
        );
    }
}

/// The host part of a URL such as `https://cp.lan:7070/`, for the server certificate.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// On a fresh data dir, creates the admin token (the built-in admin user's account key) and,
/// when `to_file`, writes it to `admin-token` (mode 0600). After the admin token was revoked,
/// the next start makes a new one, so the machine's owner can always get back in.
async fn bootstrap_admin_token(store: &Store, data_dir: &std::path::Path, to_file: bool) -> Result<Option<String>, ServerError> {
    if store.api_token_exists(ADMIN_TOKEN_NAME).await? {
        return Ok(None);
    }
    let secret = format!("corral_{}", corral_store::environments::random_secret(24));
    store.set_api_token_secret(ADMIN_TOKEN_NAME, &secret).await?;
    if to_file {
        write_admin_token_file(data_dir, &secret)?;
    }
    Ok(Some(secret))
}

/// Writes the admin token to `admin-token` in `data_dir`, readable by the owner only (also for
/// the desktop app when no OS keyring can hold it).
pub fn write_admin_token_file(data_dir: &std::path::Path, secret: &str) -> Result<(), ServerError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&path, secret).map_err(|source| ServerError::DataDir { path, source })
}

fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = corral_store::files::create_private(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
