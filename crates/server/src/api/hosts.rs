//! Hosts (list, deactivate, activate, revoke, remove) and the join command.

use super::{EnvQuery, Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use corral_store::{Environment, Host};
use serde::Serialize;

#[derive(Serialize)]
pub struct HostOut {
    #[serde(flatten)]
    pub host: Host,
    pub environment: String,
    /// The state in words, e.g. `disconnected since 2026-11-25T14:03:22Z`.
    pub status: String,
    /// Whether the agent has applied the latest desired set.
    pub in_sync: Option<bool>,
    pub containers: usize,
}

async fn host_out(state: &AppState, env: &Environment, hosts: Vec<Host>) -> ApiResult<Vec<HostOut>> {
    let records = state.store.container_records(Some(env.id)).await?;
    Ok(hosts
        .into_iter()
        .map(|host| HostOut {
            status: match host.state {
                corral_store::HostState::Active if host.deactivated => "deactivated".into(),
                corral_store::HostState::Active => "active".into(),
                corral_store::HostState::Disconnected => format!("disconnected since {}", host.state_since),
            },
            in_sync: state.hub.in_sync(&host.id),
            containers: records.iter().filter(|r| r.host_id == host.id).count(),
            environment: env.name.clone(),
            host,
        })
        .collect())
}

pub async fn list(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<Vec<HostOut>>> {
    let env = q.resolve(&state).await?;
    let hosts = state.store.hosts(Some(env.id)).await?;
    Ok(Json(host_out(&state, &env, hosts).await?))
}

pub async fn get(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<HostOut>> {
    let env = q.resolve(&state).await?;
    let host = state.store.host(env.id, &name).await?;
    let mut out = host_out(&state, &env, vec![host]).await?;
    Ok(Json(out.remove(0)))
}

#[derive(Serialize)]
pub struct JoinCommand {
    pub environment: String,
    pub server_url: String,
    pub token: String,
    /// The CA the agent pins (`sha256:HEX`), when the control plane speaks TLS to hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// One line to run on a host with Docker: fetch the agent from the control plane and start it.
    pub command: String,
}

pub async fn join_command(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<EnvQuery>) -> ApiResult<Json<JoinCommand>> {
    let env = q.resolve(&state).await?;
    let token = state.store.join_token(env.id).await?;
    Ok(Json(join_command_for(&state, &headers, env, token)))
}

/// Gives the environment a new join token and answers the new join command. The old token is
/// refused from now on; hosts that have joined keep their own credentials.
pub async fn rotate_join_token(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<EnvQuery>) -> ApiResult<Json<JoinCommand>> {
    let env = q.resolve(&state).await?;
    let token = state.store.rotate_join_token(env.id).await?;
    Ok(Json(join_command_for(&state, &headers, env, token)))
}

fn join_command_for(state: &AppState, headers: &HeaderMap, env: Environment, token: String) -> JoinCommand {
    let scheme = if state.ca.is_some() { "https" } else { "http" };
    let server_url = match &state.config.advertise_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        // Without an advertised URL, the address the caller used to reach us is the best guess
        // of an address hosts can reach too.
        None => {
            let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            format!("{scheme}://{host}")
        }
    };
    let ca_fingerprint = state.ca.as_ref().map(|ca| ca.fingerprint.clone());
    let command = match &ca_fingerprint {
        // The CA is fetched without trusting anyone, then checked against the fingerprint in
        // this very line before curl trusts it for the download: only standard tools needed.
        Some(pin) => {
            let hex = pin.trim_start_matches("sha256:");
            let fetch_ca = format!("curl -fsSk {server_url}/v1/ca.pem -o corral-ca.pem");
            // PEM is base64 of the DER, so coreutils alone can check it.
            let check = format!("[ \"$(sed '/-----/d' corral-ca.pem | base64 -d | sha256sum | cut -d' ' -f1)\" = {hex} ]");
            let fetch_agent = format!("curl -fsSL --cacert corral-ca.pem {server_url}/v1/agent/binary -o corral-agent");
            format!(
                "{fetch_ca} && {check} && {fetch_agent} && chmod +x corral-agent && ./corral-agent agent --server {server_url} --ca-fingerprint {pin} --token {token}"
            )
        }
        None => format!(
            "curl -fsSL {server_url}/v1/agent/binary -o corral-agent && chmod +x corral-agent && ./corral-agent agent --server {server_url} --token {token}"
        ),
    };
    JoinCommand { environment: env.name, server_url, token, ca_fingerprint, command }
}

/// Revokes a host's own credential and ends its session: its agent is refused from now on
/// and must join with the join token again.
pub async fn revoke(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<HostOut>> {
    let env = q.resolve(&state).await?;
    let host = state.store.revoke_host(env.id, &name).await?;
    state.hub.disconnect(&host.id);
    state.events.publish(&env.name, &[crate::events::Resource::Hosts]);
    let mut out = host_out(&state, &env, vec![host]).await?;
    Ok(Json(out.remove(0)))
}

/// Deactivates a host: it keeps running (and healing) what it has but gets no new containers.
pub async fn deactivate(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<HostOut>> {
    set_deactivated(state, name, q, true).await
}

/// Makes a deactivated host take new containers again.
pub async fn activate(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<Json<HostOut>> {
    set_deactivated(state, name, q, false).await
}

async fn set_deactivated(state: AppState, name: String, q: EnvQuery, deactivated: bool) -> ApiResult<Json<HostOut>> {
    let env = q.resolve(&state).await?;
    let host = state.store.set_host_deactivated(env.id, &name, deactivated).await?;
    state.reconcile.trigger();
    let mut out = host_out(&state, &env, vec![host]).await?;
    Ok(Json(out.remove(0)))
}

/// Removes a deactivated or disconnected host: its credential is refused from now on, its
/// record and what it reported go, and its instances are placed on other hosts.
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>, Query(q): Query<EnvQuery>) -> ApiResult<StatusCode> {
    let env = q.resolve(&state).await?;
    let host = state.store.remove_host(env.id, &name).await?;
    state.hub.disconnect(&host.id);
    state.metrics.forget_host(&host.id);
    state.reconcile.trigger();
    tracing::info!(host = %host.name, environment = %env.name, "host removed");
    Ok(StatusCode::NO_CONTENT)
}

/// The CA certificate (PEM) clients pin; public, since clients check it against the
/// fingerprint they were given before trusting it.
pub async fn ca_pem(State(state): State<AppState>) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let ca = state.ca.as_ref().ok_or_else(|| {
        ApiError::NotFound("this control plane serves plain HTTP only (started with --tls off or on loopback): it has no CA to pin".into())
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], ca.pem.clone()).into_response())
}
