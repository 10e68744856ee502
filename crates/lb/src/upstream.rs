//! Connections to one backend, and the stack of idle ones kept for reuse.
//!
//! A backend connection has no task of its own: the request task that uses it drives it, first
//! while the request is written and the response head awaited, then (inside [`Relayed`], the
//! response body handed to the client connection) while the response body streams. A request
//! therefore costs no task hand-off and no cross-thread wake-up between the client side and
//! the backend side. When the response body has been read to its end and the connection can
//! take another request, it goes back on its backend's idle stack.
//!
//! An idle connection is polled by nobody, so a backend closing it is noticed only when it is
//! taken again: [`IdlePool::checkout`] polls it once and drops it if it has closed. Connections
//! idle for longer than [`POOL_IDLE_TIMEOUT`] are dropped, at checkout or by a small reaper task
//! that runs while the stack is not empty.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::backends::{ActiveGuard, ProxyBody, CONNECT_TIMEOUT};
use crate::shards;

/// Below common backend keep-alive timeouts (Node's 5 s), so the proxy usually closes an idle
/// connection before the backend does and rarely races a request against that close.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per backend and shard; more than this after a burst are closed.
const MAX_IDLE: usize = 512;
/// Idle stacks per backend. Each shard thread uses its own (shards beyond this share), so a
/// connection is taken again by the thread whose reactor watches it.
const STACKS: usize = 16;

type Conn = http1::Connection<TokioIo<TcpStream>, OutBody>;

/// One open HTTP/1.1 connection to a backend.
pub(crate) struct Upstream {
    sender: http1::SendRequest<OutBody>,
    conn: Conn,
}

/// Why a new connection could not be made; the backend never saw a request.
pub(crate) struct ConnectError(pub String);

/// A request that failed on a connection.
pub(crate) struct SendError {
    pub error: hyper::Error,
    /// The request when it was never written: it can be sent again anywhere.
    pub unsent: Option<Request<OutBody>>,
}

impl Upstream {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Result<Self, ConnectError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(err)) => return Err(ConnectError(format!("connect failed: {err}"))),
            Err(_) => {
                return Err(ConnectError(format!(
                    "connect timed out after {CONNECT_TIMEOUT:?}"
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        // The handshake does no I/O for HTTP/1; it only fails on a broken builder.
        match http1::Builder::new().handshake(TokioIo::new(stream)).await {
            Ok((sender, conn)) => Ok(Upstream { sender, conn }),
            Err(err) => Err(ConnectError(format!("connect failed: {err}"))),
        }
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile. On
    /// success the connection comes back with the response (unless it closed), to be driven by
    /// its body.
    pub(crate) async fn send(
        mut self,
        req: Request<OutBody>,
    ) -> Result<(Response<Incoming>, Option<Upstream>), SendError> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        let mut conn = Some(self.conn);
        let result = poll_fn(|cx| {
            if let Some(c) = conn.as_mut() {
                if let Poll::Ready(res) = Pin::new(c).poll(cx) {
                    if let Err(err) = res {
                        tracing::trace!(error = %err, "backend connection ended");
                    }
                    // Dropping the finished connection answers the request if it still waits:
                    // with its message when it was never written.
                    conn = None;
                }
            }
            response.as_mut().poll(cx)
        })
        .await;
        match result {
            // A connection that closed right after the response head is not reusable; the body
            // still gets whatever it delivered.
            Ok(resp) => Ok((
                resp,
                conn.map(|conn| Upstream {
                    sender: self.sender,
                    conn,
                }),
            )),
            Err(mut err) => Err(SendError {
                unsent: err.take_message(),
                error: err.into_error(),
            }),
        }
    }

    /// True when the connection is still open and can take a request now. Drives it once,
    /// which is how a close by the backend while it sat idle is noticed.
    fn poll_usable(&mut self, cx: &mut Context<'_>) -> bool {
        if Pin::new(&mut self.conn).poll(cx).is_ready() {
            return false;
        }
        self.sender.is_ready()
    }
}

/// The idle connections of one backend, per shard, most recently used on top.
#[derive(Default)]
pub(crate) struct IdlePool {
    stacks: [Mutex<Vec<Idle>>; STACKS],
    reaper_running: AtomicBool,
}

struct Idle {
    up: Upstream,
    since: Instant,
}

impl IdlePool {
    /// An idle connection that is still open, if there is one.
    pub(crate) async fn checkout(&self) -> Option<Upstream> {
        let stack = self.stack();
        loop {
            let idle = stack.lock().unwrap().pop()?;
            if idle.since.elapsed() >= POOL_IDLE_TIMEOUT {
                continue;
            }
            let mut up = idle.up;
            if poll_fn(|cx| Poll::Ready(up.poll_usable(cx))).await {
                return Some(up);
            }
        }
    }

    fn checkin(self: &Arc<Self>, up: Upstream) {
        let start_reaper = {
            let mut idle = self.stack().lock().unwrap();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(Idle {
                up,
                since: Instant::now(),
            });
            !self.reaper_running.load(Ordering::Relaxed)
                && !self.reaper_running.swap(true, Ordering::AcqRel)
        };
        if start_reaper {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(reap(Arc::downgrade(self)));
                }
                Err(_) => self.reaper_running.store(false, Ordering::Release),
            }
        }
    }

    fn stack(&self) -> &Mutex<Vec<Idle>> {
        &self.stacks[shards::current() % STACKS]
    }
}

