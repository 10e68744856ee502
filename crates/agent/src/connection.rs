//! The agent's side of `/v1/agent`: dial out, hello, then relay desired sets in and observed sets
//! and heartbeats out; redial forever with jittered backoff when the connection is lost.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::{AgentMessage, DesiredSet, Hello, RejectCode, Rejected, ServerMessage, Welcome, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::engine::Engine;
use crate::error::AgentError;
use crate::reconciler::ReconcilerHandle;
use crate::tls::ConnectError;
use crate::{facts, identity, state, AgentConfig};

type Ws = crate::tls::WebSocket;

/// A control plane that accepts TCP but never answers must not stall the agent.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Declared dead after this many heartbeat intervals without any frame (message, heartbeat or
/// pong) from the server.
const MISSED_HEARTBEATS: u32 = 3;

/// Turns the configured base URL into the WebSocket endpoint, or explains what is wrong with it.
pub fn agent_ws_url(server_url: &str) -> Result<String, AgentError> {
    let bad = |reason: &str| AgentError::InvalidServerUrl { url: server_url.to_string(), reason: reason.to_string() };
    let (scheme, rest) = server_url.trim().split_once("://").ok_or_else(|| bad("it has no scheme; use e.g. https://10.0.0.5:7070"))?;
    let rest = rest.trim_end_matches('/');
    let ws_scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(bad("the scheme must be https:// or http:// (or wss://, ws://)")),
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("it has no host"));
    }
    Ok(format!("{ws_scheme}://{rest}/v1/agent"))
}

/// Everything a session needs, shared across reconnects.
pub(crate) struct Link<'a> {
    pub config: &'a AgentConfig,
    pub ws_url: String,
    pub host_id: String,
    pub engine: Engine,
    pub reconciler: &'a ReconcilerHandle,
    /// This host's tunnel: public key and UDP port, when it runs one.
    pub tunnel: Option<(String, u16)>,
    /// What the stats report says of that tunnel.
    pub tunnel_status: Option<crate::network::TunnelStatus>,
}

/// Why a session ended.
enum End {
    Shutdown,
    /// Retrying cannot help; the operator has to change the config.
    Fatal(AgentError),
    /// Connection lost or refused for a reason that may go away; redial after a backoff.
    Retry(String),
}

