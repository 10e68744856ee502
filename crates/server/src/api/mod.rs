//! The REST + WebSocket API under `/v1`, and the web UI at `/`.
//!
//! One file per resource. Handlers validate, write through the store in one transaction,
//! trigger a reconcile pass and answer; they never talk to agents directly. Who may call what
//! is one table here ([`routes`]), applied by [`crate::access::authorize`] before any handler.

pub mod agent;
pub mod apikeys;
pub mod audit;
pub mod backup;
pub mod containers;
pub mod environments;
pub mod events;
pub mod hosts;
pub mod login;
pub mod members;
pub mod metrics;
pub mod network;
pub mod registries;
pub mod services;
pub mod settings;
pub mod stacks;
pub mod tickets;
pub mod ui;
pub mod users;

use crate::access::Policy;
use crate::error::{ApiError, ApiResult};
use crate::events::Resource;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use corral_store::environments::DEFAULT_ENVIRONMENT;
use corral_store::Environment;
use serde::Deserialize;
use std::collections::HashMap;

/// `axum::Json`, but a body that is not JSON (or not the right JSON) is an [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A WebSocket upgrade that is checked only when the handler asks ([`WsUpgrade::accept`]), so
/// the handler's own refusals (an unknown container, a bad parameter) come first; a request
/// that is not a WebSocket handshake then gets a 400 saying so, the same on every endpoint.
pub struct WsUpgrade {
    upgrade: Result<axum::extract::WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The full path: under `nest("/v1")` the request's own URI has lost the prefix.
        let path = parts.extensions.get::<axum::extract::OriginalUri>().map_or_else(|| parts.uri.path().to_string(), |u| u.path().to_string());
        let upgrade = axum::extract::WebSocketUpgrade::from_request_parts(parts, state).await;
        Ok(WsUpgrade { upgrade, path })
    }
}

impl WsUpgrade {
    pub fn accept(self) -> ApiResult<axum::extract::WebSocketUpgrade> {
        let path = self.path;
        self.upgrade.map_err(|e| ApiError::BadRequest(format!("{path} is a WebSocket endpoint; connect with a WebSocket client ({})", e.body_text())))
    }
}

/// `?env=NAME` picks the environment; without it, the default one.
#[derive(Debug, Deserialize)]
pub struct EnvQuery {
    pub env: Option<String>,
}

impl EnvQuery {
    pub async fn resolve(&self, state: &AppState) -> ApiResult<Environment> {
        Ok(state.store.environment(self.env.as_deref().unwrap_or(DEFAULT_ENVIRONMENT)).await?)
    }
}

/// One API route: method, path under `/v1`, and who may call it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Endpoint {
    #[serde(serialize_with = "method_name")]
    pub method: Method,
    /// Under `/v1`, or at the root for a [`root`] route.
    pub path: &'static str,
    pub policy: Policy,
    /// A WebSocket that browsers open: the one kind of route that takes `?ticket=` (on a real
    /// upgrade only), since a browser cannot set headers there.
    pub websocket: bool,
    /// Served at the root, not under `/v1`.
    pub root: bool,
}

impl Endpoint {
    /// The path clients request.
    pub fn url_path(&self) -> String {
        if self.root {
            self.path.to_string()
        } else {
            format!("/v1{}", self.path)
        }
    }
}

fn method_name<S: serde::Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn ep<H, T>(method: Method, path: &'static str, policy: Policy, handler: H) -> (Endpoint, MethodRouter<AppState>)
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("route table methods are standard");
    (Endpoint { method, path, policy, websocket: false, root: false }, on(filter, handler))
}

/// A WebSocket route browsers open: [`ep`], taking `?ticket=` on its upgrade.
fn ws<H, T>(method: Method, path: &'static str, policy: Policy, handler: H) -> (Endpoint, MethodRouter<AppState>)
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let (endpoint, router) = ep(method, path, policy, handler);
    (Endpoint { websocket: true, ..endpoint }, router)
}

