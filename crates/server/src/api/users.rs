//! Users and groups (admins only).

use super::{Json, Path};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use corral_store::users::{Group, User};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    /// Without one, the user acts only through API keys an admin creates for it.
    pub password: Option<String>,
    /// Admins see and manage every environment, users and groups.
    #[serde(default)]
    pub admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    pub user: String,
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(state.store.users().await?))
}

pub async fn create(State(state): State<AppState>, Json(body): Json<NewUser>) -> ApiResult<(StatusCode, Json<User>)> {
    validate::name("name", "user", &body.name)?;
    if let Some(p) = &body.password {
        validate::password(p)?;
    }
    Ok((StatusCode::CREATED, Json(state.store.create_user(&body.name, body.password.as_deref(), body.admin).await?)))
}

/// Removes a user with its sessions, keys and memberships; the audit log keeps its name.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.store.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a user's password; its sessions end.
pub async fn set_password(State(state): State<AppState>, Path(name): Path<String>, Json(body): Json<NewPassword>) -> ApiResult<StatusCode> {
    validate::password(&body.password)?;
    state.store.set_password(&name, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_groups(State(state): State<AppState>) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(state.store.groups().await?))
}

pub async fn create_group(State(state): State<AppState>, Json(body): Json<NewGroup>) -> ApiResult<(StatusCode, Json<Group>)> {
    validate::name("name", "group", &body.name)?;
    Ok((StatusCode::CREATED, Json(state.store.create_group(&body.name).await?)))
}

pub async fn remove_group(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.store.delete_group(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_to_group(State(state): State<AppState>, Path(group): Path<String>, Json(body): Json<GroupMember>) -> ApiResult<Json<Group>> {
    Ok(Json(state.store.add_to_group(&group, &body.user).await?))
}

pub async fn remove_from_group(State(state): State<AppState>, Path((group, user)): Path<(String, String)>) -> ApiResult<Json<Group>> {
    Ok(Json(state.store.remove_from_group(&group, &user).await?))
}
