//! Loopback test fixtures: tiny backends that answer with their own name, a keep-alive client,
//! and free ports. Everything binds 127.0.0.1 and dies with the test.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_lb::{LbConfig, Listener, LoadBalancer, Mode, Route};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// An address nothing listens on: connecting to it is refused.
pub fn refusing_addr() -> SocketAddr {
    SocketAddr::new(LOCALHOST, free_port())
}

/// An HTTP backend answering every request with its name (plus `:LEN` when the request had a
/// body), echoing the forwarding headers back, and sleeping first when asked `?delay_ms=N`.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (n, h, a) = (name.to_string(), hits.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            // Owning the connections here means aborting this task drops every socket of the
            // backend at once, like a crashed process.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((stream, _)) = listener.accept() => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let (n, h) = (n.clone(), h.clone());
                        conns.spawn(async move {
                            let svc = service_fn(move |req| answer(n.clone(), h.clone(), req));
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        HttpBackend { name: name.to_string(), addr, hits, accepted, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listening socket and every open connection at once.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn answer(name: String, hits: Arc<AtomicUsize>, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(ms) = req.uri().query().and_then(|q| q.strip_prefix("delay_ms=")).and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    hits.fetch_add(1, Ordering::SeqCst);
    let text = if body.is_empty() { name } else { format!("{name}:{}", body.len()) };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    for (from, to) in [
        ("x-forwarded-for", "x-echo-xff"),
        ("x-forwarded-host", "x-echo-xfh"),
        ("x-forwarded-proto", "x-echo-proto"),
        ("host", "x-echo-host"),
        ("connection", "x-echo-connection"),
    ] {
        if let Some(v) = parts.headers.get(from) {
            resp.headers_mut().insert(to, v.clone());
        }
    }
    Ok(resp)
}

/// A TCP backend that reads one line and answers `NAME LINE`, then closes.
pub struct TcpBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((mut stream, _)) = listener.accept() => {
                        let name = name.clone();
                        conns.spawn(async move {
                            let mut line = Vec::new();
                            let mut buf = [0u8; 256];
                            while !line.contains(&b'\n') {
                                match stream.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => line.extend_from_slice(&buf[..n]),
                                }
                            }
                            let reply = format!("{name} {}", String::from_utf8_lossy(&line));
                            let _ = stream.write_all(reply.as_bytes()).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        TcpBackend { addr, task }
    }

    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Sends `line` through a TCP proxy port and returns the reply (empty if the proxy closed).
pub async fn tcp_round_trip(port: u16, line: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect((LOCALHOST, port)).await?;
    s.write_all(format!("{line}\n").as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.map_err(|_| std::io::Error::other("timed out"))??;
    Ok(out)
}

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A keep-alive client, as a browser or an upstream proxy would be.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: hyper::HeaderMap,
}

pub async fn get(client: &TestClient, port: u16, host: &str, path: &str) -> Result<Reply, String> {
    send(client, "GET", port, host, path, Bytes::new()).await
}

pub async fn send(client: &TestClient, method: &str, port: u16, host: &str, path: &str, body: Bytes) -> Result<Reply, String> {
    let req = Request::builder().method(method).uri(format!("http://127.0.0.1:{port}{path}")).header("host", host).body(Full::new(body)).unwrap();
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(|e| format!("body: {e:?}"))?.to_bytes();
        Ok(Reply { status, body: String::from_utf8_lossy(&body).into_owned(), headers })
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.map_err(|_| "timed out".to_string())?
}

pub fn route(host: Option<&str>, prefix: Option<&str>, backends: &[SocketAddr]) -> Route {
    Route { host: host.map(str::to_string), path_prefix: prefix.map(str::to_string), backends: backends.to_vec() }
}

pub fn http_listener(port: u16, routes: Vec<Route>) -> Listener {
    Listener { port, mode: Mode::Http, routes }
}

pub fn one_listener(port: u16, backends: &[SocketAddr]) -> LbConfig {
    LbConfig { listeners: vec![http_listener(port, vec![route(None, None, backends)])] }
}

/// A running LB with `config` applied on a fresh port; panics if applying reported errors.
pub async fn lb_with(config: impl FnOnce(u16) -> LbConfig) -> (LoadBalancer, u16) {
    let lb = LoadBalancer::new(LOCALHOST);
    let port = free_port();
    let errors = lb.apply(&config(port)).await;
    assert!(errors.is_empty(), "apply failed: {errors:?}");
    (lb, port)
}

/// Like [`lb_with`], with `timeouts` instead of the defaults.
pub async fn lb_with_timeouts(timeouts: corral_lb::Timeouts, config: impl FnOnce(u16) -> LbConfig) -> (LoadBalancer, u16) {
    let lb = LoadBalancer::with_timeouts(LOCALHOST, 2, timeouts);
    let port = free_port();
    let errors = lb.apply(&config(port)).await;
    assert!(errors.is_empty(), "apply failed: {errors:?}");
    (lb, port)
}
