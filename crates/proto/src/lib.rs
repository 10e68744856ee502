//! Wire types shared by the Corral control plane and its agents.
//!
//! The agent dials out to `/v1/agent` and keeps one WebSocket. Every frame is a JSON text
//! message: [`AgentMessage`] upstream, [`ServerMessage`] downstream. The first frame is
//! always [`AgentMessage::Hello`], carrying [`PROTOCOL_VERSION`]; the control plane answers
//! [`ServerMessage::Welcome`] or [`ServerMessage::Rejected`] and closes.
//!
//! The protocol is level-triggered: the control plane sends the agent the *full* desired set of
//! containers for its host ([`DesiredSet`]), never individual commands, and the agent reports
//! the full set it observes ([`ObservedSet`]). Reconnects and duplicates are therefore harmless.
//!
//! - [`labels`]: the `io.corral.*` labels every managed container carries.
//! - [`spec`]: the container spec shared by both sides ([`ContainerSpec`], [`PortSpec`]).
//! - [`image`]: pull policies, pulls asked ahead, and why a desired container is not running.
//! - [`lb`]: the built-in load balancer's configuration ([`lb::LbSet`]) and status.
//! - [`stats`]: the resource usage agents report ([`stats::StatsReport`]).
//! - [`registry`]: the registries a host's agent is told about, and which registry an image
//!   comes from.
//!
//! The control plane trusts an agent with its own host only: it checks every string an agent
//! sends (host facts, observed containers, labels) before it stores, shows or logs it, and holds
//! the agent to the limits below.

pub mod image;
pub mod labels;
pub mod lb;
pub mod network;
pub mod registry;
pub mod spec;
pub mod stats;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use image::{ContainerIssue, ImagePull, ImageReport, ImageState, IssueKind, PullFailure, PullPolicy};
pub use spec::{ContainerSpec, PortSpec, Protocol};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame (and message) either side accepts; the control plane closes a session that
/// sends a bigger one. An observed set of [`MAX_OBSERVED_CONTAINERS`] containers with their
/// labels stays far below it.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The most containers one observed set (and one stats report) may list. A host that runs more
/// than any real one does (the largest scale is 1,000 per service) has its report refused.
pub const MAX_OBSERVED_CONTAINERS: usize = 5_000;

/// Frames sent by an agent to the control plane.
// One hello per connection: boxing it would save nothing worth an extra indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First frame on every connection.
    Hello(Hello),
    /// Sent every `heartbeat_interval_ms` so the control plane can tell a silent host from a live one.
    Heartbeat,
    /// Everything the agent sees on its engine, sent after each convergence and each engine event.
    Observed(ObservedSet),
    /// Lines of a container's log, for a [`ServerMessage::Logs`] request.
    Logs(LogChunk),
    /// Host and container resource usage, every [`ServerMessage::StatsInterval`] (5 s by default).
    Stats(stats::StatsReport),
}

/// Frames sent by the control plane to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Welcome),
    /// The connection is refused; the control plane closes it after this frame.
    Rejected(Rejected),
    Heartbeat,
    /// The full set of containers that must run on the agent's host.
    Desired(DesiredSet),
    /// Stream a container's log (someone is reading it); answered by [`AgentMessage::Logs`].
    Logs(LogsRequest),
    /// The reader went away: stop streaming request `id`.
    LogsCancel {
        id: u64,
    },
    /// Report [`AgentMessage::Stats`] every `ms` from now on: 1 s while someone watches live.
    StatsInterval {
        ms: u64,
    },
}

/// A request for a container's log lines. Logs are the one thing the control plane asks for
/// rather than declares: they are read on demand and never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsRequest {
    /// Chosen by the control plane; the chunks carry it back.
    pub id: u64,
    pub container: String,
    /// How many of the last lines to send first.
    pub tail: u32,
    /// Keep sending new lines until cancelled.
    pub follow: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub id: u64,
    #[serde(default)]
    pub lines: Vec<LogLine>,
    /// Set on the last chunk of a request, saying why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// The environment's join token. Only used when the control plane does not know this host's
    /// `credential` (its first join, a re-join after a revocation, or a lost database).
    pub token: String,
    /// The host's own credential, from the [`Welcome`] of its first join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Stable identity of this host, created by the agent on first start and kept in its state dir.
    pub host_id: String,
    pub facts: HostFacts,
}

