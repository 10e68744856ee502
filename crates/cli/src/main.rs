//! `corral`: the control plane (`server`), the host agent (`agent`) and the client commands.

mod client;
mod commands;
mod output;

use clap::Parser;
use commands::Command;

#[derive(Parser)]
#[command(name = "corral", version, about = "Run stacks of services across a fleet of Docker hosts")]
pub struct Cli {
    /// Control plane URL.
    #[arg(long, global = true, env = "CORRAL_URL", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// API token (client commands) or join token (`agent`, needed only until the host has
    /// joined: then its own credential in the state dir is used). Client commands fall back to
    /// the local control plane's DATA_DIR/admin-token.
    #[arg(long, global = true, env = "CORRAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The control plane's CA fingerprint (`sha256:HEX`, from `corral host join-command`) for an
    /// https:// server: only that CA is trusted. The agent needs it too.
    #[arg(long, global = true, env = "CORRAL_CA_FINGERPRINT", value_name = "sha256:HEX")]
    ca_fingerprint: Option<String>,
    /// Environment to work in.
    #[arg(long = "env", global = true, env = "CORRAL_ENV", value_name = "NAME")]
    environment: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = output::Format::Table)]
    output: output::Format,
    #[command(subcommand)]
    command: Command,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