/// Keeps a session up until shutdown, or until the control plane refuses us for good.
pub(crate) async fn run(link: Link<'_>, shutdown: &mut broadcast::Receiver<()>) -> Result<(), AgentError> {
    let mut backoff = Backoff::for_reconnect();
    let mut docker_version = String::new();
    loop {
        tracing::info!(url = %link.ws_url, attempt = backoff.attempt() + 1, "connecting to the control plane");
        match session(&link, shutdown, &mut backoff, &mut docker_version).await {
            End::Shutdown => return Ok(()),
            End::Fatal(e) => return Err(e),
            End::Retry(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    url = %link.ws_url,
                    %reason,
                    retry_in_ms = delay.as_millis() as u64,
                    attempt = backoff.attempt(),
                    "control plane connection lost; containers stay converged to the last desired set meanwhile"
                );
                tokio::select! {
                    _ = shutdown.recv() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn session(link: &Link<'_>, shutdown: &mut broadcast::Receiver<()>, backoff: &mut Backoff, docker_version: &mut String) -> End {
    let dial = tokio::time::timeout(HANDSHAKE_TIMEOUT, crate::tls::connect_websocket(link.ws_url.as_str(), link.config.ca_fingerprint));
    let (mut ws, local_ip) = tokio::select! {
        _ = shutdown.recv() => return End::Shutdown,
        r = dial => match r {
            Ok(Ok(connected)) => connected,
            // Another CA answers: an attacker or a control plane set up anew. Retrying will
            // not change which; the operator has to look.
            Ok(Err(ConnectError::Mismatch(m))) => return End::Fatal(AgentError::CaMismatch(m)),
            Ok(Err(e)) => return End::Retry(format!("cannot connect: {e}")),
            Err(_) => return End::Retry(format!("no WebSocket handshake within {HANDSHAKE_TIMEOUT:?}")),
        },
    };

    // The engine may have been upgraded since the last session; a stale version is still better
    // than none if it does not answer right now.
    match link.engine.version().await {
        Ok(v) => *docker_version = v,
        Err(e) => tracing::warn!(error = %e, "cannot read the Docker version for the hello"),
    }
    let credential = match identity::load_credential(&link.config.state_dir) {
        Ok(c) => c,
        Err(e) => return End::Fatal(e),
    };
    let hello = AgentMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        token: link.config.token.clone(),
        credential,
        host_id: link.host_id.clone(),
        facts: facts::gather(link.config, docker_version, local_ip, link.reconciler.lease(), link.tunnel.clone()),
    });
    if let Err(e) = send(&mut ws, &hello).await {
        return End::Retry(format!("cannot send hello: {e}"));
    }

    let welcome = tokio::select! {
        _ = shutdown.recv() => return End::Shutdown,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, first_reply(&mut ws)) => match r {
            Err(_) => return End::Retry(format!("no welcome within {HANDSHAKE_TIMEOUT:?}")),
            Ok(Err(reason)) => return End::Retry(reason),
            Ok(Ok(Reply::Rejected(r))) => return rejected_by(link, r),
            Ok(Ok(Reply::Welcome(w))) => w,
        },
    };
    if let Some(credential) = &welcome.credential {
        // Without it the next hello would be refused, so a host that cannot keep it stops here.
        if let Err(e) = identity::save_credential(&link.config.state_dir, credential) {
            return End::Fatal(e);
        }
        tracing::info!("joined: this host's own credential is kept in the state dir; the join token is not needed again");
    }
    backoff.reset();
    let interval = Duration::from_millis(welcome.heartbeat_interval_ms.max(100));
    tracing::info!(
        host_id = %welcome.host_id,
        host = %welcome.host_name,
        environment = %welcome.environment,
        heartbeat_ms = interval.as_millis() as u64,
        "connected to the control plane"
    );

    connected(link, ws, interval, shutdown).await
}

enum Reply {
    Welcome(Welcome),
    Rejected(Rejected),
}

async fn first_reply(ws: &mut Ws) -> Result<Reply, String> {
    loop {
        match next_server_message(ws).await? {
            Some(ServerMessage::Welcome(w)) => return Ok(Reply::Welcome(w)),
            Some(ServerMessage::Rejected(r)) => return Ok(Reply::Rejected(r)),
            Some(other) => return Err(format!("expected welcome, got {other:?}")),
            None => continue,
        }
    }
}

/// [`rejected`], after forgetting a revoked credential so that the next start joins anew.
fn rejected_by(link: &Link<'_>, r: Rejected) -> End {
    if r.code == RejectCode::CredentialRevoked {
        if let Err(e) = identity::forget_credential(&link.config.state_dir) {
            tracing::error!(error = %e, "cannot remove the revoked credential");
        }
    }
    rejected(r)
}

fn rejected(r: Rejected) -> End {
    let hint = match r.code {
        RejectCode::CredentialRevoked => "The credential was removed from the state dir; run the join command again to re-join.",
        RejectCode::BadCredential => "Use the state dir this host joined with, or revoke the host in the control plane and join again.",
        RejectCode::BadToken => "Check the join token: copy the command from Add Host in the control plane again.",
        RejectCode::ProtocolMismatch => "Upgrade the agent to the control plane's version (Add Host shows the command that fetches it).",
        RejectCode::AlreadyConnected => {
            tracing::error!(
                message = %r.message,
                "another agent with this host identity (the same state dir) is connected; if that is \
                 a stale connection it will time out and this agent will get in. If two hosts share \
                 a state dir (e.g. a cloned VM), delete host-id in one of them"
            );
            return End::Retry("rejected: already connected".into());
        }
        RejectCode::BadHello => {
            tracing::error!(message = %r.message, "the control plane did not understand our hello");
            return End::Retry(format!("rejected: bad hello: {}", r.message));
        }
    };
    End::Fatal(AgentError::Rejected { code: r.code, message: r.message, hint })
}

async fn connected(link: &Link<'_>, mut ws: Ws, interval: Duration, shutdown: &mut broadcast::Receiver<()>) -> End {
    let mut observed = link.reconciler.observed();
    // Report right away: the control plane needs the current state before it plans anything.
    let current = observed.borrow_and_update().clone();
    if let Some(o) = current {
        if let Err(e) = send(&mut ws, &AgentMessage::Observed(o)).await {
            return End::Retry(format!("cannot send observed set: {e}"));
        }
    }

    let (log_tx, mut log_rx) = tokio::sync::mpsc::channel(64);
    let mut logs = crate::logs::LogStreams::default();
    // Sampling runs beside the session, so a slow engine delays reports, never heartbeats.
    let (stats_interval, interval_rx) = crate::stats::default_interval();
    let (stats_tx, mut stats_rx) = tokio::sync::mpsc::channel(2);
    let _stats = AbortOnDrop(tokio::spawn(crate::stats::run(link.engine.clone(), interval_rx, stats_tx)).abort_handle());

    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dead_after = interval * MISSED_HEARTBEATS;
    let mut deadline = tokio::time::Instant::now() + dead_after;

    loop {
        tokio::select! {
            _ = shutdown.recv() => {
                let _ = ws.close(None).await;
                return End::Shutdown;
            }
            _ = heartbeat.tick() => {
                // The WebSocket ping is answered by the server's WebSocket layer itself, so the
                // dead-connection check works even if the control plane sends no heartbeats of
                // its own while it is quiet.
                let sent = match send(&mut ws, &AgentMessage::Heartbeat).await {
                    Ok(()) => ws.send(Message::Ping(Default::default())).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    return End::Retry(format!("cannot send heartbeat: {e}"));
                }
            }
            Some(chunk) = log_rx.recv() => {
                if let Err(e) = send(&mut ws, &AgentMessage::Logs(chunk)).await {
                    return End::Retry(format!("cannot send log lines: {e}"));
                }
            }
            Some(mut report) = stats_rx.recv() => {
                report.tunnel = link.tunnel_status.as_ref().map(|t| t.report());
                if let Err(e) = send(&mut ws, &AgentMessage::Stats(report)).await {
                    return End::Retry(format!("cannot send stats: {e}"));
                }
            }
            changed = observed.changed() => {
                if changed.is_err() {
                    return End::Retry("the converge loop stopped".into());
                }
                let current = observed.borrow_and_update().clone();
                if let Some(o) = current {
                    if let Err(e) = send(&mut ws, &AgentMessage::Observed(o)).await {
                        return End::Retry(format!("cannot send observed set: {e}"));
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return End::Retry(format!("nothing from the control plane for {dead_after:?}"));
            }
            msg = next_server_message(&mut ws) => {
                deadline = tokio::time::Instant::now() + dead_after;
                match msg {
                    Err(reason) => return End::Retry(reason),
                    Ok(None) | Ok(Some(ServerMessage::Heartbeat)) => {}
                    Ok(Some(ServerMessage::Desired(d))) => apply_desired(link, d).await,
                    Ok(Some(ServerMessage::Logs(request))) => logs.start(&link.engine, request, log_tx.clone()),
                    Ok(Some(ServerMessage::LogsCancel { id })) => logs.cancel(id),
                    Ok(Some(ServerMessage::StatsInterval { ms })) => {
                        stats_interval.send_replace(ms);
                    }
                    Ok(Some(ServerMessage::Rejected(r))) => return rejected_by(link, r),
                    Ok(Some(ServerMessage::Welcome(_))) => {
                        tracing::warn!("ignoring a second welcome from the control plane");
                    }
                }
            }
        }
    }
}

/// Stops a session's helper task when the session ends, however it ends.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Persists first, so a crash right after still enforces this set on restart.
async fn apply_desired(link: &Link<'_>, desired: DesiredSet) {
    tracing::info!(revision = desired.revision, containers = desired.containers.len(), "new desired set");
    let desired = Arc::new(desired);
    let dir = link.config.state_dir.clone();
    let to_save = desired.clone();
    match tokio::task::spawn_blocking(move || state::save_desired(&dir, &to_save)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot persist the desired set; applying it anyway")
        }
        Err(e) => {
            tracing::error!(error = %e, "persisting the desired set panicked; applying it anyway")
        }
    }
    link.reconciler.set_desired(Arc::unwrap_or_clone(desired));
}

/// `Ok(None)` for frames that carry no message (pings, pongs, binary).
async fn next_server_message(ws: &mut Ws) -> Result<Option<ServerMessage>, String> {
    match ws.next().await {
        None => Err("the control plane closed the connection".into()),
        Some(Err(e)) => Err(format!("connection error: {e}")),
        Some(Ok(Message::Close(frame))) => Err(match frame {
            Some(f) if !f.reason.is_empty() => {
                format!("the control plane closed the connection: {}", f.reason)
            }
            _ => "the control plane closed the connection".into(),
        }),
        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                // A newer control plane may send message types we do not know; skip, do not drop.
                tracing::warn!(error = %e, "ignoring a frame this agent does not understand");
                Ok(None)
            }
        },
        Some(Ok(_)) => Ok(None),
    }
}

