//! Services: create, list, show, scale, remove.

use super::{EnvQuery, Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::status::{ContainerView, HostLink, ServiceFacts};
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use corral_proto::network::NetworkMode;
use corral_store::{LbSpec, Service, ServiceKind, ServiceSpec, ServiceState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    pub name: String,
    /// `container` (default) or `load-balancer`.
    #[serde(default = "container_kind")]
    pub kind: ServiceKind,
    /// Required for containers; load balancers run inside the agents.
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    /// `80`, `8080:80`, `53/udp`.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `host.LABEL=VALUE` or `host.LABEL!=VALUE`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Signed so that a negative number gets a clear message rather than a parse error.
    #[serde(default = "one")]
    pub scale: i64,
    /// Seconds a disconnected host keeps the containers before they are replaced elsewhere.
    pub reschedule_after: Option<i64>,
    /// Load balancers only: what to listen on and where to send it.
    pub lb: Option<NewLb>,
    /// Keep a running spare on each host the service may run on, so a lost instance is replaced
    /// by renaming it rather than by creating and starting a container.
    #[serde(default)]
    pub hot_spare: bool,
    /// When agents pull the image: `missing` (default), `always`, `never`.
    pub pull_policy: Option<String>,
    /// Which network the containers join: `managed` (default), `bridge`, `host`, `none`.
    pub network: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLb {
    /// `LISTEN:TARGET` (HTTP) or `LISTEN:TARGET/tcp`.
    pub ports: Vec<String>,
    /// `STACK/SERVICE`: where requests no rule claims go.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `host=H,path=/P -> STACK/SERVICE:PORT`.
    #[serde(default)]
    pub rules: Vec<String>,
    /// One instance on every eligible host instead of a scale.
    #[serde(default)]
    pub global: bool,
}

fn container_kind() -> ServiceKind {
    ServiceKind::Container
}

/// Checks a balancer's spec, including that its targets exist in the environment.
async fn lb_spec(state: &AppState, env_id: i64, body: Option<NewLb>) -> ApiResult<LbSpec> {
    let body = body.ok_or_else(|| ApiError::invalid("lb", "a load balancer needs ports and targets: e.g. --port 8080:80 --target STACK/SERVICE"))?;
    if body.ports.is_empty() {
        return Err(ApiError::invalid("ports", "a load balancer needs at least one port, LISTEN:TARGET (e.g. 8080:80)"));
    }
    validate::balancer(&body.ports, &body.targets, &body.rules)?;
    let ports = body.ports.iter().map(|p| crate::lb::parse_port(p)).collect::<ApiResult<Vec<_>>>()?;
    let rules = body.rules.iter().map(|r| crate::lb::parse_rule(r)).collect::<ApiResult<Vec<_>>>()?;
    if body.targets.is_empty() && rules.is_empty() {
        return Err(ApiError::invalid("targets", "a load balancer needs a target (--target STACK/SERVICE) or a rule"));
    }
    for target in body.targets.iter().chain(rules.iter().map(|r| &r.service)) {
        crate::lb::target_path(target)?;
        let (stack, service) = target.split_once('/').expect("checked above");
        let stack =
            state.store.stack(env_id, stack).await.map_err(|_| ApiError::invalid("targets", format!("target {target:?}: stack {stack:?} does not exist")))?;
        let target_service =
            state.store.service(&stack, service).await.map_err(|_| ApiError::invalid("targets", format!("target {target:?}: service does not exist")))?;
        if matches!(target_service.spec.network, NetworkMode::Host | NetworkMode::None) {
            return Err(ApiError::invalid(
                "targets",
                format!(
                    "target {target:?} runs on network {}, which publishes no ports for a load balancer to reach; target a service on network managed or bridge",
                    target_service.spec.network
                ),
            ));
        }
    }
    Ok(LbSpec { ports, targets: body.targets, rules, global: body.global })
}

fn one() -> i64 {
    1
}

/// What an upgrade changes; anything left out stays as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub pull_policy: Option<String>,
    /// Moves the containers to another network (each is made anew there, one at a time).
    pub network: Option<String>,
}

#[derive(Deserialize)]
pub struct Scale {
    pub scale: i64,
}

#[derive(Serialize)]
pub struct ServiceOut {
    #[serde(flatten)]
    pub service: Service,
    /// Containers placed on hosts.
    pub placed: usize,
    /// Placed containers already on the current revision; below `placed` while an upgrade rolls.
    pub upgraded: usize,
    /// Why instances could not be placed, if any could not.
    pub unplaced: Vec<String>,
    /// Load balancers: each instance's listeners and their backends, as the agents report them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub balancers: Vec<BalancerOut>,
    /// What the service's containers add up to: `active`, `starting`, `pulling`, `degraded`,
    /// `failing` or `stopped`, with the reason that matters most, how many instances fail, and
    /// each host's pull of the image (see `status::ServiceView`).
    #[serde(flatten)]
    pub view: crate::status::ServiceView,
    /// `managed` when the spec leaves it out: the spec's JSON is also a container label, which
    /// must not change for services made before network modes, but readers see the mode always.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
}

#[derive(Serialize)]
pub struct BalancerOut {
    pub host: String,
    pub listeners: Vec<corral_proto::lb::LbListenerStatus>,
}

async fn service_out(state: &AppState, services: Vec<Service>) -> ApiResult<Vec<ServiceOut>> {
    let env = services.first().map(|s| s.environment_id);
    let records = state.store.container_records(env).await?;
    let observed = state.store.observed(env).await?;
    let unplaced = state.unplaced.lock().expect("unplaced lock").clone();
    let all_hosts = state.store.hosts(env).await?;
    let hosts: std::collections::HashMap<String, String> = all_hosts.iter().map(|h| (h.id.clone(), h.name.clone())).collect();
    let links: std::collections::HashMap<&str, HostLink> =
        all_hosts.iter().map(|h| (h.id.as_str(), HostLink::of(h.state, state.hub.is_responding(&h.id)))).collect();
    let issues: std::collections::HashMap<&str, std::collections::HashMap<String, corral_proto::ContainerIssue>> =
        all_hosts.iter().map(|h| (h.id.as_str(), state.hub.issues(&h.id))).collect();
    let seen: std::collections::HashMap<(&str, &str), &corral_store::ObservedRecord> =
        observed.iter().map(|o| ((o.host_id.as_str(), o.name.as_str()), o)).collect();
    Ok(services
        .into_iter()
        .map(|service| {
            let mine: Vec<_> = records.iter().filter(|r| r.service_id == service.id).collect();
            let balancers = match &service.spec.lb {
                None => Vec::new(),
                Some(spec) => mine
                    .iter()
                    .map(|r| BalancerOut {
                        host: hosts.get(r.host_id.as_str()).cloned().unwrap_or_default(),
                        listeners: state.hub.load_balancer(&r.host_id).into_iter().filter(|l| spec.ports.iter().any(|p| p.listen == l.port)).collect(),
                    })
                    .collect(),
            };
            let views: Vec<(&str, ContainerView)> = match &service.spec.lb {
                Some(spec) => balancers.iter().map(|b| (b.host.as_str(), balancer_view(spec, b))).collect(),
                None => mine
                    .iter()
                    .map(|r| {
                        let link = links.get(r.host_id.as_str()).copied().unwrap_or(HostLink::Disconnected);
                        let issue = issues.get(r.host_id.as_str()).and_then(|i| i.get(&r.name));
                        let host = hosts.get(&r.host_id).map_or("", String::as_str);
                        (host, crate::status::container_view(link, seen.get(&(r.host_id.as_str(), r.name.as_str())).copied(), issue))
                    })
                    .collect(),
            };
            let unplaced: Vec<String> = unplaced.get(&service.id).into_iter().flatten().map(|u| format!("instance {}: {}", u.instance, u.reason)).collect();
            let upgrade_hosts: Vec<(&str, &str, corral_proto::ImageState)> = crate::reconcile::upgrade_pulls(&service, &records)
                .iter()
                .filter_map(|(host, p)| {
                    let name = hosts.get(host).map_or("", String::as_str);
                    state.hub.image_state(host, &p.image).map(|s| (name, service.spec.image.as_str(), s))
                })
                .collect();
            let view = crate::status::service_view(&ServiceFacts {
                stopped: service.is_stopped(),
                scale: service.scale as usize,
                containers: &views,
                unplaced: &unplaced,
                upgrade: (!upgrade_hosts.is_empty()).then_some((service.revision, upgrade_hosts)),
            });
            let network = service.spec.network.is_default().then_some(NetworkMode::Managed);
            ServiceOut {
                network,
                balancers,
                upgraded: mine.iter().filter(|r| r.revision == service.revision).count(),
                placed: mine.len(),
                unplaced,
                view,
                service,
            }
        })
        .collect())
}

/// A balancer instance as lists show it: running when its agent reports every listener bound.
fn balancer_view(spec: &LbSpec, b: &BalancerOut) -> ContainerView {
    let errors: Vec<&str> = b.listeners.iter().filter_map(|l| l.error.as_deref()).collect();
    let bound = b.listeners.len() == spec.ports.len() && errors.is_empty();
    ContainerView {
        state: if bound { "running" } else { "pending" }.into(),
        reason: (!errors.is_empty()).then(|| errors.join("; ")),
        progress: None,
        failing: !errors.is_empty(),
        log: Vec::new(),
        pulling: None,
    }
}

pub async fn create(
    State(state): State<AppState>,
    Path(stack): Path<String>,
    Query(q): Query<EnvQuery>,
    Json(body): Json<NewService>,
) -> ApiResult<(StatusCode, Json<ServiceOut>)> {
    validate::name("name", "service", &body.name)?;
    if body.kind == ServiceKind::Container {
        validate::image(&body.image)?;
    } else if !body.image.is_empty() || !body.command.is_empty() {
        return Err(ApiError::invalid("image", "a load balancer runs inside the agents: give it no image or command"));
    }
    validate::command(&body.command)?;
    validate::env(&body.env)?;
    validate::labels(&body.labels)?;
    let ports = validate::ports(&body.ports)?;
    let constraints = validate::constraints(&body.constraints)?;
    let scale = validate::scale(body.scale)?;
    let reschedule_after_secs = validate::reschedule_after(body.reschedule_after)?;
    let pull = validate::pull_policy(body.pull_policy.as_deref())?;
    let network = validate::network_mode(body.network.as_deref())?;
    let env = q.resolve(&state).await?;
    let stack = state.store.stack(env.id, &stack).await?;
    let lb = match body.kind {
        ServiceKind::LoadBalancer => Some(lb_spec(&state, env.id, body.lb).await?),
        ServiceKind::Container if body.lb.is_some() => return Err(ApiError::invalid("lb", "only a load-balancer service takes lb settings")),
        ServiceKind::Container => None,
    };
    if body.hot_spare && body.kind != ServiceKind::Container {
        return Err(ApiError::invalid("hot_spare", "a load balancer runs inside the agents and has no container to keep spare"));
    }
    if body.hot_spare && ports.iter().any(|p| p.host_port.is_some()) {
        return Err(ApiError::invalid(
            "hot_spare",
            "a hot spare cannot share a fixed host port with the instance on its host; publish the container port alone (e.g. 80) or put a load balancer in front",
        ));
    }
    let spec = ServiceSpec {
        hot_spare: body.hot_spare,
        kind: body.kind,
        image: body.image,
        command: body.command,
        env: body.env,
        ports,
        labels: body.labels,
        constraints,
        reschedule_after_secs,
        lb,
        pull,
        network,
    };
    validate::service_spec(&spec)?;
    let service = state.store.create_service(&stack, &body.name, &spec, scale).await?;
    state.reconcile.trigger();
    let mut out = service_out(&state, vec![service]).await?;
    Ok((StatusCode::CREATED, Json(out.remove(0))))
}

#[derive(Deserialize)]
pub struct ServiceFilter {
    pub env: Option<String>,
    pub stack: Option<String>,
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ServiceFilter>) -> ApiResult<Json<Vec<ServiceOut>>> {
    let env = EnvQuery { env: q.env }.resolve(&state).await?;
    let stack_id = match &q.stack {
        Some(name) => Some(state.store.stack(env.id, name).await?.id),
        None => None,
    };
    let services = state.store.services(Some(env.id), stack_id).await?;
    Ok(Json(service_out(&state, services).await?))
}

pub async fn list_in_stack(State(state): State<AppState>, Path(stack): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<Vec<ServiceOut>>> {
    list(State(state), Query(ServiceFilter { env: q.env, stack: Some(stack) })).await
}

async fn find(state: &AppState, q: &EnvQuery, stack: &str, service: &str) -> ApiResult<Service> {
    let env = q.resolve(state).await?;
    let stack = state.store.stack(env.id, stack).await?;
    Ok(state.store.service(&stack, service).await?)
}

pub async fn get(State(state): State<AppState>, Path((stack, service)): Path<(String, String)>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ServiceOut>> {
    let service = find(&state, &q, &stack, &service).await?;
    let mut out = service_out(&state, vec![service]).await?;
    Ok(Json(out.remove(0)))
}

pub async fn scale(
    State(state): State<AppState>,
    Path((stack, service)): Path<(String, String)>,
    Query(q): Query<EnvQuery>,
    Json(body): Json<Scale>,
) -> ApiResult<Json<ServiceOut>> {
    let scale = validate::scale(body.scale)?;
    let service = find(&state, &q, &stack, &service).await?;
    let service = state.store.set_scale(service.id, scale).await?;
    state.reconcile.trigger();
    let mut out = service_out(&state, vec![service]).await?;
    Ok(Json(out.remove(0)))
}

/// Starts a rolling upgrade: one instance at a time, each drained out of load balancers first,
/// the next only once the new one runs.
pub async fn upgrade(
    State(state): State<AppState>,
    Path((stack, service)): Path<(String, String)>,
    Query(q): Query<EnvQuery>,
    Json(body): Json<Upgrade>,
) -> ApiResult<Json<ServiceOut>> {
    let service = find(&state, &q, &stack, &service).await?;
    if service.spec.kind != ServiceKind::Container {
        return Err(ApiError::invalid("kind", "a load balancer has no image to upgrade; remove and create it to change it"));
    }
    if service.is_stopped() {
        // The roll waits for each new instance to run, which a stopped service never does.
        return Err(ApiError::Conflict(format!("{} is stopped; start it before upgrading it", service.path())));
    }
    if body.image.is_none() && body.command.is_none() && body.env.is_none() && body.pull_policy.is_none() && body.network.is_none() {
        return Err(ApiError::invalid("image", "nothing to upgrade: give a new image, command, environment, pull policy or network"));
    }
    let mut spec = service.spec.clone();
    if let Some(image) = body.image {
        validate::image(&image)?;
        spec.image = image;
    }
    if let Some(command) = body.command {
        validate::command(&command)?;
        spec.command = command;
    }
    if let Some(env) = body.env {
        validate::env(&env)?;
        spec.env = env;
    }
    if body.pull_policy.is_some() {
        spec.pull = validate::pull_policy(body.pull_policy.as_deref())?;
    }
    if body.network.is_some() {
        spec.network = validate::network_mode(body.network.as_deref())?;
    }
    if spec == service.spec {
        return Err(ApiError::invalid("image", "the upgrade changes nothing: the service already runs this spec"));
    }
    validate::service_spec(&spec)?;
    let upgraded = state.store.upgrade_service(service.id, &spec).await?;
    state.reconcile.trigger();
    let mut out = service_out(&state, vec![upgraded]).await?;
    Ok(Json(out.remove(0)))
}

/// `POST …/stop` keeps the containers, stopped; `POST …/start` starts the same ones again.
pub async fn stop(State(state): State<AppState>, Path((stack, service)): Path<(String, String)>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ServiceOut>> {
    set_state(&state, &q, &stack, &service, ServiceState::Stopped).await
}

pub async fn start(State(state): State<AppState>, Path((stack, service)): Path<(String, String)>, Query(q): Query<EnvQuery>) -> ApiResult<Json<ServiceOut>> {
    set_state(&state, &q, &stack, &service, ServiceState::Active).await
}

async fn set_state(state: &AppState, q: &EnvQuery, stack: &str, service: &str, to: ServiceState) -> ApiResult<Json<ServiceOut>> {
    let service = find(state, q, stack, service).await?;
    let service = state.store.set_service_state(service.id, to).await?;
    state.reconcile.trigger();
    let mut out = service_out(state, vec![service]).await?;
    Ok(Json(out.remove(0)))
}

pub async fn remove(State(state): State<AppState>, Path((stack, service)): Path<(String, String)>, Query(q): Query<EnvQuery>) -> ApiResult<StatusCode> {
    let service = find(&state, &q, &stack, &service).await?;
    state.store.delete_service(service.id).await?;
    state.reconcile.trigger();
    Ok(StatusCode::NO_CONTENT)
}
