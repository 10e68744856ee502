//! Harness for end-to-end tests: real `corral` processes, real Docker engines.
//!
//! - [`engines`]: Docker hosts, one `dockerd` per network namespace (`scripts/test-hosts.sh`).
//! - [`ControlPlane`] / [`Agent`]: `corral server` and `corral agent` child processes, killed on drop.
//! - [`corral`]: runs a client command and returns its JSON answer.
//! - [`Engine`]: asks an engine itself (the `docker` CLI) what it runs.
//! - [`fake_agent`]: a peer speaking the agent protocol with no engine, for tests of what the
//!   control plane does with what agents send.

pub mod fake_agent;
pub use fake_agent::FakeAgent;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const TEST_IMAGE: &str = "corral-test/busybox:latest";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// The `corral` binary, built once per test run so the tests never drive a stale one.
/// The `corral` binary under test, built on first use: the debug build, or the release build
/// when `CORRAL_E2E_PROFILE=release` (benchmarks that measure what operators run).
pub fn corral_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = std::env::var("CORRAL_E2E_PROFILE").is_ok_and(|p| p == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "corral-cli", "--bin", "corral"]).current_dir(repo_root());
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building corral failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
        target.join(if release { "release" } else { "debug" }).join("corral")
    })
    .clone()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Docker engine of a test host.
#[derive(Debug, Clone)]
pub struct Engine {
    pub name: String,
    pub socket: String,
    pub address: String,
}

/// One container as the engine itself reports it.
#[derive(Debug, Clone)]
pub struct EngineContainer {
    pub id: String,
    pub name: String,
    pub state: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Engine {
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker").arg("-H").arg(&self.socket).args(args).output().expect("run docker")
    }

    /// Every Corral-managed container on this engine, running or not.
    pub fn managed(&self) -> Vec<EngineContainer> {
        let out = self.docker(&["ps", "-a", "--filter", "label=io.corral.managed=true", "--format", "{{.ID}}"]);
        assert!(out.status.success(), "docker ps on {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["inspect"];
        args.extend(ids.iter().map(String::as_str));
        let out = self.docker(&args);
        // A container can vanish between ps and inspect; inspect then fails for it alone.
        let inspected: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        inspected
            .iter()
            .map(|c| EngineContainer {
                id: c["Id"].as_str().unwrap_or_default().to_string(),
                name: c["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
                state: c["State"]["Status"].as_str().unwrap_or_default().to_string(),
                labels: serde_json::from_value(c["Config"]["Labels"].clone()).unwrap_or_default(),
            })
            .collect()
    }

    /// Names of the managed containers running on this engine, sorted.
    pub fn running_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.managed().into_iter().filter(|c| c.state == "running").map(|c| c.name).collect();
        names.sort();
        names
    }

    /// Removes every Corral-managed container, so a test starts from a clean engine.
    pub fn clear(&self) {
        for c in self.managed() {
            self.docker(&["rm", "-f", &c.id]);
        }
    }
}

/// Ensures `n` test hosts run (idempotent) and returns their engines.
pub fn engines(n: usize) -> Vec<Engine> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/test-hosts.sh"))
        .args(["up", &n.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/test-hosts.sh");
    assert!(out.status.success(), "scripts/test-hosts.sh up {n} failed (the end-to-end tests need root and dockerd)");
    let engines: Vec<Engine> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (name, socket, address) = (parts.next()?, parts.next()?, parts.next()?);
            socket.starts_with("unix://").then(|| Engine { name: name.into(), socket: socket.into(), address: address.into() })
        })
        .collect();
    assert_eq!(engines.len(), n, "test-hosts.sh printed: {}", String::from_utf8_lossy(&out.stdout));
    engines
}

