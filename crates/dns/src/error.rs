use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the DNS server could not start, or the host's resolvers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot bind the DNS server on {addr} ({protocol}): {source}")]
    Bind { addr: SocketAddr, protocol: &'static str, source: io::Error },
    #[error("cannot read the host's resolvers from {}: {source}", path.display())]
    ReadResolvConf { path: PathBuf, source: io::Error },
    #[error("cannot parse the host's resolvers in {}: {message}", path.display())]
    ParseResolvConf { path: PathBuf, message: String },
    #[error("cannot set up forwarding to the host's resolvers {upstreams:?}: {message}")]
    Forwarder { upstreams: Vec<SocketAddr>, message: String },
}
