//! `POST /v1/login` (a session: cookie for browsers, token for the CLI), `POST /v1/logout`, and
//! `GET /v1/whoami` (who the credential is and its role in each environment it sees).

use super::Json;
use crate::access::{session_cookie_header, Actor, Principal, Scheme, LOGIN_FAILURE_DELAY, SESSION_PREFIX};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

#[derive(Serialize)]
pub struct LoginAnswer {
    pub token: String,
    pub user: String,
    pub expires_at: String,
}

fn client_ip(extensions: &axum::http::Extensions) -> IpAddr {
    extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}

/// Checks the password and starts a session. Failures answer slowly, and after a few per user
/// name or per address further attempts are refused for a while (429), even with the right
/// password (see [`crate::access::LOGIN_LIMITS`]).
pub async fn login(State(state): State<AppState>, extensions: axum::http::Extensions, Json(body): Json<LoginRequest>) -> Response {
    let actor = Actor { user: Some(body.user.clone()), ..Actor::default() };
    let scheme = extensions.get::<Scheme>().copied().unwrap_or_default();
    let mut response = match start_session(&state, client_ip(&extensions), scheme, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(actor);
    response
}

async fn start_session(state: &AppState, ip: IpAddr, scheme: Scheme, body: &LoginRequest) -> ApiResult<Response> {
    // No account has a longer name or password; refused before anything is counted or stored.
    if body.user.len() > crate::validate::MAX_NAME_LEN {
        return Err(ApiError::invalid("user", format!("a user name has at most {} characters", crate::validate::MAX_NAME_LEN)));
    }
    if body.password.len() > crate::validate::MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid("password", format!("a password has at most {} bytes", crate::validate::MAX_PASSWORD_BYTES)));
    }
    let attempt = crate::access::begin_login(state, &body.user, ip).await?;
    let Some(user) = state.store.check_password(&body.user, &body.password).await? else {
        tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
        return Err(ApiError::LoginFailed);
    };
    state.store.login_succeeded(attempt, &body.user, &ip.to_string()).await?;
    let ttl = state.config.session_ttl;
    let (token, expires_at) = state.store.create_session(user.id, ttl).await?;
    let cookie = session_cookie_header(&token, ttl, scheme);
    Ok(([(header::SET_COOKIE, cookie)], Json(LoginAnswer { token, user: user.name, expires_at })).into_response())
}

/// Ends the session the request carries (header or cookie) and clears the cookie. Its open
/// WebSockets end too (the API announces the change; see [`crate::access::AccessChanges`]).
pub async fn logout(State(state): State<AppState>, scheme: Option<Extension<Scheme>>, headers: HeaderMap) -> ApiResult<Response> {
    let tokens = [super::bearer(&headers), crate::access::session_cookie(&headers)];
    for token in tokens.into_iter().flatten().filter(|t| t.starts_with(SESSION_PREFIX)) {
        state.store.delete_session(token).await?;
    }
    let cookie = session_cookie_header("", std::time::Duration::ZERO, scheme.map(|s| s.0).unwrap_or_default());
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

#[derive(Serialize)]
pub struct WhoAmI {
    pub user: String,
    pub admin: bool,
    /// The API key used, when not a session.
    pub key: Option<String>,
    pub environments: Vec<EnvironmentRole>,
}

#[derive(Serialize)]
pub struct EnvironmentRole {
    pub name: String,
    pub role: &'static str,
}

pub async fn whoami(State(state): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<Json<WhoAmI>> {
    let environments =
        state.store.environments().await?.into_iter().filter_map(|env| Some(EnvironmentRole { role: p.grant(env.id)?.name(), name: env.name })).collect();
    Ok(Json(WhoAmI { admin: p.is_admin(), user: p.user, key: p.key, environments }))
}
