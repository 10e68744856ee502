//! What the overlay is asked to be: this host's side ([`OverlayConfig`]) and its peers
//! ([`Peer`]), their checks, and the pure plan of a peer-list change ([`plan_peers`]).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;

use crate::error::{OverlayError, Result};
use crate::keys::PublicKey;

/// The TUN device's MTU: 1500 on the underlying link, less IPv4 (20) + UDP (8) + WireGuard's
/// data header and tag (32), rounded down to WireGuard's usual 1420 so an IPv6 underlay (40-byte
/// header) fits too.
pub const MTU: u16 = 1420;

/// How often each peer's WireGuard timers run (handshake retries, rekeys, keepalives).
pub const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Keepalive interval: it also makes each side start the handshake on its own, so a tunnel's
/// state (last handshake) is known before any traffic, and NAT mappings stay open.
pub const PERSISTENT_KEEPALIVE_SECS: u16 = 25;

/// This host's side of the overlay.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverlayConfig {
    /// The TUN device's name, e.g. `corral0` (at most 15 bytes, the kernel's limit).
    pub device: String,
    /// The UDP port the tunnel listens on, on every address of the host; peers send here.
    pub listen_port: u16,
    /// This host's subnet, e.g. `10.42.1.0/24`; the device takes its first address.
    pub local_subnet: Ipv4Net,
    /// The environment's network, e.g. `10.42.0.0/16`; every peer's subnet lies inside it.
    pub network: Ipv4Net,
}

impl OverlayConfig {
    /// The device's own address: the first host address of the local subnet (`10.42.1.1`).
    /// Peers reach this host there, and the routes to peers use it as their source.
    pub fn tunnel_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.local_subnet.network()) + 1)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(OverlayError::Config(m));
        let d = &self.device;
        if d.is_empty() || d.len() > 15 || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return bad(format!("device name {d:?}: use 1 to 15 letters, digits, '-', '_' or '.'"));
        }
        if self.listen_port == 0 {
            return bad("listen port 0: peers need a fixed port to send to".into());
        }
        if self.local_subnet != self.local_subnet.trunc() {
            return bad(format!("local subnet {}: not a network address (did you mean {}?)", self.local_subnet, self.local_subnet.trunc()));
        }
        if self.local_subnet.prefix_len() > 30 {
            return bad(format!("local subnet {}: too small, use /30 or larger", self.local_subnet));
        }
        if !self.network.contains(&self.local_subnet) {
            return bad(format!("local subnet {} is outside the network {}", self.local_subnet, self.network));
        }
        Ok(())
    }
}

/// Another host of the same environment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    pub public_key: PublicKey,
    /// Where its tunnel listens (its host address and `listen_port`). Replaced by the address
    /// its authenticated packets come from, as WireGuard does, until the next `set_peers`.
    pub endpoint: SocketAddr,
    /// Its host's subnet: routed through the tunnel to it, and the only source addresses
    /// accepted from it.
    pub subnet: Ipv4Net,
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Refuses a peer list the tunnel could not route unambiguously: a subnet outside the network,
/// over this host's subnet or another peer's, a key given twice, or this host's own key.
pub fn validate_peers(config: &OverlayConfig, own: &PublicKey, peers: &[Peer]) -> Result<()> {
    let mut keys = HashSet::new();
    for (i, p) in peers.iter().enumerate() {
        let bad = |reason: String| Err(OverlayError::Peer { public_key: p.public_key.to_string(), subnet: p.subnet, reason });
        if p.public_key == *own {
            return bad("this is this host's own key".into());
        }
        if !keys.insert(p.public_key) {
            return bad("the key is listed twice".into());
        }
        if p.subnet != p.subnet.trunc() {
            return bad(format!("not a network address (did you mean {}?)", p.subnet.trunc()));
        }
        if !config.network.contains(&p.subnet) {
            return bad(format!("outside the network {}", config.network));
        }
        if overlaps(&p.subnet, &config.local_subnet) {
            return bad(format!("overlaps this host's subnet {}", config.local_subnet));
        }
        if let Some(o) = peers[..i].iter().find(|o| overlaps(&o.subnet, &p.subnet)) {
            return bad(format!("overlaps peer {}'s subnet {}", o.public_key, o.subnet));
        }
        if p.endpoint.port() == 0 || p.endpoint.ip().is_unspecified() {
            return bad(format!("endpoint {} cannot be sent to", p.endpoint));
        }
    }
    Ok(())
}

/// What changing the peer list from `old` to `new` takes. A peer keeps its tunnel (and its
/// session) when its key and subnet stay; a changed subnet counts as removed and added, since
/// both its route and what it may send change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerPlan {
    /// Peers to drop, with their routes.
    pub remove: Vec<Peer>,
    /// Peers to add, with their routes.
    pub add: Vec<Peer>,
    /// Kept peers whose endpoint changed: send to the new one from now on.
    pub retarget: Vec<(PublicKey, SocketAddr)>,
}

