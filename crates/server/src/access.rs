//! Who is asking and what they may do: authentication, the one authorisation check every API
//! route goes through, the audit log of changes, and the limit on failed logins.
//!
//! - Credentials: `Authorization: Bearer` (an API key or a session token), the `corral_session`
//!   cookie of the web UI, or a [`Tickets`] ticket as `?ticket=` on the upgrade of the WebSocket
//!   routes the table marks (browsers cannot set headers there, and a credential in a URL ends
//!   up in logs and histories); a token in the URL is no credential anywhere.
//! - Each route has one [`Policy`] in the table of [`crate::api`]; [`authorize`] applies it. A
//!   route without a policy is refused, so a forgotten entry fails closed.
//! - Environments the principal may not see answer 404, exactly like ones that do not exist.
//! - Browser pages of another origin cannot act with the cookie: see [`origin_refusal`].
//! - Connections that outlive their request (WebSockets) keep an [`Admission`] and check it again
//!   whenever [`AccessChanges`] says credentials or roles changed, and every few seconds.

use crate::api::EnvQuery;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use corral_store::access::Role;
use corral_store::audit::{AuditDetail, NewAuditEntry};
use corral_store::environments::DEFAULT_ENVIRONMENT;
use corral_store::logins::{LoginAttempt, LoginLimits};
use corral_store::Environment;
use corral_store::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::watch;

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
    /// Add and remove hosts (the join command carries the environment's join token), and the
    /// registries their engines pull from (with their credentials and CAs).
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

/// Where a request's credential came from: it decides which origin checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer`: a page of another origin cannot send it without CORS allowing it.
    Bearer,
    /// A ticket (`?ticket=`) on a WebSocket upgrade, standing for the credential it was issued to.
    Ticket,
    /// The session cookie, which the browser adds by itself, whichever page made the request.
    Cookie,
}

/// The credential a request carries, wherever it carries it; `ticketed` is the credential a
/// redeemed ticket stands for, only ever given for a real upgrade of a WebSocket route.
fn credential<'a>(headers: &'a HeaderMap, ticketed: Option<&'a str>) -> Option<(&'a str, CredentialSource)> {
    if let Some(token) = crate::api::bearer(headers) {
        return Some((token, CredentialSource::Bearer));
    }
    if let Some(token) = ticketed {
        return Some((token, CredentialSource::Ticket));
    }
    session_cookie(headers).map(|t| (t, CredentialSource::Cookie))
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

#[derive(serde::Deserialize)]
struct TicketQuery {
    ticket: Option<String>,
}

/// How long a WebSocket ticket may wait for its connection.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Unused tickets one credential may hold at once, and all credentials together.
const TICKETS_PER_CREDENTIAL: usize = 64;
const MAX_TICKETS: usize = 10_000;

/// Short-lived, single-use tickets that open one WebSocket route for the credential they were
/// issued to (`POST /v1/ws-ticket`): a browser that signs its requests with a bearer token (the
/// desktop window, a `#token=` link) cannot put headers on a WebSocket, and a token in the URL
/// would end up in logs, proxies and histories. A ticket is worth one connection, to the path it
/// names, within [`TICKET_TTL`]; the connection is then checked and re-checked like any other,
/// against the credential behind it.
#[derive(Default)]
pub struct Tickets(std::sync::Mutex<HashMap<String, Ticket>>);

struct Ticket {
    credential: String,
    path: String,
    expires: tokio::time::Instant,
}

impl Tickets {
    /// A new ticket for `credential` to open `path` once; refused when the credential (or
    /// everyone together) holds too many unused ones.
    pub fn issue(&self, credential: &str, path: &str) -> ApiResult<String> {
        let now = tokio::time::Instant::now();
        let mut tickets = self.0.lock().expect("tickets lock");
        tickets.retain(|_, t| t.expires > now);
        let held = tickets.values().filter(|t| t.credential == credential).count();
        if held >= TICKETS_PER_CREDENTIAL || tickets.len() >= MAX_TICKETS {
            return Err(ApiError::TooManyAttempts {
                message: format!("too many unused WebSocket tickets ({held} for this credential); each is good for {} s", TICKET_TTL.as_secs()),
                retry_after: TICKET_TTL,
            });
        }
        let ticket = format!("corral_t_{}", corral_store::environments::random_secret(24));
        tickets.insert(ticket.clone(), Ticket { credential: credential.to_string(), path: path.to_string(), expires: now + TICKET_TTL });
        Ok(ticket)
    }

    /// The credential behind `ticket`, if it is unexpired and for `path`; a ticket is used up by
    /// its first try, whatever comes of it.
    pub fn redeem(&self, ticket: &str, path: &str) -> Option<String> {
        let found = self.0.lock().expect("tickets lock").remove(ticket)?;
        (found.expires > tokio::time::Instant::now() && found.path == path).then_some(found.credential)
    }
}

/// The request asks for a WebSocket (what the origin check looks at: any such header counts).
fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A complete WebSocket handshake, the only kind of request a `?token=` is read from.
fn is_websocket_handshake(request: &Request) -> bool {
    let headers = request.headers();
    let has = |name: header::HeaderName, want: &str| {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|v| v.trim().eq_ignore_ascii_case(want))
    };
    request.method() == Method::GET
        && is_websocket(headers)
        && has(header::CONNECTION, "upgrade")
        && has(header::SEC_WEBSOCKET_VERSION, "13")
        && headers.get(header::SEC_WEBSOCKET_KEY).is_some_and(|k| !k.is_empty())
}

