//! An agent is trusted with no more than its own host.
//!
//! A fake agent speaks the real protocol (`corral_proto` over a WebSocket to `/v1/agent`) with
//! nothing but a join token, and reports what no real agent would: containers whose `io.corral.*`
//! labels ask for a service of scale 4,294,967,295 or a spec the API would refuse, host facts
//! with terminal escape codes and newlines, stats for containers it does not run, reports too big
//! to keep. Each test asserts what a user of the control plane sees: `corral host ls` and the API
//! keep answering, the host says what was refused and why, nothing reaches other hosts, and a
//! restarted control plane serves at once. No Docker engine is needed: every host here is fake.

use corral_e2e::fake_agent::facts;
use corral_e2e::*;
use corral_proto::stats::{ContainerStats, HostStats, StatsReport};
use corral_proto::{AgentMessage, ContainerState, HostFacts, LogChunk, LogLine, ObservedContainer, ServerMessage};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The spec a service made through the API would carry in its `io.corral.service-spec` label.
fn spec_json(image: &str) -> Value {
    json!({"kind": "container", "image": image, "command": [], "env": [], "ports": [], "labels": {}, "constraints": [], "reschedule_after_secs": 60})
}

/// A running container as an agent reports it, labelled as instance `instance` of STACK/SERVICE.
fn labelled(name: &str, stack: &str, service: &str, instance: &str, spec: &Value) -> ObservedContainer {
    let labels: BTreeMap<String, String> = [
        ("io.corral.managed", "true".to_string()),
        ("io.corral.environment", "Default".to_string()),
        ("io.corral.stack", stack.to_string()),
        ("io.corral.service", service.to_string()),
        ("io.corral.instance", instance.to_string()),
        ("io.corral.revision", "1".to_string()),
        ("io.corral.service-spec", spec.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ObservedContainer {
        name: name.into(),
        docker_id: "0123456789ab".into(),
        image: spec["image"].as_str().unwrap_or("busybox").into(),
        state: ContainerState::Running,
        status: "Up 3 seconds".into(),
        ip: Some("172.17.0.2".into()),
        ports: Vec::new(),
        labels,
    }
}

/// One plain HTTP/1.1 request on loopback with the admin token: (status, JSON body or Null).
fn get(cp: &ControlPlane, path: &str) -> (u16, Value) {
    let addr = cp.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the control plane");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", cp.admin_token());
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `get` that must answer within `limit`.
fn get_quickly(cp: &ControlPlane, path: &str, limit: Duration) -> Value {
    let started = Instant::now();
    let (status, body) = get(cp, path);
    assert!(started.elapsed() < limit, "GET {path} took {:?}", started.elapsed());
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn host<'a>(hosts: &'a Value, name: &str) -> Option<&'a Value> {
    hosts.as_array()?.iter().find(|h| h["name"] == name)
}

/// The control plane's resident memory in MiB, from /proc.
fn rss_mib(cp: &ControlPlane) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", cp.proc.child.id())).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0) / 1024
}

/// `f` off the async worker, for the blocking harness calls (child processes, plain sockets).
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn start(args: &[&str]) -> (tempfile::TempDir, ControlPlane, String) {
    let tmp = tempfile::tempdir().unwrap();
    let launch = Launch { args: args.iter().map(|a| a.to_string()).collect(), ..Launch::default() };
    let cp = ControlPlane::launch(&tmp.path().join("data"), &launch);
    let token = cp.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    (tmp, cp, token)
}

/// Waits until host `name` shows a problem; returns it.
fn wait_problem(cp: &ControlPlane, name: &str) -> String {
    wait_for(&format!("host {name} to show what was refused"), Duration::from_secs(10), || {
        let hosts = get_quickly(cp, "/v1/hosts", Duration::from_secs(2));
        host(&hosts, name)?["problem"].as_str().map(str::to_string)
    })
}

