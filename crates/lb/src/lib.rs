//! Corral's load balancer: an HTTP/1.1 and TCP proxy built into the host agent.
//!
//! It exists to change its backends without failing a request: Rancher 1.x reloaded HAProxy on
//! every change and dropped connections doing it (rancher/rancher#2777). Here a config change
//! swaps an immutable routing table per listener; requests already in flight keep the table
//! they started with, and a request whose backend fails before it was processed is retried on
//! another backend.
//!
//! [`LoadBalancer::apply`] makes the running proxy match an [`LbConfig`]. Modules:
//!
//! - [`config`]: the desired state (listeners, routes, backends); serde types. Also the
//!   proxy's [`Timeouts`], set once per proxy with [`LoadBalancer::with_timeouts`].
//! - [`router`]: pure Host/path-prefix matching. No I/O; unit-tested.
//! - [`backends`]: per-backend up/down state with retry backoff, counters, the per-backend
//!   idle backend connections, and round-robin choice. Also the status types.
//! - `upstream`: connections to a backend, used directly by the request that takes them, and
//!   their idle stack.
//! - `table`: one listener's compiled routing table; kept backends carry over on a change.
//! - `codec`: HTTP/1.1 heads (parsed with `httparse`, forwarded heads written into a reused
//!   buffer) and body framing. No I/O; unit-tested.
//! - `http`: proxying one HTTP connection, with the retry rules, and the tunnel an upgraded
//!   (WebSocket) connection becomes.
//! - `tcp`: relaying one TCP connection, with connect fail-over.
//! - `listener`: a bound port's accept loop and the draining of its connections.
//! - `error`: [`LbError`].

pub mod backends;
mod codec;
pub mod config;
mod error;
mod http;
mod listener;
pub mod router;
mod shards;
mod table;
mod tcp;
mod upstream;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use backends::{BackendStatus, ListenerStatus};
pub use config::{LbConfig, Listener, Mode, Route, Timeouts};
pub use error::LbError;
pub use http::RETRY_BODY_LIMIT;

use listener::ListenerHandle;
use shards::Shards;
use table::Table;

/// How long [`LoadBalancer::shutdown`] lets in-flight requests and connections finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The running proxy. Cheap to clone; clones share the same listeners.
#[derive(Clone)]
pub struct LoadBalancer {
    inner: Arc<Inner>,
}

struct Inner {
    bind_ip: IpAddr,
    timeouts: Timeouts,
    /// The threads that serve accepted connections; shared with the listeners, which keep
    /// them running until their last connection is done.
    shards: Arc<Shards>,
    /// Serializes `apply` and `shutdown`, which await between reading and writing `listeners`.
    apply_lock: tokio::sync::Mutex<()>,
    /// Never held across an await, so `status` can stay synchronous.
    listeners: Mutex<BTreeMap<u16, ListenerHandle>>,
    /// Tasks of removed listeners whose connections are still finishing.
    draining: Mutex<Vec<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

impl LoadBalancer {
    /// Listeners will bind `bind_ip:port`. Connections are served by one thread per CPU.
    pub fn new(bind_ip: IpAddr) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(bind_ip, threads)
    }

    /// Like [`new`](Self::new), with `threads` threads serving connections (at least one).
    pub fn with_threads(bind_ip: IpAddr, threads: usize) -> Self {
        Self::with_timeouts(bind_ip, threads, Timeouts::default())
    }

