//! File → Back up database… / Restore database…: native dialogs around the control plane's own
//! backup and restore functions (the same ones `GET /v1/backup` and `POST /v1/restore` run).

use crate::actions::human_size;
use crate::desktop::{self, Desktop};
use corral_server::backup::{self, BackupError, BackupProgress};
use corral_server::state::AppState;
use std::path::{Path, PathBuf};
use tauri::{AppHandle, Manager};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};

/// Backs up to `dest`, reporting progress in percent; the message to show says where and how big.
pub async fn run_backup(state: &AppState, dest: &Path, progress: impl Fn(u8) + Send + Sync) -> Result<String, BackupError> {
    let info = backup::backup_to_file(state, dest, |p: BackupProgress| progress(percent(p))).await?;
    Ok(format!("Backed up the database to {} ({}).", info.path.display(), human_size(info.bytes)))
}

/// Restores from `src` (`force`: even if the backup would lock the admin out); the message to
/// show says what was restored and where the safety copy is.
pub async fn run_restore(state: &AppState, src: &Path, force: bool) -> Result<String, BackupError> {
    // The app's own credential is the admin token, which every restore keeps working.
    let options = backup::RestoreOptions { force, caller: None };
    let info = backup::restore_from_file(state, src, &options).await?;
    Ok(format!(
        "Restored the database from {} (schema version {}).\nThe database as it was before is kept in the data folder as a safety copy: {}",
        src.display(),
        info.schema_version,
        info.safety_copy
    ))
}

fn percent(p: BackupProgress) -> u8 {
    if p.bytes_total == 0 {
        return 0;
    }
    (p.bytes_done.saturating_mul(100) / p.bytes_total).min(100) as u8
}

/// Progress of a backup run from the command line, on stderr.
pub fn print_progress(percent: u8) {
    eprint!("\rbacking up… {percent}%");
    if percent == 100 {
        eprintln!();
    }
}

/// Default name offered by the save dialog: the API's download name.
fn default_file_name() -> String {
    format!("corral-{}.db", backup::timestamp())
}

pub fn backup(app: &AppHandle) {
    let handle = app.clone();
    app.dialog().file().set_title("Back up the Corral database").set_file_name(default_file_name()).add_filter("Corral backup (SQLite)", &["db"]).save_file(
        move |picked| {
            let Some(dest) = picked.and_then(|p| p.into_path().ok()) else { return };
            tauri::async_runtime::spawn(backup_to(handle, dest));
        },
    );
}

async fn backup_to(app: AppHandle, dest: PathBuf) {
    let state = app.state::<Desktop>().control_plane.state.clone();
    desktop::show_status(&app, Some("backing up…"));
    let progress_app = app.clone();
    let result = run_backup(&state, &dest, move |percent| {
        desktop::show_status(&progress_app, Some(&format!("backing up… {percent}%")));
    })
    .await;
    desktop::show_status(&app, None);
    match result {
        Ok(text) => desktop::message(&app, "Backup done", text, MessageDialogKind::Info),
        Err(e) => desktop::message(&app, "Backup failed", e.to_string(), MessageDialogKind::Error),
    }
}

pub fn restore(app: &AppHandle) {
    let handle = app.clone();
    app.dialog().file().set_title("Restore the Corral database from a backup").add_filter("Corral backup (SQLite)", &["db", "sqlite", "sqlite3"]).pick_file(
        move |picked| {
            let Some(src) = picked.and_then(|p| p.into_path().ok()) else { return };
            confirm_restore(handle, src);
        },
    );
}

fn confirm_restore(app: AppHandle, src: PathBuf) {
    let text = format!(
        "Restore the database from {}?\n\n\
         Everything Corral knows (environments, hosts, stacks, services) is replaced by what the \
         backup holds. The current database is kept in the data folder as a safety copy, so \
         this can be undone by restoring that copy. Agents reconnect on their own.",
        src.display()
    );
    let handle = app.clone();
    app.dialog()
        .message(text)
        .title("Restore database")
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom("Restore".into(), "Cancel".into()))
        .show(move |confirmed| {
            if confirmed {
                tauri::async_runtime::spawn(restore_from(handle, src, false));
            }
        });
}