/// A child process killed (SIGKILL) when dropped, with its output in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("create log");
        cmd.stderr(file.try_clone().expect("clone log")).stdout(file);
        Proc { child: cmd.spawn().expect("spawn corral"), log }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = wait_for("process to exit after SIGTERM", Duration::from_secs(10), || self.child.try_wait().ok().flatten());
        std::mem::forget(self);
        status
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for("process to exit", timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `corral server` on a free loopback port with its own data dir.
pub struct ControlPlane {
    pub proc: Proc,
    pub url: String,
    pub data_dir: PathBuf,
    /// The first line the server printed (the admin token line on a fresh data dir).
    pub banner: String,
}

impl ControlPlane {
    /// Starts on a free loopback port.
    pub fn start(data_dir: &Path) -> ControlPlane {
        Self::start_on(data_dir, "127.0.0.1:0")
    }

    /// Stops this control plane (SIGTERM, asserting a clean exit) and starts a new process on
    /// the same address and data dir, as an operator restarting it would.
    pub fn restart(self) -> ControlPlane {
        self.restart_with_pause(|| {})
    }

    /// Like [`restart`](Self::restart), running `while_down` between the stop and the start.
    pub fn restart_with_pause(mut self, while_down: impl FnOnce()) -> ControlPlane {
        self.restart_in_place(while_down);
        self
    }

    /// [`restart_with_pause`](Self::restart_with_pause) for a control plane held in place (a
    /// [`Cluster`]'s).
    pub fn restart_in_place(&mut self, while_down: impl FnOnce()) {
        let listen = self.url.trim_start_matches("http://").to_string();
        let data_dir = self.data_dir.clone();
        self.proc.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(self.proc.wait_exit(Duration::from_secs(10)).success(), "the control plane exits cleanly on SIGTERM");
        while_down();
        *self = Self::start_on(&data_dir, &listen);
    }

    pub fn start_on(data_dir: &Path, listen: &str) -> ControlPlane {
        Self::launch(data_dir, &Launch { listen: listen.into(), ..Launch::default() })
    }

    pub fn launch(data_dir: &Path, launch: &Launch) -> ControlPlane {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data_dir.with_extension(format!("server-{n}.log"));
        std::fs::create_dir_all(data_dir).unwrap();
        let mut cmd = in_netns(launch.netns.as_ref().map(|(ns, _)| ns.as_str()));
        cmd.args(["server", "--listen", &launch.listen, "--data-dir"]).arg(data_dir).args(&launch.args).env("RUST_LOG", "info");
        // Plain HTTP unless a test asks for TLS (tests/tls.rs): the other tests' clients and
        // agents do not pin the control plane's CA.
        if !launch.args.iter().any(|a| a == "--tls") {
            cmd.args(["--tls", "off"]);
        }
        let proc = Proc::spawn(cmd, log);
        let url = wait_for("the control plane to print its address", Duration::from_secs(20), || {
            let out = proc.output();
            out.lines().find_map(|l| l.strip_prefix("Corral control plane on ").map(|rest| rest.split_whitespace().next().unwrap_or("").to_string()))
        });
        // Listening on 0.0.0.0 inside a namespace: clients use the namespace's address.
        let url = match &launch.netns {
            Some((_, ip)) => url.replace("0.0.0.0", ip),
            None => url,
        };
        let banner = proc.output().lines().next().unwrap_or_default().to_string();
        ControlPlane { proc, url, data_dir: data_dir.to_path_buf(), banner }
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token")).expect("admin-token file").trim().to_string()
    }

    /// A `corral` client command against this control plane.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(corral_bin());
        cmd.args(args).env("CORRAL_URL", &self.url).env("CORRAL_TOKEN", self.admin_token()).env_remove("CORRAL_ENV");
        cmd
    }

    /// Runs a client command with `input` on its standard input (a password for
    /// `--password-stdin`), and returns what it did.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self.cli(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run corral");
        std::io::Write::write_all(&mut child.stdin.take().expect("piped stdin"), input.as_bytes()).expect("write to corral's stdin");
        child.wait_with_output().expect("wait for corral")
    }

    /// Runs a client command with `-o json`, asserting success, and parses its answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["-o", "json"];
        with_json.extend_from_slice(args);
        let out = self.cli(&with_json).output().expect("run corral");
        assert!(out.status.success(), "corral {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("corral {args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs a client command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args).output().expect("run corral");
        assert!(!out.status.success(), "corral {args:?} should have failed but printed {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// Hosts by name with their JSON records.
    pub fn hosts(&self) -> Vec<Value> {
        self.json(&["host", "ls"]).as_array().cloned().unwrap_or_default()
    }

    pub fn wait_hosts_active(&self, names: &[&str]) {
        wait_for(&format!("hosts {names:?} to be active"), Duration::from_secs(20), || {
            let hosts = self.hosts();
            names.iter().all(|n| hosts.iter().any(|h| h["name"] == *n && h["state"] == "active" && h["in_sync"] == true)).then_some(())
        });
    }
}

/// How to start a control plane: address, network namespace `(name, address)`, extra flags.
#[derive(Debug, Clone)]
pub struct Launch {
    pub listen: String,
    pub netns: Option<(String, String)>,
    pub args: Vec<String>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch { listen: "127.0.0.1:0".into(), netns: None, args: Vec::new() }
    }
}

