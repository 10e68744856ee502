//! `corral agent`.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "The agent answers its environment's names (SERVICE, SERVICE.STACK, container names) on port 53 of its \
managed network's gateway (UDP and TCP), the resolver of this host's managed containers. Run it in the host's own network \
namespace for that: an agent elsewhere says so once in its log, and its containers keep the engine's resolver.")]
pub struct Args {
    /// Where the agent keeps its identity and the last desired set.
    #[arg(long, env = "CORRAL_AGENT_STATE_DIR", default_value = "/var/lib/corral-agent")]
    state_dir: PathBuf,
    /// Docker engine to drive [default: DOCKER_HOST or /var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Name of this host in the control plane [default: the hostname].
    #[arg(long)]
    name: Option<String>,
    /// Address shown for this host [default: the address used to reach the control plane].
    #[arg(long)]
    address: Option<String>,
    /// Host label for scheduling constraints, KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Where this host's Docker engine looks for registries' CA certificates; the agent installs
    /// there (as HOST[:PORT]/ca.crt) the CA of each registry added with `corral registry add
    /// --ca-file`, and removes the ones it installed when their registry is removed.
    #[arg(long, env = "CORRAL_REGISTRY_CERTS_DIR", default_value = corral_agent::registries::DEFAULT_CERTS_DIR)]
    registry_certs_dir: PathBuf,
    /// UDP port of this host's managed-network tunnel, which other hosts of its environment
    /// must reach (open it in firewalls between hosts).
    #[arg(long, env = "CORRAL_TUNNEL_PORT", default_value_t = corral_proto::network::DEFAULT_TUNNEL_PORT)]
    tunnel_port: u16,
    /// Run no tunnel: containers still join this host's managed network, but other hosts'
    /// containers cannot reach them (for an agent that does not run in its host's network
    /// namespace, or a host alone in its environment).
    #[arg(long)]
    no_tunnel: bool,
}

pub async fn run(args: Args, server: &str, token: Option<String>, ca_fingerprint: Option<corral_agent::tls::Fingerprint>) -> Result<()> {
    init_logging();
    let token = join_token(token, &args.state_dir)?;
    let config = corral_agent::AgentConfig {
        server_url: server.to_string(),
        token,
        ca_fingerprint,
        state_dir: args.state_dir,
        docker_host: args.docker_host,
        name: args.name,
        address: args.address,
        labels: super::key_values(&args.labels, "label")?,
        registry_certs_dir: args.registry_certs_dir,
        tunnel_port: (!args.no_tunnel).then_some(args.tunnel_port),
    };
    let (stop, shutdown) = tokio::sync::broadcast::channel(1);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(());
    });
    corral_agent::run(config, shutdown).await?;
    Ok(())
}

/// The join token, which a host that has joined no longer needs: its own credential, kept in the
/// state dir, speaks for it from then on.
fn join_token(token: Option<String>, state_dir: &std::path::Path) -> Result<String> {
    if let Some(token) = token {
        return Ok(token);
    }
    match corral_agent::identity::load_credential(state_dir)? {
        Some(_) => Ok(String::new()),
        None => anyhow::bail!(
            "this host has not joined yet (no credential in {}): pass --token with the environment's join token (see `corral host join-command`), \
             or --state-dir with the directory it joined with",
            state_dir.display()
        ),
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
