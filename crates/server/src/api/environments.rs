//! Environments: list (with how many hosts and stacks each has), create, remove.

use super::{Json, Path};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use corral_store::environments::EnvironmentSummary;
use corral_store::Environment;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: String,
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<EnvironmentSummary>>> {
    Ok(Json(state.store.environment_summaries().await?))
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
