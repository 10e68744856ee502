//! Taking hosts out of service on real engines: a deactivated host keeps (and heals) what it
//! runs but gets nothing new; a removed host's instances are replaced on the other hosts and
//! its agent is refused until the join command is run on it again.

use corral_e2e::*;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `curl` against the API with the admin token: (HTTP status, JSON body).
fn api(cp: &ControlPlane, method: &str, path: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method, "-H", &format!("Authorization: Bearer {}", cp.admin_token())])
        .arg(format!("{}/v1{path}", cp.url))
        .output()
        .expect("run curl");
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

/// The id of the running managed container `name` on `engine`, if any.
fn id_on(engine: &Engine, name: &str) -> Option<String> {
    engine.managed().into_iter().find(|c| c.name == name && c.state == "running").map(|c| c.id)
}

#[test]
fn deactivated_hosts_get_nothing_new_and_removed_hosts_are_replaced_and_refused() {
    let mut cluster = Cluster::start(2);
    let (h1, h2) = (cluster.engines[0].name.clone(), cluster.engines[1].name.clone());
    let cp = &cluster.cp;
    cp.json(&["stack", "create", "S"]);
    cp.json(&["service", "create", "S/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    cluster.wait_exactly("two instances", &instance_names("S-web", 2), WAIT);
    let on_h2 = cluster.engines[1].running_names();
    assert_eq!(on_h2.len(), 1, "spread one per host: {:?}", cluster.running());
    let kept = on_h2[0].clone();
    let kept_id = id_on(&cluster.engines[1], &kept).unwrap();

    // Deactivated: listed as such, idempotent.
    let host = cp.json(&["host", "deactivate", &h2]);
    assert_eq!((host["deactivated"].as_bool(), host["status"].as_str()), (Some(true), Some("deactivated")), "{host}");
    assert_eq!(cp.json(&["host", "deactivate", &h2])["deactivated"], true);
    let listed = cp.hosts().into_iter().find(|h| h["name"] == h2.as_str()).unwrap();
    assert_eq!((listed["deactivated"].as_bool(), listed["state"].as_str()), (Some(true), Some("active")), "{listed}");

    // Scaling up puts nothing new on it; what it runs keeps running, the same container.
    cp.json(&["service", "scale", "S/web", "5"]);
    cluster.wait_exactly("five instances", &instance_names("S-web", 5), WAIT);
    assert_eq!(cluster.engines[1].running_names(), std::slice::from_ref(&kept), "nothing new on the deactivated host: {:?}", cluster.running());
    assert_eq!(id_on(&cluster.engines[1], &kept).as_deref(), Some(kept_id.as_str()), "its container was not touched");
    assert_eq!(cluster.engines[0].running_names().len(), 4);

    // Still healed in place: a container lost there comes back there.
    cluster.engines[1].docker(&["rm", "-f", &kept_id]);
    wait_for("the lost container back on the deactivated host", WAIT, || id_on(&cluster.engines[1], &kept).filter(|id| *id != kept_id));
    cluster.wait_exactly("still five instances", &instance_names("S-web", 5), WAIT);

    // Bad input: unknown host, and removing an active one, change nothing.
    let before = (cp.hosts().len(), cluster.running());
    for (method, path) in [("POST", "/hosts/nope/deactivate"), ("POST", "/hosts/nope/activate"), ("DELETE", "/hosts/nope")] {
        let (status, body) = api(cp, method, path);
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{method} {path}: {body}");
        assert!(body["message"].as_str().unwrap().contains("host \"nope\" does not exist"), "{body}");
    }
    let (status, body) = api(cp, "DELETE", &format!("/hosts/{h1}"));
    assert_eq!((status, body["code"].as_str()), (409, Some("host_active")), "{body}");
    assert!(body["message"].as_str().unwrap().contains(&format!("corral host deactivate {h1}")), "{body}");
    let err = cp.fails(&["host", "rm", &h1]);
    assert!(err.contains("deactivate it first"), "{err}");
    assert_eq!((cp.hosts().len(), cluster.running()), before, "refused removals changed nothing");

    // Removed: its instance is placed on the other host; its agent is refused and stops.
    let removed = cp.cli(&["host", "rm", &h2]).output().unwrap();
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(text(&removed).contains(&format!("removed host {h2}")), "{}", text(&removed));
    let names: Vec<String> = cp.hosts().iter().map(|h| h["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, std::slice::from_ref(&h1));
    wait_for("every instance running on the remaining host", WAIT, || (cluster.engines[0].running_names() == instance_names("S-web", 5)).then_some(()));
    let ps = cp.json(&["ps"]);
    assert!(ps.as_array().unwrap().iter().all(|c| c["host"] == h1.as_str()), "{ps}");
    assert_eq!(cp.hosts().len(), 1);
    let agent = cluster.agents[1].as_mut().unwrap();
    assert!(!agent.wait_exit(WAIT).success(), "the removed host's agent stops");
    assert!(agent.output().contains("removed from the control plane"), "{}", agent.output());
    assert!(!cluster.state_dir(1).join("credential").exists(), "the agent forgot the refused credential");
    assert_eq!(cluster.cp.hosts().len(), 1, "the refused agent did not come back");

    // Running the join command again brings it back as a new, active host; what the engine
    // still ran from before is cleaned up, since its instances now run elsewhere.
    cluster.start_agent(1);
    let cp = &cluster.cp;
    cp.wait_hosts_active(&[&h1, &h2]);
    let back = cp.hosts().into_iter().find(|h| h["name"] == h2.as_str()).unwrap();
    assert_eq!(back["deactivated"], false, "{back}");
    wait_for("the old containers gone from the re-joined host", WAIT, || cluster.engines[1].running_names().is_empty().then_some(()));
    cluster.wait_exactly("five instances, all on the remaining host", &instance_names("S-web", 5), WAIT);

    // Activated again (idempotent), it takes new instances.
    cp.json(&["host", "deactivate", &h2]);
    let host = cp.json(&["host", "activate", &h2]);
    assert_eq!((host["deactivated"].as_bool(), host["status"].as_str()), (Some(false), Some("active")), "{host}");
    assert_eq!(cp.json(&["host", "activate", &h2])["deactivated"], false);
    cp.json(&["service", "scale", "S/web", "7"]);
    cluster.wait_exactly("seven instances", &instance_names("S-web", 7), WAIT);
    assert_eq!(cluster.engines[1].running_names().len(), 2, "the new ones went to the activated host: {:?}", cluster.running());
}

#[test]
fn a_disconnected_host_is_removed_without_deactivating_and_its_containers_move() {
    let mut cluster = Cluster::start(2);
    let h2 = cluster.engines[1].name.clone();
    cluster.cp.json(&["stack", "create", "S"]);
    // A long grace period: without the removal its instance would wait for the host to return.
    cluster.cp.json(&["service", "create", "S/web", "--image", TEST_IMAGE, "--scale", "2", "--reschedule-after", "600", "--", "sleep", "3600"]);
    cluster.wait_exactly("two instances", &instance_names("S-web", 2), WAIT);
    let on_h2 = cluster.engines[1].running_names();
    cluster.kill_agent(1);
    wait_for("the host disconnected", WAIT, || {
        let host = cluster.cp.hosts().into_iter().find(|h| h["name"] == h2.as_str())?;
        host["status"].as_str()?.starts_with("disconnected since").then_some(())
    });
    cluster.cp.json(&["host", "rm", &h2]);
    wait_for("its instance running on the other host", WAIT, || (cluster.engines[0].running_names() == instance_names("S-web", 2)).then_some(()));
    assert_eq!(cluster.engines[1].running_names(), on_h2, "the unreachable engine is left as it was");
}

/// Hot spares follow deactivation: a deactivated host keeps a spare only for a service it still
/// runs (nothing new is placed there, so another spare would never be used), a lost instance on
/// an active host is replaced by that host's spare with nothing started on the deactivated one,
/// and an activated host gets its spare back.
#[test]
fn a_deactivated_host_keeps_a_hot_spare_only_for_what_it_runs() {
    let cluster = Cluster::start(2);
    let cp = &cluster.cp;
    cp.json(&["stack", "create", "HS"]);
    cp.json(&["service", "create", "HS/web", "--image", TEST_IMAGE, "--hot-spare", "--", "sleep", "3600"]);
    let mut one_spare = instance_names("HS-web", 1);
    one_spare.push("HS-web-spare".to_string());
    let mut two_spares = one_spare.clone();
    two_spares.push("HS-web-spare".to_string());
    cluster.wait_exactly("one instance and a spare on each host", &two_spares, WAIT);
    let (runs, _) = cluster.locate("HS-web-1").unwrap();
    let active = cluster.engines.iter().find(|e| e.name == runs).unwrap();
    let idle = cluster.engines.iter().find(|e| e.name != runs).unwrap();

    cp.json(&["host", "deactivate", &idle.name]);
    cluster.wait_exactly("the idle host's spare gone", &one_spare, WAIT);
    assert!(idle.running_names().is_empty(), "nothing left on the deactivated host: {:?}", cluster.running());

    let spare = id_on(active, "HS-web-spare").expect("a spare on the active host");
    let (_, lost) = cluster.locate("HS-web-1").unwrap();
    active.docker(&["rm", "-f", &lost]);
    wait_for("the active host's spare renamed into HS-web-1", WAIT, || (cluster.locate("HS-web-1") == Some((runs.clone(), spare.clone()))).then_some(()));
    cluster.wait_exactly("a new spare behind it, on the active host", &one_spare, WAIT);
    assert!(idle.running_names().is_empty(), "nothing started on the deactivated host: {:?}", cluster.running());

    cp.json(&["host", "activate", &idle.name]);
    cluster.wait_exactly("a spare on each host again", &two_spares, WAIT);
    assert_eq!(idle.running_names(), ["HS-web-spare"], "the activated host keeps a spare again");
}
