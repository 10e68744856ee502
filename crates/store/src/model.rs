//! Records as the store returns them.

use corral_proto::{ContainerState, PortSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    /// The value of its containers' `io.corral.environment` label: the name it was created
    /// with, unchanged by renames so that no container is recreated for one.
    #[serde(skip_serializing)]
    pub label: String,
    /// Its managed network, e.g. `10.42.0.0/16`; `None` only until the control plane has given
    /// one to an environment made before managed networks.
    pub subnet: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Active,
    Disconnected,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Active => "active",
            HostState::Disconnected => "disconnected",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "active" => HostState::Active,
            _ => HostState::Disconnected,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: String,
    pub environment_id: i64,
    pub name: String,
    pub address: String,
    pub docker_version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub state: HostState,
    pub state_since: String,
    pub last_seen: String,
    pub created_at: String,
    /// When the host's credential was revoked; its agent must join with the join token again.
    pub revoked_at: Option<String>,
    /// Deactivated: keeps what it runs but gets no new containers.
    pub deactivated: bool,
    /// What the control plane refused from the host's agent since its last hello, and why.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub id: i64,
    pub environment_id: i64,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    Container,
    LoadBalancer,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Container => "container",
            ServiceKind::LoadBalancer => "load-balancer",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "load-balancer" => ServiceKind::LoadBalancer,
            _ => ServiceKind::Container,
        }
    }
}

/// What a service should run; everything except scale, which changes without a new revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub kind: ServiceKind,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub labels: BTreeMap<String, String>,
    /// `host.LABEL=VALUE` / `host.LABEL!=VALUE`, already validated.
    pub constraints: Vec<String>,
    /// Seconds a disconnected host keeps this service's containers before they are replaced elsewhere.
    #[serde(default = "default_reschedule_after")]
    pub reschedule_after_secs: u32,
    /// Set for `load-balancer` services: what they listen on and where they send traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<LbSpec>,
    /// Keep a running spare on each host that runs the service, to replace a lost instance in
    /// milliseconds. Left out of the JSON when off, so older specs hash the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hot_spare: bool,
    /// When agents pull the image. Left out of the JSON when `missing` (the default), so older
    /// specs hash the same.
    #[serde(default, rename = "pull_policy", skip_serializing_if = "corral_proto::PullPolicy::is_default")]
    pub pull: corral_proto::PullPolicy,
    /// Which network its containers join. Left out of the JSON when `managed` (the default), so
    /// older specs hash the same and services made before it stay on the managed network.
    #[serde(default, skip_serializing_if = "corral_proto::network::NetworkMode::is_default")]
    pub network: corral_proto::network::NetworkMode,
}

/// A load balancer: listeners on host ports, spreading over the running containers of targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbSpec {
    pub ports: Vec<LbPort>,
    /// Default targets, `STACK/SERVICE`, for requests no rule claims.
    pub targets: Vec<String>,
    pub rules: Vec<LbRule>,
    /// One instance on every eligible host instead of a scale.
    #[serde(default)]
    pub global: bool,
}

/// `LISTEN:TARGET` (HTTP) or `LISTEN:TARGET/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbPort {
    pub listen: u16,
    pub target: u16,
    pub mode: corral_proto::lb::LbMode,
}

/// `host=H,path=P -> STACK/SERVICE:PORT`: requests for that host and path prefix go to that service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbRule {
    pub host: Option<String>,
    pub path: Option<String>,
    pub service: String,
    pub port: u16,
}

/// Rancher moved containers off a lost host only if they had health checks; Corral always does,
/// after this long, like Swarm's and Nomad's defaults of the same order.
pub const DEFAULT_RESCHEDULE_AFTER_SECS: u32 = 60;

fn default_reschedule_after() -> u32 {
    DEFAULT_RESCHEDULE_AFTER_SECS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: i64,
    pub stack_id: i64,
    pub stack: String,
    pub environment_id: i64,
    pub name: String,
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub scale: u32,
    /// Increases whenever the spec changes.
    pub revision: u32,
    /// `active`, or `stopped`: its containers are kept but not running.
    pub state: ServiceState,
    /// Set while the service is being rebuilt from container labels (see `adopt_service`).
    pub adopting_until: Option<String>,
    /// The spec of `revision - 1`, kept while instances are upgraded from it one by one.
    #[serde(skip)]
    pub previous_spec: Option<ServiceSpec>,
    pub created_at: String,
    pub updated_at: String,
}

/// Whether a service's containers should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    #[default]
    Active,
    Stopped,
}

impl Service {
    pub fn is_stopped(&self) -> bool {
        self.state == ServiceState::Stopped
    }

    /// Docker name of instance `n`: `STACK-SERVICE-N`.
    pub fn container_name(&self, instance: u32) -> String {
        container_name(&self.stack, &self.name, instance)
    }

    /// Docker name of the service's hot spare on a host: `STACK-SERVICE-spare`.
    pub fn spare_name(&self) -> String {
        format!("{}-{}-{}", self.stack, self.name, corral_proto::labels::SPARE_SUFFIX)
    }

    /// The spec a container placed at `revision` runs: the previous one while an upgrade has
    /// not reached it yet.
    pub fn spec_at(&self, revision: u32) -> &ServiceSpec {
        match &self.previous_spec {
            Some(previous) if revision + 1 == self.revision => previous,
            _ => &self.spec,
        }
    }

    /// `STACK/NAME`, as users write it.
    pub fn path(&self) -> String {
        format!("{}/{}", self.stack, self.name)
    }
}

pub fn container_name(stack: &str, service: &str, instance: u32) -> String {
    format!("{stack}-{service}-{instance}")
}

/// One placed instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: i64,
    pub service_id: i64,
    pub instance: u32,
    pub host_id: String,
    pub name: String,
    pub created_at: String,
    /// Set while the container is taken out of load balancers before its removal.
    pub draining_since: Option<String>,
    /// The service revision this instance runs.
    pub revision: u32,
    /// Stopped on its own (not with its service): kept, not running, until started again.
    #[serde(default)]
    pub stopped: bool,
    /// Bumped by each restart asked for; the agent restarts the container when it changes.
    #[serde(default)]
    pub restart_generation: u64,
    /// Set when the instance replaces one removed on request: a new container, not the old one.
    #[serde(default)]
    pub incarnation: u64,
}

/// A managed container as its host's agent last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedRecord {
    pub host_id: String,
    pub name: String,
    pub docker_id: String,
    pub image: String,
    pub state: ContainerState,
    pub status: String,
    pub ip: Option<String>,
    pub ports: Vec<PortSpec>,
    pub labels: BTreeMap<String, String>,
    pub updated_at: String,
}
