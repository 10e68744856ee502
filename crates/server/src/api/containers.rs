//! Containers: what `corral ps` shows, joining placements with what the engines report; one
//! container's details; its log, streamed from its agent.

use super::{EnvQuery, Json, Path, Query};
use crate::access::{AccessWatch, Admission};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::status::{self, HostLink};
use axum::extract::ws::{Message, WebSocket};
use axum::extract::State;
use axum::Extension;
use corral_proto::network::NetworkMode;
use corral_proto::{ContainerIssue, PortSpec};
use corral_store::{ContainerRecord, Host, HostState, ObservedRecord, Service};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize)]
pub struct ContainerFilter {
    pub env: Option<String>,
    pub stack: Option<String>,
    pub service: Option<String>,
}

#[derive(Serialize)]
pub struct ContainerOut {
    pub name: String,
    pub stack: String,
    pub service: String,
    pub instance: u32,
    pub host: String,
    pub host_state: HostState,
    /// The host's agent has been heard from lately (`false`: the host may be gone).
    pub host_responding: bool,
    /// The engine's state word; `pending` before the host has reported the container, `pulling`
    /// while its image is on its way, `failed` when it could not be created.
    pub state: String,
    pub status: String,
    /// Why a container is not simply running, e.g. `pulling nginx:1.27: 63 %`,
    /// `exited with code 3: …`, `host disconnected`.
    pub reason: Option<String>,
    /// Percent of its image pulled, while it waits for it.
    pub progress: Option<u8>,
    /// The reason is a failure to act on, not something under way.
    pub failing: bool,
    /// The last lines it printed, when it exited.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// Its address: on the managed network (or the engine's bridge), or the host's own address
    /// for a container on the host's network.
    pub ip: Option<String>,
    /// The network it was made on: `managed`, `bridge`, `host` or `none`.
    pub network: NetworkMode,
    pub ports: Vec<PortSpec>,
    pub docker_id: Option<String>,
    /// Kept stopped on its own (`corral container stop`) until started again.
    pub stopped: bool,
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ContainerFilter>) -> ApiResult<Json<Vec<ContainerOut>>> {
    let env = EnvQuery { env: q.env }.resolve(&state).await?;
    let stack = match &q.stack {
        Some(name) => Some(state.store.stack(env.id, name).await?),
        None => None,
    };
    let services = match (&stack, &q.service) {
        (Some(stack), Some(name)) => vec![state.store.service(stack, name).await?],
        _ => state.store.services(Some(env.id), stack.as_ref().map(|s| s.id)).await?,
    };
    let services: HashMap<i64, _> = services.into_iter().map(|s| (s.id, s)).collect();
    let hosts: HashMap<String, _> = state.store.hosts(Some(env.id)).await?.into_iter().map(|h| (h.id.clone(), h)).collect();
    let all_observed = state.store.observed(Some(env.id)).await?;
    let observed: HashMap<(String, String), &ObservedRecord> = all_observed.iter().map(|o| ((o.host_id.clone(), o.name.clone()), o)).collect();
    let issues: HashMap<&str, HashMap<String, ContainerIssue>> = hosts.keys().map(|id| (id.as_str(), state.hub.issues(id))).collect();
    let mut out: Vec<ContainerOut> = state
        .store
        .container_records(Some(env.id))
        .await?
        .into_iter()
        .filter_map(|r| {
            let service = services.get(&r.service_id)?;
            let host = hosts.get(&r.host_id)?;
            let seen = observed.get(&(r.host_id.clone(), r.name.clone())).copied();
            let issue = issues.get(r.host_id.as_str()).and_then(|i| i.get(&r.name));
            Some(row(&state, service, host, seen, issue, r))
        })
        .collect();
    out.sort_by(|a, b| (&a.stack, &a.service, a.instance).cmp(&(&b.stack, &b.service, b.instance)));
    Ok(Json(out))
}

