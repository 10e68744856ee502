//! `corral container rm`.

use super::seg;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Remove a container by name (see `corral ps`). The service keeps its scale, so a
    /// replacement starts at once, on another host when one is eligible.
    Rm { name: String },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Rm { name } => {
            client.delete(&format!("/containers/{}", seg(&name))).await?;
            output::done(format, &json!({ "removed": name }), &format!("removed container {name}; its service starts a replacement"));
        }
    }
    Ok(())
}
