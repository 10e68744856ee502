//! HTTP/1.1 reverse proxying for one accepted client connection.
//!
//! The proxy speaks HTTP/1.1 itself on both sides (heads and framing in [`crate::codec`]): it
//! reads a request head into the connection's buffer, writes the forwarded head (and a small
//! body) to a backend connection in one write, reads the response head and writes the client's
//! head with the start of the body in one write, then copies the rest of each body through as it
//! comes, following its framing only to find where it ends. Both sides stay keep-alive. A small
//! request costs one read and one write on each side.
//!
//! The zero-failure rule lives here: a request is retried on another backend whenever the
//! failed attempt certainly did not reach the application (connect failed, or the pooled
//! connection died before the request was written), and, for idempotent methods, also when the
//! backend closed the connection without answering. Bodies up to [`RETRY_BODY_LIMIT`] are read
//! whole before the first attempt so they can be resent; larger ones stream through and can be
//! resent only as long as no more than that first part was sent.
//!
//! No wait is unbounded ([`Timeouts`]): a request head must arrive whole within its time (a
//! total); a request body must keep a pace, a minimum number of bytes per window, so a client
//! that stalls or trickles is answered 408 and closed whether or not part of the body already
//! went to a backend, while an upload of any length that keeps moving passes; a write to a
//! client that does not read, and every wait on a backend, are idle timeouts (a backend that
//! never answers gets the client a 504). Each bound is set only when the I/O has to wait, on one
//! timer per side of the connection.
//!
//! A protocol upgrade (WebSocket) is routed like any request but goes on a new backend
//! connection and is never resent once written. When the backend answers `101 Switching
//! Protocols`, the client gets that head and the connection becomes a tunnel: bytes are copied
//! both ways, starting with any either side sent right after its head, until one side closes;
//! then the other gets the close and, after at most [`TUNNEL_CLOSE_GRACE`], both are closed.
//! A tunnel has no idle timeout of its own, only TCP's (a write the peer never acknowledges
//! fails): WebSocket applications ping at their own pace. It outlives a config change that removes its backend or its listener, like a
//! TCP-mode connection; only the proxy's shutdown cuts it after [`crate::SHUTDOWN_GRACE`].

use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::backends::Backend;
use crate::codec::{self, BodyReader, ClientFraming, Framing, Reject, RequestHead};
use crate::config::Timeouts;
use crate::router::normalize_host;
use crate::table::Table;
use crate::upstream::Upstream;

/// Request bodies up to this size are held in memory so a failed attempt can be resent.
pub const RETRY_BODY_LIMIT: usize = 64 * 1024;
/// Spare room each read gets: a read that does not fill it tells the reactor the socket is
/// drained, so the next wait costs no system call.
const READ_CHUNK: usize = 16 * 1024;
/// When the proxy closes a connection whose request body it did not read, it reads and throws
/// away up to this much for up to [`LINGER`], so its response is not lost to a reset.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER: Duration = Duration::from_secs(1);
/// Once one side of a tunnel has closed, how long the other may go on sending before both are
/// closed. A WebSocket peer closes its socket right after the close handshake; this only bounds
/// a peer that never does.
pub(crate) const TUNNEL_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One client connection, its reused buffers and its timers.
struct Client<'t> {
    stream: TcpStream,
    peer: SocketAddr,
    /// The peer's address as an `X-Forwarded-For` value, formatted once per connection.
    peer_ip: Vec<u8>,
    tables: Arc<ArcSwap<Table>>,
    drain: watch::Receiver<bool>,
    /// Bytes read from the client: the current request's head and body, then whatever the
    /// client sent after it (a pipelined request).
    buf: Vec<u8>,
    /// The head forwarded to the backend, followed by the body when it is small.
    fwd: Vec<u8>,
    /// What goes to the client next.
    out: Vec<u8>,
    timeouts: Timeouts,
    /// Bounds every wait on the client, and `backend_timer` every wait on a backend: one timer
    /// each for the connection's life, moved before each wait that needs it. Moving a
    /// registered tokio timer later touches no timer wheel, so a wait costs a clock read.
    client_timer: Pin<&'t mut Sleep>,
    backend_timer: Pin<&'t mut Sleep>,
}

