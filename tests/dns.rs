//! Service-discovery DNS on real engines, with agents in their hosts' network namespaces (as on
//! real machines): containers find each other by `SERVICE` (same stack), `SERVICE.STACK` and
//! container name across hosts, through the engine's own resolver and the agent's DNS server on
//! the managed network's gateway; requests by service name spread over the instances; names keep
//! resolving with the control plane killed; a scale-down leaves no stale answer; and another
//! environment's names are never answered.

use corral_e2e::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const SERVE: &str = "echo hello-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp";

/// The body of `GET /` from `host`:80 (a name resolved inside the container, or an address),
/// asked with busybox `nc` inside `container` on `engine`, when it answered.
fn fetch(engine: &Engine, container: &str, host: &str) -> Option<String> {
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80");
    let out = engine.docker(&["exec", container, "sh", "-c", &request]);
    let reply = String::from_utf8_lossy(&out.stdout).to_string();
    let (_, body) = reply.split_once("\r\n\r\n")?;
    out.status.success().then(|| body.trim().to_string())
}

/// [`fetch`] until it answers `want`, for `timeout` at most; panics with the agents' logs.
fn fetch_until(cluster: &Cluster, engine: &Engine, container: &str, host: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        last = fetch(engine, container, host);
        if last.as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs: String =
        (0..cluster.engines.len()).map(|i| std::fs::read_to_string(cluster.state_dir(i).with_extension("agent.log")).unwrap_or_default()).collect();
    panic!("{container} on {} fetching {host}: {last:?}, not {want:?}\n{logs}", engine.name);
}

/// The addresses busybox `nslookup` prints for `name` inside `container`, and its whole output.
fn lookup(engine: &Engine, container: &str, name: &str) -> (Vec<String>, String) {
    let out = engine.docker(&["exec", container, "nslookup", name]);
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let answers = printed.split_once("Name:").map(|(_, rest)| rest.lines().filter_map(|l| l.strip_prefix("Address:")).map(|a| a.trim().to_string()).collect());
    (answers.unwrap_or_default(), printed)
}

/// The engine of `cluster` that runs `container`.
fn engine_of(cluster: &Cluster, container: &str) -> Engine {
    let (host, _) = wait_for(&format!("{container} running"), WAIT, || cluster.locate(container));
    cluster.engines.iter().find(|e| e.name == host).unwrap().clone()
}

/// A cluster of `n` hosts whose agents and control plane run in the test hosts' namespaces.
fn cluster(n: usize) -> Cluster {
    let (ns, ip) = bare_netns(0);
    let launch = Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args: vec![] };
    Cluster::start_with(n, launch, true)
}