/// The scheme of the listener a request came in on; [`crate::api::router`] stamps it on every
/// request, and [`crate::ControlPlane::run`] builds one router per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The `Set-Cookie` value of a session (an empty `token` with age 0 clears it). `Secure` over
/// TLS, so a browser never sends it over plain HTTP; the desktop's plain loopback listener
/// cannot have it, or the cookie would never come back there.
pub fn session_cookie_header(token: &str, max_age: Duration, scheme: Scheme) -> String {
    let secure = if scheme == Scheme::Https { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", max_age.as_secs())
}

/// The origins of the desktop app's window, which loads the UI bundled in the app and calls the
/// API (and opens its WebSockets) across origins with a bearer token.
pub const DESKTOP_ORIGINS: [&str; 2] = ["tauri://localhost", "http://tauri.localhost"];

/// `scheme://host[:port]` of a URL or origin, lower-cased, without a default port; `None` for
/// anything else (the opaque origin `null`, a bare host).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty() || authority.is_empty() || authority.contains('@') || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(":80"),
        "https" | "wss" => Some(":443"),
        _ => None,
    };
    let authority = default_port.and_then(|p| authority.strip_suffix(p)).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// What [`origin_refusal`] decides on, taken from one request.
#[derive(Debug, Clone, Copy)]
pub struct OriginCheck<'a> {
    /// Anything but GET, HEAD and OPTIONS.
    pub changes_state: bool,
    pub websocket: bool,
    pub source: Option<CredentialSource>,
    /// The `Origin` header, or else the `Referer` one.
    pub page: Option<&'a str>,
    /// The origins the web UI is served from: this request's own (its listener's scheme and its
    /// `Host`), and the advertised URL's.
    pub own: &'a [String],
}

/// Why a request must be refused as coming from a page of another origin, if it must. A page
/// anywhere can make the browser send a request with its cookie to this control plane: SameSite
/// does not stop another port of the same host (where any service Corral runs listens), and
/// nothing stops a WebSocket. So:
/// - a state-changing request that is not signed by a bearer token (it uses the cookie, or it
///   is the login) is refused when its page is another origin's, and, when it uses the cookie,
///   also when it names no page at all (browsers always send `Origin` on such requests);
/// - a WebSocket upgrade is refused when it names another origin's page (clients that are not
///   browsers name none).
pub fn origin_refusal(check: &OriginCheck) -> Option<String> {
    let applies = check.websocket || (check.changes_state && check.source != Some(CredentialSource::Bearer));
    if !applies {
        return None;
    }
    let own = check.own.first().map_or("this control plane's own address", String::as_str);
    match check.page {
        Some(page) => {
            let origin = origin_of(page);
            let allowed = origin.as_deref().is_some_and(|o| check.own.iter().any(|own| own == o) || DESKTOP_ORIGINS.contains(&o));
            (!allowed).then(|| {
                let shown = origin.unwrap_or_else(|| page.chars().take(100).collect());
                format!("refused: this request comes from a page at origin {shown}, not from Corral's web UI at {own}; pages of other origins cannot act with your session (use the UI at {own}, or a token with the CLI or API)")
            })
        }
        None if !check.websocket && check.source == Some(CredentialSource::Cookie) => Some(format!(
            "refused: a request signed in by the session cookie must say which page sent it (an Origin or Referer header of the web UI at {own}); scripts should send a token in the Authorization header instead"
        )),
        None => None,
    }
}