/// A `corral` command, run inside network namespace `ns` when given.
fn in_netns(ns: Option<&str>) -> Command {
    match ns {
        Some(ns) => {
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net=/run/netns/{ns}")).arg(corral_bin());
            cmd
        }
        None => Command::new(corral_bin()),
    }
}

/// Ensures the bare namespace `corral-hI` (no engine) on the test bridge; returns (name, address).
pub fn bare_netns(i: usize) -> (String, String) {
    // The script's namespace setup is not safe to run twice at once.
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new("bash").arg(repo_root().join("scripts/test-hosts.sh")).args(["netns", &i.to_string()]).output().expect("run test-hosts.sh");
    assert!(out.status.success(), "test-hosts.sh netns {i}: {}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (ns, ip) = line.split_once(' ').expect("NAME IP");
    (ns.to_string(), ip.to_string())
}

/// Serializes everything that drives the shared test engines — tests in this process, other
/// test binaries, benchmarks: each agent removes managed containers it was not asked for, so
/// two clusters on one engine would fight.
pub fn exclusive() -> Exclusive {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    std::fs::create_dir_all("/run/corral-test").expect("create /run/corral-test");
    let file = std::fs::File::create("/run/corral-test/engines.lock").expect("create the engines lock file");
    let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).expect("lock the test engines");
    Exclusive { _flock: flock, _guard: guard }
}

/// Held while a test owns the test engines.
pub struct Exclusive {
    _flock: nix::fcntl::Flock<std::fs::File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// `corral agent` for one engine.
pub fn start_agent(cp: &ControlPlane, join_token: &str, engine: &Engine, state_dir: &Path, labels: &[&str]) -> Proc {
    start_agent_in(None, &cp.url, join_token, engine, state_dir, labels)
}

/// `corral agent` for one engine, inside network namespace `ns` when given, dialling `url`.
pub fn start_agent_in(ns: Option<&str>, url: &str, join_token: &str, engine: &Engine, state_dir: &Path, labels: &[&str]) -> Proc {
    let mut cmd = in_netns(ns);
    cmd.args(["agent", "--server", url, "--token", join_token, "--docker-host", &engine.socket, "--name", &engine.name])
        .args(["--address", &engine.address])
        .arg("--registry-certs-dir")
        .arg(engine.certs_dir())
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_LOG", "info");
    // The tunnel's device and routes belong in the host's namespace: an agent outside it runs none.
    if ns.is_none() {
        cmd.arg("--no-tunnel");
    }
    for l in labels {
        cmd.args(["--label", l]);
    }
    Proc::spawn(cmd, state_dir.with_extension("agent.log"))
}

/// The output of a finished command as text, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A control plane with one agent per test engine, engines cleared first; torn down on drop.
pub struct Cluster {
    pub engines: Vec<Engine>,
    pub cp: ControlPlane,
    pub join_token: String,
    pub agents: Vec<Option<Proc>>,
    /// Agents run inside their host's namespace and dial the control plane over the test network.
    pub agents_in_netns: bool,
    pub tmp: tempfile::TempDir,
    _exclusive: Exclusive,
}

impl Cluster {
    /// `n` engines, a control plane on loopback, agents labelled `zone=hI`.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, Launch::default(), false)
    }

