//! HTTP mode: routing, round-robin, error pages, header and body forwarding, failed backends.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use corral_lb::LbConfig;

#[tokio::test]
async fn round_robin_reaches_every_backend_evenly() {
    init_tracing();
    let backends = [HttpBackend::start("a").await, HttpBackend::start("b").await, HttpBackend::start("c").await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let (lb, port) = lb_with(|p| one_listener(p, &addrs)).await;
    let c = client();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let r = get(&c, port, "app.example", "/").await.unwrap();
        assert_eq!(r.status, 200);
        *seen.entry(r.body).or_default() += 1;
    }
    assert_eq!(seen, HashMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)]));

    let status = lb.status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].port, port);
    assert!(status[0].backends.iter().all(|b| b.up && b.requests_served == 10 && b.active_connections == 0));
    lb.shutdown().await;
}

#[tokio::test]
async fn host_and_path_rules() {
    init_tracing();
    let [host_root, host_api, catch_all, catch_static] = [
        HttpBackend::start("host-root").await,
        HttpBackend::start("host-api").await,
        HttpBackend::start("catch-all").await,
        HttpBackend::start("catch-static").await,
    ];
    let (lb, port) = lb_with(|p| LbConfig {
        listeners: vec![http_listener(
            p,
            vec![
                route(None, None, &[catch_all.addr]),
                route(Some("App.Example"), Some("/api"), &[host_api.addr]),
                route(None, Some("/static"), &[catch_static.addr]),
                route(Some("app.example"), None, &[host_root.addr]),
            ],
        )],
    })
    .await;
    let c = client();
    let cases = [
        ("app.example", "/", "host-root"),
        ("APP.EXAMPLE:8080", "/index.html", "host-root"),
        ("app.example", "/api", "host-api"),
        ("app.example", "/api/v1/users?x=1", "host-api"),
        ("app.example", "/apix", "host-root"),
        // A host's own rules win over the catch-all's, even for the catch-all's paths.
        ("app.example", "/static/a.css", "host-root"),
        ("other.example", "/", "catch-all"),
        ("other.example", "/api/x", "catch-all"),
        ("other.example", "/static/a.css", "catch-static"),
    ];
    for (host, path, want) in cases {
        let r = get(&c, port, host, path).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, want), "host {host} path {path}");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn no_matching_rule_is_404_naming_host_and_path() {
    init_tracing();
    let b = HttpBackend::start("b").await;
    let (lb, port) = lb_with(|p| LbConfig { listeners: vec![http_listener(p, vec![route(Some("app.example"), Some("/api"), &[b.addr])])] }).await;
    let c = client();
    let r = get(&c, port, "Other.Example:81", "/x").await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "404 Not Found: no rule matches host other.example path /x\n");
    let r = get(&c, port, "app.example", "/web").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("host app.example path /web"), "{}", r.body);
    assert_eq!(b.hits(), 0);
    lb.shutdown().await;
}

#[tokio::test]
async fn no_backends_is_503_naming_host_and_path() {
    init_tracing();
    let dead = refusing_addr();
    let (lb, port) =
        lb_with(|p| LbConfig { listeners: vec![http_listener(p, vec![route(Some("empty.example"), None, &[]), route(Some("dead.example"), None, &[dead])])] })
            .await;
    let c = client();
    let r = get(&c, port, "empty.example", "/p").await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "503 Service Unavailable: no backend is up for host empty.example path /p\n");
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    // Every backend refusing ends the same way, after trying each.
    let r = get(&c, port, "dead.example", "/q").await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "503 Service Unavailable: no backend is up for host dead.example path /q\n");
    let st = &lb.status()[0];
    let dead_status = st.backends.iter().find(|b| b.addr == dead).unwrap();
    assert!(!dead_status.up);
    assert!(dead_status.last_error.as_deref().unwrap_or("").contains("onnect"), "{dead_status:?}");
    lb.shutdown().await;
}

