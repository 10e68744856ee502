//! Self-healing and failure semantics on real Docker engines: the seed's seven destructive tests
//! (Rancher 1.x passed five, and lost names with its database) and four harder ones. Every
//! outcome is checked against what the engines themselves report.

use corral_e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn ids(cluster: &Cluster) -> BTreeMap<String, String> {
    cluster.engines.iter().flat_map(|e| e.managed()).map(|c| (c.name, c.id)).collect()
}

fn host_state(cp: &ControlPlane, name: &str) -> serde_json::Value {
    cp.hosts().into_iter().find(|h| h["name"] == name).unwrap_or_else(|| panic!("host {name} missing"))
}

fn deploy(cluster: &Cluster, stack: &str, service: &str, scale: u32, extra: &[&str]) -> Vec<String> {
    if cluster.cp.json(&["stack", "ls"]).as_array().unwrap().iter().all(|s| s["name"] != stack) {
        cluster.cp.json(&["stack", "create", stack]);
    }
    let path = format!("{stack}/{service}");
    let scale_arg = scale.to_string();
    let mut args = vec!["service", "create", &path, "--image", TEST_IMAGE, "--scale", &scale_arg];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "3600"]);
    cluster.cp.json(&args);
    instance_names(&format!("{stack}-{service}"), scale)
}

/// Seed tests 1 and 3, plus: the agent enforces its saved desired set while the control plane is down.
#[test]
fn control_plane_down_then_replaced_with_its_data_dir() {
    let mut cluster = Cluster::start(2);
    let want = deploy(&cluster, "S", "web", 4, &[]);
    cluster.wait_exactly("four containers", &want, WAIT);
    let ps_before = cluster.cp.json(&["ps"]);
    let before = ids(&cluster);

    // SIGKILL the control plane: nothing on the engines changes.
    let listen = cluster.cp.url.trim_start_matches("http://").to_string();
    cluster.cp.proc.signal(nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ids(&cluster), before, "workloads are unaffected by the control plane's death");

    // A container removed by hand comes back while the control plane is still down.
    let (host, old_id) = cluster.locate("S-web-1").unwrap();
    let engine = cluster.engines.iter().find(|e| e.name == host).unwrap().clone();
    engine.docker(&["rm", "-f", "S-web-1"]);
    wait_for("S-web-1 restored by its agent alone", WAIT, || cluster.locate("S-web-1").filter(|(h, id)| *h == host && *id != old_id).map(|_| ()));

    // A new process on the same data dir: exactly the earlier state, and it manages again.
    let data_dir = cluster.cp.data_dir.clone();
    cluster.cp = ControlPlane::start_on(&data_dir, &listen);
    cluster.cp.wait_hosts_active(&["h1", "h2"]);
    let ps_after = cluster.cp.json(&["ps"]);
    let pick = |ps: &serde_json::Value| -> Vec<(String, String)> {
        ps.as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap().into(), r["host"].as_str().unwrap().into())).collect()
    };
    assert_eq!(pick(&ps_after), pick(&ps_before), "same containers on the same hosts");
    wait_for("ps to show every container running", WAIT, || cluster.cp.json(&["ps"]).as_array().unwrap().iter().all(|r| r["state"] == "running").then_some(()));
    cluster.cp.json(&["service", "scale", "S/web", "6"]);
    cluster.wait_exactly("six containers after the restart", &instance_names("S-web", 6), WAIT);
}

