//! `corral backup FILE` and `corral restore FILE`.

use crate::client::Client;
use crate::output::{self, Format};
use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (an SQLite file, mode 0600: it holds join tokens and services'
    /// environment values); replaced if it exists.
    file: PathBuf,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A backup written by `corral backup` (or the desktop app, or GET /v1/backup).
    file: PathBuf,
    /// Restore even though the backup would lock the admin out: its built-in admin is no
    /// administrator or has no admin token, or your own credential would not be an
    /// administrator's afterwards. The admin token in the data dir keeps working either way.
    #[arg(long)]
    force: bool,
}

const MIB: f64 = (1u64 << 20) as f64;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// Downloads the backup beside FILE, then renames it into place, so FILE is never half-written.
pub async fn backup(args: BackupArgs, client: &Client, format: Format) -> Result<()> {
    let mut response = client.checked(client.request(Method::GET, "/backup")).await?;
    let total = response.content_length();
    let mut partial = args.file.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = async {
        let mut file = corral_store::files::create_private(&partial).with_context(|| format!("cannot write {}", partial.display()))?;
        let mut done = 0u64;
        while let Some(chunk) = response.chunk().await.context("the backup download broke off")? {
            file.write_all(&chunk).with_context(|| format!("cannot write {}", partial.display()))?;
            done += chunk.len() as u64;
            match total {
                Some(total) if total > 0 => eprint!("\rbacking up: {} of {} ({}%)", mib(done), mib(total), done * 100 / total),
                _ => eprint!("\rbacking up: {}", mib(done)),
            }
        }
        eprintln!();
        file.sync_all().with_context(|| format!("cannot write {}", partial.display()))?;
        if total.is_some_and(|t| t != done) {
            bail!("the backup download broke off after {done} bytes");
        }
        std::fs::rename(&partial, &args.file).with_context(|| format!("cannot write {}", args.file.display()))?;
        Ok(done)
    }
    .await;
    let bytes = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    let path = std::path::absolute(&args.file).unwrap_or(args.file);
    output::done(format, &json!({ "path": path, "bytes": bytes }), &format!("wrote {} ({})", path.display(), mib(bytes)));
    Ok(())
}

pub async fn restore(args: RestoreArgs, client: &Client, format: Format) -> Result<()> {
    let data = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    eprintln!("uploading {} ({}) and restoring ...", args.file.display(), mib(data.len() as u64));
    let mut request = client.request(Method::POST, "/restore").header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(data);
    if args.force {
        request = request.query(&[("force", "true")]);
    }
    let answer: Value = client.checked(request).await?.json().await.context("the control plane's answer is not the expected JSON")?;
    let mut message = format!(
        "restored {} (schema version {}); the state before it is kept as {} in the control plane's data dir",
        args.file.display(),
        answer["schema_version"],
        answer["safety_copy"].as_str().unwrap_or("?")
    );
    let replaced: Vec<&str> = answer["join_tokens_replaced"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !replaced.is_empty() {
        message.push_str(&format!(
            "\nthe backup's join tokens of {} were sealed with another control plane's key and have been replaced; joined hosts keep working, \
             new hosts need the new line from `corral host join-command --env NAME`",
            replaced.join(", ")
        ));
    }
    output::done(format, &answer, &message);
    Ok(())
}
