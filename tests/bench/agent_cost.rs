//! The agent's own cost while it reports stats: RSS and CPU of the `corral agent` process with
//! N containers (50 by default) reporting every 5 s, read from /proc over a measurement window.
//!
//! Not a timed test: it prints figures next to the targets (<= 15 MB RSS, <= 1 % of one core)
//! and exits 0 either way. See docs/benchmarks.md.
//!
//!   CORRAL_E2E_PROFILE=release cargo run -p corral-e2e --bin bench-agent-cost -- [--containers N] [--seconds S]
//!
//! Without `CORRAL_E2E_PROFILE=release` the harness runs the debug build of `corral`, whose
//! figures are an upper bound for the release build operators run.

use corral_e2e::{instance_names, Cluster, TEST_IMAGE};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the agent is running");
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')').expect("stat has a comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the agent is running");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn main() {
    let containers = arg("--containers", 50) as u32;
    let seconds = arg("--seconds", 60);
    let cluster = Cluster::start(1);
    cluster.cp.json(&["stack", "create", "cost"]);
    let scale = containers.to_string();
    cluster.cp.json(&["service", "create", "cost/idle", "--image", TEST_IMAGE, "--scale", &scale, "--", "sleep", "3600"]);
    cluster.wait_exactly(&format!("{containers} containers running"), &instance_names("cost-idle", containers), Duration::from_secs(180));
    let pid = cluster.agents[0].as_ref().expect("the agent runs").child.id();
    // Let the first reports (and the converge burst of creating the containers) pass.
    std::thread::sleep(Duration::from_secs(15));
    let reporting = cluster.cp.json(&["stats", "container", "cost-idle-1", "--since", "1m"]);
    assert!(reporting["points"].as_array().is_some_and(|p| !p.is_empty()), "the agent reports stats: {reporting}");

    let ticks_per_second = 100.0; // USER_HZ on Linux
    let start_ticks = cpu_ticks(pid);
    let start = Instant::now();
    let mut peak_rss = 0;
    let mut rss_sum = 0;
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let rss = rss_kib(pid);
        peak_rss = peak_rss.max(rss);
        rss_sum += rss;
        samples += 1;
    }
    let cpu_seconds = (cpu_ticks(pid) - start_ticks) as f64 / ticks_per_second;
    let cpu_percent = cpu_seconds / start.elapsed().as_secs_f64() * 100.0;
    let mean_rss_mib = rss_sum as f64 / samples as f64 / 1024.0;
    let peak_rss_mib = peak_rss as f64 / 1024.0;
    println!("agent cost with {containers} containers reporting every 5 s, over {seconds} s:");
    println!("  RSS   mean {mean_rss_mib:.1} MiB, peak {peak_rss_mib:.1} MiB   (target <= 15 MB)  {}", verdict(peak_rss_mib * 1.048_576 <= 15.0));
    println!("  CPU   {cpu_percent:.2} % of one core ({cpu_seconds:.2} s)      (target <= 1 %)    {}", verdict(cpu_percent <= 1.0));
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}
