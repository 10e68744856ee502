//! `corral login --user NAME --password-stdin` and `corral logout`.
//!
//! A login without `-o json` keeps the session in the user's config dir
//! (`~/.config/corral/session.json`, mode 0600), and later commands to the same control plane
//! use it when no `--token` is given. With `-o json` it only prints the token, for scripts.

use crate::client::Client;
use crate::output::{self, Format};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long)]
    user: String,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// A session kept for later commands.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub server: String,
    pub user: String,
    pub token: String,
    pub expires_at: String,
}

fn path() -> Option<PathBuf> {
    Some(dirs::config_dir()?.join("corral").join("session.json"))
}

/// The stored session for this control plane, if there is one.
pub fn stored(server: &str) -> Option<Stored> {
    let text = std::fs::read_to_string(path()?).ok()?;
    serde_json::from_str::<Stored>(&text).ok().filter(|s| s.server == server)
}

fn store(session: &Stored) -> Result<PathBuf> {
    let path = path().context("no config dir to keep the session in; use `corral login -o json` and pass the token with --token")?;
    let dir = path.parent().expect("the session file is in a dir");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("writing {}", path.display()))?;
    // An older file may have been made with wider permissions.
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::io::Write::write_all(&mut file, serde_json::to_string_pretty(session)?.as_bytes())?;
    Ok(path)
}

/// The first line of standard input, without its line ending.
pub fn password_from_stdin(flag: bool) -> Result<String> {
    if !flag {
        bail!("pass the password on standard input with --password-stdin, e.g. `echo \"$PASSWORD\" | corral login --user NAME --password-stdin`");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("standard input held no password");
    }
    Ok(password)
}

pub async fn login(args: LoginArgs, client: &Client, format: Format) -> Result<()> {
    let password = password_from_stdin(args.password_stdin)?;
    let answer: Value = client.post("/login", &json!({ "user": args.user, "password": password })).await?;
    let text = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
    match format {
        Format::Json => output::done(format, &json!({ "token": text("token"), "user": text("user"), "expires_at": text("expires_at") }), ""),
        Format::Table => {
            let session = Stored { server: client.base().to_string(), user: text("user"), token: text("token"), expires_at: text("expires_at") };
            let path = store(&session)?;
            println!("logged in to {} as {} until {}; the session is kept in {}", session.server, session.user, session.expires_at, path.display());
        }
    }
    Ok(())
}

/// Ends the stored session at the control plane and forgets it here.
pub async fn logout(client: &Client, format: Format) -> Result<()> {
    let Some(session) = stored(client.base()) else {
        output::done(format, &json!({ "logged_out": false }), "no stored session for this control plane");
        return Ok(());
    };
    let client = client.with_token(&session.token);
    // An expired session is already over at the control plane; forgetting it here is what is left.
    let _ = client.post::<_, Value>("/logout", &json!({})).await;
    if let Some(path) = path() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    output::done(format, &json!({ "logged_out": true, "user": session.user }), &format!("logged out {}", session.user));
    Ok(())
}
