//! Resource usage of the host and of each running managed container, sampled every few seconds.
//!
//! The agent runs on every host, so its own cost matters more than anything it measures: host
//! figures come from sysinfo (CPU, memory) and a few small /proc files read into one reused
//! buffer (load, network, disks); container figures from the engine's one-shot stats call
//! (`stream=false&one-shot=true`), which answers at once instead of waiting a second for a second
//! sample. CPU shares are then computed from the previous sample the agent keeps per container.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{ListContainersOptionsBuilder, StatsOptionsBuilder};
use corral_proto::labels;
use corral_proto::stats::{ContainerStats, HostStats, StatsReport, DEFAULT_STATS_INTERVAL_MS, MIN_STATS_INTERVAL_MS};
use futures_util::StreamExt;
use sysinfo::{CpuRefreshKind, Disk, Disks, MemoryRefreshKind, RefreshKind, System};
use tokio::sync::{mpsc, watch};

use crate::engine::Engine;

/// Stats calls in flight at once: enough to sample 50 containers well within a second, few
/// enough that the engine and the agent stay calm.
const PARALLEL_STATS: usize = 4;
/// A container whose stats take longer is skipped in this report rather than delaying it.
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// The CPU counters of a container's previous sample.
#[derive(Clone, Copy)]
struct CpuSample {
    total_ns: u64,
    system_ns: u64,
}

/// Everything kept between samples, so a sample allocates as little as it can.
pub struct Collector {
    engine: Engine,
    system: System,
    root_disk: Option<Disk>,
    /// Whole disks, named as in /proc/diskstats.
    whole_disks: Vec<String>,
    buffer: String,
    previous_cpu: HashMap<String, CpuSample>,
}

impl Collector {
    pub fn new(engine: Engine) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_cpu_usage()).with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let root_disk = Vec::<Disk>::from(Disks::new_with_refreshed_list()).into_iter().find(|d| d.mount_point() == Path::new("/"));
        Collector { engine, system, root_disk, whole_disks: whole_disks(), buffer: String::with_capacity(4096), previous_cpu: HashMap::new() }
    }

    /// One report: the host, then every running managed container.
    pub async fn sample(&mut self) -> StatsReport {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let host = self.host();
        let containers = self.containers(host.memory_total_bytes).await;
        StatsReport { at_ms, host, containers, tunnel: None }
    }

    fn host(&mut self) -> HostStats {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let load = System::load_average();
        let mut host = HostStats {
            cpu_percent: self.system.global_cpu_usage(),
            cpu_core_percent: self.system.cpus().iter().map(|c| c.cpu_usage()).collect(),
            load1: load.one as f32,
            load5: load.five as f32,
            load15: load.fifteen as f32,
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            ..Default::default()
        };
        if let Some(disk) = &mut self.root_disk {
            disk.refresh();
            host.disk_total_bytes = disk.total_space();
            host.disk_used_bytes = disk.total_space().saturating_sub(disk.available_space());
        }
        if read_into("/proc/net/dev", &mut self.buffer) {
            (host.network_rx_bytes, host.network_tx_bytes) = net_dev_totals(&self.buffer);
        }
        if read_into("/proc/diskstats", &mut self.buffer) {
            (host.disk_read_bytes, host.disk_write_bytes) = diskstats_totals(&self.buffer, &self.whole_disks);
        }
        host
    }

    async fn containers(&mut self, host_memory: u64) -> Vec<ContainerStats> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{}=true", labels::MANAGED)]), ("status".to_string(), vec!["running".to_string()])]);
        let options = ListContainersOptionsBuilder::default().filters(&filters).build();
        let list = match self.engine.docker().list_containers(Some(options)).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %crate::error::describe(&e), "cannot list containers for stats");
                return Vec::new();
            }
        };
        let docker = self.engine.docker().clone();
        let raw: Vec<_> = futures_util::stream::iter(list)
            .map(|summary| {
                let docker = docker.clone();
                async move {
                    let id = summary.id.clone()?;
                    let name = summary.names.as_ref()?.first()?.trim_start_matches('/').to_string();
                    let options = StatsOptionsBuilder::new().stream(false).one_shot(true).build();
                    let mut stream = docker.stats(&id, Some(options));
                    let stats = tokio::time::timeout(STATS_TIMEOUT, stream.next()).await.ok()??.ok()?;
                    let label = |key: &str| summary.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
                    Some((id, name, label(labels::STACK), label(labels::SERVICE), stats))
                }
            })
            .buffer_unordered(PARALLEL_STATS)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        let mut seen = HashMap::with_capacity(raw.len());
        let out = raw
            .into_iter()
            .map(|(id, name, stack, service, stats)| {
                let cpu = cpu_sample(&stats);
                let previous = cpu.and_then(|now| self.previous_cpu.get(&id).map(|before| (*before, now)));
                if let Some(now) = cpu {
                    seen.insert(id, now);
                }
                container_stats(name, stack, service, &stats, previous, host_memory)
            })
            .collect();
        // Containers that went away are forgotten; nothing grows with churn.
        self.previous_cpu = seen;
        out
    }
}

