//! Monitoring endpoints: history per host, container and service, the dashboard summary, the
//! live stream, and `GET /metrics` for Prometheus (each caller sees its own environments).
//!
//! History ranges take `from`, `to` (Unix seconds, RFC 3339, `now`, or an age like `-15m`,
//! `-2h`, `-7d`) and `step` (seconds, or `30s`, `5m`, `1h`). The finest table that still holds
//! `from` answers: raw samples for the last hour, minutes for the last day, hours beyond.

use super::{EnvQuery, Json, Path, Query};
use crate::access::{AccessWatch, Admission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::metrics::{service_totals, ContainerNow, HostNow, ServiceNow};
use crate::state::AppState;
use crate::validate;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use corral_store::metrics::{Resolution, Sample, SeriesKind};
use corral_store::Environment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::broadcast::error::RecvError;

/// At most this many points per series in one answer; a finer `step` is coarsened to fit.
const MAX_POINTS: i64 = 2_000;
/// Points a range is split into when no `step` is given.
const DEFAULT_POINTS: i64 = 360;

#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    pub env: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub step: Option<String>,
}

/// One point of history. Hosts also carry disk and load; services the number of containers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Unix seconds: the start of the point's step.
    pub ts: i64,
    /// Containers: 100 is one core. Hosts: share of all cores, 0–100.
    pub cpu_percent: f64,
    /// Hosts: memory in use; `memory_limit_bytes` is then the host's memory.
    pub memory_bytes: i64,
    pub memory_limit_bytes: i64,
    pub network_rx_bytes_per_second: i64,
    pub network_tx_bytes_per_second: i64,
    pub io_read_bytes_per_second: i64,
    pub io_write_bytes_per_second: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_used_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<usize>,
}

