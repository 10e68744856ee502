//! `corral group create|ls|rm|add|remove` (admins).

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a group of users, to give roles to all of them at once.
    Create { name: String },
    /// List the groups with their users.
    Ls,
    /// Remove a group (its users stay).
    Rm { name: String },
    /// Add USER to GROUP.
    Add { group: String, user: String },
    /// Take USER out of GROUP.
    Remove { group: String, user: String },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Create { name } => {
            let group: Value = client.post("/groups", &json!({ "name": name })).await?;
            output::done(format, &group, &format!("created group {name}"));
        }
        Command::Ls => {
            let groups: Vec<Value> = client.get("/groups", &[]).await?;
            output::print(format, &groups, &["NAME", "USERS", "CREATED"], |groups| {
                groups
                    .iter()
                    .map(|g| {
                        let users: Vec<&str> = g["members"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                        vec![text(g, "name"), users.join(","), text(g, "created_at")]
                    })
                    .collect()
            });
        }
        Command::Rm { name } => {
            client.delete(&format!("/groups/{}", seg(&name))).await?;
            output::done(format, &json!({ "removed": name }), &format!("removed group {name}"));
        }
        Command::Add { group, user } => {
            let g: Value = client.post(&format!("/groups/{}/members", seg(&group)), &json!({ "user": user })).await?;
            output::done(format, &g, &format!("added {user} to {group}"));
        }
        Command::Remove { group, user } => {
            client.delete(&format!("/groups/{}/members/{}", seg(&group), seg(&user))).await?;
            output::done(format, &json!({ "group": group, "removed": user }), &format!("took {user} out of {group}"));
        }
    }
    Ok(())
}