#[tokio::test]
async fn refusing_backend_is_skipped_without_client_errors() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let b = HttpBackend::start("b").await;
    let dead = refusing_addr();
    let (lb, port) = lb_with(|p| one_listener(p, &[dead, a.addr, b.addr])).await;
    let c = client();
    for i in 0..40 {
        let r = get(&c, port, "x", "/").await.unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    assert_eq!(a.hits() + b.hits(), 40);
    assert!(a.hits() >= 10 && b.hits() >= 10, "a {} b {}", a.hits(), b.hits());
    let st = &lb.status()[0];
    assert!(!st.backends.iter().find(|s| s.addr == dead).unwrap().up);
    lb.shutdown().await;
}

#[tokio::test]
async fn backend_that_comes_back_is_used_again() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    // Reserve b's address while it is "down", then start a real backend there.
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let b_addr = listener.local_addr().unwrap();
    drop(listener);
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr, b_addr])).await;
    let c = client();
    for _ in 0..4 {
        assert_eq!(get(&c, port, "x", "/").await.unwrap().body, "a");
    }
    let b_listener = tokio::net::TcpListener::bind(b_addr).await.unwrap();
    let b_task = tokio::spawn(async move {
        let (stream, _) = b_listener.accept().await.unwrap();
        let svc =
            hyper::service::service_fn(|_req| async { Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(Bytes::from("b")))) });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
    });
    tokio::time::sleep(corral_lb::backends::RETRY_AFTER + std::time::Duration::from_millis(100)).await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&c, port, "x", "/").await.unwrap().body);
    }
    assert!(bodies.iter().any(|b| b == "b"), "{bodies:?}");
    assert!(lb.status()[0].backends.iter().all(|b| b.up));
    b_task.abort();
    lb.shutdown().await;
}

#[tokio::test]
async fn forwards_headers_and_bodies() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    let c = client();
    let r = get(&c, port, "App.Example:8080", "/h").await.unwrap();
    assert_eq!(r.headers["x-echo-xff"], "127.0.0.1");
    assert_eq!(r.headers["x-echo-xfh"], "App.Example:8080");
    assert_eq!(r.headers["x-echo-proto"], "http");
    assert_eq!(r.headers["x-echo-host"], "App.Example:8080");
    // Small (buffered, retryable) and large (streamed) bodies both arrive whole.
    for len in [10usize, 64 * 1024, 64 * 1024 + 1, 1024 * 1024] {
        let r = send(&c, "POST", port, "x", "/upload", Bytes::from(vec![b'x'; len])).await.unwrap();
        assert_eq!((r.status, r.body), (200, format!("a:{len}")));
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn chunked_request_bodies_of_any_size_are_forwarded() {
    init_tracing();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    for len in [5usize, 200 * 1024] {
        let mut s = tokio::net::TcpStream::connect((LOCALHOST, port)).await.unwrap();
        let mut req = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for chunk in vec![b'y'; len].chunks(8192) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        s.write_all(&req).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with(&format!("a:{len}")), "{out}");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn one_backend_connection_serves_requests_one_after_another() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    let c = client();
    for i in 0..20 {
        let r = get(&c, port, "x", &format!("/{i}")).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "a"));
    }
    // HEAD (a response without a body) and POST leave the connection reusable too.
    assert_eq!(send(&c, "HEAD", port, "x", "/", Bytes::new()).await.unwrap().status, 200);
    let r = send(&c, "POST", port, "x", "/", Bytes::from_static(b"12345")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "a:5"));
    assert_eq!(get(&c, port, "x", "/").await.unwrap().body, "a");
    assert_eq!(a.connections(), 1, "every request after the first reused the connection");
    let st = &lb.status()[0].backends[0];
    assert_eq!((st.requests_served, st.active_connections), (23, 0));
    lb.shutdown().await;
}

/// A keep-alive backend that closes each connection after its first response, without saying
/// so in a `Connection: close` header (as when its idle timeout strikes between requests).
async fn closing_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nclosed").await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn backend_closing_idle_connections_fails_no_request() {
    init_tracing();
    let (addr, task) = closing_backend().await;
    let (lb, port) = lb_with(|p| one_listener(p, &[addr])).await;
    let c = client();
    for (i, method) in ["GET", "POST", "GET", "DELETE", "POST"].into_iter().enumerate() {
        let r = send(&c, method, port, "x", "/", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "closed"), "request {i} ({method})");
        // Let the close reach the proxy while the connection sits idle.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(lb.status()[0].backends[0].up);
    task.abort();
    lb.shutdown().await;
}