impl Point {
    fn from_sample(s: &Sample, kind: SeriesKind) -> Point {
        let host = kind == SeriesKind::Host;
        Point {
            ts: s.ts,
            cpu_percent: s.cpu as f64 / 100.0,
            memory_bytes: s.memory,
            memory_limit_bytes: s.memory_limit,
            network_rx_bytes_per_second: s.net_rx,
            network_tx_bytes_per_second: s.net_tx,
            io_read_bytes_per_second: s.block_read,
            io_write_bytes_per_second: s.block_write,
            disk_used_bytes: host.then_some(s.disk_used),
            disk_total_bytes: host.then_some(s.disk_total),
            load1: host.then_some(s.load1 as f64 / 100.0),
            containers: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct History {
    /// `host`, `container` or `service`.
    pub kind: &'static str,
    pub name: String,
    pub environment: String,
    pub from: i64,
    pub to: i64,
    pub step_seconds: i64,
    /// Which table answered: `raw`, `minute` or `hour`.
    pub resolution: Resolution,
    /// Ordered by time.
    pub points: Vec<Point>,
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `90`, `90s`, `15m`, `2h`, `7d` in seconds. A number too large for the clock saturates, so
/// the range checks that follow refuse it with the range they allow.
fn parse_duration(text: &str) -> Option<i64> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    if number.is_empty() {
        return None;
    }
    // Only digits: the one way to fail is to be too large.
    let n: i64 = number.parse().unwrap_or(i64::MAX);
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(n.saturating_mul(unit))
}

/// A point in time as the API takes it: Unix seconds, RFC 3339, `now`, or `-AGE`; always within
/// [`validate::MIN_TIME`]..=[`validate::MAX_TIME`], so the range arithmetic below cannot overflow.
fn parse_instant(text: &str, now: i64, field: &'static str) -> ApiResult<i64> {
    let text = text.trim();
    let seconds = if text == "now" {
        now
    } else if let Some(age) = text.strip_prefix('-') {
        now.saturating_sub(parse_duration(age).ok_or_else(|| bad_instant(field, text))?)
    } else if let Ok(seconds) = text.parse::<i64>() {
        seconds
    } else if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        i64::MAX
    } else {
        corral_store::parse_time(text).map(|t| t.unix_timestamp()).ok_or_else(|| bad_instant(field, text))?
    };
    validate::unix_time(field, seconds)
}

fn bad_instant(field: &'static str, text: &str) -> ApiError {
    let shown: String = text.chars().take(40).collect();
    ApiError::invalid(
        field,
        format!("{field} {shown:?} is not a time: use Unix seconds, RFC 3339 (2026-01-02T15:04:05Z), `now`, or an age like -15m, -2h, -7d"),
    )
}

/// The range, table and step a query asks for, with defaults: the last hour, ~360 points.
fn range(q: &StatsQuery) -> ApiResult<(i64, i64, Resolution, i64)> {
    let now = now_seconds();
    let given = |text: &Option<String>| text.as_deref().filter(|t| !t.is_empty()).map(str::to_string);
    let from = given(&q.from).map(|t| parse_instant(&t, now, "from")).transpose()?;
    let to = given(&q.to).map_or(Ok(now), |t| parse_instant(&t, now, "to"))?;
    let from = from.unwrap_or_else(|| to.saturating_sub(3600).max(validate::MIN_TIME));
    if from >= to {
        return Err(ApiError::invalid("from", format!("from ({from}) must be before to ({to})")));
    }
    let resolution = Resolution::for_range(from, now);
    // Both within MIN_TIME..=MAX_TIME: no overflow.
    let span = to - from;
    let step = match given(&q.step) {
        Some(text) => {
            let seconds = parse_duration(text.trim()).ok_or_else(|| {
                ApiError::invalid("step", format!("step {:?} is not a duration: use seconds or e.g. 30s, 5m, 1h", text.chars().take(40).collect::<String>()))
            })?;
            validate::duration_seconds("step", seconds)?
        }
        None => span / DEFAULT_POINTS,
    };
    // Never finer than the table, never more points than an answer should carry.
    let step = step.max(resolution.seconds()).max(span / MAX_POINTS);
    Ok((from, to, resolution, step))
}

async fn history(state: &AppState, env: &Environment, kind: &'static str, name: String, series: Vec<i64>, q: &StatsQuery) -> ApiResult<History> {
    let (from, to, resolution, step) = range(q)?;
    // Buckets start on multiples of the step, so the first one may begin before `from`.
    let rows = state.store.metric_points(&series, resolution, from - from.rem_euclid(step), to, step).await?;
    let points = if kind == "service" {
        sum_by_time(&rows)
    } else {
        let series_kind = if kind == "host" { SeriesKind::Host } else { SeriesKind::Container };
        rows.iter().map(|(_, s)| Point::from_sample(s, series_kind)).collect()
    };
    Ok(History { kind, name, environment: env.name.clone(), from, to, step_seconds: step, resolution, points })
}

/// A service's points: at each time, the sum over the containers that reported then.
fn sum_by_time(rows: &[(i64, Sample)]) -> Vec<Point> {
    let mut by_ts: BTreeMap<i64, Point> = BTreeMap::new();
    for (_, s) in rows {
        let p = by_ts
            .entry(s.ts)
            .or_insert_with(|| Point { containers: Some(0), ..Point::from_sample(&Sample { ts: s.ts, ..Default::default() }, SeriesKind::Container) });
        p.cpu_percent += s.cpu as f64 / 100.0;
        p.memory_bytes += s.memory;
        p.memory_limit_bytes += s.memory_limit;
        p.network_rx_bytes_per_second += s.net_rx;
        p.network_tx_bytes_per_second += s.net_tx;
        p.io_read_bytes_per_second += s.block_read;
        p.io_write_bytes_per_second += s.block_write;
        p.containers = p.containers.map(|n| n + 1);
    }
    by_ts.into_values().collect()
}

pub async fn host_stats(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<StatsQuery>) -> ApiResult<Json<History>> {
    let env = EnvQuery { env: q.env.clone() }.resolve(&state).await?;
    let host = state.store.host(env.id, &name).await?;
    let series = state.store.find_metric_series(SeriesKind::Host, env.id, &host.name).await?;
    Ok(Json(history(&state, &env, "host", host.name, series.into_iter().collect(), &q).await?))
}

pub async fn container_stats(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<StatsQuery>) -> ApiResult<Json<History>> {
    let env = EnvQuery { env: q.env.clone() }.resolve(&state).await?;
    let series = state.store.find_metric_series(SeriesKind::Container, env.id, &name).await?;
    // A container removed since still has its history; one that never existed is an error.
    if series.is_none() && !state.store.container_records(Some(env.id)).await?.iter().any(|r| r.name == name) {
        return Err(ApiError::NotFound(format!("container {name:?} does not exist and has no history; `corral ps` lists the containers")));
    }
    Ok(Json(history(&state, &env, "container", name, series.into_iter().collect(), &q).await?))
}

pub async fn service_stats(
    State(state): State<AppState>,
    Path((stack, service)): Path<(String, String)>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<History>> {
    let env = EnvQuery { env: q.env.clone() }.resolve(&state).await?;
    let stack_record = state.store.stack(env.id, &stack).await?;
    state.store.service(&stack_record, &service).await?;
    let series = state.store.service_metric_series(env.id, &stack, &service).await?;
    Ok(Json(history(&state, &env, "service", format!("{stack}/{service}"), series, &q).await?))
}

/// The environment dashboard: totals now, and who is busiest.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub environment: String,
    pub hosts: usize,
    pub containers: usize,
    /// Cores in use over all hosts (a host at 50 % of 4 cores counts 2).
    pub cpu_cores_used: f64,
    pub cpu_cores: usize,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub network_rx_bytes_per_second: u64,
    pub network_tx_bytes_per_second: u64,
    /// Up to 5 of each, busiest CPU first.
    pub busiest_hosts: Vec<HostNow>,
    pub busiest_containers: Vec<ContainerNow>,
    pub busiest_services: Vec<ServiceNow>,
}

const BUSIEST: usize = 5;

pub async fn summary(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<Summary>> {
    let env = q.resolve(&state).await?;
    let frames = state.metrics.latest(&env.name);
    let mut hosts: Vec<HostNow> = frames.iter().map(|f| f.host.clone()).collect();
    let mut containers: Vec<ContainerNow> = frames.iter().flat_map(|f| f.containers.iter().cloned()).collect();
    let mut services = service_totals(&frames);
    let summary = Summary {
        environment: env.name,
        hosts: hosts.len(),
        containers: containers.len(),
        cpu_cores_used: hosts.iter().map(|h| h.stats.cpu_percent as f64 / 100.0 * h.stats.cpu_core_percent.len().max(1) as f64).sum(),
        cpu_cores: hosts.iter().map(|h| h.stats.cpu_core_percent.len()).sum(),
        memory_used_bytes: hosts.iter().map(|h| h.stats.memory_used_bytes).sum(),
        memory_total_bytes: hosts.iter().map(|h| h.stats.memory_total_bytes).sum(),
        network_rx_bytes_per_second: hosts.iter().map(|h| h.rates.network_rx_bytes_per_second).sum(),
        network_tx_bytes_per_second: hosts.iter().map(|h| h.rates.network_tx_bytes_per_second).sum(),
        busiest_hosts: {
            hosts.sort_by(|a, b| b.stats.cpu_percent.total_cmp(&a.stats.cpu_percent));
            hosts.truncate(BUSIEST);
            hosts
        },
        busiest_containers: {
            containers.sort_by(|a, b| b.stats.cpu_percent.total_cmp(&a.stats.cpu_percent).then(b.stats.memory_bytes.cmp(&a.stats.memory_bytes)));
            containers.truncate(BUSIEST);
            containers
        },
        busiest_services: {
            services.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
            services.truncate(BUSIEST);
            services
        },
    };
    Ok(Json(summary))
}

#[derive(Deserialize)]
pub struct LiveQuery {
    pub env: Option<String>,
}

/// `GET /v1/stats/live?env=`: a WebSocket of host frames (the host's figures and its
/// containers'), every second while it is open and the viewer may still see the environment.
/// The latest frame of each host comes first.
pub async fn live(
    State(state): State<AppState>,
    Extension(admission): Extension<Admission>,
    Query(q): Query<LiveQuery>,
    ws: super::WsUpgrade,
) -> ApiResult<Response> {
    let env = EnvQuery { env: q.env }.resolve(&state).await?;
    let ws = ws.accept()?;
    let access = admission.watch(&state);
    let watch = state.metrics.watch(&state.hub);
    let shutdown = state.shutdown.subscribe();
    let first = state.metrics.latest(&env.name);
    state.environment_names.set(env.id, &env.name);
    let environment = (env.id, env.name, state.environment_names.clone());
    Ok(ws.on_upgrade(move |socket| serve_live(socket, environment, first, (watch, access), shutdown)))
}

async fn serve_live(
    mut socket: WebSocket,
    (env_id, started_as, names): (i64, String, std::sync::Arc<crate::state::EnvironmentNames>),
    first: Vec<std::sync::Arc<crate::metrics::LiveFrame>>,
    (mut watch, mut access): (crate::metrics::LiveWatch, AccessWatch),
    mut shutdown: tokio::sync::broadcast::Receiver<()>,
) {
    for frame in &first {
        if send(&mut socket, frame).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            frame = watch.frames.recv() => match frame {
                // By id: the environment may be renamed while the viewer watches.
                Ok(frame) if *frame.environment == *names.get_or(env_id, &started_as) => {
                    if send(&mut socket, &frame).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            revoked = access.revoked() => {
                super::close_revoked(&mut socket, revoked).await;
                return;
            }
            _ = shutdown.recv() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
}

async fn send(socket: &mut WebSocket, frame: &crate::metrics::LiveFrame) -> Result<(), axum::Error> {
    let text = serde_json::to_string(frame).expect("frames always serialize");
    socket.send(Message::Text(text.into())).await
}

/// `GET /metrics`: Prometheus text format, behind the same credentials as the API. Each caller
/// sees the hosts, containers, services and connected agents of the environments it may see
/// (admins: all; an environment key: its one); the control plane's own latency figures are
/// shown to every caller.
pub async fn prometheus(State(state): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    let visible: std::collections::HashSet<i64> = state.store.environments().await?.into_iter().map(|e| e.id).filter(|id| p.grant(*id).is_some()).collect();
    let connected = state.store.hosts(None).await?.iter().filter(|h| visible.contains(&h.environment_id) && state.hub.is_connected(&h.id)).count();
    let body = crate::metrics::render_prometheus(&state.metrics, connected, |env| visible.contains(&env));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>, step: Option<&str>) -> StatsQuery {
        StatsQuery { env: None, from: from.map(Into::into), to: to.map(Into::into), step: step.map(Into::into) }
    }

    #[test]
    fn ranges_pick_the_finest_table_that_holds_them() {
        let (from, to, resolution, step) = range(&q(None, None, None)).unwrap();
        assert_eq!((to - from, resolution, step), (3600, Resolution::Raw, 10));
        let (_, _, resolution, step) = range(&q(Some("-1d"), None, Some("1s"))).unwrap();
        assert_eq!((resolution, step), (Resolution::Minute, 60), "a step finer than the table is raised to it");
        let (_, _, resolution, _) = range(&q(Some("-30d"), Some("now"), None)).unwrap();
        assert_eq!(resolution, Resolution::Hour);
        let (from, to, _, _) = range(&q(Some("2026-01-01T00:00:00Z"), Some("1767229200"), Some("5m"))).unwrap();
        assert_eq!((from, to), (1_767_225_600, 1_767_229_200));
    }

    #[test]
    fn bad_ranges_say_what_to_pass() {
        for (query, field, words) in [
            (q(Some("yesterday"), None, None), "from", "RFC 3339"),
            (q(None, Some("-5x"), None), "to", "-15m"),
            (q(Some("-1m"), Some("-2m"), None), "from", "must be before"),
            (q(None, None, Some("fast")), "step", "30s"),
            (q(None, None, Some("0")), "step", "duration"),
            (q(None, None, Some("99999999999999999999d")), "step", "between 1s and"),
            (q(Some("-9223372036854775807"), Some("9223372036854775807"), None), "from", "between 1970-01-01T00:00:00Z"),
            (q(Some("99999999999999999999"), None, None), "from", "between"),
            (q(None, Some("-99999999999999999999h"), None), "to", "between"),
            (q(Some("0000-01-01T00:00:00Z"), None, None), "from", "between"),
            (q(Some("9223372036854775807m"), None, None), "from", "not a time"),
        ] {
            match range(&query) {
                Err(ApiError::Invalid { field: f, message }) => {
                    assert_eq!(f, field);
                    assert!(message.contains(words), "{message}");
                }
                other => panic!("expected an invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn service_points_sum_containers_per_time() {
        let s = |ts, cpu| Sample { ts, cpu, memory: 10, ..Default::default() };
        let points = sum_by_time(&[(1, s(0, 5000)), (1, s(60, 100)), (2, s(0, 2500))]);
        assert_eq!(
            points.iter().map(|p| (p.ts, p.cpu_percent, p.memory_bytes, p.containers)).collect::<Vec<_>>(),
            [(0, 75.0, 20, Some(2)), (60, 1.0, 10, Some(1))]
        );
    }
}
