//! The load balancer's desired state, as the control plane sends it to the agent.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Everything the proxy on one host should serve. Applying it is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LbConfig {
    pub listeners: Vec<Listener>,
}

/// One public port. Ports are unique within a config; a duplicate is rejected by `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub port: u16,
    pub mode: Mode,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Http,
    Tcp,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        })
    }
}

/// A routing rule. In HTTP mode `host` (None = any host) and `path_prefix` (None = "/") select
/// the rule; in TCP mode the listener has exactly one route and both are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    pub backends: Vec<SocketAddr>,
}
