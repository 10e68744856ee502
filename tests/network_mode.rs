//! A service's network mode on a real engine: `managed` (the default), `bridge`, `host` and
//! `none`, each checked by what the engine reports of its container (`docker inspect`); a
//! published port of a managed container answering on its host's address, and a managed
//! container reaching out; a change of mode making the container anew on the new network;
//! combinations that cannot work refused with what to do, creating nothing; a backup keeping each
//! mode; and the web UI's Network select (tests/ui/network_mode.mjs).

use corral_e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The test hosts' bridge in the root namespace: what a container reaches "outside" its host.
const OUTSIDE: &str = "10.213.0.1";

/// What the engine says of `container`'s network: `HostConfig.NetworkMode`, and each network it
/// is on with its address there (empty when it has none).
fn engine_network(engine: &Engine, container: &str) -> (String, BTreeMap<String, String>) {
    let out = engine.docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}} {{json .NetworkSettings.Networks}}", container]);
    let printed = text(&out);
    let (mode, networks) = printed.trim().split_once(' ').unwrap_or_else(|| panic!("docker inspect {container}: {printed}"));
    let networks: Value = serde_json::from_str(networks).unwrap_or_else(|e| panic!("docker inspect {container}: {e}: {printed}"));
    let networks = networks
        .as_object()
        .map_or_else(BTreeMap::new, |n| n.iter().map(|(k, v)| (k.clone(), v["IPAddress"].as_str().unwrap_or_default().to_string())).collect());
    (mode.to_string(), networks)
}

fn container_id(engine: &Engine, container: &str) -> String {
    text(&engine.docker(&["inspect", "-f", "{{.Id}}", container])).trim().to_string()
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let (ip, net): (std::net::Ipv4Addr, ipnet::Ipv4Net) = (ip.parse().unwrap(), subnet.parse().unwrap());
    net.contains(&ip)
}

/// `corral ps` rows by container name.
fn ps(cp: &ControlPlane) -> BTreeMap<String, Value> {
    cp.json(&["ps"]).as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap().to_string(), c.clone())).collect()
}

/// The body of `GET /` from `address`, asked from this process (the root namespace).
fn http_get(address: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string())
}

/// The line `container` sends with `nc` to a listener of this process on [`OUTSIDE`], and the
/// address it came from, when one arrived within a few seconds.
fn sent_out(engine: &Engine, container: &str, line: &str) -> (Option<(String, String)>, std::process::Output) {
    let listener = TcpListener::bind((OUTSIDE, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    // `nc` waits for this side to close before it exits, so the listener answers beside it.
    let receiver = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut got = String::new();
                    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut got).ok()?;
                    return Some((got.trim().to_string(), peer.ip().to_string()));
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return None,
            }
        }
    });
    let out = engine.docker(&["exec", container, "sh", "-c", &format!("echo {line} | timeout 10 nc -w 2 {OUTSIDE} {port}")]);
    (receiver.join().unwrap(), out)
}

