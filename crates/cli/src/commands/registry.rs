//! `corral registry add|ls|rm`: the image registries of an environment, with their logins and
//! private CAs.

use super::{seg, text};
use crate::client::Client;
use crate::output::{self, Format};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Add a registry (HOST or HOST:PORT, as image names spell it; docker.io for Docker Hub),
    /// or replace the one of that host: login and CA are set together, so give both again to
    /// change one. The password is read from standard input, kept encrypted, never shown again,
    /// and sent only to hosts that run an image from this registry. Each host of the environment
    /// installs the CA for its engine (/etc/docker/certs.d/HOST/ca.crt).
    Add {
        host: String,
        /// User name to log in with; the password comes from standard input (--password-stdin).
        #[arg(long, requires = "password_stdin")]
        user: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, requires = "user")]
        password_stdin: bool,
        /// The registry's CA certificate (PEM), when its TLS certificate is not publicly trusted.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// List the environment's registries: login, whether a password is set (never the
    /// password), CA, and how many services pull from each.
    Ls,
    /// Remove a registry: pulls from it go without a login, and hosts remove the CA they
    /// installed for it.
    Rm { host: String },
}

/// How `registry ls` shows a password: whether one is set, and what to do when it cannot be used.
fn password_words(state: &str) -> &'static str {
    match state {
        "set" => "set",
        "must_be_set_again" => "must be set again (`corral registry add HOST --user U --password-stdin`)",
        _ => "-",
    }
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    match cmd {
        Command::Add { host, user, password_stdin, ca_file } => {
            let password = if user.is_some() { Some(super::login::password_from_stdin(password_stdin)?) } else { None };
            let ca_pem = match &ca_file {
                Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading the CA file {}", path.display()))?),
                None => None,
            };
            if ca_pem.as_deref().is_some_and(|pem| !pem.contains("-----BEGIN CERTIFICATE-----")) {
                bail!("{} is not a PEM certificate (it has no -----BEGIN CERTIFICATE----- line)", ca_file.unwrap_or_default().display());
            }
            let body = json!({ "username": user, "password": password, "ca_pem": ca_pem });
            let r: Value = client.put(&format!("/registries/{}", seg(&host)), &body).await?;
            let login = match r.get("username").and_then(Value::as_str) {
                Some(u) => format!(" with login {u}"),
                None => " without a login".to_string(),
            };
            let ca = if r["ca_pem"].is_string() { ", its CA installed by every host" } else { "" };
            output::done(format, &r, &format!("registry {}{login}{ca}", text(&r, "host")));
        }
        Command::Ls => {
            let registries: Vec<Value> = client.get("/registries", &[]).await?;
            output::print(format, &registries, &["HOST", "USER", "PASSWORD", "CA", "SERVICES"], |rs| {
                rs.iter()
                    .map(|r| {
                        let user = r["username"].as_str().unwrap_or("-").to_string();
                        let ca = if r["ca_pem"].is_string() { "yes" } else { "-" };
                        vec![text(r, "host"), user, password_words(&text(r, "password")).to_string(), ca.to_string(), text(r, "services")]
                    })
                    .collect()
            });
        }
        Command::Rm { host } => {
            let r: Value = client.delete_json(&format!("/registries/{}", seg(&host))).await?;
            output::done(format, &r, &format!("registry {} removed", text(&r, "host")));
        }
    }
    Ok(())
}
