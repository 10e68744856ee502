//! The load balancer's desired state, as the control plane sends it to the agent.

use std::net::SocketAddr;
use std::time::Duration;

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

/// How long the proxy waits on each side of an HTTP connection before giving up on it. Set once
/// per proxy ([`crate::LoadBalancer::with_timeouts`]); TCP listeners and upgraded (WebSocket)
/// connections are byte relays and have none of these. The defaults let uploads over slow links
/// and long polls through, and free a connection held by a client that stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request head must arrive whole within this (408 otherwise), and a kept-alive connection
    /// may wait this long for its next request. A total, like HAProxy's `timeout http-request`:
    /// a head is small, so a client still sending one after this is stalling on purpose.
    pub request_head: Duration,
    /// While a request body arrives, every period this long must bring at least
    /// [`body_min_bytes`](Self::body_min_bytes) more of it (or its end). A body that stalls or
    /// trickles slower is cut with 408 and the connection closed. Not a total: an upload of any
    /// size passes as long as it keeps moving. Also how long a write to the client may wait for
    /// the client to read (HAProxy's `timeout client`).
    pub client_idle: Duration,
    /// See [`client_idle`](Self::client_idle). At least 1.
    pub body_min_bytes: u64,
    /// How long the proxy waits on a backend: for the response head (504 after that; not
    /// retried, since the backend may be acting on the request), for each next part of the
    /// response body (the response is cut), and for the backend to take the request. Like
    /// nginx's `proxy_read_timeout`, whose default it shares: a long poll or an event stream
    /// must send something at least this often.
    pub backend_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { request_head: Duration::from_secs(30), client_idle: Duration::from_secs(30), body_min_bytes: 1024, backend_idle: Duration::from_secs(60) }
    }
}
