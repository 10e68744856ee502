//! `corral service create|ls|inspect|scale|upgrade|stop|start|rm`.

use super::{key_values, seg, stack_service, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a service: `corral service create STACK/NAME --image IMAGE [--scale N] [--port P] -- CMD ARGS`.
    Create {
        /// STACK/NAME
        path: String,
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        scale: i64,
        /// Container port, optionally published: 80, 8080:80, 53/udp; repeatable.
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<String>,
        /// Environment variable for the containers, KEY=VALUE; repeatable.
        #[arg(short = 'e', long = "env-var", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Label for the containers, KEY=VALUE; repeatable.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Place only on matching hosts: host.LABEL=VALUE or host.LABEL!=VALUE; repeatable.
        #[arg(long = "constraint", value_name = "host.LABEL=VALUE")]
        constraints: Vec<String>,
        /// Seconds a disconnected host keeps the containers before they are replaced elsewhere [default: 60].
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        reschedule_after: Option<i64>,
        /// Keep a running spare on each host the service may run on: a lost container is then
        /// replaced by renaming the spare (milliseconds) instead of creating and starting one.
        #[arg(long)]
        hot_spare: bool,
        /// When hosts pull the image: missing (pull if the host lacks it), always (before every
        /// container is created), never (the image must be on the hosts already).
        #[arg(long = "pull", value_name = "POLICY", default_value = "missing")]
        pull: String,
        /// Network for the containers: managed (the environment's network across its hosts,
        /// with an address from the host's lease; reached from other hosts' containers and
        /// through published ports), bridge (the engine's default bridge on its host: reached
        /// only through published ports), host (the host's own network: the container's ports
        /// are the host's, --port not allowed), none (no network at all, --port not allowed).
        #[arg(long, value_name = "MODE", default_value = "managed")]
        network: String,
        #[command(flatten)]
        wait: Wait,
        /// Command and arguments, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List services, optionally of one stack.
    Ls { stack: Option<String> },
    /// Show one service as JSON: its spec (image, command, ports, network, ...), scale,
    /// revision, state and why.
    Inspect {
        /// STACK/NAME
        path: String,
    },
    /// Set the number of containers.
    Scale {
        /// STACK/NAME
        path: String,
        #[arg(allow_negative_numbers = true)]
        scale: i64,
    },
    /// Roll the service onto a new image, command, environment, pull policy or network, one container at a time
    /// (each taken out of load balancers first; the next waits until the new one runs). A new
    /// image is pulled on every host involved before the first old container is stopped; a pull
    /// that fails stops the upgrade and leaves the old containers running.
    Upgrade {
        /// STACK/NAME
        path: String,
        #[arg(long)]
        image: Option<String>,
        /// New pull policy: missing, always or never.
        #[arg(long = "pull", value_name = "POLICY")]
        pull: Option<String>,
        /// Move the containers to another network (managed, bridge, host or none; see
        /// `corral service create --help`): each is made anew on it, one at a time.
        #[arg(long, value_name = "MODE")]
        network: Option<String>,
        /// Replaces the whole environment, KEY=VALUE; repeatable.
        #[arg(short = 'e', long = "env-var", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// New command and arguments, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Stop every container of the service, keeping them (and their names) for `start`.
    Stop {
        /// STACK/NAME
        path: String,
    },
    /// Start a stopped service's containers again.
    Start {
        /// STACK/NAME
        path: String,
    },
    /// Remove a service and its containers.
    Rm {
        /// STACK/NAME
        path: String,
    },
}

/// Whether and how long `create` follows the new service.
#[derive(clap::Args)]
pub struct Wait {
    /// Return as soon as the service is created, without following its containers (the
    /// default with `-o json`).
    #[arg(short, long, conflicts_with = "wait")]
    detach: bool,
    /// Follow the containers until they run or fail, also with `-o json` (the default for tables).
    #[arg(long)]
    wait: bool,
    /// Give up following after this many seconds (the service goes on regardless).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
}

impl Wait {
    fn wanted(&self, format: Format) -> bool {
        !self.detach && (self.wait || format == Format::Table)
    }
}

fn service_path(stack: &str, service: &str) -> String {
    format!("/stacks/{}/services/{}", seg(stack), seg(service))
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Create { path, image, scale, ports, env, labels, constraints, reschedule_after, hot_spare, pull, network, wait, command } => {
            let (stack, name) = stack_service(&path)?;
            let body = json!({
                "name": name, "image": image, "scale": scale, "ports": ports, "env": env,
                "labels": key_values(&labels, "label")?, "constraints": constraints, "command": command,
                "reschedule_after": reschedule_after, "hot_spare": hot_spare, "pull_policy": pull,
                "network": network,
            });
            let service: Value = client.post(&format!("/stacks/{}/services", seg(stack)), &body).await?;
            let created = format!("created service {path} with scale {scale}");
            if !wait.wanted(format) {
                output::done(format, &service, &created);
                return Ok(());
            }
            if format == Format::Table {
                println!("{created}; waiting for its containers (Ctrl-C stops waiting, not the service)");
            }
            let (service, summary) =
                super::rollout::follow(client, &service_path(stack, name), std::time::Duration::from_secs(wait.timeout), format == Format::Table)
                    .await
                    .map_err(|e| e.context(format!("service {path} was created, but its containers do not run")))?;
            output::done(format, &service, &summary);
        }
        Command::Ls { stack } => {
            let query: Vec<(&str, &str)> = stack.as_deref().map(|s| ("stack", s)).into_iter().collect();
            let services: Vec<Value> = client.get("/services", &query).await?;
            output::print(format, &services, &["STACK/NAME", "IMAGE", "SCALE", "STATE", "RUNNING", "UPGRADED", "NETWORK", "PORTS", "NOTES"], |services| {
                services
                    .iter()
                    .map(|s| {
                        let ports = s["ports"].as_array().map(|p| p.iter().filter_map(port_text).collect::<Vec<_>>().join(","));
                        let stopped = s["state"] == "stopped";
                        let unplaced = s["unplaced"].as_array().and_then(|u| u.first()).and_then(|u| u.as_str());
                        let notes = s["reason"].as_str().or(unplaced).unwrap_or_default().to_string();
                        vec![
                            format!("{}/{}", text(s, "stack"), text(s, "name")),
                            text(s, "image"),
                            text(s, "scale"),
                            text(s, "status"),
                            if stopped { "stopped".to_string() } else { text(s, "running") },
                            format!("{}/{} at rev {}", text(s, "upgraded"), text(s, "placed"), text(s, "revision")),
                            text(s, "network"),
                            ports.unwrap_or_default(),
                            notes,
                        ]
                    })
                    .collect()
            });
        }
        Command::Inspect { path } => {
            let (stack, name) = stack_service(&path)?;
            let service: Value = client.get(&service_path(stack, name), &[]).await?;
            // Details are a document, not a table: JSON whatever the output format.
            println!("{}", serde_json::to_string_pretty(&service)?);
        }
        Command::Scale { path, scale } => {
            let (stack, name) = stack_service(&path)?;
            let service: Value = client.put(&format!("{}/scale", service_path(stack, name)), &json!({ "scale": scale })).await?;
            output::done(format, &service, &format!("scaled {path} to {scale}"));
        }
        Command::Upgrade { path, image, pull, network, env, command } => {
            let (stack, name) = stack_service(&path)?;
            let body = json!({
                "image": image,
                "pull_policy": pull,
                "network": network,
                "env": (!env.is_empty()).then_some(env),
                "command": (!command.is_empty()).then_some(command),
            });
            let service: Value = client.post(&format!("{}/upgrade", service_path(stack, name)), &body).await?;
            let message = format!("upgrading {path} to revision {}, one container at a time (see `corral service ls`)", service["revision"]);
            output::done(format, &service, &message);
        }
        Command::Stop { path } => set_state(client, format, &path, "stop", "stopped").await?,
        Command::Start { path } => set_state(client, format, &path, "start", "started").await?,
        Command::Rm { path } => {
            let (stack, name) = stack_service(&path)?;
            client.delete(&service_path(stack, name)).await?;
            output::done(format, &json!({ "removed": path }), &format!("removed service {path}"));
        }
    }
    Ok(())
}

async fn set_state(client: &Client, format: Format, path: &str, verb: &str, done: &str) -> Result<()> {
    let (stack, name) = stack_service(path)?;
    let service: Value = client.post(&format!("{}/{verb}", service_path(stack, name)), &json!({})).await?;
    output::done(format, &service, &format!("{done} {path}"));
    Ok(())
}

/// `8080:80`, `80`, `53/udp` from the API's port object.
pub fn port_text(p: &Value) -> Option<String> {
    serde_json::from_value::<corral_proto::PortSpec>(p.clone()).ok().map(|p| p.to_string())
}