/// Samples every `interval` (changed by the control plane) and sends reports to `out` until the
/// receiver goes away.
pub async fn run(engine: Engine, mut interval: watch::Receiver<u64>, out: mpsc::Sender<StatsReport>) {
    let mut collector = Collector::new(engine);
    let period = |ms: u64| Duration::from_millis(ms.max(MIN_STATS_INTERVAL_MS));
    let mut ticker = tokio::time::interval(period(*interval.borrow_and_update()));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let report = collector.sample().await;
                if out.send(report).await.is_err() {
                    return;
                }
            }
            changed = interval.changed() => {
                if changed.is_err() {
                    return;
                }
                ticker = tokio::time::interval(period(*interval.borrow_and_update()));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        }
    }
}

/// The interval the agent starts with, before the control plane says otherwise.
pub fn default_interval() -> (watch::Sender<u64>, watch::Receiver<u64>) {
    watch::channel(DEFAULT_STATS_INTERVAL_MS)
}

fn cpu_sample(stats: &ContainerStatsResponse) -> Option<CpuSample> {
    let cpu = stats.cpu_stats.as_ref()?;
    Some(CpuSample { total_ns: cpu.cpu_usage.as_ref()?.total_usage?, system_ns: cpu.system_cpu_usage? })
}

/// `docker stats`' arithmetic: the container's share of the host's CPU time between two
/// samples, times the number of cores, so one busy core is 100.
fn container_stats(
    name: String,
    stack: String,
    service: String,
    stats: &ContainerStatsResponse,
    cpu: Option<(CpuSample, CpuSample)>,
    host_memory: u64,
) -> ContainerStats {
    let online = stats.cpu_stats.as_ref().and_then(|c| c.online_cpus).filter(|n| *n > 0).unwrap_or(1) as f64;
    let cpu_percent = match cpu {
        Some((before, now)) if now.system_ns > before.system_ns && now.total_ns >= before.total_ns => {
            ((now.total_ns - before.total_ns) as f64 / (now.system_ns - before.system_ns) as f64 * online * 100.0) as f32
        }
        _ => 0.0,
    };
    let memory = stats.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    // cgroup v2 names it inactive_file, v1 total_inactive_file; `docker stats` subtracts it too.
    let cache = memory.and_then(|m| m.stats.as_ref()).and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file")).copied()).unwrap_or(0);
    let limit = memory.and_then(|m| m.limit).filter(|l| *l > 0 && *l < u64::MAX / 2).unwrap_or(host_memory);
    let (mut rx, mut tx) = (0, 0);
    for net in stats.networks.iter().flat_map(|n| n.values()) {
        rx += net.rx_bytes.unwrap_or(0);
        tx += net.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0, 0);
    for entry in stats.blkio_stats.iter().flat_map(|b| b.io_service_bytes_recursive.iter().flatten()) {
        match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += entry.value.unwrap_or(0),
            Some("write") => write += entry.value.unwrap_or(0),
            _ => {}
        }
    }
    ContainerStats {
        name,
        stack,
        service,
        cpu_percent,
        memory_bytes: usage.saturating_sub(cache),
        memory_limit_bytes: limit,
        network_rx_bytes: rx,
        network_tx_bytes: tx,
        block_read_bytes: read,
        block_write_bytes: write,
    }
}

