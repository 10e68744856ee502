//! This host's part of the managed network beyond the engine's bridge: the encrypted tunnel to
//! the other hosts of its environment ([`corral_overlay`]), and the forwarding rules that let
//! traffic pass between the tunnel and the bridge with its real source addresses.
//!
//! [`tunnel_plan`] turns the control plane's [`NetworkPlan`] into the overlay's config and peers
//! (a pure function); [`ManagedNetwork::apply`] starts, re-targets or stops the tunnel to match.
//! [`TunnelStatus`] is what the periodic stats report says of it: running or why not, and each
//! peer's host, endpoint, last handshake and bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use corral_overlay::{KeyPair, Overlay, OverlayConfig, Peer, PeerStats};
use corral_proto::network::{NetworkPlan, PeerReport, TunnelReport};
use ipnet::Ipv4Net;
use tokio::sync::broadcast;

use crate::error::AgentError;

/// The tunnel's TUN device.
pub const DEVICE: &str = "corral0";
/// The engine's bridge device for the managed network (see [`crate::engine::Engine::ensure_managed_network`]).
pub const BRIDGE: &str = "corral-m";
const KEY_FILE: &str = "tunnel.key";

/// The overlay's config and peers for `plan`: `None` when the plan's network or lease is not one
/// this agent will act on. Peers whose agent has not said its key and endpoint yet, or whose
/// values do not parse, are left out until it has.
pub fn tunnel_plan(plan: &NetworkPlan, port: u16) -> Option<(OverlayConfig, Vec<Peer>)> {
    let network: Ipv4Net = plan.network.parse().ok()?;
    let local_subnet: Ipv4Net = plan.subnet.parse().ok()?;
    let config = OverlayConfig { device: DEVICE.into(), listen_port: port, local_subnet, network };
    config.validate().ok()?;
    let peers = plan
        .peers
        .iter()
        .filter_map(|p| {
            Some(Peer {
                public_key: p.public_key.as_deref()?.parse().ok()?,
                endpoint: p.endpoint.as_deref()?.parse::<SocketAddr>().ok()?,
                subnet: p.subnet.parse().ok()?,
            })
        })
        .collect();
    Some((config, peers))
}

/// The iptables rules that let the tunnel and the bridge reach each other: the engine forwards
/// only what it published into its bridges, and masquerades what leaves them; between managed
/// subnets neither applies. Each is `(table, chain, rule)`.
pub fn forwarding_rules(config: &OverlayConfig) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let (local, network) = (config.local_subnet.to_string(), config.network.to_string());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        ("filter", "DOCKER-USER", s(&["-i", DEVICE, "-o", BRIDGE, "-j", "ACCEPT"])),
        ("filter", "DOCKER-USER", s(&["-i", BRIDGE, "-o", DEVICE, "-j", "ACCEPT"])),
        ("nat", "POSTROUTING", s(&["-s", &local, "-d", &network, "-j", "RETURN"])),
    ]
}

