//! `corral network ls`: the environment's managed network, host by host.

use super::text;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the hosts' subnets of the environment's managed network, their addresses and
    /// tunnels, and why a host has no subnet when it has none; then each host's tunnel peers:
    /// where it sends to each (ENDPOINT), how long ago the last handshake completed (HANDSHAKE,
    /// `never` until one does) and the bytes received from and sent to each through the tunnel.
    /// A host whose tunnel does not run shows `tunnel down` and why.
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
            if format == Format::Table {
                println!();
                output::print(format, &hosts, &["HOST", "PEER", "ENDPOINT", "HANDSHAKE", "RX", "TX"], |h| peer_rows(h));
            }
        }
    }
    Ok(())
}

/// One row per host and tunnel peer, or one saying why a host's tunnel is down.
fn peer_rows(hosts: &[Value]) -> Vec<Vec<String>> {
    let bytes = |v: &Value| super::stats::human(v.as_u64().unwrap_or(0) as f64);
    let mut rows = Vec::new();
    for h in hosts {
        let tunnel = &h["tunnel"];
        if tunnel.is_null() {
            continue;
        }
        if tunnel["state"] != "up" {
            let why = tunnel["error"].as_str().map_or("tunnel down".to_string(), |e| format!("tunnel down: {e}"));
            rows.push(vec![text(h, "host"), "-".into(), "-".into(), why, "-".into(), "-".into()]);
            continue;
        }
        for p in tunnel["peers"].as_array().into_iter().flatten() {
            let handshake = p["last_handshake_secs"].as_u64().map_or("never".to_string(), ago);
            rows.push(vec![text(h, "host"), text(p, "host"), text(p, "endpoint"), handshake, bytes(&p["rx_bytes"]), bytes(&p["tx_bytes"])]);
        }
    }
    rows
}

/// `3s ago`, `4m ago`, `2h ago`.
fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_print_one_row_each_and_a_down_tunnel_says_why() {
        let hosts: Vec<Value> = serde_json::from_str(
            r#"[
                {"host": "h1", "tunnel": {"state": "up", "peers": [
                    {"host": "h2", "endpoint": "10.0.0.2:51820", "last_handshake_secs": 3, "rx_bytes": 2048, "tx_bytes": 10},
                    {"host": "h3", "endpoint": "10.0.0.3:51820", "rx_bytes": 0, "tx_bytes": 0}]}},
                {"host": "h2", "tunnel": {"state": "down", "error": "port taken", "peers": []}},
                {"host": "h4", "tunnel": null}
            ]"#,
        )
        .unwrap();
        let rows = peer_rows(&hosts);
        assert_eq!(rows[0], ["h1", "h2", "10.0.0.2:51820", "3s ago", "2.0 KiB", "10 B"]);
        assert_eq!(rows[1][3], "never");
        assert_eq!(rows[2], ["h2", "-", "-", "tunnel down: port taken", "-", "-"]);
        assert_eq!(rows.len(), 3);
        assert_eq!(ago(300), "5m ago");
    }
}
