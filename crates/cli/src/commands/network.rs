//! `corral network ls`: the environment's managed network, host by host.

use super::text;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the hosts' subnets of the environment's managed network, their addresses and
    /// tunnels, and why a host has no subnet when it has none.
    Ls,
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Ls => {
            let network: Value = client.get("/network", &[]).await?;
            if format == Format::Table {
                println!("managed network {} of environment {}", text(&network, "subnet"), text(&network, "environment"));
            }
            let hosts: Vec<Value> = network["hosts"].as_array().cloned().unwrap_or_default();
            output::print(format, &network, &["HOST", "STATE", "SUBNET", "ADDRESS", "TUNNEL", "PROBLEM"], |_| {
                hosts
                    .iter()
                    .map(|h| {
                        let tunnel = match (h["public_key"].as_str(), h["tunnel_port"].as_u64()) {
                            (Some(key), Some(port)) => format!("udp/{port} {}", &key[..key.len().min(8)]),
                            _ => "-".into(),
                        };
                        vec![text(h, "host"), text(h, "host_state"), text(h, "subnet"), text(h, "address"), tunnel, text(h, "problem")]
                    })
                    .collect()
            });
        }
    }
    Ok(())
}