/// A route served at the root rather than under `/v1`, under the same access policy mechanism.
fn root((endpoint, router): (Endpoint, MethodRouter<AppState>)) -> (Endpoint, MethodRouter<AppState>) {
    (Endpoint { root: true, ..endpoint }, router)
}

/// Every API route with its access policy: the router is built from this table, and the one
/// authorisation middleware looks each request's route up in it. A route added any other way
/// has no policy and is refused.
fn table() -> Vec<(Endpoint, MethodRouter<AppState>)> {
    use crate::access::Capability::*;
    use Method as M;
    use Policy::*;
    vec![
        ep(M::GET, "/health", Public, health),
        ep(M::GET, "/agent", Public, agent::connect),
        ep(M::GET, "/agent/binary", Public, agent::binary),
        ep(M::GET, "/ca.pem", Public, hosts::ca_pem),
        ep(M::POST, "/login", Public, login::login),
        ep(M::POST, "/logout", Public, login::logout),
        ep(M::GET, "/whoami", Authenticated, login::whoami),
        ep(M::POST, "/ws-ticket", Authenticated, tickets::issue),
        ep(M::GET, "/settings", Authenticated, settings::get),
        ep(M::PATCH, "/settings", Admin, settings::change),
        ep(M::GET, "/environments", Authenticated, environments::list),
        ep(M::POST, "/environments", Admin, environments::create),
        ep(M::PATCH, "/environments/{name}", Admin, environments::rename),
        ep(M::DELETE, "/environments/{name}", Admin, environments::remove),
        ep(M::GET, "/users", Admin, users::list),
        ep(M::POST, "/users", Admin, users::create),
        ep(M::DELETE, "/users/{user}", Admin, users::remove),
        ep(M::PUT, "/users/{user}/password", Admin, users::set_password),
        ep(M::GET, "/groups", Admin, users::list_groups),
        ep(M::POST, "/groups", Admin, users::create_group),
        ep(M::DELETE, "/groups/{group}", Admin, users::remove_group),
        ep(M::POST, "/groups/{group}/members", Admin, users::add_to_group),
        ep(M::DELETE, "/groups/{group}/members/{user}", Admin, users::remove_from_group),
        ep(M::GET, "/members", Env(Read), members::list),
        ep(M::POST, "/members", Env(ManageEnv), members::add),
        ep(M::DELETE, "/members/{kind}/{name}", Env(ManageEnv), members::remove),
        ep(M::GET, "/apikeys", Authenticated, apikeys::list),
        ep(M::POST, "/apikeys", Authenticated, apikeys::create),
        ep(M::DELETE, "/apikeys/{name}", Authenticated, apikeys::revoke),
        ep(M::GET, "/audit", Env(ManageEnv), audit::list),
        ws(M::GET, "/events", Env(Read), events::connect),
        ep(M::GET, "/hosts", Env(Read), hosts::list),
        ep(M::GET, "/hosts/join-command", Env(ManageHosts), hosts::join_command),
        ep(M::POST, "/hosts/join-command/rotate", Env(ManageEnv), hosts::rotate_join_token),
        ep(M::GET, "/hosts/{host}", Env(Read), hosts::get),
        ep(M::DELETE, "/hosts/{host}", Env(ManageHosts), hosts::remove),
        ep(M::POST, "/hosts/{host}/deactivate", Env(ManageHosts), hosts::deactivate),
        ep(M::POST, "/hosts/{host}/activate", Env(ManageHosts), hosts::activate),
        ep(M::POST, "/hosts/{host}/revoke", Env(ManageEnv), hosts::revoke),
        ep(M::GET, "/network", Env(Read), network::get),
        ep(M::GET, "/registries", Env(Read), registries::list),
        ep(M::PUT, "/registries/{host}", Env(ManageHosts), registries::put),
        ep(M::DELETE, "/registries/{host}", Env(ManageHosts), registries::remove),
        ep(M::GET, "/stacks", Env(Read), stacks::list),
        ep(M::POST, "/stacks", Env(ManageServices), stacks::create),
        ep(M::GET, "/stacks/{stack}", Env(Read), stacks::get),
        ep(M::DELETE, "/stacks/{stack}", Env(ManageServices), stacks::remove),
        ep(M::GET, "/stacks/{stack}/services", Env(Read), services::list_in_stack),
        ep(M::POST, "/stacks/{stack}/services", Env(ManageServices), services::create),
        ep(M::GET, "/stacks/{stack}/services/{service}", Env(Read), services::get),
        ep(M::DELETE, "/stacks/{stack}/services/{service}", Env(ManageServices), services::remove),
        ep(M::PUT, "/stacks/{stack}/services/{service}/scale", Env(ManageServices), services::scale),
        ep(M::POST, "/stacks/{stack}/services/{service}/upgrade", Env(ManageServices), services::upgrade),
        ep(M::POST, "/stacks/{stack}/services/{service}/stop", Env(ManageServices), services::stop),
        ep(M::POST, "/stacks/{stack}/services/{service}/start", Env(ManageServices), services::start),
        ep(M::GET, "/services", Env(Read), services::list),
        ep(M::GET, "/containers", Env(Read), containers::list),
        ep(M::GET, "/containers/{name}", Env(Read), containers::get),
        ep(M::DELETE, "/containers/{name}", Env(ManageServices), containers::remove),
        ep(M::POST, "/containers/{name}/stop", Env(ManageServices), containers::stop),
        ep(M::POST, "/containers/{name}/start", Env(ManageServices), containers::start),
        ep(M::POST, "/containers/{name}/restart", Env(ManageServices), containers::restart),
        ws(M::GET, "/containers/{name}/logs", Env(ReadLogs), containers::logs),
        ep(M::GET, "/hosts/{host}/stats", Env(Read), metrics::host_stats),
        ep(M::GET, "/containers/{name}/stats", Env(Read), metrics::container_stats),
        ep(M::GET, "/stacks/{stack}/services/{service}/stats", Env(Read), metrics::service_stats),
        ep(M::GET, "/stats/summary", Env(Read), metrics::summary),
        ws(M::GET, "/stats/live", Env(Read), metrics::live),
        ep(M::GET, "/backup", Admin, backup::download),
        ep(M::POST, "/restore", Admin, backup::restore),
        // Where Prometheus looks by default; each caller sees the environments it may see.
        root(ep(M::GET, "/metrics", Authenticated, metrics::prometheus)),
    ]
}