/// Where a request ended up.
enum Outcome {
    /// Answered; the client connection may take the next request. `consumed` bytes of the
    /// buffer were the request.
    KeepAlive { consumed: usize },
    /// Answered (or the client is gone); close the connection. `unread_body`: the request body
    /// was not read to its end.
    Close { unread_body: bool },
}

/// Serves one client connection until it closes. When `drain` turns true (listener removed or
/// proxy shutting down) the request in flight finishes and the connection then closes.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, tables: Arc<ArcSwap<Table>>, drain: watch::Receiver<bool>, timeouts: Timeouts) {
    let mut client = Client {
        stream,
        peer,
        peer_ip: peer.ip().to_string().into_bytes(),
        tables,
        drain,
        buf: Vec::with_capacity(READ_CHUNK),
        fwd: Vec::with_capacity(1024),
        out: Vec::with_capacity(READ_CHUNK),
        timeouts,
        client_timer: pin!(tokio::time::sleep(timeouts.request_head)),
        backend_timer: pin!(tokio::time::sleep(timeouts.backend_idle)),
    };
    client.run().await;
}

/// Awaits `io` unless the time `deadline` gives passes first (None). `deadline` is asked, and
/// `timer` moved to it, only once `io` has to wait: I/O that is ready at once, as most is on a
/// busy proxy, costs no clock read and no timer work.
async fn before<F: Future>(mut timer: Pin<&mut Sleep>, deadline: impl FnOnce() -> Instant, io: F) -> Option<F::Output> {
    let mut io = pin!(io);
    let mut deadline = Some(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(out) = io.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if let Some(deadline) = deadline.take() {
            timer.as_mut().reset(deadline());
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// A deadline `limit` after it is asked for: for [`before`], a bound on one wait.
fn within(limit: Duration) -> impl FnOnce() -> Instant {
    move || Instant::now() + limit
}

/// How a request body keeps pace: each window of [`Timeouts::client_idle`] must bring
/// [`Timeouts::body_min_bytes`]. A window starts when the proxy first waits for the body, and
/// again at the first wait after the previous one got its due, so a body that arrives without
/// waits never reads the clock.
#[derive(Default)]
struct Pace {
    deadline: Option<Instant>,
    owed: u64,
}

impl Pace {
    fn deadline(&mut self, t: &Timeouts) -> Instant {
        match self.deadline {
            Some(deadline) => deadline,
            None => {
                let deadline = Instant::now() + t.client_idle;
                self.deadline = Some(deadline);
                self.owed = t.body_min_bytes;
                deadline
            }
        }
    }

    fn received(&mut self, n: usize) {
        if self.deadline.is_some() {
            match self.owed.checked_sub(n as u64) {
                Some(owed) if owed > 0 => self.owed = owed,
                _ => self.deadline = None,
            }
        }
    }

    /// After the proxy itself kept the client waiting (a backend slow to take the body): the
    /// client is not blamed for that time.
    fn forgive_if_past(&mut self) {
        if self.deadline.is_some_and(|d| d <= Instant::now()) {
            self.deadline = None;
        }
    }

    fn stalled(t: &Timeouts) -> String {
        format!(
            "408 Request Timeout: the request body stalled: less than {} bytes of it arrived in {:?}; send it without pausing\n",
            t.body_min_bytes, t.client_idle
        )
    }
}

impl Client<'_> {
    async fn run(&mut self) {
        loop {
            let Some(head) = self.read_head().await else {
                return;
            };
            match self.proxy(&head).await {
                Outcome::KeepAlive { consumed } => {
                    self.buf.drain(..consumed);
                }
                Outcome::Close { unread_body } => {
                    self.close(unread_body).await;
                    return;
                }
            }
        }
    }

    /// The next request head, or None when the connection should close (client closed or sent
    /// garbage, which has been answered, timeout, or draining while idle).
    async fn read_head(&mut self) -> Option<RequestHead> {
        let mut timer_set = false;
        loop {
            if !self.buf.is_empty() {
                match codec::parse_request(&self.buf, &self.peer_ip, &mut self.fwd) {
                    Ok(Some(head)) => return Some(head),
                    Ok(None) => {}
                    Err(reject) => {
                        tracing::debug!(peer = %self.peer, status = reject.status, reason = %reject.reason, "bad request");
                        self.reject(reject).await;
                        return None;
                    }
                }
            }
            if !timer_set {
                self.client_timer.as_mut().reset(Instant::now() + self.timeouts.request_head);
                timer_set = true;
            }
            reserve(&mut self.buf);
            let idle = self.buf.is_empty();
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buf) => match read {
                    Ok(0) => {
                        if !idle {
                            tracing::debug!(peer = %self.peer, "client closed in the middle of a request head");
                        }
                        return None;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(peer = %self.peer, error = %err, "client connection failed");
                        return None;
                    }
                },
                // Only ever set to true; a dropped sender means the listener is gone, so drain too.
                _ = self.drain.changed(), if idle => return None,
                _ = self.client_timer.as_mut() => {
                    if !idle {
                        let reject = Reject {
                            status: 408,
                            reason: format!("the request head did not arrive within {:?}", self.timeouts.request_head),
                        };
                        self.reject(reject).await;
                    }
                    return None;
                }
            }
        }
    }

    /// Answers a request that could not be parsed, and closes.
    async fn reject(&mut self, reject: Reject) {
        let body = format!("{} {}: {}\n", reject.status, codec::reason_phrase(reject.status), reject.reason);
        codec::write_text_response(&mut self.out, reject.status, &body, true, false, false);
        let _ = self.write_out().await;
        self.close(true).await;
    }

    /// Writes `self.out` to the client. False when that failed or the client did not take it
    /// within [`Timeouts::client_idle`] (a client that does not read holds nothing for long).
    async fn write_out(&mut self) -> bool {
        let wrote = before(self.client_timer.as_mut(), within(self.timeouts.client_idle), self.stream.write_all(&self.out)).await;
        match wrote {
            Some(Ok(())) => true,
            Some(Err(_)) => false,
            None => {
                tracing::debug!(peer = %self.peer, timeout = ?self.timeouts.client_idle, "client did not read the response; closing");
                false
            }
        }
    }

    async fn close(&mut self, unread_body: bool) {
        let _ = self.stream.shutdown().await;
        if unread_body {
            // Closing a socket with unread input sends a reset, which can destroy the response
            // before the client has read it.
            let _ = tokio::time::timeout(LINGER, async {
                let mut total = 0;
                let mut scratch = [0u8; 8192];
                while total < LINGER_BYTES {
                    match self.stream.read(&mut scratch).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
        }
    }

    fn draining(&self) -> bool {
        self.drain.has_changed().unwrap_or(true)
    }

    /// A part of the request head (method, path) as logs and error pages show it.
    fn part(&self, range: &std::ops::Range<usize>) -> String {
        String::from_utf8_lossy(&self.buf[range.clone()]).into_owned()
    }

    /// The host as error pages show it.
    fn shown_host(&self, head: &RequestHead) -> String {
        head.host.as_ref().and_then(|h| std::str::from_utf8(&self.buf[h.clone()]).ok()).map(normalize_host).unwrap_or_default()
    }

    /// Answers with the proxy's own page. `body_done`: the request body has been read, so the
    /// connection can take another request.
    async fn answer(&mut self, head: &RequestHead, status: u16, body: &str, body_done: Option<usize>) -> Outcome {
        let keep_alive = body_done.is_some() && head.keep_alive && !self.draining();
        codec::write_text_response(&mut self.out, status, body, !head.head_method, keep_alive, head.http10);
        if !self.write_out().await {
            return Outcome::Close { unread_body: false };
        }
        match body_done {
            Some(consumed) if keep_alive => Outcome::KeepAlive { consumed },
            _ => Outcome::Close { unread_body: body_done.is_none() },
        }
    }

    async fn no_backend(&mut self, head: &RequestHead, body_done: Option<usize>) -> Outcome {
        let body = format!("503 Service Unavailable: no backend is up for host {} path {}\n", self.shown_host(head), self.part(&head.path));
        self.answer(head, 503, &body, body_done).await
    }

    fn route(&self, head: &RequestHead) -> Option<(Arc<Table>, usize)> {
        let table = self.tables.load_full();
        let host = head.host.as_ref().and_then(|h| std::str::from_utf8(&self.buf[h.clone()]).ok());
        let path = std::str::from_utf8(&self.buf[head.path.clone()]).unwrap_or("/");
        let route = table.router.route(host, path)?;
        Some((table, route))
    }

    async fn proxy(&mut self, head: &RequestHead) -> Outcome {
        // Answer 404/503 before reading a body that would only be thrown away.
        let no_body = (head.framing == Framing::Empty).then_some(head.head_len);
        match self.route(head) {
            None => {
                let body = format!("404 Not Found: no rule matches host {} path {}\n", self.shown_host(head), self.part(&head.path));
                return self.answer(head, 404, &body, no_body).await;
            }
            Some((table, i)) if table.pools[i].is_empty() => return self.no_backend(head, no_body).await,
            Some(_) => {}
        }

        // The body's first part (all of a small one) is read before any backend is tried.
        let mut reader = BodyReader::new(head.framing);
        let mut body_end = head.head_len;
        let mut pace = Pace::default();
        match self.buffer_body(head, &mut reader, &mut body_end, &mut pace).await {
            Ok(()) => {}
            Err(BodyError::ClientGone) => return Outcome::Close { unread_body: false },
            Err(BodyError::Invalid(reason)) => {
                let body = format!("400 Bad Request: {reason}\n");
                return self.answer(head, 400, &body, None).await;
            }
            Err(BodyError::Stalled) => return self.stalled(head).await,
        }
        let base_len = self.fwd.len();

        let mut tried: Vec<SocketAddr> = Vec::new();
        // A connection that died without answering says little about the backend itself, so the
        // one backend that failed that way may be tried once more when no other backend is left.
        let mut second_chance: Option<Arc<Backend>> = None;
        let mut second_chance_used = false;
        // Set once body bytes past the buffered part were sent: the body cannot be sent again.
        let mut streamed = false;
        loop {
            // Each attempt routes against the current table, so a retry follows a config change
            // that happened while the request was in flight.
            let done = reader.is_done().then_some(body_end);
            let Some((table, route)) = self.route(head) else {
                return self.no_backend(head, done).await;
            };
            let backend = match table.pools[route].pick(&tried) {
                Some(b) => b,
                None => match second_chance.take() {
                    Some(b) if !second_chance_used => {
                        second_chance_used = true;
                        b
                    }
                    _ => return self.no_backend(head, done).await,
                },
            };
            drop(table);
            if streamed {
                let body = format!(
                    "502 Bad Gateway: backend failed for host {} path {} and the request body (over {RETRY_BODY_LIMIT} bytes) cannot be resent\n",
                    self.shown_host(head),
                    self.part(&head.path)
                );
                return self.answer(head, 502, &body, None).await;
            }
            let pool = backend.pool.clone().expect("HTTP listeners build backends with a connection pool");
            let _guard = backend.track();

            self.fwd.truncate(base_len);
            codec::finish_request_head(&mut self.fwd, head.needs_host.then_some(&backend.host_line[..]));
            self.fwd.extend_from_slice(&self.buf[head.head_len..body_end]);

            // An idle connection first; a new one when there is none, or when the idle one turns
            // out to have closed before the request could be written to it. An upgrade always
            // takes a new one: an idle one can be closed by the backend just as the request
            // reaches it, and an upgrade that got no answer cannot be resent.
            let mut idle = if head.upgrade { None } else { pool.checkout() };
            let failure = loop {
                let reused = idle.is_some();
                let mut up = match idle.take() {
                    Some(up) => up,
                    None => match Upstream::connect(backend.addr).await {
                        Ok(up) => up,
                        Err(reason) => break Failure::Connect(reason),
                    },
                };
                let backend_idle = self.timeouts.backend_idle;
                let wrote = before(self.backend_timer.as_mut(), within(backend_idle), up.stream.write_all(&self.fwd)).await;
                match wrote {
                    Some(Ok(())) => {}
                    // Not all of it was written, so the backend cannot have acted on it.
                    Some(Err(_)) if reused => continue,
                    Some(Err(err)) => break Failure::DeadConnection(format!("writing the request failed: {err}")),
                    None => break Failure::TimedOut(format!("it did not take the request within {backend_idle:?}")),
                }
                if !reader.is_done() {
                    streamed = true;
                    match self.stream_body(&mut up, &mut reader, &mut body_end, &mut pace).await {
                        Ok(()) => {}
                        Err(StreamError::ClientGone) => return Outcome::Close { unread_body: false },
                        Err(StreamError::Invalid(reason)) => {
                            let body = format!("400 Bad Request: {reason}\n");
                            return self.answer(head, 400, &body, None).await;
                        }
                        Err(StreamError::Stalled) => return self.stalled(head).await,
                        Err(StreamError::Backend(err)) => break Failure::Fatal(format!("writing the request body failed: {err}")),
                        Err(StreamError::BackendTimedOut) => break Failure::TimedOut(format!("it did not take the request body within {backend_idle:?}")),
                    }
                }
                let draining = self.draining();
                let response = read_response_head(&mut up, head, draining, &mut self.out, self.backend_timer.as_mut(), backend_idle).await;
                match response {
                    Ok((resp, client)) => {
                        backend.mark_up();
                        backend.served();
                        if !tried.is_empty() {
                            tracing::debug!(backend = %backend.addr, retries = tried.len(), "request succeeded after retry");
                        }
                        if resp.switching {
                            self.tunnel(up, resp.head_len, body_end, backend.addr).await;
                            return Outcome::Close { unread_body: false };
                        }
                        let keep_alive = self.relay_response(up, resp, client, &pool).await;
                        return if keep_alive { Outcome::KeepAlive { consumed: body_end } } else { Outcome::Close { unread_body: false } };
                    }
                    Err(HeadError::Closed(reason)) if head.idempotent => break Failure::DeadConnection(reason),
                    Err(HeadError::Closed(reason) | HeadError::Invalid(reason)) => break Failure::Fatal(reason),
                    Err(HeadError::TimedOut(reason)) => break Failure::TimedOut(reason),
                }
            };
            tried.push(backend.addr);
            let method = self.part(&head.method);
            let (status, failed, reason) = match failure {
                Failure::Connect(reason) => {
                    backend.mark_down(&reason);
                    continue;
                }
                Failure::DeadConnection(reason) => {
                    tracing::debug!(backend = %backend.addr, error = %reason, %method, "backend connection closed without a response; retrying");
                    backend.record_error(&reason);
                    if second_chance.is_none() && !second_chance_used {
                        second_chance = Some(backend.clone());
                    }
                    continue;
                }
                Failure::Fatal(reason) => (502, "failed", reason),
                Failure::TimedOut(reason) => (504, "timed out", reason),
            };
            let path = self.part(&head.path);
            tracing::warn!(backend = %backend.addr, error = %reason, %method, %path, "backend {failed}; not retrying");
            backend.record_error(&reason);
            let body = format!(
                "{status} {}: backend {} {failed} for host {} path {path}: {reason}\n",
                codec::reason_phrase(status),
                backend.addr,
                self.shown_host(head),
            );
            let done = reader.is_done().then_some(body_end);
            return self.answer(head, status, &body, done).await;
        }
    }

    /// Reads the request body into the buffer up to [`RETRY_BODY_LIMIT`] (all of it, usually),
    /// leaving `body_end` where the part read ends.
    async fn buffer_body(&mut self, head: &RequestHead, reader: &mut BodyReader, body_end: &mut usize, pace: &mut Pace) -> Result<(), BodyError> {
        let mut continued = false;
        loop {
            *body_end += reader.skip(&self.buf[*body_end..]).map_err(|e| BodyError::Invalid(format!("the chunked request body is invalid: {e}")))?;
            if reader.is_done() || *body_end - head.head_len >= RETRY_BODY_LIMIT {
                return Ok(());
            }
            if head.expect_continue && !continued {
                continued = true;
                let wrote =
                    before(self.client_timer.as_mut(), within(self.timeouts.client_idle), self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")).await;
                if !matches!(wrote, Some(Ok(()))) {
                    return Err(BodyError::ClientGone);
                }
            }
            match self.read_body(pace).await {
                None => return Err(BodyError::Stalled),
                Some(Ok(0)) => return Err(BodyError::Invalid("the client closed the connection before the request body was complete".into())),
                Some(Ok(_)) => {}
                Some(Err(_)) => return Err(BodyError::ClientGone),
            }
        }
    }

    /// Reads more of the request body into the buffer. None: it did not keep `pace`.
    async fn read_body(&mut self, pace: &mut Pace) -> Option<std::io::Result<usize>> {
        reserve(&mut self.buf);
        let timeouts = self.timeouts;
        let read = before(self.client_timer.as_mut(), || pace.deadline(&timeouts), self.stream.read_buf(&mut self.buf)).await;
        if let Some(Ok(n)) = read {
            pace.received(n);
        }
        read
    }

    /// Copies the rest of a large request body from the client to the backend.
    async fn stream_body(&mut self, up: &mut Upstream, reader: &mut BodyReader, body_end: &mut usize, pace: &mut Pace) -> Result<(), StreamError> {
        let start = *body_end;
        loop {
            self.buf.truncate(start);
            match self.read_body(pace).await {
                None => return Err(StreamError::Stalled),
                Some(Ok(0) | Err(_)) => return Err(StreamError::ClientGone),
                Some(Ok(_)) => {}
            }
            let used = reader.skip(&self.buf[start..]).map_err(|e| StreamError::Invalid(format!("the chunked request body is invalid: {e}")))?;
            let wrote = before(self.backend_timer.as_mut(), within(self.timeouts.backend_idle), up.stream.write_all(&self.buf[start..start + used])).await;
            match wrote {
                Some(Ok(())) => {}
                Some(Err(err)) => return Err(StreamError::Backend(err)),
                None => return Err(StreamError::BackendTimedOut),
            }
            if reader.is_done() {
                *body_end = start + used;
                return Ok(());
            }
            pace.forgive_if_past();
        }
    }

    /// Answers a request whose body did not keep pace, and closes.
    async fn stalled(&mut self, head: &RequestHead) -> Outcome {
        tracing::debug!(peer = %self.peer, timeout = ?self.timeouts.client_idle, "request body stalled");
        let body = Pace::stalled(&self.timeouts);
        self.answer(head, 408, &body, None).await
    }

    /// Relays an upgraded connection: the 101 head (in `self.out`) and whatever the backend sent
    /// after it to the client, whatever the client sent after its request (from `client_from` in
    /// its buffer) to the backend, then everything both ways until one side closes. The backend
    /// connection is closed with it, never pooled.
    async fn tunnel(&mut self, mut up: Upstream, head_len: usize, client_from: usize, backend: SocketAddr) {
        self.out.extend_from_slice(&up.buf[head_len..]);
        if self.stream.write_all(&self.out).await.is_err() {
            return;
        }
        if client_from < self.buf.len() && up.stream.write_all(&self.buf[client_from..]).await.is_err() {
            return;
        }
        tracing::debug!(peer = %self.peer, %backend, "connection upgraded; tunnelling");
        let (mut client_read, mut client_write) = self.stream.split();
        let (mut up_read, mut up_write) = up.stream.split();
        let to_backend = relay_until_closed(&mut client_read, &mut up_write);
        let to_client = relay_until_closed(&mut up_read, &mut client_write);
        tokio::pin!(to_backend, to_client);
        let ((sent, received), closed_by) = tokio::select! {
            sent = &mut to_backend => {
                let received = tokio::time::timeout(TUNNEL_CLOSE_GRACE, to_client).await;
                ((sent, received.unwrap_or(0)), "client")
            }
            received = &mut to_client => {
                let sent = tokio::time::timeout(TUNNEL_CLOSE_GRACE, to_backend).await;
                ((sent.unwrap_or(0), received), "backend")
            }
        };
        tracing::debug!(peer = %self.peer, %backend, sent, received, closed_by, "tunnel closed");
    }

    /// Sends the response head (in `self.out`) and body to the client. Returns whether the
    /// client connection stays open; the backend connection goes back to its idle stack when
    /// the response was read to its end and the backend keeps it open.
    async fn relay_response(&mut self, mut up: Upstream, resp: codec::ResponseHead, client: ClientFraming, pool: &Arc<crate::upstream::IdlePool>) -> bool {
        let mut reader = BodyReader::new(resp.framing);
        let mut pos = resp.head_len;
        loop {
            match reader.feed(&up.buf[pos..], &mut self.out, client.dechunk) {
                Ok(used) => pos += used,
                Err(err) => {
                    tracing::debug!(error = err, "backend sent an invalid chunked body; cutting the response");
                    return false;
                }
            }
            if reader.is_done() {
                break;
            }
            if !self.out.is_empty() {
                if !self.write_out().await {
                    return false;
                }
                self.out.clear();
            }
            up.buf.clear();
            pos = 0;
            reserve(&mut up.buf);
            let backend_idle = self.timeouts.backend_idle;
            let read = before(self.backend_timer.as_mut(), within(backend_idle), up.stream.read_buf(&mut up.buf)).await;
            match read {
                Some(Ok(0)) if reader == BodyReader::Close => break,
                Some(Ok(0) | Err(_)) => {
                    tracing::debug!("backend closed the connection in the middle of a response body; cutting the response");
                    return false;
                }
                Some(Ok(_)) => {}
                None => {
                    tracing::debug!(timeout = ?backend_idle, "backend stalled in the middle of a response body; cutting the response");
                    return false;
                }
            }
        }
        if !self.write_out().await {
            return false;
        }
        // Bytes after the response would be an answer to no request: the connection is broken.
        if resp.reusable && pos == up.buf.len() {
            pool.checkin(up);
        }
        client.keep_alive
    }
}

/// Copies until `from` closes or fails, then passes the close on to `to`. Returns the bytes
/// copied.
async fn relay_until_closed<R, W>(from: &mut R, to: &mut W) -> u64
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut copied = 0;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                copied += n as u64;
            }
        }
    }
    let _ = to.shutdown().await;
    copied
}

