//! Corral's persistent state: one SQLite file (WAL) through sqlx, migrated on open.
//!
//! Every change is one transaction, so a crash leaves either the old or the new state.
//!
//! - [`model`]: the records the rest of the system reads.
//! - [`environments`], [`tokens`], [`hosts`], [`stacks`], [`services`], [`containers`],
//!   [`observed`], [`settings`]: one module per table, each a set of `impl Store` methods.
//! - [`metrics`]: resource usage history with roll-ups.
//! - [`backup`]: consistent copies, checks on a copy, restoring one.
//! - [`sealing`]: join tokens and registry passwords encrypted at rest with a key kept outside
//!   the database file.
//! - [`registries`]: image registries per environment, with sealed passwords.
//! - [`files`]: the database and its copies are private files in a private dir.
//! - [`users`] (users, groups, sessions), [`access`] (roles in environments, API keys),
//!   [`audit`] (who changed what) and [`logins`] (failed logins): access control.

pub mod access;
pub mod audit;
pub mod backup;
pub mod containers;
pub mod environments;
pub mod files;
pub mod hosts;
pub mod logins;
pub mod metrics;
pub mod model;
pub mod network;
pub mod observed;
pub mod registries;
pub mod sealing;
pub mod services;
pub mod settings;
pub mod stacks;
pub mod tokens;
pub mod users;

pub use environments::SealReport;
pub use model::*;
pub use sealing::SealingKey;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in the store, in terms callers can map to an answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A host must be deactivated or disconnected first; says how.
    #[error("{0}")]
    HostActive(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("cannot use database file {}: {source}", path.display())]
    File { path: std::path::PathBuf, source: std::io::Error },
    /// A file offered for restore is not a usable Corral database; says what is wrong with it.
    #[error("{0}")]
    BadBackup(String),
    /// A sealed secret was asked of a store opened without its sealing key.
    #[error("the database was opened without its sealing key, so join tokens can be neither made nor read")]
    NoSealingKey,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Seals and opens join tokens; `None` for a database opened only to be read or checked.
    sealing: Option<Arc<SealingKey>>,
}

impl Store {
    /// Opens the database the way the control plane does: like [`Store::open`], with the key its
    /// join tokens are sealed with. Tokens an older version stored in plaintext are sealed now,
    /// and tokens sealed with another key (a backup from another control plane, a lost key file)
    /// are replaced; [`SealReport`] says which.
    pub async fn open_sealed(path: &Path, key: SealingKey) -> Result<(Store, SealReport)> {
        let mut store = Store::open(path).await?;
        store.sealing = Some(Arc::new(key));
        let report = store.seal_join_tokens().await?;
        Ok((store, report))
    }

    /// Opens (creating if needed) the database file and brings its schema up to date, without a
    /// sealing key: everything works but making, showing and checking join tokens. The file and
    /// its side files are private (0600).
    pub async fn open(path: &Path) -> Result<Store> {
        private_database_files(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable across process crashes; only an OS crash can lose the last commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool, sealing: None })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that holds the write lock from its first statement. A plain (deferred)
    /// transaction that reads before it writes cannot upgrade once another connection has
    /// committed in between: SQLite answers SQLITE_BUSY at once, which no busy timeout covers.
    /// Agents' reports write all the time, so every transaction here takes the lock up front.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// SQLite gives the -wal and -shm files the database file's mode, so a database file created
/// private before SQLite opens it keeps them private too. Files an older version left readable
/// are tightened.
fn private_database_files(path: &Path) -> Result<()> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::File { path, source }
    };
    if !path.exists() {
        files::create_private(path).map_err(fail(path))?;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = std::path::PathBuf::from(side);
        files::make_private(&side).map_err(fail(&side))?;
    }
    Ok(())
}

/// Current time as stored: RFC 3339, UTC, millisecond precision.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(now.millisecond() as u32 * 1_000_000).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339).expect("UTC time always formats")
}

/// Parses a stored time back; `None` for text that is not RFC 3339.
pub fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_sealed(&dir.path().join("corral.db"), SealingKey::generate()).await.unwrap();
        (store, dir)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use corral_proto::{ContainerState, HostFacts, ObservedContainer};

    /// Services are created (read, then write) while agents' reports write all the time: every
    /// create must succeed, never fail with SQLITE_BUSY.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_never_fail_while_reports_stream_in() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        store.register_host(env.id, "h", &HostFacts { name: "h".into(), ..Default::default() }).await.unwrap();
        let stack = store.create_stack(env.id, "S").await.unwrap();
        let reporter = {
            let store = store.clone();
            tokio::spawn(async move {
                let c = ObservedContainer {
                    name: "x".into(),
                    docker_id: "id".into(),
                    image: "i".into(),
                    state: ContainerState::Running,
                    status: "Up".into(),
                    ip: None,
                    ports: vec![],
                    labels: Default::default(),
                };
                for _ in 0..400 {
                    store.replace_observed("h", std::slice::from_ref(&c)).await.unwrap();
                }
            })
        };
        for i in 0..100 {
            store.create_service(&stack, &format!("svc{i}"), &crate::services::tests::spec(), 1).await.unwrap();
        }
        reporter.await.unwrap();
        assert_eq!(store.services(None, None).await.unwrap().len(), 100);
    }
}
