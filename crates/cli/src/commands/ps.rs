//! `corral ps [STACK[/SERVICE]]`.

use super::text;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// STACK or STACK/SERVICE
    filter: Option<String>,
}

pub async fn run(args: Args, client: &Client, format: Format) -> Result<()> {
    let mut query = Vec::new();
    if let Some(filter) = &args.filter {
        match filter.split_once('/') {
            Some((stack, service)) => {
                query.push(("stack", stack));
                query.push(("service", service));
            }
            None => query.push(("stack", filter.as_str())),
        }
    }
    let containers: Vec<Value> = client.get("/containers", &query).await?;
    output::print(format, &containers, &["NAME", "HOST", "STATE", "STATUS", "IP", "PORTS"], |containers| {
        containers
            .iter()
            .map(|c| {
                let host_state = text(c, "host_state");
                let host = match (host_state.as_str(), c["host_responding"].as_bool()) {
                    ("active", Some(false)) => format!("{} (not responding)", text(c, "host")),
                    ("active", _) => text(c, "host"),
                    _ => format!("{} ({host_state})", text(c, "host")),
                };
                let ports = c["ports"].as_array().map(|p| p.iter().filter_map(super::service::port_text).collect::<Vec<_>>().join(","));
                let state = match (c["progress"].as_u64(), c["reason"].as_str()) {
                    (Some(percent), _) if text(c, "state") == "pulling" => format!("pulling {percent} %"),
                    (_, Some(why)) => format!("{}: {why}", text(c, "state")),
                    _ => text(c, "state"),
                };
                vec![text(c, "name"), host, state, text(c, "status"), text(c, "ip"), ports.unwrap_or_default()]
            })
            .collect()
    });
    Ok(())
}
