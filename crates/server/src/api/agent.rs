//! The agent endpoint (WebSocket) and the agent binary download.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use tower::ServiceExt;

pub async fn connect(State(state): State<AppState>, ConnectInfo(remote): ConnectInfo<SocketAddr>, ws: WebSocketUpgrade) -> Response {
    let shutdown = state.shutdown.subscribe();
    // Anyone may open this socket before saying hello: no message may be bigger than the
    // biggest an agent needs to send.
    let ws = ws.max_message_size(corral_proto::MAX_MESSAGE_BYTES).max_frame_size(corral_proto::MAX_MESSAGE_BYTES);
    ws.on_upgrade(move |socket| crate::agent_session::serve(socket, remote, state, shutdown))
}

/// Serves the agent binary so a join command needs nothing but curl on the host.
pub async fn binary(State(state): State<AppState>, request: Request) -> ApiResult<Response> {
    let path = match &state.config.agent_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| ApiError::Internal(format!("cannot locate own binary: {e}")))?,
    };
    if !path.is_file() {
        return Err(ApiError::NotFound(format!("the agent binary is not available on this control plane ({} is missing)", path.display())));
    }
    let response = tower_http::services::ServeFile::new(path).oneshot(request).await.map_err(|e| ApiError::Internal(format!("serving agent binary: {e}")))?;
    Ok(response.into_response())
}