#[test]
fn services_find_each_other_by_name_across_hosts_even_without_the_control_plane() {
    let mut cluster = cluster(2);
    let cp = &cluster.cp;
    cp.json(&["stack", "create", "APP"]);
    cp.json(&["stack", "create", "OTHER"]);
    cp.json(&["service", "create", "APP/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sh", "-c", SERVE]);
    cluster.wait_exactly("web on both hosts", &instance_names("APP-web", 2), WAIT);
    cp.json(&["service", "create", "APP/client", "--image", TEST_IMAGE, "--", "sleep", "3600"]);
    cp.json(&["service", "create", "OTHER/probe", "--image", TEST_IMAGE, "--", "sleep", "3600"]);
    let client = engine_of(&cluster, "APP-client-1");
    let probe = engine_of(&cluster, "OTHER-probe-1");
    let (web1, web2) = (engine_of(&cluster, "APP-web-1"), engine_of(&cluster, "APP-web-2"));
    assert_ne!(web1.name, web2.name, "one web instance on each host");
    // The web instance on the other host than the client's.
    let far = if web1.name == client.name { "APP-web-2" } else { "APP-web-1" };
    let hello = |c: &str| format!("hello-from-{c}");

    // SERVICE within its stack, a container's name across hosts, SERVICE.STACK from another stack.
    fetch_until(&cluster, &client, "APP-client-1", far, &hello(far), WAIT);
    let (answers, printed) = lookup(&client, "APP-client-1", "web");
    assert_eq!(answers.len(), 2, "web is both instances: {printed}");
    assert!(answers.iter().all(|a| a.starts_with("10.42.")), "managed addresses: {printed}");
    let by_stack = fetch(&probe, "OTHER-probe-1", "web.APP").unwrap_or_default();
    assert!(by_stack == hello("APP-web-1") || by_stack == hello("APP-web-2"), "web.APP from stack OTHER: {by_stack:?}");
    let (answers, printed) = lookup(&probe, "OTHER-probe-1", "web");
    assert!(answers.is_empty(), "OTHER has no web of its own; APP's is not its: {printed}");

    // Requests by service name reach the instances on both hosts.
    let reached = |n: usize| -> BTreeSet<String> { (0..n).filter_map(|_| fetch(&client, "APP-client-1", "web")).collect() };
    let both: BTreeSet<String> = [hello("APP-web-1"), hello("APP-web-2")].into();
    assert_eq!(reached(10), both, "10 requests by name reach both instances");

    // With the control plane killed, names resolve from each agent's saved set and traffic flows.
    cluster.cp.proc.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = cluster.cp.proc.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(reached(10), both, "by name across hosts without the control plane");
    assert_eq!(fetch(&client, "APP-client-1", far), Some(hello(far)));

    // Back on the same address: the agents reconnect by themselves.
    let port = cluster.cp.url.rsplit(':').next().unwrap().to_string();
    let launch = Launch { listen: format!("0.0.0.0:{port}"), netns: Some(bare_netns(0)), args: vec![] };
    cluster.cp = ControlPlane::launch(&cluster.cp.data_dir.clone(), &launch);
    let names: Vec<&str> = cluster.engines.iter().map(|e| e.name.as_str()).collect();
    cluster.cp.wait_hosts_active(&names);

    // A scale-down leaves the names in the same pass that removes the instance: a second later,
    // no request by name fails.
    cluster.cp.json(&["service", "scale", "APP/web", "1"]);
    std::thread::sleep(Duration::from_secs(1));
    let answers: Vec<Option<String>> = (0..20).map(|_| fetch(&client, "APP-client-1", "web")).collect();
    assert!(answers.iter().all(|a| a.as_deref() == Some(hello("APP-web-1").as_str())), "every request by name after the scale-down: {answers:?}");
    assert_eq!(cluster.locate("APP-web-2"), None, "the scale-down did happen");
}

#[test]
fn another_environments_names_are_never_answered() {
    let cluster = cluster(1);
    let cp = &cluster.cp;
    let ops = &cluster.engines[0];
    let dev = engines(2).pop().unwrap();
    dev.clear();
    cp.json(&["env", "create", "DEV"]);
    let token = cp.json(&["--env", "DEV", "host", "join-command"])["token"].as_str().unwrap().to_string();
    let _dev_agent = start_agent_in(Some(&format!("corral-{}", dev.name)), &cp.url, &token, &dev, &cluster.tmp.path().join("agent-dev"), &[]);
    // The same stack and service in both environments, and a service only OPS has.
    for env in ["Default", "DEV"] {
        cp.json(&["--env", env, "stack", "create", "ISO"]);
        cp.json(&["--env", env, "service", "create", "ISO/web", "--image", TEST_IMAGE, "--", "sh", "-c", SERVE]);
    }
    cp.json(&["stack", "create", "SECRET"]);
    cp.json(&["service", "create", "SECRET/api", "--image", TEST_IMAGE, "--", "sh", "-c", SERVE]);

    // Each environment's own names resolve, to its own addresses.
    let own = |engine: &Engine, prefix: &str| {
        wait_for(&format!("web.ISO on {}", engine.name), WAIT, || {
            let (answers, _) = lookup(engine, "ISO-web-1", "web.ISO");
            (answers.len() == 1 && answers[0].starts_with(prefix)).then(|| answers[0].clone())
        })
    };
    let (ops_ip, dev_ip) = (own(ops, "10.42."), own(&dev, "10.43."));
    wait_for("SECRET-api-1 named in OPS", WAIT, || (lookup(ops, "ISO-web-1", "SECRET-api-1").0.len() == 1).then_some(()));
    let (secret, _) = lookup(ops, "ISO-web-1", "api.SECRET");

    // From DEV, OPS's names give nothing, and the name both have gives DEV's own.
    for name in ["api.SECRET", "SECRET-api-1", "api.SECRET.corral.internal"] {
        let (answers, printed) = lookup(&dev, "ISO-web-1", name);
        assert!(answers.is_empty(), "a DEV container resolved OPS's {name}: {printed}");
    }
    for name in ["web.ISO", "ISO-web-1", "web"] {
        let (answers, printed) = lookup(&dev, "ISO-web-1", name);
        assert_eq!(answers, std::slice::from_ref(&dev_ip), "{name} from DEV is DEV's own: {printed}");
        assert!(!answers.contains(&ops_ip) && !answers.iter().any(|a| secret.contains(a)), "{printed}");
    }
}

