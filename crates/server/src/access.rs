//! Who is asking and what they may do: authentication, the one authorisation check every API
//! route goes through, the audit log of changes, and the limit on failed logins.
//!
//! - Credentials: `Authorization: Bearer` (an API key or a session token), the `corral_session`
//!   cookie of the web UI, or `?token=` on WebSocket upgrades (browsers cannot set headers there).
//! - Each route has one [`Policy`] in the table of [`crate::api`]; [`authorize`] applies it. A
//!   route without a policy is refused, so a forgotten entry fails closed.
//! - Environments the principal may not see answer 404, exactly like ones that do not exist.

use crate::api::EnvQuery;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use corral_store::access::Role;
use corral_store::audit::NewAuditEntry;
use corral_store::environments::DEFAULT_ENVIRONMENT;
use corral_store::Environment;
use corral_store::logins::{LoginAttempt, LoginLimits};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Name of the web UI's session cookie.
pub const SESSION_COOKIE: &str = "corral_session";
/// Session tokens start with this; API keys with `corral_`.
pub const SESSION_PREFIX: &str = "corral_s_";

/// What a route needs, in the environment `?env=` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// See everything in the environment.
    Read,
    /// Read container logs.
    ReadLogs,
    /// Create, change and remove stacks, services and containers.
    ManageServices,
    /// Add and remove hosts (the join command carries the environment's join token).
    ManageHosts,
    /// The environment's members and its audit log.
    ManageEnv,
}

impl Capability {
    pub const ALL: [Capability; 5] = [Capability::Read, Capability::ReadLogs, Capability::ManageServices, Capability::ManageHosts, Capability::ManageEnv];

    /// The weakest role that has this capability.
    pub fn least_role(self) -> Role {
        match self {
            Capability::Read | Capability::ReadLogs => Role::ReadOnly,
            Capability::ManageServices => Role::Restricted,
            Capability::ManageHosts => Role::Member,
            Capability::ManageEnv => Role::Owner,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "needs", content = "capability")]
pub enum Policy {
    /// Anyone: health, the agent endpoint (agents show their join token in the hello), login.
    Public,
    /// Any signed-in principal; the handler limits the answer to what it may see.
    Authenticated,
    /// Admins only, with an account credential (not an environment key).
    Admin,
    /// A capability in the environment `?env=` names (default: `Default`).
    Env(Capability),
}

/// A user's standing in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Admin,
    Role(Role),
}

impl Grant {
    pub fn allows(self, capability: Capability) -> bool {
        match self {
            Grant::Admin => true,
            Grant::Role(role) => role >= capability.least_role(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Grant::Admin => "admin",
            Grant::Role(role) => role.as_str(),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub user: String,
    /// The user is an admin (see [`Principal::is_admin`] for what the credential allows).
    pub admin: bool,
    /// The API key used, when not a session.
    pub key: Option<String>,
    /// An environment key works in this environment only.
    pub key_environment: Option<i64>,
    /// The session token, when signed in with one (for logout).
    pub session: Option<String>,
    pub roles: HashMap<i64, Role>,
}

impl Principal {
    /// Admin over everything: an admin user with an account credential.
    pub fn is_admin(&self) -> bool {
        self.admin && self.key_environment.is_none()
    }

    /// The principal's standing in an environment; `None` means it may not even see it.
    pub fn grant(&self, environment_id: i64) -> Option<Grant> {
        if self.key_environment.is_some_and(|only| only != environment_id) {
            return None;
        }
        if self.admin {
            return Some(Grant::Admin);
        }
        self.roles.get(&environment_id).copied().map(Grant::Role)
    }

    pub fn can(&self, environment_id: i64, capability: Capability) -> bool {
        self.grant(environment_id).is_some_and(|g| g.allows(capability))
    }
}

/// The environment a request works in, as [`authorize`] resolved it.
#[derive(Debug, Clone)]
pub struct RequestEnvironment(pub Environment);

/// Who made a request and where it worked, for the audit log (set on the response).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user: Option<String>,
    pub key: Option<String>,
    pub environment: Option<String>,
}

/// The credential a request carries, wherever it carries it.
fn credential<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>, websocket: bool) -> Option<&'a str> {
    if let Some(token) = crate::api::bearer(headers) {
        return Some(token);
    }
    if websocket {
        if let Some(token) = query_token {
            return Some(token);
        }
    }
    session_cookie(headers)
}

pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The principal a credential stands for; `Unauthorized` for an unknown, revoked or expired one.
pub async fn principal_for(state: &AppState, token: &str) -> ApiResult<Principal> {
    let (user_id, key, key_environment, session) = if token.starts_with(SESSION_PREFIX) {
        let session = state.store.session(token).await?.ok_or(ApiError::Unauthorized)?;
        (session.user_id, None, None, Some(token.to_string()))
    } else {
        let key = state.store.authenticate_api_key(token).await?.ok_or(ApiError::Unauthorized)?;
        (key.user_id, Some(key.name), key.environment_id, None)
    };
    let user = state.store.user_by_id(user_id).await.map_err(|_| ApiError::Unauthorized)?;
    let roles = state.store.roles_of(user_id).await?;
    Ok(Principal { user_id, user: user.name, admin: user.admin, key, key_environment, session, roles })
}