/// The seed of the issue: instance 4,294,967,295 of a service froze the control loop, grew memory
/// by ~40 MB/s, and a restarted control plane never served because its first pass ran before
/// the listener. Now the container is refused with the reason on the host, nothing is adopted,
/// the API answers throughout, and a restart serves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_instance_number_is_refused_and_a_restart_serves_at_once() {
    let (_tmp, cp, token) = sync(|| start(&[]));
    let fake = FakeAgent::join(&cp, &token, None, "fake-huge", facts("fake-huge")).await.expect("the join token lets it in");
    let spec = spec_json("busybox");
    fake.report(vec![labelled("S-web-4294967295", "S", "web", "4294967295", &spec), labelled("S-web-1001", "S", "web", "1001", &spec)]);
    let problem = sync(|| wait_problem(&cp, "fake-huge"));
    for name in ["S-web-4294967295", "S-web-1001"] {
        assert!(problem.contains(name), "the problem names the refused container {name}: {problem}");
    }
    assert!(problem.contains("1000"), "and says the largest instance number allowed: {problem}");
    sync(|| {
        // The API keeps answering quickly, and nothing was rebuilt from the labels.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            get_quickly(&cp, "/v1/hosts", Duration::from_secs(1));
            assert_eq!(get_quickly(&cp, "/v1/services", Duration::from_secs(1)), json!([]));
            std::thread::sleep(Duration::from_millis(200));
        }
        let table = text(&cp.cli(&["host", "ls"]).output().unwrap());
        assert!(table.contains("S-web-4294967295"), "`corral host ls` shows the problem too: {table}");
        assert!(rss_mib(&cp) < 300, "memory stays bounded: {} MiB", rss_mib(&cp));
    });
    drop(fake);
    // A crash and a restart on the same data dir: it serves at once.
    let (data_dir, listen) = (cp.data_dir.clone(), cp.url.trim_start_matches("http://").to_string());
    let mut cp = cp;
    let _ = cp.proc.child.kill();
    let _ = cp.proc.child.wait();
    sync(|| {
        let cp = ControlPlane::start_on(&data_dir, &listen);
        get_quickly(&cp, "/v1/hosts", Duration::from_secs(3));
        assert_eq!(get_quickly(&cp, "/v1/stacks", Duration::from_secs(1)), json!([]), "no stack was created from the labels");
    });
}

/// A database that holds an absurd scale (written by an older version, or by hand) cannot keep
/// the control plane from serving, nor freeze its loop: the listener does not wait for the loop,
/// and a pass never plans more than the largest scale.
#[test]
fn a_planted_huge_scale_cannot_keep_the_control_plane_from_serving() {
    let (_tmp, cp, _) = start(&[]);
    cp.json(&["stack", "create", "S"]);
    cp.json(&["service", "create", "S/web", "--image", TEST_IMAGE, "--scale", "1"]);
    let (data_dir, listen) = (cp.data_dir.clone(), cp.url.trim_start_matches("http://").to_string());
    assert!(cp.proc.stop().success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", data_dir.join("corral.db").display());
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        sqlx::query("UPDATE services SET scale = 4294967295").execute(&mut db).await.unwrap();
    });
    let cp = ControlPlane::start_on(&data_dir, &listen);
    get_quickly(&cp, "/v1/hosts", Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(3));
    get_quickly(&cp, "/v1/services", Duration::from_secs(1));
    assert!(rss_mib(&cp) < 300, "memory stays bounded: {} MiB", rss_mib(&cp));
    assert!(cp.proc.stop().success(), "and it still stops cleanly");
}

