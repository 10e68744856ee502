//! Timeouts once bytes are flowing: a large request body that stalls after the proxy started
//! streaming it, a client that does not read its response, a backend that stops in the middle
//! of one. Each is cut within its configured bound and releases the connection on the other side
//! too. (The defaults, and bodies that stall before anything is forwarded, are tested on tokio's
//! paused clock in `http.rs`.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use corral_lb::Timeouts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(1);
/// How long after its limit a cut may come: scheduling, and the proxy's 1 s linger for unread
/// request bodies.
const SLACK: Duration = Duration::from_secs(3);

fn short() -> Timeouts {
    Timeouts { client_idle: LIMIT, backend_idle: LIMIT, ..Timeouts::default() }
}

/// What a raw backend saw of its one connection.
#[derive(Default)]
struct Seen {
    bytes: AtomicUsize,
    /// The proxy closed the connection (EOF or an error on a read or write).
    closed: AtomicBool,
}

/// A backend that runs `act` on each connection, with a record of what it saw.
async fn raw_backend<F, Fut>(act: F) -> (std::net::SocketAddr, Arc<Seen>)
where
    F: Fn(TcpStream, Arc<Seen>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(act(stream, s.clone()));
        }
    });
    (addr, seen)
}

async fn eventually(what: &str, within: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_large_body_that_stalls_while_streaming_is_cut_and_its_backend_connection_closed() {
    init_tracing();
    // Reads everything and never answers: the request is never complete.
    let (backend, seen) = raw_backend(|mut s, seen| async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.bytes.fetch_add(n, Ordering::SeqCst),
            };
        }
        seen.closed.store(true, Ordering::SeqCst);
    })
    .await;
    let (lb, port) = lb_with_timeouts(short(), |p| one_listener(p, &[backend])).await;

    let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(b"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n").await.unwrap();
    s.write_all(&vec![b'b'; 100_000]).await.unwrap();
    // More than the 64 KiB the proxy keeps for a retry: it is streaming to the backend now.
    eventually("the backend receiving the body", SLACK, || seen.bytes.load(Ordering::SeqCst) > 64 * 1024).await;
    let stalled_at = Instant::now();

    let mut out = Vec::new();
    tokio::time::timeout(LIMIT + SLACK, s.read_to_end(&mut out)).await.expect("the stalled client is cut").unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408 ") && out.contains("request body stalled"), "{out}");
    assert!(stalled_at.elapsed() >= LIMIT - Duration::from_millis(200), "cut after only {:?}", stalled_at.elapsed());
    eventually("the backend connection closing", SLACK, || seen.closed.load(Ordering::SeqCst)).await;
    assert!(seen.bytes.load(Ordering::SeqCst) < 300_000);
    lb.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_its_response_is_dropped() {
    init_tracing();
    // Answers with 64 MiB, far more than the sockets between it and the client can hold.
    const BIG: usize = 64 << 20;
    let (backend, seen) = raw_backend(|mut s, seen| async move {
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head).await;
        let _ = s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n").as_bytes()).await;
        let block = vec![b'r'; 1 << 20];
        for _ in 0..64 {
            if s.write_all(&block).await.is_err() {
                break;
            }
            seen.bytes.fetch_add(block.len(), Ordering::SeqCst);
        }
        seen.closed.store(true, Ordering::SeqCst);
    })
    .await;
    let (lb, port) = lb_with_timeouts(short(), |p| one_listener(p, &[backend])).await;

    let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    // Never reads. The proxy's writes fill the sockets, wait, and give up after the limit,
    // which ends the backend's writes too.
    eventually("the backend's response being cut", LIMIT + SLACK * 3, || seen.closed.load(Ordering::SeqCst)).await;
    assert!(seen.bytes.load(Ordering::SeqCst) < BIG, "the whole response went through");
    // What the sockets held arrives, then the close.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(SLACK, s.read_to_end(&mut sink)).await.expect("the connection is closed");
    assert!(read.is_err() || sink.len() < BIG, "{} bytes", sink.len());
    lb.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_stops_in_the_middle_of_a_response_is_cut() {
    init_tracing();
    // Promises 1000 bytes, sends 10, then keeps the connection open and silent.
    let (backend, seen) = raw_backend(|mut s, seen| async move {
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789").await;
        // Until the proxy closes its end.
        let _ = s.read(&mut head).await;
        seen.closed.store(true, Ordering::SeqCst);
    })
    .await;
    let (lb, port) = lb_with_timeouts(short(), |p| one_listener(p, &[backend])).await;
    let started = Instant::now();
    let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT + SLACK, s.read_to_end(&mut out)).await.expect("the client connection is closed").unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 ") && out.ends_with("\r\n\r\n0123456789"), "{out}");
    assert!(started.elapsed() >= LIMIT, "cut after only {:?}", started.elapsed());
    eventually("the backend connection closing", SLACK, || seen.closed.load(Ordering::SeqCst)).await;
    lb.shutdown().await;
}
