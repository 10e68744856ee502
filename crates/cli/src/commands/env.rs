//! `corral env create|ls|rename|rm`.

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create an empty environment (e.g. OPS, DEV) with its own join token.
    Create { name: String },
    /// List the environments with how many hosts and stacks each has.
    Ls,
    /// Rename an environment (admins); its hosts, stacks, members and keys stay with it, and no
    /// container is restarted.
    Rename {
        /// The environment's current name.
        old: String,
        /// Its new name.
        new: String,
    },
    /// Remove an empty environment (not the default one).
    Rm { name: String },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Create { name } => {
            let env: Value = client.post("/environments", &json!({ "name": name })).await?;
            let message = format!("created environment {name}; `corral host join-command --env {name}` adds hosts to it");
            output::done(format, &env, &message);
        }
        Command::Ls => {
            let envs: Vec<Value> = client.get("/environments", &[]).await?;
            output::print(format, &envs, &["NAME", "HOSTS", "STACKS", "CREATED"], |envs| {
                envs.iter().map(|e| vec![text(e, "name"), text(e, "hosts"), text(e, "stacks"), text(e, "created_at")]).collect()
            });
        }
        Command::Rename { old, new } => {
            let env: Value = client.patch(&format!("/environments/{}", seg(&old)), &json!({ "name": new })).await?;
            output::done(format, &env, &format!("renamed environment {old} to {new}; use --env {new} from now on"));
        }
        Command::Rm { name } => {
            client.delete(&format!("/environments/{}", seg(&name))).await?;
            output::done(format, &json!({ "removed": name }), &format!("removed environment {name}"));
        }
    }
    Ok(())
}
