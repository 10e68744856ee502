//! `corral audit ls`: who changed what, when, from where, and how it ended; each entry as the
//! sentence the control plane makes of it ("ann scaled WEB-Server/web to 4").

use super::text;
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Newest first: the environment's entries (--env), or every entry for admins without --env.
    /// Each reads as an action, e.g. "ann scaled WEB-Server/web to 4" (-o json adds the request).
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
            output::print(format, &entries, &["TIME", "ACTION", "KEY", "FROM", "ADDRESS", "ENVIRONMENT", "STATUS"], |es| {
                es.iter()
                    .map(|e| vec![text(e, "at"), action(e), text(e, "key"), text(e, "client"), text(e, "remote"), text(e, "environment"), text(e, "status")])
                    .collect()
            });
        }
    }
    Ok(())
}

/// The entry's sentence; a control plane too old to make one gets who, method and path.
fn action(e: &Value) -> String {
    match text(e, "summary") {
        s if !s.is_empty() => s,
        _ => format!("{}: {} {}", text(e, "user"), text(e, "method"), text(e, "path")),
    }
}
