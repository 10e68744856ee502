//! The tunnel between two network namespaces, on the real kernel: two `overlay-probe`
//! processes, one per namespace, joined by a veth pair, each with the other as its only peer.
//!
//! Needs root and /dev/net/tun, and fails (never skips) without them. Everything it makes is
//! named `corral-ovl-test-*` (veths `covl*`) and removed by a guard, even on failure.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_overlay-probe");
const PORT: u16 = 51820;
const NETWORK: &str = "10.42.0.0/16";
const SUBNET_A: &str = "10.42.1.0/24";
const SUBNET_B: &str = "10.42.2.0/24";
const TUNNEL_A: &str = "10.42.1.1";
const TUNNEL_B: &str = "10.42.2.1";
const LINK_A: &str = "10.213.99.1";
const LINK_B: &str = "10.213.99.2";

/// Runs a command to completion and fails the test, with its output, when it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two namespaces joined by a veth pair, and the processes started in them. Dropping it stops
/// the processes and deletes the namespaces (which takes the veths and tunnels with them).
struct Testbed {
    ns: [String; 2],
    veth: [String; 2],
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Testbed {
    /// `tag` (one letter) tells apart the testbeds of tests running at once in this process.
    fn new(tag: char) -> Testbed {
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let bed = Testbed {
            ns: [format!("corral-ovl-test-{id}-a"), format!("corral-ovl-test-{id}-b")],
            veth: [format!("covl{id}a"), format!("covl{id}b")],
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for ns in &bed.ns {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&["ip", "link", "add", &bed.veth[0], "netns", &bed.ns[0], "type", "veth", "peer", "name", &bed.veth[1], "netns", &bed.ns[1]]);
        for (i, addr) in [LINK_A, LINK_B].iter().enumerate() {
            let cidr = format!("{addr}/30");
            run(&["ip", "-n", &bed.ns[i], "addr", "add", &cidr, "dev", &bed.veth[i]]);
            run(&["ip", "-n", &bed.ns[i], "link", "set", &bed.veth[i], "up"]);
        }
        bed
    }

    fn netns_path(&self, i: usize) -> String {
        format!("/run/netns/{}", self.ns[i])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `nsenter --net=NS` + `args`, for a command run to completion.
    fn in_ns(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path(i))).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Starts `args` in namespace `i`, its stdout and stderr in the file `log`.
    fn spawn(&mut self, i: usize, args: &[&str], log: &str) -> u32 {
        let log = File::create(self.path(log)).unwrap();
        let child = self.in_ns(i, args).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn ping(&self, from: usize, to: &str) -> bool {
        self.in_ns(from, &["busybox", "ping", "-c", "3", "-W", "1", to]).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("busybox ping").success()
    }

    /// Runs `f` on a thread that has entered namespace `i`: sockets it opens live there.
    fn on_thread_in<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = self.netns_path(i);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// Packets the overlay in namespace `i` has written into its device (the device's receive
    /// count).
    fn delivered(&self, i: usize) -> u64 {
        let out = run(&["ip", "-n", &self.ns[i], "-s", "-j", "link", "show", "corral0"]);
        let link: Value = serde_json::from_str(&out).unwrap();
        link[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
    }

    /// Makes a key for each side and starts a probe in each namespace with the other side as
    /// its one peer, sending to the other side's veth address on `peer_ports[i]`.
    fn start_probes(&mut self, peer_ports: [u16; 2]) -> Probes {
        let keys: Vec<String> = (0..2)
            .map(|i| {
                let key = self.path(&format!("host-{i}.key"));
                run(&[PROBE, "public-key", "--key", key.to_str().unwrap()]).trim().to_owned()
            })
            .collect();
        let sides = [(SUBNET_A, LINK_B, SUBNET_B), (SUBNET_B, LINK_A, SUBNET_A)];
        let mut pids = Vec::new();
        for (i, (local, peer_link, peer_subnet)) in sides.iter().enumerate() {
            let key = self.path(&format!("host-{i}.key"));
            let status = self.path(&format!("status-{i}.json"));
            let peers_file = self.path(&format!("peers-{i}.json"));
            let peer = format!("{},{peer_link}:{},{peer_subnet}", keys[1 - i], peer_ports[i]);
            let port = PORT.to_string();
            #[rustfmt::skip]
            let args = [
                PROBE, "run", "--key", key.to_str().unwrap(), "--port", &port,
                "--local-subnet", local, "--network", NETWORK, "--peer", &peer,
                "--status", status.to_str().unwrap(), "--peers-file", peers_file.to_str().unwrap(),
            ];
            pids.push(self.spawn(i, &args, &format!("probe-{i}.log")));
        }
        Probes { keys, pids }
    }

    /// Gives probe `i` (process `pid`) the peer list `peers` (JSON), as `set_peers` would.
    fn set_peers(&self, i: usize, pid: u32, peers: Value) {
        std::fs::write(self.path(&format!("peers-{i}.json")), peers.to_string()).unwrap();
        signal(pid, Signal::SIGHUP);
    }

    fn status(&self, i: usize) -> Option<Value> {
        let text = std::fs::read_to_string(self.path(&format!("status-{i}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }
}

struct Probes {
    /// Each side's public key.
    keys: Vec<String>,
    pids: Vec<u32>,
}

/// One peer as the probe's peers file holds it.
fn peer_json(key: &str, endpoint: &str, subnet: &str) -> Value {
    serde_json::json!({ "public_key": key, "endpoint": endpoint, "subnet": subnet })
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).expect("kill");
}

fn peer_stats(status: &Value) -> &Vec<Value> {
    status["peers"].as_array().expect("peers")
}

#[test]
fn tunnel_between_two_namespaces_is_encrypted_and_follows_the_peer_list() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (network namespaces, TUN devices)");
    assert!(Path::new("/dev/net/tun").exists(), "this test needs /dev/net/tun (the tun kernel module)");
    let mut bed = Testbed::new('t');

    // Capture everything on the link between the namespaces from before the first handshake.
    let capture = bed.path("link.pcap");
    bed.spawn(0, &["tcpdump", "-i", &bed.veth[0].clone(), "-n", "--immediate-mode", "-U", "-w", capture.to_str().unwrap()], "tcpdump.log");
    wait_for("tcpdump to listen", Duration::from_secs(10), || bed.log("tcpdump.log").contains("listening on").then_some(()));
    let tcpdump = bed.children.len() - 1;

    let Probes { keys, pids: probes } = bed.start_probes([PORT, PORT]);

    // Both sides start a handshake at once; each must see it completed.
    for i in 0..2 {
        wait_for(&format!("a handshake on side {i}"), Duration::from_secs(10), || {
            let s = bed.status(i)?;
            let done = !peer_stats(&s).is_empty() && !peer_stats(&s)[0]["last_handshake"].is_null();
            done.then_some(())
        });
    }
    let routes = run(&["ip", "-n", &bed.ns[0], "route", "show", "dev", "corral0"]);
    assert!(routes.contains(SUBNET_B), "route to the peer's subnet: {routes}");

    // 1. ICMP and TCP across the tunnel, both ways.
    assert!(bed.ping(0, TUNNEL_B), "ping A -> B through the tunnel failed\nA: {}\nB: {}", bed.log("probe-0.log"), bed.log("probe-1.log"));
    assert!(bed.ping(1, TUNNEL_A), "ping B -> A through the tunnel failed");

    let payload = format!("corral-overlay-secret-request-{}", std::process::id());
    let reply = format!("corral-overlay-secret-reply-{}", std::process::id());
    let listener = bed.on_thread_in(1, move || TcpListener::bind((TUNNEL_B, 7000)).expect("bind in B")).join().unwrap();
    let reply_b = reply.clone();
    let server = std::thread::spawn(move || {
        let (mut conn, from) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).expect("read request");
        conn.write_all(reply_b.as_bytes()).expect("write reply");
        (got, from)
    });
    let payload_a = payload.clone();
    let answer = bed
        .on_thread_in(0, move || {
            let mut conn =
                TcpStream::connect_timeout(&format!("{TUNNEL_B}:7000").parse().unwrap(), Duration::from_secs(5)).expect("connect A -> B through the tunnel");
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            conn.write_all(payload_a.as_bytes()).unwrap();
            conn.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).expect("read reply");
            answer
        })
        .join()
        .unwrap();
    let (got, from) = server.join().unwrap();
    assert_eq!(got, payload, "what B received over TCP");
    assert_eq!(answer, reply, "what A received back");
    assert_eq!(from.ip().to_string(), TUNNEL_A, "B sees A's tunnel address as the source");

    // A control: the same kind of text sent in the clear over the link must show in the capture,
    // or the capture proves nothing.
    let control = format!("corral-overlay-cleartext-control-{}", std::process::id());
    let control_a = control.clone();
    bed.on_thread_in(0, move || {
        let s = UdpSocket::bind((LINK_A, 0)).unwrap();
        s.send_to(control_a.as_bytes(), (LINK_B, 9)).unwrap();
    })
    .join()
    .unwrap();

    // 3. The stats: a handshake and bytes each way, on both sides.
    for i in 0..2 {
        let s = wait_for(&format!("bytes both ways on side {i}"), Duration::from_secs(5), || {
            let s = bed.status(i)?;
            let p = &peer_stats(&s)[0];
            (p["rx_bytes"].as_u64()? > 0 && p["tx_bytes"].as_u64()? > 0).then(|| p.clone())
        });
        assert_eq!(s["public_key"], keys[1 - i].as_str(), "side {i}'s peer is the other side");
        assert!(!s["last_handshake"].is_null(), "side {i}: {s}");
        // ping (3 × 84 bytes each way) and the TCP exchange went through.
        assert!(s["rx_bytes"].as_u64().unwrap() >= 252, "side {i}: {s}");
        assert!(s["tx_bytes"].as_u64().unwrap() >= 252, "side {i}: {s}");
    }

    // 2. No clear text on the link, while the tunnel's UDP was there. tcpdump writes packets in
    // the order they crossed, so once the control (sent last) is in the file, all is.
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    wait_for("the control packet in the capture", Duration::from_secs(5), || contains(&std::fs::read(&capture).ok()?, &control).then_some(()));
    signal(bed.children[tcpdump].id(), Signal::SIGINT);
    let tcpdump_child = &mut bed.children[tcpdump];
    wait_for("tcpdump to stop", Duration::from_secs(5), || tcpdump_child.try_wait().unwrap());
    let captured = std::fs::read(&capture).unwrap();
    let contains = |needle: &str| contains(&captured, needle);
    let summary = run(&["tcpdump", "-r", capture.to_str().unwrap(), "-n"]);
    assert!(contains(&control), "the capture misses the clear-text control packet:\n{summary}{}", bed.log("tcpdump.log"));
    assert!(!contains(&payload), "the request crossed the link in clear text:\n{summary}");
    assert!(!contains(&reply), "the reply crossed the link in clear text:\n{summary}");
    let udp = run(&["tcpdump", "-r", capture.to_str().unwrap(), "-n", "udp", "port", &PORT.to_string()]);
    let datagrams = udp.lines().count();
    assert!(datagrams >= 10, "expected the tunnel's UDP on the link, saw {datagrams}:\n{udp}");

    // A peer may only send from its own subnet (WireGuard's cryptokey routing): B sends from an
    // address outside 10.42.2.0/24 through its tunnel; A decrypts it and must not deliver it.
    // A's device counts every packet the overlay writes to it, so its count must not move.
    run(&["ip", "-n", &bed.ns[1], "addr", "add", "10.42.9.9/32", "dev", "lo"]);
    let delivered_before = bed.delivered(0);
    let b_sent_before = bed.status(1).map(|s| peer_stats(&s)[0]["tx_bytes"].as_u64().unwrap()).unwrap();
    let spoofed =
        bed.in_ns(1, &["busybox", "ping", "-c", "2", "-W", "1", "-I", "10.42.9.9", TUNNEL_A]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(!spoofed.success(), "A answered a ping from outside B's subnet");
    wait_for("B to count what it sent", Duration::from_secs(5), || {
        let s = bed.status(1)?;
        (peer_stats(&s)[0]["tx_bytes"].as_u64()? >= b_sent_before + 2 * 84).then_some(())
    });
    assert_eq!(bed.delivered(0), delivered_before, "A delivered packets from outside B's subnet");
    // The same count does move for B's own addresses.
    assert!(bed.ping(1, TUNNEL_A), "ping B -> A failed");
    assert!(bed.delivered(0) >= delivered_before + 3, "A's device count did not move for a good ping");

    // 4. Removing the peer removes its route: B is unreachable from A.
    let b_from_a = peer_json(&keys[1], &format!("{LINK_B}:{PORT}"), SUBNET_B);
    bed.set_peers(0, probes[0], serde_json::json!([]));
    wait_for("side 0 to drop its peer", Duration::from_secs(5), || bed.status(0).filter(|s| peer_stats(s).is_empty()));
    let routes = run(&["ip", "-n", &bed.ns[0], "route", "show"]);
    assert!(!routes.contains(SUBNET_B), "route to the removed peer is still there: {routes}");
    assert!(!bed.ping(0, TUNNEL_B), "ping A -> B worked with the peer removed");

    // Putting it back brings the route and a fresh handshake back.
    bed.set_peers(0, probes[0], serde_json::json!([b_from_a]));
    wait_for("side 0's peer back with a handshake", Duration::from_secs(10), || {
        let s = bed.status(0)?;
        let back = peer_stats(&s).len() == 1 && !peer_stats(&s)[0]["last_handshake"].is_null();
        back.then_some(())
    });
    assert!(bed.ping(0, TUNNEL_B), "ping A -> B failed after the peer was put back");

    // A list the tunnel cannot route (B's subnet over A's own) is refused and changes nothing.
    let over_own = peer_json(&keys[1], &format!("{LINK_B}:{PORT}"), "10.42.0.0/23");
    bed.set_peers(0, probes[0], serde_json::json!([over_own]));
    let error = wait_for("side 0 to refuse the list", Duration::from_secs(5), || bed.status(0).and_then(|s| s["error"].as_str().map(str::to_owned)));
    assert!(error.contains("overlaps this host's subnet 10.42.1.0/24"), "{error}");
    let routes = run(&["ip", "-n", &bed.ns[0], "route", "show"]);
    assert!(routes.contains(SUBNET_B) && !routes.contains("10.42.0.0/23"), "routes changed: {routes}");
    assert!(bed.ping(0, TUNNEL_B), "ping A -> B failed after a refused peer list");

    // Stopping a probe takes its device (and so its routes) away.
    signal(probes[0], Signal::SIGTERM);
    let probe_a = bed.children.iter_mut().find(|c| c.id() == probes[0]).unwrap();
    let exit = wait_for("probe A to stop", Duration::from_secs(5), || probe_a.try_wait().unwrap());
    assert!(exit.success(), "probe A exited with {exit}: {}", bed.log("probe-0.log"));
    let gone = bed.in_ns(0, &["ip", "link", "show", "corral0"]).stderr(Stdio::null()).stdout(Stdio::null()).status().unwrap();
    assert!(!gone.success(), "corral0 is still there after the probe stopped");
}

/// A second tunnel on the same device name or UDP port is refused with what to check, and the
/// first keeps running.
#[test]
fn a_second_tunnel_on_the_same_device_or_port_says_why_it_cannot_start() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (network namespaces, TUN devices)");
    let mut bed = Testbed::new('d');
    let key = bed.path("host.key");
    let key = key.to_str().unwrap().to_owned();
    let status = bed.path("status-0.json");
    let first = ["run", "--key", &key, "--local-subnet", SUBNET_A, "--status", status.to_str().unwrap()];
    let mut args = vec![PROBE];
    args.extend(first);
    bed.spawn(0, &args, "probe-0.log");
    wait_for("the first tunnel up", Duration::from_secs(10), || bed.status(0));

    let second = |extra: &[&str]| {
        let mut args = vec![PROBE, "run", "--key", &key, "--local-subnet", SUBNET_A];
        args.extend(extra);
        let out = bed.in_ns(0, &args).output().unwrap();
        assert!(!out.status.success(), "a second tunnel started with {extra:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = second(&["--port", "51821"]);
    assert!(err.contains("cannot create TUN device corral0") && err.contains("is another overlay running"), "{err}");
    let err = second(&["--device", "corral1"]);
    assert!(err.contains("cannot bind the tunnel's UDP port 0.0.0.0:51820"), "{err}");

    let link = run(&["ip", "-n", &bed.ns[0], "addr", "show", "corral0"]);
    assert!(link.contains(&format!("{TUNNEL_A}/32")), "the first tunnel's device: {link}");
}

/// A peer that moved is followed once `set_peers` gives its new endpoint: here each side starts
/// with the other at a port nobody listens on, so no handshake can happen (nor can either side
/// learn the other's address from its packets) until A is told where B really is.
#[test]
fn a_moved_peer_is_reached_at_its_new_endpoint() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (network namespaces, TUN devices)");
    let mut bed = Testbed::new('m');
    let Probes { keys, pids } = bed.start_probes([PORT + 1, PORT + 1]);
    wait_for("both tunnels up", Duration::from_secs(10), || bed.status(0).and(bed.status(1)));
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..2 {
        let s = bed.status(i).unwrap();
        assert!(peer_stats(&s)[0]["last_handshake"].is_null(), "side {i} shook hands with nobody listening: {s}");
    }

    let started = Instant::now();
    let moved = format!("{LINK_B}:{PORT}");
    bed.set_peers(0, pids[0], serde_json::json!([peer_json(&keys[1], &moved, SUBNET_B)]));
    for i in 0..2 {
        wait_for(&format!("a handshake on side {i}"), Duration::from_secs(3), || {
            let s = bed.status(i)?;
            (!peer_stats(&s)[0]["last_handshake"].is_null()).then_some(())
        });
    }
    // Well before WireGuard's 5 s handshake retry: the move started a handshake at once.
    assert!(started.elapsed() < Duration::from_secs(3), "handshake took {:?}", started.elapsed());
    let a = bed.status(0).unwrap();
    assert_eq!(peer_stats(&a)[0]["endpoint"], moved.as_str(), "A sends to B's new endpoint");
    // B learnt A's real address from A's authenticated packets, as WireGuard does.
    let b = bed.status(1).unwrap();
    assert_eq!(peer_stats(&b)[0]["endpoint"], format!("{LINK_A}:{PORT}").as_str(), "B follows A's source");
    assert!(bed.ping(0, TUNNEL_B), "ping A -> B failed after the move");
    assert!(bed.ping(1, TUNNEL_A), "ping B -> A failed after the move");
}

/// `len` bytes that differ by `seed`, from a xorshift generator: data no step can pass along by
/// accident (zeros would survive a misplaced segment).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bulk TCP both ways at once. The packet path batches everything (the device splits the
/// kernel's 64 KB TCP bursts and takes coalesced segments back, UDP sends and receives carry
/// runs of datagrams): a segment lost, repeated, misordered or with a wrong checksum in any of
/// these steps shows here as different bytes or a stalled stream. And the receiving device must
/// have been given the segments coalesced, or the batching this path exists for is not there.
#[test]
fn bulk_transfers_both_ways_arrive_whole_and_coalesced() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (network namespaces, TUN devices)");
    const BYTES: usize = 16 << 20;
    const PORT_TCP: u16 = 7001;
    let mut bed = Testbed::new('b');
    bed.start_probes([PORT, PORT]);
    for i in 0..2 {
        wait_for(&format!("a handshake on side {i}"), Duration::from_secs(10), || {
            let s = bed.status(i)?;
            (!peer_stats(&s).is_empty() && !peer_stats(&s)[0]["last_handshake"].is_null()).then_some(())
        });
    }
    let delivered_before = bed.delivered(1);
    let tunnels = [TUNNEL_A, TUNNEL_B];
    let servers: Vec<_> = (0..2)
        .map(|i| {
            let listener = bed.on_thread_in(i, move || TcpListener::bind((tunnels[i], PORT_TCP)).expect("bind")).join().unwrap();
            std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().expect("accept");
                conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut got = Vec::with_capacity(BYTES);
                conn.read_to_end(&mut got).expect("read the stream");
                got
            })
        })
        .collect();
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let to = format!("{}:{PORT_TCP}", tunnels[1 - i]);
            bed.on_thread_in(i, move || {
                let mut conn = TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(5)).expect("connect through the tunnel");
                conn.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                conn.write_all(&pattern(i as u64, BYTES)).expect("write the stream");
                conn.shutdown(std::net::Shutdown::Write).unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a sender failed");
    }
    for (i, server) in servers.into_iter().enumerate() {
        let got = server.join().expect("a receiver failed");
        let sender = 1 - i;
        assert_eq!(got.len(), BYTES, "bytes from side {sender} to side {i}");
        let first_bad = got.iter().zip(pattern(sender as u64, BYTES)).position(|(a, b)| *a != b);
        assert_eq!(first_bad, None, "the stream from side {sender} to side {i} differs from what was sent");
    }
    let elapsed = started.elapsed();

    // 16 MiB in 1,380-byte segments (the tunnel's MSS) is over 12,000 packets, plus the other
    // stream's acknowledgements; written one by one, B's device would count them all.
    let segments = (BYTES / 1380) as u64;
    let delivered = bed.delivered(1) - delivered_before;
    eprintln!("16 MiB each way in {elapsed:?}; B's device took {delivered} writes for at least {segments} segments");
    assert!(delivered < segments / 2, "B's device took {delivered} writes for {segments} segments: the packets were not coalesced");
}
