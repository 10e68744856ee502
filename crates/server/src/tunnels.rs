//! Hosts' tunnels as their agents report them: each host's last report (checked against the plan
//! it was sent, kept in the hub), and the host problems it shows: a tunnel that cannot start, or a
//! peer whose agent is connected but with which no handshake completes (UDP blocked somewhere).
//!
//! [`problems`] is the pure decision; [`take_report`] the thin layer a session calls.

use crate::state::AppState;
use corral_proto::network::TunnelReport;
use serde::Serialize;
use std::time::{Duration, Instant};

/// A peer met this long ago without a handshake is one the tunnel cannot reach: a handshake is
/// tried at once and again every 5 s, so this is three tries.
pub const FIRST_HANDSHAKE_WITHIN: Duration = Duration::from_secs(15);
/// A live tunnel renews its session every two minutes at most (WireGuard's rekey time, with
/// keepalives every 25 s); a session this old is rejected by both ends, so no traffic passes.
pub const HANDSHAKE_STALE_AFTER: Duration = Duration::from_secs(180);

/// A host's tunnel as its agent last said, with only the peers its plan names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunnelState {
    pub running: bool,
    /// Why it does not run (or runs without its forwarding rules).
    pub error: Option<String>,
    /// The UDP port it listens on.
    pub port: u16,
    pub peers: Vec<PeerState>,
    /// When the report came; its figures age from here.
    #[serde(skip)]
    pub received: Instant,
}

/// One peer of a host's tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerState {
    pub host_id: String,
    /// The peer host's name, from the plan.
    pub host: String,
    pub subnet: String,
    /// Where the tunnel sends to it now (`ADDRESS:PORT`).
    pub endpoint: String,
    /// Seconds since the last completed handshake; `None`: never.
    pub last_handshake_secs: Option<u64>,
    /// Seconds the peer has been in the tunnel.
    pub listed_secs: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl TunnelState {
    /// The report as of `now`: times grown by the time since it came.
    pub fn aged(&self, now: Instant) -> TunnelState {
        let by = now.saturating_duration_since(self.received).as_secs();
        let mut out = self.clone();
        for p in &mut out.peers {
            p.last_handshake_secs = p.last_handshake_secs.map(|s| s.saturating_add(by));
            p.listed_secs = p.listed_secs.saturating_add(by);
        }
        out.received = now;
        out
    }
}

/// How a peer host stands, as far as this host's tunnel to it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSide {
    /// Its agent is not connected: its own status says so; its peers keep its last endpoint.
    Away,
    /// Its agent is connected but its own tunnel does not run: its problem says why.
    TunnelDown,
    /// Its agent is connected and its tunnel runs (or has not reported yet).
    Up,
}

/// What the host's tunnel says is wrong, each with what to check: it cannot start, or a peer
/// whose agent is connected and whose tunnel runs has had no handshake with it for too long.
pub fn problems(tunnel: &TunnelState, side: impl Fn(&str) -> PeerSide) -> Vec<String> {
    if let Some(error) = &tunnel.error {
        let what = if tunnel.running { "the managed network's forwarding rules are missing" } else { "the managed network's tunnel cannot start" };
        return vec![format!("{what}: {error}; containers on other hosts cannot reach this host's")];
    }
    if !tunnel.running {
        return Vec::new();
    }
    tunnel
        .peers
        .iter()
        .filter(|p| side(&p.host_id) == PeerSide::Up)
        .filter_map(|p| {
            // The text stays the same while the problem lasts, so it is written (and logged) once;
            // the seconds themselves are in the tunnel's state.
            let since = match p.last_handshake_secs {
                None if p.listed_secs >= FIRST_HANDSHAKE_WITHIN.as_secs() => format!("no tunnel handshake with host {} yet", p.host),
                Some(s) if s >= HANDSHAKE_STALE_AFTER.as_secs() => {
                    format!("no tunnel handshake with host {} for over {} s", p.host, HANDSHAKE_STALE_AFTER.as_secs())
                }
                _ => return None,
            };
            let peer_ip = p.endpoint.rsplit_once(':').map_or(p.endpoint.as_str(), |(ip, _)| ip);
            let peer_port = p.endpoint.rsplit_once(':').map_or("", |(_, port)| port);
            Some(format!(
                "{since} though its agent is connected: UDP port {} from {peer_ip} must reach this host, and UDP port {peer_port} on {peer_ip} must be reachable from it (check firewalls and security groups on both)",
                tunnel.port
            ))
        })
        .collect()
}

