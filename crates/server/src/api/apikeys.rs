//! API keys of the caller (admins: of everyone): list, create (the secret is in the answer
//! once), revoke. An account key acts as its user everywhere; an environment key only in its
//! environment, and it sees and revokes only that environment's keys. Key names are unique
//! per user, so a key is named by its user and its name.

use super::{Json, Path, Query};
use crate::access::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_store::access::ApiKey;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Makes an environment key; without it, an account key.
    pub environment: Option<String>,
    pub name: Option<String>,
}

#[derive(Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// Shown this once; only its hash is kept.
    pub secret: String,
}

/// The caller's keys; an environment key sees only its environment's, an admin everyone's.
pub async fn list(State(state): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<Json<Vec<ApiKey>>> {
    let owner = (!p.is_admin()).then_some(p.user_id);
    Ok(Json(state.store.api_keys(owner, p.key_environment).await?))
}

pub async fn create(State(state): State<AppState>, Extension(p): Extension<Principal>, Json(body): Json<NewKey>) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    if let Some(name) = &body.name {
        validate::name("name", "API key", name)?;
    }
    let environment = match &body.environment {
        Some(name) => {
            let env = state.store.environment(name).await?;
            if p.grant(env.id).is_none() {
                return Err(corral_store::environments::not_found(name).into());
            }
            Some(env.id)
        }
        None => None,
    };
    // A key never reaches further than the credential that made it.
    if p.key_environment.is_some() && environment != p.key_environment {
        return Err(ApiError::Forbidden("an environment key can only create keys for its own environment; pass --env with it".into()));
    }
    let (key, secret) = state.store.create_api_key(p.user_id, environment, body.name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, secret })))
}

#[derive(Deserialize)]
pub struct RevokeQuery {
    /// Whose key (admins); without it, the caller's own.
    pub user: Option<String>,
}

/// Revokes one of the caller's keys, by name (admins: anyone's, with `?user=`); it opens
/// nothing from now on. An environment key may revoke only keys of its own environment: it
/// reaches no further than it could act, so it cannot lock its owner out of the account.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<RevokeQuery>,
) -> ApiResult<Json<ApiKey>> {
    let not_found = || ApiError::NotFound(format!("API key {name:?} does not exist; `corral apikey ls` lists yours"));
    let owner = match q.user.as_deref() {
        Some(user) if !user.eq_ignore_ascii_case(&p.user) => {
            // Someone else's key: as if it did not exist, unless an admin asks.
            if !p.is_admin() {
                return Err(not_found());
            }
            state.store.user(user).await?.id
        }
        _ => p.user_id,
    };
    let key = state.store.api_key_of(owner, &name).await.map_err(|_| not_found())?;
    if p.key_environment.is_some() && key.environment_id != p.key_environment {
        return Err(ApiError::Forbidden(format!(
            "an environment key can revoke only keys of its own environment; {name:?} is {}: revoke it with an account key or a login session",
            key.environment.as_deref().map_or_else(|| "an account key".to_string(), |e| format!("a key of environment {e}"))
        )));
    }
    Ok(Json(state.store.revoke_api_key(key.id).await?))
}
