//! What the menus do, as plain functions over the control plane's state: the app's menus call
//! them, and so do the command-line switches and the tests, with no window involved.

use corral_server::state::AppState;
use corral_store::StoreError;

/// Names of the environments, in the order the Environment menu lists them.
pub async fn environment_names(state: &AppState) -> Result<Vec<String>, StoreError> {
    Ok(state.store.environments().await?.into_iter().map(|env| env.name).collect())
}

/// Script run before the bundled UI: where the API is, the admin token, and the URL agents on
/// the LAN use (`window.__CORRAL__ = {api, token, agentUrl}`).
pub fn init_script(api: &str, token: &str, agent_url: &str) -> String {
    let value = serde_json::json!({ "api": api, "token": token, "agentUrl": agent_url });
    format!("window.__CORRAL__ = {value};")
}

/// Script that makes the web UI switch to `environment`, as its own switcher does.
pub fn select_environment_script(environment: &str) -> String {
    let detail = serde_json::to_string(environment).expect("a string always serializes");
    format!("window.dispatchEvent(new CustomEvent('corral:select-env', {{detail: {detail}}}));")
}

/// The environment a window title names (`"Corral — DEV"`), if any.
pub fn environment_in_title(title: &str) -> Option<&str> {
    title.strip_prefix("Corral — ").map(str::trim).filter(|name| !name.is_empty())
}

/// `1234567` -> `"1.2 MB"`, for messages.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        size /= 1000.0;
        unit = u;
        if size < 1000.0 {
            break;
        }
    }
    format!("{size:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_select_script_quotes_the_name() {
        assert_eq!(select_environment_script("it's \"DEV\""), r#"window.dispatchEvent(new CustomEvent('corral:select-env', {detail: "it's \"DEV\""}));"#);
    }

    #[test]
    fn the_init_script_tells_the_ui_api_token_and_agent_url() {
        let script = init_script("http://127.0.0.1:7070", "t0k", "http://192.168.1.5:7070");
        let json = script.strip_prefix("window.__CORRAL__ = ").unwrap().strip_suffix(';').unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["api"], "http://127.0.0.1:7070");
        assert_eq!(value["token"], "t0k");
        assert_eq!(value["agentUrl"], "http://192.168.1.5:7070");
    }

    #[test]
    fn titles_and_sizes() {
        assert_eq!(environment_in_title("Corral — DEV"), Some("DEV"));
        assert_eq!(environment_in_title("Corral"), None);
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1_234_567), "1.2 MB");
    }
}