/// Waits until `agent` is sent a desired set whose names (container, address) are `want`, for
/// `within` at most; panics with the last names it was sent.
async fn wait_names(agent: &mut fake_agent::FakeAgent, want: &[(String, String)], within: Duration) {
    let until = tokio::time::Instant::now() + within;
    let mut last = None;
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, agent.inbox.recv()).await {
        if let corral_proto::ServerMessage::Desired(set) = msg {
            let names: Vec<(String, String)> = set.network.map(|n| n.names.into_iter().map(|n| (n.container, n.ip.to_string())).collect()).unwrap_or_default();
            if names == want {
                return;
            }
            last = Some(names);
        }
    }
    panic!("not sent the names {want:?} within {within:?}; last sent {last:?}");
}

/// What agents report is checked before it becomes a name: an address outside the reporting
/// host's own lease is no name on any host, an address change is sent at once, and another
/// environment's hosts are never sent the names. No engine: agents that say what the test wants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_come_only_from_addresses_of_the_reporting_hosts_own_lease() {
    use fake_agent::{facts, running, FakeAgent};
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let cli = |args: &[&str]| tokio::task::block_in_place(|| cp.json(args));
    let token = cli(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    cli(&["env", "create", "DEV"]);
    let dev_token = cli(&["--env", "DEV", "host", "join-command"])["token"].as_str().unwrap().to_string();
    let mut a = FakeAgent::join(&cp, &token, None, "host-a", facts("a")).await.expect("joins");
    let mut b = FakeAgent::join(&cp, &token, None, "host-b", facts("b")).await.expect("joins");
    let mut dev = FakeAgent::join(&cp, &dev_token, None, "host-dev", facts("dev")).await.expect("joins");
    for agent in [&a, &b, &dev] {
        agent.report(Vec::new());
    }
    cli(&["stack", "create", "APP"]);
    cli(&["service", "create", "APP/web", "--image", "busybox", "--scale", "2"]);
    cli(&["--env", "DEV", "stack", "create", "APP"]);
    cli(&["--env", "DEV", "service", "create", "APP/web", "--image", "busybox"]);

    // Where each instance went, and each host's lease, from what they are told.
    let mut on_host = Vec::new();
    for agent in [&mut a, &mut b] {
        let sets = agent.collect(Duration::from_secs(2)).await.unwrap();
        let set = sets
            .into_iter()
            .rev()
            .find_map(|m| match m {
                corral_proto::ServerMessage::Desired(set) if !set.containers.is_empty() => Some(set),
                _ => None,
            })
            .expect("a desired set with the instance");
        let lease: ipnet::Ipv4Net = set.network.expect("a lease").subnet.parse().unwrap();
        on_host.push((set.containers[0].name.clone(), lease));
    }
    let ((a_name, a_lease), (b_name, b_lease)) = (on_host[0].clone(), on_host[1].clone());
    let at = |lease: &ipnet::Ipv4Net, host: u32| std::net::Ipv4Addr::from(u32::from(lease.network()) + host).to_string();
    let reported = |name: &str, ip: String| corral_proto::ObservedContainer { ip: Some(ip), ..running(name) };

    // A reports an address of its own; B one of A's lease: only A's becomes a name, on both hosts.
    a.report(vec![reported(&a_name, at(&a_lease, 5))]);
    b.report(vec![reported(&b_name, at(&a_lease, 6))]);
    let want = vec![(a_name.clone(), at(&a_lease, 5))];
    for agent in [&mut a, &mut b] {
        wait_names(agent, &want, Duration::from_secs(3)).await;
    }
    // An address change alone is sent at once (well before the control loop's idle pass, 2 s).
    a.report(vec![reported(&a_name, at(&a_lease, 7))]);
    b.report(vec![reported(&b_name, at(&b_lease, 8))]);
    let mut want = vec![(a_name.clone(), at(&a_lease, 7)), (b_name.clone(), at(&b_lease, 8))];
    want.sort();
    wait_names(&mut b, &want, Duration::from_millis(500)).await;
    // DEV's host hears of its own names only.
    dev.report(vec![reported("APP-web-1", "10.43.1.5".into())]);
    wait_names(&mut dev, &[("APP-web-1".to_string(), "10.43.1.5".to_string())], Duration::from_secs(3)).await;
}
