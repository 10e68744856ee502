//! Hosts on the managed network as users see them, with agents in their hosts' namespaces as on
//! real machines: each tunnel peer's endpoint, last handshake and bytes in `corral network ls` and
//! on the UI's host page; blocked UDP and a taken tunnel port as host problems that say what to
//! check and clear once fixed; a third host reached within 5 s of joining; a host that moves,
//! stops or is removed; agent restarts that keep containers' addresses without the control plane.

use corral_e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const SERVE: &str = "echo hello-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp";

/// A control plane in a bare namespace on the test network (with the web UI) and `n` hosts
/// whose agents run in their own namespaces, so each runs its tunnel.
fn netns_cluster(n: usize) -> Cluster {
    let (ns, ip) = bare_netns(0);
    let ui = repo_root().join("ui/dist");
    let args = vec!["--ui-dir".to_string(), ui.display().to_string()];
    Cluster::start_with(n, Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args }, true)
}

/// Each host's tunnel peers from `corral network ls -o json`, by (host, peer).
fn peers(cp: &ControlPlane) -> BTreeMap<(String, String), Value> {
    let network = cp.json(&["network", "ls"]);
    let mut out = BTreeMap::new();
    for h in network["hosts"].as_array().unwrap() {
        for p in h["tunnel"]["peers"].as_array().into_iter().flatten() {
            out.insert((h["host"].as_str().unwrap().to_string(), p["host"].as_str().unwrap().to_string()), p.clone());
        }
    }
    out
}

/// The host's entry in `corral network ls -o json`.
fn network_host(cp: &ControlPlane, name: &str) -> Value {
    let network = cp.json(&["network", "ls"]);
    network["hosts"].as_array().unwrap().iter().find(|h| h["host"] == name).cloned().unwrap_or(Value::Null)
}

/// The host's problem as `corral host ls -o json` shows it.
fn problem(cp: &ControlPlane, name: &str) -> Option<String> {
    cp.hosts().into_iter().find(|h| h["name"] == name)?["problem"].as_str().map(str::to_string)
}

/// Waits until every pair of `hosts` has a completed handshake both ways.
fn wait_handshakes(cp: &ControlPlane, hosts: &[&str]) -> BTreeMap<(String, String), Value> {
    wait_for("a handshake between every pair of hosts", WAIT, || {
        let p = peers(cp);
        let all = hosts
            .iter()
            .all(|a| hosts.iter().filter(|b| *b != a).all(|b| p.get(&(a.to_string(), b.to_string())).is_some_and(|x| x["last_handshake_secs"].is_u64())));
        all.then_some(p)
    })
}

/// `service create STACK/NAME --scale N ... -- sh -c SERVE`: web servers answering with their name.
fn serve(cp: &ControlPlane, service: &str, extra: &[&str]) {
    let mut args = vec!["service", "create", service, "--image", TEST_IMAGE];
    args.extend(extra);
    args.extend(["--", "sh", "-c", SERVE]);
    cp.json(&args);
}

/// The running containers with their managed address, by host name.
fn by_host(cluster: &Cluster, names: &[String]) -> BTreeMap<String, (String, String)> {
    wait_for("the containers on the managed network", WAIT, || {
        let mut out = BTreeMap::new();
        for e in &cluster.engines {
            for n in e.running_names().into_iter().filter(|n| names.contains(n)) {
                out.insert(e.name.clone(), (n.clone(), managed_address(e, &n)?));
            }
        }
        (out.len() == names.len()).then_some(out)
    })
}

/// Waits until `container` on `from` fetches `want` from `ip`, or fails the test after `within`.
fn reaches(from: &Engine, container: &str, ip: &str, want: &str, within: Duration) {
    wait_for(&format!("{container} on {} to reach {ip}", from.name), within, || (fetch(from, container, ip).as_deref() == Some(want)).then_some(()));
}

/// SIGTERM, as a service manager stops it, and waits for the agent to exit.
fn stop_agent(cluster: &mut Cluster, i: usize) {
    if let Some(mut agent) = cluster.agents[i].take() {
        agent.signal(nix::sys::signal::Signal::SIGTERM);
        agent.wait_exit(Duration::from_secs(15));
    }
}

