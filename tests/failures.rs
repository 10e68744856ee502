//! Every container that does not run says why, where users look — `corral ps`, `corral service
//! ls`, and the web UI in headless Chromium (tests/ui/failures.mjs) — on real engines: a port
//! taken on the host, an exit code with the last line of the log, a crash loop, the engine's
//! refusal, an image that cannot be pulled, a pull under way; and a host that goes silent or dies
//! shows in the services' state within 2 s.

use corral_e2e::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const STACK: &str = "FAIL";
/// A host port nothing else of the test suite uses; a plain `docker run` holds it on h1.
const TAKEN_PORT: &str = "18556";

fn ps_row(cp: &ControlPlane, name: &str) -> Option<Value> {
    cp.json(&["ps", STACK]).as_array()?.iter().find(|c| c["name"] == name).cloned()
}

/// Waits until `corral ps` (the table) shows `words` on the line of container `name`.
fn ps_says(cp: &ControlPlane, name: &str, words: &str) -> String {
    wait_for(&format!("ps to say {words:?} about {name}"), WAIT, || {
        let table = text(&cp.cli(&["ps", STACK]).output().unwrap());
        table.lines().find(|l| l.starts_with(&format!(" {name} ")) && l.contains(words)).map(str::to_string)
    })
}

fn service(cp: &ControlPlane, name: &str) -> Value {
    cp.json(&["service", "ls", STACK]).as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or_else(|| panic!("no service {name}"))
}

/// Time from `act` until service `name` is degraded with one of its two containers running,
/// polling the API as fast as the CLI answers.
fn time_until_degraded(cp: &ControlPlane, name: &str, act: impl FnOnce()) -> Duration {
    let started = Instant::now();
    act();
    wait_for(&format!("{name} to be degraded"), Duration::from_secs(10), || {
        let s = service(cp, name);
        (s["status"] == "degraded" && s["running"] == 1).then_some(())
    });
    started.elapsed()
}