/// One container as a list row: placement joined with what its engine last reported.
pub fn row(
    state: &AppState,
    service: &Service,
    host: &Host,
    seen: Option<&ObservedRecord>,
    issue: Option<&ContainerIssue>,
    r: ContainerRecord,
) -> ContainerOut {
    if let Some(lb) = &service.spec.lb {
        return balancer_row(state, service, lb, host, r);
    }
    let responding = state.hub.is_responding(&host.id);
    let view = status::container_view(HostLink::of(host.state, responding), seen, issue);
    // Asked for: said instead of an exit code that is the stop's own doing, and not a failure.
    let stop = stop_reason(host.state, service, &r, seen);
    let network = service.spec_at(r.revision).network;
    // The engine reports no address for a container in the host's namespace: it has the host's.
    let ip = seen.and_then(|o| o.ip.clone()).or_else(|| (seen.is_some() && network == NetworkMode::Host).then(|| host.address.clone()));
    ContainerOut {
        stack: service.stack.clone(),
        service: service.name.clone(),
        instance: r.instance,
        host: host.name.clone(),
        host_state: host.state,
        host_responding: host.state == HostState::Active && responding,
        state: view.state,
        status: seen.map_or_else(String::new, |o| o.status.clone()),
        reason: stop.clone().or(view.reason),
        progress: view.progress,
        failing: view.failing && stop.is_none(),
        log: view.log,
        ip,
        network,
        ports: seen.map_or_else(|| service.spec.ports.clone(), |o| o.ports.clone()),
        docker_id: seen.map(|o| o.docker_id.clone()),
        stopped: r.stopped,
        name: r.name,
    }
}

/// Why a container that was asked to stop is not running: said instead of its exit code, which
/// is the stop's own doing. A lost host still outranks it.
fn stop_reason(host: HostState, service: &Service, r: &ContainerRecord, seen: Option<&ObservedRecord>) -> Option<String> {
    let running = seen.is_some_and(|o| o.state == corral_proto::ContainerState::Running);
    match (host, service.is_stopped(), r.stopped) {
        (HostState::Disconnected, _, _) => None,
        (_, true, _) => Some(format!("stopped with its service (`corral service start {}` runs it again)", service.path())),
        (_, false, true) if running => Some("stopping".into()),
        (_, false, true) => Some(format!("stopped on request (`corral container start {}` runs it again)", r.name)),
        _ => None,
    }
}

/// What `POST /v1/containers/{name}/{action}` asks of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    Stop,
    Start,
    Restart,
}

/// Whether `action` may be done to a container of `service` on a host in `host_state`; the
/// refusal says why and what to do instead.
pub fn check_action(action: ContainerAction, name: &str, service: &Service, host_state: HostState) -> ApiResult<()> {
    if service.spec.lb.is_some() {
        return Err(ApiError::invalid(
            "name",
            format!("{name} is a load balancer instance, which runs inside its host's agent: stop, start or scale its service {} instead", service.path()),
        ));
    }
    if service.is_stopped() && action != ContainerAction::Stop {
        return Err(ApiError::Conflict(format!("service {} is stopped; start it first (`corral service start {}`)", service.path(), service.path())));
    }
    // A restart is an act for now: held for a host that may come back hours later, it would
    // surprise. Stopping and starting are states the host takes on whenever it is back.
    if action == ContainerAction::Restart && host_state == HostState::Disconnected {
        return Err(ApiError::Conflict(format!(
            "container {name}'s host is disconnected, so it cannot be restarted now; it is replaced elsewhere if its host stays away (see `corral host ls`)"
        )));
    }
    Ok(())
}

