//! `GET /v1/audit`: the audit log, newest first. Owners read their environment's entries
//! (`?env=`); admins read every entry when they name no environment.

use super::{Json, Query};
use crate::access::{Principal, RequestEnvironment};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Extension;
use corral_store::audit::{AuditEntry, AuditFilter};
use serde::Deserialize;

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

pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(RequestEnvironment(env)): Extension<RequestEnvironment>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    if q.limit == 0 || q.limit > MAX_LIMIT {
        return Err(ApiError::invalid("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let environments = if q.env.is_none() && p.is_admin() { None } else { Some(vec![env.name]) };
    Ok(Json(state.store.audit(&AuditFilter { environments, limit: q.limit }).await?))
}
