//! Corral desktop app: double-click it and the control plane runs inside it, with its database
//! in the app's data dir and its agent endpoint on the LAN (port 7070 by default, or a free one
//! if another control plane holds it). The window shows the bundled web UI, told where the API
//! is; native menus back up and restore the database and switch environments; closing the
//! window can keep Corral running in the tray.
//!
//! - [`app`]: start-up and the run loop; [`desktop`]: shared state, close/quit/tray flows;
//! - [`menu`], [`tray`]: native menus; [`database`]: backup/restore with dialogs;
//! - [`actions`]: what menus do, as plain functions (also used by [`cli`] and tests);
//! - [`control_plane`]: the in-process control plane; [`settings`]: the settings file;
//! - [`commands`]: Tauri commands for the web UI; [`error`]: their `{code, message}` errors.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod actions;
mod app;
mod cli;
mod commands;
mod control_plane;
mod credentials;
mod database;
mod desktop;
mod error;
mod menu;
mod settings;
mod tray;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    // A one-shot action prints its own result; the control plane's start-up chatter is noise there.
    let default_filter = if args.is_action() { "warn" } else { "info" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let result = if args.is_action() { cli::run(args) } else { app::run() };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