/// Every API route with its policy, in table order.
pub fn routes() -> Vec<Endpoint> {
    table().into_iter().map(|(e, _)| e).collect()
}

/// A route by method and the path it matched as clients request it (`/v1/stacks/{stack}`, `/metrics`).
pub fn endpoint(method: &Method, url_path: &str) -> Option<&'static Endpoint> {
    static ENDPOINTS: std::sync::OnceLock<HashMap<(Method, String), Endpoint>> = std::sync::OnceLock::new();
    ENDPOINTS.get_or_init(|| routes().into_iter().map(|e| ((e.method.clone(), e.url_path()), e)).collect()).get(&(method.clone(), url_path.to_string()))
}

/// The API, the root routes and the web UI, for a listener speaking `scheme`.
pub fn router(state: AppState, scheme: crate::access::Scheme) -> Router {
    let (at_root, under_v1): (Vec<_>, Vec<_>) = table().into_iter().partition(|(endpoint, _)| endpoint.root);
    let routes = |table: Vec<(Endpoint, MethodRouter<AppState>)>| {
        table.into_iter().fold(Router::new(), |router, (endpoint, handler)| router.route(endpoint.path, handler))
    };
    // Innermost first: authorise, then tell event-stream clients what changed; the audit log
    // wraps both, so it records refusals too.
    let guarded = |router: Router<AppState>| {
        router
            .route_layer(middleware::from_fn_with_state(state.clone(), publish_changes))
            .route_layer(middleware::from_fn_with_state(state.clone(), crate::access::authorize))
            .route_layer(middleware::from_fn_with_state(state.clone(), crate::access::audit))
    };
    let v1 = guarded(routes(under_v1)).fallback(|| async { ApiError::NotFound("no such API endpoint; see docs/api.md".into()) });
    guarded(routes(at_root))
        // Bodies read whole (JSON) stop at the cap; the restore upload is streamed and not held to it.
        .nest("/v1", v1.layer(middleware::from_fn(crate::metrics::track_latency)).layer(axum::extract::DefaultBodyLimit::max(crate::validate::MAX_BODY_BYTES)))
        .fallback(ui::service(&state.config))
        .layer(desktop_cors())
        .layer(axum::Extension(scheme))
        .with_state(state)
}

