//! The DNS server on loopback, asked by hickory's client over real UDP and TCP sockets; names
//! that are not ours go to a second hickory-server started here as the host's resolver.
//!
//! The asker is told apart by its source address: clients bind to 127.0.0.2, .3, ... (all of
//! 127/8 is local on Linux), which the tables below give to containers of different stacks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_dns::{DnsConfig, DnsServer, Names, Record, NAME_TTL};
use hickory_server::net::client::{Client, ClientHandle};
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::proto::op::{Message, Metadata, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::sync::broadcast;

const ENV: &str = "ops";
/// Askers: a container of stack `shop`, one of stack `blog`, and an address no container has.
const SHOP_ASKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const BLOG_ASKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// What the test upstream answers for every name under `example.test`.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn record(container: &str, stack: &str, service: &str, ip: Ipv4Addr, running: bool) -> Record {
    Record { environment: ENV.into(), container: container.into(), stack: stack.into(), service: service.into(), ip, running }
}

/// shop: web ×2 (and a stopped third), db; blog: web, and a stopped db. The askers are shop's
/// web-1 and blog's web-1.
fn table() -> Names {
    Names::new(
        ENV,
        vec![
            record("shop-web-1", "shop", "web", SHOP_ASKER, true),
            record("shop-web-2", "shop", "web", Ipv4Addr::new(10, 42, 2, 2), true),
            record("shop-web-3", "shop", "web", Ipv4Addr::new(10, 42, 1, 9), false),
            record("shop-db-1", "shop", "db", Ipv4Addr::new(10, 42, 1, 3), true),
            record("blog-web-1", "blog", "web", BLOG_ASKER, true),
            record("blog-db-1", "blog", "db", Ipv4Addr::new(10, 42, 2, 6), false),
        ],
    )
}

struct Running {
    server: DnsServer,
    addr: SocketAddr,
    _shutdown: broadcast::Sender<()>,
}

async fn start(upstreams: Vec<SocketAddr>, forward_timeout: Duration) -> Running {
    let (shutdown, rx) = broadcast::channel(1);
    let mut config = DnsConfig::new("127.0.0.1:0".parse().unwrap(), upstreams);
    config.forward_timeout = forward_timeout;
    let (server, addr) = DnsServer::start_with(config, rx).await.expect("the DNS server starts");
    assert_ne!(addr.port(), 0);
    server.set_names(table());
    Running { server, addr, _shutdown: shutdown }
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Udp,
    Tcp,
}

/// A client of `server` whose queries come from `from`.
async fn client(server: SocketAddr, from: Ipv4Addr, transport: Transport) -> Client<TokioRuntimeProvider> {
    let bind = SocketAddr::new(IpAddr::V4(from), 0);
    let timeout = Duration::from_secs(5);
    match transport {
        Transport::Udp => {
            let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default()).with_bind_addr(Some(bind)).with_timeout(Some(timeout)).build();
            let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            tokio::spawn(background);
            client
        }
        Transport::Tcp => {
            let (stream, handle) = TcpClientStream::new(server, Some(bind), Some(timeout), TokioRuntimeProvider::default());
            let stream = stream.await.expect("TCP connection to the DNS server");
            let (client, background) = Client::<TokioRuntimeProvider>::with_timeout(stream, handle, timeout);
            tokio::spawn(background);
            client
        }
    }
}

/// The answer to `name` of type `rtype`: its response code and the A addresses in it.
async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, rtype: RecordType) -> (ResponseCode, Vec<Ipv4Addr>, Message) {
    let response = client.query(Name::from_str(name).unwrap(), DNSClass::IN, rtype).await.unwrap_or_else(|e| panic!("query {name}: {e}"));
    let message = response.into_message();
    let addresses = message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    (message.metadata.response_code, addresses, message)
}

async fn ask_a(client: &mut Client<TokioRuntimeProvider>, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let (code, mut addresses, _) = ask(client, name, RecordType::A).await;
    addresses.sort();
    (code, addresses)
}