/// An iptables rule in a test host's namespace, deleted when dropped (also when a test fails).
struct Rule {
    host: String,
    rule: Vec<&'static str>,
}

impl Rule {
    fn insert(host: &str, rule: &[&'static str]) -> Rule {
        let mut args = vec!["iptables", "-I"];
        args.extend(rule);
        let out = in_host_netns(host, &args);
        assert!(out.status.success(), "iptables -I {rule:?} in {host}: {}", text(&out));
        Rule { host: host.into(), rule: rule.to_vec() }
    }
}

impl Drop for Rule {
    fn drop(&mut self) {
        let mut args = vec!["iptables", "-D"];
        args.extend(&self.rule);
        in_host_netns(&self.host, &args);
    }
}

/// Binds UDP `port` in a test host's namespace, as another program holding the tunnel's port would.
fn hold_udp_port(host: &str, port: u16) -> std::net::UdpSocket {
    let ns = std::fs::File::open(format!("/run/netns/corral-{host}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the host's namespace");
        std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind the port in the host's namespace")
    })
    .join()
    .unwrap()
}

#[test]
fn tunnels_are_shown_and_blocked_udp_or_a_taken_port_is_a_host_problem() {
    let mut cluster = netns_cluster(2);
    let (h1, h2) = (cluster.engines[0].clone(), cluster.engines[1].clone());
    let cp_peers = wait_handshakes(&cluster.cp, &[&h1.name, &h2.name]);
    let to_h2 = &cp_peers[&(h1.name.clone(), h2.name.clone())];
    assert_eq!(to_h2["endpoint"], format!("{}:51820", h2.address), "h1 sends to h2's address: {to_h2}");
    assert_eq!(network_host(&cluster.cp, &h1.name)["tunnel"]["state"], "up");

    cluster.cp.json(&["stack", "create", "NET"]);
    serve(&cluster.cp, "NET/web", &["--scale", "2"]);
    let placed = by_host(&cluster, &instance_names("NET-web", 2));
    let ((c1, ip1), (c2, ip2)) = (&placed[&h1.name], &placed[&h2.name]);
    reaches(&h1, c1, ip2, &format!("hello-from-{c2}"), Duration::from_secs(20));
    reaches(&h2, c2, ip1, &format!("hello-from-{c1}"), Duration::from_secs(20));
    // The bytes of that exchange show on both sides with the next reports.
    wait_for("bytes both ways in the tunnel state", Duration::from_secs(20), || {
        let p = peers(&cluster.cp);
        p.values().all(|x| x["rx_bytes"].as_u64() > Some(0) && x["tx_bytes"].as_u64() > Some(0)).then_some(())
    });
    let table = text(&cluster.cp.cli(&["network", "ls"]).output().unwrap());
    let row =
        table.lines().find(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == [h1.name.as_str(), h2.name.as_str(), &format!("{}:51820", h2.address)]);
    assert!(table.contains("HANDSHAKE") && row.is_some_and(|r| r.contains("s ago") && r.contains(" B")), "a row per peer:\n{table}");

    // UDP to h2's tunnel port dropped; h2's agent restarted, so its tunnel needs a new handshake
    // that cannot complete. h2 says which peer and what to check, and nothing crosses.
    let block = Rule::insert(&h2.name, &["INPUT", "-p", "udp", "--dport", "51820", "-j", "DROP"]);
    stop_agent(&mut cluster, 1);
    cluster.start_agent(1);
    let started = Instant::now();
    let said = wait_for("h2's problem about its tunnel", Duration::from_secs(60), || {
        problem(&cluster.cp, &h2.name).filter(|p| p.contains(&format!("no tunnel handshake with host {}", h1.name)))
    });
    println!("blocked UDP shown as a problem after {:?}: {said}", started.elapsed());
    assert!(said.contains(&format!("UDP port 51820 from {} must reach this host", h1.address)), "{said}");
    assert!(started.elapsed() < Duration::from_secs(40), "shown within 40 s, took {:?}", started.elapsed());
    let host_table = text(&cluster.cp.cli(&["host", "ls"]).output().unwrap());
    assert!(host_table.contains(&format!("no tunnel handshake with host {}", h1.name)), "{host_table}");
    assert!(peers(&cluster.cp)[&(h2.name.clone(), h1.name.clone())]["last_handshake_secs"].is_null(), "never, on h2's side");
    assert!(text(&cluster.cp.cli(&["network", "ls"]).output().unwrap()).contains("never"));
    assert_eq!(fetch(&h2, c2, ip1), None, "nothing crosses while UDP is blocked");
    run_browser_script(
        &cluster.cp,
        "network_hosts.mjs",
        &[
            ("HOST_OK", &h1.name),
            ("HOST_BLOCKED", &h2.name),
            ("PEER_ENDPOINT", &format!("{}:51820", h2.address)),
            ("PROBLEM", &format!("no tunnel handshake with host {}", h1.name)),
        ],
    );

    drop(block);
    let unblocked = Instant::now();
    wait_for("the problem to clear once UDP passes", Duration::from_secs(30), || problem(&cluster.cp, &h2.name).is_none().then_some(()));
    println!("cleared {:?} after unblocking", unblocked.elapsed());
    reaches(&h2, c2, ip1, &format!("hello-from-{c1}"), Duration::from_secs(10));

    // Another program holds the tunnel's port when h1's agent starts: the tunnel cannot start,
    // the host says why, and the tunnel comes up by itself once the port is free.
    stop_agent(&mut cluster, 0);
    let holder = hold_udp_port(&h1.name, 51820);
    cluster.start_agent(0);
    let said = wait_for("h1's problem about its port", Duration::from_secs(30), || {
        problem(&cluster.cp, &h1.name).filter(|p| p.contains("the managed network's tunnel cannot start"))
    });
    assert!(said.contains("51820") && said.contains("is another process"), "{said}");
    let tunnel = &network_host(&cluster.cp, &h1.name)["tunnel"];
    assert_eq!(tunnel["state"], "down", "{tunnel}");
    assert!(text(&cluster.cp.cli(&["network", "ls"]).output().unwrap()).contains("tunnel down: cannot bind"));
    drop(holder);
    wait_for("the tunnel up once the port is free", Duration::from_secs(30), || {
        (problem(&cluster.cp, &h1.name).is_none() && network_host(&cluster.cp, &h1.name)["tunnel"]["state"] == "up").then_some(())
    });
    reaches(&h1, c1, ip2, &format!("hello-from-{c2}"), Duration::from_secs(15));
}

