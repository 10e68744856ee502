//! Decisions about the managed network, as pure functions of what the store holds: which network
//! a new environment gets, whether one may be laid where asked, which `/24` a host leases, and
//! the plan each host is sent (its lease and its environment's other hosts as peers).

use crate::error::{ApiError, ApiResult};
use corral_proto::network::{NetworkPlan, Peer, DEFAULT_TUNNEL_PORT};
use corral_store::network::Lease;
use corral_store::Store;
use ipnet::Ipv4Net;

/// The prefix of one host's lease.
pub const LEASE_PREFIX: u8 = 24;

/// Reads a stored or reported CIDR; `None` for text that is not one (it was checked before it
/// was stored, so this is only a guard).
pub fn cidr(text: &str) -> Option<Ipv4Net> {
    text.parse().ok()
}

/// Whether two networks share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The network a new environment gets when none is asked for: the first of 10.42.0.0/16,
/// 10.43.0.0/16, … 10.255.0.0/16 that overlaps no other environment's network and no host's.
pub fn default_environment_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    (42..=255u8).map(|b| Ipv4Net::new([10, b, 0, 0].into(), 16).expect("a /16")).find(|n| !taken.iter().any(|t| overlaps(n, t)))
}

/// Why `wanted` may not be an environment's managed network, if it may not: it overlaps another
/// environment's (`others`: name and network) or a network a host is on (`host_networks`: host
/// name and network).
pub fn subnet_conflict(wanted: &Ipv4Net, others: &[(String, Ipv4Net)], host_networks: &[(String, Ipv4Net)]) -> Option<String> {
    if let Some((env, net)) = others.iter().find(|(_, n)| overlaps(wanted, n)) {
        return Some(format!("{wanted} overlaps {net}, the managed network of environment {env}: environments' networks never meet; pick another range"));
    }
    if let Some((host, net)) = host_networks.iter().find(|(_, n)| overlaps(wanted, n)) {
        return Some(format!("{wanted} overlaps {net}, a network host {host} is on: its containers could not reach it; pick another range"));
    }
    None
}

/// The managed network for a new environment: `asked` once checked against every other
/// environment's network and every host's own networks, or the next free range.
pub async fn new_environment_subnet(store: &Store, asked: Option<&str>) -> ApiResult<Ipv4Net> {
    let others: Vec<(String, Ipv4Net)> = store.environment_subnets().await?.into_iter().filter_map(|(env, n)| Some((env, cidr(&n)?))).collect();
    // A host's networks inside a managed network are that network's own bridge, not the host's.
    let hosts: Vec<(String, Ipv4Net)> = store
        .host_networks()
        .await?
        .into_iter()
        .filter_map(|(host, n)| Some((host, cidr(&n)?)))
        .filter(|(_, n)| !others.iter().any(|(_, o)| o.contains(n)))
        .collect();
    match asked {
        Some(text) => {
            let wanted = crate::validate::managed_subnet(text)?;
            match subnet_conflict(&wanted, &others, &hosts) {
                Some(why) => Err(ApiError::invalid("subnet", why)),
                None => Ok(wanted),
            }
        }
        None => {
            let taken: Vec<Ipv4Net> = others.iter().chain(&hosts).map(|(_, n)| *n).collect();
            default_environment_subnet(&taken)
                .ok_or_else(|| ApiError::invalid("subnet", "no 10.N.0.0/16 range is free for a new environment's managed network: give one with --subnet CIDR"))
        }
    }
}

/// Gives every environment made before managed networks existed (beyond what the migration
/// numbered) a range of its own.
pub async fn number_environments(store: &Store) -> corral_store::Result<()> {
    let given = store
        .ensure_environment_subnets(|taken| {
            let taken: Vec<Ipv4Net> = taken.iter().filter_map(|t| cidr(t)).collect();
            default_environment_subnet(&taken).map(|n| n.to_string())
        })
        .await?;
    if given > 0 {
        tracing::info!(given, "environments given a managed network");
    }
    Ok(())
}

/// Gives the host its lease in its environment's managed network (the one it has, or a new
/// one, `wanted` first); returns why it has none when its environment's network is full.
pub async fn lease_host(store: &Store, host_id: &str, env: &corral_store::Environment, wanted: Option<&str>) -> corral_store::Result<Option<String>> {
    let Some(network) = env.subnet.as_deref().and_then(cidr) else {
        return Ok(Some(format!("environment {} has no managed network yet; restart the control plane to give it one", env.name)));
    };
    match store.lease_for_host(host_id, env.id, |taken| choose_lease(&network, taken, wanted)).await? {
        Some(subnet) => {
            tracing::info!(host_id, %subnet, "host leases its subnet of the managed network");
            Ok(None)
        }
        None => Ok(Some(format!(
            "no /24 of the managed network {network} is free for this host: its containers join the engine's default bridge instead; remove hosts that are gone, or move hosts to an environment with a wider network"
        ))),
    }
}

/// The `/24` a host leases in `network`: the one it `wanted` (what it held before a lost
/// database) if that is in the network and free, else the first free one, the network's first
/// `/24` last (it is the one people mistake for the network itself). `None` when all are taken.
pub fn choose_lease(network: &Ipv4Net, taken: &[String], wanted: Option<&str>) -> Option<String> {
    let taken: Vec<Ipv4Net> = taken.iter().filter_map(|t| cidr(t)).collect();
    let free = |n: &Ipv4Net| !taken.iter().any(|t| overlaps(n, t));
    if let Some(w) = wanted.and_then(cidr) {
        if w.prefix_len() == LEASE_PREFIX && network.contains(&w) && free(&w) {
            return Some(w.to_string());
        }
    }
    let all: Vec<Ipv4Net> = network.subnets(LEASE_PREFIX).ok()?.collect();
    all.iter().skip(1).chain(all.first()).find(|n| free(n)).map(|n| n.to_string())
}

