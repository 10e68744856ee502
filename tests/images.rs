//! Images pulled from a real registry (the open one of scripts/test-registry.sh) by real agents on real engines:
//! progress as `corral` shows it, one pull per image per host, failures named where users look,
//! pull policies, and upgrades that pull everywhere before stopping anything.

use corral_e2e::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn bulky() -> String {
    format!("{SLOW_REGISTRY}/corral-test/bulky:1")
}

/// Removes `image` from every engine, so the next container that needs it pulls it (with the
/// layers of untagged copies an earlier run may have left, which would make the pull instant).
fn forget_image(cluster: &Cluster, image: &str) {
    for e in &cluster.engines {
        e.docker(&["rmi", "-f", image]);
        e.docker(&["image", "prune", "-f"]);
        let left = e.docker(&["image", "inspect", image]);
        assert!(!left.status.success(), "{image} is still on {}", e.name);
    }
}

fn ps_row(cluster: &Cluster, name: &str) -> Option<Value> {
    cluster.cp.json(&["ps"]).as_array()?.iter().find(|c| c["name"] == name).cloned()
}

fn service(cluster: &Cluster, path: &str) -> Value {
    let (stack, name) = path.split_once('/').unwrap();
    cluster.cp.json(&["service", "ls", stack]).as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or_else(|| panic!("no service {path}"))
}

/// How many pulls each agent started, from its log.
fn pulls_started(cluster: &Cluster, image: &str) -> Vec<usize> {
    (0..cluster.engines.len())
        .map(|i| {
            let log = std::fs::read_to_string(cluster.state_dir(i).with_extension("agent.log")).unwrap_or_default();
            log.lines().filter(|l| l.contains("pulling image") && l.contains(image)).count()
        })
        .collect()
}

