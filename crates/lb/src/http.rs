//! HTTP/1.1 reverse proxying for one accepted client connection.
//!
//! The zero-failure rule lives here: a request is retried on another backend whenever the
//! failed attempt certainly did not reach the application (connect failed, or the pooled
//! connection died before the request was written), and, for idempotent methods, also when the
//! backend closed the connection without answering. Bodies up to [`RETRY_BODY_LIMIT`] are
//! buffered so they can be resent; larger ones stream through and get a single attempt.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::backends::{BoxError, ProxyBody};
use crate::router::normalize_host;
use crate::table::Table;
use crate::upstream::{ConnectError, OutBody, Relayed, SendError, Upstream};

/// Request bodies up to this size are held in memory so a failed attempt can be resent.
pub const RETRY_BODY_LIMIT: usize = 64 * 1024;

/// What every request of one client connection shares.
struct Client {
    peer: SocketAddr,
    /// The peer's address as an `X-Forwarded-For` value, formatted once per connection.
    peer_ip: HeaderValue,
    tables: Arc<ArcSwap<Table>>,
}

/// Serves one client connection until it closes. When `drain` turns true (listener removed or
/// proxy shutting down) the request in flight finishes and the connection then closes.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tables: Arc<ArcSwap<Table>>,
    mut drain: watch::Receiver<bool>,
) {
    let client = Arc::new(Client {
        peer,
        peer_ip: ip_header(peer.ip()),
        tables,
    });
    let service = service_fn(move |req| {
        let client = client.clone();
        async move { Ok::<_, Infallible>(handle(req, &client).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(err) = res {
                    tracing::debug!(%peer, error = %err, "client connection ended with an error");
                }
                return;
            }
            // Only ever set to true; a dropped sender means the listener is gone, so drain too.
            _ = drain.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

fn ip_header(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value")
}

async fn handle(req: Request<Incoming>, client: &Client) -> Response<RespBody> {
    let (mut parts, body) = req.into_parts();
    let peer = client.peer;
    let tables = &client.tables;
    // The Host header, or the authority of an absolute-form request target.
    let host_value = parts
        .headers
        .get(header::HOST)
        .filter(|v| v.to_str().is_ok())
        .cloned()
        .or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
    let raw_host = host_value.as_ref().and_then(|v| v.to_str().ok());
    let path = parts.uri.path();
    let shown_host = || raw_host.map(normalize_host).unwrap_or_default();

    // Answer 404/503 before reading a body that would only be thrown away.
    {
        let table = tables.load();
        match table.router.route(raw_host, path) {
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "404 Not Found: no rule matches host {} path {path}\n",
                        shown_host()
                    ),
                )
            }
            Some(i) if table.pools[i].is_empty() => return no_backend(&shown_host(), path),
            Some(_) => {}
        }
    }

    let mut body = match RequestBody::read(body).await {
        Ok(b) => b,
        Err(err) => {
            tracing::debug!(%peer, error = %err, "client request body failed");
            return text(
                StatusCode::BAD_REQUEST,
                format!("400 Bad Request: reading the request body failed: {err}\n"),
            );
        }
    };

    let mut headers = std::mem::take(&mut parts.headers);
    prepare_request_headers(&mut headers, host_value.clone(), &client.peer_ip);
    let needs_host = !headers.contains_key(header::HOST);
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    // Backends get the origin form (`/path?query`), whatever form the client used.
    let target = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        parts.uri.clone()
    } else {
        parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from)
    };

    let mut tried: Vec<SocketAddr> = Vec::new();
    // A connection that died without answering says little about the backend itself, so the
    // one backend that failed that way may be tried once more when no other backend is left.
    let mut second_chance = None;
    let mut second_chance_used = false;
    loop {
        // Each attempt routes against the current table, so a retry follows a config change
        // that happened while the request was in flight.
        let table = tables.load_full();
        let Some(route) = table.router.route(raw_host, path) else {
            return no_backend(&shown_host(), path);
        };
        let backend = match table.pools[route].pick(&tried) {
            Some(b) => b,
            None => match second_chance.take() {
                Some(b) if !second_chance_used => {
                    second_chance_used = true;
                    b
                }
                _ => return no_backend(&shown_host(), path),
            },
        };
        drop(table);
        let pool = backend
            .pool
            .as_ref()
            .expect("HTTP listeners build backends with a connection pool");
        let guard = backend.track();

        // An idle connection first; a new one when there is none, or when the idle one turns
        // out to have closed before the request could be written to it.
        let mut reused = true;
        let mut up = pool.checkout().await;
        let failure = loop {
            let conn = match up.take() {
                Some(conn) => conn,
                None => {
                    reused = false;
                    match Upstream::connect(backend.addr).await {
                        Ok(conn) => conn,
                        Err(ConnectError(reason)) => break Failure::Connect(reason),
                    }
                }
            };
            let Some(attempt_body) = body.for_attempt() else {
                // The streamed body went with the failed attempt; nothing left to resend.
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "502 Bad Gateway: backend failed for host {} path {path} and the request body (over {RETRY_BODY_LIMIT} bytes) cannot be resent\n",
                        shown_host()
                    ),
                );
            };
            // Only a request that can be resent after it was written needs its headers kept.
            let out_headers = if idempotent {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            let mut out = Request::new(attempt_body);
            *out.method_mut() = parts.method.clone();
            *out.version_mut() = Version::HTTP_11;
            *out.uri_mut() = target.clone();
            *out.headers_mut() = out_headers;
            if needs_host {
                out.headers_mut()
                    .insert(header::HOST, backend.host_header.clone());
            }
            match conn.send(out).await {
                Ok((resp, conn)) => {
                    backend.mark_up();
                    backend.served();
                    if !tried.is_empty() {
                        tracing::debug!(backend = %backend.addr, retries = tried.len(), "request succeeded after retry");
                    }
                    return relay_response(resp, conn, pool.clone(), guard);
                }
                Err(SendError {
                    error,
                    unsent: Some(req),
                }) => {
                    // Never written: safe to send again, whatever the method.
                    let (req_parts, req_body) = req.into_parts();
                    if !idempotent {
                        headers = req_parts.headers;
                    }
                    body.restore(req_body);
                    if reused {
                        continue;
                    }
                    break Failure::DeadConnection(describe(&error));
                }
                Err(SendError {
                    error,
                    unsent: None,
                }) => break classify(&error, idempotent),
            }
        };
        drop(guard);
        tried.push(backend.addr);
        match failure {
            Failure::Connect(reason) => backend.mark_down(&reason),
            Failure::DeadConnection(reason) => {
                tracing::debug!(backend = %backend.addr, error = %reason, method = %parts.method, "backend connection closed without a response; retrying");
                backend.record_error(&reason);
                if second_chance.is_none() && !second_chance_used {
                    second_chance = Some(backend.clone());
                }
            }
            Failure::Fatal(reason) => {
                tracing::warn!(backend = %backend.addr, error = %reason, method = %parts.method, %path, "backend failed; not retrying");
                backend.record_error(&reason);
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "502 Bad Gateway: backend {} failed for host {} path {path}: {reason}\n",
                        backend.addr,
                        shown_host()
                    ),
                );
            }
        }
    }
}

