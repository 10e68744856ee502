//! The server: hickory-server's UDP and TCP front end, answering from the current [`Names`] and
//! forwarding the rest through hickory's forwarder.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::names::{Names, Resolution};
use crate::DnsError;

/// TTL of every answer from the table: none is cached, so a scale-down, a heal or a removal is
/// seen by the very next query.
pub const NAME_TTL: u32 = 0;

/// How long one forwarded query waits for the host's resolvers, all of them together, before
/// the asker gets SERVFAIL. Under glibc's own 5 s, so a container's resolver hears a definite
/// failure rather than timing out itself.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many answers a TCP connection may have queued for sending.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Where and how the server runs. [`DnsConfig::new`] has the defaults.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Address for both UDP and TCP; port 0 picks a free port (the same one for both).
    pub bind: SocketAddr,
    /// The host's own resolvers (see [`crate::upstreams`]), two asked at a time. The server's own
    /// address is left out, so it never forwards to itself.
    pub upstreams: Vec<SocketAddr>,
    /// See [`DEFAULT_FORWARD_TIMEOUT`].
    pub forward_timeout: Duration,
}

impl DnsConfig {
    pub fn new(bind: SocketAddr, upstreams: Vec<SocketAddr>) -> Self {
        DnsConfig { bind, upstreams, forward_timeout: DEFAULT_FORWARD_TIMEOUT }
    }
}

/// A running DNS server. It stops when its shutdown channel fires (or its sender is dropped),
/// and when it is dropped: a server nobody can update any more must not go on answering.
pub struct DnsServer {
    names: Arc<ArcSwap<Names>>,
    local_addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server on `bind` (UDP and TCP) with the default forwarding timeout and an empty
    /// table. Returns it with the address actually bound.
    pub async fn start(bind: SocketAddr, upstreams: Vec<SocketAddr>, shutdown: broadcast::Receiver<()>) -> Result<(DnsServer, SocketAddr), DnsError> {
        Self::start_with(DnsConfig::new(bind, upstreams), shutdown).await
    }

    /// [`DnsServer::start`] with every setting given.
    pub async fn start_with(config: DnsConfig, mut shutdown: broadcast::Receiver<()>) -> Result<(DnsServer, SocketAddr), DnsError> {
        let (udp, tcp) = bind(config.bind).await?;
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind { addr: config.bind, protocol: "UDP", source })?;
        let upstreams: Vec<SocketAddr> = config.upstreams.into_iter().filter(|u| *u != local_addr).collect();
        let forward = forwarder(&upstreams, config.forward_timeout)?;

        let names = Arc::new(ArcSwap::from_pointee(Names::default()));
        let handler = Handler { names: names.clone(), forward, forward_timeout: config.forward_timeout, rotation: AtomicUsize::new(0) };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!(%local_addr, ?upstreams, "DNS server listening");

        let task = tokio::spawn(async move {
            let outcome = tokio::select! {
                _ = shutdown.recv() => server.shutdown_gracefully().await,
                outcome = server.block_until_done() => outcome,
            };
            match outcome {
                Ok(()) => tracing::info!(%local_addr, "DNS server stopped"),
                Err(error) => tracing::error!(%local_addr, %error, "DNS server stopped on an error"),
            }
        });
        Ok((DnsServer { names, local_addr, task: Some(task) }, local_addr))
    }

    /// Replaces the names table whole; the next query is answered from `names`.
    pub fn set_names(&self, names: Names) {
        self.names.store(Arc::new(names));
    }

    /// The table queries are answered from now.
    pub fn names(&self) -> Arc<Names> {
        self.names.load_full()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after its shutdown channel fired).
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Dropping the hickory server aborts its listeners, which closes the sockets.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// UDP and TCP on the same address. With port 0, UDP picks the port and TCP takes the same one;
/// should another program hold that TCP port, a few other ports are tried.
async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_error = |protocol, source| DnsError::Bind { addr, protocol, source };
    let attempts = if addr.port() == 0 { 5 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).await.map_err(|e| bind_error("UDP", e))?;
        let port = udp.local_addr().map_err(|e| bind_error("UDP", e))?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(bind_error("TCP", last_error.expect("at least one attempt")))
}