#[tokio::test]
async fn names_are_answered_over_udp_and_tcp() {
    let dns = start(Vec::new(), Duration::from_secs(1)).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut c = client(dns.addr, STRANGER, transport).await;
        let (code, addresses, message) = ask(&mut c, "web.shop.", RecordType::A).await;
        assert_eq!(code, ResponseCode::NoError, "{transport:?}");
        let mut sorted = addresses.clone();
        sorted.sort();
        assert_eq!(sorted, vec![Ipv4Addr::new(10, 42, 2, 2), SHOP_ASKER], "{transport:?}: the running instances only");
        assert!(message.metadata.authoritative, "{transport:?}");
        assert!(message.answers.iter().all(|r| r.ttl == NAME_TTL), "{transport:?}: TTL {NAME_TTL}");
        // The name comes back as it was asked, case included.
        assert_eq!(message.answers[0].name.to_string(), "web.shop.");

        assert_eq!(ask_a(&mut c, "shop-db-1.").await, (ResponseCode::NoError, vec![Ipv4Addr::new(10, 42, 1, 3)]), "{transport:?}");
        assert_eq!(ask_a(&mut c, "DB.Shop.").await, (ResponseCode::NoError, vec![Ipv4Addr::new(10, 42, 1, 3)]), "{transport:?}");
        assert_eq!(ask_a(&mut c, "db.shop.corral.internal.").await, (ResponseCode::NoError, vec![Ipv4Addr::new(10, 42, 1, 3)]));
    }
}

#[tokio::test]
async fn a_service_name_alone_is_looked_up_in_the_askers_stack() {
    let dns = start(Vec::new(), Duration::from_secs(1)).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut shop = client(dns.addr, SHOP_ASKER, transport).await;
        let mut blog = client(dns.addr, BLOG_ASKER, transport).await;
        let mut stranger = client(dns.addr, STRANGER, transport).await;
        assert_eq!(ask_a(&mut shop, "db.").await, (ResponseCode::NoError, vec![Ipv4Addr::new(10, 42, 1, 3)]), "{transport:?}");
        assert_eq!(ask_a(&mut blog, "web.").await, (ResponseCode::NoError, vec![BLOG_ASKER]), "{transport:?}");
        // blog's own db is stopped, and shop's db is not blog's.
        assert_eq!(ask_a(&mut blog, "db.").await, (ResponseCode::NXDomain, vec![]), "{transport:?}");
        assert_eq!(ask_a(&mut stranger, "web.").await, (ResponseCode::NXDomain, vec![]), "{transport:?}");
    }
}

