//! Following a service until its containers run or say why they cannot: what `service create`
//! (and `upgrade`) show while hosts pull the image and start the containers.

use super::text;
use crate::client::Client;
use anyhow::{bail, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How often the service is looked at while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Where a rollout stands, decided from one `GET` of the service.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Still going: this line says how far (printed when it changes).
    Going(String),
    /// Every instance runs (or the service is stopped).
    Done(String),
    /// It cannot go on by itself: this says why.
    Failed(String),
}

/// Reads a service's answer: `status`, `reason`, `pulls`, counts.
pub fn step(service: &Value) -> Step {
    let path = format!("{}/{}", text(service, "stack"), text(service, "name"));
    let running = service["running"].as_u64().unwrap_or(0);
    let scale = service["scale"].as_u64().unwrap_or(0);
    let reason = service["reason"].as_str().unwrap_or_default();
    match service["status"].as_str().unwrap_or_default() {
        "active" | "stopped" => Step::Done(format!("{path}: {running}/{scale} running")),
        "failing" | "degraded" => Step::Failed(format!("{path}: {running}/{scale} running, {}: {reason}", service["status"].as_str().unwrap_or_default())),
        _ => {
            let pulls: Vec<String> = service["pulls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}: pulling {} {} %", text(p, "host"), text(p, "image"), p["percent"].as_u64().unwrap_or(0)))
                .collect();
            if pulls.is_empty() {
                Step::Going(format!("{path}: {running}/{scale} running"))
            } else {
                Step::Going(pulls.join("; "))
            }
        }
    }
}

/// Polls the service at `path` (API path) until it runs or fails, printing progress lines as
/// they change; `Ok` with the last answer and a summary once it runs, `Err` saying why otherwise.
pub async fn follow(client: &Client, path: &str, timeout: Duration, print: bool) -> Result<(Value, String)> {
    let started = Instant::now();
    let mut shown = String::new();
    loop {
        let service: Value = client.get(path, &[]).await?;
        match step(&service) {
            Step::Done(summary) => return Ok((service, summary)),
            Step::Failed(why) => bail!("{why}\n(see `corral ps` for each container)"),
            Step::Going(line) => {
                if print && line != shown {
                    println!("{line}");
                    shown = line;
                }
            }
        }
        if started.elapsed() >= timeout {
            bail!("still not running after {} s: {shown}; it goes on in the background (see `corral service ls` and `corral ps`)", timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_read_the_service_state() {
        let base = json!({"stack": "S", "name": "web", "scale": 3, "running": 0, "status": "starting", "pulls": []});
        assert_eq!(step(&base), Step::Going("S/web: 0/3 running".into()));
        let mut pulling = base.clone();
        pulling["status"] = json!("pulling");
        pulling["pulls"] = json!([{"host": "h1", "image": "app:1", "percent": 63}, {"host": "h2", "image": "app:1", "percent": 12}]);
        assert_eq!(step(&pulling), Step::Going("h1: pulling app:1 63 %; h2: pulling app:1 12 %".into()));
        let mut failing = base.clone();
        failing["status"] = json!("failing");
        failing["reason"] = json!("h1: cannot pull app:1: image not found in the registry");
        assert_eq!(step(&failing), Step::Failed("S/web: 0/3 running, failing: h1: cannot pull app:1: image not found in the registry".into()));
        let mut active = base;
        active["status"] = json!("active");
        active["running"] = json!(3);
        assert_eq!(step(&active), Step::Done("S/web: 3/3 running".into()));
    }
}
