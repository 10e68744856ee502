//! Serves the built web UI (`ui/dist`) at `/`, with `index.html` for client-side routes.

use crate::Config;
use axum::response::Html;
use axum::routing::{get, MethodRouter};
use tower_http::services::{ServeDir, ServeFile};

const NOT_BUILT: &str = "<!doctype html><title>Corral</title><h1>Corral control plane is running</h1>\
<p>The web UI is not built. Run <code>npm ci && npm run build</code> in <code>ui/</code>, or start the server with <code>--ui-dir</code>.</p>\
<p>The API is at <a href=\"/v1/health\">/v1/health</a>.</p>";

pub fn service(config: &Config) -> MethodRouter<crate::state::AppState> {
    match &config.ui_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            let serve = ServeDir::new(dir).not_found_service(ServeFile::new(dir.join("index.html")));
            axum::routing::get_service(serve)
        }
        _ => get(|| async { Html(NOT_BUILT) }),
    }
}