/// Writes `request` on a fresh connection to the proxy and returns everything it sends back
/// until it closes the connection.
async fn raw_exchange(port: u16, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("the proxy closes the connection").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_a_clear_error_and_reach_no_backend() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), "HTTP/1.1 400 ", "not valid HTTP/1.1"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec(), "HTTP/1.1 400 ", "Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), "HTTP/1.1 400 ", "chunked request body is invalid"),
        ([&b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "[..], &vec![b'a'; 70 * 1024], b"\r\n\r\n"].concat(), "HTTP/1.1 431 ", "larger than"),
        (b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n".to_vec(), "HTTP/1.1 405 ", "CONNECT is not supported"),
    ];
    for (request, status, says) in cases {
        let out = raw_exchange(port, &request).await;
        assert!(out.starts_with(status), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(out.contains(says), "{says}: {out}");
    }
    assert_eq!(a.hits(), 0);
    // The proxy is still there.
    assert_eq!(get(&client(), port, "x", "/").await.unwrap().body, "a");
    lb.shutdown().await;
}

#[tokio::test]
async fn http10_connection_close_and_pipelining() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let b = HttpBackend::start("b").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr, b.addr])).await;

    // HTTP/1.0 without keep-alive: one answer, then the proxy closes.
    let out = raw_exchange(port, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");

    // Three requests in one write; the last asks to close. Answers come in order.
    let one = |close: &str| format!("GET / HTTP/1.1\r\nHost: x\r\n{close}\r\n");
    let pipelined = format!("{}{}{}", one(""), one(""), one("Connection: close\r\n"));
    let out = raw_exchange(port, pipelined.as_bytes()).await;
    assert_eq!(out.matches("HTTP/1.1 200 ").count(), 3, "{out}");
    let bodies: Vec<&str> = out.split("HTTP/1.1 ").skip(1).map(|r| r.rsplit("\r\n\r\n").next().unwrap()).collect();
    assert!(bodies == ["b", "a", "b"] || bodies == ["a", "b", "a"], "{bodies:?}");
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");
    // The client's Connection header is not forwarded: the backend connection stays open.
    assert!(!out.contains("x-echo-connection"), "{out}");
    lb.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    init_tracing();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    let mut s = tokio::net::TcpStream::connect((LOCALHOST, port)).await.unwrap();
    s.write_all(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.ends_with("a:5"), "{out}");
    lb.shutdown().await;
}

/// A backend answering by path: `/chunked` (keep-alive, with a trailer), `/close` (no length,
/// ended by closing), `/big` (1 MiB with a Content-Length). Counts its connections.
async fn framing_backend() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&req[..end]).into_owned();
                    req.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let reply: Vec<u8> = match path.as_str() {
                        "/chunked" => {
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec()
                        }
                        "/close" => b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(),
                        _ => [&b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"[..], &vec![b'z'; 1 << 20]].concat(),
                    };
                    if s.write_all(&reply).await.is_err() || path == "/close" {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted, task)
}

#[tokio::test]
async fn response_bodies_in_every_framing_arrive_whole() {
    init_tracing();
    use std::sync::atomic::Ordering;
    let (addr, accepted, task) = framing_backend().await;
    let (lb, port) = lb_with(|p| one_listener(p, &[addr])).await;
    let c = client();
    for _ in 0..3 {
        let r = get(&c, port, "x", "/chunked").await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello, world"));
        let r = get(&c, port, "x", "/big").await.unwrap();
        assert_eq!(r.body.len(), 1 << 20);
        assert!(r.body.bytes().all(|b| b == b'z'));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "chunked and long bodies keep the connection");

    // Chunks pass through as they are to an HTTP/1.1 client, trailer included...
    let out = raw_exchange(port, b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
    assert!(out.ends_with("5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"), "{out}");
    // ...and are decoded for an HTTP/1.0 one, which learns the end from the close.
    let out = raw_exchange(port, b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await;
    assert!(!out.contains("transfer-encoding"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello, world"), "{out}");

    // A body ended by the backend's close ends the client connection the same way.
    let r = get(&c, port, "x", "/close").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "until the end"));
    assert_eq!(r.headers["connection"], "close");
    assert_eq!(lb.status()[0].backends[0].active_connections, 0);
    task.abort();
    lb.shutdown().await;
}
