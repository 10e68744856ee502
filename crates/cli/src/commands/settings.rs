//! `corral settings show|set|unset`.

use crate::client::Client;
use crate::output::{self, Format};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show the URL join commands name (and where it comes from), and what to know about it.
    Show,
    /// Change a setting (admins).
    Set {
        #[command(subcommand)]
        setting: Setting,
    },
    /// Forget a setting, going back to its default (admins).
    Unset {
        #[arg(value_enum)]
        setting: Name,
    },
}

#[derive(clap::Subcommand)]
pub enum Setting {
    /// The URL hosts reach this control plane at, put in join commands from now on (e.g.
    /// https://192.168.1.20:7070 or https://corral.example.lan:7070). `--advertise-url` on the
    /// control plane's command line wins over it.
    AdvertiseUrl { url: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Name {
    /// Join commands name the listen address, or this machine's address, again.
    AdvertiseUrl,
}

pub async fn run(cmd: Command, client: &Client, format: Format) -> Result<()> {
    let settings: Value = match cmd {
        Command::Show => client.get("/settings", &[]).await?,
        Command::Set { setting: Setting::AdvertiseUrl { url } } => client.patch("/settings", &json!({ "advertise_url": url })).await?,
        Command::Unset { setting: Name::AdvertiseUrl } => client.patch("/settings", &json!({ "advertise_url": null })).await?,
    };
    let notes: Vec<&str> = settings["notes"].as_array().map(|n| n.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut text = format!(
        "hosts join at {} ({})",
        settings["agent_url"].as_str().unwrap_or_default(),
        match settings["agent_url_source"].as_str() {
            Some("command-line") => "from --advertise-url on the control plane's command line",
            Some("settings") => "set with `corral settings set advertise-url`",
            _ => "this control plane's own address",
        }
    );
    for note in notes {
        text.push_str(&format!("\nnote: {note}"));
    }
    output::done(format, &settings, &text);
    Ok(())
}
