//! Connections to one backend, and the stack of idle ones kept for reuse.
//!
//! A backend connection is a plain socket plus its read buffer; the request that takes it writes
//! the request and reads the response itself, so a request costs no task hand-off and no
//! channel. When the response has been read to its end and the connection can take another
//! request, it goes back on its backend's idle stack.
//!
//! An idle connection is read by nobody, so a backend closing it is noticed only when it is
//! taken again: [`IdlePool::checkout`] looks at it once (without a system call unless the
//! reactor saw it become readable) and drops it if it has closed. Connections idle for longer
//! than [`POOL_IDLE_TIMEOUT`] are dropped, at checkout or by a small reaper task that runs while
//! the stack is not empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::backends::CONNECT_TIMEOUT;
use crate::shards;

/// Below common backend keep-alive timeouts (Node's 5 s), so the proxy usually closes an idle
/// connection before the backend does and rarely races a request against that close.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per backend and shard; more than this after a burst are closed.
const MAX_IDLE: usize = 512;
/// Idle stacks per backend. Each shard thread uses its own (shards beyond this share), so a
/// connection is taken again by the thread whose reactor watches it.
const STACKS: usize = 16;

/// One open HTTP/1.1 connection to a backend.
pub(crate) struct Upstream {
    pub stream: TcpStream,
    /// Bytes read from the backend and not yet relayed. Empty between requests.
    pub buf: Vec<u8>,
}

impl Upstream {
    /// Connects within [`CONNECT_TIMEOUT`]; the error says why, for the backend's status.
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Result<Self, String> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(err)) => return Err(format!("connect failed: {err}")),
            Err(_) => return Err(format!("connect timed out after {CONNECT_TIMEOUT:?}")),
        };
        let _ = stream.set_nodelay(true);
        Ok(Upstream { stream, buf: Vec::new() })
    }

    /// True when the connection is still open and has nothing unread: a backend closing an
    /// idle connection (or, wrongly, writing to it) makes it readable. The reactor's readiness
    /// is checked first, so a quiet connection costs no system call.
    fn usable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
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
    pub(crate) fn checkout(&self) -> Option<Upstream> {
        let stack = self.stack();
        loop {
            let idle = stack.lock().unwrap().pop()?;
            if idle.since.elapsed() < POOL_IDLE_TIMEOUT && idle.up.usable() {
                return Some(idle.up);
            }
        }
    }

    /// Keeps a connection whose last response was read to its end for the next request.
    pub(crate) fn checkin(self: &Arc<Self>, mut up: Upstream) {
        up.buf.clear();
        let start_reaper = {
            let mut idle = self.stack().lock().unwrap();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(Idle { up, since: Instant::now() });
            !self.reaper_running.load(Ordering::Relaxed) && !self.reaper_running.swap(true, Ordering::AcqRel)
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
            if pool.stacks.iter().all(|s| s.lock().unwrap().is_empty()) || pool.reaper_running.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}
