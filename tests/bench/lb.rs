//! Load-balancer benchmark: Corral's proxy (`corral-lb`) against HAProxy, driven by `wrk`.
//!
//! Not a timed test: it prints figures and the targets from the issue next to them, and exits 0
//! whether or not they are met (non-zero only when it cannot run). See docs/benchmarks.md for how
//! to run it and how to read it.
//!
//!   cargo run --release -p corral-e2e --bin bench-lb -- [--quick] [--rounds R] [--duration S]
//!
//! Everything is on 127.0.0.1 and every process is real and separate:
//!
//! - N backends (default 4), the same for both proxies. By default each is this binary re-run as
//!   `bench-lb serve-backend PORT I`: a single-threaded HTTP/1.1 keep-alive server that answers
//!   every request with the same 1 KiB page naming backend I. `--backend busybox` uses
//!   `busybox httpd` instead, which forks a process per connection and closes it after each
//!   response; it tops out far below either proxy, so both would only measure it.
//! - Corral: this binary re-run as `bench-lb serve-corral THREADS PORT BACKEND...`, running
//!   `LoadBalancer::with_threads(127.0.0.1, THREADS)` with one HTTP listener and one route over
//!   the backends: what an agent runs in-process for its host (where THREADS is the CPU count).
//! - HAProxy: `haproxy -f CFG -db` with `nbthread THREADS`, `mode http`, `balance roundrobin`,
//!   keep-alive on both sides, and the same forwarding headers Corral adds.
//! - `bench-lb send-requests ADDR N [CONNS]` and `bench-lb haproxy-config THREADS PORT
//!   BACKEND...` are for counting each proxy's instructions per request under callgrind, which
//!   stays repeatable on a busy machine (docs/benchmarks.md has the recipe).
//!
//! Before measuring, N*4 requests through each proxy must reach every backend. Then: one wrk run
//! straight to one backend (the ceiling a proxy cannot beat), a warm-up of each proxy, and rounds
//! alternating Corral, HAProxy, Corral, HAProxy. Each proxy's CPU time during each run is read
//! from /proc so the figures say where the machine's time went. Every child process is killed
//! when the benchmark ends, panics, or (through PR_SET_PDEATHSIG) dies.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BODY_LEN: usize = 1024;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// wrk gets its duration plus this before it is killed and the run counted as failed.
const WRK_GRACE: Duration = Duration::from_secs(30);
const SETUP_HINT: &str = "run scripts/setup.sh, or: sudo apt-get install -y wrk haproxy";

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, PartialEq, Debug)]
enum BackendKind {
    Raw,
    Busybox,
}

#[derive(Debug)]
struct Opts {
    backends: usize,
    wrk_threads: usize,
    connections: usize,
    duration: u64,
    warmup: u64,
    rounds: usize,
    proxy_threads: usize,
    backend: BackendKind,
}

const USAGE: &str = "\
usage: bench-lb [options]

  --backends N        backend servers behind each proxy (default 4)
  --threads T         wrk threads, -t (default 2)
  --connections C     wrk connections, -c (default 64)
  --duration S        seconds per measured wrk run, -d (default 10)
  --quick             same as --duration 3
  --warmup S          seconds of discarded wrk load on each proxy first (default 2)
  --rounds R          measured runs per proxy, alternating Corral/HAProxy (default 2)
  --proxy-threads P   Corral's proxy threads and HAProxy's nbthread (default 2)
  --backend KIND      raw (default: built-in keep-alive server) or busybox (busybox httpd)
