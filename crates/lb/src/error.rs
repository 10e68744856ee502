use crate::config::Mode;

/// Why part of a config could not be applied. Each error concerns one listener; the rest of the
/// config is applied regardless, so one bad port never takes the others down.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("cannot listen on port {port}: {reason}")]
    Bind { port: u16, reason: String },
    #[error("listener on port {port} is invalid: {reason}")]
    Invalid { port: u16, reason: String },
}

impl LbError {
    pub fn port(&self) -> u16 {
        match self {
            LbError::Bind { port, .. } | LbError::Invalid { port, .. } => *port,
        }
    }

    pub(crate) fn tcp_routes(port: u16, count: usize) -> Self {
        LbError::Invalid { port, reason: format!("{} mode takes exactly one route (host and path are ignored), got {count}", Mode::Tcp) }
    }
}