/// The [`OriginCheck`] of a request.
fn origin_check<'a>(state: &AppState, request: &'a Request, source: Option<CredentialSource>, own: &'a mut Vec<String>) -> OriginCheck<'a> {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = request.extensions().get::<Scheme>().copied().unwrap_or_default();
    let host = text(header::HOST).or_else(|| request.uri().authority().map(|a| a.as_str()));
    own.extend(host.and_then(|h| origin_of(&format!("{}://{h}", scheme.as_str()))));
    own.extend(state.config.advertise_url.as_deref().and_then(origin_of));
    OriginCheck {
        changes_state: !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS),
        websocket: is_websocket(headers),
        source,
        page: text(header::ORIGIN).or_else(|| text(header::REFERER)),
        own,
    }
}

/// Why a principal may not do what a policy asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An admin-only route, and the caller is none (or uses an environment key).
    NotAdmin,
    /// The environment is not the caller's to see: as if it did not exist.
    Hidden,
    /// Visible, but the role is too weak.
    Role { grant: Grant, needed: Role },
}

/// Whether `principal` may call a route with `policy`, in `environment_id` for an environment
/// route; the one decision [`authorize`] and every later re-check make.
pub fn admits(principal: &Principal, policy: Policy, environment_id: Option<i64>) -> Result<(), Refusal> {
    match policy {
        Policy::Public | Policy::Authenticated => Ok(()),
        Policy::Admin if principal.is_admin() => Ok(()),
        Policy::Admin => Err(Refusal::NotAdmin),
        Policy::Env(capability) => match environment_id.and_then(|id| principal.grant(id)) {
            None => Err(Refusal::Hidden),
            Some(grant) if !grant.allows(capability) => Err(Refusal::Role { grant, needed: capability.least_role() }),
            Some(_) => Ok(()),
        },
    }
}

/// Tells connections that outlive their request (WebSockets) that credentials, memberships or
/// roles may have changed, so they check theirs again at once. [`crate::api`] notifies after
/// every successful change of users, groups, members, keys, sessions and environments, and
/// after a restore; code that changes access another way calls [`AccessChanges::notify`].
#[derive(Debug)]
pub struct AccessChanges(watch::Sender<u64>);

impl Default for AccessChanges {
    fn default() -> Self {
        AccessChanges(watch::channel(0).0)
    }
}

impl AccessChanges {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// How often an open connection checks its access again with no change announced: what bounds
/// how long it outlives an expired session.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// What [`authorize`] admitted a request on: its credential, the route's policy and the
/// environment. A connection that outlives the request checks it again with [`Admission::watch`].
#[derive(Clone)]
pub struct Admission {
    token: Option<String>,
    policy: Policy,
    environment_id: Option<i64>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential itself.
        f.debug_struct("Admission").field("policy", &self.policy).field("environment_id", &self.environment_id).finish_non_exhaustive()
    }
}

/// Why an open connection was ended; short enough for a WebSocket close frame (123 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    #[error("access revoked: signed out, or the session, key or user is gone; sign in again")]
    Credential,
    #[error("access revoked: the environment was removed")]
    EnvironmentGone,
    #[error("access revoked: no longer an admin")]
    NotAdmin,
    #[error("access revoked: no longer a member of this environment")]
    Hidden,
    #[error("access revoked: the role here no longer allows this")]
    Role,
    #[error("access could not be checked again; reconnect")]
    Unchecked,
}

impl From<Refusal> for Revoked {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotAdmin => Revoked::NotAdmin,
            Refusal::Hidden => Revoked::Hidden,
            Refusal::Role { .. } => Revoked::Role,
        }
    }
}

impl Admission {
    /// The credential the request was admitted on (a ticket's is the one it stands for).
    pub fn credential(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Checks the admission again as [`authorize`] would now: the credential still opens a
    /// principal, the environment still exists, and the policy still admits it there.
    pub async fn check(&self, state: &AppState) -> Result<(), Revoked> {
        let Some(token) = &self.token else { return Ok(()) };
        let principal = match principal_for(state, token).await {
            Ok(p) => p,
            Err(ApiError::Unauthorized) => return Err(Revoked::Credential),
            Err(e) => {
                // Fails closed: the client reconnects, and is admitted again if it still may be.
                tracing::warn!(error = %e, "could not check an open connection's access");
                return Err(Revoked::Unchecked);
            }
        };
        if let Some(id) = self.environment_id {
            match state.store.environment_by_id(id).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => return Err(Revoked::EnvironmentGone),
                Err(e) => {
                    tracing::warn!(error = %e, "could not check an open connection's environment");
                    return Err(Revoked::Unchecked);
                }
            }
        }
        admits(&principal, self.policy, self.environment_id).map_err(Revoked::from)
    }

