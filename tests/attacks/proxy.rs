//! The load balancer against slow and malformed clients: a body that stalls or trickles is cut
//! in bounded time while everyone else is served, and a request the proxy and a backend could
//! read two ways (a chunk size with garbage after it, `Transfer_Encoding`, `Connection: host`)
//! is refused before a byte of it reaches a backend.
//!
//! Everything runs in this process on 127.0.0.1: the proxy through the `corral-lb` crate, as the
//! agent runs it, and a backend that keeps every byte it receives, so a test can say exactly
//! what was forwarded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_lb::{LbConfig, Listener, LoadBalancer, Mode, Route, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Longest any one exchange may take before the test calls the proxy stuck.
const STUCK: Duration = Duration::from_secs(10);

/// A backend that answers every request `200` with `ok LEN` (LEN: the body's length as it
/// arrived) and keeps each request, head and body, exactly as it arrived.
struct Backend {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    /// Every byte received on any connection, framed or not.
    bytes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (r, b) = (requests.clone(), bytes.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((stream, _)) = listener.accept() => { conns.spawn(serve_backend(stream, r.clone(), b.clone())); }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Backend { addr, requests, bytes, task }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the request at the start of `buf` ends, if it is all there: after its head and its
/// Content-Length or chunked body (found by the blank line after its last chunk: these tests'
/// bodies have no trailers and no CRLF CRLF in their data).
fn request_end(buf: &[u8]) -> Option<(usize, usize)> {
    let text = String::from_utf8_lossy(buf);
    let head_end = text.find("\r\n\r\n")? + 4;
    let head = text[..head_end].to_ascii_lowercase();
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
    if let Some(len) = header("content-length:") {
        let end = head_end + len.parse::<usize>().ok()?;
        return (buf.len() >= end).then_some((head_end, end));
    }
    if header("transfer-encoding:").is_some_and(|te| te.ends_with("chunked")) {
        return Some((head_end, head_end + text[head_end..].find("\r\n\r\n")? + 4));
    }
    Some((head_end, head_end))
}

async fn serve_backend(mut stream: TcpStream, requests: Arc<Mutex<Vec<String>>>, bytes: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((head_end, end)) = request_end(&buf) {
            let request: Vec<u8> = buf.drain(..end).collect();
            requests.lock().unwrap().push(String::from_utf8_lossy(&request).into_owned());
            let body = format!("ok {}", end - head_end);
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                bytes.fetch_add(n, Ordering::SeqCst);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// A proxy on a free loopback port with one HTTP route (any host, any path) to `backend`.
async fn proxy(timeouts: Timeouts, backend: SocketAddr) -> (LoadBalancer, u16) {
    let lb = LoadBalancer::with_timeouts(LOCALHOST, 2, timeouts);
    let port = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let config =
        LbConfig { listeners: vec![Listener { port, mode: Mode::Http, routes: vec![Route { host: None, path_prefix: None, backends: vec![backend] }] }] };
    let errors = lb.apply(&config).await;
    assert!(errors.is_empty(), "{errors:?}");
    (lb, port)
}

/// Sends `request` on a new connection and returns everything the proxy sends back until it
/// closes the connection; if it keeps it open past [`STUCK`], what it sent and a note saying so.
async fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(STUCK, s.read_to_end(&mut out)).await.is_ok();
    let mut out = String::from_utf8_lossy(&out).into_owned();
    if !closed {
        out.push_str(&format!("[connection still open after {STUCK:?}]"));
    }
    out
}

/// What a slow client saw: the proxy's answer, and when the proxy closed the connection.
struct Cut {
    answer: String,
    closed_after: Option<Duration>,
}

/// Opens a connection, sends the head of a 100,000-byte upload and its first bytes, then either
/// goes silent or trickles one byte every 100 ms, until the proxy closes the connection (or
/// [`STUCK`] passes).
async fn slow_upload(port: u16, trickle: bool) -> std::io::Result<Cut> {
    let start = Instant::now();
    let mut s = TcpStream::connect((LOCALHOST, port)).await?;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 100000\r\n\r\nthe first bytes").await?;
    let (mut rd, mut wr) = s.into_split();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let closed_after = tokio::time::timeout(STUCK, async {
        loop {
            tokio::select! {
                read = rd.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return start.elapsed(),
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                // The proxy may stop reading once it has answered: a failed write is expected.
                _ = tick.tick(), if trickle => { let _ = wr.write_all(b"x").await; }
            }
        }
    })
    .await
    .ok();
    Ok(Cut { answer: String::from_utf8_lossy(&answer).into_owned(), closed_after })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_clients_are_cut_in_bounded_time_while_others_are_served() {
    let backend = Backend::start().await;
    // Each second must bring 1 KiB of a body: the silent clients bring none, the tricklers 10 bytes.
    let window = Duration::from_secs(1);
    let timeouts = Timeouts { client_idle: window, body_min_bytes: 1024, ..Timeouts::default() };
    let (lb, port) = proxy(timeouts, backend.addr).await;

    const SLOW: usize = 50;
    let mut slow = JoinSet::new();
    for i in 0..SLOW {
        slow.spawn(slow_upload(port, i % 2 == 1));
    }

    // While they hold their connections, other clients are answered at once.
    let served_from = Instant::now();
    let mut served = 0;
    while served_from.elapsed() < window * 2 {
        let asked = Instant::now();
        let out = exchange(port, b"GET /health HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 ") && out.ends_with("ok 0"), "{out}");
        assert!(asked.elapsed() < Duration::from_secs(1), "a normal request waited {:?} behind the slow clients", asked.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An upload slower than the window in total but steady (2 KiB every 150 ms) is not cut.
    let steady = tokio::spawn(async move {
        let started = Instant::now();
        let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
        let total = 20 * 2048;
        s.write_all(format!("PUT /big HTTP/1.1\r\nHost: app.example\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            s.write_all(&[b'u'; 2048]).await.unwrap();
        }
        let mut out = String::new();
        tokio::time::timeout(STUCK, s.read_to_string(&mut out)).await.expect("the steady upload is answered").unwrap();
        (out, started.elapsed())
    });

    let mut cut = 0;
    while let Some(done) = slow.join_next().await {
        let Cut { answer, closed_after } = done.unwrap().expect("a slow client connects and sends its head");
        let closed_after = closed_after.unwrap_or_else(|| panic!("a slow client still held its connection after {STUCK:?}; it was sent {answer:?}"));
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("connection: close\r\n") && answer.contains("request body"), "{answer}");
        assert!(closed_after >= window - Duration::from_millis(100), "cut after {closed_after:?}, before its window of {window:?} was over");
        assert!(closed_after <= window + Duration::from_secs(3), "cut only after {closed_after:?}");
        cut += 1;
    }
    assert_eq!(cut, SLOW);

    let (out, took) = steady.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 ") && out.ends_with("ok 40960"), "{out}");
    assert!(took > window * 2, "the steady upload took {took:?}: the test did not show a body outlasting the window");

    // Nothing of the slow uploads reached the backend: only the GETs and the steady upload.
    let requests = backend.requests();
    assert_eq!(requests.len(), served + 1, "{requests:?}");
    assert!(requests.iter().all(|r| !r.starts_with("POST /upload")), "{requests:?}");
    lb.shutdown().await;
}

/// Asserts that each request is answered 400 with a reason containing its word and the
/// connection closed, and that none of them sent the backend a single byte.
async fn refused_before_forwarding(port: u16, backend: &Backend, cases: &[(&str, &str)]) {
    for (request, says) in cases {
        let out = exchange(port, request.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{request:?} was answered {out:?}");
        assert!(out.contains("connection: close\r\n") && out.contains(says), "{request:?}: {says:?} not in {out:?}");
    }
    assert_eq!(backend.bytes(), 0, "the backend received {:?}", backend.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_sizes_with_trailing_garbage_are_refused_and_extensions_pass() {
    let backend = Backend::start().await;
    let (lb, port) = proxy(Timeouts::default(), backend.addr).await;
    let post = |extra: &str, body: &str| format!("POST /c HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n{extra}\r\n{body}");
    let refused: Vec<String> = [
        "5 zz\r\nhello\r\n0\r\n\r\n",
        "5\tgarbage\r\nhello\r\n0\r\n\r\n",
        "5zz\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "5;\r\nhello\r\n0\r\n\r\n",
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"open\r\nhello\r\n0\r\n\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0 zz\r\n\r\n",
    ]
    .iter()
    .map(|b| post("", b))
    .collect();
    let cases: Vec<(&str, &str)> = refused.iter().map(|r| (r.as_str(), "chunk")).collect();
    refused_before_forwarding(port, &backend, &cases).await;

    // Extensions as RFC 9112 writes them still pass, byte for byte.
    for body in ["5;name=val\r\nhello\r\n0\r\n\r\n", "5 ; a = \"v;\\\"x\" ;b\r\nhello\r\n0;last\r\n\r\n"] {
        let out = exchange(port, post("Connection: close\r\n", body).as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200 "), "{body:?}: {out}");
        let forwarded = backend.requests().pop().unwrap();
        assert!(forwarded.ends_with(&format!("\r\n\r\n{body}")), "{body:?} was forwarded as {forwarded:?}");
    }
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscored_framing_and_forwarding_headers_are_refused() {
    let backend = Backend::start().await;
    let (lb, port) = proxy(Timeouts::default(), backend.addr).await;
    refused_before_forwarding(
        port,
        &backend,
        &[
            // The proxy frames by Content-Length; a backend reading `_` as `-` would see a chunked body
            // and take the bytes after it for a second request.
            ("POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n", "Transfer_Encoding"),
            ("GET / HTTP/1.1\r\nHost: app.example\r\nContent_Length: 44\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.example\r\n\r\n", "Content_Length"),
            // CGI-style backends read both spellings as one variable: the proxy's own value could be shadowed.
            ("GET / HTTP/1.1\r\nHost: app.example\r\nX_Forwarded_For: 203.0.113.9\r\n\r\n", "X_Forwarded_For"),
        ],
    )
    .await;

    // Other names with `_` are valid HTTP and pass as they are.
    let out = exchange(port, b"GET / HTTP/1.1\r\nHost: app.example\r\nX_Custom_Thing: 1\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(backend.requests()[0].contains("\r\nX_Custom_Thing: 1\r\n"), "{:?}", backend.requests());
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_naming_routing_or_framing_headers_is_refused_and_other_named_headers_are_removed() {
    let backend = Backend::start().await;
    let (lb, port) = proxy(Timeouts::default(), backend.addr).await;
    refused_before_forwarding(
        port,
        &backend,
        &[
            ("GET / HTTP/1.1\r\nHost: app.example\r\nConnection: host\r\n\r\n", "Host"),
            ("GET / HTTP/1.1\r\nConnection: close, HOST\r\nHost: app.example\r\n\r\n", "Host"),
            ("POST / HTTP/1.1\r\nHost: app.example\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nhi", "Content-Length"),
            ("POST / HTTP/1.1\r\nHost: app.example\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Transfer-Encoding"),
        ],
    )
    .await;

    // Any other header named in Connection is this hop's and goes no further; Host stays.
    let out = exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close, X-Secret, X-Forwarded-For\r\nX-Secret: s3cret\r\nX-Forwarded-For: 203.0.113.9\r\nX-Kept: 1\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let forwarded = backend.requests().pop().unwrap().to_ascii_lowercase();
    assert!(forwarded.contains("\r\nhost: app.example\r\n") && forwarded.contains("\r\nx-kept: 1\r\n"), "{forwarded}");
    assert!(!forwarded.contains("s3cret") && !forwarded.contains("203.0.113.9"), "{forwarded}");
    assert!(forwarded.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{forwarded}");
    lb.shutdown().await;
}