/// Checks a credential the way [`authorize`] does, for code that gets one on its own.
pub(crate) async fn check_credential(state: &AppState, token: Option<&str>) -> ApiResult<Principal> {
    principal_for(state, token.ok_or(ApiError::Unauthorized)?).await
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The one authorisation check: authenticates the caller and applies the route's policy.
/// Handlers find the [`Principal`] and, for environment routes, the [`RequestEnvironment`] in
/// the request's extensions.
pub async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(matched) = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        // No route matched: the fallback answers (404 for an unknown endpoint).
        return next.run(request).await;
    };
    let method = if request.method() == Method::HEAD { Method::GET } else { request.method().clone() };
    let path = matched.strip_prefix("/v1").unwrap_or(&matched);
    let Some(policy) = crate::api::policy(&method, path) else {
        tracing::error!(%method, path, "route without an access policy refused");
        return respond(ApiError::Forbidden(format!("{method} /v1{path} has no access policy; it is refused until one is added to the API's route table")), Actor::default());
    };
    let query_token = axum::extract::Query::<TokenQuery>::try_from_uri(request.uri()).ok().and_then(|q| q.0.token);
    let websocket = is_websocket(request.headers());
    let token = credential(request.headers(), query_token.as_deref(), websocket).map(str::to_string);
    let principal = match (&token, policy) {
        (_, Policy::Public) => match &token {
            // A public route still learns who calls it when it can (logout, the audit log).
            Some(t) => principal_for(&state, t).await.ok(),
            None => None,
        },
        (None, _) => return respond(ApiError::Unauthorized, Actor::default()),
        (Some(t), _) => match principal_for(&state, t).await {
            Ok(p) => Some(p),
            Err(e) => return respond(e, Actor::default()),
        },
    };
    let mut actor = Actor { user: principal.as_ref().map(|p| p.user.clone()), key: principal.as_ref().and_then(|p| p.key.clone()), environment: None };
    match (policy, &principal) {
        (Policy::Public, _) => {}
        (_, None) => return respond(ApiError::Unauthorized, actor),
        (Policy::Authenticated, Some(_)) => {}
        (Policy::Admin, Some(p)) => {
            if !p.is_admin() {
                return respond(ApiError::Forbidden(format!("{method} /v1{path} is for admins; user {} is not one (or uses an environment key)", p.user)), actor);
            }
        }
        (Policy::Env(capability), Some(p)) => {
            let name = axum::extract::Query::<EnvQuery>::try_from_uri(request.uri()).ok().and_then(|q| q.0.env).unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_string());
            actor.environment = Some(name.clone());
            let env = match state.store.environment(&name).await {
                Ok(env) => env,
                Err(e) => return respond(e.into(), actor),
            };
            actor.environment = Some(env.name.clone());
            match p.grant(env.id) {
                None => return respond(corral_store::environments::not_found(&name).into(), actor),
                Some(grant) if !grant.allows(capability) => {
                    let needed = capability.least_role();
                    return respond(
                        ApiError::Forbidden(format!(
                            "user {} is {} in environment {}; this needs the {needed} role or higher (ask an owner: `corral member add {} {} --role {needed}`)",
                            p.user,
                            grant.name(),
                            env.name,
                            env.name,
                            p.user
                        )),
                        actor,
                    );
                }
                Some(_) => {}
            }
            request.extensions_mut().insert(RequestEnvironment(env));
        }
    }
    if let Some(p) = principal {
        request.extensions_mut().insert(p);
    }
    if let Some(t) = token {
        // Handlers that check the token themselves (WebSockets) see the one used here, wherever it came from.
        if crate::api::bearer(request.headers()).is_none() {
            if let Ok(value) = format!("Bearer {t}").parse() {
                request.headers_mut().insert(header::AUTHORIZATION, value);
            }
        }
    }
    let mut response = next.run(request).await;
    merge_actor(&mut response, actor);
    response
}

fn respond(error: ApiError, actor: Actor) -> Response {
    let mut response = axum::response::IntoResponse::into_response(error);
    response.extensions_mut().insert(actor);
    response
}

/// The handler may know more (the user a login was for); what it set wins.
fn merge_actor(response: &mut Response, actor: Actor) {
    let merged = match response.extensions_mut().remove::<Actor>() {
        Some(set) => Actor { user: set.user.or(actor.user), key: set.key.or(actor.key), environment: set.environment.or(actor.environment) },
        None => actor,
    };
    response.extensions_mut().insert(merged);
}