#[test]
fn each_mode_puts_its_container_where_the_engine_says_and_a_change_moves_it() {
    let cluster = Cluster::start(1);
    let (cp, engine) = (&cluster.cp, &cluster.engines[0]);
    let lease = wait_for("the host's lease", WAIT, || cp.json(&["network", "ls"])["hosts"][0]["subnet"].as_str().map(str::to_string));
    cp.json(&["stack", "create", "MODE"]);
    let web = "echo managed-says-hi > /tmp/index.html; exec httpd -f -p 80 -h /tmp";
    cp.json(&["service", "create", "MODE/managed", "--image", TEST_IMAGE, "--port", "18931:80", "--", "sh", "-c", web]);
    cp.json(&["service", "create", "MODE/bridged", "--image", TEST_IMAGE, "--network", "bridge", "--", "sleep", "3600"]);
    cp.json(&["service", "create", "MODE/hosted", "--image", TEST_IMAGE, "--network", "host", "--", "sleep", "3600"]);
    cp.json(&["service", "create", "MODE/isolated", "--image", TEST_IMAGE, "--network", "none", "--", "sleep", "3600"]);
    let names = ["MODE-managed-1", "MODE-bridged-1", "MODE-hosted-1", "MODE-isolated-1"].map(String::from);
    cluster.wait_exactly("one container per mode", &names, WAIT);

    // What the engine itself reports, per mode.
    let (mode, networks) = wait_for("the managed container on corral-managed", WAIT, || {
        Some(engine_network(engine, "MODE-managed-1")).filter(|(_, n)| n.get("corral-managed").is_some_and(|ip| !ip.is_empty()))
    });
    assert_eq!((mode.as_str(), networks.len()), ("corral-managed", 1), "managed joins the managed network only: {networks:?}");
    let managed_ip = networks["corral-managed"].clone();
    assert!(in_subnet(&managed_ip, &lease), "{managed_ip} is outside the host's lease {lease}");
    let (mode, networks) = engine_network(engine, "MODE-bridged-1");
    assert_eq!(mode, "bridge");
    assert_eq!(networks.keys().collect::<Vec<_>>(), ["bridge"], "bridge is the engine's bridge, not the managed network: {networks:?}");
    let bridge_ip = networks["bridge"].clone();
    assert!(!bridge_ip.is_empty() && !in_subnet(&bridge_ip, "10.42.0.0/16"), "{bridge_ip}");
    assert_eq!(engine_network(engine, "MODE-hosted-1").0, "host");
    let (mode, networks) = engine_network(engine, "MODE-isolated-1");
    assert_eq!(mode, "none");
    assert!(networks.keys().all(|n| n == "none") && networks.values().all(String::is_empty), "none has no network: {networks:?}");

    // `ps` shows each container's network and address; a host-network one is at its host's.
    let rows = ps(cp);
    let shown = |name: &str| (rows[name]["network"].as_str().unwrap().to_string(), rows[name]["ip"].as_str().map(str::to_string));
    assert_eq!(shown("MODE-managed-1"), ("managed".into(), Some(managed_ip.clone())));
    assert_eq!(shown("MODE-bridged-1"), ("bridge".into(), Some(bridge_ip)));
    assert_eq!(shown("MODE-hosted-1"), ("host".into(), Some(engine.address.clone())));
    assert_eq!(shown("MODE-isolated-1"), ("none".into(), None));
    let table = text(&cp.cli(&["service", "ls", "MODE"]).output().unwrap());
    assert!(table.contains("NETWORK"), "{table}");
    for (service, mode) in [("managed", "managed"), ("bridged", "bridge"), ("hosted", "host"), ("isolated", "none")] {
        let line = table.lines().find(|l| l.contains(&format!("MODE/{service} "))).unwrap_or_else(|| panic!("{table}"));
        assert!(line.split_whitespace().any(|w| w == mode), "MODE/{service} shows {mode}: {line}");
    }

    // The managed container's published port answers on the host's address, from outside it.
    let from_outside = format!("{}:18931", engine.address);
    let body = wait_for("the published port answering", WAIT, || http_get(&from_outside));
    assert_eq!(body, "managed-says-hi");

    // The managed container reaches out (masqueraded behind its host); the one without a
    // network does not.
    let (got, sent) = sent_out(engine, "MODE-managed-1", "out-from-managed");
    let (line, peer) = got.unwrap_or_else(|| panic!("nothing arrived from the managed container: {}", text(&sent)));
    assert_eq!(line, "out-from-managed");
    assert_eq!(peer, engine.address, "it goes out with its host's address");
    let (got, sent) = sent_out(engine, "MODE-isolated-1", "out-from-none");
    assert!(got.is_none() && !sent.status.success(), "a container without a network sent {got:?}: {}", text(&sent));

    // A change of mode is an upgrade: the container is made anew on the new network.
    let before = container_id(engine, "MODE-bridged-1");
    let upgraded = cp.json(&["service", "upgrade", "MODE/bridged", "--network", "managed"]);
    assert_eq!((upgraded["network"].as_str(), upgraded["revision"].as_u64()), (Some("managed"), Some(2)), "{upgraded}");
    let (id, networks) = wait_for("MODE-bridged-1 made anew on corral-managed", WAIT, || {
        let id = container_id(engine, "MODE-bridged-1");
        let (_, networks) = engine_network(engine, "MODE-bridged-1");
        (id != before && networks.get("corral-managed").is_some_and(|ip| !ip.is_empty())).then_some((id, networks))
    });
    assert_eq!(networks.len(), 1, "off the bridge: {networks:?}");
    assert!(in_subnet(&networks["corral-managed"], &lease), "{networks:?}");
    assert_eq!(cluster.engines[0].running_names().len(), 4, "nothing else was touched");
    let inspected: Value = serde_json::from_str(&text(&cp.cli(&["service", "inspect", "MODE/bridged"]).output().unwrap())).unwrap();
    assert_eq!((inspected["network"].as_str(), inspected["revision"].as_u64()), (Some("managed"), Some(2)), "{inspected}");
    assert_eq!(container_id(engine, "MODE-bridged-1"), id, "made anew once");
}

