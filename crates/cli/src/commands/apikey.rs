//! `corral apikey create|ls|revoke`: API keys for scripts; the secret is shown once.

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a key acting as you: in all your environments, or with --env only in that one.
    Create {
        /// A name to find the key by later, unique among your keys [default: generated].
        #[arg(long)]
        name: Option<String>,
    },
    /// List your keys (admins: everyone's), revoked ones too. Used with an environment key,
    /// only that environment's keys.
    Ls,
    /// Revoke one of your keys by name: it opens nothing from now on, and the streams open with
    /// it (events, logs, live stats) end at once. An environment key may revoke only keys of its
    /// own environment.
    Revoke {
        name: String,
        /// Whose key (admins): names are unique per user, so another user's key needs its user.
        #[arg(long)]
        user: Option<String>,
    },
}

pub async fn run(cmd: Command, client: &Client, environment: Option<&str>, format: Format) -> Result<()> {
    match cmd {
        Command::Create { name } => {
            let key: Value = client.post("/apikeys", &json!({ "environment": environment, "name": name })).await?;
            let scope = environment.map_or_else(|| "all your environments".to_string(), |e| format!("environment {e}"));
            let message = format!("API key {} for {scope}; this secret is shown once, keep it now:\n{}", text(&key, "name"), text(&key, "secret"));
            output::done(format, &key, &message);
        }
        Command::Ls => {
            let keys: Vec<Value> = client.get("/apikeys", &[]).await?;
            output::print(format, &keys, &["NAME", "USER", "KIND", "ENVIRONMENT", "CREATED", "REVOKED"], |keys| {
                keys.iter()
                    .map(|k| vec![text(k, "name"), text(k, "user"), text(k, "kind"), text(k, "environment"), text(k, "created_at"), text(k, "revoked_at")])
                    .collect()
            });
        }
        Command::Revoke { name, user } => {
            let query = user.as_deref().map_or_else(String::new, |u| format!("?user={}", seg(u)));
            let key: Value = client.delete_json(&format!("/apikeys/{}{query}", seg(&name))).await?;
            output::done(format, &key, &format!("revoked API key {name} of {}", text(&key, "user")));
        }
    }
    Ok(())
}