/// Reads the final response head into `up.buf` (skipping interim 1xx responses) and writes the
/// client's head into `out`. Each read may wait up to `limit`.
async fn read_response_head(
    up: &mut Upstream,
    req: &RequestHead,
    draining: bool,
    out: &mut Vec<u8>,
    mut timer: Pin<&mut Sleep>,
    limit: Duration,
) -> Result<(codec::ResponseHead, ClientFraming), HeadError> {
    up.buf.clear();
    loop {
        if !up.buf.is_empty() {
            match codec::parse_response(&up.buf, req, draining, out) {
                Ok(Some((head, _))) if head.interim => {
                    up.buf.drain(..head.head_len);
                    continue;
                }
                Ok(Some(parsed)) => return Ok(parsed),
                Ok(None) => {}
                Err(reason) => return Err(HeadError::Invalid(reason)),
            }
        }
        reserve(&mut up.buf);
        let Some(read) = before(timer.as_mut(), within(limit), up.stream.read_buf(&mut up.buf)).await else {
            return Err(HeadError::TimedOut(format!("it sent no response within {limit:?}")));
        };
        match read {
            Ok(0) if up.buf.is_empty() => return Err(HeadError::Closed("the backend closed the connection without a response".into())),
            Ok(0) => return Err(HeadError::Closed("the backend closed the connection in the middle of its response head".into())),
            Ok(_) => {}
            Err(err) => {
                let reason = format!("reading the response failed: {err}");
                return Err(
                    if matches!(err.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof) {
                        HeadError::Closed(reason)
                    } else {
                        HeadError::Invalid(reason)
                    },
                );
            }
        }
    }
}