/// Every spec the API would refuse is refused when it comes from labels too, with the reason on
/// the host; nothing of it is created, and another host is never sent a container from it. A
/// valid container beside them is still adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_specs_are_refused_and_never_reach_other_hosts() {
    let (_tmp, cp, token) = sync(|| start(&["--adoption-window", "1"]));
    let mut other = FakeAgent::join(&cp, &token, None, "bystander", facts("bystander")).await.expect("joins");
    other.report(Vec::new());
    let fake = FakeAgent::join(&cp, &token, None, "crafty", facts("crafty")).await.expect("joins");
    let good = spec_json(TEST_IMAGE);
    let with = |key: &str, value: Value| {
        let mut spec = good.clone();
        spec[key] = value;
        spec
    };
    let lb_with_image = json!({"kind": "load-balancer", "image": "busybox", "command": [], "env": [], "ports": [], "labels": {}, "constraints": [],
        "reschedule_after_secs": 60, "lb": {"ports": [{"listen": 80, "target": 80, "mode": "http"}], "targets": ["S/web"], "rules": []}});
    // Instance 2 of each: were one adopted, its instance 1 would be placed on another host.
    let crafted = [
        labelled("BadImage-web-2", "BadImage", "web", "2", &with("image", json!("Not An Image!"))),
        labelled("NulEnv-web-2", "NulEnv", "web", "2", &with("env", json!(["A=1\u{0}rm -rf /"]))),
        labelled("OwnLabel-web-2", "OwnLabel", "web", "2", &with("labels", json!({"io.corral.managed": "false"}))),
        labelled("BadConstraint-web-2", "BadConstraint", "web", "2", &with("constraints", json!(["zone=a"]))),
        labelled("LongGrace-web-2", "LongGrace", "web", "2", &with("reschedule_after_secs", json!(4_000_000_000u32))),
        labelled("BadPort-web-2", "BadPort", "web", "2", &with("ports", json!([{"host_port": 80, "container_port": 0, "protocol": "tcp"}]))),
        labelled("LbImage-lb-2", "LbImage", "lb", "2", &lb_with_image),
        labelled("\u{1b}[2J-web-2", "\u{1b}[2J", "web", "2", &good),
        labelled("Long-web-2", "Long", &"w".repeat(300), "2", &good),
        labelled("Mismatch-web-2", "Other", "web", "2", &good),
        labelled("BigRev-web-2", "BigRev", "web", "2", &good),
    ];
    let mut report: Vec<ObservedContainer> = crafted.to_vec();
    report.last_mut().unwrap().labels.insert("io.corral.revision".into(), "4294967295".into());
    report.push(labelled("Fine-web-1", "Fine", "web", "1", &good));
    fake.report(report);
    let problem = sync(|| wait_problem(&cp, "crafty"));
    for c in &crafted {
        let shown = format!("{:?}", c.name);
        let shown = shown.trim_matches('"');
        assert!(problem.contains(shown), "the problem names {shown}: {problem}");
    }
    assert!(!problem.contains('\u{1b}'), "escape codes are shown escaped, never raw: {problem:?}");
    // Past the adoption window, another host still gets nothing from a refused spec.
    let sent = other.desired_names(Duration::from_secs(4)).await;
    assert!(sent.iter().all(|n| n.starts_with("Fine-")), "the bystander was sent only what was valid: {sent:?}");
    sync(|| {
        let stacks: Vec<String> = cp.json(&["stack", "ls"]).as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(stacks, ["Fine"], "only the valid container's stack was rebuilt");
        let services = cp.json(&["service", "ls"]);
        assert_eq!(services.as_array().unwrap().len(), 1, "{services}");
        assert_eq!((services[0]["name"].as_str(), services[0]["scale"].as_u64()), (Some("web"), Some(1)));
        let table = text(&cp.cli(&["host", "ls"]).output().unwrap());
        assert!(!table.contains('\u{1b}'), "`corral host ls` prints no escape code: {table:?}");
    });
}

