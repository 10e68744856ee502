//! The host's own resolvers, which names that are not ours are forwarded to.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::DnsError;

/// Where the host's resolvers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `nameserver` entries of a resolv.conf file, on port 53. The server runs in the host's
/// own network namespace, so a loopback resolver (systemd-resolved's 127.0.0.53, a local
/// dnsmasq) is reachable and kept.
pub fn from_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, DnsError> {
    let text = std::fs::read(path).map_err(|source| DnsError::ReadResolvConf { path: path.to_owned(), source })?;
    parse(&text).map_err(|message| DnsError::ParseResolvConf { path: path.to_owned(), message })
}

/// [`from_resolv_conf`] on text already read.
pub fn parse(text: &[u8]) -> Result<Vec<SocketAddr>, String> {
    let config = resolv_conf::Config::parse(text).map_err(|e| e.to_string())?;
    Ok(config.nameservers.iter().map(|ip| SocketAddr::new(IpAddr::from(ip), 53)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order_on_port_53() {
        let text = b"# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver 2001:db8::1\noptions edns0\n";
        let upstreams = parse(text).unwrap();
        let expected: Vec<SocketAddr> = vec!["127.0.0.53:53".parse().unwrap(), "192.0.2.1:53".parse().unwrap(), "[2001:db8::1]:53".parse().unwrap()];
        assert_eq!(upstreams, expected);
    }

    #[test]
    fn a_file_without_nameservers_gives_none() {
        assert_eq!(parse(b"search example.com\n").unwrap(), Vec::<SocketAddr>::new());
    }

    #[test]
    fn a_missing_file_says_which() {
        let err = from_resolv_conf(Path::new("/nonexistent/resolv.conf")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the host's resolvers from /nonexistent/resolv.conf:"), "{err}");
    }
}
