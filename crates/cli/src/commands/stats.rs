//! `corral stats host|container|service` (recent history) and `corral top` (live).

use super::{seg, stack_service, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Subcommand)]
pub enum Command {
    /// A host's CPU, memory, load, network, disk: recent samples, oldest first.
    Host {
        name: String,
        #[command(flatten)]
        range: Range,
    },
    /// A container's CPU (100 % is one core), memory, network and block I/O.
    Container {
        name: String,
        #[command(flatten)]
        range: Range,
    },
    /// A service's totals over its containers, given as STACK/SERVICE.
    Service {
        path: String,
        #[command(flatten)]
        range: Range,
    },
}

#[derive(clap::Args)]
pub struct Range {
    /// How far back: an age like 10m, 2h, 7d (history keeps 5 s samples for an hour, minutes
    /// for a day, hours for a month).
    #[arg(long, default_value = "10m")]
    since: String,
    /// Time between points, e.g. 5s, 1m (default: the finest kept for that age).
    #[arg(long)]
    step: Option<String>,
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    let (path, range) = match &cmd {
        Command::Host { name, range } => (format!("/hosts/{}/stats", seg(name)), range),
        Command::Container { name, range } => (format!("/containers/{}/stats", seg(name)), range),
        Command::Service { path, range } => {
            let (stack, service) = stack_service(path)?;
            (format!("/stacks/{}/services/{}/stats", seg(stack), seg(service)), range)
        }
    };
    let from = format!("-{}", range.since.trim_start_matches('-'));
    let mut query = vec![("from", from.as_str())];
    if let Some(step) = &range.step {
        query.push(("step", step.as_str()));
    }
    let history: Value = client.get(&path, &query).await?;
    let is_host = matches!(cmd, Command::Host { .. });
    let mut header = vec!["TIME", "CPU %", "MEMORY", "LIMIT", "NET RX/s", "NET TX/s", "READ/s", "WRITE/s"];
    if is_host {
        header.extend(["LOAD", "DISK USED"]);
    }
    output::print(format, &history, &header, |h| {
        let points = h["points"].as_array().cloned().unwrap_or_default();
        if points.is_empty() {
            eprintln!("no samples in this range yet (agents report every 5 s)");
        }
        points
            .iter()
            .map(|p| {
                let mut row = vec![
                    clock(p["ts"].as_i64().unwrap_or(0)),
                    format!("{:.1}", p["cpu_percent"].as_f64().unwrap_or(0.0)),
                    human(p["memory_bytes"].as_f64().unwrap_or(0.0)),
                    human(p["memory_limit_bytes"].as_f64().unwrap_or(0.0)),
                    human(p["network_rx_bytes_per_second"].as_f64().unwrap_or(0.0)),
                    human(p["network_tx_bytes_per_second"].as_f64().unwrap_or(0.0)),
                    human(p["io_read_bytes_per_second"].as_f64().unwrap_or(0.0)),
                    human(p["io_write_bytes_per_second"].as_f64().unwrap_or(0.0)),
                ];
                if is_host {
                    row.push(format!("{:.2}", p["load1"].as_f64().unwrap_or(0.0)));
                    row.push(human(p["disk_used_bytes"].as_f64().unwrap_or(0.0)));
                }
                row
            })
            .collect()
    });
    Ok(())
}

/// `corral top`: hosts and the busiest containers, redrawn every second until ctrl-c.
#[derive(clap::Args)]
pub struct TopArgs {
    /// Containers to show, busiest first.
    #[arg(long, default_value_t = 20)]
    containers: usize,
}

pub async fn top(args: TopArgs, client: &Client, format: Format) -> Result<()> {
    let mut socket = client.websocket("/stats/live", &[]).await?;
    let mut hosts: BTreeMap<String, Value> = BTreeMap::new();
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            frame = socket.next() => {
                let Some(frame) = frame else { anyhow::bail!("the control plane closed the live stream") };
                let Message::Text(body) = frame? else { continue };
                let frame: Value = serde_json::from_str(&body)?;
                if format == Format::Json {
                    println!("{frame}");
                    continue;
                }
                hosts.insert(text(&frame, "host"), frame);
                // Hosts report one after another; drawing once a second keeps the screen calm.
                if last_draw.elapsed() >= Duration::from_millis(900) {
                    last_draw = Instant::now();
                    draw(&hosts, args.containers)?;
                }
            }
        }
    }
    Ok(())
}

fn draw(hosts: &BTreeMap<String, Value>, max_containers: usize) -> Result<()> {
    use comfy_table::{presets, Table};
    let mut host_table = Table::new();
    host_table.load_preset(presets::NOTHING).set_header(["HOST", "CPU %", "LOAD", "MEMORY", "NET RX/s", "NET TX/s", "DISK USED"]);
    for (name, h) in hosts {
        host_table.add_row([
            name.clone(),
            format!("{:.1}", h["cpu_percent"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", h["load1"].as_f64().unwrap_or(0.0)),
            format!("{} / {}", human(h["memory_used_bytes"].as_f64().unwrap_or(0.0)), human(h["memory_total_bytes"].as_f64().unwrap_or(0.0))),
            human(h["network_rx_bytes_per_second"].as_f64().unwrap_or(0.0)),
            human(h["network_tx_bytes_per_second"].as_f64().unwrap_or(0.0)),
            human(h["disk_used_bytes"].as_f64().unwrap_or(0.0)),
        ]);
    }
    let mut containers: Vec<&Value> = hosts.values().flat_map(|h| h["containers"].as_array().into_iter().flatten()).collect();
    containers.sort_by(|a, b| b["cpu_percent"].as_f64().unwrap_or(0.0).total_cmp(&a["cpu_percent"].as_f64().unwrap_or(0.0)));
    let mut container_table = Table::new();
    container_table.load_preset(presets::NOTHING).set_header(["CONTAINER", "HOST", "CPU %", "MEMORY", "NET RX/s", "NET TX/s", "READ/s", "WRITE/s"]);
    for c in containers.iter().take(max_containers) {
        container_table.add_row([
            text(c, "name"),
            text(c, "host"),
            format!("{:.1}", c["cpu_percent"].as_f64().unwrap_or(0.0)),
            human(c["memory_bytes"].as_f64().unwrap_or(0.0)),
            human(c["network_rx_bytes_per_second"].as_f64().unwrap_or(0.0)),
            human(c["network_tx_bytes_per_second"].as_f64().unwrap_or(0.0)),
            human(c["io_read_bytes_per_second"].as_f64().unwrap_or(0.0)),
            human(c["io_write_bytes_per_second"].as_f64().unwrap_or(0.0)),
        ]);
    }
    let mut out = std::io::stdout().lock();
    // Home and clear, then the tables: the screen is redrawn in place.
    write!(out, "\x1b[H\x1b[2J{host_table}\n\n{container_table}\n\n{} containers; ctrl-c to quit\n", containers.len())?;
    out.flush()?;
    Ok(())
}

/// Bytes in the largest unit that keeps the number readable.
pub(crate) fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `HH:MM:SS` (UTC) of a Unix time.
fn clock(ts: i64) -> String {
    let day = ts.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(human(512.0), "512 B");
        assert_eq!(human(64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(clock(3_661), "01:01:01");
    }
}
