//! Backups of the control plane's database and restoring one, while the control plane runs.
//!
//! The HTTP API (`GET /v1/backup`, `POST /v1/restore`), the CLI and the desktop menu all go
//! through these functions.
//!
//! - A backup is an online, consistent copy (`VACUUM INTO` a temp file in the data dir), then
//!   moved or streamed to where it is wanted.
//! - A restore checks the file completely before it replaces anything, and changes nothing if
//!   it is not fit: SQLite, intact, Corral's, a schema this build knows; then, brought to this
//!   build's schema: the same tables, references that hold, values of the right types that
//!   parse, and within the API's own limits (the same validators as the API's). A backup that
//!   would lock the admin out ([`lockout`]) is refused unless forced.
//! - Then it keeps a safety copy of the current database in the data dir, replaces the live
//!   contents in one transaction (exactly the backup's rows), and lets the control loop converge
//!   the engines to the restored state. The admin token stays an administrator's either way.
//! - Every file it writes is private (0600), like the database itself.

use crate::state::AppState;
use crate::validate;
use corral_store::backup::Problem;
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
    /// Restoring would lock the admin out, for these reasons; nothing was changed.
    #[error("restoring this backup would lock the admin out: {}; nothing was changed", reasons.join("; "))]
    WouldLockOut { reasons: Vec<String> },
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

/// How a restore is asked for.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore even though the backup would lock the admin out; the admin token is kept
    /// working (and an administrator's) anyway.
    pub force: bool,
    /// The credential (API key or session token) the restore was asked with: unless forced, it
    /// must still open the control plane as an administrator afterwards. `None` for the desktop
    /// app, whose own credential is the admin token.
    pub caller: Option<String>,
}