/// Host facts that would put escape codes in `corral host ls`, forge lines in the control plane's
/// log, or give a host a name it cannot be removed by are refused in the hello, with what is
/// wrong; a host with an unusual but valid name joins and is removed by the name shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_facts_that_would_mislead_a_reader_are_refused() {
    let (_tmp, cp, token) = sync(|| start(&[]));
    let forged = "\n2030-01-01T00:00:00.000000Z ERROR corral_server: FORGED admin token leaked";
    let with = |change: &dyn Fn(&mut HostFacts)| {
        let mut f = facts("fine");
        change(&mut f);
        f
    };
    let cases: Vec<(&str, &str, HostFacts)> = vec![
        ("escape codes in the name", "name", facts("\u{1b}[2J\u{1b}[31mh1")),
        ("a new line in the name", "name", facts(&format!("h1{forged}"))),
        ("a name that is a path", "name", facts("..")),
        ("a name that looks like a flag", "name", facts("--all")),
        ("a name with a slash", "name", facts("a/b")),
        ("an empty name", "name", facts("")),
        ("a huge name", "name", facts(&"h".repeat(100_000))),
        ("a forged line in the OS", "os", with(&|f| f.os = format!("Linux{forged}"))),
        ("escape codes in the kernel", "kernel", with(&|f| f.kernel = "6.1\u{1b}]0;owned\u{7}".into())),
        ("a huge Docker version", "docker_version", with(&|f| f.docker_version = "9".repeat(1 << 20))),
        ("a bad agent version", "agent_version", with(&|f| f.agent_version = "0.1\u{0}".into())),
        ("an address that is no address", "address", with(&|f| f.address = "10.0.0.1; rm -rf /".into())),
        ("a new line in a label key", "labels", with(&|f| f.labels = [(format!("zone{forged}"), "a".to_string())].into())),
        ("escape codes in a label value", "labels", with(&|f| f.labels = [("zone".to_string(), "\u{1b}[2Ja".to_string())].into())),
    ];
    for (i, (what, field, facts)) in cases.into_iter().enumerate() {
        let answer = FakeAgent::join(&cp, &token, None, &format!("id-{i}"), facts).await.err().unwrap_or_else(|| panic!("{what}: welcomed"));
        assert_eq!(answer["code"], "bad_hello", "{what}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(field), "{what}: the refusal names the {field}: {message}");
        assert!(message.len() < 2000 && !message.chars().any(char::is_control), "{what}: the refusal itself is short and printable: {message:?}");
    }
    // A host id is the host's key in the API and the log: it is checked too.
    let answer = FakeAgent::join(&cp, &token, None, &format!("id{forged}"), facts("fine")).await.err().expect("a forged host id is refused");
    assert!(answer["message"].as_str().unwrap().contains("host id"), "{answer}");

    let fine = FakeAgent::join(&cp, &token, None, "id-fine", facts("web_01.example.com")).await.expect("a valid name joins");
    fine.report(Vec::new());
    sync(|| {
        let table = text(&cp.cli(&["host", "ls"]).output().unwrap());
        assert!(!table.chars().any(|c| c.is_control() && c != '\n'), "`corral host ls` prints no control character: {table:?}");
        let hosts = cp.hosts();
        assert_eq!(hosts.len(), 1, "only the valid host joined: {hosts:?}");
        let log = cp.proc.output();
        assert!(!log.lines().any(|l| l.contains("FORGED") && !l.contains("\\n")), "no line of the log was forged by an agent:\n{log}");
    });
    drop(fine);
    sync(|| {
        wait_for("the host to be disconnected", Duration::from_secs(10), || (cp.hosts()[0]["state"] == "disconnected").then_some(()));
        cp.json(&["host", "rm", "web_01.example.com"]);
        assert_eq!(cp.hosts().len(), 0, "the host is removed by the name `host ls` shows");
    });
}

/// `--max-hosts-per-join-token N`: the N+1th host that says hello with the same token is refused
/// with what to do; hosts that joined keep reconnecting with their own credentials; a rotated
/// token starts a new count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_per_join_token_are_capped_until_the_token_is_rotated() {
    let (_tmp, cp, token) = sync(|| start(&["--max-hosts-per-join-token", "2"]));
    let a = FakeAgent::join(&cp, &token, None, "id-a", facts("a")).await.expect("first host");
    let credential = a.welcome["credential"].as_str().expect("a credential for a host that joined").to_string();
    let _b = FakeAgent::join(&cp, &token, None, "id-b", facts("b")).await.expect("second host");
    let refused = FakeAgent::join(&cp, &token, None, "id-c", facts("c")).await.err().expect("a third host is refused");
    assert_eq!(refused["code"], "bad_hello", "{refused}");
    let message = refused["message"].as_str().unwrap();
    for hint in ["2 hosts", "--max-hosts-per-join-token", "corral host join-command --rotate"] {
        assert!(message.contains(hint), "the refusal says {hint:?}: {message}");
    }
    drop(a);
    sync(|| {
        wait_for("host a to be disconnected", Duration::from_secs(10), || (host(&Value::Array(cp.hosts()), "a")?["state"] == "disconnected").then_some(()))
    });
    let _a = FakeAgent::join(&cp, &token, Some(&credential), "id-a", facts("a")).await.expect("a host that joined comes back with its credential");
    let new_token = sync(|| cp.json(&["host", "join-command", "--rotate"])["token"].as_str().unwrap().to_string());
    let _c = FakeAgent::join(&cp, &new_token, None, "id-c", facts("c")).await.expect("the rotated token starts a new count");
    assert_eq!(sync(|| cp.hosts()).len(), 3);
}