/// Takes a host's tunnel report: checks it against the host's plan, keeps it in the hub, and
/// returns the host's tunnel problems as of now.
pub fn take_report(state: &AppState, host_id: &str, report: TunnelReport) -> Vec<String> {
    let plan = state.hub.network_plan(host_id);
    let tunnel = crate::validate::agent::tunnel(report, plan.as_ref(), Instant::now());
    let found = problems(&tunnel, |peer| {
        if !state.hub.is_connected(peer) {
            PeerSide::Away
        } else if state.hub.tunnel(peer).is_some_and(|t| !t.running) {
            PeerSide::TunnelDown
        } else {
            PeerSide::Up
        }
    });
    state.hub.record_tunnel(host_id, Some(tunnel));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(host: &str, handshake: Option<u64>, listed: u64) -> PeerState {
        PeerState {
            host_id: format!("id-{host}"),
            host: host.into(),
            subnet: "10.42.2.0/24".into(),
            endpoint: "10.213.0.12:51820".into(),
            last_handshake_secs: handshake,
            listed_secs: listed,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    fn tunnel(peers: Vec<PeerState>) -> TunnelState {
        TunnelState { running: true, error: None, port: 51820, peers, received: Instant::now() }
    }

    #[test]
    fn a_peer_without_a_handshake_is_a_problem_only_once_it_had_time_and_is_connected() {
        let up = |_: &str| PeerSide::Up;
        assert!(problems(&tunnel(vec![peer("h2", None, 3)]), up).is_empty(), "a peer just met");
        assert!(problems(&tunnel(vec![peer("h2", Some(100), 400)]), up).is_empty(), "a session renewed in time");
        let found = problems(&tunnel(vec![peer("h2", None, 20), peer("h3", Some(1), 20)]), up);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("no tunnel handshake with host h2 yet though its agent is connected"), "{}", found[0]);
        assert_eq!(problems(&tunnel(vec![peer("h2", None, 25)]), up), problems(&tunnel(vec![peer("h2", None, 20)]), up), "the same text while it lasts");
        assert!(found[0].contains("UDP port 51820 from 10.213.0.12 must reach this host"), "{}", found[0]);
        let stale = problems(&tunnel(vec![peer("h2", Some(200), 900)]), up);
        assert!(stale[0].contains("for over 180 s"), "{stale:?}");
        // A peer whose agent is away, or whose own tunnel is down, has its own status saying so.
        assert!(problems(&tunnel(vec![peer("h2", None, 60)]), |_| PeerSide::Away).is_empty());
        assert!(problems(&tunnel(vec![peer("h2", None, 60)]), |_| PeerSide::TunnelDown).is_empty());
    }

    #[test]
    fn a_tunnel_that_cannot_start_says_why() {
        let down = TunnelState { running: false, error: Some("cannot bind the tunnel's UDP port 0.0.0.0:51820: Address in use".into()), ..tunnel(vec![]) };
        let found = problems(&down, |_| PeerSide::Up);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("the managed network's tunnel cannot start: cannot bind"), "{}", found[0]);
        assert!(problems(&TunnelState { running: false, ..tunnel(vec![peer("h2", None, 60)]) }, |_| PeerSide::Up).is_empty(), "no lease, no tunnel");
    }

    #[test]
    fn reports_age_from_when_they_came() {
        let t = tunnel(vec![peer("h2", Some(3), 10), peer("h3", None, 10)]);
        let later = t.aged(t.received + Duration::from_secs(4));
        assert_eq!(later.peers[0].last_handshake_secs, Some(7));
        assert_eq!(later.peers[1].last_handshake_secs, None);
        assert_eq!(later.peers[1].listed_secs, 14);
    }
}