/// What `host` is told about the managed network: its lease in `network`, and every other
/// leased host of the same environment (`leases` may hold other environments': they are left
/// out) as a peer, with its tunnel once its agent has said where it is.
pub fn plan_for(host_id: &str, network: &str, leases: &[Lease]) -> Option<NetworkPlan> {
    let own = leases.iter().find(|l| l.host_id == host_id)?;
    let peers = leases
        .iter()
        .filter(|l| l.environment_id == own.environment_id && l.host_id != host_id)
        .map(|l| Peer {
            host_id: l.host_id.clone(),
            name: l.host_name.clone(),
            subnet: l.subnet.clone(),
            public_key: l.tunnel_key.clone(),
            endpoint: l.tunnel_key.as_ref().map(|_| endpoint(&l.address, l.tunnel_port.unwrap_or(DEFAULT_TUNNEL_PORT))),
        })
        .collect();
    Some(NetworkPlan { network: network.to_string(), subnet: own.subnet.clone(), peers, ..NetworkPlan::default() })
}

/// `ADDRESS:PORT`, with an IPv6 address in brackets.
fn endpoint(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn new_environments_take_the_next_free_range() {
        assert_eq!(default_environment_subnet(&[]), Some(net("10.42.0.0/16")));
        assert_eq!(default_environment_subnet(&[net("10.42.0.0/16"), net("10.43.7.0/24")]), Some(net("10.44.0.0/16")));
        let all: Vec<Ipv4Net> = vec![net("10.0.0.0/8")];
        assert_eq!(default_environment_subnet(&all), None);
    }

    #[test]
    fn overlapping_ranges_are_named_with_what_they_overlap() {
        let others = vec![("OPS".to_string(), net("10.42.0.0/16"))];
        let hosts = vec![("h1".to_string(), net("192.168.1.0/24"))];
        let why = subnet_conflict(&net("10.42.128.0/17"), &others, &hosts).unwrap();
        assert!(why.contains("10.42.0.0/16") && why.contains("environment OPS"), "{why}");
        let why = subnet_conflict(&net("192.168.0.0/16"), &others, &hosts).unwrap();
        assert!(why.contains("host h1") && why.contains("192.168.1.0/24"), "{why}");
        assert_eq!(subnet_conflict(&net("10.50.0.0/16"), &others, &hosts), None);
    }

    #[test]
    fn leases_are_stable_and_never_shared() {
        let n = net("10.42.0.0/16");
        assert_eq!(choose_lease(&n, &[], None).as_deref(), Some("10.42.1.0/24"));
        let taken = vec!["10.42.1.0/24".to_string(), "10.42.2.0/24".to_string()];
        assert_eq!(choose_lease(&n, &taken, None).as_deref(), Some("10.42.3.0/24"));
        // After a lost database the host asks for what it had, and gets it back while free.
        assert_eq!(choose_lease(&n, &taken, Some("10.42.9.0/24")).as_deref(), Some("10.42.9.0/24"));
        assert_eq!(choose_lease(&n, &taken, Some("10.42.2.0/24")).as_deref(), Some("10.42.3.0/24"), "taken by another");
        assert_eq!(choose_lease(&n, &taken, Some("10.43.9.0/24")).as_deref(), Some("10.42.3.0/24"), "outside the network");
        assert_eq!(choose_lease(&n, &taken, Some("10.42.9.0/25")).as_deref(), Some("10.42.3.0/24"), "not a /24");
        // A /23 holds two hosts, the first /24 last.
        let small = net("10.60.0.0/23");
        assert_eq!(choose_lease(&small, &[], None).as_deref(), Some("10.60.1.0/24"));
        assert_eq!(choose_lease(&small, &["10.60.1.0/24".into()], None).as_deref(), Some("10.60.0.0/24"));
        assert_eq!(choose_lease(&small, &["10.60.1.0/24".into(), "10.60.0.0/24".into()], None), None);
    }

    fn lease(host: &str, env: i64, subnet: &str, key: Option<&str>) -> Lease {
        Lease {
            host_id: host.into(),
            host_name: format!("name-{host}"),
            environment_id: env,
            subnet: subnet.into(),
            address: "192.168.1.5".into(),
            tunnel_key: key.map(str::to_string),
            tunnel_port: None,
        }
    }

    #[test]
    fn plans_list_the_same_environment_only() {
        let leases = vec![
            lease("a", 1, "10.42.1.0/24", Some("KA")),
            lease("b", 1, "10.42.2.0/24", Some("KB")),
            lease("c", 1, "10.42.3.0/24", None),
            lease("d", 2, "10.43.1.0/24", Some("KD")),
        ];
        let plan = plan_for("a", "10.42.0.0/16", &leases).unwrap();
        assert_eq!(plan.subnet, "10.42.1.0/24");
        let names: Vec<&str> = plan.peers.iter().map(|p| p.host_id.as_str()).collect();
        assert_eq!(names, ["b", "c"], "never another environment's host");
        assert_eq!(plan.peers[0].endpoint.as_deref(), Some("192.168.1.5:51820"));
        assert_eq!(plan.peers[1].endpoint, None, "no tunnel said yet");
        assert_eq!(plan_for("z", "10.42.0.0/16", &leases), None, "no lease, no plan");
    }
}
