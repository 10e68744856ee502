//! One module per command group; each turns arguments into API calls and prints the answer.

mod agent;
mod apikey;
mod audit;
mod backup;
mod container;
mod env;
mod group;
mod host;
mod lb;
pub(crate) mod login;
mod member;
mod network;
mod ps;
mod registry;
mod rollout;
mod server;
mod service;
mod settings;
mod stack;
mod stats;
mod user;

use crate::client::Client;
use crate::Cli;
use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane: API, agent endpoint, web UI.
    Server(server::Args),
    /// Run the host agent: join a control plane and keep this host's Docker engine as desired.
    Agent(agent::Args),
    /// Environments (e.g. OPS, DEV): each has its own hosts, stacks and join token.
    #[command(subcommand)]
    Env(env::Command),
    /// Hosts: list them, or print the command that adds one.
    #[command(subcommand)]
    Host(host::Command),
    /// Stacks: groups of services.
    #[command(subcommand)]
    Stack(stack::Command),
    /// Services: sets of identical containers with a scale.
    #[command(subcommand)]
    Service(service::Command),
    /// List containers, optionally of one STACK or STACK/SERVICE.
    Ps(ps::Args),
    /// The environment's managed network: each host's subnet and tunnel.
    #[command(subcommand)]
    Network(network::Command),
    /// Image registries of the environment: logins (kept encrypted) and private CAs.
    #[command(subcommand)]
    Registry(registry::Command),
    /// Load balancers built into the agents: no image, no reload gaps.
    #[command(subcommand)]
    Lb(lb::Command),
    /// Write a consistent copy of the control plane's database to FILE, readable by you only.
    Backup(backup::BackupArgs),
    /// Replace the control plane's state with a backup FILE; the engines follow. Checked whole
    /// first: a backup that does not fit changes nothing, one that would lock the admin out
    /// needs --force.
    Restore(backup::RestoreArgs),
    /// Resource usage history of a host, container or service (`-o json`: unit-named numbers).
    #[command(subcommand)]
    Stats(stats::Command),
    /// Live CPU, memory and I/O of hosts and the busiest containers, refreshed in place.
    Top(stats::TopArgs),
    /// Containers: inspect, logs, restart, stop and start one, or remove it (its service
    /// starts a replacement).
    #[command(subcommand)]
    Container(container::Command),
    /// Control-plane settings: the URL hosts join at.
    #[command(subcommand)]
    Settings(settings::Command),
    /// Log in with a user name and password; later commands use the session.
    Login(login::LoginArgs),
    /// End the stored session, and the streams open with it (events, logs, live stats).
    Logout,
    /// Users (admins): create, list, remove, set passwords.
    #[command(subcommand)]
    User(user::Command),
    /// Groups of users (admins), to give roles to many users at once.
    #[command(subcommand)]
    Group(group::Command),
    /// Roles of users and groups in an environment: owner, member, restricted, read-only.
    #[command(subcommand)]
    Member(member::Command),
    /// API keys for scripts: account keys, or with --env environment keys.
    #[command(subcommand)]
    Apikey(apikey::Command),
    /// The audit log: every change, who made it, from where, and the outcome.
    #[command(subcommand)]
    Audit(audit::Command),
}

pub async fn run(cli: Cli) -> Result<()> {
    let pin = cli.ca_fingerprint.as_deref().map(corral_agent::tls::Fingerprint::parse).transpose().map_err(anyhow::Error::msg)?;
    let pin = pin.or_else(|| crate::client::local_ca_pin(&cli.server));
    let client = || Client::new(&cli.server, cli.token.clone(), cli.environment.clone(), pin);
    match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Agent(args) => agent::run(args, &cli.server, cli.token.clone(), pin).await,
        Command::Env(cmd) => env::run(cmd, &client(), cli.output).await,
        Command::Host(cmd) => host::run(cmd, &client(), cli.output).await,
        Command::Stack(cmd) => stack::run(cmd, &client(), cli.output).await,
        Command::Service(cmd) => service::run(cmd, &client(), cli.output).await,
        Command::Ps(args) => ps::run(args, &client(), cli.output).await,
        Command::Container(cmd) => container::run(cmd, &client(), cli.output).await,
        Command::Settings(cmd) => settings::run(cmd, &client(), cli.output).await,
        Command::Lb(cmd) => lb::run(cmd, &client(), cli.output).await,
        Command::Network(cmd) => network::run(cmd, &client(), cli.output).await,
        Command::Registry(cmd) => registry::run(cmd, &client(), cli.output).await,
        Command::Stats(cmd) => stats::run(cmd, &client(), cli.output).await,
        Command::Top(args) => stats::top(args, &client(), cli.output).await,
        Command::Login(args) => login::login(args, &client(), cli.output).await,
        Command::Logout => login::logout(&client(), cli.output).await,
        Command::User(cmd) => user::run(cmd, &client(), cli.output).await,
        Command::Group(cmd) => group::run(cmd, &client(), cli.output).await,
        Command::Member(cmd) => member::run(cmd, &client(), cli.output).await,
        Command::Apikey(cmd) => apikey::run(cmd, &client(), cli.environment.as_deref(), cli.output).await,
        Command::Audit(cmd) => audit::run(cmd, &client(), cli.output).await,
        Command::Backup(args) => backup::backup(args, &client(), cli.output).await,
        Command::Restore(args) => backup::restore(args, &client(), cli.output).await,
    }
}

/// Splits `STACK/SERVICE`.
pub fn stack_service(path: &str) -> Result<(&str, &str)> {
    match path.split_once('/') {
        Some((stack, service)) if !stack.is_empty() && !service.is_empty() && !service.contains('/') => Ok((stack, service)),
        _ => bail!("expected STACK/SERVICE, e.g. WEB-Server/Nginx-cluster, got {path:?}"),
    }
}

/// A string field of a JSON object, or "" when absent.
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Parses repeated `KEY=VALUE` flags.
pub fn key_values(items: &[String], what: &str) -> Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid {what} {kv:?}: use KEY=VALUE"),
        })
        .collect()
}

/// The path segment for a name (names are validated to be URL-safe; this guards odd input).
pub fn seg(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c.to_string() } else { format!("%{:02X}", c as u32) }).collect()
}