/// Seed test 2, which Rancher failed: a control plane on an empty data dir rebuilds stacks,
/// services, names and scale from the containers' labels, restarting nothing.
#[test]
fn lost_database_is_rebuilt_from_container_labels() {
    let mut cluster = Cluster::start(2);
    let mut want = deploy(&cluster, "WEB-Server", "Nginx-cluster", 6, &["--port", "80", "-e", "MODE=prod", "--label", "team=web"]);
    want.extend(deploy(&cluster, "WEB-Server", "cache", 3, &["--constraint", "host.zone=h2"]));
    cluster.wait_exactly("nine containers", &want, WAIT);
    // The seed's stack has a load balancer too; it runs in an agent, not in a container.
    cluster.cp.json(&["lb", "create", "WEB-Server/web-lb", "--port", "18431:80", "--target", "WEB-Server/Nginx-cluster", "--scale", "1"]);
    let lb_running = |cp: &ControlPlane| cp.json(&["ps"]).as_array().unwrap().iter().any(|r| r["name"] == "WEB-Server-web-lb-1" && r["state"] == "running");
    wait_for("the balancer listening", WAIT, || lb_running(&cluster.cp).then_some(()));
    let before = ids(&cluster);
    let services_before = cluster.cp.json(&["service", "ls"]);

    // The database is gone: kill the control plane and start one on an empty data dir.
    cluster.cp.proc.signal(nix::sys::signal::Signal::SIGKILL);
    for i in 0..2 {
        cluster.kill_agent(i);
    }
    let fresh = cluster.tmp.path().join("fresh-data");
    cluster.cp = ControlPlane::launch(&fresh, &Launch { args: vec!["--adoption-window".into(), "8".into()], ..Launch::default() });
    assert!(cluster.cp.banner.contains("Admin token"), "a new database: {}", cluster.cp.banner);
    assert!(cluster.cp.json(&["stack", "ls"]).as_array().unwrap().is_empty());
    // The hosts re-join with the new control plane's join command, keeping their state dirs.
    cluster.join_token = cluster.cp.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    for i in 0..2 {
        cluster.start_agent(i);
    }
    cluster.cp.wait_hosts_active(&["h1", "h2"]);

    // Hosts re-join one after the other; the services are complete once every name is back.
    let mut sorted_want = want.clone();
    sorted_want.push("WEB-Server-web-lb-1".into());
    sorted_want.sort();
    wait_for("every container adopted", WAIT, || {
        let mut names: Vec<String> = cluster.cp.json(&["ps"]).as_array()?.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        (names == sorted_want).then_some(())
    });
    let services_after = cluster.cp.json(&["service", "ls"]);
    let keys = ["stack", "name", "kind", "image", "command", "env", "ports", "labels", "constraints", "lb", "scale", "revision"];
    assert_eq!(services_after.as_array().unwrap().len(), 3);
    for (b, a) in services_before.as_array().unwrap().iter().zip(services_after.as_array().unwrap()) {
        for k in keys {
            assert_eq!(a[k], b[k], "service {} field {k} rebuilt exactly", b["name"]);
        }
    }
    // Past the adoption window the control plane reconciles again: still exactly these, none restarted.
    std::thread::sleep(Duration::from_secs(10));
    cluster.wait_exactly("the same nine containers", &want, WAIT);
    assert_eq!(ids(&cluster), before, "adoption restarted nothing");
    wait_for("the rebuilt balancer listening", WAIT, || lb_running(&cluster.cp).then_some(()));
    // And the rebuilt services are managed like any other.
    cluster.cp.json(&["service", "scale", "WEB-Server/Nginx-cluster", "7"]);
    let mut more = want.clone();
    more.push("WEB-Server-Nginx-cluster-7".into());
    cluster.wait_exactly("a seventh nginx", &more, WAIT);
}

