//! `corral env create|ls|rename|rm`.

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create an empty environment (e.g. OPS, DEV) with its own join token and managed network.
    Create {
        name: String,
        /// Its managed network, a private IPv4 range from /8 to /23 (each host leases a /24 of
        /// it); by default the next free 10.N.0.0/16. It may not overlap another environment's
        /// network or a network a host is on.
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
    },
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
        Command::Create { name, subnet } => {
            let env: Value = client.post("/environments", &json!({ "name": name, "subnet": subnet })).await?;
            let message = format!(
                "created environment {name} with the managed network {}; `corral host join-command --env {name}` adds hosts to it",
                text(&env, "subnet")
            );
            output::done(format, &env, &message);
        }
        Command::Ls => {
            let envs: Vec<Value> = client.get("/environments", &[]).await?;
            output::print(format, &envs, &["NAME", "NETWORK", "HOSTS", "STACKS", "CREATED"], |envs| {
                envs.iter().map(|e| vec![text(e, "name"), text(e, "subnet"), text(e, "hosts"), text(e, "stacks"), text(e, "created_at")]).collect()
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
