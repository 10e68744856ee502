//! Corral host agent: keeps the local Docker engine converged to the control plane's desired set.
//!
//! [`run`] wires the pieces together:
//!
//! - [`identity`]: the host's stable id, `state_dir/host-id`, and its own credential,
//!   `state_dir/credential` (0600), issued by the control plane on the first join.
//! - [`state`]: the last desired set, `state_dir/desired.json`, written atomically. It is loaded
//!   and enforced at startup before the control plane is dialled, so a host keeps its containers
//!   while the control plane is away.
//! - [`engine`]: the Docker engine through bollard, in proto types; only containers labelled
//!   `io.corral.managed=true` are ever touched; [`engine::Engine::pull`] is the one place
//!   images are pulled.
//! - [`pull`]: the host's pulls, one per image, beside the converge loop, with progress and
//!   failures read from the engine's answer; the login for a private registry comes from
//!   [`registries`].
//! - [`registries`]: the environment's registries: their CAs installed where the engine looks,
//!   and the login a pull of one image needs.
//! - [`issues`]: why a desired container is not running, in words a user can act on.
//! - [`converge`]: the pure diff from (desired, observed) to actions, the crash-loop restart
//!   backoff, and whether a container's image lets it be created yet. No I/O; unit-tested.
//! - [`restarts`]: restarts asked for through the control plane, each carried out once; the
//!   generations applied are kept in `state_dir/restarts.json`.
//! - [`reconciler`]: the single converge task (level-triggered, bursts coalesce) and the engine
//!   event watcher that makes a container removed by hand come back within a second.
//! - `connection`: the WebSocket session to `{server_url}/v1/agent`: hello, welcome,
//!   heartbeats, desired sets in, observed sets out; redials forever with jittered backoff.
//! - [`logs`]: container logs streamed on demand while someone reads them.
//! - [`stats`]: host and container resource usage, sampled every 5 s (1 s while watched).
//! - [`registries`]: registries' CAs installed for the engine, and pulls with their logins.
//! - [`dns`]: the service-discovery DNS server on the managed network's gateway, the resolver of
//!   this host's managed containers, answering from the names of the saved desired set first.
//! - [`facts`]: what the host reports about itself in the hello.
//! - [`tls`]: TLS to the control plane with its CA pinned by fingerprint (also used by the CLI).
//! - [`backoff`]: full-jitter exponential backoff.

pub mod backoff;
pub mod balancer;
mod connection;
pub mod converge;
pub mod dns;
pub mod engine;
mod error;
pub mod facts;
pub mod identity;
pub mod issues;
pub mod logs;
pub mod network;
pub mod pull;
pub mod reconciler;
pub mod registries;
pub mod restarts;
pub mod state;
pub mod stats;
pub mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::broadcast;

pub use connection::agent_ws_url;
pub use engine::Engine;
pub use error::AgentError;
pub use reconciler::{ConvergeFailure, ConvergeReport, Reconciler, ReconcilerHandle};

/// Everything `corral agent` needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control plane base URL, e.g. `http://10.0.0.5:7070`; the agent dials `{url}/v1/agent`.
    pub server_url: String,
    /// The environment's join token, used until the control plane issues this host's own
    /// credential; empty once the state dir holds that credential (`corral agent` without `--token`).
    pub token: String,
    /// The control plane's CA, pinned; required for an `https://` server URL.
    pub ca_fingerprint: Option<tls::Fingerprint>,
    /// Where the agent keeps its identity and the last desired set.
    pub state_dir: PathBuf,
    /// Docker endpoint, e.g. `unix:///run/h1/docker.sock`; `None` means `DOCKER_HOST` or the default socket.
    pub docker_host: Option<String>,
    /// Host name shown in the control plane; `None` means the machine's hostname.
    pub name: Option<String>,
    /// Address shown in the control plane; `None` means the local address used to reach it.
    pub address: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Where the engine looks for registries' CAs (`/etc/docker/certs.d`): the agent installs
    /// the CA of each registry of its environment there.
    pub registry_certs_dir: PathBuf,
    /// The UDP port of this host's managed-network tunnel; `None` runs no tunnel (containers
    /// still join the host's managed bridge, but other hosts' cannot reach them).
    pub tunnel_port: Option<u16>,
}

