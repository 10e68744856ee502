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
    /// Where the database and the admin token live [default: $XDG_DATA_HOME/corral].
    #[arg(long, env = "CORRAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// URL hosts use to reach this control plane, put in join commands.
    #[arg(long)]
    advertise_url: Option<String>,
    /// Built web UI to serve at / [default: ui/dist when present].
    #[arg(long, env = "CORRAL_UI_DIR")]
    ui_dir: Option<PathBuf>,
    /// Agent binary served to joining hosts [default: this binary].
    #[arg(long)]
    agent_binary: Option<PathBuf>,
    /// After a lost database, seconds to wait for hosts to re-join before services rebuilt from
    /// container labels are scaled or healed.
    #[arg(long, default_value_t = 30)]
    adoption_window: u64,
    /// Seconds a login session lasts.
    #[arg(long, default_value_t = 12 * 3600)]
    session_ttl: u64,
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
    let control_plane = corral_server::ControlPlane::open(config).await?;
    if let Some(token) = &control_plane.new_admin_token {
        println!("Admin token (shown once; also saved to {}): {token}", data_dir.join(corral_server::ADMIN_TOKEN_FILE).display());
    }
    println!("Corral control plane on http://{} (data in {})", control_plane.local_addr(), data_dir.display());
    if let Some(token) = &control_plane.new_admin_token {
        // The web UI takes the token once from the address and keeps it for the tab.
        let port = control_plane.local_addr().port();
        println!("Web UI: http://127.0.0.1:{port}/#token={token} (or this host's address instead of 127.0.0.1)");
    }
    let (stop, shutdown) = tokio::sync::broadcast::channel(1);
    tokio::spawn(async move {
        crate::commands::agent::wait_for_signal().await;
        let _ = stop.send(());
    });
    control_plane.run(shutdown).await?;
    Ok(())
}
