//! Monitoring: agents' stats reports in, history and live figures out.
//!
//! - [`Metrics::ingest`]: turns a report's counters into rates against the host's previous
//!   report, keeps the latest figures in memory (for the dashboard, the live stream and
//!   `/metrics`) and stores one raw sample per series every 5 s at most, whatever the agents'
//!   interval, so someone watching live does not grow the history.
//! - [`run_rollups`]: the background task that rolls raw samples up into minutes and hours and
//!   prunes what is too old.
//! - [`render_prometheus`]: `GET /metrics` in the Prometheus text format, written by hand: a
//!   few dozen families of gauges, counters and two histograms do not need a registry.
//! - [`API_LATENCY`], [`RECONCILE_LATENCY`]: the control plane's own latency histograms.

use crate::hub::Hub;
use corral_proto::stats::{ContainerStats, HostStats, StatsReport, DEFAULT_STATS_INTERVAL_MS, LIVE_STATS_INTERVAL_MS, MAX_CPU_CORES};
use corral_proto::ServerMessage;
use corral_store::metrics::{Sample, SeriesKey, SeriesKind};
use corral_store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Raw samples closer together than this are not stored (live viewing makes agents report every second).
const STORE_EVERY_MS: u64 = DEFAULT_STATS_INTERVAL_MS - 500;
/// How often history is rolled up and pruned.
const ROLLUP_EVERY: Duration = Duration::from_secs(60);

/// Bytes per second between two readings of a counter; a counter that went back (a container
/// restarted, a host rebooted) starts over, so it gives no rate rather than a negative one.
fn rate(now: u64, before: u64, ms: u64) -> u64 {
    if ms == 0 || now < before {
        0
    } else {
        (now - before).saturating_mul(1000) / ms
    }
}

/// Rates derived from two consecutive reports.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Rates {
    pub network_rx_bytes_per_second: u64,
    pub network_tx_bytes_per_second: u64,
    /// Disk I/O for a host, block I/O for a container.
    pub io_read_bytes_per_second: u64,
    pub io_write_bytes_per_second: u64,
}

/// A host's latest figures.
#[derive(Debug, Clone, Serialize)]
pub struct HostNow {
    pub host: String,
    pub at_ms: u64,
    #[serde(flatten)]
    pub stats: HostStats,
    #[serde(flatten)]
    pub rates: Rates,
}

/// A container's latest figures.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerNow {
    pub host: String,
    #[serde(flatten)]
    pub stats: ContainerStats,
    #[serde(flatten)]
    pub rates: Rates,
}

/// One live frame: a host's report with rates, as sent on `/v1/stats/live`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveFrame {
    #[serde(skip)]
    pub environment: String,
    /// Who may see the frame is decided by the environment's id, which a rename does not change.
    #[serde(skip)]
    pub environment_id: i64,
    #[serde(flatten)]
    pub host: HostNow,
    pub containers: Vec<ContainerNow>,
}

#[derive(Debug)]
struct Latest {
    environment: String,
    frame: Arc<LiveFrame>,
    /// Counters of the previous report, for rates: host (rx, tx, read, write), then containers by name.
    host_counters: [u64; 4],
    container_counters: HashMap<String, [u64; 4]>,
    stored_at_ms: u64,
}

/// Series ids by (kind, environment, name), with the stack and service each was stored under.
type SeriesCache = HashMap<(SeriesKind, i64, String), (i64, String, String)>;

/// Everything monitoring keeps in memory; one per control plane.
#[derive(Debug)]
pub struct Metrics {
    latest: Mutex<HashMap<String, Latest>>,
    series: Mutex<SeriesCache>,
    live: broadcast::Sender<Arc<LiveFrame>>,
    watchers: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { latest: Mutex::default(), series: Mutex::default(), live: broadcast::channel(64).0, watchers: AtomicUsize::new(0) }
    }
}

/// Held while someone watches live; agents report every second until the last one goes.
pub struct LiveWatch {
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    pub frames: broadcast::Receiver<Arc<LiveFrame>>,
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        if self.metrics.watchers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.hub.send_to_all(ServerMessage::StatsInterval { ms: DEFAULT_STATS_INTERVAL_MS });
        }
    }
}

fn counters_of_host(h: &HostStats) -> [u64; 4] {
    [h.network_rx_bytes, h.network_tx_bytes, h.disk_read_bytes, h.disk_write_bytes]
}