/// The backup would lock the admin out: say why, and restore only if asked to anyway.
fn confirm_lockout(app: AppHandle, src: PathBuf, reasons: Vec<String>) {
    let text = format!(
        "Restoring {} would lock the admin out:\n\n- {}\n\nNothing was changed. If you restore it anyway, this app's admin token keeps \
         working and stays an administrator's, but other administrators may lose their access.",
        src.display(),
        reasons.join("\n- ")
    );
    let handle = app.clone();
    app.dialog()
        .message(text)
        .title("Restore would lock the admin out")
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom("Restore anyway".into(), "Cancel".into()))
        .show(move |confirmed| {
            if confirmed {
                tauri::async_runtime::spawn(restore_from(handle, src, true));
            }
        });
}

async fn restore_from(app: AppHandle, src: PathBuf, force: bool) {
    let state = app.state::<Desktop>().control_plane.state.clone();
    desktop::show_status(&app, Some("restoring…"));
    let result = run_restore(&state, &src, force).await;
    desktop::show_status(&app, None);
    match result {
        Ok(text) => {
            crate::menu::refresh_environments(&app);
            desktop::message(&app, "Restore done", text, MessageDialogKind::Info);
        }
        Err(BackupError::WouldLockOut { reasons }) => confirm_lockout(app, src, reasons),
        Err(e) => desktop::message(&app, "Restore failed", format!("{e}\n\nNothing was changed."), MessageDialogKind::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::environment_names;
    use crate::control_plane;

    /// What the menu does, against a real control plane: back up, change something, restore:
    /// the change is gone; a file that is not a backup is refused and changes nothing.
    #[tokio::test]
    async fn restore_undoes_changes_since_the_backup_and_a_bad_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cp = control_plane::start(&data, ([127, 0, 0, 1], 0).into(), crate::credentials::Backend::File).await.unwrap();
        let state = &cp.state;
        state.store.create_environment("BEFORE", "10.99.0.0/16").await.unwrap();

        let dest = dir.path().join("backup.db");
        let seen = std::sync::Mutex::new(Vec::new());
        let text = run_backup(state, &dest, |p| seen.lock().unwrap().push(p)).await.unwrap();
        assert!(text.contains(&dest.display().to_string()), "{text}");
        assert!(std::fs::metadata(&dest).unwrap().len() > 0);
        assert!(seen.lock().unwrap().iter().all(|p| *p <= 100));

        state.store.create_environment("AFTER", "10.99.0.0/16").await.unwrap();
        let text = run_restore(state, &dest, false).await.unwrap();
        assert!(text.contains("safety copy: corral.db"), "{text}");
        assert_eq!(environment_names(state).await.unwrap(), ["BEFORE", "Default"]);

        state.store.create_environment("KEPT", "10.99.0.0/16").await.unwrap();
        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, "this is not a database").unwrap();
        let err = run_restore(state, &bad, false).await.unwrap_err();
        assert!(matches!(err, BackupError::BadBackup(_)), "{err:?}");
        assert!(!err.to_string().is_empty());
        assert_eq!(environment_names(state).await.unwrap(), ["BEFORE", "Default", "KEPT"]);

        // A backup whose admin token was revoked needs the "Restore anyway" confirmation; after
        // it, the app's own token still opens everything.
        let lockout = dir.path().join("lockout.db");
        std::fs::copy(&dest, &lockout).unwrap();
        let copy = corral_store::Store::open(&lockout).await.unwrap();
        let admin = copy.admin_user().await.unwrap();
        copy.revoke_api_key(copy.api_key_of(admin.id, "admin").await.unwrap().id).await.unwrap();
        copy.close().await;
        let err = run_restore(state, &lockout, false).await.unwrap_err();
        assert!(matches!(&err, BackupError::WouldLockOut { reasons } if reasons[0].contains("no admin token")), "{err:?}");
        assert_eq!(environment_names(state).await.unwrap(), ["BEFORE", "Default", "KEPT"], "nothing changed");
        run_restore(state, &lockout, true).await.unwrap();
        let admin = state.store.authenticate_api_key(&cp.token).await.unwrap().expect("the app's token still works");
        assert!(state.store.user_by_id(admin.user_id).await.unwrap().admin, "and is an administrator's");
        cp.shutdown().await.unwrap();
    }

    #[test]
    fn progress_is_a_percentage() {
        assert_eq!(percent(BackupProgress { bytes_done: 0, bytes_total: 0 }), 0);
        assert_eq!(percent(BackupProgress { bytes_done: 50, bytes_total: 200 }), 25);
        assert_eq!(percent(BackupProgress { bytes_done: 300, bytes_total: 200 }), 100);
    }
}
