//! Command-line switches that run one menu action on a data dir and exit, through the same
//! functions the menus call: for scripts and tests, with no window.
//!
//!   corral-desktop [--data-dir DIR] --backup FILE | --restore FILE [--force] | --environments
//!
//! Run them while the app is not running on that data dir.

use crate::{actions, control_plane, database};
use std::path::PathBuf;

/// Tauri's app identifier (`tauri.conf.json`): the app's data dir is named after it.
pub const IDENTIFIER: &str = "io.corral.desktop";

#[derive(Debug, clap::Parser)]
#[command(name = "corral-desktop", version, about = "Corral desktop app: the control plane and its UI in one window")]
pub struct Args {
    /// The control plane's data dir [default: the app's data dir]
    #[arg(long, value_name = "DIR", hide = true)]
    pub data_dir: Option<PathBuf>,
    /// Back up the database to FILE (what File → Back up database… does) and exit
    #[arg(long, value_name = "FILE", hide = true, group = "action")]
    pub backup: Option<PathBuf>,
    /// Restore the database from FILE (what File → Restore database… does) and exit
    #[arg(long, value_name = "FILE", hide = true, group = "action")]
    pub restore: Option<PathBuf>,
    /// With --restore: restore even though the backup would lock the admin out (what the
    /// menu's "Restore anyway" does); the app's admin token keeps working either way
    #[arg(long, hide = true, requires = "restore")]
    pub force: bool,
    /// Print the environments the Environment menu lists, one a line, and exit
    #[arg(long, hide = true, group = "action")]
    pub environments: bool,
}

impl Args {
    /// Whether a switch asks for a headless action instead of the app.
    pub fn is_action(&self) -> bool {
        self.backup.is_some() || self.restore.is_some() || self.environments
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => dirs::data_dir().ok_or_else(|| anyhow::anyhow!("no data dir for this user (set HOME or XDG_DATA_HOME, or pass --data-dir)"))?.join(IDENTIFIER),
    };
    tauri::async_runtime::block_on(async move {
        // A loopback port of its own: the app (or agents) never reach this short-lived one.
        let cp = control_plane::start(&data_dir, ([127, 0, 0, 1], 0).into(), crate::credentials::Backend::from_env()?).await?;
        let result = async {
            if let Some(dest) = &args.backup {
                println!("{}", database::run_backup(&cp.state, dest, database::print_progress).await?);
            } else if let Some(src) = &args.restore {
                println!("{}", database::run_restore(&cp.state, src, args.force).await?);
            } else {
                for name in actions::environment_names(&cp.state).await? {
                    println!("{name}");
                }
            }
            anyhow::Ok(())
        }
        .await;
        cp.shutdown().await?;
        result
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_identifier_is_the_one_in_tauri_conf() {
        let conf: serde_json::Value = serde_json::from_str(include_str!("../../tauri.conf.json")).unwrap();
        assert_eq!(conf["identifier"], super::IDENTIFIER);
    }
}
