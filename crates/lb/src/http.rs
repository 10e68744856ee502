//! HTTP/1.1 reverse proxying for one accepted client connection.
//!
//! The zero-failure rule lives here: a request is retried on another backend whenever the
//! failed attempt certainly did not reach the application (connect failed, or the pooled
//! connection died before the request was written), and, for idempotent methods, also when the
//! backend closed the connection without answering. Bodies up to [`RETRY_BODY_LIMIT`] are
//! buffered so they can be resent; larger ones stream through and get a single attempt.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::backends::{ActiveGuard, Backend, BoxError, ProxyBody};
use crate::router::normalize_host;
use crate::table::Table;

/// Request bodies up to this size are held in memory so a failed attempt can be resent.
pub const RETRY_BODY_LIMIT: usize = 64 * 1024;

/// Serves one client connection until it closes. When `drain` turns true (listener removed or
/// proxy shutting down) the request in flight finishes and the connection then closes.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tables: Arc<ArcSwap<Table>>,
    mut drain: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let tables = tables.clone();
        async move { Ok::<_, Infallible>(handle(req, peer, &tables).await) }
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

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    tables: &ArcSwap<Table>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let raw_host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let path = parts.uri.path().to_owned();
    let shown_host = raw_host.as_deref().map(normalize_host).unwrap_or_default();

    // Answer 404/503 before reading a body that would only be thrown away.
    {
        let table = tables.load();
        match table.router.route(raw_host.as_deref(), &path) {
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("404 Not Found: no rule matches host {shown_host} path {path}\n"),
                )
            }
            Some(i) if table.pools[i].is_empty() => return no_backend(&shown_host, &path),
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

    prepare_request_headers(&mut parts.headers, raw_host.as_deref(), peer);
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();

    let mut tried: Vec<SocketAddr> = Vec::new();
    // A dead pooled connection says nothing about the backend itself, so the one backend that
    // failed that way may be tried once more when no other backend is left.
    let mut second_chance: Option<Arc<Backend>> = None;
    let mut second_chance_used = false;
    loop {
        // Each attempt routes against the current table, so a retry follows a config change
        // that happened while the request was in flight.
        let table = tables.load_full();
        let Some(route) = table.router.route(raw_host.as_deref(), &path) else {
            return no_backend(&shown_host, &path);
        };
        let backend = match table.pools[route].pick(&tried) {
            Some(b) => b,
            None => match second_chance.take() {
                Some(b) if !second_chance_used => {
                    second_chance_used = true;
                    b
                }
                _ => return no_backend(&shown_host, &path),
            },
        };
        drop(table);

        let Some(attempt_body) = body.for_attempt() else {
            // The streamed body went with the failed attempt; nothing left to resend.
            return text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "502 Bad Gateway: backend failed for host {shown_host} path {path} and the request body (over {RETRY_BODY_LIMIT} bytes) cannot be resent\n"
                ),
            );
        };
        let mut out = Request::new(attempt_body);
        *out.method_mut() = parts.method.clone();
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = parts.headers.clone();
        *out.uri_mut() = match Uri::builder()
            .scheme("http")
            .authority(backend.addr.to_string())
            .path_and_query(path_and_query.as_str())
            .build()
        {
            Ok(u) => u,
            Err(err) => return text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {err}\n")),
        };

        let client = backend
            .client
            .as_ref()
            .expect("HTTP listeners build backends with a client");
        let guard = backend.track();
        match client.request(out).await {
            Ok(resp) => {
                backend.mark_up();
                backend.served();
                if !tried.is_empty() {
                    tracing::debug!(backend = %backend.addr, retries = tried.len(), "request succeeded after retry");
                }
                return relay_response(resp, guard);
            }
            Err(err) => {
                let reason = describe(&err);
                tried.push(backend.addr);
                match classify(&err, idempotent) {
                    Failure::Connect => {
                        backend.mark_down(&reason);
                    }
                    Failure::DeadConnection => {
                        tracing::debug!(backend = %backend.addr, error = %reason, method = %parts.method, "pooled connection died before a response; retrying");
                        backend.record_error(&reason);
                        if second_chance.is_none() && !second_chance_used {
                            second_chance = Some(backend.clone());
                        }
                    }
                    Failure::Fatal => {
                        tracing::warn!(backend = %backend.addr, error = %reason, method = %parts.method, %path, "backend failed; not retrying");
                        backend.record_error(&reason);
                        return text(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "502 Bad Gateway: backend {} failed for host {shown_host} path {path}: {reason}\n",
                                backend.addr
                            ),
                        );
                    }
                }
            }
        }
    }
}

enum Failure {
    /// Never reached the backend: mark it down, try another.
    Connect,
    /// The request cannot have been processed (or is idempotent): try another backend.
    DeadConnection,
    /// Retrying could run the request twice, or the backend answered garbage.
    Fatal,
}

fn classify(err: &hyper_util::client::legacy::Error, idempotent: bool) -> Failure {
    if err.is_connect() {
        return Failure::Connect;
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            // Canceled: hyper never wrote the request because the connection was already gone.
            if h.is_canceled() {
                return Failure::DeadConnection;
            }
            if idempotent
                && (h.is_incomplete_message() || h.is_closed() || h.is_body_write_aborted())
            {
                return Failure::DeadConnection;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if idempotent
                && matches!(
                    io.kind(),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                )
            {
                return Failure::DeadConnection;
            }
        }
        source = e.source();
    }
    Failure::Fatal
}

/// The whole error chain, since hyper-util's own message ("client error (Connect)") hides the
/// cause an operator needs.
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

fn prepare_request_headers(headers: &mut HeaderMap, raw_host: Option<&str>, peer: SocketAddr) {
    strip_hop_by_hop(headers);
    let client_ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client_ip}"),
        _ => client_ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(v) = raw_host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

fn relay_response(resp: Response<Incoming>, guard: ActiveGuard) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Tracked {
        inner: body,
        _guard: guard,
    };
    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
}

fn no_backend(host: &str, path: &str) -> Response<ProxyBody> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 Service Unavailable: no backend is up for host {host} path {path}\n"),
    )
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn full(data: Bytes) -> ProxyBody {
    Full::new(data)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

enum RequestBody {
    Buffered {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Taken by the first attempt.
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

    fn for_attempt(&mut self) -> Option<ProxyBody> {
        match self {
            RequestBody::Buffered {
                data,
                trailers: None,
            } => Some(full(data.clone())),
            RequestBody::Buffered {
                data,
                trailers: Some(t),
            } => {
                let frames = vec![
                    Ok::<_, BoxError>(Frame::data(data.clone())),
                    Ok(Frame::trailers(t.clone())),
                ];
                Some(StreamBody::new(stream::iter(frames)).boxed_unsync())
            }
            RequestBody::Streaming(body) => body.take(),
        }
    }
}

/// A response body that keeps its backend's in-flight count up until the body is done.
struct Tracked {
    inner: Incoming,
    _guard: ActiveGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
        prepare_request_headers(
            &mut h,
            Some("App.example:8080"),
            "192.0.2.7:5555".parse().unwrap(),
        );
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "App.example:8080");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = HeaderMap::new();
        prepare_request_headers(&mut h, None, "192.0.2.7:5555".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert!(h.get("x-forwarded-host").is_none());
    }
}
