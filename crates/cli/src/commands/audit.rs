//! `corral audit ls`: who changed what, when, from where, and how it ended.

use super::text;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Newest first: the environment's entries (--env), or every entry for admins without --env.
    Ls {
        /// How many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Ls { limit } => {
            let entries: Vec<Value> = client.get("/audit", &[("limit", &limit.to_string())]).await?;
            output::print(format, &entries, &["TIME", "USER", "KEY", "FROM", "ADDRESS", "ENVIRONMENT", "REQUEST", "TARGET", "STATUS"], |es| {
                es.iter()
                    .map(|e| {
                        vec![
                            text(e, "at"),
                            text(e, "user"),
                            text(e, "key"),
                            text(e, "client"),
                            text(e, "remote"),
                            text(e, "environment"),
                            format!("{} {}", text(e, "method"), text(e, "path")),
                            text(e, "target"),
                            text(e, "status"),
                        ]
                    })
                    .collect()
            });
        }
    }
    Ok(())
}