#[tokio::test]
async fn unknown_names_of_ours_are_nxdomain_at_once_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let dns = start(vec![upstream.addr], Duration::from_secs(1)).await;
    let mut c = client(dns.addr, SHOP_ASKER, Transport::Udp).await;
    for name in ["cache.", "cache.shop.", "shop-web-3.", "db.blog.", "x.y.corral.internal."] {
        let started = Instant::now();
        assert_eq!(ask_a(&mut c, name).await, (ResponseCode::NXDomain, vec![]), "{name}");
        assert!(started.elapsed() < Duration::from_millis(200), "{name} took {:?}", started.elapsed());
    }
    // A name that exists has no AAAA: an empty NOERROR, so that a client asking both still
    // uses the A answer.
    let (code, _, message) = ask(&mut c, "web.shop.", RecordType::AAAA).await;
    assert_eq!((code, message.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(upstream.queries(), 0, "none of these reached the host's resolver");
}

#[tokio::test]
async fn a_swapped_table_is_seen_by_the_next_query() {
    let dns = start(Vec::new(), Duration::from_secs(1)).await;
    let mut udp = client(dns.addr, SHOP_ASKER, Transport::Udp).await;
    let mut tcp = client(dns.addr, BLOG_ASKER, Transport::Tcp).await;
    assert_eq!(ask_a(&mut udp, "web.").await.1.len(), 2);

    // Scale shop's web down to one, and start a cache in blog.
    let removed = Ipv4Addr::new(10, 42, 2, 2);
    let mut records = vec![
        record("shop-web-1", "shop", "web", SHOP_ASKER, true),
        record("shop-web-2", "shop", "web", removed, false),
        record("shop-db-1", "shop", "db", Ipv4Addr::new(10, 42, 1, 3), true),
        record("blog-web-1", "blog", "web", BLOG_ASKER, true),
        record("blog-cache-1", "blog", "cache", Ipv4Addr::new(10, 42, 2, 7), true),
    ];
    dns.server.set_names(Names::new(ENV, records.clone()));
    for _ in 0..20 {
        assert_eq!(ask_a(&mut udp, "web.").await, (ResponseCode::NoError, vec![SHOP_ASKER]), "no stale answer after the swap");
        assert_eq!(ask_a(&mut tcp, "web.shop.").await, (ResponseCode::NoError, vec![SHOP_ASKER]));
    }
    assert_eq!(ask_a(&mut tcp, "cache.").await, (ResponseCode::NoError, vec![Ipv4Addr::new(10, 42, 2, 7)]));

    // Remove shop's db altogether.
    records.retain(|r| r.service != "db");
    dns.server.set_names(Names::new(ENV, records));
    assert_eq!(ask_a(&mut udp, "db.").await, (ResponseCode::NXDomain, vec![]));
    assert_eq!(ask_a(&mut tcp, "shop-db-1.").await, (ResponseCode::NXDomain, vec![]));
}

#[tokio::test]
async fn a_large_service_is_truncated_over_udp_and_whole_over_tcp() {
    let dns = start(Vec::new(), Duration::from_secs(1)).await;
    let records = (1..=100).map(|i| record(&format!("big-api-{i}"), "big", "api", Ipv4Addr::new(10, 42, 3, i), true)).collect();
    dns.server.set_names(Names::new(ENV, records));
    // A stub resolver without EDNS (glibc's default) has 512 bytes over UDP: it is told the
    // answer was cut, and asks again over TCP.
    let mut udp = client(dns.addr, STRANGER, Transport::Udp).await;
    udp.disable_edns();
    let (code, addresses, message) = ask(&mut udp, "api.big.", RecordType::A).await;
    assert_eq!(code, ResponseCode::NoError);
    assert!(message.metadata.truncation, "TC is set");
    assert!(addresses.len() < 100, "{} answers fit in 512 bytes", addresses.len());
    let mut tcp = client(dns.addr, STRANGER, Transport::Tcp).await;
    let (code, addresses, message) = ask(&mut tcp, "api.big.", RecordType::A).await;
    assert_eq!((code, addresses.len(), message.metadata.truncation), (ResponseCode::NoError, 100, false));
}

#[tokio::test]
async fn the_order_of_a_services_addresses_turns_query_by_query() {
    let dns = start(Vec::new(), Duration::from_secs(1)).await;
    let mut c = client(dns.addr, STRANGER, Transport::Udp).await;
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..4 {
        let (_, addresses, _) = ask(&mut c, "web.shop.", RecordType::A).await;
        firsts.insert(addresses[0]);
    }
    assert_eq!(firsts.len(), 2, "each instance comes first in turn, so clients that take the first spread out");
}

#[tokio::test]
async fn other_names_are_forwarded_to_the_hosts_resolver() {
    let upstream = Upstream::start().await;
    let dns = start(vec![upstream.addr], Duration::from_secs(1)).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut c = client(dns.addr, SHOP_ASKER, transport).await;
        let before = upstream.queries();
        let name = format!("www-{transport:?}.example.test.").to_lowercase();
        let (code, addresses, message) = ask(&mut c, &name, RecordType::A).await;
        assert_eq!((code, addresses), (ResponseCode::NoError, vec![UPSTREAM_ANSWER]), "{transport:?}");
        assert!(!message.metadata.authoritative, "{transport:?}: a forwarded answer is not ours");
        assert_eq!(upstream.queries(), before + 1, "{transport:?}");
        // The upstream's NXDOMAIN comes through as NXDOMAIN.
        let (code, addresses) = ask_a(&mut c, &format!("nothing-{transport:?}.elsewhere.test.").to_lowercase()).await;
        assert_eq!((code, addresses), (ResponseCode::NXDomain, vec![]), "{transport:?}");
    }
}

