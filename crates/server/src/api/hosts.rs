//! Hosts (list, deactivate, activate, revoke, remove) and the join command.

use super::{EnvQuery, Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use corral_store::{Environment, Host};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

pub async fn join_command(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<JoinCommand>> {
    let env = q.resolve(&state).await?;
    let token = state.store.join_token(env.id).await?;
    Ok(Json(join_command_for(&state, env, token).await?))
}

/// Gives the environment a new join token and answers the new join command. The old token is
/// refused from now on; hosts that have joined keep their own credentials.
pub async fn rotate_join_token(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<JoinCommand>> {
    let env = q.resolve(&state).await?;
    let token = state.store.rotate_join_token(env.id).await?;
    Ok(Json(join_command_for(&state, env, token).await?))
}

/// The join command is built from configuration only: never from the request (its `Host`
/// header is whatever the caller typed, and it ends up in a line people paste into a root shell).
async fn join_command_for(state: &AppState, env: Environment, token: String) -> ApiResult<JoinCommand> {
    let server_url = agent_url(state).await?.url;
    let ca_fingerprint = state.ca.as_ref().map(|ca| ca.fingerprint.clone());
    let command = command_line(&server_url, ca_fingerprint.as_deref(), &token);
    Ok(JoinCommand { environment: env.name, server_url, token, ca_fingerprint, command })
}

/// The URL hosts join at, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentUrl {
    pub url: String,
    pub source: UrlSource,
    /// What this machine's configuration alone gives (the listen address, or this machine's
    /// address when listening on every interface).
    pub detected: String,
}

/// Where the URL in join commands comes from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UrlSource {
    /// `--advertise-url` on the control plane's command line.
    CommandLine,
    /// Set by an administrator (Settings, `corral settings set`), kept in the database.
    Settings,
    /// The listen address, or this machine's address.
    Detected,
}

/// The URL join commands name: `--advertise-url` when given, else the one stored in the
/// settings, else the one [`server_url`] detects. Never anything from a request.
pub async fn agent_url(state: &AppState) -> ApiResult<AgentUrl> {
    let stored = state.store.settings().await?.advertise_url;
    let interfaces: Vec<(String, IpAddr)> = if_addrs::get_if_addrs().unwrap_or_default().into_iter().map(|i| (i.name.clone(), i.ip())).collect();
    let detected = server_url(None, state.config.listen, state.ca.is_some(), &interfaces);
    Ok(choose_agent_url(state.config.advertise_url.as_deref(), stored.as_deref(), detected))
}

fn choose_agent_url(command_line: Option<&str>, stored: Option<&str>, detected: String) -> AgentUrl {
    let (url, source) = match (command_line, stored) {
        (Some(url), _) => (url, UrlSource::CommandLine),
        (None, Some(url)) => (url, UrlSource::Settings),
        (None, None) => (detected.as_str(), UrlSource::Detected),
    };
    AgentUrl { url: url.trim_end_matches('/').to_string(), source, detected: detected.clone() }
}

/// The URL hosts reach this control plane at: the advertised URL when one is configured; else
/// the listen address when it names one interface; else, listening on every interface, this
/// machine's address (see [`host_address`]); loopback only when it has no other.
fn server_url(advertised: Option<&str>, listen: SocketAddr, tls: bool, interfaces: &[(String, IpAddr)]) -> String {
    if let Some(url) = advertised {
        return url.trim_end_matches('/').to_string();
    }
    let scheme = if tls { "https" } else { "http" };
    let ip = if listen.ip().is_unspecified() { host_address(listen.is_ipv6(), interfaces) } else { listen.ip() };
    format!("{scheme}://{}", SocketAddr::new(ip, listen.port()))
}

/// The address other machines most likely reach this one at: IPv4 first (IPv6 only when
/// listening on `::`), never loopback or link-local, and interfaces of containers and virtual
/// machines on this host (`docker0`, `br-…`, `veth…`, `virbr…`) only when there is nothing else.
fn host_address(ipv6: bool, interfaces: &[(String, IpAddr)]) -> IpAddr {
    let is_bridge = |name: &str| ["docker", "br-", "veth", "virbr", "cni", "flannel"].iter().any(|p| name.starts_with(p));
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => ipv6 && !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    };
    interfaces.iter().filter(|(_, ip)| usable(ip)).min_by_key(|(name, ip)| (is_bridge(name), ip.is_ipv6())).map(|(_, ip)| *ip).unwrap_or(if ipv6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    })
}