";

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts { backends: 4, wrk_threads: 2, connections: 64, duration: 10, warmup: 2, rounds: 2, proxy_threads: 2, backend: BackendKind::Raw };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> Result<u64, String> {
                it.next().and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0).ok_or_else(|| format!("{name} needs a positive number"))
            };
            match a.as_str() {
                "--backends" => o.backends = num(a)? as usize,
                "--threads" => o.wrk_threads = num(a)? as usize,
                "--connections" => o.connections = num(a)? as usize,
                "--duration" => o.duration = num(a)?,
                "--quick" => o.duration = 3,
                "--warmup" => o.warmup = num(a)?,
                "--rounds" => o.rounds = num(a)? as usize,
                "--proxy-threads" => o.proxy_threads = num(a)? as usize,
                "--backend" => {
                    o.backend = match it.next().map(String::as_str) {
                        Some("raw") => BackendKind::Raw,
                        Some("busybox") => BackendKind::Busybox,
                        _ => return Err("--backend is raw or busybox".into()),
                    }
                }
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if o.connections < o.wrk_threads {
            return Err("wrk needs at least as many connections as threads".into());
        }
        Ok(o)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Hidden subcommands: the benchmark re-runs itself for the backends and for Corral, so each
    // has a process (and, for Corral, a runtime) of its own.
    match args.first().map(String::as_str) {
        Some("serve-corral") => return serve_corral(&args[1..]),
        Some("serve-backend") => return serve_backend(&args[1..]),
        Some("send-requests") => return send_requests(&args[1..]),
        Some("haproxy-config") => return print_haproxy_config(&args[1..]),
        _ => {}
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-lb: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("bench-lb: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Every process the benchmark starts. Dropping it (normal end, error or panic) kills them all.
struct Children {
    procs: Vec<(String, Child, PathBuf)>,
}

impl Children {
    /// Starts `cmd` with its stdout and stderr in `log`. The child gets SIGKILL if the benchmark
    /// dies without running the destructor (SIGKILL, abort).
    fn spawn(&mut self, name: &str, mut cmd: Command, log: PathBuf) -> Result<u32, String> {
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id();
        self.procs.push((name.to_string(), child, log));
        Ok(pid)
    }

    /// An error naming the first child that has exited, with the end of its log.
    fn check_alive(&mut self) -> Result<(), String> {
        for (name, child, log) in &mut self.procs {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited ({status}); its output:\n{}", tail(log, 20)));
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.procs {
            let _ = child.kill();
        }
        for (_, child, _) in &mut self.procs {
            let _ = child.wait();
        }
    }
}

fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(tool);
            f.is_file()
                && std::fs::metadata(&f).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| format!("no free loopback port: {e}"))
}

fn wait_listening(children: &mut Children, addr: SocketAddr, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        children.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what} is not listening on {addr} after {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU time (user + system, all threads) a process has used so far; with `reaped`, also that of
/// its children it has waited for (how wrk's time reaches the benchmark's own figures).
fn cpu_time_of(pid: &str, reaped: bool) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (proc(5)).
    let fields: &[usize] = if reaped { &[11, 12, 13, 14] } else { &[11, 12] };
    let mut ticks = 0;
    for i in fields {
        ticks += f.get(*i)?.parse::<u64>().ok()?;
    }
    Some(ticks_to_duration(ticks))
}

fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_of(&pid.to_string(), false)
}

/// Busy CPU time of the whole machine so far (all cores; user, system, irq, softirq).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    Some(ticks_to_duration(busy))
}

/// CPU time used so far by the benchmark, every child still running, and the reaped ones (wrk).
fn our_cpu(children: &Children) -> Option<Duration> {
    let mut total = cpu_time_of("self", true)?;
    for (_, child, _) in &children.procs {
        total += cpu_time(child.id()).unwrap_or_default();
    }
    Some(total)
}

/// Cores' worth of CPU (1.0 = one core for the whole span) between two readings.
fn cores(before: Option<Duration>, after: Option<Duration>, wall: Duration) -> Option<f64> {
    Some(after?.checked_sub(before?)?.as_secs_f64() / wall.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// The backends

fn page(index: usize) -> Vec<u8> {
    let mut body = format!("corral-bench backend {index}\n").into_bytes();
    body.resize(BODY_LEN - 1, b'.');
    body.push(b'\n');
    body
}

fn marker(body: &[u8]) -> Option<usize> {
    let line = body.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.strip_prefix("corral-bench backend ")?.parse().ok()
}

/// `serve-backend PORT INDEX`: HTTP/1.1 with keep-alive and pipelining, one thread, one fixed
/// page. Just enough HTTP for wrk and both proxies: requests without bodies or with a
/// Content-Length; `Connection: close` is honoured.
fn serve_backend(args: &[String]) {
    let (Some(port), Some(index)) = (args.first().and_then(|p| p.parse::<u16>().ok()), args.get(1).and_then(|i| i.parse::<usize>().ok())) else {
        eprintln!("usage: bench-lb serve-backend PORT INDEX");
        std::process::exit(2);
    };
    let body = page(index);
    let head = |close: bool| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{}\r\n", body.len(), if close { "Connection: close\r\n" } else { "" })
    };
    let keep: std::sync::Arc<[u8]> = [head(false).as_bytes(), &body].concat().into();
    let close: std::sync::Arc<[u8]> = [head(true).as_bytes(), &body].concat().into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| {
            eprintln!("backend {index}: bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        });
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(backend_conn(stream, keep.clone(), close.clone()));
        }
    });
}

