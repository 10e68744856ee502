//! Serves the built web UI (`ui/dist`) at `/`, with `index.html` for client-side routes.
//!
//! Assets go out compressed (brotli or gzip, as the browser accepts) and with cache headers:
//! Vite names every file under `/assets/` by a hash of its content, so those never change under
//! their name and are cached for a year without asking again; `index.html`, which names the
//! current ones, is revalidated on every load (a 304 when unchanged), so a new build is picked
//! up at once.

use crate::Config;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::services::{ServeDir, ServeFile};

const NOT_BUILT: &str = "<!doctype html><title>Corral</title><h1>Corral control plane is running</h1>\
<p>The web UI is not built. Run <code>npm ci && npm run build</code> in <code>ui/</code>, or start the server with <code>--ui-dir</code>.</p>\
<p>The API is at <a href=\"/v1/health\">/v1/health</a>.</p>";

/// Where Vite puts the files it names by their content's hash.
const HASHED: &str = "/assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

pub fn service(config: &Config) -> MethodRouter<crate::state::AppState> {
    match &config.ui_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            let serve = ServeDir::new(dir).not_found_service(ServeFile::new(dir.join("index.html")));
            axum::routing::get_service(serve)
                .layer::<_, std::convert::Infallible>(middleware::from_fn(cache_headers))
                // Brotli's middle quality: close to its best ratio on JavaScript at a small part of
                // its best's time, paid once per browser since the assets are cached for a year.
                .layer::<_, std::convert::Infallible>(CompressionLayer::new().quality(CompressionLevel::Precise(5)))
        }
        _ => get(|| async { Html(NOT_BUILT) }),
    }
}

/// How long a response for `path` (with `status`) may be cached.
fn cache_control(path: &str, status: StatusCode) -> &'static str {
    match (path.starts_with(HASHED), status) {
        (true, StatusCode::OK | StatusCode::PARTIAL_CONTENT) => IMMUTABLE,
        _ => REVALIDATE,
    }
}

async fn cache_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    // A hashed asset that is not there (a page from an older build) is a plain 404, not the
    // index page under a script's name.
    if path.starts_with(HASHED) && response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"text/html")) {
        response = (StatusCode::NOT_FOUND, "no such asset; reload the page to get the current web UI").into_response();
    }
    let value = cache_control(&path, response.status());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashed_assets_are_cached_for_long() {
        assert_eq!(cache_control("/assets/index-3f2a9c.js", StatusCode::OK), IMMUTABLE);
        assert_eq!(cache_control("/assets/missing.js", StatusCode::NOT_FOUND), REVALIDATE);
        assert_eq!(cache_control("/", StatusCode::OK), REVALIDATE);
        assert_eq!(cache_control("/index.html", StatusCode::OK), REVALIDATE);
        assert_eq!(cache_control("/favicon.svg", StatusCode::OK), REVALIDATE);
    }
}