    /// Like [`with_threads`](Self::with_threads), with HTTP listeners giving up on clients and
    /// backends after `timeouts` instead of the defaults.
    pub fn with_timeouts(bind_ip: IpAddr, threads: usize, timeouts: Timeouts) -> Self {
        let timeouts = Timeouts { body_min_bytes: timeouts.body_min_bytes.max(1), ..timeouts };
        LoadBalancer {
            inner: Arc::new(Inner {
                bind_ip,
                timeouts,
                shards: Arc::new(Shards::start(threads.max(1))),
                apply_lock: tokio::sync::Mutex::new(()),
                listeners: Mutex::new(BTreeMap::new()),
                draining: Mutex::new(Vec::new()),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Make the running proxy match `config`: bind listeners that are new, stop accepting on
    /// removed ones (connections already accepted run to completion), and swap each listener's
    /// routing table atomically. A listener that cannot be applied (port in use, invalid) is
    /// reported in the returned list and does not stop the others; an invalid listener that
    /// replaces a running one leaves the running one as it was.
    pub async fn apply(&self, config: &LbConfig) -> Vec<LbError> {
        let _serial = self.inner.apply_lock.lock().await;
        if self.inner.shut_down.load(Ordering::SeqCst) {
            tracing::warn!("ignoring a load balancer config applied after shutdown");
            return Vec::new();
        }
        let mut errors = Vec::new();

        let mut desired: BTreeMap<u16, &Listener> = BTreeMap::new();
        let mut invalid: HashSet<u16> = HashSet::new();
        for l in &config.listeners {
            if let Some(reason) = validate(l) {
                errors.push(reason);
                invalid.insert(l.port);
                continue;
            }
            match desired.entry(l.port) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(l);
                }
                std::collections::btree_map::Entry::Occupied(_) => {
                    errors.push(LbError::Invalid { port: l.port, reason: "the port appears more than once in the config; the first one is used".into() })
                }
            }
        }

        // Removed listeners, and those changing mode, release their ports first.
        let to_stop: Vec<ListenerHandle> = {
            let mut running = self.inner.listeners.lock().unwrap();
            let ports: Vec<u16> = running
                .iter()
                .filter(|(port, h)| match desired.get(port) {
                    Some(want) => want.mode != h.config.mode,
                    None => !invalid.contains(port),
                })
                .map(|(port, _)| *port)
                .collect();
            ports.iter().filter_map(|p| running.remove(p)).collect()
        };
        for handle in to_stop {
            let task = handle.stop().await;
            self.inner.draining.lock().unwrap().push(task);
        }
        self.inner.draining.lock().unwrap().retain(|t| !t.is_finished());

        let mut running = self.inner.listeners.lock().unwrap();
        for (port, want) in desired {
            match running.get_mut(&port) {
                Some(handle) if handle.config == *want => {}
                Some(handle) => {
                    let table = Table::build(want, Some(&handle.tables.load()));
                    handle.tables.store(Arc::new(table));
                    handle.config = want.clone();
                    tracing::info!(port, "listener routes updated");
                }
                None => match ListenerHandle::start(self.inner.bind_ip, want.clone(), Table::build(want, None), self.inner.shards.clone(), self.inner.timeouts)
                {
                    Ok(handle) => {
                        running.insert(port, handle);
                    }
                    Err(err) => {
                        tracing::warn!(port, error = %err, "listener not started");
                        errors.push(err);
                    }
                },
            }
        }
        errors
    }

    /// Per listener, ordered by port: its mode and each distinct backend's state and counters.
    pub fn status(&self) -> Vec<ListenerStatus> {
        self.inner.listeners.lock().unwrap().iter().map(|(port, h)| h.tables.load().status(*port)).collect()
    }

    /// Stops accepting everywhere and lets in-flight requests and connections finish for up to
    /// [`SHUTDOWN_GRACE`]; whatever is still open then is cut. Later `apply` calls do nothing.
    pub async fn shutdown(&self) {
        let _serial = self.inner.apply_lock.lock().await;
        self.inner.shut_down.store(true, Ordering::SeqCst);
        let handles: Vec<ListenerHandle> = {
            let mut running = self.inner.listeners.lock().unwrap();
            std::mem::take(&mut *running).into_values().collect()
        };
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.draining.lock().unwrap());
        for h in handles {
            tasks.push(h.stop().await);
        }
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the shutdown grace period; closing them");
            for a in aborts {
                a.abort();
            }
        }
        tracing::info!("load balancer stopped");
    }
}

fn validate(l: &Listener) -> Option<LbError> {
    if l.port == 0 {
        return Some(LbError::Invalid { port: 0, reason: "port 0 is not a port clients can reach".into() });
    }
    if l.mode == Mode::Tcp && l.routes.len() != 1 {
        return Some(LbError::tcp_routes(l.port, l.routes.len()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: u16, backends: &[u16]) -> LbConfig {
        LbConfig {
            listeners: vec![Listener {
                port,
                mode: Mode::Http,
                routes: vec![Route { host: None, path_prefix: None, backends: backends.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect() }],
            }],
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn table_of(lb: &LoadBalancer, port: u16) -> Arc<Table> {
        lb.inner.listeners.lock().unwrap()[&port].tables.load_full()
    }

    #[tokio::test]
    async fn identical_apply_keeps_the_table_and_the_socket() {
        let lb = LoadBalancer::new([127, 0, 0, 1].into());
        let port = free_port();
        assert!(lb.apply(&config(port, &[1, 2])).await.is_empty());
        let before = table_of(&lb, port);
        assert!(lb.apply(&config(port, &[1, 2])).await.is_empty());
        assert!(Arc::ptr_eq(&before, &table_of(&lb, port)));
        assert!(lb.inner.draining.lock().unwrap().is_empty(), "nothing was unbound");

        // A route change swaps the table but keeps the listener (nothing drains).
        assert!(lb.apply(&config(port, &[2, 3])).await.is_empty());
        assert!(!Arc::ptr_eq(&before, &table_of(&lb, port)));
        assert!(lb.inner.draining.lock().unwrap().is_empty());
        lb.shutdown().await;
    }

    #[tokio::test]
    async fn invalid_listener_leaves_the_running_one_alone() {
        let lb = LoadBalancer::new([127, 0, 0, 1].into());
        let port = free_port();
        assert!(lb.apply(&config(port, &[1])).await.is_empty());
        let mut bad = config(port, &[1]);
        bad.listeners[0].mode = Mode::Tcp;
        let extra = bad.listeners[0].routes[0].clone();
        bad.listeners[0].routes.push(extra);
        let errors = lb.apply(&bad).await;
        assert!(matches!(errors.as_slice(), [LbError::Invalid { port: p, .. }] if *p == port));
        assert_eq!(lb.status()[0].mode, Mode::Http);
        lb.shutdown().await;
    }

    #[tokio::test]
    async fn duplicate_port_is_reported_and_the_first_used() {
        let lb = LoadBalancer::new([127, 0, 0, 1].into());
        let port = free_port();
        let mut c = config(port, &[1]);
        c.listeners.push(config(port, &[2]).listeners.remove(0));
        let errors = lb.apply(&c).await;
        assert_eq!(errors.len(), 1);
        assert_eq!(lb.status()[0].backends[0].addr.port(), 1);
        lb.shutdown().await;
    }

    #[test]
    fn config_serde_shape() {
        let json =
            r#"{"listeners":[{"port":80,"mode":"http","routes":[{"host":"a.example","path_prefix":"/api","backends":["10.0.0.1:8080"]},{"backends":[]}]}]}"#;
        let c: LbConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.listeners[0].mode, Mode::Http);
        assert_eq!(c.listeners[0].routes[1].host, None);
        let back: LbConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