/// `POST /v1/containers/{name}/stop`: the container is stopped and kept stopped (across agent
/// restarts and reconnects) until started again; its service's scale is unchanged.
pub async fn stop(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ContainerOut>> {
    act(state, name, q, ContainerAction::Stop).await
}

/// `POST /v1/containers/{name}/start`: runs a container stopped on its own again.
pub async fn start(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ContainerOut>> {
    act(state, name, q, ContainerAction::Start).await
}

/// `POST /v1/containers/{name}/restart`: the same container is stopped and started once (a
/// stopped one is started).
pub async fn restart(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ContainerOut>> {
    act(state, name, q, ContainerAction::Restart).await
}

async fn act(state: AppState, name: String, q: EnvQuery, action: ContainerAction) -> ApiResult<Json<ContainerOut>> {
    let env = q.resolve(&state).await?;
    let (_, service, host, seen) = find(&state, &env, &name).await?;
    check_action(action, &name, &service, host.state)?;
    let record = match action {
        ContainerAction::Stop => state.store.set_container_stopped(env.id, &name, true).await?,
        ContainerAction::Start => state.store.set_container_stopped(env.id, &name, false).await?,
        ContainerAction::Restart => {
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            state.store.restart_container(env.id, &name, now_ms).await?
        }
    };
    tracing::info!(container = %name, environment = %env.name, ?action, "container action");
    state.reconcile.trigger();
    let issue = state.hub.issues(&host.id).remove(&record.name);
    Ok(Json(row(&state, &service, &host, seen.as_ref(), issue.as_ref(), record)))
}

#[derive(Serialize)]
pub struct ContainerDetail {
    #[serde(flatten)]
    pub summary: ContainerOut,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<String>,
    /// The labels the engine reports (or, before it reports, the ones it will get).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The service revision this container runs.
    pub revision: u32,
    pub host_address: String,
}

/// A container's record, service and host in the environment, or a 404 naming it.
async fn find(state: &AppState, env: &corral_store::Environment, name: &str) -> ApiResult<(ContainerRecord, Service, Host, Option<ObservedRecord>)> {
    let not_found = || ApiError::NotFound(format!("no container {name:?} in environment {}; see `corral ps`", env.name));
    let record = state.store.container_record(env.id, name).await?.ok_or_else(not_found)?;
    let service = state.store.service_by_id(record.service_id).await?;
    let host = state.store.host_by_id(&record.host_id).await?.filter(|h| h.environment_id == env.id).ok_or_else(not_found)?;
    let seen = state.store.observed_one(&record.host_id, &record.name).await?;
    Ok((record, service, host, seen))
}

/// `GET /v1/containers/{name}`: one container with its spec.
pub async fn get(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ContainerDetail>> {
    let env = q.resolve(&state).await?;
    let (record, service, host, seen) = find(&state, &env, &name).await?;
    let spec = crate::reconcile::container_spec(&env.label, &service, &record);
    let issue = state.hub.issues(&host.id).remove(&record.name);
    Ok(Json(ContainerDetail {
        image: seen.as_ref().map_or_else(|| spec.image.clone(), |o| o.image.clone()),
        labels: seen.as_ref().map_or_else(|| spec.labels.clone(), |o| o.labels.clone()),
        command: spec.command,
        env: spec.env,
        revision: record.revision,
        host_address: host.address.clone(),
        summary: row(&state, &service, &host, seen.as_ref(), issue.as_ref(), record),
    }))
}

#[derive(Deserialize)]
pub struct LogsQuery {
    pub env: Option<String>,
    /// Lines of history to start with.
    #[serde(default = "default_tail")]
    pub tail: u32,
    #[serde(default = "default_follow")]
    pub follow: bool,
}

fn default_tail() -> u32 {
    200
}

fn default_follow() -> bool {
    true
}

/// Most history lines a reader may ask for at once.
const MAX_TAIL: u32 = 10_000;

/// `GET /v1/containers/{name}/logs` (WebSocket): the container's log, streamed from its host's
/// agent while the socket is open and the reader may still read it. Refusals come before the
/// upgrade, as JSON.
pub async fn logs(
    State(state): State<AppState>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    ws: super::WsUpgrade,
) -> ApiResult<axum::response::Response> {
    if q.tail > MAX_TAIL {
        return Err(ApiError::invalid("tail", format!("tail must be at most {MAX_TAIL} lines")));
    }
    let env = EnvQuery { env: q.env }.resolve(&state).await?;
    let (record, service, host, _) = find(&state, &env, &name).await?;
    if service.spec.lb.is_some() {
        return Err(ApiError::invalid("name", format!("{name} is a load balancer instance, which runs inside the agent and has no container log")));
    }
    let ws = ws.accept()?;
    let access = admission.watch(&state);
    let reader = state.hub.open_logs(&host.id, &record.name, q.tail, q.follow).map_err(|_| ApiError::HostDisconnected(host.name.clone()))?;
    let shutdown = state.shutdown.subscribe();
    Ok(ws.on_upgrade(move |socket| stream_logs(socket, reader, access, shutdown)))
}

async fn stream_logs(mut socket: WebSocket, mut reader: crate::hub::LogReader, mut access: AccessWatch, mut shutdown: tokio::sync::broadcast::Receiver<()>) {
    let mut revoked = None;
    let end = loop {
        tokio::select! {
            _ = shutdown.recv() => break "the control plane is stopping".to_string(),
            why = access.revoked() => {
                revoked = Some(why);
                break why.to_string();
            }
            incoming = socket.recv() => match incoming {
                // The reader closed the page; dropping `reader` tells the agent to stop.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
            chunk = reader.chunks.recv() => {
                let Some(chunk) = chunk else { break "the host's agent disconnected".to_string() };
                for line in &chunk.lines {
                    let frame = serde_json::json!({ "stream": line.stream, "line": line.line });
                    if socket.send(Message::text(frame.to_string())).await.is_err() {
                        return;
                    }
                }
                if let Some(end) = chunk.end {
                    break end;
                }
            }
        }
    };
    let _ = socket.send(Message::text(serde_json::json!({ "type": "end", "reason": end }).to_string())).await;
    match revoked {
        Some(why) => super::close_revoked(&mut socket, why).await,
        None => {
            let _ = socket.send(Message::Close(None)).await;
        }
    }
}

/// Deletes one container. Its service's scale is unchanged, so a replacement starts at once,
/// on another host when one is eligible — the operator removed it from this one for a reason.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<axum::http::StatusCode> {
    let env = q.resolve(&state).await?;
    let record = state.store.delete_container_record(env.id, &name).await?;
    state.avoid.lock().expect("avoid lock").insert((record.service_id, record.instance), (record.host_id, std::time::Instant::now()));
    state.reconcile.trigger();
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A balancer instance runs inside its host's agent: its state is its listeners'.
fn balancer_row(
    state: &AppState,
    service: &corral_store::Service,
    lb: &corral_store::LbSpec,
    host: &corral_store::Host,
    r: corral_store::ContainerRecord,
) -> ContainerOut {
    let listeners: Vec<_> = state.hub.load_balancer(&host.id).into_iter().filter(|l| lb.ports.iter().any(|p| p.listen == l.port)).collect();
    let errors: Vec<String> = listeners.iter().filter_map(|l| l.error.clone()).collect();
    let responding = state.hub.is_responding(&host.id);
    let (state_word, reason) = match (listeners.len() == lb.ports.len(), errors.is_empty()) {
        _ if host.state == HostState::Disconnected => ("unknown", Some("host disconnected".to_string())),
        _ if !responding => ("unknown", Some("host not responding".to_string())),
        (true, true) => ("running", None),
        (_, false) => ("error", Some(errors.join("; "))),
        (false, true) => ("pending", None),
    };
    let status = listeners
        .iter()
        .map(|l| format!(":{} -> {}/{} backends up", l.port, l.backends.iter().filter(|b| b.up).count(), l.backends.len()))
        .collect::<Vec<_>>()
        .join(", ");
    ContainerOut {
        stack: service.stack.clone(),
        service: service.name.clone(),
        instance: r.instance,
        host: host.name.clone(),
        host_state: host.state,
        host_responding: host.state == HostState::Active && responding,
        failing: reason.is_some(),
        state: state_word.into(),
        status: format!("load balancer {status}").trim().to_string(),
        reason,
        progress: None,
        log: Vec::new(),
        ip: Some(host.address.clone()),
        network: NetworkMode::Host,
        ports: lb.ports.iter().map(|p| PortSpec { host_port: Some(p.listen), container_port: p.target, protocol: corral_proto::Protocol::Tcp }).collect(),
        docker_id: None,
        stopped: false,
        name: r.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(stopped: bool, lb: bool) -> Service {
        let spec = corral_store::ServiceSpec {
            kind: if lb { corral_store::ServiceKind::LoadBalancer } else { corral_store::ServiceKind::Container },
            image: String::new(),
            command: vec![],
            env: vec![],
            ports: vec![],
            labels: Default::default(),
            constraints: vec![],
            reschedule_after_secs: 60,
            lb: lb.then(|| corral_store::LbSpec { ports: vec![], targets: vec!["S/web".into()], rules: vec![], global: false }),
            hot_spare: false,
            pull: Default::default(),
            network: Default::default(),
        };
        Service {
            id: 1,
            stack_id: 1,
            stack: "S".into(),
            environment_id: 1,
            name: "web".into(),
            spec,
            scale: 1,
            revision: 1,
            state: if stopped { corral_store::ServiceState::Stopped } else { corral_store::ServiceState::Active },
            adopting_until: None,
            previous_spec: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn container_actions_say_when_they_cannot_be_done() {
        use ContainerAction::*;
        let active = HostState::Active;
        for action in [Stop, Start, Restart] {
            assert!(check_action(action, "S-web-1", &service(false, false), active).is_ok(), "{action:?}");
            let lb = check_action(action, "S-lb-1", &service(false, true), active).unwrap_err().to_string();
            assert!(lb.contains("load balancer") && lb.contains("S/web"), "{lb}");
        }
        assert!(check_action(Stop, "S-web-1", &service(true, false), active).is_ok(), "stopping within a stopped service changes nothing that runs");
        for action in [Start, Restart] {
            let why = check_action(action, "S-web-1", &service(true, false), active).unwrap_err().to_string();
            assert!(why.contains("corral service start S/web"), "{why}");
        }
        assert!(check_action(Restart, "S-web-1", &service(false, false), HostState::Disconnected).unwrap_err().to_string().contains("disconnected"));
        assert!(check_action(Stop, "S-web-1", &service(false, false), HostState::Disconnected).is_ok());
    }
}
