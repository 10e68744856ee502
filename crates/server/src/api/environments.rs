//! Environments: list (with how many hosts and stacks each has), create, remove.

use super::{Json, Path};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::validate;
use crate::access::Principal;
use axum::extract::State;
use axum::Extension;
use axum::http::StatusCode;
use corral_store::environments::EnvironmentSummary;
use corral_store::Environment;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: String,
}

/// The environments the caller may see (admins: all), each with the caller's role in it.
pub async fn list(State(state): State<AppState>, Extension(principal): Extension<Principal>) -> ApiResult<Json<Vec<EnvironmentOut>>> {
    let visible = state.store.environment_summaries().await?.into_iter().filter_map(|summary| {
        let role = principal.grant(summary.environment.id)?.name();
        Some(EnvironmentOut { summary, role })
    });
    Ok(Json(visible.collect()))
}

#[derive(Serialize)]
pub struct EnvironmentOut {
    #[serde(flatten)]
    pub summary: EnvironmentSummary,
    /// The caller's role here: `admin`, `owner`, `member`, `restricted` or `read-only`.
    pub role: &'static str,
}

/// A new, empty environment with its own join token.
pub async fn create(State(state): State<AppState>, Json(body): Json<NewEnvironment>) -> ApiResult<(StatusCode, Json<Environment>)> {
    validate::name("name", "environment", &body.name)?;
    let env = state.store.create_environment(&body.name).await?;
    Ok((StatusCode::CREATED, Json(env)))
}

/// Removes an empty environment; one with hosts or stacks, and the default one, stay.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.store.delete_environment(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