/// Seed tests 4 and 7: a killed agent shows as disconnected within 5 s and gets nothing new;
/// a container removed while its agent was down is restored when the agent returns.
#[test]
fn killed_agent_is_disconnected_then_restores_what_was_lost() {
    let mut cluster = Cluster::start(2);
    let want = deploy(&cluster, "S", "web", 4, &[]);
    cluster.wait_exactly("four containers", &want, WAIT);
    let (host, _) = cluster.locate("S-web-1").unwrap();
    let i = cluster.engines.iter().position(|e| e.name == host).unwrap();
    let other = cluster.engines[1 - i].name.clone();

    let killed = Instant::now();
    cluster.kill_agent(i);
    wait_for("host shown disconnected", Duration::from_secs(5), || (host_state(&cluster.cp, &host)["state"] == "disconnected").then_some(()));
    eprintln!("disconnect shown after {:?}", killed.elapsed());
    let table = text(&cluster.cp.cli(&["host", "ls"]).output().unwrap());
    assert!(table.contains("disconnected since 20"), "host ls says since when: {table}");
    let ps = text(&cluster.cp.cli(&["ps"]).output().unwrap());
    assert!(ps.contains(&format!("{host} (disconnected)")), "ps says which host is disconnected: {ps}");

    // Nothing new is scheduled on the disconnected host.
    cluster.cp.json(&["service", "scale", "S/web", "6"]);
    wait_for("two new containers on the other host", WAIT, || {
        let running = cluster.running();
        (["S-web-5", "S-web-6"].iter().all(|n| running[&other].contains(&n.to_string()))).then_some(())
    });
    // Seed test 7: remove a container on the host whose agent is down; nobody restores it yet.
    let engine = cluster.engines[i].clone();
    engine.docker(&["rm", "-f", "S-web-1"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!engine.running_names().contains(&"S-web-1".to_string()));

    // The agent returns: active, in sync, and the lost container is back on its host.
    cluster.start_agent(i);
    cluster.cp.wait_hosts_active(&[&host]);
    cluster.wait_exactly("all six running again", &instance_names("S-web", 6), WAIT);
    assert_eq!(cluster.locate("S-web-1").unwrap().0, host, "restored on its own host");
}

/// Seed test 5: a container deleted through the control plane is replaced, on another host.
/// Seed test 6: one removed on the host is replaced on the same host, from the engine's events.
#[test]
fn deleted_containers_are_replaced_fast() {
    let cluster = Cluster::start(2);
    let want = deploy(&cluster, "S", "web", 4, &[]);
    cluster.wait_exactly("four containers", &want, WAIT);

    let (host, old) = cluster.locate("S-web-2").unwrap();
    let out = cluster.cp.cli(&["container", "rm", "S-web-2"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let start = Instant::now();
    let (new_host, new_id) = wait_for("S-web-2 replaced", WAIT, || cluster.locate("S-web-2").filter(|(_, id)| *id != old));
    eprintln!("control-plane delete replaced after {:?}", start.elapsed());
    assert_ne!(new_host, host, "replaced on another host");
    assert_ne!(new_id, old);
    cluster.wait_exactly("still exactly four", &want, WAIT);
    assert!(cluster.cp.fails(&["container", "rm", "S-web-99"]).contains("does not exist"));

    let (host, old) = cluster.locate("S-web-3").unwrap();
    let engine = cluster.engines.iter().find(|e| e.name == host).unwrap();
    let start = Instant::now();
    engine.docker(&["rm", "-f", "S-web-3"]);
    let (again_on, _) = wait_for("S-web-3 restored", WAIT, || cluster.locate("S-web-3").filter(|(_, id)| *id != old));
    eprintln!("host-side removal replaced after {:?}", start.elapsed());
    assert_eq!(again_on, host, "replaced on the same host");
    cluster.wait_exactly("still exactly four", &want, WAIT);
}

/// A host gone past the service's grace period has its containers replaced elsewhere; when it
/// returns, the surplus is removed: never duplicates, never fewer.
#[test]
fn grace_period_moves_containers_and_the_surplus_goes_on_return() {
    let mut cluster = Cluster::start(2);
    let want = deploy(&cluster, "S", "web", 4, &["--reschedule-after", "2"]);
    cluster.wait_exactly("four containers", &want, WAIT);
    let on_h1: BTreeSet<String> = cluster.running()["h1"].iter().cloned().collect();
    assert_eq!(on_h1.len(), 2);

    cluster.kill_agent(0);
    // h2 ends up running all four while h1's engine still runs its two (its agent is dead).
    wait_for("h1's containers replaced on h2", WAIT, || (cluster.running()["h2"].len() == 4).then_some(()));
    let h1_still: BTreeSet<String> = cluster.running()["h1"].iter().cloned().collect();
    assert_eq!(h1_still, on_h1, "nothing touches h1 while its agent is away");

    cluster.start_agent(0);
    cluster.cp.wait_hosts_active(&["h1"]);
    cluster.wait_exactly("exactly four, no duplicates", &want, WAIT);
    assert!(cluster.running()["h1"].is_empty(), "the returning host dropped its surplus");
}

/// SIGKILL the control plane in the middle of deploying 50: after a restart, exactly 50 run,
/// with consistent names, no orphans and no duplicates.
#[test]
fn control_plane_killed_mid_deploy_of_fifty() {
    let mut cluster = Cluster::start(2);
    deploy(&cluster, "S", "big", 50, &[]);
    wait_for("the deploy to be under way", WAIT, || {
        let n = cluster.all_running().len();
        (n >= 4).then_some(())
    });
    let listen = cluster.cp.url.trim_start_matches("http://").to_string();
    cluster.cp.proc.signal(nix::sys::signal::Signal::SIGKILL);
    let at_kill = cluster.all_running().len();
    assert!(at_kill < 50, "the kill must land mid-deploy (saw {at_kill} already running)");
    let data_dir = cluster.cp.data_dir.clone();
    cluster.cp = ControlPlane::start_on(&data_dir, &listen);
    cluster.cp.wait_hosts_active(&["h1", "h2"]);
    cluster.wait_exactly("exactly fifty", &instance_names("S-big", 50), Duration::from_secs(90));
    let per_engine: Vec<usize> = cluster.running().values().map(Vec::len).collect();
    assert_eq!(per_engine, [25, 25], "spread evenly");
}

/// Cut the network between one agent and the control plane, change the service meanwhile, heal
/// the link: the host converges to the new desired state. The control plane and the agents run
/// in their own network namespaces here, so the cut is a real link going down.
#[test]
fn network_cut_then_healed_converges() {
    let (ns, ip) = bare_netns(0);
    let launch = Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args: vec![] };
    let cluster = Cluster::start_with(2, launch, true);
    let want = deploy(&cluster, "S", "web", 4, &["--reschedule-after", "300"]);
    cluster.wait_exactly("four containers", &want, WAIT);
    let on_h1 = cluster.running()["h1"].clone();

    // The root end of h1's link goes down: h1 can reach nothing, and nothing reaches it.
    let link = "corral-h1-r";
    let set_link = |state: &str| {
        let out = Command::new("ip").args(["link", "set", link, state]).output().unwrap();
        assert!(out.status.success(), "ip link set {link} {state}: {}", text(&out));
    };
    set_link("down");
    let _heal = scopeguard(move || {
        let _ = Command::new("ip").args(["link", "set", link, "up"]).status();
    });
    wait_for("h1 shown disconnected", Duration::from_secs(10), || (host_state(&cluster.cp, "h1")["state"] == "disconnected").then_some(()));
    // Meanwhile the service shrinks: h1 must drop its instances above 2.
    cluster.cp.json(&["service", "scale", "S/web", "2"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cluster.running()["h1"], on_h1, "h1 cannot hear the change while cut off");

    set_link("up");
    cluster.cp.wait_hosts_active(&["h1"]);
    cluster.wait_exactly("the two that remain", &instance_names("S-web", 2), WAIT);
}

/// Runs `f` when dropped, so a failed assertion still restores what a test changed.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A crash-looping container says why, in the API and in `corral ps`: its exit code, as the engine reports it
/// (tests/failures.rs has the rest: restarts counted, the log's last line).
#[test]
fn crashing_container_shows_its_exit_code() {
    let cluster = Cluster::start(1);
    cluster.cp.json(&["stack", "create", "S"]);
    cluster.cp.json(&["service", "create", "S/crash", "--image", TEST_IMAGE, "--", "sh", "-c", "sleep 0.2; exit 137"]);
    let row = wait_for("ps to report the exit code", WAIT, || {
        let ps = cluster.cp.json(&["ps", "S/crash"]);
        let row = ps[0].clone();
        row["reason"].as_str().is_some_and(|r| r.contains("exit code 137") || r.contains("exited with code 137")).then_some(row)
    });
    assert!(["restarting", "exited", "running"].contains(&row["state"].as_str().unwrap()), "{row}");
    // The engine agrees (it resets the code while the container is up between restarts).
    wait_for("the engine to report exit code 137", WAIT, || {
        let out = cluster.engines[0].docker(&["inspect", "-f", "{{.State.ExitCode}}", "S-crash-1"]);
        (String::from_utf8_lossy(&out.stdout).trim() == "137").then_some(())
    });
    wait_for("corral ps to show the exit code", WAIT, || text(&cluster.cp.cli(&["ps"]).output().unwrap()).contains("code 137").then_some(()));
}

/// A hot spare: a lost container is replaced by renaming the spare already running on its host
/// (the engine's own create and start are the slow part of healing), and a new spare follows.
#[test]
fn hot_spare_takes_a_lost_containers_place() {
    let cluster = Cluster::start(2);
    let mut want = deploy(&cluster, "HS", "web", 2, &["--hot-spare"]);
    want.extend(["HS-web-spare".to_string(), "HS-web-spare".to_string()]);
    cluster.wait_exactly("two instances and a spare on each host", &want, WAIT);
    let spare_on = |host: &str| -> String {
        let engine = cluster.engines.iter().find(|e| e.name == host).unwrap();
        engine.managed().into_iter().find(|c| c.name == "HS-web-spare" && c.state == "running").map(|c| c.id).unwrap_or_default()
    };

    // Removed on the host: the spare there becomes HS-web-1 (same container id), and a new
    // spare is started behind it.
    let (host, old_id) = cluster.locate("HS-web-1").unwrap();
    let spare = spare_on(&host);
    let engine = cluster.engines.iter().find(|e| e.name == host).unwrap();
    engine.docker(&["rm", "-f", "HS-web-1"]);
    wait_for("the spare renamed into HS-web-1", WAIT, || (cluster.locate("HS-web-1") == Some((host.clone(), spare.clone()))).then_some(()));
    assert_ne!(spare, old_id);
    cluster.wait_exactly("a new spare behind it", &want, WAIT);
    assert_ne!(spare_on(&host), spare, "the new spare is a new container");
    let renamed = engine.managed().into_iter().find(|c| c.name == "HS-web-1").unwrap();
    assert_eq!(renamed.labels["io.corral.spare"], "true", "it is the former spare");

    // The promoted spare is the instance now: nothing recreates it on later passes.
    cluster.cp.json(&["service", "scale", "HS/web", "2"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cluster.locate("HS-web-1"), Some((host.clone(), spare.clone())));

    // Deleted through the control plane: it goes to the other host, where that host's spare
    // takes its place.
    let (host2, _) = cluster.locate("HS-web-2").unwrap();
    let other = cluster.engines.iter().find(|e| e.name != host2).unwrap().name.clone();
    let other_spare = spare_on(&other);
    cluster.cp.json(&["container", "rm", "HS-web-2"]);
    wait_for("HS-web-2 replaced by the other host's spare", WAIT, || (cluster.locate("HS-web-2") == Some((other.clone(), other_spare.clone()))).then_some(()));
    // Every host the service may run on keeps its spare, including the one that now runs none.
    cluster.wait_exactly("both instances on one host, a spare on each", &want, WAIT);
    assert!(cluster.locate("HS-web-1").unwrap().0 == other && cluster.locate("HS-web-2").unwrap().0 == other);
    let ps = cluster.cp.json(&["ps"]);
    assert_eq!(ps.as_array().unwrap().len(), 2, "spares are not instances: {ps}");

    // Bad input: a spare cannot share a fixed host port.
    let err = cluster.cp.fails(&["service", "create", "HS/fixed", "--image", TEST_IMAGE, "--port", "18555:80", "--hot-spare", "--", "sleep", "1"]);
    assert!(err.contains("hot spare cannot share a fixed host port"), "{err}");
}
