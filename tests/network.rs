//! The managed network on real engines: each host leases a /24 of its environment's network,
//! kept across control-plane and agent restarts and released when the host is removed; every
//! service container joins the engine's managed network with an address in its host's lease (as
//! the engine itself reports it); environments' networks never overlap each other or a network
//! a host is on.

use corral_e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Each host's subnet, by host name, from `corral network ls`.
fn leases(cp: &ControlPlane) -> BTreeMap<String, String> {
    let network = cp.json(&["network", "ls"]);
    network["hosts"].as_array().unwrap().iter().filter_map(|h| Some((h["host"].as_str()?.to_string(), h["subnet"].as_str()?.to_string()))).collect()
}

fn wait_leases(cp: &ControlPlane, n: usize) -> BTreeMap<String, String> {
    wait_for(&format!("{n} hosts with a subnet"), WAIT, || Some(leases(cp)).filter(|l| l.len() == n))
}

/// The address the engine gives `container` on the managed network, if it is on it.
fn managed_address(engine: &Engine, container: &str) -> Option<String> {
    let out = engine.docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", container]);
    let networks: Value = serde_json::from_slice(&out.stdout).ok()?;
    networks.as_object()?.get("corral-managed")?["IPAddress"].as_str().filter(|ip| !ip.is_empty()).map(str::to_string)
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let (ip, net): (std::net::Ipv4Addr, ipnet::Ipv4Net) = (ip.parse().unwrap(), subnet.parse().unwrap());
    net.contains(&ip)
}

/// Every running container of the cluster with the engine's managed address, by name.
fn addresses(cluster: &Cluster) -> BTreeMap<String, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    for e in &cluster.engines {
        for name in e.running_names() {
            out.insert(name.clone(), (e.name.clone(), managed_address(e, &name)));
        }
    }
    out
}

#[test]
fn hosts_lease_subnets_and_containers_take_addresses_in_them() {
    let mut cluster = Cluster::start(2);
    let cp = &cluster.cp;
    let envs = cp.json(&["env", "ls"]);
    assert_eq!(envs[0]["subnet"], "10.42.0.0/16", "the default environment's network: {envs}");

    let leases_before = wait_leases(cp, 2);
    let subnets: Vec<&String> = leases_before.values().collect();
    assert_ne!(subnets[0], subnets[1], "two hosts never share a subnet: {leases_before:?}");
    for s in &subnets {
        let net: ipnet::Ipv4Net = s.parse().unwrap();
        assert!(net.prefix_len() == 24 && "10.42.0.0/16".parse::<ipnet::Ipv4Net>().unwrap().contains(&net), "{s}");
    }
    let table = text(&cp.cli(&["network", "ls"]).output().unwrap());
    assert!(table.contains("managed network 10.42.0.0/16 of environment Default") && subnets.iter().all(|s| table.contains(s.as_str())), "{table}");

    // Every container joins the managed network with an address in its own host's subnet, as
    // the engine reports it, and `ps` shows that address.
    cp.json(&["stack", "create", "NET"]);
    cp.json(&["service", "create", "NET/web", "--image", TEST_IMAGE, "--scale", "4", "--", "sleep", "3600"]);
    cluster.wait_exactly("four instances", &instance_names("NET-web", 4), WAIT);
    let placed = wait_for("every container on the managed network", WAIT, || {
        let a = addresses(&cluster);
        a.values().all(|(_, ip)| ip.is_some()).then_some(a)
    });
    let ps = cp.json(&["ps"]);
    for (name, (host, ip)) in &placed {
        let ip = ip.as_deref().unwrap();
        assert!(in_subnet(ip, &leases_before[host]), "{name} on {host} has {ip}, outside {}", leases_before[host]);
        let row = ps.as_array().unwrap().iter().find(|c| c["name"] == name.as_str()).unwrap();
        assert_eq!(row["ip"], ip, "ps shows the managed address of {name}: {row}");
    }
    assert!(placed.values().map(|(h, _)| h).collect::<std::collections::BTreeSet<_>>().len() == 2, "spread over both hosts: {placed:?}");

    // Restarts of the control plane and of an agent keep leases and addresses.
    cluster.cp.restart_in_place(|| {});
    cluster.cp.wait_hosts_active(&[&cluster.engines[0].name, &cluster.engines[1].name]);
    assert_eq!(wait_leases(&cluster.cp, 2), leases_before, "the same leases after the control plane restarted");
    cluster.kill_agent(0);
    cluster.start_agent(0);
    cluster.cp.wait_hosts_active(&[&cluster.engines[0].name, &cluster.engines[1].name]);
    assert_eq!(leases(&cluster.cp), leases_before, "the same leases after an agent restarted");
    assert_eq!(addresses(&cluster), placed, "the same containers at the same addresses");

    // A removed host's lease is released.
    let h2 = cluster.engines[1].name.clone();
    cluster.kill_agent(1);
    wait_for("the host disconnected", WAIT, || {
        let host = cluster.cp.hosts().into_iter().find(|h| h["name"] == h2.as_str())?;
        host["status"].as_str()?.starts_with("disconnected since").then_some(())
    });
    cluster.cp.json(&["host", "rm", &h2]);
    let left = leases(&cluster.cp);
    assert_eq!(left.keys().collect::<Vec<_>>(), [&cluster.engines[0].name], "{left:?}");
}

#[test]
fn environments_get_networks_that_never_overlap() {
    let cluster = Cluster::start(1);
    let cp = &cluster.cp;
    wait_leases(cp, 1);
    let dev = cp.json(&["env", "create", "DEV"]);
    assert_eq!(dev["subnet"], "10.43.0.0/16", "the next free range: {dev}");
    let made = text(&cp.cli(&["env", "create", "QA", "--subnet", "192.168.64.0/20"]).output().unwrap());
    assert!(made.contains("created environment QA with the managed network 192.168.64.0/20"), "{made}");

    let before = cp.json(&["env", "ls"]);
    for (subnet, says) in [
        ("10.42.128.0/17", "overlaps 10.42.0.0/16, the managed network of environment Default"),
        ("10.43.0.0/16", "environment DEV"),
        // The test hosts' bridge is a network the agents' machine is on.
        ("10.213.0.0/16", "a network host"),
        ("10.50.0.0/24", "too small for two hosts"),
        ("10.50.1.0/16", "did you mean 10.50.0.0/16"),
        ("8.8.0.0/16", "not a private range"),
        ("nonsense", "CIDR"),
    ] {
        let err = cp.fails(&["env", "create", "BAD", "--subnet", subnet]);
        assert!(err.contains(says), "{subnet}: {err}");
    }
    assert_eq!(cp.json(&["env", "ls"]), before, "refused environments changed nothing");
    let table = text(&cp.cli(&["env", "ls"]).output().unwrap());
    assert!(table.contains("NETWORK") && table.contains("192.168.64.0/20"), "{table}");
}
