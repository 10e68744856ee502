//! The running tunnel: the TUN device, the UDP socket, one WireGuard state machine per peer,
//! and the three loops that move packets between them.
//!
//! The packet loops work in batches, so that a system call carries up to 64 KB rather than one
//! packet: the device is opened with offloads (virtio-net headers), so the kernel hands over a
//! whole TCP burst in one read and takes coalesced segments in one write; the socket sends runs
//! of equal datagrams with UDP GSO and receives with GRO and `recvmmsg` (`quinn-udp`). Each
//! loop reuses its buffers (no allocation per packet) and takes a peer's lock only around one
//! boringtun call, never across an `await`. The peer table is immutable and swapped whole on
//! `set_peers`; each loop keeps its own `Arc` of it and picks up a new one when the watch
//! channel says so, so a packet costs no lock on the table.

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519;
use ipnet::Ipv4Net;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tun_rs::{AsyncDevice, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use crate::batch::{GsoBatcher, Run};
use crate::config::{plan_peers, validate_peers, OverlayConfig, Peer, MTU, PERSISTENT_KEEPALIVE_SECS, TIMER_TICK};
use crate::error::{tun_hint, OverlayError, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::routes;

/// Handshake initiations per second before the shared rate limiter answers with cookies
/// (boringtun's own default).
const HANDSHAKE_RATE_LIMIT: u64 = 10;
/// Room for one IP packet of the device (its MTU is 1420) or one datagram of a peer's.
const PACKET_LEN: usize = 2048;
/// WireGuard's data header and tag around each packet.
const DATA_OVERHEAD: usize = 32;
/// One read from the device: a virtio-net header and up to 64 KB of segments to split.
const TUN_READ_LEN: usize = VIRTIO_NET_HDR_LEN + 65535;
/// Buffers per `recvmmsg`; each holds one GRO batch of datagrams (up to 64 KB).
const UDP_READS: usize = 8;
const UDP_READ_LEN: usize = 65536;
/// Decrypted packets written to the device per batch. Each may become the head a flow's later
/// segments are coalesced into, so each has room for 64 KB: fewer bound the memory that
/// traffic touches, and 64 still coalesce a 64 KB burst whole.
const TUN_WRITES: usize = 64;
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
    /// The socket's batched I/O (GSO, GRO, `recvmmsg`) and what this kernel supports of it.
    udp: UdpSocketState,
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

    /// Sends `run` of `buffer` in one system call (the kernel segments it). Errors other than
    /// a full buffer are logged by quinn-udp and the datagrams dropped, as a lossy link would;
    /// a kernel or device that refuses GSO turns it off for later sends.
    async fn send_run(&self, buffer: &[u8], run: Run) {
        let transmit = Transmit {
            destination: run.to,
            ecn: None,
            contents: &buffer[run.start..run.end],
            segment_size: run.segmented().then_some(run.segment),
            src_ip: None,
        };
        let sent = self.socket.async_io(Interest::WRITABLE, || self.udp.send((&self.socket).into(), &transmit)).await;
        if let Err(e) = sent {
            tracing::debug!(to = %run.to, error = %e, "tunnel: send failed");
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
        let tun =
            open_device(&config.device, address).map_err(|source| OverlayError::Tun { device: config.device.clone(), hint: tun_hint(&source), source })?;
        let bind: SocketAddr = (Ipv4Addr::UNSPECIFIED, config.listen_port).into();
        let socket = UdpSocket::bind(bind).await.map_err(|source| OverlayError::Bind { addr: bind, source })?;
        let udp = UdpSocketState::new((&socket).into()).map_err(|source| OverlayError::Bind { addr: bind, source })?;
        allow_fragments(&socket);
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
            udp,
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

/// The TUN device, with offloads where the kernel has them: reads then carry whole TCP bursts
/// (up to 64 KB, split here) and writes take coalesced segments. Without them (old kernels,
/// some sandboxes) the device works a packet at a time.
fn open_device(name: &str, address: Ipv4Addr) -> std::io::Result<AsyncDevice> {
    let build = |offload: bool| tun_rs::DeviceBuilder::new().name(name).ipv4(address, 32u8, None).mtu(MTU).offload(offload).build_async();
    build(true).or_else(|e| {
        // Only a refused offload setting is worth a second try; a busy name or missing rights
        // would fail the same way.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY | libc::EOPNOTSUPP)) {
            return Err(e);
        }
        tracing::info!(device = name, error = %e, "overlay: TUN offloads unavailable, reading one packet at a time");
        build(false)
    })
}

/// quinn-udp sets "don't fragment" on the socket (QUIC probes the path MTU itself). A tunnel
/// cannot: a full-size packet inside it makes a 1,480-byte datagram, which a link with a
/// smaller MTU (some clouds, VPNs) must fragment rather than drop. So fragmenting is allowed
/// again, as kernel WireGuard does; GSO still applies where segments fit the link.
fn allow_fragments(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let value: libc::c_int = libc::IP_PMTUDISC_DONT;
    // SAFETY: a valid socket descriptor and an int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "overlay: could not allow fragmentation on the tunnel socket");
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

/// Packets the kernel routed into the device: encrypt each for the peer whose subnet holds its
/// destination, and send runs of them over UDP.
async fn tun_to_udp(shared: Arc<Shared>, mut table_rx: watch::Receiver<Arc<PeerTable>>) {
    let mut read = vec![0u8; TUN_READ_LEN];
    let mut packets = vec![vec![0u8; PACKET_LEN]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    // Encrypted datagrams, end to end, as the GSO sends take them.
    let mut out = vec![0u8; IDEAL_BATCH_SIZE * (PACKET_LEN + DATA_OVERHEAD)];
    let mut table = table_rx.borrow_and_update().clone();
    loop {
        let n = match shared.tun.recv_multiple(&mut read, &mut packets, &mut sizes, 0).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "overlay: reading the tunnel device failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        refresh(&mut table, &mut table_rx);
        let mut batch = GsoBatcher::new(shared.udp.max_gso_segments());
        for (packet, &size) in packets.iter().zip(&sizes).take(n) {
            let packet = &packet[..size];
            let Some(IpAddr::V4(to)) = Tunn::dst_address(packet) else {
                continue;
            };
            let Some(peer) = table.by_destination(to) else {
                continue;
            };
            // boringtun writes what it returns at the start of the slice it is given.
            let (len, endpoint) = {
                let mut live = peer.lock();
                let endpoint = live.endpoint;
                match live.tunn.encapsulate(packet, &mut out[batch.next_offset()..]) {
                    TunnResult::WriteToNetwork(datagram) => (datagram.len(), endpoint),
                    TunnResult::Err(e) => {
                        tracing::debug!(error = ?e, "overlay: encapsulate failed");
                        continue;
                    }
                    _ => continue,
                }
            };
            if let Some(run) = batch.push(endpoint, len) {
                shared.send_run(&out, run).await;
            }
        }
        if let Some(run) = batch.finish() {
            shared.send_run(&out, run).await;
        }
    }
}

/// What one datagram from the network turned into.
enum Received<'t> {
    Nothing,
    /// An IP packet for the device, of this length.
    Tunnel(usize),
    /// An answer to send back (handshake response, keepalive); the peer's queued packets may
    /// follow.
    Network(&'t Arc<PeerState>, usize),
    /// A cookie reply for a handshake that came while under load.
    Cookie(usize),
}

/// Finds the datagram's peer (by session index, or by the key inside a handshake) and decrypts
/// into `dst`; a packet is kept only if its source lies in the peer's subnet.
fn receive<'t>(shared: &Shared, table: &'t PeerTable, from: SocketAddr, datagram: &[u8], dst: &mut [u8]) -> Received<'t> {
    let peer = match Tunn::parse_incoming_packet(datagram) {
        Ok(Packet::HandshakeInit(init)) => {
            match shared.limiter.verify_packet(Some(from.ip()), datagram, dst) {
                Ok(_) => {}
                Err(TunnResult::WriteToNetwork(cookie)) => return Received::Cookie(cookie.len()),
                Err(_) => return Received::Nothing,
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
        return Received::Nothing;
    };
    let mut live = peer.lock();
    match live.tunn.decapsulate(Some(from.ip()), datagram, dst) {
        TunnResult::WriteToNetwork(out) => {
            let len = out.len();
            live.endpoint = from;
            Received::Network(peer, len)
        }
        TunnResult::WriteToTunnelV4(out, source) => {
            if peer.peer.subnet.contains(&source) {
                let len = out.len();
                live.endpoint = from;
                Received::Tunnel(len)
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
}

/// Datagrams from peers, read many at a time: decrypt each, and write the packets to the device
/// in one batch, where consecutive segments of a TCP flow are coalesced (GRO) so the kernel's
/// TCP stack sees 64 KB at a time rather than 1.4 KB.
async fn udp_to_tun(shared: Arc<Shared>, mut table_rx: watch::Receiver<Arc<PeerTable>>) {
    let mut read = vec![0u8; UDP_READS * UDP_READ_LEN];
    let mut meta = [RecvMeta::default(); UDP_READS];
    // Each packet for the device sits after room for its virtio-net header. Coalescing appends
    // a flow's later segments to its first packet's buffer, and only within its capacity.
    let mut packets: Vec<Vec<u8>> = (0..TUN_WRITES).map(|_| Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + 65535)).collect();
    let mut gro = GROTable::default();
    let mut table = table_rx.borrow_and_update().clone();
    loop {
        let received = shared
            .socket
            .async_io(Interest::READABLE, || {
                let mut chunks = read.chunks_mut(UDP_READ_LEN);
                let mut bufs: [IoSliceMut; UDP_READS] = std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                shared.udp.recv((&shared.socket).into(), &mut bufs, &mut meta)
            })
            .await;
        let count = match received {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "overlay: receive failed");
                continue;
            }
        };
        refresh(&mut table, &mut table_rx);
        let mut filled = 0;
        for (m, buf) in meta[..count].iter().zip(read.chunks(UDP_READ_LEN)) {
            for datagram in buf[..m.len].chunks(m.stride.max(1)) {
                if filled == packets.len() {
                    write_packets(&shared, &mut gro, &mut packets[..filled]).await;
                    filled = 0;
                }
                let slot = &mut packets[filled];
                // A coalesced write may have grown or shortened it.
                slot.resize(VIRTIO_NET_HDR_LEN + PACKET_LEN, 0);
                match receive(&shared, &table, m.addr, datagram, &mut slot[VIRTIO_NET_HDR_LEN..]) {
                    Received::Nothing => {}
                    Received::Tunnel(len) => {
                        slot.truncate(VIRTIO_NET_HDR_LEN + len);
                        filled += 1;
                    }
                    Received::Cookie(len) => shared.send_udp(&slot[VIRTIO_NET_HDR_LEN..][..len], m.addr).await,
                    Received::Network(peer, len) => {
                        shared.send_udp(&slot[VIRTIO_NET_HDR_LEN..][..len], m.addr).await;
                        // A completed handshake releases the packets queued while it ran.
                        loop {
                            let len = match peer.lock().tunn.decapsulate(None, &[], &mut slot[VIRTIO_NET_HDR_LEN..]) {
                                TunnResult::WriteToNetwork(out) => out.len(),
                                _ => break,
                            };
                            shared.send_udp(&slot[VIRTIO_NET_HDR_LEN..][..len], m.addr).await;
                        }
                    }
                }
            }
        }
        write_packets(&shared, &mut gro, &mut packets[..filled]).await;
    }
}

/// Writes decrypted packets to the device, coalescing what it can.
async fn write_packets(shared: &Shared, gro: &mut GROTable, packets: &mut [Vec<u8>]) {
    if packets.is_empty() {
        return;
    }
    if let Err(e) = shared.tun.send_multiple(gro, packets, VIRTIO_NET_HDR_LEN).await {
        tracing::debug!(error = %e, "overlay: writing to the tunnel device failed");
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