fn counters_of_container(c: &ContainerStats) -> [u64; 4] {
    [c.network_rx_bytes, c.network_tx_bytes, c.block_read_bytes, c.block_write_bytes]
}

fn rates(now: [u64; 4], before: Option<[u64; 4]>, ms: u64) -> Rates {
    let Some(before) = before else { return Rates::default() };
    Rates {
        network_rx_bytes_per_second: rate(now[0], before[0], ms),
        network_tx_bytes_per_second: rate(now[1], before[1], ms),
        io_read_bytes_per_second: rate(now[2], before[2], ms),
        io_write_bytes_per_second: rate(now[3], before[3], ms),
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn hundredths(v: f32) -> i64 {
    if v.is_finite() {
        (v as f64 * 100.0).round() as i64
    } else {
        0
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A report cut down to what its host has a claim to: the containers the host's agent last
/// reported running on its engine (at most `MAX_OBSERVED_CONTAINERS`), each under the stack and
/// service its own labels name, and at most [`MAX_CPU_CORES`] per-core figures. Anything else
/// would add history series and figures for containers that exist nowhere.
pub fn limit_report(mut report: StatsReport, observed: &HashMap<String, (String, String)>) -> StatsReport {
    report.host.cpu_core_percent.truncate(MAX_CPU_CORES);
    let mut seen = std::collections::HashSet::new();
    report.containers.retain_mut(|c| match observed.get(&c.name) {
        Some((stack, service)) if seen.insert(c.name.clone()) => {
            c.stack.clone_from(stack);
            c.service.clone_from(service);
            true
        }
        _ => false,
    });
    report
}

impl Metrics {
    /// The interval agents should report at right now.
    pub fn interval_ms(&self) -> u64 {
        if self.watchers.load(Ordering::SeqCst) > 0 {
            LIVE_STATS_INTERVAL_MS
        } else {
            DEFAULT_STATS_INTERVAL_MS
        }
    }

    /// Starts watching live: every agent switches to 1 s reports.
    pub fn watch(self: &Arc<Self>, hub: &Arc<Hub>) -> LiveWatch {
        let frames = self.live.subscribe();
        if self.watchers.fetch_add(1, Ordering::SeqCst) == 0 {
            hub.send_to_all(ServerMessage::StatsInterval { ms: LIVE_STATS_INTERVAL_MS });
        }
        LiveWatch { metrics: Arc::clone(self), hub: Arc::clone(hub), frames }
    }

    /// The host's agent went away: its figures are no longer current.
    pub fn forget_host(&self, host_id: &str) {
        self.latest.lock().expect("metrics lock").remove(host_id);
    }

    /// The latest frame of every host in `environment`.
    pub fn latest(&self, environment: &str) -> Vec<Arc<LiveFrame>> {
        let latest = self.latest.lock().expect("metrics lock");
        let mut frames: Vec<_> = latest.values().filter(|l| l.environment == environment).map(|l| Arc::clone(&l.frame)).collect();
        frames.sort_by(|a, b| a.host.host.cmp(&b.host.host));
        frames
    }

    /// Takes one agent report: rates, latest figures, live frame, and a raw sample every 5 s.
    pub async fn ingest(&self, store: &Store, host_id: &str, environment: (i64, &str), host_name: &str, report: StatsReport) -> Result<(), StoreError> {
        let (frame, store_now) = {
            let mut latest = self.latest.lock().expect("metrics lock");
            let previous = latest.get(host_id);
            let ms = previous.map_or(0, |p| report.at_ms.saturating_sub(p.frame.host.at_ms));
            let host_counters = counters_of_host(&report.host);
            let host_rates = rates(host_counters, previous.map(|p| p.host_counters), ms);
            let mut container_counters = HashMap::with_capacity(report.containers.len());
            let containers: Vec<ContainerNow> = report
                .containers
                .into_iter()
                .map(|c| {
                    let counters = counters_of_container(&c);
                    let before = previous.and_then(|p| p.container_counters.get(&c.name).copied());
                    container_counters.insert(c.name.clone(), counters);
                    ContainerNow { host: host_name.to_string(), rates: rates(counters, before, ms), stats: c }
                })
                .collect();
            let now = now_ms();
            let stored_at_ms = previous.map_or(0, |p| p.stored_at_ms);
            let store_now = now.saturating_sub(stored_at_ms) >= STORE_EVERY_MS;
            let frame = Arc::new(LiveFrame {
                environment: environment.1.to_string(),
                environment_id: environment.0,
                host: HostNow { host: host_name.to_string(), at_ms: report.at_ms, stats: report.host, rates: host_rates },
                containers,
            });
            latest.insert(
                host_id.to_string(),
                Latest {
                    environment: environment.1.to_string(),
                    frame: Arc::clone(&frame),
                    host_counters,
                    container_counters,
                    stored_at_ms: if store_now { now } else { stored_at_ms },
                },
            );
            (frame, store_now)
        };
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(Arc::clone(&frame));
        }
        if store_now {
            self.store_samples(store, environment.0, &frame).await?;
        }
        Ok(())
    }

    async fn store_samples(&self, store: &Store, environment_id: i64, frame: &LiveFrame) -> Result<(), StoreError> {
        let ts = (now_ms() / 1000) as i64;
        let h = &frame.host;
        let host_key = SeriesKey { kind: SeriesKind::Host, environment_id, name: &h.host, stack: "", service: "" };
        let mut samples = Vec::with_capacity(frame.containers.len() + 1);
        samples.push((
            self.series_id(store, &host_key).await?,
            Sample {
                ts,
                cpu: hundredths(h.stats.cpu_percent),
                memory: clamp(h.stats.memory_used_bytes),
                memory_limit: clamp(h.stats.memory_total_bytes),
                net_rx: clamp(h.rates.network_rx_bytes_per_second),
                net_tx: clamp(h.rates.network_tx_bytes_per_second),
                block_read: clamp(h.rates.io_read_bytes_per_second),
                block_write: clamp(h.rates.io_write_bytes_per_second),
                disk_used: clamp(h.stats.disk_used_bytes),
                disk_total: clamp(h.stats.disk_total_bytes),
                load1: hundredths(h.stats.load1),
            },
        ));
        for c in &frame.containers {
            let key = SeriesKey { kind: SeriesKind::Container, environment_id, name: &c.stats.name, stack: &c.stats.stack, service: &c.stats.service };
            samples.push((
                self.series_id(store, &key).await?,
                Sample {
                    ts,
                    cpu: hundredths(c.stats.cpu_percent),
                    memory: clamp(c.stats.memory_bytes),
                    memory_limit: clamp(c.stats.memory_limit_bytes),
                    net_rx: clamp(c.rates.network_rx_bytes_per_second),
                    net_tx: clamp(c.rates.network_tx_bytes_per_second),
                    block_read: clamp(c.rates.io_read_bytes_per_second),
                    block_write: clamp(c.rates.io_write_bytes_per_second),
                    ..Default::default()
                },
            ));
        }
        store.insert_metric_samples(&samples).await
    }

    /// Series ids are cached: a report of 50 containers costs one insert transaction, not 50 look-ups.
    async fn series_id(&self, store: &Store, key: &SeriesKey<'_>) -> Result<i64, StoreError> {
        let cache_key = (key.kind, key.environment_id, key.name.to_string());
        if let Some((id, stack, service)) = self.series.lock().expect("metrics lock").get(&cache_key) {
            if stack == key.stack && service == key.service {
                return Ok(*id);
            }
        }
        let id = store.metric_series_id(key).await?;
        self.series.lock().expect("metrics lock").insert(cache_key, (id, key.stack.to_string(), key.service.to_string()));
        Ok(id)
    }

    /// Pruning may delete a series, and a restore replace them all; the cache must not hand out
    /// their ids afterwards.
    pub(crate) fn clear_series_cache(&self) {
        self.series.lock().expect("metrics lock").clear();
    }
}

/// Rolls history up and prunes it every minute until shutdown.
pub async fn run_rollups(store: Store, metrics: Arc<Metrics>, mut shutdown: broadcast::Receiver<()>) {
    let mut tick = tokio::time::interval(ROLLUP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = (now_ms() / 1000) as i64;
                match store.roll_up_metrics(now).await {
                    Ok(()) => metrics.clear_series_cache(),
                    Err(e) => tracing::warn!(error = %e, "rolling up metrics failed; retrying in a minute"),
                }
            }
            _ = shutdown.recv() => return,
        }
    }
}

/// Times every API request into [`API_LATENCY`]; WebSockets (live streams, agents) are
/// long-lived connections, not requests, and are left out.
pub async fn track_latency(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let websocket = request.headers().contains_key(axum::http::header::UPGRADE);
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if !websocket {
        API_LATENCY.observe(started.elapsed());
    }
    response
}

/// A latency histogram with fixed buckets, lock-free so the API middleware costs nothing.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: [AtomicU64; 16],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Histogram {
    const fn new(bounds: &'static [f64]) -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        Histogram { bounds, counts: [ZERO; 16], sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, help, "histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Time to answer API requests (all endpoints but the long-lived WebSockets).
pub static API_LATENCY: Histogram = Histogram::new(LATENCY_BOUNDS);
/// Time of one reconcile pass over all environments.
pub static RECONCILE_LATENCY: Histogram = Histogram::new(LATENCY_BOUNDS);

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values may hold any text; the format wants `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let value = if value.is_finite() { value } else { 0.0 };
    let _ = writeln!(out, " {value}");
}

type HostFigure = (&'static str, &'static str, &'static str, fn(&HostNow) -> f64);
type ContainerFigure = (&'static str, &'static str, &'static str, fn(&ContainerNow) -> f64);

const HOST_FIGURES: &[HostFigure] = &[
    ("corral_host_cpu_ratio", "gauge", "Busy share of all the host's cores, 0 to 1.", |h| h.stats.cpu_percent as f64 / 100.0),
    ("corral_host_load1", "gauge", "Load average over 1 minute.", |h| h.stats.load1 as f64),
    ("corral_host_load5", "gauge", "Load average over 5 minutes.", |h| h.stats.load5 as f64),
    ("corral_host_load15", "gauge", "Load average over 15 minutes.", |h| h.stats.load15 as f64),
    ("corral_host_memory_used_bytes", "gauge", "Memory in use.", |h| h.stats.memory_used_bytes as f64),
    ("corral_host_memory_total_bytes", "gauge", "Memory installed.", |h| h.stats.memory_total_bytes as f64),
    ("corral_host_network_receive_bytes_total", "counter", "Bytes received on all interfaces but loopback.", |h| h.stats.network_rx_bytes as f64),
    ("corral_host_network_transmit_bytes_total", "counter", "Bytes sent on all interfaces but loopback.", |h| h.stats.network_tx_bytes as f64),
    ("corral_host_disk_used_bytes", "gauge", "Space used on the root file system.", |h| h.stats.disk_used_bytes as f64),
    ("corral_host_disk_total_bytes", "gauge", "Size of the root file system.", |h| h.stats.disk_total_bytes as f64),
    ("corral_host_disk_read_bytes_total", "counter", "Bytes read from the host's disks.", |h| h.stats.disk_read_bytes as f64),
    ("corral_host_disk_written_bytes_total", "counter", "Bytes written to the host's disks.", |h| h.stats.disk_write_bytes as f64),
];

const CONTAINER_FIGURES: &[ContainerFigure] = &[
    ("corral_container_cpu_cores", "gauge", "CPU in use, in cores (1 is one full core).", |c| c.stats.cpu_percent as f64 / 100.0),
    ("corral_container_memory_bytes", "gauge", "Memory in use, without reclaimable page cache.", |c| c.stats.memory_bytes as f64),
    ("corral_container_memory_limit_bytes", "gauge", "Memory limit (the host's memory when unlimited).", |c| c.stats.memory_limit_bytes as f64),
    ("corral_container_network_receive_bytes_total", "counter", "Bytes received.", |c| c.stats.network_rx_bytes as f64),
    ("corral_container_network_transmit_bytes_total", "counter", "Bytes sent.", |c| c.stats.network_tx_bytes as f64),
    ("corral_container_block_read_bytes_total", "counter", "Bytes read from block devices.", |c| c.stats.block_read_bytes as f64),
    ("corral_container_block_written_bytes_total", "counter", "Bytes written to block devices.", |c| c.stats.block_write_bytes as f64),
];

/// Totals of a service's running containers.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceNow {
    pub stack: String,
    pub service: String,
    pub containers: usize,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    #[serde(flatten)]
    pub rates: Rates,
}

/// Per-service totals over the given hosts' latest frames, ordered by stack and service.
pub fn service_totals(frames: &[Arc<LiveFrame>]) -> Vec<ServiceNow> {
    let mut by_service: std::collections::BTreeMap<(String, String), ServiceNow> = Default::default();
    for c in frames.iter().flat_map(|f| f.containers.iter()).filter(|c| !c.stats.service.is_empty()) {
        let s = by_service.entry((c.stats.stack.clone(), c.stats.service.clone())).or_insert_with(|| ServiceNow {
            stack: c.stats.stack.clone(),
            service: c.stats.service.clone(),
            ..Default::default()
        });
        s.containers += 1;
        s.cpu_percent += c.stats.cpu_percent as f64;
        s.memory_bytes += c.stats.memory_bytes;
        s.rates.network_rx_bytes_per_second += c.rates.network_rx_bytes_per_second;
        s.rates.network_tx_bytes_per_second += c.rates.network_tx_bytes_per_second;
        s.rates.io_read_bytes_per_second += c.rates.io_read_bytes_per_second;
        s.rates.io_write_bytes_per_second += c.rates.io_write_bytes_per_second;
    }
    by_service.into_values().collect()
}

/// The whole `/metrics` page: the hosts, containers and services of every environment
/// `visible` admits (by id), then the control plane's own figures. Families are written whole, each once, as the format requires.
pub fn render_prometheus(metrics: &Metrics, agents_connected: usize, visible: impl Fn(i64) -> bool) -> String {
    let frames: Vec<Arc<LiveFrame>> = {
        let latest = metrics.latest.lock().expect("metrics lock");
        let mut frames: Vec<_> = latest.values().filter(|l| visible(l.frame.environment_id)).map(|l| Arc::clone(&l.frame)).collect();
        frames.sort_by(|a, b| (&a.environment, &a.host.host).cmp(&(&b.environment, &b.host.host)));
        frames
    };
    let mut out = String::with_capacity(4096 + frames.iter().map(|f| f.containers.len() * 1500).sum::<usize>());
    for (name, kind, help, value) in HOST_FIGURES {
        family(&mut out, name, help, kind);
        for f in &frames {
            sample(&mut out, name, &[("environment", &f.environment), ("host", &f.host.host)], value(&f.host));
        }
    }
    family(&mut out, "corral_host_cpu_core_ratio", "Busy share of each core, 0 to 1.", "gauge");
    for f in &frames {
        for (i, core) in f.host.stats.cpu_core_percent.iter().enumerate() {
            let core_label = i.to_string();
            sample(
                &mut out,
                "corral_host_cpu_core_ratio",
                &[("environment", &f.environment), ("host", &f.host.host), ("core", &core_label)],
                *core as f64 / 100.0,
            );
        }
    }
    for (name, kind, help, value) in CONTAINER_FIGURES {
        family(&mut out, name, help, kind);
        for f in &frames {
            for c in &f.containers {
                let labels = [
                    ("environment", f.environment.as_str()),
                    ("host", &f.host.host),
                    ("container", &c.stats.name),
                    ("stack", &c.stats.stack),
                    ("service", &c.stats.service),
                ];
                sample(&mut out, name, &labels, value(c));
            }
        }
    }
    let mut services: Vec<(String, ServiceNow)> = Vec::new();
    let mut environments: Vec<&str> = frames.iter().map(|f| f.environment.as_str()).collect();
    environments.dedup();
    for env in environments {
        let env_frames: Vec<Arc<LiveFrame>> = frames.iter().filter(|f| f.environment == env).cloned().collect();
        services.extend(service_totals(&env_frames).into_iter().map(|s| (env.to_string(), s)));
    }
    type ServiceFigure = (&'static str, &'static str, fn(&ServiceNow) -> f64);
    let service_figures: [ServiceFigure; 3] = [
        ("corral_service_containers", "Running containers reporting stats.", |s| s.containers as f64),
        ("corral_service_cpu_cores", "CPU in use by all its containers, in cores.", |s| s.cpu_percent / 100.0),
        ("corral_service_memory_bytes", "Memory in use by all its containers.", |s| s.memory_bytes as f64),
    ];
    for (name, help, value) in service_figures {
        family(&mut out, name, help, "gauge");
        for (env, s) in &services {
            sample(&mut out, name, &[("environment", env), ("stack", &s.stack), ("service", &s.service)], value(s));
        }
    }
    family(&mut out, "corral_agents_connected", "Agents connected to this control plane.", "gauge");
    sample(&mut out, "corral_agents_connected", &[], agents_connected as f64);
    RECONCILE_LATENCY.render(&mut out, "corral_reconcile_duration_seconds", "Time of one reconcile pass.");
    API_LATENCY.render(&mut out, "corral_api_request_duration_seconds", "Time to answer an API request.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::stats::ContainerStats;

    fn report(at_ms: u64, rx: u64) -> StatsReport {
        StatsReport {
            at_ms,
            host: HostStats { cpu_percent: 50.0, cpu_core_percent: vec![40.0, 60.0], network_rx_bytes: rx, ..Default::default() },
            containers: vec![ContainerStats {
                name: "S-web-1".into(),
                stack: "S".into(),
                service: "web\"quoted\"".into(),
                cpu_percent: 95.0,
                network_rx_bytes: rx,
                ..Default::default()
            }],
            tunnel: None,
        }
    }

    #[test]
    fn reports_keep_only_observed_containers_within_limits() {
        let mut report = report(1000, 10);
        report.host.cpu_core_percent = vec![1.0; MAX_CPU_CORES * 10];
        let stats = |name: &str, stack: &str| ContainerStats { name: name.into(), stack: stack.into(), service: "x".into(), ..Default::default() };
        report.containers = vec![stats("S-web-1", "Other"), stats("ghost-1", "S"), stats("S-web-1", "S")];
        let observed: HashMap<String, (String, String)> = [("S-web-1".to_string(), ("S".to_string(), "web".to_string()))].into();
        let limited = limit_report(report, &observed);
        assert_eq!(limited.host.cpu_core_percent.len(), MAX_CPU_CORES);
        let kept: Vec<(&str, &str, &str)> = limited.containers.iter().map(|c| (c.name.as_str(), c.stack.as_str(), c.service.as_str())).collect();
        assert_eq!(kept, [("S-web-1", "S", "web")], "once, under the stack and service its labels name");
    }

    #[tokio::test]
    async fn rates_come_from_consecutive_reports_and_render_as_prometheus_text() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_sealed(&dir.path().join("db"), corral_store::SealingKey::generate()).await.unwrap();
        let env = store.ensure_default_environment().await.unwrap();
        let metrics = Metrics::default();
        metrics.ingest(&store, "h1", (env.id, &env.name), "host-1", report(1_000, 1_000)).await.unwrap();
        metrics.ingest(&store, "h1", (env.id, &env.name), "host-1", report(3_000, 5_000)).await.unwrap();
        let frames = metrics.latest(&env.name);
        assert_eq!(frames[0].host.rates.network_rx_bytes_per_second, 2_000);
        assert_eq!(frames[0].containers[0].rates.network_rx_bytes_per_second, 2_000);
        // A counter that went back (restart) gives no rate, never a huge or negative one.
        metrics.ingest(&store, "h1", (env.id, &env.name), "host-1", report(4_000, 10)).await.unwrap();
        assert_eq!(metrics.latest(&env.name)[0].host.rates.network_rx_bytes_per_second, 0);
        assert_eq!(store.metric_row_counts().await.unwrap()[0], 2, "one stored sample per series within 5 s");

        API_LATENCY.observe(Duration::from_millis(3));
        let text = render_prometheus(&metrics, 1, |_| true);
        assert!(
            text.contains(
                "corral_container_cpu_cores{environment=\"Default\",host=\"host-1\",container=\"S-web-1\",stack=\"S\",service=\"web\\\"quoted\\\"\"} 0.95"
            ),
            "{text}"
        );
        assert!(text.contains("corral_host_cpu_core_ratio{environment=\"Default\",host=\"host-1\",core=\"1\"} 0.6"), "{text}");
        assert!(text.contains("corral_agents_connected 1\n"), "{text}");
        assert!(text.contains("corral_api_request_duration_seconds_bucket{le=\"+Inf\"}"), "{text}");
        let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let mut names: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).map(|l| l.split(' ').nth(2).unwrap()).collect();
        names.dedup();
        assert_eq!(names.len(), families, "each family is written once");
        // A caller who may not see the environment gets the families without its series.
        let hidden = render_prometheus(&metrics, 0, |id| id != env.id);
        assert!(!hidden.contains("host-1") && !hidden.contains("S-web-1") && hidden.contains("# TYPE corral_container_cpu_cores gauge"), "{hidden}");
        metrics.forget_host("h1");
        assert!(metrics.latest(&env.name).is_empty());
    }
}