/// Stats are kept only for containers the host itself reports, within limits: a report of 3,000
/// containers it does not run, or a million CPU cores, adds no series and no figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_only_the_hosts_own_containers_within_limits() {
    let (_tmp, cp, token) = sync(|| start(&[]));
    let fake = FakeAgent::join(&cp, &token, None, "id-stats", facts("stats")).await.expect("joins");
    fake.report(vec![labelled("Mine-web-1", "Mine", "web", "1", &spec_json("busybox"))]);
    let ghost = |i: usize| ContainerStats {
        name: format!("ghost-{i}"),
        stack: "Mine".into(),
        service: "web".into(),
        cpu_percent: 50.0,
        memory_bytes: 1 << 20,
        ..Default::default()
    };
    let mut containers: Vec<ContainerStats> = (0..3000).map(ghost).collect();
    containers.push(ContainerStats { name: "Mine-web-1".into(), cpu_percent: 10.0, ..Default::default() });
    let host = HostStats { cpu_percent: 5.0, cpu_core_percent: vec![1.0; 1_000_000], memory_total_bytes: 1 << 30, ..Default::default() };
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // The observed report first, so the control plane knows what the host runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.send(&AgentMessage::Stats(StatsReport { at_ms, host, containers, tunnel: None }));
    sync(|| {
        let summary = wait_for("the stats report to arrive", Duration::from_secs(10), || {
            let summary = get_quickly(&cp, "/v1/stats/summary", Duration::from_secs(2));
            (summary["hosts"] == 1).then_some(summary)
        });
        assert_eq!(summary["containers"], 1, "only the container the host reports running is counted");
        assert!(summary["cpu_cores"].as_u64().unwrap() <= 1024, "CPU cores are capped: {}", summary["cpu_cores"]);
        let (status, body) = get(&cp, "/v1/containers/ghost-1/stats");
        assert_eq!(status, 404, "no history was kept for a container the host does not run: {body}");
    });
}

