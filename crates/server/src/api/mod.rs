//! The REST + WebSocket API under `/v1`, and the web UI at `/`.
//!
//! One file per resource. Handlers validate, write through the store in one transaction,
//! trigger a reconcile pass and answer; they never talk to agents directly.

pub mod agent;
pub mod backup;
pub mod containers;
pub mod environments;
pub mod events;
pub mod hosts;
pub mod services;
pub mod stacks;
pub mod ui;

use crate::error::{ApiError, ApiResult};
use crate::events::Resource;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use corral_store::environments::DEFAULT_ENVIRONMENT;
use corral_store::Environment;
use serde::Deserialize;

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

pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/environments", get(environments::list).post(environments::create))
        .route("/environments/{name}", axum::routing::delete(environments::remove))
        .route("/hosts", get(hosts::list))
        .route("/hosts/join-command", get(hosts::join_command))
        .route("/hosts/{host}", get(hosts::get))
        .route("/stacks", get(stacks::list).post(stacks::create))
        .route("/stacks/{stack}", get(stacks::get).delete(stacks::remove))
        .route("/stacks/{stack}/services", get(services::list_in_stack).post(services::create))
        .route("/stacks/{stack}/services/{service}", get(services::get).delete(services::remove))
        .route("/stacks/{stack}/services/{service}/scale", put(services::scale))
        .route("/stacks/{stack}/services/{service}/upgrade", axum::routing::post(services::upgrade))
        .route("/stacks/{stack}/services/{service}/stop", axum::routing::post(services::stop))
        .route("/stacks/{stack}/services/{service}/start", axum::routing::post(services::start))
        .route("/services", get(services::list))
        .route("/containers", get(containers::list))
        .route("/containers/{name}", get(containers::get).delete(containers::remove))
        .route("/backup", get(backup::download))
        .route("/restore", axum::routing::post(backup::restore))
        .route_layer(middleware::from_fn_with_state(state.clone(), publish_changes))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let open = Router::new()
        .route("/health", get(health))
        // Checks the token itself: browsers can only pass it in the query on a WebSocket.
        .route("/events", get(events::connect))
        .route("/containers/{name}/logs", get(containers::logs))
        .route("/agent", get(agent::connect))
        .route("/agent/binary", get(agent::binary));
    let v1 = authed.merge(open).fallback(|| async { ApiError::NotFound("no such API endpoint; see docs/api.md".into()) });
    Router::new().nest("/v1", v1).fallback(ui::service(&state.config)).layer(desktop_cors()).with_state(state)
}

/// The desktop window loads the UI bundled in the app (origin `tauri://localhost`) and calls
/// this API across origins. Requests carry a bearer token, never cookies, so allowing the app's
/// origins opens nothing to other pages.
fn desktop_cors() -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin([HeaderValue::from_static("tauri://localhost"), HeaderValue::from_static("http://tauri.localhost")])
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)
}

pub(crate) async fn check_token(state: &AppState, token: Option<&str>) -> ApiResult<()> {
    match token {
        Some(t) if state.store.verify_api_token(t).await?.is_some() => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    check_token(&state, bearer(request.headers())).await?;
    Ok(next.run(request).await)
}

/// Every successful write through the API tells event-stream clients which lists to refetch.
async fn publish_changes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::http::Method;
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let resources = changed_by(request.uri().path());
    let env = axum::extract::Query::<EnvQuery>::try_from_uri(request.uri()).ok().and_then(|q| q.0.env);
    let response = next.run(request).await;
    if response.status().is_success() {
        state.events.publish(env.as_deref().unwrap_or(DEFAULT_ENVIRONMENT), resources);
    }
    response
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
        _ => &Resource::IN_ENVIRONMENT,
    }
}