async fn send(ws: &mut Ws, msg: &AgentMessage) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let text = serde_json::to_string(msg).expect("agent messages always serialize");
    ws.send(Message::text(text)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_the_agent_endpoint() {
        assert_eq!(agent_ws_url("http://10.0.0.5:7070").unwrap(), "ws://10.0.0.5:7070/v1/agent");
        assert_eq!(agent_ws_url("http://cp.lan:7070/").unwrap(), "ws://cp.lan:7070/v1/agent");
        assert_eq!(agent_ws_url("ws://cp:1").unwrap(), "ws://cp:1/v1/agent");
        assert_eq!(agent_ws_url("https://10.0.0.5:7070").unwrap(), "wss://10.0.0.5:7070/v1/agent");
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, why) in [("10.0.0.5:7070", "no scheme"), ("ftp://x", "scheme"), ("http://", "no host")] {
            let e = agent_ws_url(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn only_token_and_protocol_rejections_are_fatal() {
        let r = |code| Rejected { code, message: "m".into() };
        assert!(matches!(rejected(r(RejectCode::BadToken)), End::Fatal(_)));
        assert!(matches!(rejected(r(RejectCode::ProtocolMismatch)), End::Fatal(_)));
        assert!(matches!(rejected(r(RejectCode::AlreadyConnected)), End::Retry(_)));
        assert!(matches!(rejected(r(RejectCode::BadHello)), End::Retry(_)));
        assert!(matches!(rejected(r(RejectCode::CredentialRevoked)), End::Fatal(_)));
        assert!(matches!(rejected(r(RejectCode::BadCredential)), End::Fatal(_)));
    }
}
