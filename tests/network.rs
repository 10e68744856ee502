//! The managed network on real engines: each host leases a /24 of its environment's network,
//! kept across control-plane and agent restarts and released when the host is removed; every
//! service container joins the engine's managed network with an address in its host's lease (as
//! the engine itself reports it); environments' networks never overlap each other or a network
//! a host is on.

use corral_e2e::*;
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

/// The device host `name`'s namespace reaches `address` through.
fn link_device(name: &str, address: &str) -> String {
    let out =
        std::process::Command::new("nsenter").arg(format!("--net=/run/netns/corral-{name}")).args(["ip", "-o", "route", "get", address]).output().unwrap();
    let route = String::from_utf8_lossy(&out.stdout).to_string();
    route.split_whitespace().skip_while(|w| *w != "dev").nth(1).unwrap_or_else(|| panic!("no route to {address} in {name}: {route}")).to_string()
}

/// Containers on two hosts (agents in their hosts' namespaces, as on real machines) reach each
/// other's managed addresses through the hosts' tunnel, both ways; the link between the hosts
/// carries only tunnel datagrams, no clear text; and traffic goes on with the control plane killed.
#[test]
fn containers_on_two_hosts_reach_each_other_through_the_tunnel() {
    let (ns, ip) = bare_netns(0);
    let launch = Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args: vec![] };
    let mut cluster = Cluster::start_with(2, launch, true);
    let cp = &cluster.cp;
    wait_for("both hosts' tunnels known", WAIT, || {
        let n = cp.json(&["network", "ls"]);
        let hosts = n["hosts"].as_array()?.clone();
        (hosts.len() == 2 && hosts.iter().all(|h| h["public_key"].is_string() && h["tunnel_port"] == 51820)).then_some(())
    });
    cp.json(&["stack", "create", "NET"]);
    cp.json(&[
        "service",
        "create",
        "NET/web",
        "--image",
        TEST_IMAGE,
        "--scale",
        "2",
        "--",
        "sh",
        "-c",
        "echo hello-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    cluster.wait_exactly("two instances", &instance_names("NET-web", 2), WAIT);
    let placed = wait_for("both containers on the managed network", WAIT, || {
        let a = addresses(&cluster);
        a.values().all(|(_, ip)| ip.is_some()).then_some(a)
    });
    let by_host: BTreeMap<String, (String, String)> = placed.iter().map(|(name, (host, ip))| (host.clone(), (name.clone(), ip.clone().unwrap()))).collect();
    assert_eq!(by_host.len(), 2, "one container on each host: {placed:?}");
    let (h1, h2) = (&cluster.engines[0], &cluster.engines[1]);
    let ((c1, ip1), (c2, ip2)) = (&by_host[&h1.name], &by_host[&h2.name]);
    let across = |from: &Engine, c: &str, ip: &str, want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while fetch(from, c, ip).as_deref() != Some(want) {
            if std::time::Instant::now() > deadline {
                let mut why = String::new();
                for (i, e) in cluster.engines.iter().enumerate() {
                    let ns = format!("/run/netns/corral-{}", e.name);
                    for cmd in [&["ip", "addr"][..], &["ip", "route"], &["iptables", "-S"], &["iptables", "-t", "nat", "-S"]] {
                        let out = std::process::Command::new("nsenter").arg(format!("--net={ns}")).args(cmd).output().unwrap();
                        why.push_str(&format!("--- {} {cmd:?}\n{}\n", e.name, text(&out)));
                    }
                    why.push_str(&std::fs::read_to_string(cluster.state_dir(i).with_extension("agent.log")).unwrap_or_default());
                }
                panic!("{c} on {} cannot fetch from {ip}:\n{why}", from.name);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    across(h1, c1, ip2, &format!("hello-from-{c2}"));
    across(h2, c2, ip1, &format!("hello-from-{c1}"));

    // On the link between the hosts the exchange is tunnel datagrams, never the text.
    let link = link_device(&h1.name, &h2.address);
    let capture = cluster.tmp.path().join("link.pcap");
    let mut tcpdump = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/corral-{}", h1.name))
        .args(["tcpdump", "-U", "-n", "-i", &link, "-w"])
        .arg(&capture)
        .arg(format!("host {}", h2.address))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run tcpdump (scripts/setup.sh installs it)");
    std::thread::sleep(Duration::from_millis(800));
    for _ in 0..3 {
        assert_eq!(fetch(h1, c1, ip2).as_deref(), Some(format!("hello-from-{c2}").as_str()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(tcpdump.id() as i32), nix::sys::signal::Signal::SIGINT);
    let _ = tcpdump.wait();
    let bytes = std::fs::read(&capture).unwrap();
    let seen = String::from_utf8_lossy(&bytes);
    let tunnel_packets = text(&std::process::Command::new("tcpdump").args(["-n", "-r"]).arg(&capture).arg("udp port 51820").output().unwrap());
    assert!(tunnel_packets.lines().filter(|l| l.contains("UDP")).count() >= 6, "the exchange crossed the link as tunnel datagrams: {tunnel_packets}");
    assert!(!seen.contains("hello-from") && !seen.contains("GET / HTTP"), "clear text on the link between the hosts");

    // With the control plane gone, the tunnel and the addresses stay.
    cluster.cp.proc.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = cluster.cp.proc.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fetch(h1, c1, ip2).as_deref(), Some(format!("hello-from-{c2}").as_str()), "across hosts without the control plane");
    assert_eq!(fetch(h2, c2, ip1).as_deref(), Some(format!("hello-from-{c1}").as_str()));
}

/// A host of another environment is never a peer: its containers and this environment's cannot
/// reach each other, though both hosts run their tunnels on the same link.
#[test]
fn another_environments_containers_cannot_be_reached() {
    let (ns, ip) = bare_netns(0);
    let launch = Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args: vec![] };
    let cluster = Cluster::start_with(1, launch, true);
    let cp = &cluster.cp;
    let h1 = &cluster.engines[0];
    let h2 = engines(2).pop().unwrap();
    h2.clear();
    cp.json(&["env", "create", "DEV"]);
    let token = cp.json(&["--env", "DEV", "host", "join-command"])["token"].as_str().unwrap().to_string();
    let _dev_agent = start_agent_in(Some(&format!("corral-{}", h2.name)), &cp.url, &token, &h2, &cluster.tmp.path().join("agent-dev"), &[]);
    let serve = ["sh", "-c", "echo hello-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"];
    for env in ["Default", "DEV"] {
        cp.json(&["--env", env, "stack", "create", "ISO"]);
        let mut args = vec!["--env", env, "service", "create", "ISO/web", "--image", TEST_IMAGE, "--"];
        args.extend(serve);
        cp.json(&args);
    }
    let address = |engine: &Engine| wait_for(&format!("ISO-web-1 on {} on the managed network", engine.name), WAIT, || managed_address(engine, "ISO-web-1"));
    let (ops_ip, dev_ip) = (address(h1), address(&h2));
    assert!(ops_ip.starts_with("10.42.") && dev_ip.starts_with("10.43."), "each in its environment's range: {ops_ip}, {dev_ip}");
    for env in ["Default", "DEV"] {
        let n = cp.json(&["--env", env, "network", "ls"]);
        assert_eq!(n["hosts"].as_array().unwrap().len(), 1, "one host in {env}: {n}");
    }
    // Both hosts are on one link; only the peer lists keep their containers apart.
    for _ in 0..3 {
        assert_eq!(fetch(&h2, "ISO-web-1", &ops_ip), None, "a DEV container reached an OPS one");
        assert_eq!(fetch(h1, "ISO-web-1", &dev_ip), None, "an OPS container reached a DEV one");
    }
    // The same containers do answer on their own host, so the refusals above are the network's.
    assert_eq!(fetch(h1, "ISO-web-1", &ops_ip).as_deref(), Some("hello-from-ISO-web-1"));
    assert_eq!(fetch(&h2, "ISO-web-1", &dev_ip).as_deref(), Some("hello-from-ISO-web-1"));
}