    /// Starts watching: take it before the upgrade, so no change after the request is missed.
    pub fn watch(&self, state: &AppState) -> AccessWatch {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Due at once: a change between the request's check and this subscription is not missed.
        AccessWatch { state: state.clone(), admission: self.clone(), changes: state.access.0.subscribe(), every, due: true }
    }
}

/// An open connection's access, checked again on every announced change and every
/// [`RECHECK_EVERY`]; see [`AccessWatch::revoked`].
pub struct AccessWatch {
    state: AppState,
    admission: Admission,
    changes: watch::Receiver<u64>,
    every: tokio::time::Interval,
    /// A check is owed (kept across cancellation, so a `select!` cannot lose one).
    due: bool,
}

impl AccessWatch {
    /// Resolves when the connection may no longer stay open, with the reason to close it with.
    /// Cancel-safe: meant for one branch of the connection's `select!` loop.
    pub async fn revoked(&mut self) -> Revoked {
        loop {
            if !self.due {
                tokio::select! {
                    Ok(()) = self.changes.changed() => {}
                    _ = self.every.tick() => {}
                }
                self.due = true;
            }
            match self.admission.check(&self.state).await {
                Ok(()) => self.due = false,
                Err(revoked) => return revoked,
            }
        }
    }
}

/// The one authorisation check: authenticates the caller and applies the route's policy.
/// Handlers find the [`Principal`], its [`Admission`] and, for environment routes, the
/// [`RequestEnvironment`] in the request's extensions.
pub async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(matched) = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        // No route matched: the fallback answers (404 for an unknown endpoint).
        return next.run(request).await;
    };
    let method = if request.method() == Method::HEAD { Method::GET } else { request.method().clone() };
    let Some(endpoint) = crate::api::endpoint(&method, &matched) else {
        tracing::error!(%method, path = matched, "route without an access policy refused");
        return respond(
            ApiError::Forbidden(format!("{method} {matched} has no access policy; it is refused until one is added to the API's route table")),
            Actor::default(),
        );
    };
    let policy = endpoint.policy;
    let ticket = (endpoint.websocket && is_websocket_handshake(&request))
        .then(|| axum::extract::Query::<TicketQuery>::try_from_uri(request.uri()).ok().and_then(|q| q.0.ticket))
        .flatten();
    let ticketed = match ticket {
        Some(ticket) => {
            // The full path: under `nest("/v1")` the request's own URI has lost the prefix.
            let path = request.extensions().get::<axum::extract::OriginalUri>().map_or_else(|| request.uri().path().to_string(), |u| u.path().to_string());
            match state.tickets.redeem(&ticket, &path) {
                Some(credential) => Some(credential),
                None => return respond(ApiError::BadTicket, Actor::default()),
            }
        }
        None => None,
    };
    let credential = credential(request.headers(), ticketed.as_deref()).map(|(t, source)| (t.to_string(), source));
    let mut own = Vec::new();
    if let Some(why) = origin_refusal(&origin_check(&state, &request, credential.as_ref().map(|c| c.1), &mut own)) {
        tracing::warn!(%method, path = matched, "refused a request from another origin");
        return respond(ApiError::Forbidden(why), Actor::default());
    }
    let token = credential.map(|(t, _)| t);
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
    let environment = match (policy, &principal) {
        (Policy::Public, _) => None,
        (_, None) => return respond(ApiError::Unauthorized, actor),
        (Policy::Env(_), Some(_)) => {
            let name =
                axum::extract::Query::<EnvQuery>::try_from_uri(request.uri()).ok().and_then(|q| q.0.env).unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_string());
            actor.environment = Some(name.clone());
            match state.store.environment(&name).await {
                Ok(env) => Some((env, name)),
                Err(e) => return respond(e.into(), actor),
            }
        }
        (_, Some(_)) => None,
    };
    // Hidden environments answer as unknown ones do, under the name the caller gave.
    let (environment, requested) = environment.map_or((None, None), |(env, name)| (Some(env), Some(name)));
    if let Some(p) = &principal {
        if let Some(env) = &environment {
            actor.environment = Some(env.name.clone());
        }
        if let Err(refusal) = admits(p, policy, environment.as_ref().map(|e| e.id)) {
            let error = match (refusal, &environment) {
                (Refusal::NotAdmin, _) => {
                    ApiError::Forbidden(format!("{method} {matched} is for admins; user {} is not one (or uses an environment key)", p.user))
                }
                (Refusal::Role { grant, needed }, Some(env)) => ApiError::Forbidden(format!(
                    "user {} is {} in environment {}; this needs the {needed} role or higher (ask an owner: `corral member add {} {} --role {needed}`)",
                    p.user,
                    grant.name(),
                    env.name,
                    env.name,
                    p.user
                )),
                _ => corral_store::environments::not_found(requested.as_deref().unwrap_or(DEFAULT_ENVIRONMENT)).into(),
            };
            return respond(error, actor);
        }
    }
    request.extensions_mut().insert(Admission { token, policy, environment_id: environment.as_ref().map(|e| e.id) });
    if let Some(env) = environment {
        request.extensions_mut().insert(RequestEnvironment(env));
    }
    if let Some(p) = principal {
        request.extensions_mut().insert(p);
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

/// Largest JSON body whose fields are read for the audit log.
const AUDIT_BODY_LIMIT: usize = 64 * 1024;

/// Body fields an audit entry keeps, to tell what the request asked for: names, and the few
/// values that make an action (a scale, an image, a role). Passwords and other fields never.
const AUDIT_BODY_FIELDS: [&str; 10] = ["name", "user", "group", "role", "scale", "image", "kind", "admin", "environment", "advertise_url"];

/// Longest text kept of one body field: they are names, untrusted until the handler checked them.
const AUDIT_FIELD_CHARS: usize = 256;

/// Requests that change nothing although they are POSTs: a ticket for a WebSocket the UI opens
/// on every page (the connection itself is checked like any request).
pub(crate) const UNAUDITED: [&str; 1] = ["/ws-ticket"];

/// Records every request that may change something (all but GET/HEAD/OPTIONS), refused or not.
pub async fn audit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) || UNAUDITED.contains(&request.uri().path()) {
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
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    // The names in the path (`/stacks/WEB/services/web` → stack WEB, service web), then the body's.
    let (mut parts, body) = request.into_parts();
    let mut detail = AuditDetail::default();
    if let Ok(params) = axum::extract::RawPathParams::from_request_parts(&mut parts, &state).await {
        detail.path = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    let request;
    (request, detail.body) = body_fields(Request::from_parts(parts, body)).await;
    // What it named: the path's names in their order, then the body's name.
    let mut target: Vec<String> = route.iter().flat_map(|r| route_params(r)).filter_map(|p| detail.path.get(p).cloned()).collect();
    target.extend(["name", "user", "group"].iter().find_map(|k| detail.body_text(k)));
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
        route,
        detail,
    };
    if let Err(e) = state.store.record_audit(&entry).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
    response
}

