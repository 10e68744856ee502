//! The managed network: one IPv4 network per environment spanning its hosts, a `/24` of it
//! leased to each host by the control plane, and the encrypted tunnels that join the hosts.
//!
//! Addresses travel as text in CIDR form (`10.42.3.0/24`); the control plane checks them with
//! the API's rules before they go out, and the agent checks them again before it acts on them.

use serde::{Deserialize, Serialize};

/// The name of the Docker network the agent makes on each host for the managed network.
pub const DOCKER_NETWORK: &str = "corral-managed";

/// The environment's default managed network.
pub const DEFAULT_SUBNET: &str = "10.42.0.0/16";

/// The UDP port an agent's tunnel listens on unless told otherwise.
pub const DEFAULT_TUNNEL_PORT: u16 = 51820;

/// How a service's containers are networked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The environment's managed network, spanning its hosts (the default).
    #[default]
    Managed,
    /// The engine's default bridge: reachable from elsewhere only through published ports.
    Bridge,
    /// The host's own network stack.
    Host,
    /// No network at all.
    None,
}

impl NetworkMode {
    pub fn is_default(&self) -> bool {
        *self == NetworkMode::Managed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Managed => "managed",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<NetworkMode> {
        match text {
            "managed" => Some(NetworkMode::Managed),
            "bridge" => Some(NetworkMode::Bridge),
            "host" => Some(NetworkMode::Host),
            "none" => Some(NetworkMode::None),
            _ => None,
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a host is told about the managed network, in its desired set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The environment's whole network, e.g. `10.42.0.0/16`.
    pub network: String,
    /// This host's lease in it, e.g. `10.42.3.0/24`: its managed containers take addresses here.
    pub subnet: String,
    /// The other hosts of the same environment that have a lease, and how to reach them. Hosts of
    /// other environments are never listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
    /// The environment's `io.corral.environment` label: the host's DNS server answers for this
    /// environment only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// The names the host's DNS server answers: every container of the environment on the
    /// managed network, on any of its hosts, with the address its engine reports. Sorted by
    /// container name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NameRecord>,
}

impl NetworkPlan {
    /// The plan less its names: what the tunnel follows (names change far more often).
    pub fn without_names(&self) -> NetworkPlan {
        NetworkPlan {
            network: self.network.clone(),
            subnet: self.subnet.clone(),
            peers: self.peers.clone(),
            environment: self.environment.clone(),
            names: Vec::new(),
        }
    }
}

/// One container of the environment, as the DNS servers know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub container: String,
    pub stack: String,
    pub service: String,
    /// Its address on the managed network, as its host's engine reports it.
    pub ip: std::net::Ipv4Addr,
    /// Only running containers are answered; the others still tell the DNS server which stack
    /// their address belongs to.
    pub running: bool,
}

/// Another host of the environment, as a tunnel peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub host_id: String,
    pub name: String,
    /// Its subnet, routed through the tunnel to it.
    pub subnet: String,
    /// Its tunnel's public key (WireGuard's base64), once its agent has said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Where its tunnel listens, `ADDRESS:PORT`; kept while it is disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// What an agent says about its side of the managed network when it connects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// The lease it holds from before (from its state dir): after a lost database the control
    /// plane gives it back the same one when it is still free, so addresses survive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Its tunnel's public key, once it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The UDP port its tunnel listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_port: Option<u16>,
    /// The host's own IPv4 networks (its interfaces', in CIDR form, loopback aside): a managed
    /// network must not cover them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_networks: Vec<String>,
}

impl NetworkFacts {
    pub fn is_empty(&self) -> bool {
        *self == NetworkFacts::default()
    }
}

/// The most peers a tunnel report may list; the control plane drops the rest.
pub const MAX_REPORTED_PEERS: usize = 1024;

/// How an agent's tunnel stands, sent with its periodic stats (bytes change all the time, so
/// not with every observed set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelReport {
    /// Whether the tunnel runs.
    pub running: bool,
    /// The UDP port it listens on (or would).
    #[serde(default)]
    pub port: u16,
    /// Why it does not run though the host has a lease (device, port, permissions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each peer of the tunnel, as the tunnel sees it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerReport>,
}

/// One peer of a running tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's host, as the plan named it.
    pub host_id: String,
    /// Where packets to it go now: its last authenticated source, or the plan's endpoint.
    pub endpoint: String,
    /// Seconds since the last completed handshake; `None` until one completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_secs: Option<u64>,
    /// Seconds the peer has been in the tunnel (since the tunnel started or the peer joined it):
    /// a peer met a moment ago has had no time for a handshake yet.
    pub listed_secs: u64,
    /// Bytes of IP packets received from it and sent to it through the tunnel.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_and_print_alike() {
        for mode in [NetworkMode::Managed, NetworkMode::Bridge, NetworkMode::Host, NetworkMode::None] {
            assert_eq!(NetworkMode::parse(mode.as_str()), Some(mode));
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{mode}\""));
        }
        assert_eq!(NetworkMode::parse("overlay"), None);
    }

    #[test]
    fn older_peers_read_sets_without_a_plan() {
        let plan: NetworkPlan = serde_json::from_str(r#"{"network":"10.42.0.0/16","subnet":"10.42.1.0/24"}"#).unwrap();
        assert!(plan.peers.is_empty());
    }
}
