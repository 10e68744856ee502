//! `corral user create|ls|rm|passwd` (admins).

use super::{login::password_from_stdin, seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a user; with --password-stdin it can log in, otherwise it acts through API keys.
    Create {
        name: String,
        /// Read the password from the first line of standard input (at least 8 characters, not
        /// all whitespace, at most 1024 bytes).
        #[arg(long)]
        password_stdin: bool,
        /// Make it an administrator: it sees and manages every environment, users and groups.
        #[arg(long)]
        admin: bool,
    },
    /// List the users.
    Ls,
    /// Remove a user with its sessions, keys and roles.
    Rm { name: String },
    /// Set a user's password (read from standard input; at least 8 characters, not all
    /// whitespace, at most 1024 bytes); its sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Create { name, password_stdin, admin } => {
            let password = if password_stdin { Some(password_from_stdin(true)?) } else { None };
            let user: Value = client.post("/users", &json!({ "name": name, "password": password, "admin": admin })).await?;
            let next = if admin {
                format!("created administrator {name}: it sees and manages every environment")
            } else {
                format!("created user {name}; `corral member add ENV {name} --role ROLE` gives it access")
            };
            output::done(format, &user, &next);
        }
        Command::Ls => {
            let users: Vec<Value> = client.get("/users", &[]).await?;
            output::print(format, &users, &["NAME", "ADMIN", "PASSWORD", "CREATED"], |users| {
                users.iter().map(|u| vec![text(u, "name"), text(u, "admin"), text(u, "password"), text(u, "created_at")]).collect()
            });
        }
        Command::Rm { name } => {
            client.delete(&format!("/users/{}", seg(&name))).await?;
            output::done(format, &json!({ "removed": name }), &format!("removed user {name}"));
        }
        Command::Passwd { name, password_stdin } => {
            let password = password_from_stdin(password_stdin)?;
            client.put::<_, Value>(&format!("/users/{}/password", seg(&name)), &json!({ "password": password })).await?;
            output::done(format, &json!({ "user": name }), &format!("set the password of {name}"));
        }
    }
    Ok(())
}
