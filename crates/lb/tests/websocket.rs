//! HTTP mode: WebSocket (HTTP Upgrade) pass-through: echo through the proxy, refused upgrades,
//! bytes sent early on either side, retries, and a backend removed while sockets are open.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket server that echoes every message with its tag in front (`TAG:text`), and closes
/// the socket itself when it receives the text `bye`.
struct WsBackend {
    addr: SocketAddr,
    /// Sockets whose close has been seen by the backend (the connection ended).
    closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl WsBackend {
    async fn start(tag: &str) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = Arc::new(AtomicUsize::new(0));
        let (tag, done) = (tag.to_string(), closed.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((stream, _)) = listener.accept() => {
                        let (tag, done) = (tag.clone(), done.clone());
                        conns.spawn(async move {
                            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                                return;
                            };
                            while let Some(Ok(msg)) = ws.next().await {
                                let reply = match msg {
                                    Message::Text(t) if t.as_str() == "bye" => {
                                        let _ = ws.close(None).await;
                                        continue;
                                    }
                                    Message::Text(t) => Message::text(format!("{tag}:{t}")),
                                    Message::Binary(b) => {
                                        let mut v = format!("{tag}:").into_bytes();
                                        v.extend_from_slice(&b);
                                        Message::binary(v)
                                    }
                                    _ => continue,
                                };
                                if ws.send(reply).await.is_err() {
                                    break;
                                }
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        WsBackend { addr, closed, task }
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open(port: u16) -> Result<Socket, tungstenite::Error> {
    let url = format!("ws://127.0.0.1:{port}/chat");
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await.expect("WebSocket handshake timed out")?;
    assert_eq!(resp.status().as_u16(), 101);
    Ok(ws)
}

/// Sends `msg` and returns the next message received.
async fn exchange(ws: &mut Socket, msg: Message) -> Message {
    ws.send(msg).await.expect("send through the proxy");
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no echo within the wait")
        .expect("socket closed instead of echoing")
        .expect("socket failed instead of echoing")
}

/// The tag of the backend that echoed a text message.
async fn tag_of(ws: &mut Socket) -> String {
    match exchange(ws, Message::text("ping")).await {
        Message::Text(t) => t.as_str().strip_suffix(":ping").expect("tagged echo").into(),
        other => panic!("expected a text echo, got {other:?}"),
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the peer has closed the socket (a close frame, then the end of the stream), then
/// closes this end, as a client does.
async fn expect_closed(mut ws: Socket) {
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = ws.next().await {
            assert!(msg.is_close(), "expected the close, got {msg:?}");
        }
    })
    .await
    .expect("the socket was not closed");
}

#[tokio::test]
async fn websockets_echo_through_the_proxy_spread_over_backends_and_close_both_ways() {
    init_tracing();
    let (a, b) = (WsBackend::start("a").await, WsBackend::start("b").await);
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr, b.addr])).await;

    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(open(port).await.unwrap());
    }
    // All four at once: text and binary each come back from the socket's own backend.
    let tags = futures_util::future::join_all(sockets.iter_mut().enumerate().map(|(i, ws)| async move {
        let tag = tag_of(ws).await;
        let text = exchange(ws, Message::text(format!("hello {i}"))).await;
        assert_eq!(text, Message::text(format!("{tag}:hello {i}")));
        let payload = vec![0u8, 255, i as u8, 10, 13];
        let binary = exchange(ws, Message::binary(payload.clone())).await;
        let mut want = format!("{tag}:").into_bytes();
        want.extend_from_slice(&payload);
        assert_eq!(binary, Message::binary(want));
        tag
    }))
    .await;
    let mut spread: HashMap<String, usize> = HashMap::new();
    for t in tags {
        *spread.entry(t).or_default() += 1;
    }
    assert_eq!(spread, HashMap::from([("a".into(), 2), ("b".into(), 2)]));
    let status = lb.status();
    assert!(status[0].backends.iter().all(|b| b.active_connections == 2), "each backend has two open sockets: {:?}", status[0].backends);

    // The client closes: the backend sees it.
    let mut first = sockets.remove(0);
    let first_tag = tag_of(&mut first).await;
    let first_backend = if first_tag == "a" { &a } else { &b };
    first.close(None).await.unwrap();
    expect_closed(first).await;
    eventually("the backend saw the client's close", || first_backend.closed() == 1).await;

    // The backend closes: the client sees it.
    let mut second = sockets.remove(0);
    second.send(Message::text("bye")).await.unwrap();
    expect_closed(second).await;
    eventually("both closes reached the backends", || a.closed() + b.closed() == 2).await;

    // The others are untouched and close when dropped, the TCP way.
    for ws in &mut sockets {
        tag_of(ws).await;
    }
    drop(sockets);
    eventually("dropped sockets reached the backends", || a.closed() + b.closed() == 4).await;
    eventually("no backend counts an open socket", || lb.status()[0].backends.iter().all(|b| b.active_connections == 0)).await;
    lb.shutdown().await;
}

/// A raw HTTP/1.1 response: its head and its `Content-Length` body.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    return (head, body);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a whole response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no response within the wait")
}

fn upgrade_request(host: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// An HTTP backend that refuses every upgrade with a 400, and answers other requests `plain`.
async fn refusing_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                Ok((stream, _)) = listener.accept() => {
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                            let (status, body) = if req.headers().contains_key("upgrade") {
                                (400, "no upgrade here")
                            } else {
                                (200, "plain")
                            };
                            let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_refused_upgrade_is_relayed_and_the_connection_stays_http() {
    init_tracing();
    let ok = HttpBackend::start("ok").await;
    let (refuser, _task) = refusing_backend().await;
    let (lb, port) = lb_with(|p| corral_lb::LbConfig {
        listeners: vec![http_listener(p, vec![route(Some("ok.example"), None, &[ok.addr]), route(Some("refuse.example"), None, &[refuser])])],
    })
    .await;

    for (host, status, body) in [("ok.example", "200", "ok"), ("refuse.example", "400", "no upgrade here")] {
        let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
        let mut buf = Vec::new();
        s.write_all(upgrade_request(host).as_bytes()).await.unwrap();
        let (head, got) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert_eq!(got, body);
        assert!(!head.to_ascii_lowercase().contains("\nupgrade:"), "a refusal carries no Upgrade: {head}");
        if host == "ok.example" {
            // The backend saw the upgrade as sent (it echoes the Connection header it got).
            assert!(head.contains("x-echo-connection: upgrade\r\n"), "{head}");
        }

        // The same connection serves a plain request next.
        s.write_all(format!("GET /next HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
        let (head, got) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(got, if host == "ok.example" { "ok" } else { "plain" });
    }
    lb.shutdown().await;
}

/// A raw upgrading backend: reads a request head, waits a little, then writes its 101 head, the
/// request head it received and `HELLO` in one write, and echoes everything after that. When
/// the client's side ends it closes too, or with `hold_open` reports it and keeps its own open.
async fn raw_upgrading_backend(hold_open: Option<tokio::sync::oneshot::Sender<()>>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        };
        // The client's early bytes reach the proxy while the backend is still deciding.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut reply = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n".to_vec();
        reply.extend_from_slice(&buf[..end]);
        reply.extend_from_slice(b"HELLO");
        s.write_all(&reply).await.unwrap();
        s.write_all(&buf[end..]).await.unwrap();
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&chunk[..n]).await.unwrap(),
            }
        }
        if let Some(ended) = hold_open {
            let _ = ended.send(());
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn bytes_sent_right_after_either_head_are_not_lost() {
    init_tracing();
    let (backend, _task) = raw_upgrading_backend(None).await;
    let (lb, port) = lb_with(|p| one_listener(p, &[backend])).await;
    let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    // The request head and the first tunnel bytes in one write, more before the 101 arrives.
    let request = "GET /t HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, Keep-Alive\r\nKeep-Alive: timeout=5\r\nUpgrade: test\r\n\r\n";
    s.write_all(format!("{request}early-1;").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"early-2;").await.unwrap();

    let mut got = Vec::new();
    let want_tail = b"HELLOearly-1;early-2;late;";
    let mut sent_late = false;
    tokio::time::timeout(WAIT, async {
        while !got.ends_with(want_tail) {
            if !sent_late && got.ends_with(b"early-1;early-2;") {
                s.write_all(b"late;").await.unwrap();
                sent_late = true;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("tunnel bytes missing: {}", String::from_utf8_lossy(&got)));
    let got = String::from_utf8(got).unwrap();
    let (head, rest) = got.split_once("\r\n\r\n").unwrap();
    assert_eq!(head, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nconnection: upgrade");
    // What the backend received: the upgrade kept, the other hop-by-hop headers dropped.
    let (forwarded, rest) = rest.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        forwarded,
        "GET /t HTTP/1.1\r\nHost: app.example\r\nUpgrade: test\r\nconnection: upgrade\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-host: app.example\r\nx-forwarded-proto: http"
    );
    assert_eq!(rest, "HELLOearly-1;early-2;late;");

    // Closing the client closes the backend's side, which closes the tunnel.
    drop(s);
    eventually("the tunnel ended", || lb.status()[0].backends[0].active_connections == 0).await;
    lb.shutdown().await;
}

/// A backend that reads a request and closes without answering, counting the requests.
async fn silent_backend() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut chunk = [0u8; 4096];
            if matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, seen, task)
}

#[tokio::test]
async fn an_upgrade_is_retried_on_connect_failure_but_never_once_written() {
    init_tracing();
    let a = WsBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[refusing_addr(), a.addr])).await;
    for _ in 0..3 {
        let mut ws = open(port).await.expect("a refused connect is retried");
        assert_eq!(tag_of(&mut ws).await, "a");
    }
    lb.shutdown().await;

    let (silent, seen, _task) = silent_backend().await;
    let (lb, port) = lb_with(|p| one_listener(p, &[silent, a.addr])).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(match open(port).await {
            Ok(mut ws) => tag_of(&mut ws).await,
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16().to_string(),
            Err(other) => panic!("unexpected handshake failure: {other:?}"),
        });
    }
    answers.sort();
    assert_eq!(answers, ["502", "a"], "the upgrade that reached nothing is not resent");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    lb.shutdown().await;
}

#[tokio::test]
async fn removing_a_backend_keeps_its_open_sockets_and_sends_new_ones_elsewhere() {
    init_tracing();
    let (a, b) = (WsBackend::start("a").await, WsBackend::start("b").await);
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr, b.addr])).await;
    let mut old = open(port).await.unwrap();
    let old_tag = tag_of(&mut old).await;
    let (kept, removed) = if old_tag == "a" { (&b, &a) } else { (&a, &b) };
    let kept_tag = if old_tag == "a" { "b" } else { "a" };

    assert!(lb.apply(&one_listener(port, &[kept.addr])).await.is_empty());
    for _ in 0..3 {
        let mut ws = open(port).await.unwrap();
        assert_eq!(tag_of(&mut ws).await, kept_tag, "new sockets avoid the removed backend");
    }
    // The socket to the removed backend still works both ways, well after the change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tag_of(&mut old).await, old_tag);
    assert_eq!(exchange(&mut old, Message::binary(vec![1, 2, 3])).await, Message::binary([old_tag.as_bytes(), b":", &[1, 2, 3]].concat()));
    assert_eq!(removed.closed(), 0);
    old.close(None).await.unwrap();
    expect_closed(old).await;
    eventually("the removed backend saw the close", || removed.closed() == 1).await;

    // Removing the whole listener does not cut an open socket either.
    let mut ws = open(port).await.unwrap();
    assert!(lb.apply(&corral_lb::LbConfig::default()).await.is_empty());
    assert!(TcpStream::connect((LOCALHOST, port)).await.is_err(), "port released");
    assert_eq!(tag_of(&mut ws).await, kept_tag);
    ws.close(None).await.unwrap();
    expect_closed(ws).await;
    lb.shutdown().await;
}

#[tokio::test]
async fn a_tunnel_closed_by_one_side_is_closed_after_a_grace_if_the_other_stays_open() {
    init_tracing();
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let (backend, _task) = raw_upgrading_backend(Some(ended_tx)).await;
    let (lb, port) = lb_with(|p| one_listener(p, &[backend])).await;
    let mut s = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"HELLO") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }

    // The client ends its side: the backend is told at once, but keeps its own side open.
    s.shutdown().await.unwrap();
    let closed_at = tokio::time::Instant::now();
    tokio::time::timeout(WAIT, ended).await.expect("the client's close reached the backend").unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT + WAIT, s.read_to_end(&mut rest)).await.expect("the proxy closed the tunnel").unwrap_or(0);
    assert_eq!(n, 0);
    let waited = closed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(8),
        "the tunnel closed {waited:?} after the client's side, not after the 5 s grace"
    );
    lb.shutdown().await;
}
