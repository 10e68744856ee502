//! Corral host agent (being written).
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything `corral agent` needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control plane base URL, e.g. `http://10.0.0.5:7070`; the agent dials `{url}/v1/agent`.
    pub server_url: String,
    /// The environment's join token.
    pub token: String,
    /// Where the agent keeps its identity and the last desired set.
    pub state_dir: PathBuf,
    /// Docker endpoint, e.g. `unix:///run/h1/docker.sock`; `None` means `DOCKER_HOST` or the default socket.
    pub docker_host: Option<String>,
    /// Host name shown in the control plane; `None` means the machine's hostname.
    pub name: Option<String>,
    /// Address shown in the control plane; `None` means the local address used to reach it.
    pub address: Option<String>,
    pub labels: BTreeMap<String, String>,
}
