//! A service's life beyond scale: stop keeps the containers (names, ids) without running them,
//! start runs the same ones again. Checked against what the engines report.

use corral_e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// name -> (id, engine state) over every engine.
fn engine_view(cluster: &Cluster) -> BTreeMap<String, (String, String)> {
    cluster.engines.iter().flat_map(|e| e.managed()).map(|c| (c.name, (c.id, c.state))).collect()
}

#[test]
fn stop_keeps_containers_and_start_runs_the_same_ones() {
    let cluster = Cluster::start(2);
    cluster.cp.json(&["stack", "create", "life"]);
    cluster.cp.json(&["service", "create", "life/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    let names = instance_names("life-web", 2);
    cluster.wait_exactly("two running containers", &names, WAIT);
    let running = engine_view(&cluster);

    let stopped = cluster.cp.json(&["service", "stop", "life/web"]);
    assert_eq!(stopped["state"], "stopped");
    wait_for("both containers stopped on the engines", WAIT, || {
        let view = engine_view(&cluster);
        (view.len() == 2 && view.values().all(|(_, state)| state == "exited")).then_some(view)
    });
    // Stopped means stopped: neither the agent nor the engine's restart policy starts them again.
    std::thread::sleep(Duration::from_secs(3));
    let view = engine_view(&cluster);
    assert!(view.values().all(|(_, s)| s == "exited"), "still stopped: {view:?}");
    let ids = |v: &BTreeMap<String, (String, String)>| v.iter().map(|(n, (id, _))| (n.clone(), id.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&view), ids(&running), "the same containers are kept");
    let ls = cluster.cp.json(&["service", "ls"]);
    assert_eq!(ls[0]["state"], "stopped", "{ls}");

    // An upgrade of a stopped service is refused and changes nothing.
    let err = cluster.cp.fails(&["service", "upgrade", "life/web", "--", "sleep", "7200"]);
    assert!(err.contains("is stopped; start it before upgrading"), "{err}");
    assert_eq!(cluster.cp.json(&["service", "ls"])[0]["revision"], ls[0]["revision"]);

    let started = cluster.cp.json(&["service", "start", "life/web"]);
    assert_eq!(started["state"], "active");
    cluster.wait_exactly("the same two containers running again", &names, WAIT);
    assert_eq!(ids(&engine_view(&cluster)), ids(&running), "started, not recreated");

    // Unknown service: clear error.
    let err = cluster.cp.fails(&["service", "stop", "life/nope"]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn container_details_and_logs_come_from_its_engine() {
    let mut cluster = Cluster::start(1);
    cluster.cp.json(&["stack", "create", "logs"]);
    let script = "echo hello-from-corral; echo oops >&2; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    cluster.cp.json(&["service", "create", "logs/talker", "--image", TEST_IMAGE, "--", "sh", "-c", script]);
    cluster.wait_exactly("the talker running", &instance_names("logs-talker", 1), WAIT);

    let detail = cluster.cp.json(&["container", "inspect", "logs-talker-1"]);
    let engine_id = cluster.engines[0].managed()[0].id.clone();
    assert_eq!(detail["docker_id"], engine_id, "{detail}");
    assert_eq!(detail["image"], TEST_IMAGE);
    assert_eq!(detail["host"], cluster.engines[0].name);
    assert_eq!(detail["labels"]["io.corral.service"], "talker");

    // History, with stdout and stderr kept apart, as `docker logs` shows them.
    let out = cluster.cp.cli(&["container", "logs", "logs-talker-1", "--tail", "1000"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().next() == Some("hello-from-corral"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    let docker = cluster.engines[0].docker(&["logs", "logs-talker-1"]);
    assert!(String::from_utf8_lossy(&docker.stdout).starts_with("hello-from-corral\ntick 0\n"));

    // Following: lines written after the command started arrive while it runs.
    let mut follow = cluster.cp.cli(&["container", "logs", "logs-talker-1", "--tail", "0", "-f"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut reader = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        seen.push(line.trim().to_string());
    }
    follow.kill().unwrap();
    let _ = follow.wait();
    let ticks: Vec<u32> = seen.iter().map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{seen:?}"))).collect();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "consecutive live lines: {seen:?}");

    let err = cluster.cp.fails(&["container", "logs", "nope-1"]);
    assert!(err.contains("no container \"nope-1\""), "{err}");
    let err = cluster.cp.fails(&["container", "logs", "logs-talker-1", "--tail", "20000"]);
    assert!(err.contains("at most 10000"), "{err}");

    // A disconnected host cannot be asked: the answer says so.
    cluster.kill_agent(0);
    wait_for("host disconnected", WAIT, || (cluster.cp.hosts()[0]["state"] == "disconnected").then_some(()));
    let err = cluster.cp.fails(&["container", "logs", "logs-talker-1"]);
    assert!(err.contains("is disconnected"), "{err}");
}