pub fn plan_peers(old: &[Peer], new: &[Peer]) -> PeerPlan {
    let same = |a: &Peer, b: &Peer| a.public_key == b.public_key && a.subnet == b.subnet;
    let mut plan = PeerPlan::default();
    for o in old {
        if !new.iter().any(|n| same(o, n)) {
            plan.remove.push(o.clone());
        }
    }
    for n in new {
        match old.iter().find(|o| same(o, n)) {
            None => plan.add.push(n.clone()),
            Some(o) if o.endpoint != n.endpoint => plan.retarget.push((n.public_key, n.endpoint)),
            Some(_) => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    fn config() -> OverlayConfig {
        OverlayConfig { device: "corral0".into(), listen_port: 51820, local_subnet: "10.42.1.0/24".parse().unwrap(), network: "10.42.0.0/16".parse().unwrap() }
    }

    fn peer(subnet: &str, endpoint: &str) -> Peer {
        Peer { public_key: KeyPair::generate().public_key(), endpoint: endpoint.parse().unwrap(), subnet: subnet.parse().unwrap() }
    }

    #[test]
    fn tunnel_address_is_the_subnets_first_host() {
        assert_eq!(config().tunnel_address(), Ipv4Addr::new(10, 42, 1, 1));
    }

    #[test]
    fn config_checks_say_what_is_wrong() {
        config().validate().unwrap();
        let err = |f: fn(&mut OverlayConfig)| {
            let mut c = config();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(err(|c| c.device = "a-very-long-device-name".into()).contains("1 to 15"));
        assert!(err(|c| c.device = "bad/name".into()).contains("device name"));
        assert!(err(|c| c.listen_port = 0).contains("listen port 0"));
        assert!(err(|c| c.local_subnet = "10.42.1.5/24".parse().unwrap()).contains("did you mean 10.42.1.0/24"));
        assert!(err(|c| c.local_subnet = "10.43.1.0/24".parse().unwrap()).contains("outside the network 10.42.0.0/16"));
        assert!(err(|c| c.local_subnet = "10.42.1.0/31".parse().unwrap()).contains("too small"));
    }

    #[test]
    fn peer_checks_refuse_ambiguous_routes() {
        let c = config();
        let own = KeyPair::generate().public_key();
        let a = peer("10.42.2.0/24", "192.0.2.2:51820");
        let b = peer("10.42.3.0/24", "192.0.2.3:51820");
        validate_peers(&c, &own, &[a.clone(), b.clone()]).unwrap();
        validate_peers(&c, &own, &[]).unwrap();

        let err = |peers: &[Peer]| validate_peers(&c, &own, peers).unwrap_err().to_string();
        assert!(err(&[peer("10.43.2.0/24", "192.0.2.2:1")]).contains("outside the network"));
        assert!(err(&[peer("10.42.0.0/23", "192.0.2.2:1")]).contains("overlaps this host"));
        assert!(err(&[a.clone(), peer("10.42.2.128/25", "192.0.2.9:1")]).contains("overlaps peer"));
        assert!(err(&[a.clone(), Peer { subnet: "10.42.9.0/24".parse().unwrap(), ..a.clone() }]).contains("listed twice"));
        assert!(err(&[Peer { public_key: own, ..a.clone() }]).contains("own key"));
        assert!(err(&[peer("10.42.2.1/24", "192.0.2.2:1")]).contains("not a network address"));
        assert!(err(&[peer("10.42.2.0/24", "0.0.0.0:51820")]).contains("cannot be sent to"));
        assert!(err(&[peer("10.42.2.0/24", "192.0.2.2:0")]).contains("cannot be sent to"));
    }

    #[test]
    fn plan_keeps_removes_adds_and_retargets() {
        let a = peer("10.42.2.0/24", "192.0.2.2:51820");
        let b = peer("10.42.3.0/24", "192.0.2.3:51820");
        let c = peer("10.42.4.0/24", "192.0.2.4:51820");
        let same = plan_peers(std::slice::from_ref(&a), std::slice::from_ref(&a));
        assert_eq!(same, PeerPlan::default());

        let moved_b = Peer { endpoint: "192.0.2.33:51820".parse().unwrap(), ..b.clone() };
        let plan = plan_peers(&[a.clone(), b.clone()], &[moved_b.clone(), c.clone()]);
        assert_eq!(plan.remove, vec![a.clone()]);
        assert_eq!(plan.add, vec![c.clone()]);
        assert_eq!(plan.retarget, vec![(b.public_key, moved_b.endpoint)]);

        // A new subnet for the same key is a new route and a new allowed source: remove + add.
        let renumbered = Peer { subnet: "10.42.9.0/24".parse().unwrap(), ..a.clone() };
        let plan = plan_peers(std::slice::from_ref(&a), std::slice::from_ref(&renumbered));
        assert_eq!(plan.remove, vec![a.clone()]);
        assert_eq!(plan.add, vec![renumbered]);

        let plan = plan_peers(&[a.clone(), b.clone()], &[]);
        assert_eq!(plan.remove, vec![a, b]);
        assert!(plan.add.is_empty());
    }
}
