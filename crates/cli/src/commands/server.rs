//! `corral server`.

use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Address for the API, the agent endpoint and the web UI.
    #[arg(long, default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// TLS with the control plane's own CA on --listen: auto = unless it is a loopback address.
    #[arg(long, value_enum, default_value_t = Tls::Auto)]
    tls: Tls,
    /// With TLS on, also serve plain HTTP on this loopback address (e.g. 127.0.0.1:7071), for
    /// browsers and tools on this machine.
    #[arg(long, value_name = "127.0.0.1:PORT")]
    local_listen: Option<SocketAddr>,
    /// Where the database and the admin token live [default: $XDG_DATA_HOME/corral].
    #[arg(long, env = "CORRAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// URL hosts use to reach this control plane, put in join commands; wins over the one an
    /// administrator sets in Settings (`corral settings set advertise-url`) [default: that one,
    /// else the --listen address, or this machine's LAN address when listening on every
    /// interface].
    #[arg(long)]
    advertise_url: Option<String>,
    /// Built web UI to serve at / [default: ui/dist when present].
    #[arg(long, env = "CORRAL_UI_DIR")]
    ui_dir: Option<PathBuf>,
    /// Agent binary served to joining hosts [default: this binary].
    #[arg(long)]
    agent_binary: Option<PathBuf>,
    /// After a lost database, seconds to wait for hosts to re-join before services rebuilt from
    /// container labels are scaled or healed (at most a day).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    adoption_window: u64,
    /// Seconds a login session lasts (its open streams end within 5 s of its expiry); at most a
    /// year.
    #[arg(long, default_value_t = 12 * 3600, value_parser = clap::value_parser!(u64).range(1..=366 * 86_400))]
    session_ttl: u64,
    /// File with the key join tokens are sealed with in the database (created, mode 0600, when
    /// missing) [default: DATA_DIR/sealing.key]. Keep it out of backups of the database: a copy
    /// of the database without it holds no usable join token. A lost key only means new join
    /// tokens; joined hosts keep working.
    #[arg(long, env = "CORRAL_SEALING_KEY_FILE", value_name = "PATH")]
    sealing_key_file: Option<PathBuf>,
    /// The most hosts one join token may bring into its environment (0: no limit). Over it, a
    /// new host is refused until the token is rotated (`corral host join-command --rotate`) or
    /// the limit raised; hosts that joined keep reconnecting with their own credentials.
    #[arg(long, value_name = "N", default_value_t = corral_server::DEFAULT_MAX_HOSTS_PER_JOIN_TOKEN)]
    max_hosts_per_join_token: u32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Tls {
    Auto,
    On,
    Off,
}

pub async fn run(args: Args) -> Result<()> {
    crate::commands::agent::init_logging();
    let data_dir = args.data_dir.unwrap_or_else(crate::client::default_data_dir);
    let mut config = corral_server::Config::new(data_dir.clone(), args.listen);
    config.advertise_url = args.advertise_url;
    config.ui_dir = args.ui_dir.or_else(|| Some(PathBuf::from("ui/dist")).filter(|d| d.join("index.html").is_file()));
    config.agent_binary = args.agent_binary;
    config.adoption_window = Duration::from_secs(args.adoption_window);
    config.session_ttl = Duration::from_secs(args.session_ttl);
    config.max_hosts_per_join_token = args.max_hosts_per_join_token;
    config.tls = match args.tls {
        Tls::Auto => corral_server::TlsMode::Auto,
        Tls::On => corral_server::TlsMode::On,
        Tls::Off => corral_server::TlsMode::Off,
    };
    config.local_listen = args.local_listen;
    config.sealing_key_file = args.sealing_key_file;
    let control_plane = corral_server::ControlPlane::open(config).await?;
    if let Some(token) = &control_plane.new_admin_token {
        println!("Admin token (shown once; also saved to {}): {token}", data_dir.join(corral_server::ADMIN_TOKEN_FILE).display());
    }
    let scheme = if control_plane.ca_fingerprint().is_some() { "https" } else { "http" };
    println!("Corral control plane on {scheme}://{} (data in {})", control_plane.local_addr(), data_dir.display());
    if let Some(fingerprint) = control_plane.ca_fingerprint() {
        println!("CA fingerprint (agents and the CLI pin it with --ca-fingerprint): {fingerprint}");
    }
    if let Some(local) = control_plane.local_addr_plain() {
        println!("Plain HTTP for this machine only on http://{local}");
    }
    if let Some(token) = &control_plane.new_admin_token {
        // The web UI takes the token once from the address and keeps it for the tab.
        let web = match control_plane.local_addr_plain() {
            Some(local) => format!("http://{local}"),
            None => format!("{scheme}://127.0.0.1:{}", control_plane.local_addr().port()),
        };
        println!("Web UI: {web}/#token={token} (or this host's address instead of 127.0.0.1)");
    }
    let (stop, shutdown) = tokio::sync::broadcast::channel(1);
    tokio::spawn(async move {
        crate::commands::agent::wait_for_signal().await;
        let _ = stop.send(());
    });
    control_plane.run(shutdown).await?;
    Ok(())
}