/// Closes connections idle for longer than the timeout; ends when the stack is empty or the
/// backend is gone (which closed them all).
async fn reap(pool: Weak<IdlePool>) {
    loop {
        tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut expired = Vec::new();
        let mut left = 0;
        for stack in &pool.stacks {
            let mut idle = stack.lock().unwrap();
            // Oldest at the bottom: the expired ones are a prefix.
            let n = idle.partition_point(|i| i.since.elapsed() >= POOL_IDLE_TIMEOUT);
            expired.extend(idle.drain(..n));
            left += idle.len();
        }
        // Closing sockets outside the locks.
        drop(expired);
        if left == 0 {
            pool.reaper_running.store(false, Ordering::Release);
            // A check-in between the count and the store above would find the reaper still
            // marked running: take the job back if that happened.
            if pool.stacks.iter().all(|s| s.lock().unwrap().is_empty())
                || pool.reaper_running.swap(true, Ordering::AcqRel)
            {
                return;
            }
        }
    }
}

/// The body of a proxied response: the backend's body, with its connection driven while it
/// streams and returned to the idle stack once the body has been read to its end.
pub(crate) struct Relayed {
    inner: Incoming,
    up: Option<Upstream>,
    pool: Arc<IdlePool>,
    /// Keeps the backend's in-flight count up until the body is done.
    _guard: ActiveGuard,
}

impl Relayed {
    pub(crate) fn new(
        inner: Incoming,
        up: Option<Upstream>,
        pool: Arc<IdlePool>,
        guard: ActiveGuard,
    ) -> Self {
        Relayed {
            inner,
            up,
            pool,
            _guard: guard,
        }
    }

    /// The body is complete: the connection goes back for reuse if it can take a request.
    fn finish(&mut self, cx: &mut Context<'_>) {
        if let Some(mut up) = self.up.take() {
            if up.poll_usable(cx) {
                self.pool.checkin(up);
            }
        }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(up) = this.up.as_mut() {
            if Pin::new(&mut up.conn).poll(cx).is_ready() {
                // Closed: the body has what the connection delivered, or its error.
                this.up = None;
            }
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.finish(cx),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(cx),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        // A body that was empty from the start (HEAD, 204, 304) is never polled, yet its
        // connection is reusable. One that was cut short is not: dropping it closes it.
        if self.up.is_some() && self.inner.is_end_stream() {
            self.finish(&mut Context::from_waker(Waker::noop()));
        }
    }
}

/// A request body as sent to a backend: whole (buffered, so it can be sent again) or streamed.
pub(crate) enum OutBody {
    Full {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    Stream(ProxyBody),
}

impl OutBody {
    pub(crate) fn full(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        OutBody::Full {
            data: Some(data).filter(|d| !d.is_empty()),
            trailers,
        }
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = crate::backends::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            OutBody::Full { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            OutBody::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Full { data, trailers } => data.is_none() && trailers.is_none(),
            OutBody::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // Trailers need chunked encoding, which an unknown length gets.
            OutBody::Full {
                trailers: Some(_), ..
            } => SizeHint::default(),
            OutBody::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            OutBody::Stream(body) => body.size_hint(),
        }
    }
}