/// Why an attempt failed, and so what to do next. Each carries the reason for the status.
enum Failure {
    /// Never reached the backend: mark it down, try another.
    Connect(String),
    /// The request cannot have been processed (or is idempotent): try another backend.
    DeadConnection(String),
    /// Retrying could run the request twice, or the backend answered garbage.
    Fatal(String),
}

/// A failure of a request that was (at least partly) written to the backend.
fn classify(err: &hyper::Error, idempotent: bool) -> Failure {
    let reason = describe(err);
    if !idempotent {
        return Failure::Fatal(reason);
    }
    if err.is_canceled()
        || err.is_incomplete_message()
        || err.is_closed()
        || err.is_body_write_aborted()
    {
        return Failure::DeadConnection(reason);
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return Failure::DeadConnection(reason);
            }
        }
        source = e.source();
    }
    Failure::Fatal(reason)
}

/// The whole error chain, since hyper's own message often hides the cause an operator needs.
fn describe(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

/// Connection-level headers (RFC 9110 §7.6.1): they describe one hop and must not be forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Almost no message has any: one pass over the names saves the lookups below.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `host` is the client's Host (or request-target authority); `peer_ip` the client's address.
fn prepare_request_headers(
    headers: &mut HeaderMap,
    host: Option<HeaderValue>,
    peer_ip: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    let xff = match headers.get(&X_FORWARDED_FOR) {
        Some(prev) if !prev.as_bytes().trim_ascii().is_empty() => {
            let mut v = BytesMut::with_capacity(prev.len() + 2 + peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer_ip.as_bytes());
            HeaderValue::from_maybe_shared(v.freeze()).ok()
        }
        _ => Some(peer_ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

fn relay_response(
    resp: Response<Incoming>,
    conn: Option<Upstream>,
    pool: Arc<crate::upstream::IdlePool>,
    guard: crate::backends::ActiveGuard,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        RespBody::Relayed(Relayed::new(body, conn, pool, guard)),
    )
}

fn no_backend(host: &str, path: &str) -> Response<RespBody> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 Service Unavailable: no backend is up for host {host} path {path}\n"),
    )
}

fn text(status: StatusCode, body: String) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::Text(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What the client gets: the proxy's own error page, or the backend's response.
// Unboxed on purpose: nearly every response is `Relayed`, and a box would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum RespBody {
    Text(Option<Bytes>),
    Relayed(Relayed),
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RespBody::Text(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RespBody::Relayed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Text(data) => data.is_none(),
            RespBody::Relayed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Text(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RespBody::Relayed(body) => body.size_hint(),
        }
    }
}

enum RequestBody {
    Buffered {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Taken by an attempt; put back only if that attempt never wrote it.
    Streaming(Option<ProxyBody>),
}

impl RequestBody {
    async fn read(mut body: Incoming) -> Result<Self, hyper::Error> {
        if body.is_end_stream() {
            return Ok(RequestBody::Buffered {
                data: Bytes::new(),
                trailers: None,
            });
        }
        if body.size_hint().lower() > RETRY_BODY_LIMIT as u64 {
            return Ok(RequestBody::Streaming(Some(
                body.map_err(BoxError::from).boxed_unsync(),
            )));
        }
        let mut buf = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > RETRY_BODY_LIMIT {
                        // A chunked body outgrew the limit: send what was read, then the rest.
                        let head =
                            stream::once(
                                async move { Ok::<_, BoxError>(Frame::data(buf.freeze())) },
                            );
                        let rest = TryStreamExt::map_err(BodyStream::new(body), BoxError::from);
                        let joined = StreamBody::new(head.chain(rest));
                        return Ok(RequestBody::Streaming(Some(joined.boxed_unsync())));
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        Ok(RequestBody::Buffered {
            data: buf.freeze(),
            trailers,
        })
    }

    fn for_attempt(&mut self) -> Option<OutBody> {
        match self {
            RequestBody::Buffered { data, trailers } => {
                Some(OutBody::full(data.clone(), trailers.clone()))
            }
            RequestBody::Streaming(body) => body.take().map(OutBody::Stream),
        }
    }

    /// Takes back the body of an attempt that was never written.
    fn restore(&mut self, body: OutBody) {
        if let (RequestBody::Streaming(slot), OutBody::Stream(body)) = (self, body) {
            *slot = Some(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_including_ones_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-app"], "kept");
    }

    #[test]
    fn forwarded_headers_are_set_and_xff_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        let peer_ip = ip_header("192.0.2.7".parse().unwrap());
        prepare_request_headers(
            &mut h,
            Some(HeaderValue::from_static("App.example:8080")),
            &peer_ip,
        );
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "App.example:8080");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = HeaderMap::new();
        prepare_request_headers(&mut h, None, &peer_ip);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert!(h.get("x-forwarded-host").is_none());
    }
}