#[tokio::test]
async fn servfail_within_the_timeout_when_no_upstream_answers() {
    // An upstream that receives and never answers, and one whose port is closed.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let timeout = Duration::from_millis(600);
    for upstreams in [vec![silent.local_addr().unwrap()], vec![silent.local_addr().unwrap(), closed], vec![closed]] {
        let dns = start(upstreams.clone(), timeout).await;
        let mut c = client(dns.addr, SHOP_ASKER, Transport::Udp).await;
        let started = Instant::now();
        let (code, addresses) = ask_a(&mut c, "www.example.test.").await;
        let took = started.elapsed();
        assert_eq!((code, addresses), (ResponseCode::ServFail, vec![]), "{upstreams:?}");
        assert!(took < timeout + Duration::from_millis(300), "{upstreams:?}: SERVFAIL took {took:?}");
        if upstreams[0] != closed {
            assert!(took >= timeout / 2, "{upstreams:?}: SERVFAIL after {took:?}: the silent upstream was not waited for");
        }
        // The environment's names are still answered while the upstreams are down.
        assert_eq!(ask_a(&mut c, "db.").await, (ResponseCode::NoError, vec![Ipv4Addr::new(10, 42, 1, 3)]));
    }

    // No upstream at all: SERVFAIL at once.
    let alone = start(Vec::new(), timeout).await;
    let mut c = client(alone.addr, SHOP_ASKER, Transport::Udp).await;
    let started = Instant::now();
    assert_eq!(ask_a(&mut c, "www.example.test.").await, (ResponseCode::ServFail, vec![]));
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn a_dead_first_upstream_leaves_time_for_the_next() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = Upstream::start().await;
    let timeout = Duration::from_millis(1000);
    let dns = start(vec![silent.local_addr().unwrap(), upstream.addr], timeout).await;
    let mut c = client(dns.addr, SHOP_ASKER, Transport::Udp).await;
    let started = Instant::now();
    assert_eq!(ask_a(&mut c, "www.example.test.").await, (ResponseCode::NoError, vec![UPSTREAM_ANSWER]));
    assert!(started.elapsed() < timeout, "answered after {:?}", started.elapsed());
    assert_eq!(upstream.queries(), 1);
}

#[tokio::test]
async fn a_taken_address_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_tx, rx) = broadcast::channel(1);
    let error = DnsServer::start(addr, Vec::new(), rx).await.err().expect("the port is taken").to_string();
    assert!(error.starts_with(&format!("cannot bind the DNS server on {addr} (UDP): ")), "{error}");
    assert!(error.to_lowercase().contains("in use"), "{error}");
}

#[tokio::test]
async fn shutdown_stops_the_server_and_frees_its_port() {
    let (tx, rx) = broadcast::channel(1);
    let (server, addr) = DnsServer::start("127.0.0.1:0".parse().unwrap(), Vec::new(), rx).await.unwrap();
    server.set_names(table());
    let mut c = client(addr, SHOP_ASKER, Transport::Udp).await;
    assert_eq!(ask_a(&mut c, "db.").await.0, ResponseCode::NoError);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.stopped()).await.expect("the server stops within 5 s");
    std::net::UdpSocket::bind(addr).expect("the UDP port is free again");
    std::net::TcpListener::bind(addr).expect("the TCP port is free again");
}

#[tokio::test]
async fn a_dropped_server_stops_answering_and_frees_its_port() {
    let (_tx, rx) = broadcast::channel(1);
    let (server, addr) = DnsServer::start("127.0.0.1:0".parse().unwrap(), Vec::new(), rx).await.unwrap();
    server.set_names(table());
    let mut c = client(addr, SHOP_ASKER, Transport::Udp).await;
    assert_eq!(ask_a(&mut c, "db.").await.0, ResponseCode::NoError);
    drop(server);
    let freed = async {
        loop {
            if std::net::UdpSocket::bind(addr).is_ok() && std::net::TcpListener::bind(addr).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), freed).await.expect("the ports are free within 5 s of the drop");
}

/// A tiny hickory-server standing in for the host's resolver: every name under `example.test`
/// is [`UPSTREAM_ANSWER`], anything else NXDOMAIN. It counts the queries it gets.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    _server: Server<UpstreamHandler>,
}

impl Upstream {
    async fn start() -> Upstream {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let mut server = Server::new(UpstreamHandler { queries: queries.clone() });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        Upstream { addr, queries, _server: server }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

struct UpstreamHandler {
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for UpstreamHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let query = &request.queries.queries()[0];
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let ours = query.name().to_string().ends_with(".example.test.");
        let mut answers = Vec::new();
        if !ours {
            metadata.response_code = ResponseCode::NXDomain;
        } else if query.query_type() == RecordType::A {
            answers.push(hickory_server::proto::rr::Record::from_rdata(query.original().name().clone(), 60, RData::A(UPSTREAM_ANSWER.into())));
        }
        let response = MessageResponseBuilder::new(&request.queries, None).build(metadata, answers.iter(), [], [], []);
        response_handle.send_response(response).await.expect("the upstream answers")
    }
}
