//! Backups of the control plane's database and restoring one, while the control plane runs.
//!
//! The HTTP API (`GET /v1/backup`, `POST /v1/restore`), the CLI and the desktop menu all go
//! through these functions.
//!
//! - A backup is an online, consistent copy (`VACUUM INTO` a temp file in the data dir), then
//!   moved or streamed to where it is wanted.
//! - A restore checks the file first (SQLite, intact, Corral's, a schema this build knows) and
//!   changes nothing if it is not. Then it keeps a safety copy of the current database in the
//!   data dir, brings the file to this build's schema, replaces the live contents in one
//!   transaction, and lets the control loop converge the engines to the restored state.

use crate::state::AppState;
use corral_store::{Store, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How far a backup has got: bytes written of about `bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackupProgress {
    pub bytes_done: u64,
    /// An estimate while the copy is being made; exact once it is moved into place.
    pub bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreInfo {
    pub restored: bool,
    /// Schema version of the restored file, before it was brought up to this build's.
    pub schema_version: i64,
    /// File name, in the data dir, of the copy of the database as it was before the restore.
    pub safety_copy: String,
    /// Environments whose join token the backup held sealed with another control plane's key:
    /// they have new join tokens (joined hosts keep working).
    pub join_tokens_replaced: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file offered for restore is not usable; says what is wrong. Nothing was changed.
    #[error("{0}")]
    BadBackup(String),
    #[error("a restore is already running; try again when it has finished")]
    Busy,
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadBackup(m) => BackupError::BadBackup(m),
            other => BackupError::Store(other),
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { action, path, source }
}

/// A file in the data dir that is removed (with SQLite's side files) when dropped.
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    pub(crate) fn new(state: &AppState, what: &str) -> TempFile {
        let name = format!(".corral-{what}-{}.db", corral_store::environments::random_secret(6));
        TempFile(state.config.data_dir.join(name))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `YYYYMMDD-HHMMSS`, UTC, for file names.
pub fn timestamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// Makes a consistent copy of the live database in a temp file of the data dir, reporting its
/// growth while SQLite writes it.
pub(crate) async fn snapshot(state: &AppState, progress: &(impl Fn(BackupProgress) + Send + Sync)) -> Result<TempFile, BackupError> {
    let copy = TempFile::new(state, "backup");
    let total = state.store.size_estimate().await?;
    progress(BackupProgress { bytes_done: 0, bytes_total: total });
    {
        let vacuum = state.store.vacuum_into(copy.path());
        tokio::pin!(vacuum);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                done = &mut vacuum => {
                    done?;
                    break;
                }
                _ = tick.tick() => {
                    let written = std::fs::metadata(copy.path()).map(|m| m.len()).unwrap_or(0);
                    progress(BackupProgress { bytes_done: written.min(total), bytes_total: total });
                }
            }
        }
    }
    Ok(copy)
}

/// Writes a consistent copy of the database to `dest` (replacing it if it exists).
pub async fn backup_to_file(state: &AppState, dest: &Path, progress: impl Fn(BackupProgress) + Send + Sync) -> Result<BackupInfo, BackupError> {
    let copy = snapshot(state, &progress).await?;
    let bytes = std::fs::metadata(copy.path()).map_err(io("read", copy.path()))?.len();
    // Same file system: a rename. Elsewhere: copy beside `dest`, then rename, so `dest` is
    // never a half-written database.
    if tokio::fs::rename(copy.path(), dest).await.is_err() {
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let copied = copy_with_progress(copy.path(), &partial, bytes, &progress).await;
        if let Err(e) = copied.and_then(|()| std::fs::rename(&partial, dest).map_err(io("write", dest))) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    }
    progress(BackupProgress { bytes_done: bytes, bytes_total: bytes });
    Ok(BackupInfo { path: dest.to_path_buf(), bytes, schema_version: corral_store::backup::schema_version() })
}

async fn copy_with_progress(src: &Path, dest: &Path, total: u64, progress: &(impl Fn(BackupProgress) + Send + Sync)) -> Result<(), BackupError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut from = tokio::fs::File::open(src).await.map_err(io("read", src))?;
    let mut to = tokio::fs::File::create(dest).await.map_err(io("write", dest))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(io("read", src))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await.map_err(io("write", dest))?;
        done += n as u64;
        progress(BackupProgress { bytes_done: done, bytes_total: total });
    }
    to.sync_all().await.map_err(io("write", dest))
}

/// Replaces the control plane's state with the backup at `src` (left untouched).
pub async fn restore_from_file(state: &AppState, src: &Path) -> Result<RestoreInfo, BackupError> {
    let work = TempFile::new(state, "restore");
    tokio::fs::copy(src, work.path()).await.map_err(io("read", src))?;
    restore(state, work).await
}

/// One restore at a time: each replaces everything.
static RESTORING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Restores from `work`, a copy in the data dir that may be changed and is removed afterwards.
pub(crate) async fn restore(state: &AppState, work: TempFile) -> Result<RestoreInfo, BackupError> {
    let _one_at_a_time = RESTORING.try_lock().map_err(|_| BackupError::Busy)?;
    let facts = Store::inspect_backup(work.path()).await?;
    // Brings the copy to this build's schema, so its tables match the live ones column by column.
    let upgraded = Store::open(work.path())
        .await
        .map_err(|e| BackupError::BadBackup(format!("the backup cannot be brought to this build's schema: {e}")))?;
    upgraded.close().await;

    let safety_copy = safety_copy(state).await?;
    let hosts_before = state.store.hosts(None).await?;
    state.store.replace_contents(work.path()).await?;
    drop(work);
    tracing::info!(schema_version = facts.schema_version, %safety_copy, "restored the database from a backup");
    // A backup from another control plane (or an older version) holds tokens this key cannot open.
    let sealed = state.store.seal_join_tokens().await?;
    crate::log_sealing(&sealed);
    settle(state, &hosts_before).await?;
    Ok(RestoreInfo { restored: true, schema_version: facts.schema_version, safety_copy, join_tokens_replaced: sealed.replaced })
}

/// Copies the live database to `corral.db.before-restore-YYYYMMDD-HHMMSS` in the data dir.
async fn safety_copy(state: &AppState) -> Result<String, BackupError> {
    let stem = format!("{}.before-restore-{}", crate::DATABASE_FILE, timestamp());
    let mut name = stem.clone();
    let mut n = 1;
    while state.config.data_dir.join(&name).exists() {
        n += 1;
        name = format!("{stem}-{n}");
    }
    state.store.vacuum_into(&state.config.data_dir.join(&name)).await?;
    Ok(name)
}

/// After the contents changed: keep the operator in, match hosts to the live sessions, forget
/// hints about services that may no longer exist, converge, and tell every client.
async fn settle(state: &AppState, hosts_before: &[corral_store::Host]) -> Result<(), BackupError> {
    keep_admin_token(state).await?;
    state.store.ensure_default_environment().await?;
    state.store.mark_all_hosts_disconnected().await?;
    let known = state.store.hosts(None).await?;
    for host in &known {
        if state.hub.is_connected(&host.id) {
            state.store.set_host_state(&host.id, corral_store::HostState::Active).await?;
        }
    }
    // An agent whose host the restored database does not know joins again as a new host,
    // so what it runs is adopted rather than removed.
    for host in hosts_before.iter().filter(|h| !known.iter().any(|k| k.id == h.id)) {
        state.hub.disconnect(&host.id);
    }
    // Sessions that stay follow their environment by id, under the name the restored database gives it.
    state.environment_names.clear();
    for env in state.store.environments().await? {
        state.environment_names.set(env.id, &env.name);
    }
    state.unplaced.lock().expect("unplaced lock").clear();
    state.avoid.lock().expect("avoid lock").clear();
    state.reconcile.run_now().await;
    state.events.everything_changed();
    Ok(())
}

/// The admin token in the data dir stays valid even when the backup came with other tokens:
/// whoever restores must not be locked out by it.
async fn keep_admin_token(state: &AppState) -> Result<(), BackupError> {
    let path = state.config.data_dir.join(crate::ADMIN_TOKEN_FILE);
    let Ok(secret) = std::fs::read_to_string(&path) else { return Ok(()) };
    let secret = secret.trim();
    if !secret.is_empty() && state.store.verify_api_token(secret).await?.is_none() {
        state.store.set_api_token_secret("admin", secret).await?;
    }
    Ok(())
}
