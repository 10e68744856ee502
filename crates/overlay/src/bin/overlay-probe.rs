//! Brings one overlay tunnel up from the command line, for tests and for trying the tunnel by
//! hand between two machines or network namespaces.
//!
//!   overlay-probe public-key --key FILE      make the key file if needed, print its public key
//!   overlay-probe run --key FILE --local-subnet 10.42.1.0/24 --peer KEY,HOST:PORT,10.42.2.0/24
//!
//! `run` writes the tunnel's state as JSON to `--status` every 200 ms (replaced whole): the
//! tunnel address, each peer's stats, and the last peer-list change's error if it failed. On
//! SIGHUP it makes the peer list what `--peers-file` holds (a JSON array of
//! `{"public_key", "endpoint", "subnet"}`; `[]` removes every peer). It stops on SIGTERM or
//! SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use corral_overlay::{KeyPair, Overlay, OverlayConfig, Peer};
use ipnet::Ipv4Net;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "Bring one Corral overlay tunnel up (WireGuard in user space over TUN)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the key file if it does not exist (mode 0600) and print its public key (base64).
    PublicKey {
        #[arg(long)]
        key: PathBuf,
    },
    /// Run the tunnel until SIGTERM/SIGINT.
    Run {
        /// This host's private key file (made if missing).
        #[arg(long)]
        key: PathBuf,
        /// The TUN device to create.
        #[arg(long, default_value = "corral0")]
        device: String,
        /// UDP port to listen on.
        #[arg(long, default_value_t = 51820)]
        port: u16,
        /// This host's subnet; the device takes its first address.
        #[arg(long)]
        local_subnet: Ipv4Net,
        /// The environment's network.
        #[arg(long, default_value = "10.42.0.0/16")]
        network: Ipv4Net,
        /// A peer as PUBLIC_KEY,HOST:PORT,SUBNET (repeat for more).
        #[arg(long, value_parser = parse_peer)]
        peer: Vec<Peer>,
        /// Where to write the tunnel's state (JSON), every 200 ms.
        #[arg(long)]
        status: Option<PathBuf>,
        /// The peer list to switch to on SIGHUP (JSON array of peers).
        #[arg(long)]
        peers_file: Option<PathBuf>,
    },
}

fn parse_peer(s: &str) -> anyhow::Result<Peer> {
    let parts: Vec<&str> = s.split(',').collect();
    let [key, endpoint, subnet] = parts[..] else {
        bail!("expected PUBLIC_KEY,HOST:PORT,SUBNET");
    };
    Ok(Peer {
        public_key: key.parse()?,
        endpoint: endpoint.parse::<SocketAddr>().with_context(|| format!("endpoint {endpoint}"))?,
        subnet: subnet.parse().with_context(|| format!("subnet {subnet}"))?,
    })
}

fn read_peers(path: Option<&Path>) -> anyhow::Result<Vec<Peer>> {
    let path = path.context("SIGHUP needs --peers-file")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn write_status(path: &Path, overlay: &Overlay, error: Option<&str>) -> anyhow::Result<()> {
    let status = serde_json::json!({
        "address": overlay.address(),
        "peers": overlay.stats(),
        "error": error,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&status)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::PublicKey { key } => {
            println!("{}", KeyPair::load_or_create(&key)?.public_key());
            Ok(())
        }
        Command::Run { key, device, port, local_subnet, network, peer, status, peers_file } => {
            let keypair = KeyPair::load_or_create(&key)?;
            let config = OverlayConfig { device, listen_port: port, local_subnet, network };
            let (stop_tx, stop_rx) = tokio::sync::broadcast::channel(1);
            let mut overlay = Overlay::start(config, &keypair, peer, stop_rx).await?;
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let mut hup = signal(SignalKind::hangup())?;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut error: Option<String> = None;
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => {
                        let changed = match read_peers(peers_file.as_deref()) {
                            Ok(peers) => overlay.set_peers(peers).await.map_err(anyhow::Error::from),
                            Err(e) => Err(e),
                        };
                        error = changed.err().map(|e| format!("{e:#}"));
                        if let Some(e) = &error {
                            tracing::error!(error = %e, "peer list not changed");
                        }
                    }
                    _ = tick.tick() => {
                        if let Some(path) = &status {
                            write_status(path, &overlay, error.as_deref())?;
                        }
                    }
                }
            }
            let _ = stop_tx.send(());
            overlay.closed().await;
            Ok(())
        }
    }
}