#[test]
fn failures_say_why_in_the_cli_and_the_browser() {
    let ui_dir = repo_root().join("ui/dist");
    assert!(ui_dir.join("index.html").is_file(), "the web UI is not built: run `npm --prefix ui run build` (scripts/setup.sh does)");
    let launch = Launch { args: vec!["--ui-dir".into(), ui_dir.display().to_string()], ..Launch::default() };
    let mut cluster = Cluster::start_with(2, launch, false);
    let cp = &cluster.cp;
    let (h1, h2) = (&cluster.engines[0], &cluster.engines[1]);
    let registry = open_registry();
    let _proxy = SlowProxy::start(2 << 20);
    for e in [h1, h2] {
        e.docker(&["rmi", "-f", &format!("{SLOW_REGISTRY}/corral-test/bulky:1")]);
        e.docker(&["image", "prune", "-f"]);
    }
    // Something that is not Corral's holds a host port on h1.
    h1.docker(&["rm", "-f", "port-holder"]);
    let held = h1.docker(&["run", "-d", "--name", "port-holder", "-p", &format!("{TAKEN_PORT}:80"), TEST_IMAGE, "httpd", "-f", "-p", "80"]);
    assert!(held.status.success(), "docker run: {}", text(&held));
    let holder_engine = h1.clone();
    let _holder = Cleanup(move || {
        holder_engine.docker(&["rm", "-f", "port-holder"]);
    });

    cp.json(&["stack", "create", STACK]);
    let create = |name: &str, extra: &[&str], command: &[&str]| {
        let path = format!("{STACK}/{name}");
        let mut args = vec!["service", "create", path.as_str()];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        cp.json(&args);
    };
    let on_h1 = ["--constraint", "host.zone=h1"];
    create("spread", &["--image", TEST_IMAGE, "--scale", "2"], &["sleep", "3600"]);
    create("port", &["--image", TEST_IMAGE, "--port", &format!("{TAKEN_PORT}:80"), on_h1[0], on_h1[1]], &["httpd", "-f", "-p", "80"]);
    create("exit3", &["--image", TEST_IMAGE, on_h1[0], on_h1[1]], &["sh", "-c", "echo starting; echo config file /etc/app.conf is missing; exit 3"]);
    create("badcmd", &["--image", TEST_IMAGE, on_h1[0], on_h1[1]], &["/no/such/binary"]);
    let typo = format!("{registry}/corral-test/busybx:1");
    create("typo", &["--image", &typo, on_h1[0], on_h1[1]], &["sleep", "3600"]);

    // The CLI, container by container.
    let port = ps_says(cp, "FAIL-port-1", &format!("host port {TAKEN_PORT} is already taken on this host"));
    assert!(port.contains("port is already allocated") && port.contains("free it or publish another port"), "{port}");
    let exit = ps_says(cp, "FAIL-exit3-1", "code 3: config file /etc/app.conf is missing");
    assert!(exit.contains("exited with code 3") || exit.contains("last exit code 3"), "{exit}");
    // Between two deaths the container runs again and has no exit to explain: wait for a row
    // that shows one.
    let row = wait_for("FAIL-exit3-1's row with the lines it printed", WAIT, || ps_row(cp, "FAIL-exit3-1").filter(|r| r["log"].is_array()));
    let log: Vec<&str> = row["log"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    assert!(log.ends_with(&["starting", "config file /etc/app.conf is missing"]) && log.len() <= 5, "the last lines it printed: {row}");
    let looping = ps_says(cp, "FAIL-exit3-1", "crash-looping: ");
    let restarts: u32 = looping.split("crash-looping: ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(restarts >= 3 && looping.contains(" restarts in the last minute, last exit code 3"), "{looping}");
    let bad = ps_says(cp, "FAIL-badcmd-1", "engine error: ");
    assert!(bad.contains("/no/such/binary"), "the engine's own words: {bad}");
    ps_says(cp, "FAIL-typo-1", &format!("failed: cannot pull {typo}: image not found in the registry"));
    for name in ["FAIL-port-1", "FAIL-exit3-1", "FAIL-badcmd-1", "FAIL-typo-1"] {
        assert_eq!(ps_row(cp, name).unwrap()["failing"], true, "{name}");
    }
    // The services: all of typo's containers fail, so it is failing with that reason.
    let ls = wait_for("service ls to show typo failing", WAIT, || {
        let ls = text(&cp.cli(&["service", "ls", STACK]).output().unwrap());
        ls.lines().any(|l| l.contains("FAIL/typo") && l.contains("failing")).then_some(ls)
    });
    assert!(ls.lines().any(|l| l.contains("FAIL/typo") && l.contains("h1: cannot pull") && l.contains("image not found")), "{ls}");
    assert!(ls.lines().any(|l| l.contains("FAIL/port") && l.contains("failing") && l.contains("already taken")), "{ls}");
    wait_for("spread to run on both hosts", WAIT, || (service(cp, "spread")["status"] == "active").then_some(()));

    // A pull under way, for the browser to watch: slow, on h2.
    create("slow", &["--image", &format!("{SLOW_REGISTRY}/corral-test/bulky:1"), "--constraint", "host.zone=h2"], &["sleep", "3600"]);
    wait_for("slow's pull to start", WAIT, || ps_row(cp, "FAIL-slow-1").filter(|r| r["state"] == "pulling").map(|_| ()));

    let agent_pid = cluster.agents[1].as_ref().unwrap().child.id();
    let out = Command::new("node")
        .arg(repo_root().join("tests/ui/failures.mjs"))
        .env("CORRAL_UI_URL", &cp.url)
        .env("CORRAL_UI_TOKEN", cp.admin_token())
        .env("CORRAL_UI_STACK", STACK)
        .env("CORRAL_UI_AGENT_PID", agent_pid.to_string())
        .env("CORRAL_UI_AGENT_HOST", &h2.name)
        .output()
        .expect("run node tests/ui/failures.mjs (Node.js is installed by scripts/setup.sh)");
    let log = text(&out);
    println!("{log}");
    // Whatever happened in the browser, the agent must not stay stopped.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent_pid as i32), nix::sys::signal::Signal::SIGCONT);
    assert!(out.status.success(), "the browser checks failed:\n{log}\ncontrol plane log:\n{}", cp.proc.output());

    // Host loss, measured from the signal to the first `corral service ls` (polled back to back,
    // each a process and an HTTP request, about 20 ms apart) that shows it.
    cp.wait_hosts_active(&["h1", "h2"]);
    wait_for("spread to be active again", WAIT, || (service(cp, "spread")["status"] == "active").then_some(()));
    let silent = time_until_degraded(cp, "spread", || cluster.agents[1].as_ref().unwrap().signal(nix::sys::signal::Signal::SIGSTOP));
    println!("a silent agent (SIGSTOP) showed as a degraded service after {silent:?}");
    assert!(silent < Duration::from_secs(2), "took {silent:?}");
    let reason = service(cp, "spread")["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("h2: host not responding"), "{reason}");
    let table = text(&cp.cli(&["ps", &format!("{STACK}/spread")]).output().unwrap());
    assert!(table.contains("h2 (not responding)"), "{table}");
    cluster.agents[1].as_ref().unwrap().signal(nix::sys::signal::Signal::SIGCONT);

    cluster.cp.wait_hosts_active(&["h1", "h2"]);
    wait_for("spread to be active again", WAIT, || (service(&cluster.cp, "spread")["status"] == "active").then_some(()));
    // Dropping the agent's process kills it (SIGKILL), as a crash would.
    let agent = cluster.agents[1].take().unwrap();
    let killed = time_until_degraded(&cluster.cp, "spread", || drop(agent));
    println!("a killed agent (SIGKILL) showed as a degraded service after {killed:?}");
    assert!(killed < Duration::from_secs(2), "took {killed:?}");
    let row = cluster.cp.json(&["ps", &format!("{STACK}/spread")]).as_array().unwrap().iter().find(|c| c["host"] == "h2").cloned().unwrap();
    assert_eq!(row["reason"], "host disconnected; last reported state shown", "{row}");
}

/// Runs its closure when dropped, so a failed assertion still cleans up.
struct Cleanup<F: FnMut()>(F);

impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