#[test]
fn a_third_host_reaches_and_is_reached_within_five_seconds_and_a_removed_one_leaves_every_peer_list() {
    let cluster = netns_cluster(2);
    let (h1, h2) = (cluster.engines[0].clone(), cluster.engines[1].clone());
    let h3 = engines(3).pop().unwrap();
    h3.clear();
    let _clear_h3 = Cleared(h3.clone());
    wait_handshakes(&cluster.cp, &[&h1.name, &h2.name]);
    cluster.cp.json(&["stack", "create", "NET"]);
    serve(&cluster.cp, "NET/web", &["--scale", "2"]);
    // Waits, unplaced, for the third host.
    serve(&cluster.cp, "NET/edge", &["--constraint", &format!("host.zone={}", h3.name)]);
    let placed = by_host(&cluster, &instance_names("NET-web", 2));
    let ((c1, ip1), (c2, ip2)) = (&placed[&h1.name], &placed[&h2.name]);

    let spawned = Instant::now();
    let zone = format!("zone={}", h3.name);
    let mut agent =
        Some(start_agent_in(Some(&format!("corral-{}", h3.name)), &cluster.cp.url, &cluster.join_token, &h3, &cluster.tmp.path().join("agent-h3"), &[&zone]));
    wait_for("the third host active", WAIT, || cluster.cp.hosts().iter().any(|h| h["name"] == h3.name.as_str() && h["state"] == "active").then_some(()));
    let ready = Instant::now();
    // Everything from here is what a user waits for once the host shows up: its container
    // created, its tunnel's handshakes with both hosts, and traffic both ways.
    let deadline = ready + Duration::from_secs(20);
    let edge_ip = loop {
        if let Some(ip) = managed_address(&h3, "NET-edge-1") {
            break ip;
        }
        assert!(Instant::now() < deadline, "NET-edge-1 never got a managed address on {}", h3.name);
        std::thread::sleep(Duration::from_millis(50));
    };
    let both_ways = [
        (&h3, "NET-edge-1", ip1.as_str(), format!("hello-from-{c1}")),
        (&h3, "NET-edge-1", ip2.as_str(), format!("hello-from-{c2}")),
        (&h1, c1.as_str(), edge_ip.as_str(), "hello-from-NET-edge-1".to_string()),
        (&h2, c2.as_str(), edge_ip.as_str(), "hello-from-NET-edge-1".to_string()),
    ];
    for (from, container, ip, want) in &both_ways {
        while fetch(from, container, ip).as_deref() != Some(want.as_str()) {
            assert!(Instant::now() < deadline, "{container} on {} never reached {ip}", from.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let took = ready.elapsed();
    println!("third host: active {:?} after its agent started; reached and reached by both others {took:?} after that", ready - spawned);
    assert!(took <= Duration::from_secs(5), "the third host took {took:?} to reach and be reached by the other two");
    let names = [h1.name.as_str(), h2.name.as_str(), h3.name.as_str()];
    wait_handshakes(&cluster.cp, &names);

    // A stopped host stays in its peers' lists at its last endpoint; a removed one leaves them.
    if let Some(mut a) = agent.take() {
        a.signal(nix::sys::signal::Signal::SIGTERM);
        a.wait_exit(Duration::from_secs(15));
    }
    wait_for("the third host disconnected", WAIT, || {
        let host = cluster.cp.hosts().into_iter().find(|h| h["name"] == h3.name.as_str())?;
        host["status"].as_str()?.starts_with("disconnected since").then_some(())
    });
    std::thread::sleep(Duration::from_secs(6));
    let p = peers(&cluster.cp);
    for h in [&h1, &h2] {
        let kept = p.get(&(h.name.clone(), h3.name.clone())).unwrap_or_else(|| panic!("{} dropped the stopped host: {p:?}", h.name));
        assert_eq!(kept["endpoint"], format!("{}:51820", h3.address), "{} keeps the stopped host's endpoint", h.name);
    }
    cluster.cp.json(&["host", "rm", &h3.name]);
    wait_for("the removed host gone from every peer list", Duration::from_secs(20), || {
        let p = peers(&cluster.cp);
        let gone = !p.keys().any(|(_, peer)| *peer == h3.name);
        let kept = p.contains_key(&(h1.name.clone(), h2.name.clone())) && p.contains_key(&(h2.name.clone(), h1.name.clone()));
        (gone && kept).then_some(())
    });
}

/// Clears a test engine the cluster does not own when dropped.
struct Cleared(Engine);

impl Drop for Cleared {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Test host `name`'s eth0 moved from `from` to `to` (same /24), moved back when dropped.
struct Moved {
    name: String,
    from: String,
    to: String,
}

impl Moved {
    fn to(name: &str, from: &str, to: &str) -> Moved {
        let moved = Moved { name: name.into(), from: from.into(), to: to.into() };
        if let Err(e) = moved.set(to, from) {
            panic!("{e}");
        }
        moved
    }

    fn set(&self, new: &str, old: &str) -> Result<(), String> {
        let (new, old) = (format!("{new}/24"), format!("{old}/24"));
        // The old one goes first: deleting a primary address takes the secondaries of its subnet.
        let steps: [&[&str]; 3] = [
            &["ip", "addr", "del", &old, "dev", "eth0"],
            &["ip", "addr", "add", &new, "dev", "eth0"],
            &["ip", "route", "replace", "default", "via", "10.213.0.1", "dev", "eth0"],
        ];
        for args in steps {
            let out = in_host_netns(&self.name, args);
            if !out.status.success() {
                return Err(format!("{args:?} in {}: {}", self.name, text(&out)));
            }
        }
        Ok(())
    }
}

impl Drop for Moved {
    fn drop(&mut self) {
        // The next `test-hosts.sh up` repairs the address too, should this fail.
        let _ = self.set(&self.from, &self.to);
    }
}

/// Stops the cluster's control plane (SIGTERM), runs `while_down`, and starts it again on the same
/// address in its namespace.
fn control_plane_down(cluster: &mut Cluster, while_down: impl FnOnce(&mut Cluster)) {
    let (ns, ip) = bare_netns(0);
    let port = cluster.cp.url.rsplit(':').next().unwrap().to_string();
    cluster.cp.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(cluster.cp.proc.wait_exit(Duration::from_secs(10)).success(), "the control plane exits cleanly on SIGTERM");
    while_down(cluster);
    let launch = Launch { listen: format!("0.0.0.0:{port}"), netns: Some((ns, ip)), args: vec![] };
    cluster.cp = ControlPlane::launch(&cluster.cp.data_dir.clone(), &launch);
}

#[test]
fn agent_restarts_keep_addresses_and_a_moved_host_is_reannounced() {
    let mut cluster = netns_cluster(2);
    let (h1, h2) = (cluster.engines[0].clone(), cluster.engines[1].clone());
    wait_handshakes(&cluster.cp, &[&h1.name, &h2.name]);
    cluster.cp.json(&["stack", "create", "NET"]);
    serve(&cluster.cp, "NET/web", &["--scale", "2"]);
    let placed = by_host(&cluster, &instance_names("NET-web", 2));
    let ((c1, ip1), (c2, ip2)) = (&placed[&h1.name], &placed[&h2.name]);
    reaches(&h1, c1, ip2, &format!("hello-from-{c2}"), Duration::from_secs(20));

    // Both agents restarted while the control plane is down: the containers keep their
    // addresses (as the engines report them) and the tunnel comes back from the saved plan.
    control_plane_down(&mut cluster, |cluster| {
        for i in 0..2 {
            stop_agent(cluster, i);
            cluster.start_agent(i);
        }
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(by_host(cluster, &instance_names("NET-web", 2)), placed, "the same containers at the same addresses");
        reaches(&h1, c1, ip2, &format!("hello-from-{c2}"), Duration::from_secs(20));
        reaches(&h2, c2, ip1, &format!("hello-from-{c1}"), Duration::from_secs(20));
    });
    cluster.cp.wait_hosts_active(&[&h1.name, &h2.name]);
    assert_eq!(by_host(&cluster, &instance_names("NET-web", 2)), placed, "and still once the control plane is back");

    // h2 moves to another address and its agent restarts from there: h1's tunnel follows.
    let new_address = "10.213.0.112";
    let _moved = Moved::to(&h2.name, &h2.address, new_address);
    stop_agent(&mut cluster, 1);
    cluster.engines[1].address = new_address.to_string();
    let restarted = Instant::now();
    cluster.start_agent(1);
    let endpoint = format!("{new_address}:51820");
    wait_for("h1's peer endpoint for h2 to follow", Duration::from_secs(30), || {
        let p = peers(&cluster.cp);
        (p.get(&(h1.name.clone(), h2.name.clone()))?["endpoint"] == endpoint.as_str()).then_some(())
    });
    println!("h1 sends to h2's new address {:?} after h2's agent restarted", restarted.elapsed());
    // The control plane learns it from the hello and announces it in h1's plan.
    wait_for("the control plane to know h2's new address", Duration::from_secs(30), || {
        (network_host(&cluster.cp, &h2.name)["address"] == new_address).then_some(())
    });
    println!("h2's new address announced {:?} after its agent restarted", restarted.elapsed());
    reaches(&h1, c1, ip2, &format!("hello-from-{c2}"), Duration::from_secs(20));
    reaches(&h2, c2, ip1, &format!("hello-from-{c1}"), Duration::from_secs(20));
    stop_agent(&mut cluster, 1);
    cluster.engines[1].address = h2.address.clone();
}