async fn backend_conn(mut s: tokio::net::TcpStream, keep: std::sync::Arc<[u8]>, close: std::sync::Arc<[u8]>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        // Answer every complete request in the buffer (pipelining), in one write.
        let mut closing = false;
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
            if buf.len() < end + 4 + body_len {
                break;
            }
            closing = head.lines().any(|l| l.starts_with("connection:") && l.contains("close")) || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
            buf.drain(..end + 4 + body_len);
            out.extend_from_slice(if closing { &close } else { &keep });
            if closing {
                break;
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if closing || buf.len() > 64 * 1024 {
            return;
        }
        let start = buf.len();
        buf.resize(start + 8192, 0);
        match s.read(&mut buf[start..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.truncate(start + n),
        }
    }
}

/// `send-requests ADDR N [CONNS]`: N keep-alive GETs, one at a time, taking CONNS connections
/// (default 4) in turn; exits non-zero unless every answer is a 200. A fixed amount of work, so
/// a proxy's instruction count under `valgrind --tool=callgrind` can be compared per request
/// (see docs/benchmarks.md); wrk runs for a time, not a count.
fn send_requests(args: &[String]) {
    let parsed = (|| {
        let addr: SocketAddr = args.first()?.parse().ok()?;
        let n: usize = args.get(1)?.parse().ok()?;
        let conns: usize = args.get(2).map_or(Some(4), |c| c.parse().ok())?;
        Some((addr, n, conns.max(1)))
    })();
    let Some((addr, n, conns)) = parsed else {
        eprintln!("usage: bench-lb send-requests ADDR N [CONNS]");
        std::process::exit(2);
    };
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bench-lb\r\nAccept: */*\r\n\r\n");
    let fail = |what: String| -> ! {
        eprintln!("send-requests: {what}");
        std::process::exit(1);
    };
    let mut streams: Vec<(TcpStream, Vec<u8>)> = (0..conns)
        .map(|_| match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                (s, Vec::new())
            }
            Err(e) => fail(format!("connect {addr}: {e}")),
        })
        .collect();
    for i in 0..n {
        let (s, buf) = &mut streams[i % conns];
        if let Err(e) = s.write_all(request.as_bytes()) {
            fail(format!("request {i}: {e}"));
        }
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or_else(|| fail(format!("request {i}: no Content-Length: {head}")));
                if buf.len() >= end + 4 + len {
                    if !head.starts_with("http/1.1 200") {
                        fail(format!("request {i}: {}", head.lines().next().unwrap_or("")));
                    }
                    buf.drain(..end + 4 + len);
                    break;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match s.read(&mut chunk) {
                Ok(0) => fail(format!("request {i}: the connection closed")),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                Err(e) => fail(format!("request {i}: {e}")),
            }
        }
    }
    println!("{n} requests answered");
}

// ---------------------------------------------------------------------------------------------
// Corral

/// The `THREADS PORT BACKEND...` arguments of `serve-corral` and `haproxy-config`; exits with
/// the usage of `command` when they do not parse.
fn proxy_args(command: &str, args: &[String]) -> (usize, u16, Vec<SocketAddr>) {
    let parsed = (|| {
        let threads: usize = args.first()?.parse().ok()?;
        let port: u16 = args.get(1)?.parse().ok()?;
        let backends: Vec<SocketAddr> = args.get(2..)?.iter().map(|a| a.parse()).collect::<Result<_, _>>().ok()?;
        Some((threads, port, backends))
    })();
    parsed.unwrap_or_else(|| {
        eprintln!("usage: bench-lb {command} THREADS PORT BACKEND...");
        std::process::exit(2);
    })
}

/// `serve-corral THREADS PORT BACKEND...`: the Corral proxy in a runtime of its own, until killed.
fn serve_corral(args: &[String]) {
    let (threads, port, backends) = proxy_args("serve-corral", args);
    // The proxy serves connections on its own THREADS threads; this runtime only accepts.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let lb = corral_lb::LoadBalancer::with_threads([127, 0, 0, 1].into(), threads);
        let config = corral_lb::LbConfig {
            listeners: vec![corral_lb::Listener {
                port,
                mode: corral_lb::Mode::Http,
                routes: vec![corral_lb::Route { host: None, path_prefix: None, backends }],
            }],
        };
        let errors = lb.apply(&config).await;
        if !errors.is_empty() {
            for e in errors {
                eprintln!("corral-lb: {e}");
            }
            std::process::exit(1);
        }
        println!("corral-lb listening on 127.0.0.1:{port} with {threads} proxy threads");
        std::future::pending::<()>().await;
    });
}

// ---------------------------------------------------------------------------------------------
// HAProxy

/// `haproxy-config THREADS PORT BACKEND...`: prints the HAProxy config the benchmark uses, for
/// running HAProxy by hand (under callgrind, for instance).
fn print_haproxy_config(args: &[String]) {
    let (threads, port, backends) = proxy_args("haproxy-config", args);
    print!("{}", haproxy_config(port, &backends, threads));
}

fn haproxy_config(port: u16, backends: &[SocketAddr], threads: usize) -> String {
    let mut cfg = format!(
        "\
global
    nbthread {threads}
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    timeout http-request 10s

frontend bench
    bind 127.0.0.1:{port}
    # The same forwarding headers corral-lb adds to every request.
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend servers

backend servers
    balance roundrobin
"
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!("    server b{i} {b}\n"));
    }
    cfg
}

// ---------------------------------------------------------------------------------------------
// Checks and wrk

/// One `GET /` on its own connection: status and body.
fn fetch(addr: SocketAddr) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
    s.set_write_timeout(Some(IO_TIMEOUT)).ok();
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n").map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("{addr}: {e}"))?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("{addr}: no complete response"))?;
    let status =
        String::from_utf8_lossy(&raw[..end]).split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("{addr}: no status line"))?;
    Ok((status, raw[end + 4..].to_vec()))
}

/// Requests through `addr` until every backend has answered at least once (4 per backend).
fn check_reaches_all(addr: SocketAddr, n: usize, what: &str) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n * 4 {
        let (status, body) = fetch(addr).map_err(|e| format!("{what}: {e}"))?;
        if status != 200 {
            return Err(format!("{what} answered {status}: {}", String::from_utf8_lossy(&body).trim()));
        }
        if body.len() != BODY_LEN {
            return Err(format!("{what} returned {} bytes, not {BODY_LEN}", body.len()));
        }
        seen.insert(marker(&body).ok_or_else(|| format!("{what}: a body without a backend name"))?);
    }
    let all: BTreeSet<usize> = (0..n).collect();
    if seen != all {
        return Err(format!("{what} reached backends {seen:?} of {all:?} in {} requests", n * 4));
    }
    Ok(())
}

#[derive(Clone, Debug, Default)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx responses.
    errors: u64,
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = s[..split].parse().ok()?;
    let scale = match &s[split..] {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * scale)
}

fn parse_wrk(out: &str) -> Result<WrkResult, String> {
    let mut r = WrkResult::default();
    let (mut rps, mut p50, mut p99) = (None, None, None);
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_duration_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_duration_ms(v);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            r.errors += v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if t.contains(" requests in ") {
            r.requests = t.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50), Some(p99)) => {
            r.rps = rps;
            r.p50_ms = p50;
            r.p99_ms = p99;
            Ok(r)
        }
        _ => Err(format!("could not read wrk's output:\n{out}")),
    }
}

/// One wrk run against `addr`, killed if it overruns its duration by [`WRK_GRACE`].
fn wrk(opts: &Opts, addr: SocketAddr, seconds: u64, dir: &Path) -> Result<WrkResult, String> {
    let log = dir.join("wrk.out");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", opts.wrk_threads))
        .arg(format!("-c{}", opts.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("--timeout")
        .arg("5s")
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("starting wrk: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(seconds) + WRK_GRACE;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("wrk against {addr} did not finish in {seconds} s + {WRK_GRACE:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        return Err(format!("wrk against {addr} failed ({status}):\n{text}"));
    }
    parse_wrk(&text)
}

// ---------------------------------------------------------------------------------------------
// The run

struct Row {
    proxy: &'static str,
    round: usize,
    r: WrkResult,
    /// The proxy's CPU time during the run, in cores (1.0 = one core busy the whole run).
    cores: Option<f64>,
    /// Busy CPU on the machine that was neither the benchmark nor its children, in cores:
    /// another workload competing for the same cores, which makes the figures noisy.
    other_cores: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0} µs", v * 1000.0)
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn version_line(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

fn run(opts: &Opts) -> Result<(), String> {
    let busybox = "/usr/bin/busybox";
    let mut missing: Vec<&str> = ["wrk", "haproxy"].into_iter().filter(|t| !on_path(t)).collect();
    if opts.backend == BackendKind::Busybox && !Path::new(busybox).is_file() {
        missing.push(busybox);
    }
    if !missing.is_empty() {
        return Err(format!("{} not found on PATH; {SETUP_HINT}", missing.join(" and ")));
    }
    let me = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let dir = tempfile::Builder::new().prefix("corral-bench-lb-").tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let mut children = Children { procs: Vec::new() };

    let ncpu = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("bench-lb: {ncpu} CPU cores, shared by wrk, the proxy under test and the backends");
    println!("  {}", version_line("haproxy", "-v"));
    println!("  {}", version_line("wrk", "-v"));
    println!(
        "  wrk -t{} -c{} -d{}s --latency; {} rounds per proxy after a {} s warm-up each; proxy threads: {}",
        opts.wrk_threads, opts.connections, opts.duration, opts.rounds, opts.warmup, opts.proxy_threads
    );

    // Backends.
    let mut backends = Vec::new();
    for i in 0..opts.backends {
        let port = free_port()?;
        let cmd = match opts.backend {
            BackendKind::Raw => {
                let mut c = Command::new(&me);
                c.arg("serve-backend").arg(port.to_string()).arg(i.to_string());
                c
            }
            BackendKind::Busybox => {
                let root = d.join(format!("www{i}"));
                std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
                std::fs::write(root.join("index.html"), page(i)).map_err(|e| e.to_string())?;
                let mut c = Command::new(busybox);
                c.args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"]).arg(&root);
                c
            }
        };
        children.spawn(&format!("backend {i}"), cmd, d.join(format!("backend{i}.log")))?;
        backends.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    for (i, b) in backends.iter().enumerate() {
        wait_listening(&mut children, *b, &format!("backend {i}"))?;
        let (status, body) = fetch(*b)?;
        if status != 200 || marker(&body) != Some(i) {
            return Err(format!("backend {i} on {b} answered {status} with the wrong page"));
        }
    }
    let kind = match opts.backend {
        BackendKind::Raw => "built-in keep-alive server, 1 thread each",
        BackendKind::Busybox => "busybox httpd",
    };
    println!("  backends: {} × {kind}, {BODY_LEN}-byte page: {backends:?}", backends.len());

    // Corral.
    let corral_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(&me);
    cmd.arg("serve-corral").arg(opts.proxy_threads.to_string()).arg(corral_addr.port().to_string()).args(backends.iter().map(|b| b.to_string()));
    let corral_pid = children.spawn("corral-lb", cmd, d.join("corral.log"))?;
    wait_listening(&mut children, corral_addr, "corral-lb")?;

    // HAProxy.
    let haproxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let cfg_path = d.join("haproxy.cfg");
    std::fs::write(&cfg_path, haproxy_config(haproxy_addr.port(), &backends, opts.proxy_threads)).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("haproxy");
    cmd.arg("-f").arg(&cfg_path).arg("-db");
    let haproxy_pid = children.spawn("haproxy", cmd, d.join("haproxy.log"))?;
    wait_listening(&mut children, haproxy_addr, "haproxy")?;

    check_reaches_all(corral_addr, backends.len(), "corral-lb")?;
    check_reaches_all(haproxy_addr, backends.len(), "haproxy")?;
    println!("  corral-lb on {corral_addr} and haproxy on {haproxy_addr} both reach all {} backends", backends.len());

    // Reference ceiling: no proxy at all.
    let direct = wrk(opts, backends[0], opts.duration, d)?;
    children.check_alive()?;

    // Warm-up (discarded), then alternating measured rounds.
    wrk(opts, corral_addr, opts.warmup, d)?;
    wrk(opts, haproxy_addr, opts.warmup, d)?;
    let mut rows = Vec::new();
    for round in 1..=opts.rounds {
        for (proxy, addr, pid) in [("corral", corral_addr, corral_pid), ("haproxy", haproxy_addr, haproxy_pid)] {
            let (proxy0, ours0, busy0) = (cpu_time(pid), our_cpu(&children), machine_busy());
            let started = Instant::now();
            let r = wrk(opts, addr, opts.duration, d)?;
            let wall = started.elapsed();
            let proxy_cores = cores(proxy0, cpu_time(pid), wall);
            let ours = cores(ours0, our_cpu(&children), wall);
            let busy = cores(busy0, machine_busy(), wall);
            let other_cores = busy.zip(ours).map(|(b, o)| (b - o).max(0.0));
            children.check_alive()?;
            rows.push(Row { proxy, round, r, cores: proxy_cores, other_cores });
        }
    }

    // Report.
    println!();
    println!(
        "reference, wrk straight to backend 0 (no proxy): {:.0} req/s, p50 {}, p99 {}, errors {}",
        direct.rps,
        ms(direct.p50_ms),
        ms(direct.p99_ms),
        direct.errors
    );
    println!();
    println!(
        "{:<8} {:>5} {:>10} {:>10} {:>10} {:>7} {:>11} {:>11} {:>11}",
        "proxy", "round", "req/s", "p50", "p99", "errors", "proxy CPU", "CPU µs/req", "other load"
    );
    println!("{}", "-".repeat(92));
    for row in &rows {
        let (cpu, per_req) = match row.cores {
            Some(c) => (format!("{c:.2} cores"), format!("{:.1}", c * 1e6 / row.r.rps)),
            None => ("?".into(), "?".into()),
        };
        let other = row.other_cores.map_or("?".into(), |c| format!("{c:.2} cores"));
        println!(
            "{:<8} {:>5} {:>10.0} {:>10} {:>10} {:>7} {:>11} {:>11} {:>11}",
            row.proxy,
            row.round,
            row.r.rps,
            ms(row.r.p50_ms),
            ms(row.r.p99_ms),
            row.r.errors,
            cpu,
            per_req,
            other
        );
    }
    let med = |proxy: &str, f: fn(&Row) -> f64| median(rows.iter().filter(|r| r.proxy == proxy).map(f).collect());
    let (c_rps, h_rps) = (med("corral", |r| r.r.rps), med("haproxy", |r| r.r.rps));
    let (c_p50, h_p50) = (med("corral", |r| r.r.p50_ms), med("haproxy", |r| r.r.p50_ms));
    let (c_p99, h_p99) = (med("corral", |r| r.r.p99_ms), med("haproxy", |r| r.r.p99_ms));
    let errors: u64 = rows.iter().map(|r| r.r.errors).sum();
    println!();
    println!("median   corral  {c_rps:>10.0} req/s   p50 {:>9}   p99 {:>9}", ms(c_p50), ms(c_p99));
    println!("median   haproxy {h_rps:>10.0} req/s   p50 {:>9}   p99 {:>9}", ms(h_p50), ms(h_p99));
    println!();
    let rps_ratio = c_rps / h_rps;
    let p99_ratio = c_p99 / h_p99;
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!("corral / haproxy   req/s {rps_ratio:.2}×   target ≥ 1.00×   {}", verdict(rps_ratio >= 1.0));
    println!("corral / haproxy   p99   {p99_ratio:.2}×   target ≤ 1.00×   {}", verdict(p99_ratio <= 1.0));
    let busiest = rows.iter().filter_map(|r| r.other_cores).fold(0.0, f64::max);
    if busiest > 0.2 {
        println!(
            "warning: other work on this machine used up to {busiest:.2} cores during the runs (column other load); \
             the proxies competed with it for the CPU, so these figures are noisy: rerun on a quiet machine"
        );
    }
    if errors > 0 {
        println!("warning: {errors} socket errors or non-2xx responses during the measured runs (column errors)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed_with_units() {
        let out = "Running 3s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n  Latency Distribution\n     50%  612.00us\n     75%    1.20ms\n     90%    3.62ms\n     99%    1.02s \n  7321 requests in 3.05s, 8.63MB read\n  Socket errors: connect 0, read 3, write 1, timeout 2\n  Non-2xx or 3xx responses: 4\nRequests/sec:   2400.41\nTransfer/sec:      2.83MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.rps, 2400.41);
        assert!((r.p50_ms - 0.612).abs() < 1e-9);
        assert_eq!(r.p99_ms, 1020.0);
        assert_eq!(r.requests, 7321);
        assert_eq!(r.errors, 10);
    }

    #[test]
    fn pages_name_their_backend() {
        assert_eq!(page(3).len(), BODY_LEN);
        assert_eq!(marker(&page(3)), Some(3));
    }
}
