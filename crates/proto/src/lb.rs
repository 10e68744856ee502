//! The built-in load balancer on the wire: what an agent's proxy should serve, and how it fares.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every load-balancer listener an agent should run for its host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbSet {
    pub listeners: Vec<LbListener>,
}

impl LbSet {
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbListener {
    /// Host port the proxy listens on.
    pub port: u16,
    pub mode: LbMode,
    /// The load-balancer service this listener belongs to, `STACK/NAME`, for status and logs.
    pub service: String,
    pub routes: Vec<LbRoute>,
    /// The `io.corral.*` labels a container of this instance would carry: a control plane that
    /// lost its database rebuilds the balancer from them, as it does services from containers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    Http,
    Tcp,
}

/// Requests matching `host` (any when `None`) and the longest `path_prefix` go to `backends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbRoute {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    /// `IP:PORT` of each running target container, reachable from any host.
    pub backends: Vec<String>,
}

/// How one listener is doing, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbListenerStatus {
    pub port: u16,
    /// `None` when listening; otherwise why not (e.g. the port is taken).
    pub error: Option<String>,
    pub backends: Vec<LbBackendStatus>,
    /// The listener's labels, echoed from the desired set (see [`LbListener::labels`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbBackendStatus {
    pub address: String,
    pub up: bool,
}
