//! `GET /v1/audit`: the audit log, newest first. Owners read their environment's entries
//! (`?env=`); admins read every entry when they name no environment. Each entry comes with the
//! sentence it reads as ([`sentence::sentence`]).

mod sentence;

use super::{Json, Query};
use crate::access::{Principal, RequestEnvironment};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Extension;
use corral_store::audit::{AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};

/// Most entries one request returns.
pub const MAX_LIMIT: u32 = 10_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    pub env: Option<String>,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// An entry as the API shows it: what was recorded, and what it did, in words.
#[derive(Serialize)]
pub struct AuditOut {
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// "ann scaled WEB-Server/web to 4"; "METHOD path" for a route without a phrase.
    pub summary: String,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(RequestEnvironment(env)): Extension<RequestEnvironment>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditOut>>> {
    if q.limit == 0 || q.limit > MAX_LIMIT {
        return Err(ApiError::invalid("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let environments = if q.env.is_none() && p.is_admin() { None } else { Some(vec![env.name]) };
    let entries = state.store.audit(&AuditFilter { environments, limit: q.limit }).await?;
    Ok(Json(entries.into_iter().map(|entry| AuditOut { summary: sentence::sentence(&entry), entry }).collect()))
}
