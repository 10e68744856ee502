//! Monitoring on a real engine: a CPU burner shows about one core, a memory holder its memory,
//! a container moving data its network bytes; history comes back ordered and rolled up; the
//! live stream switches agents to 1 s; `/metrics` passes Prometheus' own checker.

use corral_e2e::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const MIB: f64 = 1024.0 * 1024.0;

fn points(history: &Value) -> Vec<Value> {
    history["points"].as_array().cloned().unwrap_or_default()
}

/// Waits until `check` accepts the container's recent history; returns that history.
fn wait_stats(cp: &ControlPlane, args: &[&str], what: &str, mut check: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, WAIT, || {
            std::thread::sleep(Duration::from_millis(900));
            last = points(&cp.json(args));
            check(&last).then(|| last.clone())
        })
    }));
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last points: {last:?}"))
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("run curl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn usage_is_measured_stored_and_exported() {
    let cluster = Cluster::start(1);
    let cp = &cluster.cp;
    cp.json(&["stack", "create", "mon"]);
    cp.json(&["service", "create", "mon/burn", "--image", TEST_IMAGE, "--", "sh", "-c", "while :; do :; done"]);
    // Pages of /dev/shm (tmpfs) are charged to the container and are not reclaimable cache.
    cp.json(&["service", "create", "mon/hold", "--image", TEST_IMAGE, "--", "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 && sleep 3600"]);
    let serve = "mkdir -p /www && dd if=/dev/zero of=/www/blob bs=1M count=1 && httpd -f -p 8080 -h /www";
    cp.json(&["service", "create", "mon/web", "--image", TEST_IMAGE, "--", "sh", "-c", serve]);
    let names = ["mon-burn-1", "mon-hold-1", "mon-web-1"].map(String::from);
    cluster.wait_exactly("the three containers running", &names, WAIT);
    let web_ip = wait_for("the web container's address", WAIT, || {
        let ps = cp.json(&["ps"]);
        ps.as_array()?.iter().find(|c| c["name"] == "mon-web-1").and_then(|c| c["ip"].as_str().map(str::to_string)).filter(|ip| !ip.is_empty())
    });
    // Container to container on the test engine's own bridge.
    let fetch = format!("while :; do wget -q -O /dev/null http://{web_ip}:8080/blob; sleep 0.1; done");
    cp.json(&["service", "create", "mon/fetch", "--image", TEST_IMAGE, "--", "sh", "-c", &fetch]);

    // A busy loop gets one core on a quiet machine, less when other work takes the cores: the
    // engine's own figure, read alongside, is what Corral's must match.
    let engine_cpu = || {
        let out = cluster.engines[0].docker(&["stats", "--no-stream", "--format", "{{.CPUPerc}}", "mon-burn-1"]);
        String::from_utf8_lossy(&out.stdout).trim().trim_end_matches('%').parse::<f64>().ok()
    };
    let mut engine_saw = Vec::new();
    let burn = wait_stats(cp, &["stats", "container", "mon-burn-1", "--since", "2m"], "the burner's usage to match the engine's", |p| {
        let Some(engine) = engine_cpu() else { return false };
        engine_saw.push(engine);
        let ours: Vec<f64> = p.iter().rev().take(2).filter_map(|x| x["cpu_percent"].as_f64()).collect();
        ours.len() == 2 && ours.iter().all(|c| *c >= 20.0 && (c - engine).abs() <= 25.0 + engine * 0.25)
    });
    for p in burn.iter().rev().take(2) {
        let cpu = p["cpu_percent"].as_f64().unwrap();
        assert!((20.0..=130.0).contains(&cpu), "a busy loop is up to about one core: {cpu} in {burn:?} (the engine saw {engine_saw:?})");
    }
    assert!(burn.windows(2).all(|w| w[0]["ts"].as_i64() < w[1]["ts"].as_i64()), "points are ordered: {burn:?}");

    let hold = wait_stats(cp, &["stats", "container", "mon-hold-1", "--since", "2m"], "the holder's memory", |p| {
        p.last().is_some_and(|x| x["memory_bytes"].as_f64().unwrap_or(0.0) >= 40.0 * MIB)
    });
    let limit = hold.last().unwrap()["memory_limit_bytes"].as_f64().unwrap();
    assert!(limit >= 48.0 * MIB, "an unlimited container's limit is the host's memory: {limit}");

    wait_stats(cp, &["stats", "container", "mon-fetch-1", "--since", "2m"], "the fetcher's network bytes", |p| {
        p.last().is_some_and(|x| x["network_rx_bytes_per_second"].as_f64().unwrap_or(0.0) >= 100_000.0)
    });
    wait_stats(cp, &["stats", "container", "mon-web-1", "--since", "2m"], "the server's network bytes", |p| {
        p.last().is_some_and(|x| x["network_tx_bytes_per_second"].as_f64().unwrap_or(0.0) >= 100_000.0)
    });

    // Services add up their containers; hosts carry their own figures.
    let service = wait_stats(cp, &["stats", "service", "mon/burn", "--since", "2m"], "the service's totals", |p| {
        p.last().is_some_and(|x| x["containers"] == 1 && x["cpu_percent"].as_f64().unwrap_or(0.0) >= 60.0)
    });
    assert!(!service.is_empty());
    let host = &cluster.engines[0].name;
    let host_points = points(&cp.json(&["stats", "host", host]));
    let last = host_points.last().expect("the host has samples");
    assert!(last["memory_limit_bytes"].as_f64().unwrap() > 0.0 && last["disk_total_bytes"].as_f64().unwrap() > 0.0, "{last}");

    // A coarser step averages samples into buckets that start on multiples of it.
    let stepped = cp.json(&["stats", "container", "mon-burn-1", "--since", "10m", "--step", "1m"]);
    assert_eq!(stepped["step_seconds"], 60, "{stepped}");
    let stepped = points(&stepped);
    assert!(!stepped.is_empty() && stepped.iter().all(|p| p["ts"].as_i64().unwrap() % 60 == 0), "{stepped:?}");
    assert!(stepped.len() < burn.len(), "fewer points than raw samples");

    // Bad input is explained.
    assert!(cp.fails(&["stats", "container", "nope-1"]).contains("does not exist"));
    assert!(cp.fails(&["stats", "container", "mon-burn-1", "--since", "yesterday"]).contains("-15m"));
    assert!(cp.fails(&["stats", "service", "mon/nope"]).contains("nope"));

    // The dashboard names the burner as the busiest container.
    let token = cp.admin_token();
    let auth = format!("Authorization: Bearer {token}");
    let (ok, summary) = curl(&["-H", &auth, &format!("{}/v1/stats/summary", cp.url)]);
    assert!(ok, "{summary}");
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["hosts"], 1, "{summary}");
    assert_eq!(summary["busiest_containers"][0]["name"], "mon-burn-1", "{summary}");

    // Live: frames of the host come every second while someone watches.
    let mut top = cp.cli(&["-o", "json", "top"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("run corral top");
    let mut lines = BufReader::new(top.stdout.take().unwrap()).lines();
    let mut times = Vec::new();
    while times.len() < 5 {
        let line = lines.next().expect("corral top prints frames").expect("a line");
        let frame: Value = serde_json::from_str(&line).expect("frames are JSON");
        assert!(frame["containers"].as_array().is_some_and(|c| c.len() == 4), "{frame}");
        times.push(frame["at_ms"].as_u64().unwrap());
    }
    let _ = top.kill();
    let _ = top.wait();
    // The first frame is the latest one kept; after the switch, reports come a second apart.
    let gaps: Vec<u64> = times.windows(2).skip(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= 1_600), "live reports come every second: {times:?}");

    // /metrics: refused without the token, and valid for Prometheus' own checker.
    let (_, refused) = curl(&["-w", "%{http_code}", "-o", "/dev/null", &format!("{}/metrics", cp.url)]);
    assert_eq!(refused, "401");
    let (ok, page) = curl(&["-f", "-H", &auth, &format!("{}/metrics", cp.url)]);
    assert!(ok, "{page}");
    for needle in [
        "corral_container_cpu_cores{",
        "container=\"mon-burn-1\"",
        "corral_host_cpu_ratio{",
        "corral_service_cpu_cores{",
        "corral_agents_connected 1",
        "corral_reconcile_duration_seconds_count",
        "corral_api_request_duration_seconds_bucket",
    ] {
        assert!(page.contains(needle), "{needle} missing from /metrics:\n{page}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/setup.sh");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool check metrics: {}\n{page}", text(&checked));
}