/// One line to run on a host with Docker: fetch the agent from the control plane and start it.
/// Every value in it is one shell word, whatever it holds.
fn command_line(server_url: &str, ca_fingerprint: Option<&str>, join_token: &str) -> String {
    let q = shell_quote;
    let agent_url = format!("{server_url}/v1/agent/binary");
    match ca_fingerprint {
        // The CA is fetched without trusting anyone, then checked against the fingerprint in
        // this very line before curl trusts it for the download: only standard tools needed.
        Some(pin) => {
            let hex = pin.trim_start_matches("sha256:");
            let fetch_ca = format!("curl -fsSk {} -o corral-ca.pem", q(&format!("{server_url}/v1/ca.pem")));
            // PEM is base64 of the DER, so coreutils alone can check it.
            let check = format!("[ \"$(sed '/-----/d' corral-ca.pem | base64 -d | sha256sum | cut -d' ' -f1)\" = {} ]", q(hex));
            let fetch_agent = format!("curl -fsSL --cacert corral-ca.pem {} -o corral-agent", q(&agent_url));
            format!(
                "{fetch_ca} && {check} && {fetch_agent} && chmod +x corral-agent && ./corral-agent agent --server {} --ca-fingerprint {} --token {}",
                q(server_url),
                q(pin),
                q(join_token)
            )
        }
        None => format!(
            "curl -fsSL {} -o corral-agent && chmod +x corral-agent && ./corral-agent agent --server {} --token {}",
            q(&agent_url),
            q(server_url),
            q(join_token)
        ),
    }
}

