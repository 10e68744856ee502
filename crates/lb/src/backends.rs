//! Backend health and counters, and round-robin choice among the backends believed up.
//!
//! A backend is marked down when connecting to it fails and is believed up again after
//! [`RETRY_AFTER`]; then exactly one request gets to probe it, so a dead backend behind a slow
//! connect timeout costs one request a retry per interval instead of stalling every request.
//! A backend's `Arc` is shared by every routing table that names it, so its state, counters and
//! idle connections survive config changes that keep it; a removed backend is freed (and its
//! idle connections closed) once the last in-flight request holding it finishes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Mode;
use crate::upstream::IdlePool;

/// How long a backend that failed stays out of rotation before one request probes it again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long connecting to a backend may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Backend {
    pub addr: SocketAddr,
    /// Its own idle connections (HTTP mode only), so dropping the backend closes exactly those.
    pub(crate) pool: Option<Arc<IdlePool>>,
    /// The `Host` header line for a request that came without one, built once rather than per
    /// request.
    pub(crate) host_line: Box<[u8]>,
    down_since: Mutex<Option<Instant>>,
    /// Mirrors `down_since.is_some()` (written under its lock), so that the every-request
    /// checks of a healthy backend need no lock shared by all the proxy's threads.
    down: AtomicBool,
    active: AtomicU64,
    served: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Backend {
    pub(crate) fn new(addr: SocketAddr, mode: Mode) -> Self {
        let pool = match mode {
            Mode::Http => Some(Arc::default()),
            Mode::Tcp => None,
        };
        let host_line = format!("host: {addr}\r\n").into_bytes().into_boxed_slice();
        Backend {
            addr,
            pool,
            host_line,
            down_since: Mutex::new(None),
            down: AtomicBool::new(false),
            active: AtomicU64::new(0),
            served: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// True if this backend may take a request now. Past the backoff of a down backend, the
    /// first caller claims the probe by restarting the backoff clock; the others keep skipping
    /// it until the probe succeeds (`mark_up`) or the interval passes again.
    fn try_claim(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let mut down = self.down_since.lock().unwrap();
        match *down {
            None => true,
            Some(since) if since.elapsed() >= RETRY_AFTER => {
                *down = Some(Instant::now());
                true
            }
            Some(_) => false,
        }
    }

    pub fn is_up(&self) -> bool {
        self.down_since.lock().unwrap().is_none()
    }

    pub(crate) fn mark_up(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut down = self.down_since.lock().unwrap();
        self.down.store(false, Ordering::Release);
        if down.take().is_some() {
            tracing::info!(backend = %self.addr, "backend is up again");
        }
    }

    pub(crate) fn mark_down(&self, reason: &str) {
        let was_up = {
            let mut down = self.down_since.lock().unwrap();
            self.down.store(true, Ordering::Release);
            down.replace(Instant::now()).is_none()
        };
        if was_up {
            tracing::warn!(backend = %self.addr, reason, "backend marked down");
        }
        self.record_error(reason);
    }

    pub(crate) fn record_error(&self, reason: &str) {
        *self.last_error.lock().unwrap() = Some(reason.to_string());
    }

    pub(crate) fn served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts this backend's in-flight request or connection until the guard drops.
    pub(crate) fn track(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    pub fn status(&self) -> BackendStatus {
        BackendStatus {
            addr: self.addr,
            up: self.is_up(),
            active_connections: self.active.load(Ordering::Relaxed),
            requests_served: self.served.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }
}

pub(crate) struct ActiveGuard(Arc<Backend>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The backends of one route, in config order.
pub struct Pool {
    backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(backends: Vec<Arc<Backend>>) -> Self {
        Pool { backends, next: AtomicUsize::new(0) }
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The next backend in round-robin order that is believed up and not in `skip`.
    pub fn pick(&self, skip: &[SocketAddr]) -> Option<Arc<Backend>> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        // Walk every backend once from a start taken from the counter: drawing each candidate
        // from the shared counter instead let concurrent requests hand one request the same
        // down backend n times and miss the healthy one. Skipped candidates still advance the
        // counter, so the backends after a down one share its traffic evenly.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let found = (0..n).find(|k| {
            let b = &self.backends[(start + k) % n];
            !skip.contains(&b.addr) && b.try_claim()
        })?;
        if found > 0 {
            self.next.fetch_add(found, Ordering::Relaxed);
        }
        Some(self.backends[(start + found) % n].clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    pub addr: SocketAddr,
    pub up: bool,
    /// In-flight HTTP requests, or open TCP connections.
    pub active_connections: u64,
    /// Responses relayed (HTTP) or connections relayed (TCP).
    pub requests_served: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerStatus {
    pub port: u16,
    pub mode: Mode,
    pub backends: Vec<BackendStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16) -> Pool {
        Pool::new((0..n).map(|i| Arc::new(Backend::new(([127, 0, 0, 1], 1000 + i).into(), Mode::Tcp))).collect())
    }

    #[test]
    fn round_robin_visits_each_backend_in_turn() {
        let p = pool(3);
        let picks: Vec<u16> = (0..6).map(|_| p.pick(&[]).unwrap().addr.port()).collect();
        assert_eq!(picks, [1000, 1001, 1002, 1000, 1001, 1002]);
    }

    #[test]
    fn down_backends_and_skipped_ones_are_passed_over() {
        let p = pool(3);
        p.backends[1].mark_down("refused");
        let picks: Vec<u16> = (0..4).map(|_| p.pick(&[]).unwrap().addr.port()).collect();
        assert_eq!(picks, [1000, 1002, 1000, 1002]);
        let skip = [p.backends[0].addr, p.backends[2].addr];
        assert!(p.pick(&skip).is_none());
    }

    #[test]
    fn down_backend_is_probed_by_one_request_after_the_backoff() {
        let p = pool(1);
        let b = &p.backends[0];
        b.mark_down("refused");
        assert!(p.pick(&[]).is_none());
        *b.down_since.lock().unwrap() = Some(Instant::now() - RETRY_AFTER);
        assert!(p.pick(&[]).is_some(), "probe after backoff");
        assert!(p.pick(&[]).is_none(), "only one probe at a time");
        b.mark_up();
        assert!(p.pick(&[]).is_some());
        assert!(b.status().up);
        assert_eq!(b.status().last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn empty_pool_picks_nothing() {
        assert!(pool(0).pick(&[]).is_none());
    }

    #[test]
    fn active_guard_counts() {
        let b = Arc::new(Backend::new(([127, 0, 0, 1], 1).into(), Mode::Tcp));
        let g = b.track();
        assert_eq!(b.status().active_connections, 1);
        drop(g);
        assert_eq!(b.status().active_connections, 0);
    }
}