/// A private file in the data dir that is removed (with SQLite's side files) when dropped.
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    pub(crate) fn new(state: &AppState, what: &str) -> TempFile {
        let name = format!(".corral-{what}-{}.db", corral_store::environments::random_secret(6));
        TempFile(state.config.data_dir.join(name))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Opens the file for writing, empty and private.
    pub(crate) fn create(&self) -> Result<tokio::fs::File, BackupError> {
        corral_store::files::create_private(&self.0).map(tokio::fs::File::from_std).map_err(io("write", &self.0))
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
    let mut to = corral_store::files::create_private(dest).map(tokio::fs::File::from_std).map_err(io("write", dest))?;
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
pub async fn restore_from_file(state: &AppState, src: &Path, options: &RestoreOptions) -> Result<RestoreInfo, BackupError> {
    let work = TempFile::new(state, "restore");
    let mut to = work.create()?;
    let mut from = tokio::fs::File::open(src).await.map_err(io("read", src))?;
    tokio::io::copy(&mut from, &mut to).await.map_err(io("read", src))?;
    drop(to);
    restore(state, work, options).await
}

/// One restore at a time: each replaces everything.
static RESTORING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many problems a refused backup's message lists.
const PROBLEMS_SHOWN: usize = 5;

/// Restores from `work`, a copy in the data dir that may be changed and is removed afterwards.
pub(crate) async fn restore(state: &AppState, work: TempFile, options: &RestoreOptions) -> Result<RestoreInfo, BackupError> {
    let _one_at_a_time = RESTORING.try_lock().map_err(|_| BackupError::Busy)?;
    let facts = Store::inspect_backup(work.path()).await?;
    // Brings the copy to this build's schema, so its tables match the live ones column by column.
    let copy = Store::open(work.path()).await.map_err(|e| BackupError::BadBackup(format!("the backup cannot be brought to this build's schema: {e}")))?;
    let admin_token = admin_token_hash(state).await?;
    let checked = check(state, &copy, options, admin_token.as_deref()).await;
    copy.close().await;
    checked?;

    let safety_copy = safety_copy(state).await?;
    state.store.replace_contents(work.path()).await?;
    drop(work);
    tracing::info!(schema_version = facts.schema_version, %safety_copy, forced = options.force, "restored the database from a backup");
    // A backup from another control plane (or an older version) holds tokens this key cannot open.
    let sealed = state.store.seal_join_tokens().await?;
    crate::log_sealing(&sealed);
    settle(state, admin_token.as_deref()).await?;
    Ok(RestoreInfo { restored: true, schema_version: facts.schema_version, safety_copy, join_tokens_replaced: sealed.replaced })
}

/// Everything that keeps `copy` from replacing the live contents, before anything is replaced.
async fn check(state: &AppState, copy: &Store, options: &RestoreOptions, admin_token: Option<&str>) -> Result<(), BackupError> {
    let mut problems = copy.restore_problems(&state.store).await?;
    if problems.is_empty() {
        problems = beyond_api_limits(copy).await?;
    }
    if !problems.is_empty() {
        return Err(refused(&problems));
    }
    let reasons = lockout(copy, options.caller.as_deref(), admin_token).await?;
    if !reasons.is_empty() && !options.force {
        return Err(BackupError::WouldLockOut { reasons });
    }
    Ok(())
}

fn refused(problems: &[Problem]) -> BackupError {
    let mut shown: Vec<String> = problems.iter().take(PROBLEMS_SHOWN).map(ToString::to_string).collect();
    if problems.len() > PROBLEMS_SHOWN {
        shown.push(format!("and {} more", problems.len() - PROBLEMS_SHOWN));
    }
    BackupError::BadBackup(format!("the backup cannot be restored, nothing was changed: {}", shown.join("; ")))
}

/// Values the API itself would refuse, read through the store's typed readers (which
/// [`Store::restore_problems`] found safe to use on `copy`).
async fn beyond_api_limits(copy: &Store) -> Result<Vec<Problem>, BackupError> {
    let mut problems = Vec::new();
    let mut check = |table: &str, id: &dyn std::fmt::Display, result: Result<(), crate::error::ApiError>| {
        if let Err(e) = result {
            problems.push(Problem::new(table, Some(format!("id {id}")), e.to_string()));
        }
    };
    let environments = copy.environments().await?;
    for env in &environments {
        check("environments", &env.id, validate::name("name", "environment", &env.name));
        for stack in copy.stacks(env.id).await? {
            check("stacks", &stack.id, validate::name("name", "stack", &stack.name));
        }
    }
    for service in copy.services(None, None).await? {
        check("services", &service.id, validate::name("name", "service", &service.name));
        check("services", &service.id, validate::service_spec(&service.spec));
        check("services", &service.id, validate::scale(i64::from(service.scale)).map(|_| ()));
        if let Some(previous) = &service.previous_spec {
            check("services", &service.id, validate::service_spec(previous));
        }
    }
    // Host names and facts came from agents: the rules a hello is held to, so that nothing a
    // hostile agent could not send gets in through a crafted backup either.
    for host in copy.hosts(None).await? {
        let facts = corral_proto::HostFacts {
            name: host.name.clone(),
            address: host.address.clone(),
            docker_version: host.docker_version.clone(),
            cpus: host.cpus,
            memory_bytes: host.memory_bytes,
            os: host.os.clone(),
            kernel: host.kernel.clone(),
            agent_version: host.agent_version.clone(),
            labels: host.labels.clone(),
            network: Default::default(),
        };
        check("hosts", &validate::agent::preview(&host.id), validate::agent::host_id(&host.id).and_then(|()| validate::agent::facts(&facts)));
    }
    for user in copy.users().await? {
        check("users", &user.id, validate::name("name", "user", &user.name));
    }
    for group in copy.groups().await? {
        check("groups", &group.id, validate::name("name", "group", &group.name));
    }
    for key in copy.api_keys(None, None).await? {
        check("api_tokens", &key.id, validate::name("name", "API key", &key.name));
    }
    if let Some(url) = copy.settings().await?.advertise_url {
        check("settings", &1, validate::advertise_url(&url).map(|_| ()));
    }
    // Managed networks and leases are what agents build networks and routes from.
    for env in &environments {
        if let Some(subnet) = &env.subnet {
            check("environments", &env.id, validate::managed_subnet(subnet).map(drop));
        }
    }
    for lease in copy.leases(None).await? {
        let in_network = environments.iter().find(|e| e.id == lease.environment_id).and_then(|e| crate::network::cidr(e.subnet.as_deref()?));
        let ok =
            crate::network::cidr(&lease.subnet).is_some_and(|l| l.prefix_len() == crate::network::LEASE_PREFIX && in_network.is_some_and(|n| n.contains(&l)));
        let result = match ok {
            true => Ok(()),
            false => Err(crate::error::ApiError::invalid(
                "subnet",
                format!("lease {} of host {} is no /24 of its environment's managed network", lease.subnet, lease.host_name),
            )),
        };
        check("host_leases", &lease.host_id, result);
    }
    // What agents are sent and install (a CA file under the engine's certs dir) passes the API's rules.
    for registry in copy.registries(None).await? {
        check("registries", &registry.id, validate::registry_host(&registry.host).map(drop));
        check("registries", &registry.id, registry.username.as_deref().map_or(Ok(()), validate::registry_user));
        check("registries", &registry.id, registry.ca_pem.as_deref().map_or(Ok(()), validate::ca_pem));
    }
    Ok(problems)
}

/// Why restoring `copy` would lock the admin out; empty when it would not. It would when:
///
/// - the built-in user `admin` is missing or no administrator;
/// - it has no admin token: no unrevoked account key named `admin`;
/// - the credential the restore was asked with (`caller`) would not open the restored
///   control plane as an administrator (its key or session is not in the backup, or is revoked
///   there, or its user is no administrator there). The admin token (`admin_token`, its hash)
///   is kept working, so a caller using it is never locked out.
async fn lockout(copy: &Store, caller: Option<&str>, admin_token: Option<&str>) -> Result<Vec<String>, BackupError> {
    let mut reasons = Vec::new();
    match copy.user(corral_store::users::ADMIN_USER).await {
        Ok(admin) if admin.admin => {}
        Ok(_) => reasons.push("the built-in user admin has no admin flag in the backup".to_string()),
        Err(StoreError::NotFound(_)) => reasons.push("the backup has no built-in user admin".to_string()),
        Err(e) => return Err(e.into()),
    }
    if copy.admin_token_hash(crate::ADMIN_TOKEN_NAME).await?.is_none() {
        reasons.push(format!("the backup has no admin token (no unrevoked account key {:?} of the user admin)", crate::ADMIN_TOKEN_NAME));
    }
    let kept = |token: &str| admin_token == Some(corral_store::tokens::hash_secret(token).as_str());
    if let Some(reason) = match caller {
        Some(token) if !kept(token) => caller_locked_out(copy, token).await?,
        _ => None,
    } {
        reasons.push(reason);
    }
    Ok(reasons)
}

/// Why `token` would not open `copy` as an administrator, if it would not.
async fn caller_locked_out(copy: &Store, token: &str) -> Result<Option<String>, BackupError> {
    let (user_id, credential) = if token.starts_with(crate::access::SESSION_PREFIX) {
        match copy.session(token).await? {
            Some(session) => (session.user_id, "your login session".to_string()),
            None => return Ok(Some("your login session is not in the backup, so you would be signed out".into())),
        }
    } else {
        match copy.authenticate_api_key(token).await? {
            Some(key) => (key.user_id, format!("your API key {:?}", key.name)),
            None => return Ok(Some("your API key is not in the backup (or is revoked there)".into())),
        }
    };
    let user = copy.user_by_id(user_id).await?;
    Ok((!user.admin).then(|| format!("{credential} belongs to user {} who is no administrator in the backup", user.name)))
}

/// The admin token to keep working through a restore, as its hash: the one in the data dir's
/// `admin-token`, or else (the desktop app keeps it in the OS keyring) the live admin token's.
async fn admin_token_hash(state: &AppState) -> Result<Option<String>, BackupError> {
    let file = state.config.data_dir.join(crate::ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&file).map(|s| s.trim().to_string()) {
        Ok(secret) if !secret.is_empty() => Ok(Some(corral_store::tokens::hash_secret(&secret))),
        _ => Ok(state.store.admin_token_hash(crate::ADMIN_TOKEN_NAME).await?),
    }
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
async fn settle(state: &AppState, admin_token: Option<&str>) -> Result<(), BackupError> {
    keep_admin_token(state, admin_token).await?;
    state.store.ensure_default_environment().await?;
    // A host's state follows its agent's session; one whose state is right keeps its `state_since`.
    let known = state.store.hosts(None).await?;
    for host in &known {
        let now = if state.hub.is_connected(&host.id) { corral_store::HostState::Active } else { corral_store::HostState::Disconnected };
        state.store.set_host_state(&host.id, now).await?;
    }
    // An agent whose host the restored database does not know joins again as a new host,
    // so what it runs is adopted rather than removed.
    for id in state.hub.connected_hosts().into_iter().filter(|id| !known.iter().any(|k| &k.id == id)) {
        state.hub.disconnect(&id);
    }
    // Sessions that stay follow their environment by id, under the name the restored database gives it.
    state.environment_names.clear();
    for env in state.store.environments().await? {
        state.environment_names.set(env.id, &env.name);
    }
    state.unplaced.lock().expect("unplaced lock").clear();
    state.avoid.lock().expect("avoid lock").clear();
    // Metric series ids are the restored database's now.
    state.metrics.clear_series_cache();
    state.reconcile.run_now().await;
    state.events.everything_changed();
    // Users, keys, sessions and memberships are the backup's now: open streams check theirs at
    // once, whichever way the restore came (API, CLI, desktop menu).
    state.access.notify();
    Ok(())
}

/// The admin token stays valid, and an administrator's, whatever the backup holds: whoever
/// restores must not be locked out by it (forced restores included).
async fn keep_admin_token(state: &AppState, admin_token: Option<&str>) -> Result<(), BackupError> {
    state.store.ensure_admin_is_admin().await?;
    let Some(hash) = admin_token else { return Ok(()) };
    if state.store.admin_token_hash(crate::ADMIN_TOKEN_NAME).await?.as_deref() != Some(hash) {
        state.store.set_api_token_hash(crate::ADMIN_TOKEN_NAME, hash).await?;
    }
    Ok(())
}
