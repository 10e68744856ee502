//! Healing and deploy benchmark: how fast Corral repairs and deploys, measured from the outside.
//!
//! Not a timed test: it prints figures and the targets from the issue next to them, and exits 0
//! whether or not they are met (non-zero only when the harness itself cannot run). See
//! docs/benchmarks.md for how to run it and how to read it.
//!
//!   cargo run -p corral-e2e --bin bench-healing -- [--trials N] [--deploy-trials M]
//!
//! Every clock starts right before the user's action (the `docker rm -f` or `corral` CLI call,
//! or the SIGKILL) and stops when the outside world shows the result: the Docker engine's own
//! API for containers, the control plane's REST API for host state. The engines are polled over
//! their unix sockets directly (the same `GET /containers/json` that `docker ps` sends) every
//! 10 ms, because spawning a `docker` CLI per poll would cost more CPU than what is measured on a
//! 2-core machine, and coarsen the result by its own ~50 ms start-up.

use corral_e2e::{Cluster, Engine, TEST_IMAGE};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POLL: Duration = Duration::from_millis(10);
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const STACK: &str = "bench";
/// Name prefix of the baseline's plain `docker run` containers (not managed by Corral).
const BASE_PREFIX: &str = "corral-bench-base-";
const BASE_LABEL: &str = "io.corral-bench.baseline=true";

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 client (one request per connection) for the engines' unix sockets and the
// control plane's loopback port: no extra dependency, and far cheaper per poll than a CLI.

