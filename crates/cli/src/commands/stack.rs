//! `corral stack create|ls|rm`.

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create an empty stack.
    Create { name: String },
    /// List the environment's stacks.
    Ls,
    /// Remove a stack with its services and their containers.
    Rm { name: String },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Create { name } => {
            let stack: Value = client.post("/stacks", &json!({ "name": name })).await?;
            output::done(format, &stack, &format!("created stack {name}"));
        }
        Command::Ls => {
            let stacks: Vec<Value> = client.get("/stacks", &[]).await?;
            output::print(format, &stacks, &["NAME", "SERVICES", "CREATED"], |stacks| {
                stacks.iter().map(|s| vec![text(s, "name"), text(s, "services"), text(s, "created_at")]).collect()
            });
        }
        Command::Rm { name } => {
            client.delete(&format!("/stacks/{}", seg(&name))).await?;
            output::done(format, &json!({ "removed": name }), &format!("removed stack {name}"));
        }
    }
    Ok(())
}