    pub fn start_with(n: usize, launch: Launch, agents_in_netns: bool) -> Cluster {
        let exclusive = exclusive();
        let engines = engines(n);
        for e in &engines {
            e.clear();
        }
        let tmp = tempfile::tempdir().unwrap();
        let cp = ControlPlane::launch(&tmp.path().join("data"), &launch);
        let join_token = cp.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
        let mut cluster = Cluster { engines, cp, join_token, agents: Vec::new(), agents_in_netns, tmp, _exclusive: exclusive };
        for i in 0..n {
            cluster.agents.push(None);
            cluster.start_agent(i);
        }
        let names: Vec<&str> = cluster.engines.iter().map(|e| e.name.as_str()).collect();
        cluster.cp.wait_hosts_active(&names);
        cluster
    }

    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("agent-{}", self.engines[i].name))
    }

    pub fn start_agent(&mut self, i: usize) {
        let engine = &self.engines[i];
        let zone = format!("zone={}", engine.name);
        let ns = format!("corral-{}", engine.name);
        let ns = self.agents_in_netns.then_some(ns.as_str());
        let agent = start_agent_in(ns, &self.cp.url, &self.join_token, engine, &self.state_dir(i), &[&zone]);
        self.agents[i] = Some(agent);
    }

    /// SIGKILL, as a crash would.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut agent) = self.agents[i].take() {
            agent.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = agent.child.wait();
        }
    }

    /// Managed containers running on each engine, by engine name.
    pub fn running(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.engines.iter().map(|e| (e.name.clone(), e.running_names())).collect()
    }

    /// Every running managed container name over all engines, sorted (duplicates kept).
    pub fn all_running(&self) -> Vec<String> {
        let mut all: Vec<String> = self.running().into_values().flatten().collect();
        all.sort();
        all
    }

    /// Waits until the engines together run exactly `names` (each once) and nothing else managed.
    pub fn wait_exactly(&self, what: &str, names: &[String], timeout: Duration) {
        let mut want = names.to_vec();
        want.sort();
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, timeout, || {
                let managed: usize = self.engines.iter().map(|e| e.managed().len()).sum();
                (self.all_running() == want && managed == want.len()).then_some(())
            })
        }));
        if ok.is_err() {
            panic!("timed out waiting for {what}: want {want:?}, engines run {:?}", self.running());
        }
    }

    /// Which engine runs container `name`, and its id there.
    pub fn locate(&self, name: &str) -> Option<(String, String)> {
        self.engines.iter().find_map(|e| e.managed().into_iter().find(|c| c.name == name && c.state == "running").map(|c| (e.name.clone(), c.id)))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.agents.len() {
            self.kill_agent(i);
        }
        for e in &self.engines {
            e.clear();
        }
    }
}

/// `PREFIX-1` … `PREFIX-N`.
pub fn instance_names(prefix: &str, n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}")).collect()
}