/// `corral service create` follows a new service while both hosts pull its image (shown per
/// host, as a percent that grows), and ends once every container runs; `ps` shows `pulling N %`
/// meanwhile. Each host pulls the image once for the two containers it runs.
#[test]
fn images_are_pulled_with_progress_once_per_host() {
    let cluster = Cluster::start(2);
    let _proxy = SlowProxy::start(6 << 20);
    forget_image(&cluster, &bulky());
    cluster.cp.json(&["stack", "create", "IMG"]);

    let mut create = cluster
        .cp
        .cli(&["service", "create", "IMG/bulky", "--image", &bulky(), "--scale", "4", "--", "sleep", "3600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it pulls, `ps` says how far each container's image is.
    let (row, table) = wait_for("ps to show a pull under way", WAIT, || {
        let row = ps_row(&cluster, "IMG-bulky-1")?;
        let percent = row["progress"].as_u64()?;
        let table = text(&cluster.cp.cli(&["ps", "IMG/bulky"]).output().unwrap());
        (row["state"] == "pulling" && percent < 100 && table.contains(" %")).then_some((row, table))
    });
    assert!(row["reason"].as_str().unwrap().starts_with(&format!("pulling {}: ", bulky())), "{row}");
    assert!(!row["failing"].as_bool().unwrap(), "{row}");
    assert!(table.lines().any(|l| l.contains("IMG-bulky-1") && l.contains("pulling ") && l.contains(" %")), "{table}");
    let svc = service(&cluster, "IMG/bulky");
    assert_eq!(svc["status"], "pulling", "{svc}");
    assert!(svc["reason"].as_str().unwrap().starts_with(&format!("pulling {}:", bulky())), "{svc}");

    let started = Instant::now();
    let out = loop {
        if let Some(status) = create.try_wait().unwrap() {
            let out = create.wait_with_output().unwrap();
            assert!(status.success(), "service create failed: {}", text(&out));
            break out;
        }
        assert!(started.elapsed() < WAIT, "service create did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = String::from_utf8_lossy(&out.stdout);
    let progress: Vec<&str> = printed.lines().filter(|l| l.contains(": pulling ") && l.ends_with(" %")).collect();
    assert!(progress.len() >= 2, "progress lines while it pulls:\n{printed}");
    assert!(printed.lines().any(|l| l.starts_with("h1: pulling") || l.contains("; h1: pulling")), "per host:\n{printed}");
    assert!(printed.trim_end().ends_with("IMG/bulky: 4/4 running"), "{printed}");

    // The engines agree, and each pulled the image once for its two containers.
    cluster.wait_exactly("four containers", &instance_names("IMG-bulky", 4), WAIT);
    for e in &cluster.engines {
        assert_eq!(e.running_names().len(), 2, "{}: {:?}", e.name, e.running_names());
        assert!(e.docker(&["image", "inspect", &bulky()]).status.success(), "{} has the image", e.name);
    }
    assert_eq!(pulls_started(&cluster, &bulky()), [1, 1]);
    assert_eq!(service(&cluster, "IMG/bulky")["status"], "active");
}

/// A pull that cannot succeed says why in the CLI's answer, on the container and on the
/// service, and leaves nothing half-made on the engines: an unknown tag, a registry nothing
/// answers at, and an image missing under the pull policy `never`.
#[test]
fn failed_pulls_say_why_and_leave_nothing_behind() {
    let cluster = Cluster::start(1);
    let registry = open_registry();
    cluster.cp.json(&["stack", "create", "BAD"]);

    // Unknown tag: `service create` ends with the reason.
    let unknown = format!("{registry}/corral-test/busybox:nope");
    let err = cluster.cp.fails(&["service", "create", "BAD/unknown", "--image", &unknown, "--", "sleep", "3600"]);
    assert!(err.contains("service BAD/unknown was created, but its containers do not run"), "{err}");
    assert!(err.contains(&format!("failing: h1: cannot pull {unknown}: image not found in the registry")), "{err}");
    assert!(err.contains("manifest unknown"), "the engine's words: {err}");

    // Nothing listens on that port: the registry is unreachable.
    let far = "10.213.0.1:5009/corral-test/busybox:1";
    cluster.cp.json(&["service", "create", "BAD/far", "--image", far, "--", "sleep", "3600"]);
    let row = wait_for("ps to say the registry is unreachable", WAIT, || ps_row(&cluster, "BAD-far-1").filter(|r| r["failing"] == true));
    assert_eq!(row["state"], "failed", "{row}");
    assert!(row["reason"].as_str().unwrap().starts_with(&format!("cannot pull {far}: registry unreachable")), "{row}");
    assert!(row["reason"].as_str().unwrap().contains("connection refused"), "{row}");
    let table = text(&cluster.cp.cli(&["ps", "BAD/far"]).output().unwrap());
    assert!(table.contains("failed: cannot pull 10.213.0.1:5009/corral-test/busybox:1: registry unreachable"), "{table}");
    let ls = text(&cluster.cp.cli(&["service", "ls", "BAD"]).output().unwrap());
    let line = ls.lines().find(|l| l.contains("BAD/far")).unwrap();
    assert!(line.contains("failing") && line.contains("h1: cannot pull"), "{ls}");

    // Policy never: the image is not on the host, and it is not pulled.
    let local = format!("{registry}/corral-test/busybox:1");
    forget_image(&cluster, &local);
    cluster.cp.json(&["service", "create", "BAD/local", "--image", &local, "--pull", "never", "--", "sleep", "3600"]);
    let row = wait_for("ps to say the image is missing", WAIT, || ps_row(&cluster, "BAD-local-1").filter(|r| r["failing"] == true));
    assert_eq!(
        row["reason"].as_str().unwrap(),
        format!("image {local} is not on this host and the pull policy is never: load it on the host (docker load) or let Corral pull it (--pull missing)")
    );
    assert_eq!(service(&cluster, "BAD/local")["pull_policy"], "never");
    assert_eq!(pulls_started(&cluster, &local), [0], "never means never");

    // Nothing was made for any of them, and nothing was left of the failed pulls.
    assert!(cluster.engines[0].managed().is_empty(), "{:?}", cluster.engines[0].managed().iter().map(|c| &c.name).collect::<Vec<_>>());
    for image in [unknown.as_str(), far, local.as_str()] {
        assert!(!cluster.engines[0].docker(&["image", "inspect", image]).status.success(), "{image}");
    }

    // Loading the image by hand is all `never` needs: the container starts on its own.
    let h1 = &cluster.engines[0];
    assert!(h1.docker(&["tag", TEST_IMAGE, &local]).status.success());
    cluster.wait_exactly("the never-pulled container, once its image is there", &["BAD-local-1".to_string()], WAIT);
}

/// An upgrade to a new image pulls it on every host involved while the old containers keep
/// running; only then does it roll. An upgrade whose image cannot be pulled stops with the
/// reason on the service, and the old containers keep running.
#[test]
fn upgrades_pull_everywhere_before_stopping_anything() {
    let cluster = Cluster::start(2);
    let registry = open_registry();
    cluster.cp.json(&["stack", "create", "UP"]);
    cluster.cp.json(&["service", "create", "UP/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    let names = instance_names("UP-web", 2);
    cluster.wait_exactly("two old containers", &names, WAIT);
    let ids = |cluster: &Cluster| -> Vec<String> { names.iter().map(|n| cluster.locate(n).map(|(_, id)| id).unwrap_or_default()).collect() };
    let old = ids(&cluster);

    let _proxy = SlowProxy::start(6 << 20);
    forget_image(&cluster, &bulky());
    cluster.cp.json(&["service", "upgrade", "UP/web", "--image", &bulky()]);
    // Both hosts pull before anything is stopped.
    let svc = wait_for("both hosts to pull the new image", WAIT, || {
        let svc = service(&cluster, "UP/web");
        (svc["pulls"].as_array()?.len() == 2).then_some(svc)
    });
    assert_eq!(svc["status"], "pulling", "{svc}");
    assert_eq!(ids(&cluster), old, "no old container was touched while the image is pulled");
    // Done when both engines run the new image (the names stay the same).
    let image_of = |e: &Engine, name: &str| String::from_utf8_lossy(&e.docker(&["inspect", "-f", "{{.Config.Image}}", name]).stdout).trim().to_string();
    wait_for("both containers to run the new image", WAIT, || {
        cluster.engines.iter().all(|e| e.running_names().iter().any(|n| image_of(e, n) == bulky())).then_some(())
    });
    cluster.wait_exactly("the upgraded containers", &names, WAIT);
    let upgraded = ids(&cluster);
    assert!(upgraded.iter().zip(&old).all(|(new, old)| !new.is_empty() && new != old), "recreated from the new image: {old:?} -> {upgraded:?}");
    wait_for("the service to be active", WAIT, || (service(&cluster, "UP/web")["status"] == "active").then_some(()));

    // An image that does not exist: the upgrade stops, saying why, and nothing is stopped.
    let unknown = format!("{registry}/corral-test/bulky:nope");
    cluster.cp.json(&["service", "upgrade", "UP/web", "--image", &unknown]);
    let svc = wait_for("the upgrade to stop", WAIT, || {
        let svc = service(&cluster, "UP/web");
        (svc["status"] == "degraded").then_some(svc)
    });
    let reason = svc["reason"].as_str().unwrap();
    assert!(reason.starts_with("upgrade to revision 3 stopped, old containers kept: h"), "{reason}");
    assert!(reason.contains(&format!("cannot pull {unknown}: image not found in the registry")), "{reason}");
    assert_eq!(svc["upgraded"], 0, "{svc}");
    assert_eq!(svc["running"], 2, "{svc}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ids(&cluster), upgraded, "the old containers keep running");
    let ls = text(&cluster.cp.cli(&["service", "ls", "UP"]).output().unwrap());
    assert!(ls.contains("degraded") && ls.contains("upgrade to revision 3 stopped"), "{ls}");
}