/// The desktop window loads the UI bundled in the app (origin `tauri://localhost`) and calls
/// this API across origins. Requests carry a bearer token; credentials (cookies) are not allowed
/// across origins, and the session cookie is SameSite=Strict, so allowing the app's origins
/// opens nothing to other pages.
fn desktop_cors() -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(crate::access::DESKTOP_ORIGINS.map(HeaderValue::from_static))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::HeaderName::from_static("x-corral-client")])
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)
}

/// Ends a WebSocket whose access was withdrawn, saying why in a policy-violation close frame.
pub(crate) async fn close_revoked(socket: &mut axum::extract::ws::WebSocket, why: crate::access::Revoked) {
    use axum::extract::ws::{close_code, CloseFrame, Message};
    let frame = CloseFrame { code: close_code::POLICY, reason: why.to_string().into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Every successful write through the API tells event-stream clients which lists to refetch,
/// and open connections to check their access again when it may have changed who may do what.
async fn publish_changes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::http::Method;
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let resources = changed_by(&path);
    let env = axum::extract::Query::<EnvQuery>::try_from_uri(request.uri()).ok().and_then(|q| q.0.env);
    let response = next.run(request).await;
    if response.status().is_success() {
        state.events.publish(env.as_deref().unwrap_or(DEFAULT_ENVIRONMENT), resources);
        if changes_access(&path) {
            state.access.notify();
        }
    }
    response
}

/// Whether a successful write to `path` (under `/v1`) may take access away from someone: a
/// logout, a user, group, membership, key or environment changed or removed, a restore.
fn changes_access(path: &str) -> bool {
    let first = path.trim_start_matches("/v1").trim_start_matches('/').split('/').next().unwrap_or_default();
    matches!(first, "logout" | "users" | "groups" | "members" | "apikeys" | "environments" | "restore")
}

/// The resource lists a successful write to `path` (under `/v1`) may change.
fn changed_by(path: &str) -> &'static [Resource] {
    let first = path.trim_start_matches("/v1").trim_start_matches('/').split('/').next().unwrap_or_default();
    match first {
        "environments" => &[Resource::Environments],
        "stacks" | "services" => &[Resource::Stacks, Resource::Services, Resource::Containers],
        "containers" => &[Resource::Services, Resource::Containers],
        "hosts" => &[Resource::Hosts, Resource::Containers],
        // A restore announces everything itself, also when it runs in-process.
        "restore" => &[],
        // Neither changes a list the stream announces.
        "settings" | "ws-ticket" => &[],
        _ => &Resource::IN_ENVIRONMENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_that_may_take_access_away_are_announced() {
        for path in
            ["/v1/logout", "/v1/users/ann", "/v1/groups/ops/members/ann", "/v1/members/user/ann", "/v1/apikeys/k", "/v1/environments/DEV", "/v1/restore"]
        {
            assert!(changes_access(path), "{path}");
        }
        for path in ["/v1/login", "/v1/stacks", "/v1/hosts/h/revoke", "/v1/containers/c"] {
            assert!(!changes_access(path), "{path}");
        }
    }

    #[test]
    fn only_the_browser_websockets_take_tickets() {
        let sockets: Vec<String> = routes().into_iter().filter(|e| e.websocket).map(|e| e.url_path()).collect();
        assert_eq!(sockets, ["/v1/events", "/v1/containers/{name}/logs", "/v1/stats/live"]);
        assert_eq!(endpoint(&Method::GET, "/metrics").map(|e| e.policy), Some(Policy::Authenticated));
        assert!(endpoint(&Method::GET, "/v1/metrics").is_none());
    }
}
