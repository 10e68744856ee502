//! Image registries of an environment: list, add or replace, remove. A registry carries an
//! optional login (the password is sealed at rest and never shown again) and an optional private
//! CA, which every agent of the environment installs for its engine. Changes reach the agents
//! with their next desired set.

use super::{EnvQuery, Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use corral_store::registries::{NewRegistry, Registry};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryIn {
    pub username: Option<String>,
    pub password: Option<String>,
    /// The registry's CA certificate, PEM, when its TLS certificate is not publicly trusted.
    pub ca_pem: Option<String>,
}

/// A registry as the API shows it: whether a password is set, never the password.
#[derive(Serialize)]
pub struct RegistryOut {
    #[serde(flatten)]
    pub registry: Registry,
    /// How many of the environment's services run an image from it.
    pub services: usize,
}

/// How many of `services` run an image from registry `host` (balancers run no image).
fn services_from(services: &[corral_store::Service], host: &str) -> usize {
    services.iter().filter(|s| !s.spec.image.is_empty() && corral_proto::registry::registry_of(&s.spec.image) == host).count()
}

pub async fn list(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<Vec<RegistryOut>>> {
    let env = q.resolve(&state).await?;
    let services = state.store.services(Some(env.id), None).await?;
    let registries = state.store.registries(Some(env.id)).await?;
    Ok(Json(
        registries
            .into_iter()
            .map(|registry| {
                let services = services_from(&services, &registry.host);
                RegistryOut { registry, services }
            })
            .collect(),
    ))
}

/// Adds the registry, or replaces the entry of the same host (login and CA together): the way
/// to change a password, or to set one again after a restore elsewhere.
pub async fn put(
    State(state): State<AppState>,
    Path(host): Path<String>,
    Query(q): Query<EnvQuery>,
    Json(body): Json<RegistryIn>,
) -> ApiResult<(StatusCode, Json<RegistryOut>)> {
    let host = validate::registry_host(&host)?;
    let login = match (&body.username, &body.password) {
        (Some(user), Some(password)) => {
            validate::registry_user(user)?;
            validate::registry_password(password)?;
            Some((user.as_str(), password.as_str()))
        }
        (None, None) => None,
        (Some(_), None) => return Err(ApiError::invalid("password", "a user name needs its password (`corral registry add HOST --user U --password-stdin`)")),
        (None, Some(_)) => return Err(ApiError::invalid("username", "a password needs its user name (--user)")),
    };
    if let Some(pem) = &body.ca_pem {
        validate::ca_pem(pem)?;
    }
    let env = q.resolve(&state).await?;
    let (registry, created) = state.store.put_registry(env.id, &NewRegistry { host: &host, login, ca_pem: body.ca_pem.as_deref() }).await?;
    tracing::info!(environment = %env.name, registry = %host, login = login.is_some(), ca = body.ca_pem.is_some(), created, "registry saved");
    state.reconcile.trigger();
    let services = services_from(&state.store.services(Some(env.id), None).await?, &host);
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(RegistryOut { registry, services })))
}

/// Removes the registry: agents remove the CA they installed for it, and pulls from it go
/// without a login from then on.
pub async fn remove(State(state): State<AppState>, Path(host): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<Registry>> {
    let normalized = validate::registry_host(&host)?;
    let env = q.resolve(&state).await?;
    let registry = state.store.delete_registry(env.id, &normalized).await?;
    tracing::info!(environment = %env.name, registry = %normalized, "registry removed");
    state.reconcile.trigger();
    Ok(Json(registry))
}