/// Limits on size: an observed report of more containers than any host runs is refused (the
/// host says so), and a message larger than the largest a report may be ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_reports_and_messages_are_refused() {
    let (_tmp, cp, token) = sync(|| start(&[]));
    let mut fake = FakeAgent::join(&cp, &token, None, "id-big", facts("big")).await.expect("joins");
    let unlabelled = |i: usize| ObservedContainer {
        name: format!("c-{i}"),
        docker_id: format!("{i:012x}"),
        image: "busybox".into(),
        state: ContainerState::Running,
        status: "Up".into(),
        ip: None,
        ports: Vec::new(),
        labels: BTreeMap::new(),
    };
    fake.report((0..5001).map(unlabelled).collect());
    let problem = sync(|| wait_problem(&cp, "big"));
    assert!(problem.contains("5001 containers") && problem.contains("5000"), "the host says the report was too big: {problem}");
    assert!(
        fake.collect(Duration::from_millis(1500)).await.is_some_and(|m| !m.iter().any(|m| matches!(m, ServerMessage::Desired(_)))),
        "a host whose report was refused is told nothing to run"
    );
    // 17 MiB in one frame: the connection is closed rather than the message buffered.
    fake.send_text(format!(r#"{{"type":"heartbeat","padding":"{}"}}"#, "x".repeat(17 << 20)));
    let closed = fake.collect(Duration::from_secs(5)).await;
    assert!(closed.is_none(), "the control plane closed the session");
    sync(|| {
        wait_for("the host to be disconnected", Duration::from_secs(10), || (cp.hosts()[0]["state"] == "disconnected").then_some(()));
        get_quickly(&cp, "/v1/hosts", Duration::from_secs(1));
    });
}

/// A log stream is fed only by the agent of the host that runs the container: another host's
/// agent cannot put lines into it, whatever request id it guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_come_only_from_the_containers_own_host() {
    let (_tmp, cp, token) = sync(|| start(&[]));
    let mut owner = FakeAgent::join(&cp, &token, None, "id-owner", facts("owner")).await.expect("joins");
    owner.report(vec![labelled("App-web-1", "App", "web", "1", &spec_json("busybox"))]);
    let intruder = FakeAgent::join(&cp, &token, None, "id-intruder", facts("intruder")).await.expect("joins");
    intruder.report(Vec::new());
    sync(|| {
        wait_for("App-web-1 to be adopted on owner", Duration::from_secs(10), || {
            let ps = cp.json(&["ps"]);
            ps.as_array()?.iter().any(|c| c["name"] == "App-web-1" && c["host"] == "owner").then_some(())
        })
    });
    let request = ws_request(&cp.url, "/v1/containers/App-web-1/logs", &cp.admin_token());
    let (mut reader, _) = tokio_tungstenite::connect_async(request).await.expect("open the log stream");
    let id = loop {
        match owner.inbox.recv().await.expect("the session stays open") {
            ServerMessage::Logs(request) => break request.id,
            _ => continue,
        }
    };
    let line = |text: &str| LogLine { stream: "stdout".into(), line: text.into() };
    // The intruder guesses the request id right, and tries its neighbours too.
    for guess in id.saturating_sub(2)..=id + 2 {
        intruder.send(&AgentMessage::Logs(LogChunk { id: guess, lines: vec![line("FORGED by another host")], end: None }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    owner.send(&AgentMessage::Logs(LogChunk { id, lines: vec![line("from the container")], end: Some("done".into()) }));
    let mut lines = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(5), reader.next()).await {
        let Message::Text(t) = frame else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "end" {
            break;
        }
        lines.push(v["line"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(lines, ["from the container"], "only the owner's lines reach the reader");
}

/// A tunnel report speaks only of the host's own peers: hosts of another environment, hosts
/// that do not exist and thousands of made-up peers are left out, the names shown are the control
/// plane's, and an explanation with terminal escapes is replaced by a note that it was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_reports_name_only_the_hosts_own_peers() {
    use corral_proto::network::{PeerReport, TunnelReport};
    let (_tmp, cp, token) = sync(|| start(&[]));
    let a = FakeAgent::join(&cp, &token, None, "id-ta", facts("ta")).await.expect("joins");
    let b = FakeAgent::join(&cp, &token, None, "id-tb", facts("tb")).await.expect("joins");
    let dev_token = sync(|| {
        cp.json(&["env", "create", "DEV"]);
        cp.json(&["--env", "DEV", "host", "join-command"])["token"].as_str().unwrap().to_string()
    });
    let _c = FakeAgent::join(&cp, &dev_token, None, "id-tc", facts("tc")).await.expect("joins DEV");
    a.report(vec![]);
    b.report(vec![]);
    let peer = |host: &str, endpoint: &str| PeerReport {
        host_id: host.into(),
        endpoint: endpoint.into(),
        last_handshake_secs: Some(1),
        listed_secs: 30,
        rx_bytes: 1,
        tx_bytes: 1,
    };
    let mut peers = vec![peer("id-tc", "10.0.0.3:51820"), peer("id-nobody", "10.0.0.4:51820"), peer("id-tb", "10.0.0.2:51820")];
    peers.extend((0..2000).map(|i| peer(&format!("id-x{i}"), "10.0.0.9:51820")));
    let report = TunnelReport { running: true, port: 51820, error: Some("\x1b]0;owned\x07rules".into()), peers };
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let stats = AgentMessage::Stats(StatsReport { at_ms, tunnel: Some(report), ..Default::default() });
    let ta = sync(|| {
        wait_for("ta's tunnel with its one real peer", Duration::from_secs(15), || {
            a.send(&stats);
            std::thread::sleep(Duration::from_millis(300));
            let network = cp.json(&["network", "ls"]);
            let ta = network["hosts"].as_array()?.iter().find(|h| h["host"] == "ta")?.clone();
            (ta["tunnel"]["peers"].as_array()?.len() == 1).then_some(ta)
        })
    });
    let shown = &ta["tunnel"]["peers"][0];
    assert_eq!((shown["host"].as_str(), shown["endpoint"].as_str()), (Some("tb"), Some("10.0.0.2:51820")), "{ta}");
    let error = ta["tunnel"]["error"].as_str().unwrap();
    assert!(error.contains("refused") && !error.contains('\x1b'), "{error}");
    let problem = sync(|| wait_problem(&cp, "ta"));
    assert!(problem.contains("forwarding rules") && !problem.contains('\x1b') && !problem.contains("owned"), "{problem}");
    let network = sync(|| cp.json(&["network", "ls"]));
    let tb = network["hosts"].as_array().unwrap().iter().find(|h| h["host"] == "tb").unwrap();
    assert!(tb["tunnel"].is_null(), "tb reported no tunnel: {tb}");
}
