//! `corral container inspect|logs|rm|restart|stop|start`.

use super::seg;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::{bail, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show one container: where it runs, its state and why, its image, command and labels.
    Inspect { name: String },
    /// Print a container's log, read from its host's agent.
    Logs {
        name: String,
        /// Lines of history to print first (at most 10000).
        #[arg(long, default_value_t = 200)]
        tail: u32,
        /// Keep printing new lines until interrupted, or until the credential loses access
        /// (logout, a revoked key, a removed membership or user), which ends it with the reason.
        #[arg(short, long)]
        follow: bool,
    },
    /// Remove a container by name (see `corral ps`). The service keeps its scale, so a
    /// replacement starts at once, on another host when one is eligible.
    Rm { name: String },
    /// Restart a container in place (stopped, then started again; a stopped one is started).
    /// Carried out once by its host's agent, also if the agent restarts meanwhile.
    Restart { name: String },
    /// Stop a container and keep it stopped (not replaced, not restarted, across agent restarts
    /// and reconnects) until `corral container start`. Its service keeps its scale.
    Stop { name: String },
    /// Start a container stopped with `corral container stop` again.
    Start { name: String },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Inspect { name } => {
            let container: Value = client.get(&format!("/containers/{}", seg(&name)), &[]).await?;
            // Details are a document, not a table: JSON whatever the output format.
            println!("{}", serde_json::to_string_pretty(&container)?);
        }
        Command::Logs { name, tail, follow } => {
            let tail = tail.to_string();
            let query = [("tail", tail.as_str()), ("follow", if follow { "true" } else { "false" })];
            let mut socket = client.websocket(&format!("/containers/{}/logs", seg(&name)), &query).await?;
            while let Some(frame) = socket.next().await {
                let Message::Text(text) = frame? else { continue };
                let frame: Value = serde_json::from_str(&text)?;
                if frame["type"] == "end" {
                    if follow {
                        bail!("log ended: {}", frame["reason"].as_str().unwrap_or_default());
                    }
                    break;
                }
                let line = frame["line"].as_str().unwrap_or_default();
                match (format, frame["stream"].as_str()) {
                    (Format::Json, _) => println!("{frame}"),
                    (_, Some("stderr")) => eprintln!("{line}"),
                    _ => println!("{line}"),
                }
            }
        }
        Command::Rm { name } => {
            client.delete(&format!("/containers/{}", seg(&name))).await?;
            output::done(format, &json!({ "removed": name }), &format!("removed container {name}; its service starts a replacement"));
        }
        Command::Restart { name } => act(client, format, &name, "restart", "restarting").await?,
        Command::Stop { name } => act(client, format, &name, "stop", "stopping").await?,
        Command::Start { name } => act(client, format, &name, "start", "starting").await?,
    }
    Ok(())
}

/// `POST /v1/containers/NAME/VERB`; the answer is the container as the API then sees it.
async fn act(client: &Client, format: Format, name: &str, verb: &str, doing: &str) -> Result<()> {
    let container: Value = client.post(&format!("/containers/{}/{verb}", seg(name)), &json!({})).await?;
    let host = container["host"].as_str().unwrap_or_default();
    output::done(format, &container, &format!("{doing} container {name} on {host} (see `corral ps`)"));
    Ok(())
}
