//! Who has which role in the environment `?env=` names: list (everyone who sees it), give or
//! change a role and take it away (owners and admins).

use super::{Json, Path};
use crate::access::RequestEnvironment;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_store::access::{MemberKind, Membership, Role};
use corral_store::StoreError;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// A user or a group; `user:NAME` or `group:NAME` when both exist.
    pub name: String,
    pub role: String,
}

fn role(text: &str) -> ApiResult<Role> {
    Role::parse(text).ok_or_else(|| ApiError::invalid("role", format!("unknown role {text:?}: use owner, member, restricted or read-only")))
}

/// The user or group a name stands for.
async fn member(state: &AppState, name: &str) -> ApiResult<(MemberKind, i64, String)> {
    let found = |r: Result<(i64, String), StoreError>| match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(ApiError::from(e)),
    };
    let user = |n: &str| {
        let n = n.to_string();
        async move { found(state.store.user(&n).await.map(|u| (u.id, u.name))) }
    };
    let group = |n: &str| {
        let n = n.to_string();
        async move { found(state.store.group(&n).await.map(|g| (g.id, g.name))) }
    };
    let missing = |what: &str, n: &str| ApiError::NotFound(format!("no {what} named {n:?}; `corral user ls` and `corral group ls` list them"));
    if let Some(n) = name.strip_prefix("user:") {
        let (id, name) = user(n).await?.ok_or_else(|| missing("user", n))?;
        return Ok((MemberKind::User, id, name));
    }
    if let Some(n) = name.strip_prefix("group:") {
        let (id, name) = group(n).await?.ok_or_else(|| missing("group", n))?;
        return Ok((MemberKind::Group, id, name));
    }
    match (user(name).await?, group(name).await?) {
        (Some(_), Some(_)) => Err(ApiError::invalid("name", format!("both a user and a group are named {name:?}; say user:{name} or group:{name}"))),
        (Some((id, n)), None) => Ok((MemberKind::User, id, n)),
        (None, Some((id, n))) => Ok((MemberKind::Group, id, n)),
        (None, None) => Err(missing("user or group", name)),
    }
}

pub async fn list(State(state): State<AppState>, Extension(RequestEnvironment(env)): Extension<RequestEnvironment>) -> ApiResult<Json<Vec<Membership>>> {
    Ok(Json(state.store.memberships(Some(env.id)).await?))
}

/// Gives a user or group a role here, replacing the one it had.
pub async fn add(
    State(state): State<AppState>,
    Extension(RequestEnvironment(env)): Extension<RequestEnvironment>,
    Json(body): Json<NewMember>,
) -> ApiResult<(StatusCode, Json<Membership>)> {
    let role = role(&body.role)?;
    let (kind, id, name) = member(&state, &body.name).await?;
    state.store.set_membership(env.id, kind, id, role).await?;
    Ok((StatusCode::CREATED, Json(Membership { environment: env.name, kind, name, role })))
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(RequestEnvironment(env)): Extension<RequestEnvironment>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (kind, id, name) = match kind.as_str() {
        "user" | "group" => member(&state, &format!("{kind}:{name}")).await?,
        other => return Err(ApiError::BadRequest(format!("unknown member kind {other:?}: use /members/user/NAME or /members/group/NAME"))),
    };
    if !state.store.remove_membership(env.id, kind, id).await? {
        return Err(ApiError::NotFound(format!("{name} has no role of its own in environment {}", env.name)));
    }
    Ok(StatusCode::NO_CONTENT)
}
