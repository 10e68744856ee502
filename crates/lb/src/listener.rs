//! One bound port: the accept loop and the connections it spawned.
//!
//! Stopping a listener closes its socket at once (so the port is free to rebind) but lets the
//! connections it accepted finish: HTTP connections complete the request in flight and then
//! close; TCP connections, and HTTP connections upgraded to a tunnel (WebSocket), run until
//! either side closes. The task ends when the last one has.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{Listener, Mode, Timeouts};
use crate::error::LbError;
use crate::shards::Shards;
use crate::table::Table;
use crate::{http, tcp};

pub(crate) struct ListenerHandle {
    pub config: Listener,
    pub tables: Arc<ArcSwap<Table>>,
    stop: watch::Sender<bool>,
    unbound: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    /// Binds synchronously so the caller learns at once whether the port was free.
    pub fn start(bind_ip: IpAddr, config: Listener, table: Table, shards: Arc<Shards>, timeouts: Timeouts) -> Result<Self, LbError> {
        let port = config.port;
        let bind_err = |err: std::io::Error| LbError::Bind { port, reason: format!("{bind_ip}:{port}: {err}") };
        // std's bind sets SO_REUSEADDR on Unix, so a port whose old connections linger in
        // TIME_WAIT can be rebound at once after a mode change.
        let std_listener = std::net::TcpListener::bind(SocketAddr::new(bind_ip, port)).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;

        let tables = Arc::new(ArcSwap::from_pointee(table));
        let (stop, stop_rx) = watch::channel(false);
        let (unbound_tx, unbound) = oneshot::channel();
        let task = tokio::spawn(run(listener, config.mode, tables.clone(), shards, timeouts, stop_rx, unbound_tx));
        tracing::info!(port, mode = %config.mode, "listener started");
        Ok(ListenerHandle { config, tables, stop, unbound, task })
    }

    /// Stops accepting and returns once the port is released; the returned task ends when the
    /// listener's last connection has.
    pub async fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        let _ = self.unbound.await;
        tracing::info!(port = self.config.port, "listener stopped accepting");
        self.task
    }
}

async fn run(
    listener: TcpListener,
    mode: Mode,
    tables: Arc<ArcSwap<Table>>,
    // Held until the last connection is done: the shard threads end when their owner drops.
    shards: Arc<Shards>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    unbound: oneshot::Sender<()>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Also fires when the handle is dropped, so a forgotten listener does not leak.
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Moved to the shard's runtime, whose reactor then watches it.
                    let stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(err) => {
                            tracing::debug!(port, %peer, error = %err, "accepted connection lost");
                            continue;
                        }
                    };
                    let tables = tables.clone();
                    let drain = drain_rx.clone();
                    shards.spawn(&mut conns, async move {
                        let stream = match TcpStream::from_std(stream) {
                            Ok(s) => s,
                            Err(err) => {
                                tracing::warn!(%peer, error = %err, "accepted connection could not be served");
                                return;
                            }
                        };
                        match mode {
                            Mode::Http => http::serve(stream, peer, tables, drain, timeouts).await,
                            Mode::Tcp => tcp::serve(stream, peer, tables).await,
                        }
                    });
                }
                Err(err) => {
                    // Typically EMFILE: back off briefly rather than spin.
                    tracing::warn!(port, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => log_join(port, done),
        }
    }
    drop(listener);
    let _ = unbound.send(());
    let _ = drain_tx.send(true);
    let open = conns.len();
    if open > 0 {
        tracing::info!(port, open, "listener draining its connections");
    }
    while let Some(done) = conns.join_next().await {
        log_join(port, done);
    }
    tracing::debug!(port, "listener drained");
}

fn log_join(port: u16, done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        if err.is_panic() {
            tracing::error!(port, error = %err, "connection task panicked");
        }
    }
}
