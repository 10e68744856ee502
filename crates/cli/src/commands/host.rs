//! `corral host ls|join-command|deactivate|activate|rm|revoke`.

use super::text;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the environment's hosts with their state and facts, and what the control plane
    /// refused from each host's agent since its last hello (PROBLEM; all of it with -o json).
    Ls,
    /// Print the one-line command that adds a host to the environment.
    #[command(name = "join-command")]
    Join {
        /// Give the environment a new join token first (owners, admins): the old one is
        /// refused from then on; hosts that have joined stay connected.
        #[arg(long)]
        rotate: bool,
    },
    /// Deactivate a host: what runs there keeps running (and is healed in place), but it gets
    /// no new containers.
    Deactivate {
        /// The host's name, as `corral host ls` shows it.
        name: String,
    },
    /// Let a deactivated host take new containers again.
    Activate {
        /// The host's name, as `corral host ls` shows it.
        name: String,
    },
    /// Remove a deactivated or disconnected host: its credential is refused, and its
    /// containers are placed on other hosts. It comes back only by running the join command.
    Rm {
        /// The host's name, as `corral host ls` shows it.
        name: String,
    },
    /// Revoke a host's own credential (owners, admins): its agent is disconnected and refused
    /// until it joins again with the join command.
    Revoke {
        /// The host's name, as `corral host ls` shows it.
        name: String,
    },
}

/// Characters of a host's problem the table shows; `-o json` has all of it.
const PROBLEM_SHOWN: usize = 120;

fn shorten(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}… (more with -o json)", &text[..cut]),
        None => text.to_string(),
    }
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Ls => {
            let hosts: Vec<Value> = client.get("/hosts", &[]).await?;
            output::print(format, &hosts, &["NAME", "STATE", "ADDRESS", "DOCKER", "CPUS", "MEMORY", "CONTAINERS", "LABELS", "PROBLEM"], |hosts| {
                hosts
                    .iter()
                    .map(|h| {
                        let labels = h["labels"]
                            .as_object()
                            .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","));
                        vec![
                            text(h, "name"),
                            text(h, "status"),
                            text(h, "address"),
                            text(h, "docker_version"),
                            text(h, "cpus"),
                            output::bytes(h["memory_bytes"].as_u64().unwrap_or(0)),
                            text(h, "containers"),
                            labels.unwrap_or_default(),
                            shorten(h["problem"].as_str().unwrap_or_default(), PROBLEM_SHOWN),
                        ]
                    })
                    .collect()
            });
        }
        Command::Join { rotate } => {
            let join: Value = match rotate {
                true => client.post("/hosts/join-command/rotate", &serde_json::json!({})).await?,
                false => client.get("/hosts/join-command", &[]).await?,
            };
            output::done(format, &join, &text(&join, "command"));
        }
        Command::Deactivate { name } => {
            let host: Value = client.post(&format!("/hosts/{}/deactivate", super::seg(&name)), &serde_json::json!({})).await?;
            output::done(format, &host, &format!("deactivated host {name}: it keeps what it runs and gets no new containers"));
        }
        Command::Activate { name } => {
            let host: Value = client.post(&format!("/hosts/{}/activate", super::seg(&name)), &serde_json::json!({})).await?;
            output::done(format, &host, &format!("activated host {name}: it takes new containers again"));
        }
        Command::Rm { name } => {
            client.delete(&format!("/hosts/{}", super::seg(&name))).await?;
            let message = format!("removed host {name}; its containers are placed on other hosts, and it comes back only by running the join command");
            output::done(format, &serde_json::json!({ "removed": name }), &message);
        }
        Command::Revoke { name } => {
            let host: Value = client.post(&format!("/hosts/{}/revoke", super::seg(&name)), &serde_json::json!({})).await?;
            output::done(format, &host, &format!("revoked the credential of host {name}; it must run the join command again to re-join"));
        }
    }
    Ok(())
}
