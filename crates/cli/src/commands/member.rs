//! `corral member add|ls|rm ENV ...`: roles of users and groups in an environment.

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Role {
    Owner,
    Member,
    Restricted,
    ReadOnly,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Restricted => "restricted",
            Role::ReadOnly => "read-only",
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Give a user or group a role in ENV (replacing the one it had). Roles: owner (everything,
    /// incl. members), member (stacks, services, hosts), restricted (stacks and services),
    /// read-only (sees everything, may read logs). Say user:NAME or group:NAME if both exist.
    Add {
        env: String,
        user_or_group: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List who has which role in ENV.
    Ls { env: String },
    /// Take away the role a user or group has in ENV.
    Rm { env: String, user_or_group: String },
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Add { env, user_or_group, role } => {
            let m: Value = client.in_environment(&env).post("/members", &json!({ "name": user_or_group, "role": role.as_str() })).await?;
            output::done(format, &m, &format!("{} {} is {} in {}", text(&m, "kind"), text(&m, "name"), role.as_str(), text(&m, "environment")));
        }
        Command::Ls { env } => {
            let members: Vec<Value> = client.in_environment(&env).get("/members", &[]).await?;
            output::print(format, &members, &["NAME", "KIND", "ROLE"], |ms| {
                ms.iter().map(|m| vec![text(m, "name"), text(m, "kind"), text(m, "role")]).collect()
            });
        }
        Command::Rm { env, user_or_group } => {
            let (kind, name) = match user_or_group.split_once(':') {
                Some((k @ ("user" | "group"), n)) => (k.to_string(), n.to_string()),
                _ => {
                    // Which kind the name is: the one that has a role here.
                    let members: Vec<Value> = client.in_environment(&env).get("/members", &[]).await?;
                    let kinds: Vec<String> = members.iter().filter(|m| text(m, "name").eq_ignore_ascii_case(&user_or_group)).map(|m| text(m, "kind")).collect();
                    match kinds.as_slice() {
                        [one] => (one.clone(), user_or_group.clone()),
                        [] => anyhow::bail!("{user_or_group} has no role in {env}; `corral member ls {env}` lists who has"),
                        _ => anyhow::bail!(
                            "both a user and a group named {user_or_group} have a role in {env}; say user:{user_or_group} or group:{user_or_group}"
                        ),
                    }
                }
            };
            client.in_environment(&env).delete(&format!("/members/{kind}/{}", seg(&name))).await?;
            output::done(format, &json!({ "environment": env, "removed": name, "kind": kind }), &format!("{kind} {name} has no role in {env} any more"));
        }
    }
    Ok(())
}
