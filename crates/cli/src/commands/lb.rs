//! `corral lb create`: a load-balancer service, run by the agents themselves.

use super::{seg, stack_service};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a load balancer: `corral lb create STACK/NAME --port 8080:80 --target STACK/SERVICE`.
    /// List, scale and remove it like any service (`corral service ls|scale|rm`, `corral ps`).
    Create {
        /// STACK/NAME
        path: String,
        /// LISTEN:TARGET for HTTP, LISTEN:TARGET/tcp for TCP; repeatable.
        #[arg(long = "port", value_name = "LISTEN:TARGET", required = true)]
        ports: Vec<String>,
        /// STACK/SERVICE receiving the requests no rule claims; repeatable.
        #[arg(long = "target", value_name = "STACK/SERVICE")]
        targets: Vec<String>,
        /// 'host=NAME,path=/PREFIX -> STACK/SERVICE:PORT'; repeatable.
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// Number of balancer instances (each on its own host).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, conflicts_with = "global")]
        scale: i64,
        /// One instance on every eligible host.
        #[arg(long)]
        global: bool,
        /// Place only on matching hosts: host.LABEL=VALUE or host.LABEL!=VALUE; repeatable.
        #[arg(long = "constraint", value_name = "host.LABEL=VALUE")]
        constraints: Vec<String>,
    },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Create { path, ports, targets, rules, scale, global, constraints } => {
            let (stack, name) = stack_service(&path)?;
            let body = json!({
                "name": name, "kind": "load-balancer", "scale": scale, "constraints": constraints,
                "lb": { "ports": ports, "targets": targets, "rules": rules, "global": global },
            });
            let service: Value = client.post(&format!("/stacks/{}/services", seg(stack)), &body).await?;
            let placement = if global { "on every eligible host".to_string() } else { format!("with scale {scale}") };
            output::done(format, &service, &format!("created load balancer {path} {placement}"));
        }
    }
    Ok(())
}