/// What a host says about itself when it connects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub name: String,
    pub address: String,
    pub docker_version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its side of the managed network (absent from older agents).
    #[serde(default, skip_serializing_if = "network::NetworkFacts::is_empty")]
    pub network: network::NetworkFacts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub host_id: String,
    pub host_name: String,
    pub environment: String,
    pub heartbeat_interval_ms: u64,
    /// A new credential for this host, sent when it joined with the join token: the agent keeps
    /// it and says hello with it from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Why a connection was refused, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub code: RejectCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The join token is unknown.
    BadToken,
    /// Protocol versions differ; the agent must be upgraded.
    ProtocolMismatch,
    /// Another agent with the same host identity is connected right now.
    AlreadyConnected,
    /// The first frame was not a valid hello.
    BadHello,
    /// The host's credential was revoked (`corral host revoke`): it must join with the join token again.
    CredentialRevoked,
    /// The host is known but the hello did not carry its credential.
    BadCredential,
}

/// The full set of containers the control plane wants on one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredSet {
    /// Increases with every change the control plane sends; echoed back in [`ObservedSet`].
    pub revision: u64,
    pub containers: Vec<ContainerSpec>,
    /// The load-balancer listeners this host's agent runs; absent from older control planes.
    #[serde(default, skip_serializing_if = "lb::LbSet::is_empty")]
    pub load_balancer: lb::LbSet,
    /// Images to have on the host before the control plane goes on (an upgrade's new image on
    /// every host involved); the agent says how each stands in [`ObservedSet::images`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull: Vec<ImagePull>,
    /// The registries of the host's environment: each with its CA, and with credentials only
    /// when an image in `containers` comes from it. Absent from older control planes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<registry::RegistryEntry>,
    /// The managed network as this host takes part in it: its lease and its peers. Absent from
    /// older control planes, and while the host has no lease (its environment's network is full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<network::NetworkPlan>,
}

/// What the agent sees on its engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedSet {
    /// The last desired revision the agent has applied (0 before the first).
    pub applied_revision: u64,
    pub containers: Vec<ObservedContainer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer: Vec<lb::LbListenerStatus>,
    /// Desired containers that are not running as they should, and why (absent from older agents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<ContainerIssue>,
    /// How each image of the desired set's `pull` list stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageReport>,
}

/// One Corral-managed container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedContainer {
    pub name: String,
    pub docker_id: String,
    pub image: String,
    pub state: ContainerState,
    /// The engine's own words, e.g. `Up 3 seconds` or `Exited (137) 2 seconds ago`.
    pub status: String,
    pub ip: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Removing,
    Dead,
    Unknown,
}

impl ContainerState {
    /// Maps the engine's state word (`running`, `exited`, …) onto the enum.
    pub fn from_engine(state: &str) -> Self {
        match state {
            "created" => Self::Created,
            "running" => Self::Running,
            "restarting" => Self::Restarting,
            "paused" => Self::Paused,
            "exited" => Self::Exited,
            "removing" => Self::Removing,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Paused => "paused",
            Self::Exited => "exited",
            Self::Removing => "removing",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let json = serde_json::to_string(&AgentMessage::Heartbeat).unwrap();
        assert_eq!(json, r#"{"type":"heartbeat"}"#);
        let msg: ServerMessage = serde_json::from_str(r#"{"type":"rejected","code":"already_connected","message":"host h1 is connected"}"#).unwrap();
        assert_eq!(msg, ServerMessage::Rejected(Rejected { code: RejectCode::AlreadyConnected, message: "host h1 is connected".into() }));
    }

    #[test]
    fn hello_round_trips() {
        let hello = AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            token: "t".into(),
            credential: None,
            host_id: "id".into(),
            facts: HostFacts { name: "h1".into(), cpus: 2, labels: [("zone".to_string(), "a".to_string())].into(), ..Default::default() },
        });
        let back: AgentMessage = serde_json::from_str(&serde_json::to_string(&hello).unwrap()).unwrap();
        assert_eq!(back, hello);
    }

    #[test]
    fn unknown_message_type_is_an_error_not_a_panic() {
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"launch_missiles"}"#).is_err());
        assert!(serde_json::from_str::<AgentMessage>("not json").is_err());
    }

    #[test]
    fn engine_states_map() {
        assert_eq!(ContainerState::from_engine("running"), ContainerState::Running);
        assert_eq!(ContainerState::from_engine("exited"), ContainerState::Exited);
        assert_eq!(ContainerState::from_engine("weird"), ContainerState::Unknown);
        assert_eq!(ContainerState::Restarting.to_string(), "restarting");
    }
}