/// Adds each rule unless it is there (`iptables -C`), at the top of its chain.
async fn ensure_rules(rules: &[(&'static str, &'static str, Vec<String>)]) -> Result<(), AgentError> {
    for (table, chain, rule) in rules {
        let present = tokio::process::Command::new("iptables").args(["-t", table, "-C", chain]).args(rule).output().await;
        if present.as_ref().is_ok_and(|o| o.status.success()) {
            continue;
        }
        let out = tokio::process::Command::new("iptables")
            .args(["-t", table, "-I", chain, "1"])
            .args(rule)
            .output()
            .await
            .map_err(|e| AgentError::Network(format!("cannot run iptables: {e}")))?;
        if !out.status.success() {
            return Err(AgentError::Network(format!("iptables -t {table} -I {chain} {}: {}", rule.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
        }
    }
    Ok(())
}

/// The plan's hosts by their tunnel key, each with the moment it joined the tunnel. A host kept
/// with the same key keeps its moment; `restarted` (a new tunnel) starts every one anew.
pub fn peer_hosts(plan: &NetworkPlan, previous: &HashMap<String, (String, Instant)>, restarted: bool, now: Instant) -> HashMap<String, (String, Instant)> {
    plan.peers
        .iter()
        .filter_map(|p| {
            let key = p.public_key.clone()?;
            let since = previous.get(&key).filter(|(host, _)| !restarted && *host == p.host_id).map_or(now, |(_, since)| *since);
            Some((key, (p.host_id.clone(), since)))
        })
        .collect()
}

/// What the tunnel says of each peer, named by the plan's host ids; a peer the plan does not
/// name (it cannot happen, the peers come from the plan) is left out.
pub fn peer_reports(stats: &[PeerStats], hosts: &HashMap<String, (String, Instant)>, now: Instant) -> Vec<PeerReport> {
    stats
        .iter()
        .filter_map(|p| {
            let (host_id, since) = hosts.get(&p.public_key.to_string())?;
            Some(PeerReport {
                host_id: host_id.clone(),
                endpoint: p.endpoint.to_string(),
                last_handshake_secs: p.last_handshake.map(|d| d.as_secs()),
                listed_secs: now.saturating_duration_since(*since).as_secs(),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
        })
        .collect()
}

#[derive(Default)]
struct Status {
    port: u16,
    overlay: Option<Arc<Overlay>>,
    /// Why the tunnel does not run (or runs without its forwarding rules).
    error: Option<String>,
    hosts: HashMap<String, (String, Instant)>,
}

/// The tunnel's state as the stats report reads it, shared with the task that runs it.
#[derive(Clone, Default)]
pub struct TunnelStatus(Arc<Mutex<Status>>);

impl TunnelStatus {
    pub fn report(&self) -> TunnelReport {
        let (port, overlay, error, hosts) = {
            let s = self.0.lock().expect("tunnel status lock");
            (s.port, s.overlay.clone(), s.error.clone(), s.hosts.clone())
        };
        let peers = overlay.as_ref().map(|o| peer_reports(&o.stats(), &hosts, Instant::now())).unwrap_or_default();
        TunnelReport { running: overlay.is_some(), port, error, peers }
    }

    fn set(&self, overlay: Option<Arc<Overlay>>, error: Option<String>, hosts: HashMap<String, (String, Instant)>) {
        let mut s = self.0.lock().expect("tunnel status lock");
        (s.overlay, s.error, s.hosts) = (overlay, error, hosts);
    }

    /// Follows a new peer list of the running tunnel; what it said of its rules stays.
    fn update_hosts(&self, update: impl FnOnce(&HashMap<String, (String, Instant)>) -> HashMap<String, (String, Instant)>) {
        let mut s = self.0.lock().expect("tunnel status lock");
        s.hosts = update(&s.hosts);
    }
}

/// The tunnel as it runs on this host.
pub struct ManagedNetwork {
    keypair: KeyPair,
    port: u16,
    running: Option<(OverlayConfig, Arc<Overlay>)>,
    status: TunnelStatus,
    /// The last plan asked for could not be brought up: [`ManagedNetwork::apply`] it again later.
    failed: bool,
}

impl ManagedNetwork {
    /// This host's tunnel keys (made on first start, in `state_dir`), to listen on UDP `port`.
    pub fn load(state_dir: &Path, port: u16) -> Result<Self, AgentError> {
        let keypair = KeyPair::load_or_create(&state_dir.join(KEY_FILE)).map_err(|e| AgentError::Network(e.to_string()))?;
        let status = TunnelStatus(Arc::new(Mutex::new(Status { port, ..Default::default() })));
        Ok(ManagedNetwork { keypair, port, running: None, status, failed: false })
    }

    /// What the stats report reads of this tunnel.
    pub fn status(&self) -> TunnelStatus {
        self.status.clone()
    }

    /// Whether the last plan's tunnel could not start, so it is worth trying again.
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn public_key(&self) -> String {
        self.keypair.public_key().to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Makes the tunnel match `plan`: started for a new lease, its peers updated otherwise,
    /// stopped when there is no plan. A failure is logged, reported, and tried again later.
    pub async fn apply(&mut self, plan: Option<&NetworkPlan>, shutdown: &broadcast::Receiver<()>) {
        self.failed = false;
        let Some((plan, (config, peers))) = plan.and_then(|p| Some((p, tunnel_plan(p, self.port)?))) else {
            if self.running.take().is_some() {
                tracing::info!("managed network gone; tunnel stopped");
            }
            self.status.set(None, None, HashMap::new());
            return;
        };
        let now = Instant::now();
        if let Some((running, overlay)) = &self.running {
            if *running == config {
                if let Err(e) = overlay.set_peers(peers).await {
                    tracing::warn!(error = %e, "cannot update the tunnel's peers");
                }
                self.status.update_hosts(|previous| peer_hosts(plan, previous, false, now));
                return;
            }
        }
        // A new lease or network: the device is made anew (dropping the old one removes it).
        self.running = None;
        self.status.set(None, None, HashMap::new());
        let mut error = None;
        if let Err(e) = ensure_rules(&forwarding_rules(&config)).await {
            tracing::warn!(error = %e, "cannot set the managed network's forwarding rules; containers on other hosts may not reach this one's");
            error = Some(e.to_string());
        }
        match Overlay::start(config.clone(), &self.keypair, peers, shutdown.resubscribe()).await {
            Ok(overlay) => {
                tracing::info!(subnet = %config.local_subnet, port = self.port, "tunnel up");
                let overlay = Arc::new(overlay);
                self.status.set(Some(overlay.clone()), error, peer_hosts(plan, &HashMap::new(), true, now));
                self.running = Some((config, overlay));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the tunnel; containers on other hosts cannot reach this one's");
                self.status.set(None, Some(e.to_string()), HashMap::new());
                self.failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::network::Peer as PlanPeer;

    fn key() -> String {
        KeyPair::generate().public_key().to_string()
    }

    #[test]
    fn plans_become_tunnels_with_the_peers_that_said_where_they_are() {
        let k = key();
        let plan = NetworkPlan {
            network: "10.42.0.0/16".into(),
            subnet: "10.42.1.0/24".into(),
            peers: vec![
                PlanPeer {
                    host_id: "b".into(),
                    name: "b".into(),
                    subnet: "10.42.2.0/24".into(),
                    public_key: Some(k.clone()),
                    endpoint: Some("192.168.1.6:51820".into()),
                },
                PlanPeer { host_id: "c".into(), name: "c".into(), subnet: "10.42.3.0/24".into(), public_key: None, endpoint: None },
                PlanPeer { host_id: "d".into(), name: "d".into(), subnet: "10.42.4.0/24".into(), public_key: Some("junk".into()), endpoint: Some("x".into()) },
            ],
            ..Default::default()
        };
        let (config, peers) = tunnel_plan(&plan, 51820).unwrap();
        assert_eq!((config.device.as_str(), config.local_subnet.to_string()), (DEVICE, "10.42.1.0/24".to_string()));
        assert_eq!(peers.len(), 1, "only the peer with a key and an endpoint: {peers:?}");
        assert_eq!(peers[0].public_key.to_string(), k);
        assert!(tunnel_plan(&NetworkPlan { subnet: "10.43.1.0/24".into(), ..plan.clone() }, 51820).is_none(), "a lease outside the network");
        assert!(tunnel_plan(&NetworkPlan { subnet: "nonsense".into(), ..plan }, 51820).is_none());
    }

    #[test]
    fn traffic_between_managed_subnets_is_forwarded_and_not_masqueraded() {
        let (config, _) =
            tunnel_plan(&NetworkPlan { network: "10.42.0.0/16".into(), subnet: "10.42.1.0/24".into(), peers: vec![], ..Default::default() }, 51820).unwrap();
        let rules = forwarding_rules(&config);
        assert!(rules.iter().any(|(t, c, r)| *t == "nat" && *c == "POSTROUTING" && r.join(" ") == "-s 10.42.1.0/24 -d 10.42.0.0/16 -j RETURN"));
        assert!(rules.iter().any(|(_, c, r)| *c == "DOCKER-USER" && r.join(" ") == format!("-i {DEVICE} -o {BRIDGE} -j ACCEPT")));
    }

    #[test]
    fn peers_keep_the_moment_they_joined_until_the_tunnel_restarts() {
        let (k1, k2) = (key(), key());
        let peer = |host: &str, k: &str| PlanPeer {
            host_id: host.into(),
            name: host.into(),
            subnet: "10.42.2.0/24".into(),
            public_key: Some(k.into()),
            endpoint: None,
        };
        let plan =
            NetworkPlan { network: "10.42.0.0/16".into(), subnet: "10.42.1.0/24".into(), peers: vec![peer("b", &k1), peer("c", &k2)], ..Default::default() };
        let t0 = Instant::now();
        let first = peer_hosts(&plan, &HashMap::new(), true, t0);
        let later = t0 + std::time::Duration::from_secs(30);
        let kept = peer_hosts(&plan, &first, false, later);
        assert_eq!(kept[&k1], ("b".to_string(), t0), "a kept peer keeps its moment");
        let restarted = peer_hosts(&plan, &first, true, later);
        assert_eq!(restarted[&k1].1, later);
        // A key that now names another host is a new peer.
        let moved = NetworkPlan { peers: vec![peer("d", &k1)], ..plan.clone() };
        assert_eq!(peer_hosts(&moved, &first, false, later)[&k1], ("d".to_string(), later));
        let stats = vec![PeerStats {
            public_key: k1.parse().unwrap(),
            endpoint: "10.0.0.2:51820".parse().unwrap(),
            subnet: "10.42.2.0/24".parse().unwrap(),
            last_handshake: Some(std::time::Duration::from_millis(3500)),
            rx_bytes: 7,
            tx_bytes: 9,
        }];
        let reports = peer_reports(&stats, &kept, later);
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(
            (r.host_id.as_str(), r.endpoint.as_str(), r.last_handshake_secs, r.listed_secs, r.rx_bytes, r.tx_bytes),
            ("b", "10.0.0.2:51820", Some(3), 30, 7, 9)
        );
        assert!(peer_reports(&stats, &HashMap::new(), later).is_empty(), "a key the plan does not name");
    }
}