fn http_get(stream: &mut (impl Read + Write), host: &str, path: &str, auth: Option<&str>) -> Option<(u16, Vec<u8>)> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(token) = auth {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Some((status, if chunked { dechunk(body)? } else { body.to_vec() }))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` on an engine's API; the parsed JSON body on 2xx.
fn engine_get(engine: &Engine, path: &str) -> Option<Value> {
    let sock = engine.socket.trim_start_matches("unix://");
    let mut stream = std::os::unix::net::UnixStream::connect(sock).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let (status, body) = http_get(&mut stream, "docker", path, None)?;
    (200..300).contains(&status).then(|| serde_json::from_slice(&body).ok()).flatten()
}

/// Running containers on `engine` matching one Docker `filters` entry, as (name, id) pairs.
fn engine_running(engine: &Engine, filter_key: &str, filter_value: &str) -> Option<Vec<(String, String)>> {
    let filters = serde_json::json!({ filter_key: [filter_value], "status": ["running"] }).to_string();
    let list = engine_get(engine, &format!("/containers/json?filters={}", pct_encode(&filters)))?;
    Some(
        list.as_array()?
            .iter()
            .map(|c| {
                let name = c["Names"][0].as_str().unwrap_or_default().trim_start_matches('/').to_string();
                (name, c["Id"].as_str().unwrap_or_default().to_string())
            })
            .collect(),
    )
}

/// The id of the running container named exactly `name` on `engine`.
fn running_id(engine: &Engine, name: &str) -> Option<String> {
    engine_running(engine, "name", &format!("^/{name}$"))?.into_iter().find(|(n, _)| n == name).map(|(_, id)| id)
}

/// Every container (any state) named exactly `name` on `engine`.
fn any_named(engine: &Engine, name: &str) -> Option<usize> {
    let filters = serde_json::json!({ "name": [format!("^/{name}$")] }).to_string();
    engine_get(engine, &format!("/containers/json?all=1&filters={}", pct_encode(&filters))).and_then(|v| v.as_array().map(Vec::len))
}

/// Hosts as the control plane's REST API reports them.
fn api_hosts(url: &str, token: &str) -> Option<Vec<Value>> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let (status, body) = http_get(&mut stream, addr, "/v1/hosts", Some(token))?;
    if status != 200 {
        return None;
    }
    serde_json::from_slice::<Value>(&body).ok()?.as_array().cloned()
}

fn host_state(url: &str, token: &str, name: &str) -> Option<(String, bool)> {
    let hosts = api_hosts(url, token)?;
    let h = hosts.iter().find(|h| h["name"] == name)?;
    Some((h["state"].as_str().unwrap_or_default().to_string(), h["in_sync"] == true))
}

/// One container event as the engine logged it, with the engine's own timestamp.
struct Event {
    action: String,
    name: String,
    id: String,
    at: SystemTime,
}

/// Container events on `engine` between `since` and now (the engine closes the stream at `until`).
fn engine_events(engine: &Engine, since: SystemTime) -> Vec<Event> {
    let secs = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let filters = serde_json::json!({ "type": ["container"] }).to_string();
    let path = format!("/events?since={}&until={}&filters={}", secs(since - Duration::from_millis(5)), secs(SystemTime::now()), pct_encode(&filters));
    let sock = engine.socket.trim_start_matches("unix://");
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(sock) else { return Vec::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some((200, body)) = http_get(&mut stream, "docker", &path, None) else { return Vec::new() };
    serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .map(|e| Event {
            action: e["Action"].as_str().unwrap_or_default().to_string(),
            name: e["Actor"]["Attributes"]["name"].as_str().unwrap_or_default().to_string(),
            id: e["Actor"]["ID"].as_str().unwrap_or_default().to_string(),
            at: UNIX_EPOCH + Duration::from_nanos(e["timeNano"].as_u64().unwrap_or_default()),
        })
        .collect()
}

/// Time of the first event `action` for container `name` (optionally not id `not_id`) after `from`.
fn first_event(events: &[Event], action: &str, name: &str, not_id: Option<&str>) -> Option<SystemTime> {
    events.iter().filter(|e| e.action == action && e.name == name && not_id.is_none_or(|id| e.id != id)).map(|e| e.at).min()
}

/// `b - a` when both are known and in order.
fn span(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<Duration> {
    b?.duration_since(a?).ok()
}

/// Named series that split one measurement into its phases, printed in insertion order.
#[derive(Default)]
struct Breakdown(Vec<(String, Series)>);

impl Breakdown {
    fn record(&mut self, label: &str, d: Option<Duration>) {
        if let Some(pos) = self.0.iter().position(|(l, _)| l == label) {
            self.0[pos].1.record(d);
        } else {
            let mut series = Series::default();
            series.record(d);
            self.0.push((label.to_string(), series));
        }
    }
}

/// Polls `check` every [`POLL`] until it returns `Some`, or `None` after `timeout`.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/// One measured quantity: successful samples plus the number of trials that timed out.
#[derive(Default)]
struct Series {
    samples: Vec<Duration>,
    failures: usize,
}

impl Series {
    fn record(&mut self, d: Option<Duration>) {
        match d {
            Some(d) => self.samples.push(d),
            None => self.failures += 1,
        }
    }

    fn trials(&self) -> usize {
        self.samples.len() + self.failures
    }

    /// Nearest-rank percentile over all trials, a timed-out trial counting as infinitely slow
    /// (`None`), so failures are never hidden by leaving them out.
    fn pct(&self, p: f64) -> Option<Duration> {
        let n = self.trials();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        let mut sorted = self.samples.clone();
        sorted.sort();
        sorted.get(rank - 1).copied()
    }

    fn max(&self) -> Option<Duration> {
        if self.failures > 0 {
            None
        } else {
            self.samples.iter().max().copied()
        }
    }

    fn sorted_ms(&self) -> String {
        let mut s = self.samples.clone();
        s.sort();
        let mut text: Vec<String> = s.iter().map(|d| format!("{}", d.as_millis())).collect();
        if self.failures > 0 {
            text.push(format!("+{} timed out", self.failures));
        }
        text.join(" ")
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        None => "timeout".into(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/// Trial timed out; the message goes to stderr, the trial counts as a failure.
fn note_failure(what: &str, trial: usize, detail: &str) {
    eprintln!("  ! {what}, trial {trial}: {detail}");
}

/// Waits until every instance of `prefix-1..=n` runs exactly once over the engines and there is no
/// other container with those names; returns (name, engine index, id) per instance.
/// Waits until each of the `n` instances runs exactly once (and, with hot spares, until every
/// engine that runs an instance runs its spare too); returns (name, engine, id) of each.
fn settle_instances(cluster: &Cluster, prefix: &str, n: u32, spares: bool) -> Option<Vec<(String, usize, String)>> {
    poll(SETTLE_TIMEOUT, || {
        if spares {
            let spare = format!("{prefix}-spare");
            for engine in &cluster.engines {
                let runs_instance = (1..=n).any(|i| running_id(engine, &format!("{prefix}-{i}")).is_some());
                if runs_instance && running_id(engine, &spare).is_none() {
                    return None;
                }
            }
        }
        let mut out = Vec::new();
        for i in 1..=n {
            let name = format!("{prefix}-{i}");
            let mut found = None;
            let mut total = 0;
            for (e, engine) in cluster.engines.iter().enumerate() {
                let count = any_named(engine, &name)?;
                total += count;
                if let Some(id) = running_id(engine, &name) {
                    found = Some((name.clone(), e, id));
                }
            }
            if total != 1 {
                return None;
            }
            out.push(found?);
        }
        Some(out)
    })
}

/// Container removed on its host (`docker rm -f`) -> the agent's replacement running there.
/// After each trial (off the clock) the engine's event log splits the time into phases, and one
/// plain `docker run -d` on the same engine gives the engine's own floor for one container.
fn bench_host_removal(cluster: &Cluster, service: &str, spares: bool, trials: usize, total: &mut Series, phases: &mut Breakdown) {
    let prefix = format!("{STACK}-{service}");
    for t in 0..trials {
        let Some(instances) = settle_instances(cluster, &prefix, 2, spares) else {
            note_failure("host removal", t, "instances did not settle before the trial");
            total.record(None);
            continue;
        };
        let (name, e, old_id) = instances[t % instances.len()].clone();
        let engine = &cluster.engines[e];
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &engine.socket, "rm", "-f", &name]).stdout(Stdio::null()).stderr(Stdio::null());
        let wall = SystemTime::now();
        let start = Instant::now();
        let status = cmd.status();
        let returned = status.as_ref().is_ok_and(|s| s.success()).then(|| start.elapsed());
        let done = poll(TRIAL_TIMEOUT, || running_id(engine, &name).filter(|id| *id != old_id).map(|_| start.elapsed()));
        if done.is_none() {
            note_failure("host removal", t, &format!("no replacement of {name} on {} within {TRIAL_TIMEOUT:?}", engine.name));
        }
        total.record(done);
        let seen = done.map(|d| wall + d);
        let events = engine_events(engine, wall);
        let destroy = first_event(&events, "destroy", &name, None);
        phases.record("`docker rm -f` CLI returned", returned);
        phases.record("clock start → engine `destroy` event", span(Some(wall), destroy));
        if spares {
            let renamed = first_event(&events, "rename", &name, None);
            phases.record("`destroy` → spare renamed (`rename` event)", span(destroy, renamed));
            phases.record("`rename` → seen running by the 10 ms poll", span(renamed, seen));
            continue;
        }
        let create = first_event(&events, "create", &name, Some(&old_id));
        let started = first_event(&events, "start", &name, Some(&old_id));
        phases.record("`destroy` → `create` event (agent reacts)", span(destroy, create));
        phases.record("`create` → `start` event (engine)", span(create, started));
        phases.record("`start` → seen running by the 10 ms poll", span(started, seen));
        phases.record("engine floor: one `docker run -d` (CLI returned)", single_run(engine));
    }
}

/// One plain `docker run -d` of the test image, timed until the CLI returns (it returns once the
/// container is started), then removed.
fn single_run(engine: &Engine) -> Option<Duration> {
    let name = format!("{BASE_PREFIX}single");
    let mut cmd = Command::new("docker");
    cmd.args(["-H", &engine.socket, "run", "-d", "--name", &name, "--label", BASE_LABEL, TEST_IMAGE, "sleep", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let ok = cmd.status().is_ok_and(|s| s.success());
    let d = start.elapsed();
    engine.docker(&["rm", "-f", &name]);
    ok.then_some(d)
}

/// Container deleted through the control plane (`corral container rm`) -> replacement running on
/// any engine. Returns how many replacements landed on another engine than the deleted one.
fn bench_cp_delete(cluster: &Cluster, service: &str, spares: bool, trials: usize, total: &mut Series, phases: &mut Breakdown) -> usize {
    let prefix = format!("{STACK}-{service}");
    let mut moved = 0;
    for t in 0..trials {
        let Some(instances) = settle_instances(cluster, &prefix, 2, spares) else {
            note_failure("control-plane delete", t, "instances did not settle before the trial");
            total.record(None);
            continue;
        };
        let (name, e, old_id) = instances[t % instances.len()].clone();
        let mut cmd = cluster.cp.cli(&["container", "rm", &name]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let wall = SystemTime::now();
        let start = Instant::now();
        let out = cmd.output();
        let returned = match &out {
            Ok(o) if o.status.success() => Some(start.elapsed()),
            Ok(o) => {
                note_failure("control-plane delete", t, &format!("corral container rm: {}", String::from_utf8_lossy(&o.stderr).trim()));
                None
            }
            Err(err) => {
                note_failure("control-plane delete", t, &format!("corral container rm: {err}"));
                None
            }
        };
        let done = poll(TRIAL_TIMEOUT, || {
            cluster.engines.iter().enumerate().find_map(|(i, engine)| running_id(engine, &name).filter(|id| *id != old_id).map(|_| (start.elapsed(), i)))
        });
        match done {
            Some((d, landed)) => {
                if landed != e {
                    moved += 1;
                }
                total.record(Some(d));
                let engine = &cluster.engines[landed];
                let events = engine_events(engine, wall);
                let returned_at = returned.map(|r| wall + r);
                if spares {
                    let renamed = first_event(&events, "rename", &name, None);
                    phases.record("`corral container rm` CLI returned", returned);
                    phases.record("CLI returned → spare renamed on the new engine", span(returned_at, renamed));
                    phases.record("`rename` → seen running by the 10 ms poll", span(renamed, Some(wall + d)));
                    continue;
                }
                let create = first_event(&events, "create", &name, Some(&old_id));
                let started = first_event(&events, "start", &name, Some(&old_id));
                phases.record("`corral container rm` CLI returned", returned);
                phases.record("CLI returned → `create` event on the new engine", span(returned_at, create));
                phases.record("`create` → `start` event (engine)", span(create, started));
                phases.record("`start` → seen running by the 10 ms poll", span(started, Some(wall + d)));
                let old_engine = &cluster.engines[e];
                let old_events = if landed == e { events } else { engine_events(old_engine, wall) };
                phases.record("(old container: clock start → `destroy` event)", span(Some(wall), first_event(&old_events, "destroy", &name, None)));
            }
            None => {
                note_failure("control-plane delete", t, &format!("no replacement of {name} on any engine within {TRIAL_TIMEOUT:?}"));
                total.record(None);
            }
        }
    }
    moved
}

/// Agent SIGKILLed -> the control plane's API shows its host `disconnected`; then the agent is
/// restarted and the time until the host is `active` and in sync again is recorded as well.
fn bench_disconnect(cluster: &mut Cluster, trials: usize, detect: &mut Series, rejoin: &mut Series) {
    let url = cluster.cp.url.clone();
    let token = cluster.cp.admin_token();
    for t in 0..trials {
        let i = t % cluster.engines.len();
        let name = cluster.engines[i].name.clone();
        let all_ready = poll(SETTLE_TIMEOUT, || {
            let hosts = api_hosts(&url, &token)?;
            (hosts.len() == cluster.engines.len() && hosts.iter().all(|h| h["state"] == "active" && h["in_sync"] == true)).then_some(())
        });
        if all_ready.is_none() {
            note_failure("disconnect", t, "hosts were not all active and in sync before the trial");
            detect.record(None);
            continue;
        }
        let start = Instant::now();
        cluster.kill_agent(i);
        let done = poll(TRIAL_TIMEOUT, || host_state(&url, &token, &name).filter(|(s, _)| s == "disconnected").map(|_| start.elapsed()));
        if done.is_none() {
            note_failure("disconnect", t, &format!("{name} not shown disconnected within {TRIAL_TIMEOUT:?}"));
        }
        detect.record(done);
        let restart = Instant::now();
        cluster.start_agent(i);
        let back = poll(SETTLE_TIMEOUT, || host_state(&url, &token, &name).filter(|(s, sync)| s == "active" && *sync).map(|_| restart.elapsed()));
        if back.is_none() {
            note_failure("rejoin", t, &format!("{name} not active and in sync within {SETTLE_TIMEOUT:?}"));
        }
        rejoin.record(back);
    }
}

/// Agent frozen (SIGSTOP: its socket stays open but goes silent, as with a hung host or a
/// partition) -> host shown `disconnected`. This is the heartbeat-timeout path; SIGKILL above is
/// the socket-closed path. The agent is thawed (SIGCONT) and must be active and in sync again
/// before the next trial; if it is not, it is restarted.
fn bench_stall(cluster: &mut Cluster, trials: usize, detect: &mut Series) {
    use nix::sys::signal::Signal;
    let url = cluster.cp.url.clone();
    let token = cluster.cp.admin_token();
    for t in 0..trials {
        let i = t % cluster.engines.len();
        let name = cluster.engines[i].name.clone();
        let ready = |name: &str| poll(SETTLE_TIMEOUT, || host_state(&url, &token, name).filter(|(s, sync)| s == "active" && *sync).map(|_| ()));
        if cluster.engines.iter().any(|e| ready(&e.name).is_none()) {
            note_failure("stall", t, "hosts were not all active and in sync before the trial");
            detect.record(None);
            continue;
        }
        let Some(agent) = cluster.agents[i].as_ref() else { continue };
        let start = Instant::now();
        agent.signal(Signal::SIGSTOP);
        let done = poll(TRIAL_TIMEOUT, || host_state(&url, &token, &name).filter(|(s, _)| s == "disconnected").map(|_| start.elapsed()));
        if done.is_none() {
            note_failure("stall", t, &format!("{name} not shown disconnected within {TRIAL_TIMEOUT:?}"));
        }
        detect.record(done);
        agent.signal(Signal::SIGCONT);
        if ready(&name).is_none() {
            note_failure("stall", t, &format!("{name} did not come back after SIGCONT; restarting its agent"));
            cluster.kill_agent(i);
            cluster.start_agent(i);
        }
    }
}

/// Baseline: 10 parallel `docker run -d` (5 per engine), wall time until all CLIs returned and
/// the engines list all 10 running. Removes them afterwards.
fn baseline_run(engines: &[Engine], n: usize, phases: Option<&mut Breakdown>) -> Option<Duration> {
    let mut cmds: Vec<Command> = (0..n)
        .map(|k| {
            let engine = &engines[k % engines.len()];
            let mut cmd = Command::new("docker");
            cmd.args(["-H", &engine.socket, "run", "-d", "--name", &format!("{BASE_PREFIX}{}", k + 1), "--label", BASE_LABEL])
                .args([TEST_IMAGE, "sleep", "3600"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd
        })
        .collect();
    let wall = SystemTime::now();
    let start = Instant::now();
    let children: Vec<_> = cmds.iter_mut().map(|c| c.spawn()).collect();
    // Spawning ten processes takes a while on two cores; the clock covers it, as it covers the
    // one `corral` CLI process on the other side.
    let mut ok = true;
    for child in children {
        match child.and_then(|c| c.wait_with_output()) {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!("  ! baseline docker run: {}", String::from_utf8_lossy(&out.stderr).trim());
                ok = false;
            }
            Err(err) => {
                eprintln!("  ! baseline docker run: {err}");
                ok = false;
            }
        }
    }
    let result = ok
        .then(|| {
            poll(TRIAL_TIMEOUT, || {
                let running: usize = engines.iter().map(|e| engine_running(e, "label", BASE_LABEL).map_or(0, |v| v.len())).sum();
                (running == n).then(|| start.elapsed())
            })
        })
        .flatten();
    if let Some(phases) = phases {
        batch_phases(engines, wall, BASE_PREFIX, "docker run", phases);
    }
    clear_baseline(engines);
    result
}

/// Phases of a 10-container batch from the engines' event logs: clock start → first `create`,
/// first `create` → last `start`.
fn batch_phases(engines: &[Engine], wall: SystemTime, name_prefix: &str, label: &str, phases: &mut Breakdown) {
    let events: Vec<Event> = engines.iter().flat_map(|e| engine_events(e, wall)).filter(|e| e.name.starts_with(name_prefix)).collect();
    let first_create = events.iter().filter(|e| e.action == "create").map(|e| e.at).min();
    let last_start = events.iter().filter(|e| e.action == "start").map(|e| e.at).max();
    phases.record(&format!("{label}: clock start → first `create` event"), span(Some(wall), first_create));
    phases.record(&format!("{label}: first `create` → last `start` event"), span(first_create, last_start));
}

/// Removes every baseline container (also leftovers of an earlier, interrupted run).
fn clear_baseline(engines: &[Engine]) {
    let children: Vec<_> = engines
        .iter()
        .filter_map(|e| {
            let out = e.docker(&["ps", "-aq", "--filter", &format!("label={BASE_LABEL}")]);
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
            if ids.is_empty() {
                return None;
            }
            Command::new("docker").args(["-H", &e.socket, "rm", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
        })
        .collect();
    for mut c in children {
        let _ = c.wait();
    }
}

/// Corral: `corral service create --scale 10` until the engines list all 10 running; then
/// `corral service rm` and wait until they are gone. Returns the time and the per-engine spread.
fn corral_deploy(cluster: &Cluster, service: &str, n: usize, phases: Option<&mut Breakdown>) -> (Option<Duration>, Vec<usize>) {
    let full = format!("{STACK}/{service}");
    let scale = n.to_string();
    let mut cmd = cluster.cp.cli(&["-o", "json", "service", "create", &full, "--image", TEST_IMAGE, "--scale", &scale, "--", "sleep", "3600"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let label = format!("io.corral.service={service}");
    let wall = SystemTime::now();
    let start = Instant::now();
    let out = cmd.output();
    let created = matches!(&out, Ok(o) if o.status.success());
    if !created {
        eprintln!("  ! corral service create {full}: {:?}", out.map(|o| String::from_utf8_lossy(&o.stderr).to_string()));
    }
    let mut spread = vec![0; cluster.engines.len()];
    let result = created
        .then(|| {
            poll(TRIAL_TIMEOUT, || {
                let counts: Vec<usize> = cluster.engines.iter().map(|e| engine_running(e, "label", &label).map_or(0, |v| v.len())).collect();
                (counts.iter().sum::<usize>() == n).then(|| {
                    spread = counts.clone();
                    start.elapsed()
                })
            })
        })
        .flatten();
    if let Some(phases) = phases {
        batch_phases(&cluster.engines, wall, &format!("{STACK}-{service}-"), "corral", phases);
    }
    let rm = cluster.cp.cli(&["service", "rm", &full]).output();
    if !matches!(&rm, Ok(o) if o.status.success()) {
        eprintln!("  ! corral service rm {full} failed");
    }
    let gone = poll(SETTLE_TIMEOUT, || {
        cluster
            .engines
            .iter()
            .all(|e| {
                let filters = serde_json::json!({ "label": [label.clone()] }).to_string();
                engine_get(e, &format!("/containers/json?all=1&filters={}", pct_encode(&filters))).and_then(|v| v.as_array().map(Vec::is_empty)) == Some(true)
            })
            .then_some(())
    });
    if gone.is_none() {
        eprintln!("  ! {full}: containers still on the engines {SETTLE_TIMEOUT:?} after service rm");
    }
    (result, spread)
}

fn bench_deploy(cluster: &Cluster, trials: usize, base: &mut Series, corral: &mut Series, phases: &mut Breakdown) -> Vec<Vec<usize>> {
    const N: usize = 10;
    clear_baseline(&cluster.engines);
    // One discarded warm-up of each, so neither side pays first-use costs in the figures.
    let _ = baseline_run(&cluster.engines, N, None);
    let _ = corral_deploy(cluster, "warmup", N, None);
    let mut spreads = Vec::new();
    for t in 0..trials {
        // ABBA order: machine noise and drift hit both sides alike.
        let mut run_one = |base_first: bool, base: &mut Series, corral: &mut Series, phases: &mut Breakdown| {
            if base_first {
                base.record(baseline_run(&cluster.engines, N, Some(phases)));
            } else {
                let (d, spread) = corral_deploy(cluster, &format!("deploy{}", t + 1), N, Some(phases));
                if d.is_none() {
                    note_failure("deploy", t, &format!("10 containers not all running within {TRIAL_TIMEOUT:?}"));
                }
                corral.record(d);
                spreads.push(spread);
            }
        };
        let base_first = t % 2 == 0;
        run_one(base_first, base, corral, phases);
        run_one(!base_first, base, corral, phases);
    }
    spreads
}

// ---------------------------------------------------------------------------------------------

struct Args {
    trials: usize,
    deploy_trials: usize,
    stall_trials: usize,
}

fn parse_args() -> Args {
    let mut args = Args { trials: 20, deploy_trials: 5, stall_trials: 4 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |flag: &str| -> usize {
            it.next().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or_else(|| {
                eprintln!("{flag} needs a positive number");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--trials" => args.trials = num("--trials"),
            "--deploy-trials" => args.deploy_trials = num("--deploy-trials"),
            "--stall-trials" => args.stall_trials = num("--stall-trials"),
            "-h" | "--help" => {
                println!("bench-healing [--trials N (default 20)] [--deploy-trials M (default 5)] [--stall-trials K (default 4)]");
                std::process::exit(0)
            }
            other => {
                eprintln!("unknown argument {other}; see --help");
                std::process::exit(2)
            }
        }
    }
    args
}

/// `corral agent` processes (not ours: we have none yet) that drive one of the test engines.
/// The engines are shared by the end-to-end tests; two clusters on one engine fight (each agent
/// removes managed containers it was not asked for), so the figures would be meaningless.
fn foreign_agents() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect();
        let is_agent = argv.first().is_some_and(|a| a.ends_with("corral")) && argv.get(1).is_some_and(|a| a == "agent");
        if is_agent && argv.iter().any(|a| a.contains("/run/corral-test/")) {
            found.push((pid, argv.join(" ")));
        }
    }
    found
}

fn main() {
    let args = parse_args();
    let started = Instant::now();
    let others = foreign_agents();
    if !others.is_empty() {
        eprintln!("bench-healing: other Corral agents drive the test engines (an end-to-end test running?); try again when they are gone:");
        for (pid, cmd) in others {
            eprintln!("  pid {pid}: {cmd}");
        }
        std::process::exit(1);
    }
    eprintln!("bench-healing: building corral and starting 2 engines, a control plane and 2 agents…");
    let mut cluster = Cluster::start(2);
    eprintln!(
        "cluster up in {:.1} s (control plane {}, corral binary {}, debug profile)",
        started.elapsed().as_secs_f64(),
        cluster.cp.url,
        corral_e2e::corral_bin().display()
    );
    let cp = &cluster.cp;
    cp.json(&["stack", "create", STACK]);

    // Healing: a 2-instance service, one instance per engine.
    cp.json(&["service", "create", &format!("{STACK}/heal"), "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    let mut host_rm = Series::default();
    let mut host_phases = Breakdown::default();
    let mut cp_rm = Series::default();
    let mut cp_phases = Breakdown::default();
    eprintln!("[1/5] container removed on its host (docker rm -f), {} trials…", args.trials);
    bench_host_removal(&cluster, "heal", false, args.trials, &mut host_rm, &mut host_phases);
    eprintln!("[2/5] container deleted through the control plane (corral container rm), {} trials…", args.trials);
    let moved = bench_cp_delete(&cluster, "heal", false, args.trials, &mut cp_rm, &mut cp_phases);
    cluster.cp.json(&["service", "rm", &format!("{STACK}/heal")]);
    let _ = poll(SETTLE_TIMEOUT, || cluster.all_running().is_empty().then_some(()));

    // The same two trials with a hot spare on each host (`--hot-spare`).
    cluster.cp.json(&["service", "create", &format!("{STACK}/spare"), "--image", TEST_IMAGE, "--scale", "2", "--hot-spare", "--", "sleep", "3600"]);
    let (mut spare_host_rm, mut spare_cp_rm) = (Series::default(), Series::default());
    let (mut spare_host_phases, mut spare_cp_phases) = (Breakdown::default(), Breakdown::default());
    eprintln!("[1b/5] the same with a hot spare: removed on its host, {} trials…", args.trials);
    bench_host_removal(&cluster, "spare", true, args.trials, &mut spare_host_rm, &mut spare_host_phases);
    eprintln!("[2b/5] the same with a hot spare: deleted through the control plane, {} trials…", args.trials);
    let spare_moved = bench_cp_delete(&cluster, "spare", true, args.trials, &mut spare_cp_rm, &mut spare_cp_phases);
    cluster.cp.json(&["service", "rm", &format!("{STACK}/spare")]);
    let _ = poll(SETTLE_TIMEOUT, || cluster.all_running().is_empty().then_some(()));

    eprintln!("[3/5] deploy of 10 vs 10 parallel docker run, {} trials each, alternating…", args.deploy_trials);
    let mut base = Series::default();
    let mut deploy = Series::default();
    let mut deploy_phases = Breakdown::default();
    let spreads = bench_deploy(&cluster, args.deploy_trials, &mut base, &mut deploy, &mut deploy_phases);

    eprintln!("[4/5] agent SIGKILLed -> host disconnected, {} trials…", args.trials);
    let mut detect = Series::default();
    let mut rejoin = Series::default();
    bench_disconnect(&mut cluster, args.trials, &mut detect, &mut rejoin);
    eprintln!("[5/5] agent frozen (SIGSTOP) -> host disconnected, {} trials…", args.stall_trials);
    let mut stall = Series::default();
    bench_stall(&mut cluster, args.stall_trials, &mut stall);

    // ---- Report.
    let p50_target = Duration::from_millis(300);
    let p99_target = Duration::from_secs(1);
    let disc_target = Duration::from_secs(5);
    let ratio_target = 1.10;
    let cell = |s: &Series| format!("{}/{}", s.samples.len(), s.trials());
    println!();
    println!(
        "Corral healing benchmark — {} engines, corral debug build, {} CPUs",
        cluster.engines.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("Percentiles are nearest-rank over all trials; a timed-out trial counts as slower than any other.");
    println!("With fewer than 100 trials p99 is the maximum (20 trials: p99 = rank 20 of 20).");
    println!();
    println!("{:<52} {:>7} {:>9} {:>9} {:>22} {:>6}", "metric", "ok/runs", "p50", "p99", "target", "result");
    println!("{}", "-".repeat(110));
    let heal_row = |label: &str, s: &Series| {
        let (p50, p99) = (s.pct(50.0), s.pct(99.0));
        let ok = s.failures == 0 && p50.is_some_and(|d| d <= p50_target) && p99.is_some_and(|d| d <= p99_target);
        println!("{:<52} {:>7} {:>9} {:>9} {:>22} {:>6}", label, cell(s), ms(p50), ms(p99), "p50 ≤ 300, p99 ≤ 1000", verdict(ok));
    };
    heal_row("removed on host (docker rm -f) → replacement running", &host_rm);
    heal_row("deleted via control plane → replacement running", &cp_rm);
    heal_row("  with --hot-spare: removed on host → running", &spare_host_rm);
    heal_row("  with --hot-spare: deleted via control plane → running", &spare_cp_rm);
    let (d50, d99) = (detect.pct(50.0), detect.pct(99.0));
    let disc_ok = detect.failures == 0 && detect.max().is_some_and(|d| d <= disc_target);
    println!(
        "{:<52} {:>7} {:>9} {:>9} {:>22} {:>6}",
        "agent SIGKILLed → host shown disconnected",
        cell(&detect),
        ms(d50),
        ms(d99),
        "≤ 5000 (every trial)",
        verdict(disc_ok)
    );
    let stall_ok = stall.failures == 0 && stall.max().is_some_and(|d| d <= disc_target);
    println!(
        "{:<52} {:>7} {:>9} {:>9} {:>22} {:>6}",
        "agent frozen (SIGSTOP) → host shown disconnected",
        cell(&stall),
        ms(stall.pct(50.0)),
        ms(stall.pct(99.0)),
        "≤ 5000 (every trial)",
        verdict(stall_ok)
    );
    let (b50, c50) = (base.pct(50.0), deploy.pct(50.0));
    let ratio = match (b50, c50) {
        (Some(b), Some(c)) if !b.is_zero() => Some(c.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    };
    let ratio_text = ratio.map_or("n/a".into(), |r| format!("{r:.2}×"));
    println!(
        "{:<52} {:>7} {:>9} {:>9} {:>22} {:>6}",
        "deploy 10: corral median / docker-run median",
        format!("{}+{}", deploy.samples.len(), base.samples.len()),
        ratio_text,
        "",
        "≤ 1.10",
        verdict(ratio.is_some_and(|r| r <= ratio_target) && deploy.failures == 0)
    );
    println!();
    println!("Details (informational, no target):");
    println!("{:<56} {:>7} {:>9} {:>9} {:>9}", "", "ok/runs", "p50", "p99", "max");
    let info = |label: &str, s: &Series| println!("{:<56} {:>7} {:>9} {:>9} {:>9}", label, cell(s), ms(s.pct(50.0)), ms(s.pct(99.0)), ms(s.max()));
    println!("removed on host, phases (engine event timestamps):");
    for (label, s) in &host_phases.0 {
        info(&format!("  {label}"), s);
    }
    println!("deleted via control plane, phases:");
    for (label, s) in &cp_phases.0 {
        info(&format!("  {label}"), s);
    }
    println!("with --hot-spare, removed on host, phases:");
    for (label, s) in &spare_host_phases.0 {
        info(&format!("  {label}"), s);
    }
    println!("with --hot-spare, deleted via control plane, phases:");
    for (label, s) in &spare_cp_phases.0 {
        info(&format!("  {label}"), s);
    }
    println!("deploy of 10:");
    info("  corral service create → 10 running", &deploy);
    info("  10 parallel docker run -d (5+5) → 10 running", &base);
    let mut deploy_phases = deploy_phases.0;
    deploy_phases.sort_by(|a, b| a.0.cmp(&b.0));
    for (label, s) in &deploy_phases {
        info(&format!("  {label}"), s);
    }
    println!("disconnect:");
    info("  agent restarted → host active and in sync", &rejoin);
    println!();
    println!("control-plane deletes whose replacement landed on the other engine: {moved}/{}", cp_rm.trials());
    println!("  with --hot-spare: {spare_moved}/{}", spare_cp_rm.trials());
    println!("corral deploy spread per trial (engine h1, h2, …): {spreads:?}");
    println!();
    println!("Samples, sorted (ms):");
    for (label, s) in [
        ("removed on host", &host_rm),
        ("deleted via control plane", &cp_rm),
        ("hot spare: removed on host", &spare_host_rm),
        ("hot spare: deleted via cp", &spare_cp_rm),
        ("disconnect detection", &detect),
        ("frozen-agent detection", &stall),
        ("deploy corral", &deploy),
        ("deploy docker run", &base),
        ("rejoin", &rejoin),
    ] {
        println!("  {label:<26} {}", s.sorted_ms());
    }
    println!();
    println!("total run time {:.0} s; logs of the control plane and agents in {}", started.elapsed().as_secs_f64(), cluster.tmp.path().display());
    // The cluster's tmp dir (logs included) is deleted on drop; keep a copy when asked to.
    if std::env::var_os("BENCH_KEEP_LOGS").is_some() {
        let dest = std::env::temp_dir().join(format!("bench-healing-logs-{}", std::process::id()));
        let _ = Command::new("cp").arg("-r").arg(cluster.tmp.path()).arg(&dest).status();
        println!("logs copied to {}", dest.display());
    }
    clear_baseline(&cluster.engines);
}
