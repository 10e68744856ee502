//! TCP relaying for one accepted client connection: connect to the next backend believed up
//! (failing over on connect errors), then copy bytes both ways until either side closes.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;

use crate::backends::CONNECT_TIMEOUT;
use crate::table::Table;

pub(crate) async fn serve(mut client: TcpStream, peer: SocketAddr, tables: Arc<ArcSwap<Table>>) {
    let mut tried: Vec<SocketAddr> = Vec::new();
    let (backend, mut upstream) = loop {
        let Some(backend) = tables.load().pools.first().and_then(|p| p.pick(&tried)) else {
            // Closing at once tells the client to go elsewhere instead of hanging on a socket
            // nobody will ever answer.
            tracing::debug!(%peer, tried = tried.len(), "no TCP backend is up; closing client connection");
            return;
        };
        tried.push(backend.addr);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await {
            Ok(Ok(stream)) => {
                backend.mark_up();
                break (backend, stream);
            }
            Ok(Err(err)) => backend.mark_down(&format!("connect failed: {err}")),
            Err(_) => backend.mark_down(&format!("connect timed out after {CONNECT_TIMEOUT:?}")),
        }
    };
    let _ = upstream.set_nodelay(true);
    backend.served();
    let _active = backend.track();
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => {
            tracing::trace!(%peer, backend = %backend.addr, up, down, "TCP connection closed")
        }
        Err(err) => {
            tracing::debug!(%peer, backend = %backend.addr, error = %err, "TCP connection ended with an error")
        }
    }
}
