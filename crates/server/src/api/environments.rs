//! Environments: list (with how many hosts and stacks each has), create, rename, remove.

use super::{Json, Path};
use crate::access::Principal;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_store::environments::EnvironmentSummary;
use corral_store::Environment;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: String,
    /// Its managed network; the next free 10.N.0.0/16 when not given.
    #[serde(default)]
    pub subnet: Option<String>,
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
    let subnet = crate::network::new_environment_subnet(&state.store, body.subnet.as_deref()).await?;
    let env = state.store.create_environment(&body.name, &subnet.to_string()).await?;
    Ok((StatusCode::CREATED, Json(env)))
}

/// Renames an environment; everything in it stays, and no container is recreated (their
/// `io.corral.environment` label keeps the name the environment was created with).
pub async fn rename(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Json(body): Json<NewEnvironment>,
) -> ApiResult<Json<EnvironmentOut>> {
    validate::name("name", "environment", &body.name)?;
    let env = state.store.rename_environment(&name, &body.name).await?;
    state.environment_names.set(env.id, &env.name);
    let summary = state
        .store
        .environment_summaries()
        .await?
        .into_iter()
        .find(|s| s.environment.id == env.id)
        .ok_or_else(|| corral_store::environments::not_found(&body.name))?;
    let role = principal.grant(env.id).map_or("admin", |g| g.name());
    tracing::info!(from = %name, to = %env.name, "environment renamed");
    Ok(Json(EnvironmentOut { summary, role }))
}

/// Removes an empty environment; one with hosts or stacks, and the default one, stay.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let id = state.store.delete_environment(&name).await?;
    state.environment_names.remove(id);
    Ok(StatusCode::NO_CONTENT)
}