/// `value` as one word for any POSIX shell: as it is when it holds only characters no shell
/// treats specially (so URLs and tokens stay readable), otherwise in single quotes, inside
/// which nothing is special; a `'` itself is written `'\''` (close, escaped quote, reopen).
fn shell_quote(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+,".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        std::borrow::Cow::Borrowed(value)
    } else {
        std::borrow::Cow::Owned(format!("'{}'", value.replace('\'', "'\\''")))
    }
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
    let ca = state
        .ca
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this control plane serves plain HTTP only (started with --tls off or on loopback): it has no CA to pin".into()))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], ca.pem.clone()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words `sh` makes of `words`, as the shell itself prints them (NUL after each).
    fn words_in_sh(words: &str) -> Vec<String> {
        let out = std::process::Command::new("sh").arg("-c").arg(format!("for w in {words}; do printf '%s\\0' \"$w\"; done")).output().unwrap();
        assert!(out.status.success(), "{words}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_terminator('\0').map(str::to_string).collect()
    }

    #[test]
    fn shell_quoting_keeps_every_value_one_literal_word() {
        assert_eq!(shell_quote("https://10.0.0.5:7070"), "https://10.0.0.5:7070", "plain values stay readable");
        assert_eq!(shell_quote("sha256:ab12"), "sha256:ab12");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        let hostile = ["x;touch /tmp/pwned;#", "$(id)", "`id`", "a'b\"c", "a b\tc\nd", "~root", "*", "=cmd", "!1", "a\\b", "{a,b}", "-n", "'", "''"];
        let line = hostile.iter().map(|v| shell_quote(v)).collect::<Vec<_>>().join(" ");
        assert_eq!(words_in_sh(&line), hostile, "{line}");
    }

    fn ifaces(list: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        list.iter().map(|(n, ip)| (n.to_string(), ip.parse().unwrap())).collect()
    }

    #[test]
    fn the_server_url_comes_from_configuration() {
        let machine = ifaces(&[("lo", "127.0.0.1"), ("docker0", "172.17.0.1"), ("eth0", "fe80::1"), ("eth0", "192.168.1.20"), ("eth0", "2001:db8::20")]);
        let url = |advertised: Option<&str>, listen: &str, tls: bool| server_url(advertised, listen.parse().unwrap(), tls, &machine);
        assert_eq!(url(Some("https://cp.lan:7070/"), "0.0.0.0:7070", true), "https://cp.lan:7070");
        assert_eq!(url(None, "10.1.2.3:7070", true), "https://10.1.2.3:7070", "a specific address is used as it is");
        assert_eq!(url(None, "127.0.0.1:41000", false), "http://127.0.0.1:41000");
        assert_eq!(url(None, "0.0.0.0:7070", true), "https://192.168.1.20:7070", "the machine's LAN address, not Docker's bridge");
        assert_eq!(url(None, "[::]:7070", true), "https://192.168.1.20:7070", "IPv4 first");
        assert_eq!(url(None, "[::1]:7070", false), "http://[::1]:7070");
        let v6_only = ifaces(&[("lo", "::1"), ("eth0", "fe80::1"), ("eth0", "2001:db8::20")]);
        assert_eq!(server_url(None, "[::]:7070".parse().unwrap(), false, &v6_only), "http://[2001:db8::20]:7070");
        let bridges_only = ifaces(&[("lo", "127.0.0.1"), ("docker0", "172.17.0.1")]);
        assert_eq!(server_url(None, "0.0.0.0:7070".parse().unwrap(), false, &bridges_only), "http://172.17.0.1:7070");
        assert_eq!(server_url(None, "0.0.0.0:7070".parse().unwrap(), false, &ifaces(&[("lo", "127.0.0.1")])), "http://127.0.0.1:7070");
    }

    #[test]
    fn the_command_line_url_wins_then_the_stored_one() {
        let detected = || "https://192.168.1.20:7070".to_string();
        let chosen = |flag, stored| {
            let u = choose_agent_url(flag, stored, detected());
            (u.url, u.source)
        };
        assert_eq!(chosen(Some("https://cp.lan:7070/"), Some("https://other:7070")), ("https://cp.lan:7070".into(), UrlSource::CommandLine));
        assert_eq!(chosen(None, Some("https://other:7070")), ("https://other:7070".into(), UrlSource::Settings));
        assert_eq!(chosen(None, None), (detected(), UrlSource::Detected));
        assert_eq!(choose_agent_url(None, Some("https://other:7070"), detected()).detected, detected(), "what detection gives is said too");
    }

    #[test]
    fn the_command_line_is_the_values_it_names_and_nothing_else() {
        let line = command_line("http://cp.lan:7070/$(touch x)", None, "tok'en");
        assert_eq!(
            line,
            "curl -fsSL 'http://cp.lan:7070/$(touch x)/v1/agent/binary' -o corral-agent && chmod +x corral-agent && ./corral-agent agent --server 'http://cp.lan:7070/$(touch x)' --token 'tok'\\''en'"
        );
        let pinned = command_line("https://10.0.0.5:7070", Some("sha256:00ff"), "abc");
        assert!(pinned.starts_with("curl -fsSk https://10.0.0.5:7070/v1/ca.pem -o corral-ca.pem && [ "), "{pinned}");
        assert!(pinned.contains("= 00ff ] && curl -fsSL --cacert corral-ca.pem https://10.0.0.5:7070/v1/agent/binary -o corral-agent"), "{pinned}");
        assert!(pinned.ends_with("--server https://10.0.0.5:7070 --ca-fingerprint sha256:00ff --token abc"), "{pinned}");
    }
}
