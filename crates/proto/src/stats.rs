//! Resource usage an agent reports: its host's and each managed container's.
//!
//! Counters (network, block and disk I/O bytes) are totals since boot or container start, as the
//! kernel keeps them; the control plane turns consecutive reports into rates. Field names carry
//! their unit, so a number never has to be guessed.

use serde::{Deserialize, Serialize};

/// How often an agent reports when nobody watches live.
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 5_000;
/// How often an agent reports while someone watches live.
pub const LIVE_STATS_INTERVAL_MS: u64 = 1_000;
/// The shortest interval an agent accepts; anything lower is raised to it.
pub const MIN_STATS_INTERVAL_MS: u64 = 500;
/// The most per-core figures a report keeps; the rest are dropped.
pub const MAX_CPU_CORES: usize = 1024;

/// One report: the host and every running managed container, sampled together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// When the sample was taken, Unix milliseconds (agent clock).
    pub at_ms: u64,
    pub host: HostStats,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
    /// The host's managed-network tunnel, when the agent runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<crate::network::TunnelReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStats {
    /// Busy share of the whole host, 0–100 (all cores together).
    pub cpu_percent: f32,
    /// Busy share of each core, 0–100 each.
    #[serde(default)]
    pub cpu_core_percent: Vec<f32>,
    pub load1: f32,
    pub load5: f32,
    pub load15: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// All interfaces but loopback.
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    /// The file system holding `/`.
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    /// Whole disks (no partitions, loop or RAM devices).
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// The container's name, e.g. `WEB-Server-Nginx-cluster-3`.
    pub name: String,
    /// `STACK` and `SERVICE` from the container's labels, for per-service totals.
    #[serde(default)]
    pub stack: String,
    #[serde(default)]
    pub service: String,
    /// Like `docker stats`: 100 is one full core, so a container may show more than 100.
    pub cpu_percent: f32,
    /// Usage without the reclaimable page cache, as `docker stats` shows it.
    pub memory_bytes: u64,
    /// The container's memory limit, or the host's memory when it has none.
    pub memory_limit_bytes: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMessage, ServerMessage};

    #[test]
    fn stats_travel_as_tagged_json() {
        let report = AgentMessage::Stats(StatsReport {
            at_ms: 7,
            host: HostStats { cpu_percent: 12.5, cpu_core_percent: vec![10.0, 15.0], ..Default::default() },
            containers: vec![ContainerStats { name: "S-web-1".into(), cpu_percent: 99.0, memory_bytes: 1 << 20, ..Default::default() }],
            tunnel: Some(crate::network::TunnelReport {
                running: true,
                port: 51820,
                error: None,
                peers: vec![crate::network::PeerReport { host_id: "h2".into(), endpoint: "10.0.0.2:51820".into(), listed_secs: 3, ..Default::default() }],
            }),
        });
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.starts_with(r#"{"type":"stats","at_ms":7"#), "{json}");
        assert_eq!(serde_json::from_str::<AgentMessage>(&json).unwrap(), report);
        let interval: ServerMessage = serde_json::from_str(r#"{"type":"stats_interval","ms":1000}"#).unwrap();
        assert_eq!(interval, ServerMessage::StatsInterval { ms: 1000 });
    }
}