/// Runs the agent until `shutdown` fires (or its sender is dropped).
///
/// Returns an error only for what retrying cannot fix: a bad config (URL, state dir), an
/// unreachable Docker engine at startup, or the control plane rejecting the join token or the
/// protocol version. A lost or refused connection is retried forever.
pub async fn run(config: AgentConfig, shutdown: broadcast::Receiver<()>) -> Result<(), AgentError> {
    agent_ws_url(&config.server_url)?;
    let engine = Engine::connect(config.docker_host.as_deref()).await?;
    run_with_engine(config, engine, shutdown).await
}

/// [`run`] with an engine handle the caller connected, e.g. one narrowed with
/// [`Engine::scoped`] so tests can share an engine; `config.docker_host` is ignored.
pub async fn run_with_engine(config: AgentConfig, engine: Engine, mut shutdown: broadcast::Receiver<()>) -> Result<(), AgentError> {
    let ws_url = agent_ws_url(&config.server_url)?;
    if ws_url.starts_with("wss://") && config.ca_fingerprint.is_none() {
        return Err(AgentError::InvalidServerUrl {
            url: config.server_url.clone(),
            reason: "an https:// control plane needs its CA fingerprint: pass --ca-fingerprint (it is in the join command)".into(),
        });
    }
    let host_id = identity::load_or_create_host_id(&config.state_dir)?;
    let desired = match state::load_desired(&config.state_dir) {
        Ok(d) => d,
        // Keep running: the control plane sends a fresh set on connect, and until then leaving
        // the engine alone is safer than guessing.
        Err(e @ AgentError::CorruptState { .. }) => {
            tracing::error!(error = %e, "ignoring the saved desired set");
            None
        }
        Err(e) => return Err(e),
    };
    tracing::info!(
        %host_id,
        engine = %engine.endpoint(),
        state_dir = %config.state_dir.display(),
        saved_revision = desired.as_ref().map(|d| d.revision),
        "agent starting"
    );

    let cas = registries::CaFiles { certs_dir: config.registry_certs_dir.clone(), state_dir: config.state_dir.clone() };
    let dns = dns::ServiceDns::with_host_resolvers(&shutdown);
    let reconciler = Reconciler::in_state_dir(engine.clone(), &config.state_dir).with_dns(dns.clone());
    let reconciler = ReconcilerHandle::spawn_with(reconciler, desired, &shutdown, Some(cas));
    tokio::spawn(dns::follow_names(dns, reconciler.watch_desired(), shutdown.resubscribe()));
    // Enforce the saved set before dialling, and have a fresh observed set for the first report.
    let stopped = tokio::select! {
        _ = shutdown.recv() => true,
        _ = reconciler.wait_for_passes(1) => false,
    };
    let tunnel = match config.tunnel_port {
        Some(port) => Some(network::ManagedNetwork::load(&config.state_dir, port)?),
        None => None,
    };
    let tunnel_facts = tunnel.as_ref().map(|t| (t.public_key(), t.port()));
    let tunnel_status = tunnel.as_ref().map(|t| t.status());
    if let Some(tunnel) = tunnel {
        tokio::spawn(follow_network(tunnel, reconciler.watch_desired(), shutdown.resubscribe()));
    }
    let result = if stopped {
        Ok(())
    } else {
        let link = connection::Link { config: &config, ws_url, host_id, engine, reconciler: &reconciler, tunnel: tunnel_facts, tunnel_status };
        connection::run(link, &mut shutdown).await
    };
    reconciler.stop().await;
    match &result {
        Ok(()) => tracing::info!("agent stopped"),
        Err(e) => tracing::error!(error = %e, "agent stopped"),
    }
    result
}

/// How long a tunnel that could not start (port taken, no device) waits before it is tried again.
const TUNNEL_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the tunnel matching the managed network's plan of each desired set (the saved one
/// first, so the network works while the control plane is away) until shutdown; a tunnel that
/// could not start is tried again every few seconds, so it comes up once the cause is gone.
async fn follow_network(
    mut tunnel: network::ManagedNetwork,
    mut desired: tokio::sync::watch::Receiver<Option<std::sync::Arc<corral_proto::DesiredSet>>>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let mut applied: Option<corral_proto::network::NetworkPlan> = None;
    loop {
        let plan = desired.borrow_and_update().as_ref().and_then(|d| d.network.as_ref().map(|n| n.without_names()));
        if plan != applied {
            tunnel.apply(plan.as_ref(), &shutdown).await;
            applied = plan;
        }
        tokio::select! {
            _ = shutdown.recv() => return,
            changed = desired.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(TUNNEL_RETRY), if tunnel.failed() => tunnel.apply(applied.as_ref(), &shutdown).await,
        }
    }
}
