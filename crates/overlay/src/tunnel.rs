//! The running tunnel: the TUN device, the UDP socket, one WireGuard state machine per peer,
//! and the three loops that move packets between them.
//!
//! Hot loops reuse one buffer pair each and take a peer's lock only around the boringtun call,
//! never across an `await`. The peer table is immutable and swapped whole on `set_peers`; each
//! loop keeps its own `Arc` of it and picks up a new one when the watch channel says so, so a
//! packet costs no lock on the table.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519;
use ipnet::Ipv4Net;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tun_rs::AsyncDevice;

use crate::config::{plan_peers, validate_peers, OverlayConfig, Peer, MTU, PERSISTENT_KEEPALIVE_SECS, TIMER_TICK};
use crate::error::{tun_hint, OverlayError, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::routes;

/// Handshake initiations per second before the shared rate limiter answers with cookies
/// (boringtun's own default).
const HANDSHAKE_RATE_LIMIT: u64 = 10;
/// Room for any datagram or TUN read (the device MTU is far below), plus WireGuard's overhead.
const BUF_LEN: usize = 65536;
/// Back-off after an I/O error on the device, so a broken device does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One peer's counters, as WireGuard keeps them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerStats {
    pub public_key: PublicKey,
    /// Where packets to it go now (its last authenticated source, or the configured endpoint).
    pub endpoint: SocketAddr,
    pub subnet: Ipv4Net,
    /// Time since the last completed handshake; `None` until one completes.
    pub last_handshake: Option<Duration>,
    /// Bytes of IP packets received from it through the tunnel (decrypted).
    pub rx_bytes: u64,
    /// Bytes of IP packets sent to it through the tunnel (before encryption).
    pub tx_bytes: u64,
}

struct PeerState {
    peer: Peer,
    /// The low 24 bits of this side's session indexes for the peer (boringtun shifts it by 8).
    index: u32,
    live: Mutex<Live>,
}

struct Live {
    tunn: Tunn,
    endpoint: SocketAddr,
}

impl PeerState {
    fn lock(&self) -> MutexGuard<'_, Live> {
        // A panic inside boringtun while locked leaves nothing half-written that matters here.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The peers as the loops see them. Lookups scan: a /16 holds at most 256 /24 hosts, and a scan
/// of a few dozen entries is cheaper than hashing for the sizes environments have.
#[derive(Default)]
struct PeerTable {
    peers: Vec<Arc<PeerState>>,
}

impl PeerTable {
    fn by_destination(&self, ip: Ipv4Addr) -> Option<&Arc<PeerState>> {
        self.peers.iter().find(|p| p.peer.subnet.contains(&ip))
    }
    fn by_index(&self, receiver_idx: u32) -> Option<&Arc<PeerState>> {
        let index = receiver_idx >> 8;
        self.peers.iter().find(|p| p.index == index)
    }
    fn by_key(&self, key: &[u8; 32]) -> Option<&Arc<PeerState>> {
        self.peers.iter().find(|p| p.peer.public_key.0 == *key)
    }
}

struct Shared {
    config: OverlayConfig,
    secret: x25519::StaticSecret,
    public: x25519::PublicKey,
    tun: AsyncDevice,
    socket: UdpSocket,
    /// One limiter for all peers: it checks a handshake's MAC before the costly key exchange that
    /// tells which peer sent it, and answers floods with cookies.
    limiter: Arc<RateLimiter>,
    next_index: AtomicU32,
}

impl Shared {
    fn new_peer(&self, peer: Peer) -> Arc<PeerState> {
        // 24 bits of index space; wrapping after 16 million peer changes is harmless since old
        // peers are long gone.
        let index = self.next_index.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let tunn = Tunn::new(
            self.secret.clone(),
            x25519::PublicKey::from(peer.public_key.0),
            None,
            Some(PERSISTENT_KEEPALIVE_SECS),
            index,
            Some(self.limiter.clone()),
        );
        Arc::new(PeerState { index, live: Mutex::new(Live { tunn, endpoint: peer.endpoint }), peer })
    }

    /// Starts a handshake now rather than at the first packet or keepalive, so a new tunnel's
    /// state is known at once.
    /// `restart` begins a new handshake even if one is under way (to a peer's old endpoint).
    async fn initiate(&self, peer: &PeerState, buf: &mut [u8], restart: bool) {
        let base = buf.as_ptr() as usize;
        let (range, endpoint) = {
            let mut live = peer.lock();
            let endpoint = live.endpoint;
            match live.tunn.format_handshake_initiation(buf, restart) {
                TunnResult::WriteToNetwork(out) => (span(base, out), endpoint),
                _ => return,
            }
        };
        self.send_udp(&buf[range.0..range.1], endpoint).await;
    }

