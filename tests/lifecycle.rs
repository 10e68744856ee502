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
