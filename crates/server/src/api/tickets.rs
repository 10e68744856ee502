//! `POST /v1/ws-ticket`: a single-use ticket that opens one WebSocket for the caller's
//! credential, so browsers never put a token in a WebSocket URL (see [`crate::access::Tickets`]).

use super::Json;
use crate::access::{Admission, TICKET_TTL};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Extension;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// The WebSocket path the ticket opens, e.g. `/v1/events` or `/v1/containers/NAME/logs`.
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct TicketOut {
    /// Pass as `?ticket=` on the WebSocket's URL; good for one connection.
    pub ticket: String,
    pub expires_in_seconds: u64,
}

pub async fn issue(State(state): State<AppState>, Extension(admission): Extension<Admission>, Json(body): Json<TicketRequest>) -> ApiResult<Json<TicketOut>> {
    if !is_websocket_path(&body.path) {
        let sockets: Vec<String> = super::routes().into_iter().filter(|e| e.websocket).map(|e| e.url_path()).collect();
        return Err(ApiError::invalid(
            "path",
            format!("{:?} is none of the API's WebSocket paths ({}); tickets open those only", preview(&body.path), sockets.join(", ")),
        ));
    }
    let credential = admission.credential().ok_or(ApiError::Unauthorized)?;
    let ticket = state.tickets.issue(credential, &body.path)?;
    Ok(Json(TicketOut { ticket, expires_in_seconds: TICKET_TTL.as_secs() }))
}

/// Whether `path` is one a WebSocket route of the table matches (`{name}` stands for one segment).
fn is_websocket_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    super::routes().into_iter().filter(|e| e.websocket).any(|e| {
        let pattern = e.url_path();
        let want: Vec<&str> = pattern.split('/').collect();
        want.len() == segments.len()
            && want.iter().zip(&segments).all(|(w, s)| if w.starts_with('{') { !s.is_empty() && !s.contains(['?', '#']) } else { w == s })
    })
}

fn preview(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_for_websocket_paths_only() {
        for good in ["/v1/events", "/v1/containers/App-web-1/logs", "/v1/stats/live"] {
            assert!(is_websocket_path(good), "{good}");
        }
        for bad in ["/v1/hosts", "/v1/containers//logs", "/v1/containers/a/b/logs", "/v1/events/", "events", "/v1/events?env=OPS", "/v1/backup"] {
            assert!(!is_websocket_path(bad), "{bad}");
        }
    }
}