    async fn send_udp(&self, packet: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(packet, to).await {
            // The peer's host may be unreachable for a while; WireGuard's timers retry.
            tracing::debug!(%to, error = %e, "tunnel: send failed");
        }
    }
}

/// A running tunnel. Dropping it stops the loops and closes the device, which takes its address
/// and routes with it.
pub struct Overlay {
    shared: Arc<Shared>,
    table: watch::Sender<Arc<PeerTable>>,
    /// The peer list as last set; also serializes `set_peers` calls.
    peers: tokio::sync::Mutex<Vec<Peer>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Overlay {
    /// Creates the TUN device `config.device` with the tunnel address, routes each peer's
    /// subnet through it, binds UDP `listen_port`, starts a handshake with each peer and runs
    /// the packet loops until `shutdown` fires (or the sender is dropped).
    pub async fn start(config: OverlayConfig, keypair: &KeyPair, peers: Vec<Peer>, shutdown: broadcast::Receiver<()>) -> Result<Overlay> {
        config.validate()?;
        validate_peers(&config, &keypair.public_key(), &peers)?;
        let address = config.tunnel_address();
        let tun = tun_rs::DeviceBuilder::new().name(&config.device).ipv4(address, 32u8, None).mtu(MTU).build_async().map_err(|source| OverlayError::Tun {
            device: config.device.clone(),
            hint: tun_hint(&source),
            source,
        })?;
        let bind: SocketAddr = (Ipv4Addr::UNSPECIFIED, config.listen_port).into();
        let socket = UdpSocket::bind(bind).await.map_err(|source| OverlayError::Bind { addr: bind, source })?;
        grow_buffers(&socket);
        for p in &peers {
            routes::add(&config.device, p.subnet, address).await?;
        }
        let secret = keypair.secret().clone();
        let public = x25519::PublicKey::from(&secret);
        let shared = Arc::new(Shared {
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            config,
            secret,
            public,
            tun,
            socket,
            next_index: AtomicU32::new(rand::random::<u32>()),
        });
        let table = PeerTable { peers: peers.iter().map(|p| shared.new_peer(p.clone())).collect() };
        let mut buf = vec![0u8; 256];
        for p in &table.peers {
            shared.initiate(p, &mut buf, false).await;
        }
        let (table_tx, table_rx) = watch::channel(Arc::new(table));
        let mut tasks = vec![
            tokio::spawn(tun_to_udp(shared.clone(), table_rx.clone())),
            tokio::spawn(udp_to_tun(shared.clone(), table_rx.clone())),
            tokio::spawn(timers(shared.clone(), table_rx)),
        ];
        // The packet loops hold nothing to clean up, so shutdown aborts them from here rather
        // than each polling a shutdown future beside every packet.
        let loops: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let mut shutdown = shutdown;
        tasks.push(tokio::spawn(async move {
            let _ = shutdown.recv().await;
            for l in loops {
                l.abort();
            }
        }));
        tracing::info!(
            device = %shared.config.device,
            %address,
            port = shared.config.listen_port,
            peers = peers.len(),
            "overlay tunnel up"
        );
        Ok(Overlay { shared, table: table_tx, peers: tokio::sync::Mutex::new(peers), tasks })
    }

    /// This host's tunnel address (the first address of its subnet).
    pub fn address(&self) -> Ipv4Addr {
        self.shared.config.tunnel_address()
    }

    /// Makes the peer list `peers`: a removed peer's route and tunnel go, a new one's come (with
    /// a handshake started at once), a kept peer whose endpoint changed is sent to there from now
    /// on, keeping its session. A list that fails the checks, or a new route the kernel refuses,
    /// changes nothing.
    pub async fn set_peers(&self, peers: Vec<Peer>) -> Result<()> {
        let mut current = self.peers.lock().await;
        let config = &self.shared.config;
        validate_peers(config, &PublicKey(self.shared.public.to_bytes()), &peers)?;
        let plan = plan_peers(&current, &peers);
        let address = config.tunnel_address();

        for (i, p) in plan.add.iter().enumerate() {
            if let Err(e) = routes::add(&config.device, p.subnet, address).await {
                for added in &plan.add[..i] {
                    let _ = routes::remove(&config.device, added.subnet).await;
                }
                return Err(e);
            }
        }

        let old = self.table.borrow().clone();
        let mut table = PeerTable::default();
        // Peers to start a handshake with now: new ones, and moved ones (a handshake already
        // under way went to the old endpoint and would only be retried after 5 s).
        let mut handshake = Vec::new();
        for p in &peers {
            match old.peers.iter().find(|s| s.peer.public_key == p.public_key && s.peer.subnet == p.subnet) {
                Some(kept) => {
                    if let Some((_, endpoint)) = plan.retarget.iter().find(|(k, _)| *k == p.public_key) {
                        kept.lock().endpoint = *endpoint;
                        handshake.push((kept.clone(), true));
                    }
                    table.peers.push(kept.clone());
                }
                None => {
                    let state = self.shared.new_peer(p.clone());
                    handshake.push((state.clone(), false));
                    table.peers.push(state);
                }
            }
        }
        self.table.send_replace(Arc::new(table));

        for p in &plan.remove {
            // A new peer may have taken this subnet over; its route must stay.
            if peers.iter().any(|n| n.subnet == p.subnet) {
                continue;
            }
            if let Err(e) = routes::remove(&config.device, p.subnet).await {
                tracing::warn!(subnet = %p.subnet, error = %e, "overlay: could not remove a peer's route");
            }
        }
        let mut buf = vec![0u8; 256];
        for (state, restart) in &handshake {
            self.shared.initiate(state, &mut buf, *restart).await;
        }
        tracing::info!(added = plan.add.len(), removed = plan.remove.len(), retargeted = plan.retarget.len(), "overlay peers changed");
        *current = peers;
        Ok(())
    }

    /// Each peer's tunnel state, in peer-list order.
    pub fn stats(&self) -> Vec<PeerStats> {
        let table = self.table.borrow().clone();
        table
            .peers
            .iter()
            .map(|p| {
                let live = p.lock();
                let (last_handshake, tx, rx, _, _) = live.tunn.stats();
                PeerStats {
                    public_key: p.peer.public_key,
                    endpoint: live.endpoint,
                    subnet: p.peer.subnet,
                    last_handshake,
                    rx_bytes: rx as u64,
                    tx_bytes: tx as u64,
                }
            })
            .collect()
    }

    /// Waits until the loops have ended (after `shutdown` fired).
    pub async fn closed(&mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// Socket buffer size asked for. A receiver a little slower than its sender drops whole
/// datagrams once the kernel's buffer (about 200 KB by default) is full, and TCP inside the tunnel
/// takes each drop as congestion.
const SOCKET_BUFFER: usize = 4 << 20;

/// Grows the socket's buffers past `net.core.rmem_max`/`wmem_max` when the process may (root,
/// CAP_NET_ADMIN), else as far as those allow. A smaller buffer only costs speed.
fn grow_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

/// Keeps `table` current without a lock per packet: the watch channel's version check is one
/// atomic load.
fn refresh(table: &mut Arc<PeerTable>, rx: &mut watch::Receiver<Arc<PeerTable>>) {
    if rx.has_changed().unwrap_or(false) {
        *table = rx.borrow_and_update().clone();
    }
}

/// Where a slice that boringtun returned lies in the buffer it was given (`base`: the buffer's
/// address), so the buffer can be
/// used again once the peer's lock is released.
fn span(base: usize, out: &[u8]) -> (usize, usize) {
    let start = out.as_ptr() as usize - base;
    (start, start + out.len())
}

/// Packets the kernel routed into the device: encrypt for the peer whose subnet holds the
/// destination, send over UDP.
async fn tun_to_udp(shared: Arc<Shared>, mut table_rx: watch::Receiver<Arc<PeerTable>>) {
    let mut src = vec![0u8; BUF_LEN];
    let mut dst = vec![0u8; BUF_LEN + 32];
    let base = dst.as_ptr() as usize;
    let mut table = table_rx.borrow_and_update().clone();
    loop {
        let n = match shared.tun.recv(&mut src).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "overlay: reading the tunnel device failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        refresh(&mut table, &mut table_rx);
        let packet = &src[..n];
        let Some(IpAddr::V4(to)) = Tunn::dst_address(packet) else {
            continue;
        };
        let Some(peer) = table.by_destination(to) else {
            continue;
        };
        let (range, endpoint) = {
            let mut live = peer.lock();
            let endpoint = live.endpoint;
            match live.tunn.encapsulate(packet, &mut dst) {
                TunnResult::WriteToNetwork(out) => (span(base, out), endpoint),
                TunnResult::Err(e) => {
                    tracing::debug!(error = ?e, "overlay: encapsulate failed");
                    continue;
                }
                _ => continue,
            }
        };
        shared.send_udp(&dst[range.0..range.1], endpoint).await;
    }
}

enum Received {
    Nothing,
    /// An answer for the sender (handshake response, keepalive, cookie); queued packets may
    /// follow.
    Network(usize, usize),
    Tunnel(usize, usize),
}

/// Datagrams from peers: find the peer (by session index, or by the key inside a handshake),
/// decrypt, and write to the device what the peer may send (sources in its subnet only).
async fn udp_to_tun(shared: Arc<Shared>, mut table_rx: watch::Receiver<Arc<PeerTable>>) {
    let mut src = vec![0u8; BUF_LEN];
    let mut dst = vec![0u8; BUF_LEN];
    let base = dst.as_ptr() as usize;
    let mut table = table_rx.borrow_and_update().clone();
    loop {
        let (n, from) = match shared.socket.recv_from(&mut src).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "overlay: receive failed");
                continue;
            }
        };
        refresh(&mut table, &mut table_rx);
        let datagram = &src[..n];
        let peer = match Tunn::parse_incoming_packet(datagram) {
            Ok(Packet::HandshakeInit(init)) => {
                match shared.limiter.verify_packet(Some(from.ip()), datagram, &mut dst) {
                    Ok(_) => {}
                    Err(TunnResult::WriteToNetwork(cookie)) => {
                        let range = span(base, cookie);
                        shared.send_udp(&dst[range.0..range.1], from).await;
                        continue;
                    }
                    Err(_) => continue,
                }
                parse_handshake_anon(&shared.secret, &shared.public, &init).ok().and_then(|half| table.by_key(&half.peer_static_public))
            }
            Ok(Packet::HandshakeResponse(p)) => table.by_index(p.receiver_idx),
            Ok(Packet::PacketCookieReply(p)) => table.by_index(p.receiver_idx),
            Ok(Packet::PacketData(p)) => table.by_index(p.receiver_idx),
            Err(_) => None,
        };
        let Some(peer) = peer else {
            tracing::trace!(%from, "overlay: datagram from no known peer");
            continue;
        };
        let received = {
            let mut live = peer.lock();
            match live.tunn.decapsulate(Some(from.ip()), datagram, &mut dst) {
                TunnResult::WriteToNetwork(out) => {
                    live.endpoint = from;
                    let (a, b) = span(base, out);
                    Received::Network(a, b)
                }
                TunnResult::WriteToTunnelV4(out, source) => {
                    if peer.peer.subnet.contains(&source) {
                        live.endpoint = from;
                        let (a, b) = span(base, out);
                        Received::Tunnel(a, b)
                    } else {
                        tracing::debug!(%source, subnet = %peer.peer.subnet, "overlay: dropped a packet from outside the peer's subnet");
                        Received::Nothing
                    }
                }
                TunnResult::WriteToTunnelV6(..) | TunnResult::Done => Received::Nothing,
                TunnResult::Err(e) => {
                    tracing::debug!(%from, error = ?e, "overlay: decapsulate failed");
                    Received::Nothing
                }
            }
        };
        match received {
            Received::Nothing => {}
            Received::Tunnel(a, b) => {
                if let Err(e) = shared.tun.send(&dst[a..b]).await {
                    tracing::debug!(error = %e, "overlay: writing to the tunnel device failed");
                }
            }
            Received::Network(a, b) => {
                shared.send_udp(&dst[a..b], from).await;
                // A completed handshake releases the packets queued while it ran.
                loop {
                    let range = {
                        let mut live = peer.lock();
                        match live.tunn.decapsulate(None, &[], &mut dst) {
                            TunnResult::WriteToNetwork(out) => span(base, out),
                            _ => break,
                        }
                    };
                    shared.send_udp(&dst[range.0..range.1], from).await;
                }
            }
        }
    }
}

/// WireGuard's timers for every peer: handshake retries and rekeys, keepalives, session expiry.
async fn timers(shared: Arc<Shared>, mut table_rx: watch::Receiver<Arc<PeerTable>>) {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    let base = buf.as_ptr() as usize;
    let mut table = table_rx.borrow_and_update().clone();
    let mut limiter_reset = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if limiter_reset.elapsed() >= Duration::from_secs(1) {
            // The shared limiter counts handshakes per second; with it shared, no Tunn resets it.
            shared.limiter.reset_count();
            limiter_reset = tokio::time::Instant::now();
        }
        refresh(&mut table, &mut table_rx);
        for peer in &table.peers {
            let (range, endpoint) = {
                let mut live = peer.lock();
                let endpoint = live.endpoint;
                match live.tunn.update_timers(&mut buf) {
                    TunnResult::WriteToNetwork(out) => (span(base, out), endpoint),
                    TunnResult::Err(e) => {
                        tracing::trace!(peer = %peer.peer.public_key, error = ?e, "overlay: timer");
                        continue;
                    }
                    _ => continue,
                }
            };
            shared.send_udp(&buf[range.0..range.1], endpoint).await;
        }
    }
}
