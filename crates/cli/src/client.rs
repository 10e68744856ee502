//! The REST client the commands share: base URL, token, environment, and `{code, message}` errors.

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub type WebSocket = corral_agent::tls::WebSocket;
use corral_agent::tls::{ConnectError, Fingerprint};

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    environment: Option<String>,
    /// The control plane's CA, pinned (`--ca-fingerprint`).
    pin: Option<Fingerprint>,
}

/// Tells the control plane's audit log that a change came from the CLI.
const CLIENT_HEADER: (&str, &str) = ("x-corral-client", "cli");

impl Client {
    /// Without a token, the session `corral login` stored for this server, then (on the control
    /// plane's own machine) the admin token.
    /// With `pin`, an https:// server must present that CA, and no other is trusted; without
    /// it, the usual public CAs are (a control plane behind a proxy with a public certificate).
    pub fn new(base: &str, token: Option<String>, environment: Option<String>, pin: Option<Fingerprint>) -> Client {
        let base = base.trim_end_matches('/').to_string();
        let token = token.or_else(|| crate::commands::login::stored(&base).map(|s| s.token)).or_else(local_admin_token);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(CLIENT_HEADER.0, reqwest::header::HeaderValue::from_static(CLIENT_HEADER.1));
        let mut builder = reqwest::Client::builder().default_headers(headers);
        if let Some(pin) = pin {
            builder = builder.use_preconfigured_tls(corral_agent::tls::client_config(pin));
        }
        let http = builder.build().unwrap_or_default();
        Client { http, base, token, environment, pin }
    }

    /// The same client, working in another environment.
    pub fn in_environment(&self, environment: &str) -> Client {
        Client { environment: Some(environment.to_string()), ..self.clone() }
    }

    /// The same client, with another credential.
    pub fn with_token(&self, token: &str) -> Client {
        Client { token: Some(token.to_string()), environment: None, ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        self.send(Method::GET, path, query, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send::<(), serde_json::Value>(Method::DELETE, path, &[], None).await.map(|_| ())
    }

    /// A DELETE whose answer is JSON (e.g. the revoked key).
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(Method::DELETE, path, &[], None::<&()>).await
    }

    /// Opens one of the API's WebSocket endpoints, with the token and environment like any call.
    pub async fn websocket(&self, path: &str, query: &[(&str, &str)]) -> Result<WebSocket> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut url = reqwest::Url::parse(&format!("{}/v1{path}", self.base)).with_context(|| format!("invalid server URL {}", self.base))?;
        url.query_pairs_mut().extend_pairs(query).extend_pairs(self.environment.as_ref().map(|e| ("env", e)));
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| anyhow!("cannot use {} for a WebSocket", self.base))?;
        let mut request = url.as_str().into_client_request()?;
        if let Some(token) = &self.token {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
        }
        request.headers_mut().insert(CLIENT_HEADER.0, CLIENT_HEADER.1.parse()?);
        match corral_agent::tls::connect_websocket(request, self.pin).await {
            Ok((socket, _)) => Ok(socket),
            // Refusals come as JSON before the upgrade, like any other answer.
            Err(ConnectError::Http(response)) => {
                let body = response.body().as_deref().unwrap_or_default();
                let message = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                    .unwrap_or_else(|| format!("{}: {}", response.status(), String::from_utf8_lossy(body)));
                Err(anyhow!(message))
            }
            Err(e @ (ConnectError::Mismatch(_) | ConnectError::NoPin(_))) => Err(anyhow!(e)),
            Err(e) => Err(anyhow!(e)).with_context(|| self.unreachable()),
        }
    }

    /// What to say when a request did not get an answer, with the TLS reason when there is one.
    fn unreachable(&self) -> String {
        format!("cannot reach the control plane at {}; is it running? (set --server or CORRAL_URL)", self.base)
    }

    /// A failed request as the user should read it: a CA mismatch or a missing pin first.
    fn send_error(&self, e: reqwest::Error) -> anyhow::Error {
        if let Some(mismatch) = corral_agent::tls::pin_mismatch(&e) {
            return anyhow!(mismatch);
        }
        if self.pin.is_none() && self.base.starts_with("https://") && e.is_connect() {
            return anyhow!(e).context(format!(
                "cannot connect to {} over TLS; a control plane with its own CA needs --ca-fingerprint (or CORRAL_CA_FINGERPRINT) from `corral host join-command`",
                self.base
            ));
        }
        // A plain-HTTP request to a TLS port gets a TLS record back, which hyper reads as a bad
        // HTTP version: say what to do rather than what the parser saw.
        let chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source()).map(|e| e.to_string()).collect::<String>();
        if self.base.starts_with("http://") && chain.contains("invalid HTTP version") {
            return anyhow!(
                "the control plane at {} speaks TLS: use --server {} (or CORRAL_URL), with --ca-fingerprint from its start-up output or `corral host join-command` unless it runs on this machine",
                self.base,
                self.base.replacen("http://", "https://", 1)
            );
        }
        anyhow!(e).context(self.unreachable())
    }

    /// A request with the token and environment like every call, for bodies that are not JSON
    /// (database files); send it with [`Client::checked`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}/v1{path}", self.base));
        if let Some(env) = &self.environment {
            request = request.query(&[("env", env)]);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `request`; an error answer becomes its message.
    pub async fn checked(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.send_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.context("reading the control plane's answer")?;
        Err(anyhow!(error_message(status, &bytes)))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&B>) -> Result<T> {
        let url = format!("{}/v1{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(env) = &self.environment {
            request = request.query(&[("env", env)]);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.send_error(e))?;
        let status = response.status();
        let bytes = response.bytes().await.context("reading the control plane's answer")?;
        if !status.is_success() {
            return Err(anyhow!(error_message(status, &bytes)));
        }
        let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes).context("the control plane's answer is not the expected JSON")
    }
}

/// The `message` of an error answer, or the raw answer when it is not the API's JSON.
fn error_message(status: StatusCode, bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(bytes)))
}

/// Default data dir of `corral server`: `$XDG_DATA_HOME/corral`, usually `~/.local/share/corral`.
pub fn default_data_dir() -> std::path::PathBuf {
    dirs::data_dir().unwrap_or_else(|| std::path::PathBuf::from(".")).join("corral")
}

/// On the control plane's own machine, the admin token it wrote on first start.
/// For a control plane on this machine (a loopback URL), the CA its data dir holds: the same
/// trust the local admin-token file gives.
pub fn local_ca_pin(server: &str) -> Option<Fingerprint> {
    let url = reqwest::Url::parse(server).ok()?;
    let host = url.host_str()?;
    let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return None;
    }
    let fingerprint = corral_server::tls::existing_ca_fingerprint(&default_data_dir())?;
    Fingerprint::parse(&fingerprint).ok()
}

fn local_admin_token() -> Option<String> {
    let path = default_data_dir().join(corral_server::ADMIN_TOKEN_FILE);
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}