#[test]
fn modes_that_cannot_work_are_refused_and_a_backup_keeps_each_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["stack", "create", "MODE"]);
    cp.json(&["service", "create", "MODE/web", "--image", TEST_IMAGE, "--port", "8080:80", "--", "sleep", "3600"]);
    cp.json(&["service", "create", "MODE/quiet", "--image", TEST_IMAGE, "--network", "none", "--", "sleep", "3600"]);
    let before = cp.json(&["service", "ls"]);

    let create = |extra: &[&str]| {
        let mut args = vec!["service", "create", "MODE/bad", "--image", TEST_IMAGE];
        args.extend_from_slice(extra);
        cp.fails(&args)
    };
    for (extra, says) in [
        (&["--network", "overlay"][..], &["unknown network \"overlay\"", "managed", "bridge", "host", "none"][..]),
        (&["--network", "host", "--port", "8080:80"], &["host's own ports", "remove the ports"]),
        (&["--network", "host", "--port", "80"], &["host's own ports"]),
        (&["--network", "none", "--port", "80"], &["no network", "nothing can reach its ports"]),
        (&["--network", "host", "--hot-spare"], &["hot spare"]),
    ] {
        let err = create(extra);
        assert!(says.iter().all(|s| err.contains(s)), "{extra:?}: {err}");
    }
    let err = cp.fails(&["service", "upgrade", "MODE/web", "--network", "host"]);
    assert!(err.contains("host's own ports"), "a service with ports cannot move to the host's network: {err}");
    let err = cp.fails(&["service", "upgrade", "MODE/web", "--network", "Managed"]);
    assert!(err.contains("unknown network"), "{err}");
    let err = cp.fails(&["lb", "create", "MODE/lb", "--port", "9000:80", "--target", "MODE/quiet"]);
    assert!(err.contains("network none") && err.contains("publishes no ports"), "{err}");
    assert_eq!(cp.json(&["service", "ls"]), before, "refusals changed nothing");

    // A backup keeps each service's mode: a change after it is undone by the restore.
    let file = tmp.path().join("modes.db");
    assert!(cp.cli(&["backup", file.to_str().unwrap()]).output().unwrap().status.success());
    cp.json(&["service", "upgrade", "MODE/quiet", "--network", "bridge"]);
    let mode = |path: &str| serde_json::from_str::<Value>(&text(&cp.cli(&["service", "inspect", path]).output().unwrap())).unwrap()["network"].clone();
    assert_eq!(mode("MODE/quiet"), "bridge");
    assert_eq!(cp.json(&["restore", file.to_str().unwrap()])["restored"], true);
    assert_eq!((mode("MODE/quiet"), mode("MODE/web")), (Value::from("none"), Value::from("managed")));

    // Words as the terminal's width wraps them.
    let help = text(&cp.cli(&["service", "create", "--help"]).output().unwrap()).split_whitespace().collect::<Vec<_>>().join(" ");
    for mode in ["managed (", "bridge (", "host (", "none ("] {
        assert!(help.contains(mode), "--help explains {mode}: {help}");
    }
}

#[test]
fn the_web_ui_creates_a_service_on_the_engines_bridge() {
    let ui_dir = repo_root().join("ui/dist");
    assert!(ui_dir.join("index.html").is_file(), "the web UI is not built: run `npm --prefix ui run build`");
    let launch = Launch { args: vec!["--ui-dir".into(), ui_dir.display().to_string()], ..Default::default() };
    let cluster = Cluster::start_with(1, launch, false);
    let (cp, engine) = (&cluster.cp, &cluster.engines[0]);
    cp.json(&["stack", "create", "UI-net"]);
    run_browser_script(cp, "network_mode.mjs", &[("CORRAL_UI_STACK", "UI-net"), ("CORRAL_UI_SERVICE", "bridged"), ("CORRAL_UI_IMAGE", TEST_IMAGE)]);
    cluster.wait_exactly("the service made in the browser", &["UI-net-bridged-1".to_string()], WAIT);
    let (mode, networks) = engine_network(engine, "UI-net-bridged-1");
    assert_eq!((mode.as_str(), networks.keys().map(String::as_str).collect::<Vec<_>>()), ("bridge", vec!["bridge"]), "{networks:?}");
}
