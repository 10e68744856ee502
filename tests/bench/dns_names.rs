//! Service-discovery DNS as containers see it, on the test hosts with agents in their hosts'
//! namespaces: how long after a container starts on one host its name resolves in a container on
//! another (p50 over `--runs`), and the latency of answers asked from inside a container, through
//! the engine's own resolver (127.0.0.11, what applications use) and straight to the agent's
//! server on the gateway.
//!
//! Not a timed test: it prints figures with the targets next to them and exits 0 either
//! way (non-zero only when it cannot run). Uses the `bench-dns` example of `corral-dns` for the
//! queries, run in the asking container's network namespace.
//!
//!   cargo run -p corral-e2e --bin bench-dns-names -- [--runs 5] [--queries 20000]
//!   CORRAL_E2E_PROFILE=release cargo run -p corral-e2e --bin bench-dns-names   # release agent and tool

use corral_e2e::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `bench-dns` example, of the same profile as the corral binary under test.
fn bench_dns() -> std::path::PathBuf {
    let release = std::env::var("CORRAL_E2E_PROFILE").is_ok_and(|p| p == "release");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--quiet", "-p", "corral-dns", "--example", "bench-dns"]).current_dir(repo_root());
    if release {
        build.arg("--release");
    }
    assert!(build.status().expect("run cargo build").success(), "building bench-dns failed");
    repo_root().join("target").join(if release { "release" } else { "debug" }).join("examples/bench-dns")
}

/// `bench-dns` in the network namespace of `container` on `engine`.
fn in_container(engine: &Engine, container: &str, bench: &std::path::Path) -> Command {
    let pid = text(&engine.docker(&["inspect", "-f", "{{.State.Pid}}", container]));
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{}/ns/net", pid.trim())).arg(bench);
    cmd
}

/// When the engine says `container` started, in ms since the epoch.
fn started_ms(engine: &Engine, container: &str) -> u128 {
    let at = text(&engine.docker(&["inspect", "-f", "{{.State.StartedAt}}", container]));
    let out = Command::new("date").args(["-d", at.trim(), "+%s%3N"]).output().unwrap();
    text(&out).trim().parse().unwrap_or_else(|_| panic!("a start time: {at}"))
}

fn main() {
    let (runs, queries) = (arg("--runs", 5), arg("--queries", 20_000));
    let bench = bench_dns();
    let (ns, ip) = bare_netns(0);
    let cluster = Cluster::start_with(2, Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args: vec![] }, true);
    let cp = &cluster.cp;
    let (h1, h2) = (&cluster.engines[0], &cluster.engines[1]);
    cp.json(&["stack", "create", "B"]);
    let on = |host: &Engine| format!("host.zone={}", host.name);
    cp.json(&["service", "create", "B/client", "--image", TEST_IMAGE, "--constraint", &on(h1), "--", "sleep", "3600"]);
    wait_for("B-client-1 on h1", WAIT, || h1.running_names().contains(&"B-client-1".to_string()).then_some(()));

    // From a container starting on h2 to its name answering on h1.
    let mut delays = Vec::new();
    for run in 1..=runs {
        let service = format!("s{run}");
        let mut waiter = in_container(h1, "B-client-1", &bench)
            .args(["--server", "127.0.0.11:53", "--until-answered", "--ask", &format!("{service}.B")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        cp.json(&["service", "create", &format!("B/{service}"), "--image", TEST_IMAGE, "--constraint", &on(h2), "--", "sleep", "3600"]);
        let answered: u128 = {
            wait_for(&format!("{service}.B resolving on h1"), WAIT, || waiter.try_wait().unwrap());
            let mut printed = String::new();
            std::io::Read::read_to_string(waiter.stdout.as_mut().unwrap(), &mut printed).unwrap();
            printed.trim().parse().unwrap_or_else(|_| panic!("bench-dns printed {printed:?}"))
        };
        let started = started_ms(h2, &format!("B-{service}-1"));
        let delay = answered.saturating_sub(started);
        println!("run {run}: started on {} at {started}, answered on {} {delay} ms later", h2.name, h1.name);
        delays.push(delay);
    }
    delays.sort_unstable();
    let p50 = delays[(delays.len() - 1) / 2];
    println!("start → name resolving on another host: p50 {p50} ms over {runs} runs (target ≤ 1000 ms: {})", if p50 <= 1000 { "met" } else { "NOT met" });

    // Answers from inside the container: through the engine's resolver, and straight to ours.
    let gateway = {
        let out = text(&h1.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "corral-managed"]));
        out.trim().to_string()
    };
    for (what, server) in [("the engine's resolver", "127.0.0.11:53".to_string()), ("the agent's server on the gateway", format!("{gateway}:53"))] {
        println!("--- asked inside B-client-1 through {what} ({server})");
        let out = in_container(h1, "B-client-1", &bench)
            .args(["--server", &server, "--queries", &queries.to_string(), "--ask", "client", "--ask", "s1.B", "--ask", "B-s2-1"])
            .output()
            .unwrap();
        print!("{}", text(&out));
    }
}