/// What `scripts/test-registry.sh up` printed about the registry `kind` (`open` or `private`),
/// after its name. The script runs once per test binary: it is idempotent, but pushes are slow.
fn test_registry(kind: &str) -> Vec<String> {
    static PRINTED: OnceLock<String> = OnceLock::new();
    let printed = PRINTED.get_or_init(|| {
        let out = Command::new("bash").arg(repo_root().join("scripts/test-registry.sh")).arg("up").output().expect("run scripts/test-registry.sh");
        assert!(out.status.success(), "scripts/test-registry.sh up failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let line = printed.lines().find(|l| l.starts_with(&format!("{kind} "))).unwrap_or_else(|| panic!("test-registry.sh printed no {kind} registry: {printed}"));
    line.split_whitespace().skip(1).map(str::to_string).collect()
}

/// The open test registry, without logins (`scripts/test-registry.sh`): HTTPS on the test bridge
/// with a CA every engine trusts. Holds `corral-test/busybox:1` and `corral-test/bulky:1` (24 MiB
/// more, for pulls long enough to watch behind a [`SlowProxy`]).
pub fn open_registry() -> String {
    test_registry("open")[0].clone()
}

/// The address engines trust for a [`SlowProxy`] in front of the [`open_registry`].
pub const SLOW_REGISTRY: &str = "10.213.0.1:5001";

/// A TCP proxy on [`SLOW_REGISTRY`] to the [`open_registry`] that sends at most `bytes_per_sec` per
/// connection towards the engines, so a pull lasts long enough to watch. Stops when dropped.
pub struct SlowProxy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowProxy {
    pub fn start(bytes_per_sec: usize) -> SlowProxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let target = open_registry();
        let listener = TcpListener::bind(SLOW_REGISTRY).expect("bind the slow registry proxy on the test bridge");
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        // One direction of a connection; towards the engine it is paced in 10 ms slices.
        fn pipe(mut from: TcpStream, mut to: TcpStream, per_slice: Option<usize>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
            let mut buf = vec![0u8; per_slice.unwrap_or(64 << 10).max(1)];
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
                if per_slice.is_some() {
                    std::thread::sleep(Duration::from_millis(10).saturating_sub(started.elapsed()));
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        }
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(upstream) = TcpStream::connect(&target) else { continue };
                        let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        let (s1, s2) = (stopped.clone(), stopped.clone());
                        std::thread::spawn(move || pipe(client, upstream, None, s1));
                        std::thread::spawn(move || pipe(u2, c2, Some(bytes_per_sec / 100), s2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SlowProxy { stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A control plane on a free loopback port serving the built web UI (`ui/dist`): the browser
/// tests' control plane.
pub fn control_plane_with_ui(data_dir: &Path) -> ControlPlane {
    let ui_dir = repo_root().join("ui/dist");
    assert!(ui_dir.join("index.html").is_file(), "the web UI is not built: run `npm --prefix ui run build` (scripts/setup.sh does)");
    ControlPlane::launch(data_dir, &Launch { args: vec!["--ui-dir".into(), ui_dir.display().to_string()], ..Launch::default() })
}

/// Runs the browser script `tests/ui/SCRIPT` with Node.js against `cp` (`CORRAL_UI_URL`,
/// `CORRAL_UI_TOKEN` with the admin token) and `env`, prints what it printed, and fails the test
/// with that and the control plane's log unless it passed. Returns what it printed.
pub fn run_browser_script(cp: &ControlPlane, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("node")
        .arg(repo_root().join("tests/ui").join(script))
        .env("CORRAL_UI_URL", &cp.url)
        .env("CORRAL_UI_TOKEN", cp.admin_token())
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run node tests/ui/{script} (Node.js is installed by scripts/setup.sh): {e}"));
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{log}");
    assert!(out.status.success(), "the browser checks failed:\n{log}\ncontrol plane log:\n{}", cp.proc.output());
    log
}

/// A WebSocket handshake to the API's `path_and_query` (e.g. `/v1/events?env=OPS`) at `base_url`,
/// signed with `token` in the `Authorization` header as the CLI signs it: a token in the URL is
/// no credential.
pub fn ws_request(base_url: &str, path_and_query: &str, token: &str) -> tokio_tungstenite::tungstenite::http::Request<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}{path_and_query}", base_url.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1));
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("a header value"));
    request
}

impl Engine {
    /// Where this test engine looks for registries' CAs (its own `/etc/docker/certs.d`, see
    /// `scripts/test-hosts.sh`): its agent installs them here, never in the machine's.
    pub fn certs_dir(&self) -> PathBuf {
        Path::new("/run/corral-test").join(&self.name).join("certs.d")
    }
}

/// The private test registry (`scripts/test-registry.sh`): TLS from the test CA, logins, the test image.
#[derive(Debug, Clone)]
pub struct TestRegistry {
    /// `ADDRESS:PORT`, as image names spell it.
    pub host: String,
    pub ca_file: PathBuf,
    pub user: String,
    pub password: String,
}

impl TestRegistry {
    /// Ensures the test registries run; the test hosts' bridge must be up ([`engines`]).
    pub fn up() -> TestRegistry {
        let parts = test_registry("private");
        assert_eq!(parts.len(), 4, "test-registry.sh printed {parts:?} for the private registry");
        TestRegistry { host: parts[0].clone(), ca_file: parts[1].clone().into(), user: parts[2].clone(), password: parts[3].clone() }
    }

    /// The test image's name in this registry.
    pub fn image(&self, tag: &str) -> String {
        format!("{}/corral-test/busybox:{tag}", self.host)
    }
}

/// The address the engine gives `container` on the managed network, if it is on it.
pub fn managed_address(engine: &Engine, container: &str) -> Option<String> {
    let out = engine.docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", container]);
    let networks: Value = serde_json::from_slice(&out.stdout).ok()?;
    networks.as_object()?.get("corral-managed")?["IPAddress"].as_str().filter(|ip| !ip.is_empty()).map(str::to_string)
}

/// The body of `GET /` from `ip`:80, asked with `nc` inside `container` on `engine`, when it
/// answered.
pub fn fetch(engine: &Engine, container: &str, ip: &str) -> Option<String> {
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80");
    let out = engine.docker(&["exec", container, "sh", "-c", &request]);
    let reply = String::from_utf8_lossy(&out.stdout).to_string();
    let (_, body) = reply.split_once("\r\n\r\n")?;
    out.status.success().then(|| body.trim().to_string())
}

/// A command run in test host `name`'s network namespace (`corral-NAME`).
pub fn in_host_netns(name: &str, args: &[&str]) -> Output {
    Command::new("nsenter").arg(format!("--net=/run/netns/corral-{name}")).args(args).output().expect("run nsenter")
}