/// Largest JSON body whose `name` is read for the audit log's target.
const AUDIT_BODY_LIMIT: usize = 64 * 1024;

/// Records every request that may change something (all but GET/HEAD/OPTIONS), refused or not.
pub async fn audit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let client = match request.headers().get("x-corral-client").and_then(|v| v.to_str().ok()) {
        Some(c @ ("cli" | "ui")) => c.to_string(),
        _ => "api".to_string(),
    };
    let remote = request.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let method = request.method().to_string();
    // The full path: under `nest("/v1")` the request's own URI has lost the prefix.
    let path = request.extensions().get::<axum::extract::OriginalUri>().map_or_else(|| request.uri().path().to_string(), |u| u.path().to_string());
    // The names in the path (`/stacks/WEB/services/web` → WEB, web), then the one in the body.
    let (mut parts, body) = request.into_parts();
    let mut target: Vec<String> = match axum::extract::RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(params) => params.iter().map(|(_, v)| v.to_string()).collect(),
        Err(_) => Vec::new(),
    };
    let (request, body_name) = body_name(Request::from_parts(parts, body)).await;
    target.extend(body_name);
    let response = next.run(request).await;
    let actor = response.extensions().get::<Actor>().cloned().unwrap_or_default();
    let entry = NewAuditEntry {
        user: actor.user,
        key: actor.key,
        client,
        remote,
        method,
        path,
        environment: actor.environment,
        target: (!target.is_empty()).then(|| target.join("/")),
        status: response.status().as_u16(),
    };
    if let Err(e) = state.store.record_audit(&entry).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
    response
}

/// For a small JSON body: the request back unchanged, and the name it carries (`name`, or `user`
/// for a login). Passwords and other fields are never read out.
async fn body_name(request: Request) -> (Request, Option<String>) {
    let is_json = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let small = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()).is_some_and(|n| n <= AUDIT_BODY_LIMIT);
    if !is_json || !small {
        return (request, None);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, AUDIT_BODY_LIMIT).await else {
        // The body did not arrive whole; the handler answers that.
        return (Request::from_parts(parts, axum::body::Body::empty()), None);
    };
    let name = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| ["name", "user", "group"].iter().find_map(|k| v.get(*k).and_then(|n| n.as_str()).map(str::to_string)));
    (Request::from_parts(parts, axum::body::Body::from(bytes)), name)
}

/// Failed logins, counted in the database (a restart forgets none): each failure answers
/// slowly, and after [`LOGIN_LIMITS`] failures within its window for one user name (from any
/// address) or from one address (for any user name), further logins are refused (429) until
/// the window passes, even with the right password.
pub const LOGIN_LIMITS: LoginLimits = LoginLimits { per_user: 10, per_address: 30, window: Duration::from_secs(15 * 60) };
/// How long a failed login takes to answer, so guessing is slow even below the limit.
pub const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(500);

/// Counts a login attempt before the password is checked, so parallel guesses count too;
/// refuses when a limit is reached, saying for how long. Returns the attempt to clear on success.
pub async fn begin_login(state: &AppState, user: &str, ip: IpAddr) -> ApiResult<i64> {
    match state.store.begin_login(user, &ip.to_string(), LOGIN_LIMITS).await? {
        LoginAttempt::Allowed { attempt } => Ok(attempt),
        LoginAttempt::Refused { wait, by_user } => {
            let minutes = wait.as_secs().div_ceil(60);
            let whom = if by_user { format!("user {user}") } else { "this address".to_string() };
            Err(ApiError::TooManyAttempts {
                message: format!("too many failed logins for {whom}; try again in {minutes} minute(s) (after {} seconds)", wait.as_secs()),
                retry_after: wait,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_capabilities_in_order() {
        use Capability::*;
        let allowed = |role| Capability::ALL.into_iter().filter(|c| Grant::Role(role).allows(*c)).collect::<Vec<_>>();
        assert_eq!(allowed(Role::ReadOnly), [Read, ReadLogs]);
        assert_eq!(allowed(Role::Restricted), [Read, ReadLogs, ManageServices]);
        assert_eq!(allowed(Role::Member), [Read, ReadLogs, ManageServices, ManageHosts]);
        assert_eq!(allowed(Role::Owner), Capability::ALL);
        assert!(Capability::ALL.iter().all(|c| Grant::Admin.allows(*c)));
    }

    #[test]
    fn environment_keys_see_one_environment() {
        let p = Principal { user_id: 1, user: "admin".into(), admin: true, key: Some("k".into()), key_environment: Some(2), session: None, roles: HashMap::new() };
        assert_eq!(p.grant(2), Some(Grant::Admin));
        assert_eq!(p.grant(3), None);
        assert!(!p.is_admin(), "an environment key is no admin credential");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; corral_session=corral_s_x ; c=d".parse().unwrap());
        assert_eq!(session_cookie(&headers), Some("corral_s_x"));
    }
}
