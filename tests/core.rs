//! The core story on real Docker engines: hosts join with the join command, the seed's
//! WEB-Server stack runs ten containers spread over two engines, scales, survives a control
//! plane restart, and is removed — every step checked against what the engines report.

use corral_e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Container names per engine, as the engines report them running.
fn running_by_engine(engines: &[Engine]) -> BTreeMap<String, Vec<String>> {
    engines.iter().map(|e| (e.name.clone(), e.running_names())).collect()
}

fn wait_engines(what: &str, engines: &[Engine], check: impl Fn(&BTreeMap<String, Vec<String>>) -> bool) -> BTreeMap<String, Vec<String>> {
    let mut last = BTreeMap::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, WAIT, || {
            last = running_by_engine(engines);
            check(&last).then(|| last.clone())
        })
    }));
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; engines report {:?}", running_by_engine(engines)))
}

fn names(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("{prefix}-{i}")).collect();
    v.sort();
    v
}

fn all_running(map: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = map.values().flatten().cloned().collect();
    v.sort();
    v
}

#[test]
fn core_story_on_two_engines() {
    let _engines_are_mine = exclusive();
    let engines = engines(2);
    for e in &engines {
        e.clear();
    }
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");

    // Step 2: first start creates the Default environment and an admin token, printed once, 0600.
    let cp = ControlPlane::start(&data_dir);
    let token = cp.admin_token();
    assert!(cp.banner.contains(&token), "the first start prints the admin token: {}", cp.banner);
    assert!(cp.proc.output().contains(&format!("/#token={token}")), "and a web UI link that carries it: {}", cp.proc.output());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir.join("admin-token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin-token must be private");

    // Step 3: the join command, run as printed, fetches the agent from the control plane.
    let join = cp.json(&["host", "join-command"]);
    let command = join["command"].as_str().unwrap().to_string();
    assert!(command.contains("/v1/agent/binary") && command.contains(&cp.url), "{command}");
    let join_token = join["token"].as_str().unwrap().to_string();
    let mut agents = Vec::new();
    for (engine, zone) in engines.iter().zip(["a", "b"]) {
        let dir = tmp.path().join(format!("join-{}", engine.name));
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!(
            "{command} --state-dir {} --docker-host {} --name {} --address {} --label zone={zone}",
            dir.join("state").display(),
            engine.socket,
            engine.name,
            engine.address
        );
        let mut sh = Command::new("sh");
        sh.args(["-c", &line]).current_dir(&dir).env("RUST_LOG", "info");
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        sh.stdout(log.try_clone().unwrap()).stderr(log);
        agents.push((sh.spawn().unwrap(), dir));
    }
    let _agents = KillOnDrop(agents.iter_mut().map(|(c, _)| c.id()).collect());
    cp.wait_hosts_active(&["h1", "h2"]);
    for (engine, zone) in engines.iter().zip(["a", "b"]) {
        let host = cp.hosts().into_iter().find(|h| h["name"] == engine.name.as_str()).unwrap();
        assert_eq!(host["address"], engine.address.as_str());
        assert!(host["docker_version"].as_str().unwrap().starts_with(char::is_numeric), "{host}");
        assert!(host["cpus"].as_u64().unwrap() >= 1 && host["memory_bytes"].as_u64().unwrap() > 1 << 20, "{host}");
        assert_eq!(host["labels"]["zone"], zone);
        let engine_version = engine.docker(&["version", "--format", "{{.Server.Version}}"]);
        assert_eq!(host["docker_version"].as_str().unwrap(), String::from_utf8_lossy(&engine_version.stdout).trim());
    }
    let table = cp.cli(&["host", "ls"]).output().unwrap();
    assert!(text(&table).contains("NAME") && text(&table).contains("active"), "{}", text(&table));

    // Step 4: the seed's first story.
    cp.json(&["stack", "create", "WEB-Server"]);
    let created =
        cp.json(&["service", "create", "WEB-Server/Nginx-cluster", "--image", TEST_IMAGE, "--scale", "10", "--port", "80", "--", "httpd", "-f", "-p", "80"]);
    assert_eq!(created["scale"], 10);
    let ten = names("WEB-Server-Nginx-cluster", 1..=10);
    let seen = wait_engines("ten running containers", &engines, |m| all_running(m) == ten);
    assert_eq!(seen["h1"].len(), 5, "spread evenly: {seen:?}");
    assert_eq!(seen["h2"].len(), 5, "spread evenly: {seen:?}");
    for engine in &engines {
        for c in engine.managed() {
            let n = c.name.rsplit('-').next().unwrap();
            assert_eq!(c.labels["io.corral.environment"], "Default", "{c:?}");
            assert_eq!(c.labels["io.corral.stack"], "WEB-Server");
            assert_eq!(c.labels["io.corral.service"], "Nginx-cluster");
            assert_eq!(c.labels["io.corral.instance"], n);
            assert_eq!(c.labels["io.corral.revision"], "1");
        }
        // The containers really serve: httpd answers inside the engine's network.
        let c = &engine.running_names()[0];
        let probe = engine.docker(&["exec", c, "wget", "-q", "-O", "-", "http://127.0.0.1:80/"]);
        assert!(!text(&probe).contains("Connection refused"), "httpd in {c}: {}", text(&probe));
    }

    // Step 5: ps shows host, state, IP and ports; the filter narrows it.
    let ps = wait_for("ps to show ten running containers with IPs", WAIT, || {
        let ps = cp.json(&["ps", "WEB-Server/Nginx-cluster"]);
        let rows = ps.as_array().unwrap().clone();
        (rows.len() == 10 && rows.iter().all(|r| r["state"] == "running" && r["ip"].is_string())).then_some(rows)
    });
    for row in &ps {
        let engine = engines.iter().find(|e| e.name == row["host"].as_str().unwrap()).unwrap();
        // Containers are on the host's managed network, not the default bridge.
        let ip = engine.docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", row["name"].as_str().unwrap()]);
        assert_eq!(String::from_utf8_lossy(&ip.stdout).trim(), row["ip"].as_str().unwrap(), "ps reports the engine's IP");
        assert!(row["ip"].as_str().unwrap().starts_with("10.42."), "an address of the managed network: {row}");
        assert_eq!(row["ports"][0]["container_port"], 80);
    }
    assert_eq!(cp.json(&["ps", "WEB-Server"]).as_array().unwrap().len(), 10);
    assert_eq!(cp.json(&["stack", "ls"])[0]["services"], 1);
    let services = cp.json(&["service", "ls", "WEB-Server"]);
    assert_eq!((services[0]["name"].clone(), services[0]["running"].clone()), (Value::from("Nginx-cluster"), Value::from(10)));

    cp.json(&["service", "scale", "WEB-Server/Nginx-cluster", "4"]);
    let four = names("WEB-Server-Nginx-cluster", 1..=4);
    wait_engines("scale down to four", &engines, |m| all_running(m) == four && m.values().all(|v| v.len() == 2));
    wait_for("removed containers to be gone from the engines", WAIT, || (engines.iter().map(|e| e.managed().len()).sum::<usize>() == 4).then_some(()));

    // Constraints: host.zone=b places only on h2.
    cp.json(&["service", "create", "WEB-Server/pinned", "--image", TEST_IMAGE, "--scale", "3", "--constraint", "host.zone=b", "--", "sleep", "3600"]);
    let pinned = names("WEB-Server-pinned", 1..=3);
    wait_engines("pinned containers on h2 only", &engines, |m| {
        let on_h2: Vec<_> = m["h2"].iter().filter(|n| n.contains("pinned")).cloned().collect();
        on_h2 == pinned && !m["h1"].iter().any(|n| n.contains("pinned"))
    });

    // A second agent claiming h1's identity is refused, and h1's containers are untouched.
    let h1_state = tmp.path().join("join-h1/state");
    let twin_state = tmp.path().join("twin-state");
    std::fs::create_dir_all(&twin_state).unwrap();
    std::fs::copy(h1_state.join("host-id"), twin_state.join("host-id")).unwrap();
    let before_twin = engines[0].managed().into_iter().map(|c| c.id).collect::<std::collections::BTreeSet<_>>();
    let twin = start_agent(&cp, &join_token, &engines[0], &twin_state, &[]);
    wait_for("the twin agent to be told the identity is connected", WAIT, || twin.output().contains("already connected").then_some(()));
    drop(twin);
    assert_eq!(cp.hosts().len(), 2, "the twin did not register a host");
    assert_eq!(engines[0].managed().into_iter().map(|c| c.id).collect::<std::collections::BTreeSet<_>>(), before_twin);

    // Step 6: stop the control plane; workloads keep running; restart on the same data dir.
    let ids_before: BTreeMap<String, String> = engines.iter().flat_map(|e| e.managed()).map(|c| (c.name, c.id)).collect();
    let cp = cp.restart_with_pause(|| {
        std::thread::sleep(Duration::from_secs(2));
        let ids_down: BTreeMap<String, String> = engines.iter().flat_map(|e| e.managed()).map(|c| (c.name, c.id)).collect();
        assert_eq!(ids_down, ids_before, "workloads are untouched while the control plane is down");
    });
    assert!(!cp.banner.contains("Admin token"), "the token is printed only once: {}", cp.banner);
    assert_eq!(cp.admin_token(), token);
    cp.wait_hosts_active(&["h1", "h2"]);
    let after = cp.json(&["ps"]);
    let mut after_names: Vec<String> = after.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    after_names.sort();
    let mut expected = four.clone();
    expected.extend(pinned.iter().cloned());
    expected.sort();
    assert_eq!(after_names, expected, "the restarted control plane knows every container");
    let ids_after: BTreeMap<String, String> = engines.iter().flat_map(|e| e.managed()).map(|c| (c.name, c.id)).collect();
    assert_eq!(ids_after, ids_before, "a restart recreates nothing");
    // And it manages again with no manual step.
    cp.json(&["service", "scale", "WEB-Server/Nginx-cluster", "6"]);
    wait_engines("scale up to six after restart", &engines, |m| {
        all_running(m).iter().filter(|n| n.contains("Nginx")).count() == 6 && m.values().all(|v| v.len() >= 3)
    });

    // Removal reaches the engines.
    cp.json(&["service", "rm", "WEB-Server/pinned"]);
    wait_for("pinned containers removed from h2", WAIT, || (!engines[1].managed().iter().any(|c| c.name.contains("pinned"))).then_some(()));
    cp.json(&["stack", "rm", "WEB-Server"]);
    wait_for("every container removed from the engines", WAIT, || engines.iter().all(|e| e.managed().is_empty()).then_some(()));
    assert!(cp.json(&["stack", "ls"]).as_array().unwrap().is_empty());
    assert!(cp.json(&["ps"]).as_array().unwrap().is_empty());
}

/// Kills the given pids (and their process groups' children via the shell) on drop.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            // The shell execs nothing after `&&`, so the agent is its child: kill both.
            let _ = Command::new("pkill").args(["-KILL", "-P", &pid.to_string()]).status();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
