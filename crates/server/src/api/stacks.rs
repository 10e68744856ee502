//! Stacks: create, list, show, remove.

use super::{EnvQuery, Json, Path, Query};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use corral_store::Stack;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct NewStack {
    pub name: String,
}

#[derive(Serialize)]
pub struct StackOut {
    #[serde(flatten)]
    pub stack: Stack,
    pub services: usize,
}

pub async fn create(State(state): State<AppState>, Query(q): Query<EnvQuery>, Json(body): Json<NewStack>) -> ApiResult<(StatusCode, Json<StackOut>)> {
    validate::name("name", "stack", &body.name)?;
    let env = q.resolve(&state).await?;
    let stack = state.store.create_stack(env.id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(StackOut { stack, services: 0 })))
}

pub async fn list(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<Vec<StackOut>>> {
    let env = q.resolve(&state).await?;
    let services = state.store.services(Some(env.id), None).await?;
    let stacks = state.store.stacks(env.id).await?;
    Ok(Json(stacks.into_iter().map(|stack| StackOut { services: services.iter().filter(|s| s.stack_id == stack.id).count(), stack }).collect()))
}

pub async fn get(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<StackOut>> {
    let env = q.resolve(&state).await?;
    let stack = state.store.stack(env.id, &name).await?;
    let services = state.store.services(Some(env.id), Some(stack.id)).await?.len();
    Ok(Json(StackOut { stack, services }))
}

/// Removes the stack, its services and (through the agents) their containers.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<StatusCode> {
    let env = q.resolve(&state).await?;
    let stack = state.store.stack(env.id, &name).await?;
    state.store.delete_stack(stack.id).await?;
    state.reconcile.trigger();
    Ok(StatusCode::NO_CONTENT)
}