/// Makes room for a read that can come back short (see [`READ_CHUNK`]).
fn reserve(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
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
    /// The backend stopped moving for [`Timeouts::backend_idle`]; retrying could run the
    /// request twice.
    TimedOut(String),
}

enum HeadError {
    /// The connection ended before a response: the request may or may not have been processed.
    Closed(String),
    /// The backend answered something that is not HTTP, or the read failed oddly.
    Invalid(String),
    TimedOut(String),
}

enum BodyError {
    ClientGone,
    Invalid(String),
    /// The body did not keep its [`Pace`].
    Stalled,
}

enum StreamError {
    ClientGone,
    Invalid(String),
    Stalled,
    Backend(std::io::Error),
    BackendTimedOut,
}

#[cfg(test)]
mod tests {
    //! The default timeouts, on tokio's paused clock: the proxy's connection task, a client and a
    //! backend share one runtime and real loopback sockets, and the clock jumps to the next timer
    //! whenever all three wait, so minutes pass in milliseconds.

    use super::*;
    use crate::config::{Listener, Mode, Route};
    use tokio::net::TcpListener;

    const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

    /// A backend that answers each request `200 ok` once it has its Content-Length body.
    async fn backend() -> SocketAddr {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                        if let Some(head_end) = text.find("\r\n\r\n").map(|i| i + 4) {
                            let len: usize = text[..head_end].lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
                            if buf.len() >= head_end + len {
                                buf.drain(..head_end + len);
                                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                                if s.write_all(answer).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    /// A proxy serving every connection on one port with `Timeouts::default()`, routing to
    /// `backend`.
    async fn proxy(backend: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Listener { port: addr.port(), mode: Mode::Http, routes: vec![Route { host: None, path_prefix: None, backends: vec![backend] }] };
        let tables = Arc::new(ArcSwap::from_pointee(Table::build(&config, None)));
        let (drain_tx, drain) = watch::channel(false);
        tokio::spawn(async move {
            let _keep_open = drain_tx;
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve(stream, peer, tables.clone(), drain.clone(), Timeouts::default()));
            }
        });
        addr
    }

    /// Sends `first`, then `more` one piece every `every` (while the proxy takes them), and
    /// returns what the proxy answered and how long after `first` it closed the connection.
    async fn client(proxy: SocketAddr, first: &[u8], more: Vec<Vec<u8>>, every: Duration) -> (String, Duration) {
        let start = Instant::now();
        let (mut rd, mut wr) = TcpStream::connect(proxy).await.unwrap().into_split();
        wr.write_all(first).await.unwrap();
        tokio::spawn(async move {
            for piece in more {
                tokio::time::sleep(every).await;
                if wr.write_all(&piece).await.is_err() {
                    return;
                }
            }
            // Stays open, silent, until the proxy closes.
            std::future::pending::<()>().await;
        });
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3600), rd.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out).into_owned();
        assert!(closed.is_ok(), "the proxy still held the connection after an hour, having sent {out:?}");
        (out, start.elapsed())
    }

    fn upload_head(len: usize, extra: &str) -> Vec<u8> {
        format!("PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n{extra}\r\n").into_bytes()
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_a_stalled_head_or_body_is_cut_after_30_seconds() {
        let proxy = proxy(backend().await).await;
        let t = Timeouts::default();
        for (first, says) in [
            (b"GET / HTTP/1.1\r\nHost:".to_vec(), "head did not arrive within 30s"),
            ([upload_head(100_000, ""), b"the start".to_vec()].concat(), "less than 1024 bytes of it arrived in 30s"),
        ] {
            let (out, after) = client(proxy, &first, Vec::new(), Duration::ZERO).await;
            assert!(out.starts_with("HTTP/1.1 408 ") && out.contains(says), "{out}");
            assert!(after >= t.request_head && after < t.request_head + Duration::from_secs(1), "{after:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_a_trickling_body_is_cut_and_a_slow_steady_one_is_not() {
        let proxy = proxy(backend().await).await;
        // 10 bytes a second: 300 in a 30 s window, short of the 1024 due.
        let (out, after) = client(proxy, &upload_head(100_000, ""), vec![vec![b'x'; 10]; 1000], Duration::from_secs(1)).await;
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert!(after >= Duration::from_secs(30) && after < Duration::from_secs(31), "{after:?}");

        // 100 bytes every 2 s: 1500 a window, for four minutes in all.
        let first = upload_head(12_000, "Connection: close\r\n");
        let (out, after) = client(proxy, &first, vec![vec![b'y'; 100]; 120], Duration::from_secs(2)).await;
        assert!(out.starts_with("HTTP/1.1 200 ") && out.ends_with("ok"), "{out}");
        assert!(after >= Duration::from_secs(240), "{after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_a_silent_backend_is_504_after_60_seconds() {
        let silent = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let proxy = proxy(silent.local_addr().unwrap()).await;
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = silent.accept().await {
                tokio::spawn(async move { while s.read(&mut [0u8; 1024]).await.is_ok_and(|n| n > 0) {} });
            }
        });
        let (out, after) = client(proxy, b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", Vec::new(), Duration::ZERO).await;
        assert!(out.starts_with("HTTP/1.1 504 ") && out.contains("sent no response within 60s"), "{out}");
        assert!(after >= Duration::from_secs(60) && after < Duration::from_secs(61), "{after:?}");
    }
}