/// hickory's forwarder over the upstreams, behind a catalog for the root zone so that it
/// builds forwarded responses (and SERVFAIL when no upstream answers) itself. None without
/// upstreams. hickory asks two upstreams at a time, those that answered fastest first, so a dead
/// first resolver costs nothing once it has failed once, and never the whole answer.
fn forwarder(upstreams: &[SocketAddr], timeout: Duration) -> Result<Option<Catalog>, DnsError> {
    if upstreams.is_empty() {
        tracing::warn!("the DNS server has no upstream resolvers: names that are not the environment's get SERVFAIL");
        return Ok(None);
    }
    let name_servers = upstreams
        .iter()
        .map(|upstream| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut connection| {
                    connection.port = upstream.port();
                    connection
                })
                .collect();
            NameServerConfig::new(upstream.ip(), true, connections)
        })
        .collect();
    let mut options = ResolverOpts::default();
    // The whole wait over all upstreams (hickory's pool keeps one deadline per query).
    options.timeout = timeout;
    // One try: the asker's own resolver retries.
    options.attempts = 1;
    let config = ForwardConfig { name_servers, options: Some(options) };
    let handler = ForwardZoneHandler::builder_tokio(config).build().map_err(|message| DnsError::Forwarder { upstreams: upstreams.to_vec(), message })?;
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(handler)]);
    Ok(Some(catalog))
}

struct Handler {
    names: Arc<ArcSwap<Names>>,
    forward: Option<Catalog>,
    forward_timeout: Duration,
    /// Turns the order of a service's addresses query by query, so that clients that take the
    /// first address spread over the instances.
    rotation: AtomicUsize,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        let is_query = request.metadata.message_type == MessageType::Query && request.metadata.op_code == OpCode::Query;
        let resolution = match request.request_info() {
            Ok(info) if is_query => self.names.load().resolve(request.src().ip(), &info.query.name().to_string()),
            // Anything else (updates, several questions, ...) gets hickory's own answer.
            _ => Resolution::Forward,
        };
        match resolution {
            Resolution::Forward => {
                let Some(catalog) = &self.forward else {
                    return respond(request, ResponseCode::ServFail, Vec::new(), response_handle).await;
                };
                // hickory keeps to the timeout; this makes sure of it.
                let forwarded = catalog.handle_request::<R, T>(request, response_handle.clone());
                match tokio::time::timeout(self.forward_timeout, forwarded).await {
                    Ok(info) => info,
                    Err(_) => {
                        tracing::debug!(asker = %request.src(), "no upstream resolver answered in time");
                        respond(request, ResponseCode::ServFail, Vec::new(), response_handle).await
                    }
                }
            }
            Resolution::NotFound => respond(request, ResponseCode::NXDomain, Vec::new(), response_handle).await,
            Resolution::Found(mut addresses) => {
                let query = request.queries.queries().first().expect("one question");
                // The name exists: other types (AAAA, MX, ...) get an empty NOERROR, not NXDOMAIN.
                let answers = if query.query_type() == RecordType::A {
                    let turn = self.rotation.fetch_add(1, Ordering::Relaxed) % addresses.len();
                    addresses.rotate_left(turn);
                    let name = query.original().name().clone();
                    addresses.into_iter().map(|ip| Record::from_rdata(name.clone(), NAME_TTL, RData::A(ip.into()))).collect()
                } else {
                    Vec::new()
                };
                respond(request, ResponseCode::NoError, answers, response_handle).await
            }
        }
    }
}

/// An authoritative answer from the table (or SERVFAIL when there is nowhere to forward).
async fn respond<R: ResponseHandler>(request: &Request, code: ResponseCode, answers: Vec<Record>, mut response_handle: R) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = code != ResponseCode::ServFail;
    metadata.recursion_available = true;
    metadata.response_code = code;
    let edns = request.edns.as_ref().map(|asked| {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload().max(512));
        edns
    });
    let mut builder = MessageResponseBuilder::new(&request.queries, None);
    if let Some(edns) = &edns {
        builder.edns(edns);
    }
    let response = builder.build(metadata, answers.iter(), [], [], []);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, asker = %request.src(), "cannot send a DNS answer");
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        }
    }
}