/// Reads a small file into the reused buffer; `false` if it cannot be read (not Linux, say).
fn read_into(path: &str, buffer: &mut String) -> bool {
    use std::io::Read;
    buffer.clear();
    std::fs::File::open(path).and_then(|mut f| f.read_to_string(buffer)).is_ok()
}

/// Received and sent bytes over every interface but loopback, from /proc/net/dev.
fn net_dev_totals(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else { continue };
        if iface.trim() == "lo" {
            continue;
        }
        let mut fields = rest.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
        totals.0 += fields.next().unwrap_or(0);
        totals.1 += fields.nth(7).unwrap_or(0);
    }
    totals
}

/// Bytes read and written by the whole disks named in `disks`, from /proc/diskstats (sectors
/// there are always 512 bytes).
fn diskstats_totals(text: &str, disks: &[String]) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.nth(2) else { continue };
        if !disks.iter().any(|d| d == name) {
            continue;
        }
        let mut numbers = fields.map(|f| f.parse::<u64>().unwrap_or(0));
        totals.0 += numbers.nth(2).unwrap_or(0) * 512;
        totals.1 += numbers.nth(3).unwrap_or(0) * 512;
    }
    totals
}

/// Block devices that are whole disks: /sys/block lists them (partitions are not there), minus
/// loop, RAM and device-mapper devices whose I/O is counted on the disks beneath them.
fn whole_disks() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| !["loop", "ram", "dm-", "zram", "sr"].iter().any(|p| n.starts_with(p))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerNetworkStats};

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 10 0 0 0 0 0 0 3000 20 0 0 0 0 0 0\n  eth1: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(net_dev_totals(text), (2005, 3007));
    }

    #[test]
    fn diskstats_counts_whole_disks_only() {
        let text = "   8       0 sda 100 0 8 0 50 0 16 0 0 0 0\n   8       1 sda1 100 0 8 0 50 0 16 0 0 0 0\n   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n";
        assert_eq!(diskstats_totals(text, &["sda".to_string()]), (8 * 512, 16 * 512));
    }

    #[test]
    fn container_figures_follow_docker_stats() {
        let stats = ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage { total_usage: Some(3_000), ..Default::default() }),
                system_cpu_usage: Some(20_000),
                online_cpus: Some(2),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(100 << 20),
                limit: Some(1 << 30),
                stats: Some(HashMap::from([("inactive_file".to_string(), 36 << 20)])),
                ..Default::default()
            }),
            networks: Some(HashMap::from([
                ("eth0".to_string(), ContainerNetworkStats { rx_bytes: Some(10), tx_bytes: Some(20), ..Default::default() }),
                ("eth1".to_string(), ContainerNetworkStats { rx_bytes: Some(1), tx_bytes: Some(2), ..Default::default() }),
            ])),
            blkio_stats: Some(ContainerBlkioStats {
                io_service_bytes_recursive: Some(vec![
                    ContainerBlkioStatEntry { op: Some("read".into()), value: Some(4096), ..Default::default() },
                    ContainerBlkioStatEntry { op: Some("write".into()), value: Some(8192), ..Default::default() },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        // 2000 ns of container time in 10000 ns of all-core time on 2 cores: 40 % of one core.
        let before = CpuSample { total_ns: 1_000, system_ns: 10_000 };
        let now = cpu_sample(&stats).unwrap();
        let c = container_stats("S-a-1".into(), "S".into(), "a".into(), &stats, Some((before, now)), 8 << 30);
        assert!((c.cpu_percent - 40.0).abs() < 0.01, "{}", c.cpu_percent);
        assert_eq!((c.memory_bytes, c.memory_limit_bytes), (64 << 20, 1 << 30));
        assert_eq!((c.network_rx_bytes, c.network_tx_bytes, c.block_read_bytes, c.block_write_bytes), (11, 22, 4096, 8192));
        let first = container_stats("S-a-1".into(), "S".into(), "a".into(), &stats, None, 8 << 30);
        assert_eq!(first.cpu_percent, 0.0, "no CPU share without a previous sample");
    }
}
