//! `GET /v1/events?env=NAME`: a WebSocket that says which resource lists changed.
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as `?token=`; the
//! access layer checks it (or the session cookie) before the upgrade, like the environment
//! here, so a refusal is a JSON answer. The stream checks its access again whenever it may have
//! changed, and ends with a policy close frame once it is gone.

use super::Query;
use crate::access::{AccessWatch, Admission};
use crate::error::ApiResult;
use crate::events::{Frame, Pending};
use crate::state::AppState;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use corral_store::environments::DEFAULT_ENVIRONMENT;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Changes arriving within this window after the first one go out in one frame.
const COALESCE: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
pub struct EventsQuery {
    pub env: Option<String>,
}

pub async fn connect(
    State(state): State<AppState>,
    Extension(admission): Extension<Admission>,
    Query(q): Query<EventsQuery>,
    ws: super::WsUpgrade,
) -> ApiResult<Response> {
    let env = state.store.environment(q.env.as_deref().unwrap_or(DEFAULT_ENVIRONMENT)).await?;
    let ws = ws.accept()?;
    // Subscribe before answering, so nothing that happens after the upgrade is missed.
    let changes = state.events.subscribe();
    let access = admission.watch(&state);
    let shutdown = state.shutdown.subscribe();
    state.environment_names.set(env.id, &env.name);
    let environment = (env.id, env.name, state.environment_names.clone());
    Ok(ws.on_upgrade(move |socket| serve(socket, environment, changes, access, shutdown)))
}

async fn serve(
    mut socket: WebSocket,
    (env_id, started_as, names): (i64, String, std::sync::Arc<crate::state::EnvironmentNames>),
    mut changes: tokio::sync::broadcast::Receiver<crate::events::Change>,
    mut access: AccessWatch,
    mut shutdown: tokio::sync::broadcast::Receiver<()>,
) {
    // The stream follows its environment by id, through renames, and ends when it is removed.
    let environment = || names.get(env_id);
    if send(&mut socket, &Frame::Hello { environment: started_as }).await.is_err() {
        return;
    }
    let mut pending = Pending::default();
    let mut flush_at: Option<Instant> = None;
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(current) = environment() else {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                };
                let added = match change {
                    Ok(change) => pending.add(&current, &change),
                    // Missed some: the client refetches everything rather than see an error.
                    Err(RecvError::Lagged(_)) => {
                        pending.everything();
                        true
                    }
                    Err(RecvError::Closed) => return,
                };
                if added && flush_at.is_none() {
                    flush_at = Some(Instant::now() + COALESCE);
                }
            }
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                flush_at = None;
                let Some(current) = environment() else { return };
                for frame in pending.take_frames(&current) {
                    if send(&mut socket, &frame).await.is_err() {
                        return;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients have nothing to say; pings are answered by the socket itself.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            revoked = access.revoked() => {
                super::close_revoked(&mut socket, revoked).await;
                return;
            }
            _ = shutdown.recv() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
}

async fn send(socket: &mut WebSocket, frame: &Frame) -> Result<(), axum::Error> {
    let text = serde_json::to_string(frame).expect("frames always serialize");
    socket.send(Message::Text(text.into())).await
}
