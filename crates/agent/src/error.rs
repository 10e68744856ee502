//! The agent's error type: every message names what failed and what the operator can do.

use std::path::PathBuf;

use corral_proto::RejectCode;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The engine did not answer at startup; nothing useful can happen without it.
    #[error(
        "cannot reach the Docker engine at {socket}: {reason}. Is dockerd running? \
         Pass --docker-host or set DOCKER_HOST."
    )]
    DockerUnreachable { socket: String, reason: String },

    /// A container's image is not on this host although it was there (or pulled) a moment
    /// before: someone removed it in between. The next pass pulls it again.
    #[error("image {image} not found on this engine (needed by container {container}); it was removed while the container was being created")]
    ImageNotFound { image: String, container: String },

    /// Any other engine call that failed; `action` says what the agent was doing.
    #[error("Docker engine failed to {action}: {reason}")]
    Engine { action: String, reason: String },

    /// The managed network's tunnel or forwarding could not be set up on this host.
    #[error("managed network: {0}")]
    Network(String),

    #[error(
        "cannot use the agent state dir {path}: {reason}; check that it exists and is writable \
         by the agent, or pass another --state-dir"
    )]
    StateDir { path: PathBuf, reason: String },

    #[error(
        "{path} is corrupt ({reason}); move it away to start over (for desired.json the agent \
         gets a fresh copy from the control plane on connect)"
    )]
    CorruptState { path: PathBuf, reason: String },

    #[error("invalid control plane URL {url:?}: {reason}")]
    InvalidServerUrl { url: String, reason: String },

    /// The control plane presented another CA than the pinned one.
    #[error(transparent)]
    CaMismatch(#[from] crate::tls::PinMismatch),

    /// The control plane refused us for a reason retrying cannot fix.
    #[error("the control plane rejected this agent ({code:?}): {message}. {hint}")]
    Rejected { code: RejectCode, message: String, hint: &'static str },
}

impl AgentError {
    pub(crate) fn engine(action: impl Into<String>, err: &bollard::errors::Error) -> Self {
        AgentError::Engine { action: action.into(), reason: describe(err) }
    }

    pub(crate) fn state_dir(path: impl Into<PathBuf>, err: &std::io::Error) -> Self {
        AgentError::StateDir { path: path.into(), reason: err.to_string() }
    }
}

/// bollard's top-level messages are often just "error in the hyper legacy client"; the useful
/// part (`No such file or directory`, `Connection refused`) sits at the bottom of the chain.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_unreachable_says_what_to_do() {
        let e = AgentError::DockerUnreachable { socket: "unix:///var/run/docker.sock".into(), reason: "No such file or directory".into() };
        let msg = e.to_string();
        assert!(msg.contains("unix:///var/run/docker.sock"), "{msg}");
        assert!(msg.contains("Is dockerd running?"), "{msg}");
        assert!(msg.contains("--docker-host"), "{msg}");
    }

    #[test]
    fn describe_walks_the_source_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let outer = bollard::errors::Error::from(io);
        assert!(describe(&outer).contains("No such file or directory"));
    }
}
