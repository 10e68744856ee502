//! The property the load balancer exists for: no client request fails while backends come and
//! go, whether they are removed by config (and then killed) or crash while still configured.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use corral_lb::LoadBalancer;
use tokio::task::JoinHandle;

const CLIENTS: usize = 4;
/// Bounds the loop even on a machine fast enough to go past the time limit's worth.
const MAX_REQUESTS_PER_CLIENT: usize = 50_000;

/// Per client: successful responses by backend name, and what each failure was.
type ClientOutcome = (HashMap<String, usize>, Vec<String>);

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<ClientOutcome>>,
}

struct LoadResult {
    ok: usize,
    by_backend: HashMap<String, usize>,
    failures: Vec<String>,
}

/// CLIENTS keep-alive clients doing GETs back to back until stopped.
fn start_load(port: u16, max_time: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..CLIENTS)
        .map(|i| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = client();
                let started = Instant::now();
                let mut by_backend: HashMap<String, usize> = HashMap::new();
                let mut failures = Vec::new();
                for n in 0..MAX_REQUESTS_PER_CLIENT {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > max_time {
                        break;
                    }
                    // Every other request lingers in the backend, so kills catch requests mid-flight.
                    let path = if n % 2 == 0 { format!("/c{i}/{n}") } else { format!("/c{i}/{n}?delay_ms=5") };
                    match get(&c, port, "app.example", &path).await {
                        Ok(r) if r.status == 200 => *by_backend.entry(r.body).or_default() += 1,
                        Ok(r) => failures.push(format!("client {i} request {n}: {} {}", r.status, r.body)),
                        Err(e) => failures.push(format!("client {i} request {n}: {e}")),
                    }
                }
                (by_backend, failures)
            })
        })
        .collect();
    Load { stop, tasks }
}

impl Load {
    async fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = LoadResult { ok: 0, by_backend: HashMap::new(), failures: Vec::new() };
        for t in self.tasks {
            let (by_backend, failures) = t.await.unwrap();
            for (k, v) in by_backend {
                out.ok += v;
                *out.by_backend.entry(k).or_default() += v;
            }
            out.failures.extend(failures);
        }
        out
    }
}

async fn apply_backends(lb: &LoadBalancer, port: u16, backends: &[&HttpBackend]) {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let errors = lb.apply(&one_listener(port, &addrs)).await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_backends_are_replaced_and_killed() {
    init_tracing();
    let mut live: Vec<HttpBackend> = vec![HttpBackend::start("gen0").await, HttpBackend::start("gen1").await];
    let (lb, port) = lb_with(|p| one_listener(p, &[live[0].addr, live[1].addr])).await;
    let started = Instant::now();
    let load = start_load(port, Duration::from_secs(6));
    tokio::time::sleep(Duration::from_millis(150)).await;

    let mut newcomers = Vec::new();
    let mut generation = 2;
    let mut applies = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        // Add a new backend...
        let fresh = HttpBackend::start(&format!("gen{generation}")).await;
        generation += 1;
        newcomers.push(fresh.name.clone());
        live.push(fresh);
        apply_backends(&lb, port, &live.iter().collect::<Vec<_>>()).await;
        applies += 1;
        tokio::time::sleep(Duration::from_millis(120)).await;
        // ...then remove the oldest and kill it right away, requests to it possibly in flight.
        let oldest = live.remove(0);
        apply_backends(&lb, port, &live.iter().collect::<Vec<_>>()).await;
        applies += 1;
        oldest.kill().await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // Finally a crash: a backend still in the config dies.
    let crashed = live.remove(0);
    let crashed_name = crashed.name.clone();
    crashed.kill().await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let result = load.finish().await;
    let elapsed = started.elapsed();
    eprintln!(
        "{} requests in {elapsed:?} ({:.0}/s) across {applies} applies; per backend: {:?}",
        result.ok,
        result.ok as f64 / elapsed.as_secs_f64(),
        result.by_backend
    );
    assert!(result.failures.is_empty(), "{} failed: {:?}", result.failures.len(), &result.failures[..result.failures.len().min(20)]);
    assert!(result.ok >= 200, "too little traffic to mean anything: {}", result.ok);
    assert!(applies >= 6, "too few config changes: {applies}");
    for name in &newcomers {
        if *name != crashed_name {
            assert!(result.by_backend.get(name).copied().unwrap_or(0) > 0, "{name} never got traffic: {:?}", result.by_backend);
        }
    }
    // Only the backends of the final config remain in the status.
    let st = &lb.status()[0];
    assert_eq!(st.backends.len(), live.len() + 1);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_get_fails_when_a_configured_backend_crashes() {
    init_tracing();
    let [a, b, c] = [HttpBackend::start("a").await, HttpBackend::start("b").await, HttpBackend::start("c").await];
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr, b.addr, c.addr])).await;
    let load = start_load(port, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.hits() > 0);
    let b_addr = b.addr;
    b.kill().await;
    let (a_at_kill, c_at_kill) = (a.hits(), c.hits());
    // Past RETRY_AFTER, so the dead backend is probed again (and found still dead) under load.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let result = load.finish().await;
    eprintln!("{} requests; per backend: {:?}", result.ok, result.by_backend);
    assert!(result.failures.is_empty(), "{} failed: {:?}", result.failures.len(), &result.failures[..result.failures.len().min(20)]);
    assert!(a.hits() > a_at_kill && c.hits() > c_at_kill);
    let st = &lb.status()[0];
    let b_status = st.backends.iter().find(|s| s.addr == b_addr).unwrap();
    assert!(!b_status.up, "{b_status:?}");
    lb.shutdown().await;
}