/// The parameter names of a route, in order: `/v1/stacks/{stack}/services/{service}` → stack, service.
fn route_params(route: &str) -> impl Iterator<Item = &str> {
    route.split('/').filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
}

/// For a small JSON body: the request back unchanged, and the [`AUDIT_BODY_FIELDS`] it carries
/// as strings, numbers or booleans (text cut to [`AUDIT_FIELD_CHARS`]).
async fn body_fields(request: Request) -> (Request, BTreeMap<String, serde_json::Value>) {
    let is_json = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let small = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()).is_some_and(|n| n <= AUDIT_BODY_LIMIT);
    if !is_json || !small {
        return (request, BTreeMap::new());
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, AUDIT_BODY_LIMIT).await else {
        // The body did not arrive whole; the handler answers that.
        return (Request::from_parts(parts, axum::body::Body::empty()), BTreeMap::new());
    };
    let fields = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(body)) => AUDIT_BODY_FIELDS
            .iter()
            .filter_map(|k| {
                let value = match body.get(*k)? {
                    serde_json::Value::String(s) => serde_json::Value::String(s.chars().take(AUDIT_FIELD_CHARS).collect()),
                    v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.clone(),
                    _ => return None,
                };
                Some((k.to_string(), value))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    (Request::from_parts(parts, axum::body::Body::from(bytes)), fields)
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
        let p =
            Principal { user_id: 1, user: "admin".into(), admin: true, key: Some("k".into()), key_environment: Some(2), session: None, roles: HashMap::new() };
        assert_eq!(p.grant(2), Some(Grant::Admin));
        assert_eq!(p.grant(3), None);
        assert!(!p.is_admin(), "an environment key is no admin credential");
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        assert_eq!(origin_of("HTTP://Cp.Lan:80/#/stacks").as_deref(), Some("http://cp.lan"));
        assert_eq!(origin_of("https://cp.lan:443").as_deref(), Some("https://cp.lan"));
        assert_eq!(origin_of("https://cp.lan:7070/x?y").as_deref(), Some("https://cp.lan:7070"));
        assert_eq!(origin_of("tauri://localhost").as_deref(), Some("tauri://localhost"));
        assert_eq!(origin_of("http://[::1]:7070").as_deref(), Some("http://[::1]:7070"));
        for opaque in ["null", "", "cp.lan:7070", "http://user@evil.example", "://x"] {
            assert_eq!(origin_of(opaque), None, "{opaque}");
        }
    }

    #[test]
    fn pages_of_other_origins_cannot_use_the_cookie() {
        use CredentialSource::*;
        let own = ["http://127.0.0.1:7070".to_string()];
        let check = |changes_state, websocket, source, page| origin_refusal(&OriginCheck { changes_state, websocket, source, page, own: &own });
        // The UI's own page, by Origin or Referer (default ports and case do not matter), and the desktop window.
        assert_eq!(check(true, false, Some(Cookie), Some("http://127.0.0.1:7070")), None);
        assert_eq!(check(true, false, Some(Cookie), Some("http://127.0.0.1:7070/#/stacks")), None);
        assert_eq!(check(true, true, Some(Ticket), Some("tauri://localhost")), None);
        // Another origin: another site, another port or scheme of this host, an opaque origin.
        for page in ["http://evil.example", "http://127.0.0.1:8080", "https://127.0.0.1:7070", "null"] {
            let why = check(true, false, Some(Cookie), Some(page)).unwrap_or_else(|| panic!("{page} was let through"));
            assert!(why.contains("origin") && why.contains("http://127.0.0.1:7070"), "{why}");
            assert!(check(false, true, Some(Ticket), Some(page)).is_some(), "a WebSocket from {page}");
            assert!(check(true, false, None, Some(page)).is_some(), "a login from {page}");
        }
        // The cookie on a state-changing request that names no page: refused, saying how to do it.
        assert!(check(true, false, Some(Cookie), None).unwrap().contains("Authorization"));
        // Not the browser's doing: bearer tokens, reads, clients that name no page.
        assert_eq!(check(true, false, Some(Bearer), Some("http://evil.example")), None);
        assert_eq!(check(false, false, Some(Cookie), Some("http://evil.example")), None);
        assert_eq!(check(false, true, Some(Ticket), None), None);
        assert_eq!(check(true, false, None, None), None);
    }

    #[test]
    fn admission_is_one_decision() {
        let mut p = Principal {
            user_id: 2,
            user: "ann".into(),
            admin: false,
            key: None,
            key_environment: None,
            session: None,
            roles: HashMap::from([(1, Role::ReadOnly)]),
        };
        assert_eq!(admits(&p, Policy::Env(Capability::Read), Some(1)), Ok(()));
        assert_eq!(
            admits(&p, Policy::Env(Capability::ManageServices), Some(1)),
            Err(Refusal::Role { grant: Grant::Role(Role::ReadOnly), needed: Role::Restricted })
        );
        assert_eq!(admits(&p, Policy::Env(Capability::Read), Some(2)), Err(Refusal::Hidden));
        assert_eq!(admits(&p, Policy::Admin, None), Err(Refusal::NotAdmin));
        assert_eq!(admits(&p, Policy::Authenticated, None), Ok(()));
        p.roles.clear();
        assert_eq!(Revoked::from(admits(&p, Policy::Env(Capability::Read), Some(1)).unwrap_err()), Revoked::Hidden);
        // Every reason fits a WebSocket close frame.
        for r in [Revoked::Credential, Revoked::EnvironmentGone, Revoked::NotAdmin, Revoked::Hidden, Revoked::Role, Revoked::Unchecked] {
            assert!(r.to_string().len() <= 123, "{r}");
        }
    }

    #[test]
    fn the_session_cookie_is_secure_over_tls_only() {
        let tls = session_cookie_header("corral_s_x", Duration::from_secs(60), Scheme::Https);
        assert_eq!(tls, "corral_session=corral_s_x; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure");
        assert!(!session_cookie_header("", Duration::ZERO, Scheme::Http).contains("Secure"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; corral_session=corral_s_x ; c=d".parse().unwrap());
        assert_eq!(session_cookie(&headers), Some("corral_s_x"));
    }
}
