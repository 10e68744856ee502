//! API keys of the caller (admins: of everyone): list, create (the secret is in the answer
//! once), revoke. An account key acts as its user everywhere; an environment key only in its
//! environment.

use super::{Json, Path};
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

pub async fn list(State(state): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<Json<Vec<ApiKey>>> {
    let owner = (!p.is_admin()).then_some(p.user_id);
    Ok(Json(state.store.api_keys(owner).await?))
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

/// Revokes one of the caller's keys (admins: anyone's); it opens nothing from now on.
pub async fn revoke(State(state): State<AppState>, Extension(p): Extension<Principal>, Path(name): Path<String>) -> ApiResult<Json<ApiKey>> {
    let key = state.store.api_key_by_name(&name).await?;
    if key.user_id != p.user_id && !p.is_admin() {
        // Someone else's key: as if it did not exist.
        return Err(ApiError::NotFound(format!("API key {name:?} does not exist; `corral apikey ls` lists yours")));
    }
    Ok(Json(state.store.revoke_api_key(key.id).await?))
}
