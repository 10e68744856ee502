//! Control-plane settings: the URL hosts join at, which administrators may change.

use super::hosts::{agent_url, UrlSource};
use super::Json;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::validate;
use axum::extract::State;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Serialize)]
pub struct SettingsOut {
    /// The URL join commands name now.
    pub agent_url: String,
    /// Where it comes from: `command-line` (`--advertise-url`), `settings` (stored here) or
    /// `detected` (the listen address, or this machine's address).
    pub agent_url_source: UrlSource,
    /// The URL stored here, if any; it applies unless `--advertise-url` was given.
    pub advertise_url: Option<String>,
    /// What join commands would name without a stored or command-line URL.
    pub detected_url: String,
    /// What a user should know about the URL in use, e.g. that no other machine can reach it.
    pub notes: Vec<String>,
    pub updated_at: Option<String>,
}

/// `PATCH /v1/settings`: what is given changes; `null` (or `""`) forgets a stored value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    #[serde(default, deserialize_with = "given")]
    pub advertise_url: Option<Option<String>>,
}

/// A field that is present, even as `null`, is `Some`.
fn given<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn get(State(state): State<AppState>) -> ApiResult<Json<SettingsOut>> {
    Ok(Json(settings_out(&state).await?))
}

pub async fn change(State(state): State<AppState>, Json(body): Json<SettingsChange>) -> ApiResult<Json<SettingsOut>> {
    let Some(url) = body.advertise_url else {
        return Err(crate::error::ApiError::invalid("advertise_url", "nothing to change: give advertise_url (a URL, or null to forget the stored one)"));
    };
    let url = url.filter(|u| !u.trim().is_empty()).map(|u| validate::advertise_url(&u)).transpose()?;
    state.store.set_advertise_url(url.as_deref()).await?;
    if let (Some(url), Some(tls)) = (&url, &state.tls) {
        // Agents check the name they dial against the certificate: it names the new host at once.
        if let Some(host) = crate::url_host(url) {
            tls.add_name(&host).map_err(|e| crate::error::ApiError::Internal(format!("adding {host} to the server certificate: {e}")))?;
        }
    }
    tracing::info!(advertise_url = url.as_deref().unwrap_or("(detected)"), "advertised URL changed");
    Ok(Json(settings_out(&state).await?))
}

async fn settings_out(state: &AppState) -> ApiResult<SettingsOut> {
    let stored = state.store.settings().await?;
    let chosen = agent_url(state).await?;
    let notes = notes(&chosen.url, chosen.source, stored.advertise_url.as_deref(), state.ca.is_some());
    Ok(SettingsOut {
        agent_url: chosen.url,
        agent_url_source: chosen.source,
        advertise_url: stored.advertise_url,
        detected_url: chosen.detected,
        notes,
        updated_at: stored.updated_at,
    })
}

/// What a user should know about the URL join commands name.
fn notes(url: &str, source: UrlSource, stored: Option<&str>, tls: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if let (UrlSource::CommandLine, Some(stored)) = (source, stored) {
        notes.push(format!(
            "--advertise-url on the control plane's command line ({url}) wins over the URL stored here ({stored}); the stored one applies when the control plane starts without it"
        ));
    }
    let host = crate::url_host(url).unwrap_or_default();
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        notes.push(format!(
            "{url} is a loopback address: only this machine can join with it. Set the URL other hosts reach this control plane at, or start it with --listen 0.0.0.0:PORT"
        ));
    }
    if tls && url.starts_with("http://") {
        notes.push(format!("this control plane speaks TLS, but {url} is plain http://: agents can only connect if something in between serves plain HTTP"));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_say_what_would_surprise() {
        assert!(notes("https://192.168.1.20:7070", UrlSource::Detected, None, true).is_empty());
        let overridden = notes("https://cp.lan:7070", UrlSource::CommandLine, Some("https://other:7070"), true);
        assert!(overridden.len() == 1 && overridden[0].contains("wins over") && overridden[0].contains("https://other:7070"), "{overridden:?}");
        assert!(notes("http://127.0.0.1:7070", UrlSource::Detected, None, false)[0].contains("loopback"));
        assert!(notes("https://[::1]:7070", UrlSource::Settings, Some("https://[::1]:7070"), true)[0].contains("loopback"));
        assert!(notes("http://192.168.1.20:7070", UrlSource::Settings, Some("http://192.168.1.20:7070"), true)[0].contains("TLS"));
    }

    #[test]
    fn a_change_tells_a_missing_field_from_a_null_one() {
        let parse = |json: &str| serde_json::from_str::<SettingsChange>(json).map(|c| c.advertise_url);
        assert_eq!(parse("{}").unwrap(), None);
        assert_eq!(parse(r#"{"advertise_url": null}"#).unwrap(), Some(None));
        assert_eq!(parse(r#"{"advertise_url": "https://cp.lan"}"#).unwrap(), Some(Some("https://cp.lan".into())));
        assert!(parse(r#"{"advertise": "x"}"#).is_err());
    }
}
