//! Consistent copies of the database, checks on a copy someone hands back, and replacing the
//! live contents with such a copy.
//!
//! A restore replaces the contents of the open database in one transaction instead of swapping
//! the file under the running control plane: every `Store` clone keeps working, no request ever
//! sees a closed pool, and a failure half-way leaves the old contents untouched. Before that,
//! [`check`] finds everything in the copy that would not fit (see [`Store::restore_problems`]).

mod check;

pub use check::Problem;

use crate::{Result, Store, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row};
use std::path::Path;
use std::str::FromStr;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Tables a Corral database always has, whatever its schema version.
const CORRAL_TABLES: [&str; 2] = ["meta", "_sqlx_migrations"];

/// Tables whose live contents are kept through a restore, because they say what is true now
/// rather than what was wanted when the copy was made: what the engines run.
const LIVE_TABLES: [&str; 1] = ["observed"];

/// Tables a restore leaves alone: the live database's own record of its migrations.
const KEPT_TABLES: [&str; 1] = ["_sqlx_migrations"];

fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The newest schema version this build knows.
pub fn schema_version() -> i64 {
    migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

/// What a checked copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    /// The newest migration applied to the copy.
    pub schema_version: i64,
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::BadBackup(message.into())
}

impl Store {
    /// Writes a consistent copy of the whole database to `dest`, which must not exist yet, as a
    /// private file. Runs online: writers wait at most for the copy's read snapshot, never the
    /// other way round.
    pub async fn vacuum_into(&self, dest: &Path) -> Result<()> {
        let text = dest.to_str().ok_or_else(|| StoreError::Corrupt(format!("backup path {} is not UTF-8", dest.display())))?;
        // SQLite would create the file with the umask's mode; it writes into an empty one as well.
        crate::files::create_private(dest).map_err(|source| StoreError::File { path: dest.to_path_buf(), source })?;
        sqlx::query("VACUUM INTO ?").bind(text).execute(&self.pool).await?;
        Ok(())
    }

    /// Bytes the database's pages take, about the size of a copy.
    pub async fn size_estimate(&self) -> Result<u64> {
        let row = sqlx::query("SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count()), (SELECT page_size FROM pragma_page_size())")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.get::<i64, _>(0).max(0) as u64) * row.get::<i64, _>(1) as u64)
    }

    /// Checks that `path` is an intact Corral database this build can use, without changing it
    /// beyond what opening an SQLite file does. Every failure is [`StoreError::BadBackup`].
    pub async fn inspect_backup(path: &Path) -> Result<BackupFacts> {
        let mut header = [0u8; 16];
        let read = {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            file.read(&mut header).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?
        };
        if read < header.len() || &header != SQLITE_HEADER {
            return Err(bad("the file is not a SQLite database; a Corral backup is the .db file `corral backup` or GET /v1/backup wrote"));
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?.filename(path).create_if_missing(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await.map_err(|e| bad(format!("the file cannot be opened as a database: {e}")))?;
        let facts = inspect(&mut conn).await;
        let _ = conn.close().await;
        facts
    }

    /// Replaces every table's contents with those of the database at `src` (checked with
    /// [`inspect_backup`](Store::inspect_backup), brought to this build's schema with
    /// [`Store::open`] and found fit by [`restore_problems`](Store::restore_problems)), in one
    /// transaction. Tables in [`LIVE_TABLES`] keep their live rows for the hosts the live
    /// database knows.
    pub async fn replace_contents(&self, src: &Path) -> Result<()> {
        let src = src.to_str().ok_or_else(|| StoreError::Corrupt(format!("restore path {} is not UTF-8", src.display())))?;
        let mut conn = self.pool.acquire().await?;
        // An attachment and foreign keys turned off are per connection: never hand this one back
        // to the pool with them.
        conn.close_on_drop();
        // Tables are emptied and refilled one by one: enforced foreign keys would cascade (emptying
        // users deletes the API keys already copied back, emptying hosts the agents' reports).
        // `defer_foreign_keys` defers checks, not cascades, and this pragma does nothing inside a
        // transaction. The references are checked once, before the commit.
        sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *conn).await?;
        sqlx::query("ATTACH DATABASE ? AS restored").bind(src).execute(&mut *conn).await?;
        let result = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let copied = match copy_tables(&mut conn).await {
                Ok(()) => broken_references(&mut conn).await,
                Err(e) => Err(e),
            };
            match copied {
                Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ()).map_err(StoreError::from),
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e)
                }
            }
        }
        .await;
        let _ = sqlx::query("DETACH DATABASE restored").execute(&mut *conn).await;
        result
    }
}

async fn inspect(conn: &mut sqlx::SqliteConnection) -> Result<BackupFacts> {
    let damaged = |e: sqlx::Error| bad(format!("the file is damaged (integrity check failed): {e}"));
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut *conn).await.map_err(damaged)?;
    if problems != ["ok"] {
        let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
        return Err(bad(format!("the file is damaged (integrity check failed): {}", shown.join("; "))));
    }
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&mut *conn).await.map_err(damaged)?;
    if let Some(missing) = CORRAL_TABLES.iter().find(|t| !tables.iter().any(|name| name == *t)) {
        return Err(bad(format!("the file is a SQLite database but not a Corral database (it has no {missing} table)")));
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| bad(format!("the file is not a Corral database (unreadable migrations table: {e})")))?;
    let known: Vec<i64> = migrator().iter().map(|m| m.version).collect();
    let newest = applied.last().copied().unwrap_or(0);
    if applied.iter().any(|v| !known.contains(v)) {
        return Err(bad(format!(
            "the backup's schema (version {newest}) is newer than this build's (version {}); restore it with the Corral version that made it or a newer one",
            schema_version()
        )));
    }
    Ok(BackupFacts { schema_version: newest })
}

/// Within the open transaction: empties `main`'s tables and fills them from `restored`.
async fn copy_tables(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    for live in LIVE_TABLES {
        // Before `hosts` is replaced, so `main.hosts` still says which hosts the live database
        // knows: their reports are newer than any backup's. Others get the backup's last report.
        let (quoted, columns) = (quote(live), columns(conn, live).await?);
        sqlx::query(&format!("DELETE FROM main.{quoted} WHERE host_id NOT IN (SELECT id FROM restored.hosts)")).execute(&mut *conn).await?;
        sqlx::query(&format!("INSERT INTO main.{quoted} ({columns}) SELECT {columns} FROM restored.{quoted} WHERE host_id NOT IN (SELECT id FROM main.hosts)"))
            .execute(&mut *conn)
            .await?;
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetch_all(&mut *conn).await?;
    for table in tables.iter().filter(|t| !LIVE_TABLES.contains(&t.as_str()) && !KEPT_TABLES.contains(&t.as_str())) {
        let (quoted, columns) = (quote(table), columns(conn, table).await?);
        sqlx::query(&format!("DELETE FROM main.{quoted}")).execute(&mut *conn).await?;
        sqlx::query(&format!("INSERT INTO main.{quoted} ({columns}) SELECT {columns} FROM restored.{quoted}")).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A table's columns, quoted, comma-separated: rows are copied by name, not position.
async fn columns(conn: &mut sqlx::SqliteConnection, table: &str) -> Result<String> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?, 'main')").bind(table).fetch_all(&mut *conn).await?;
    Ok(names.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "))
}

/// Within the open transaction, after the copy: every reference in `main` holds.
async fn broken_references(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let rows = sqlx::query("PRAGMA main.foreign_key_check").fetch_all(&mut *conn).await?;
    let broken: Vec<String> =
        rows.iter().take(3).map(|r| format!("table {} refers to a row of {} that is not there", r.get::<String, _>(0), r.get::<String, _>(2))).collect();
    if broken.is_empty() {
        return Ok(());
    }
    Err(bad(format!("the restored rows do not fit together ({}); nothing was changed", broken.join("; "))))
}

pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use crate::{Store, StoreError};

    /// Copies made while another task writes all the time are intact, checkable, and each holds
    /// a prefix of the writes: never half a transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_are_consistent_while_writes_happen() {
        let (store, dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    let stack = store.create_stack(env.id, &format!("S{i}")).await.unwrap();
                    store.create_service(&stack, "svc", &crate::services::tests::spec(), 1).await.unwrap();
                }
            })
        };
        let mut last = 0;
        for n in 0..10 {
            let copy = dir.path().join(format!("copy-{n}.db"));
            store.vacuum_into(&copy).await.unwrap();
            let facts = Store::inspect_backup(&copy).await.unwrap();
            assert_eq!(facts.schema_version, super::schema_version());
            let copied = Store::open(&copy).await.unwrap();
            let (stacks, services) = (copied.stacks(env.id).await.unwrap().len(), copied.services(None, None).await.unwrap().len());
            // Stack and service are two transactions: a copy may fall between them, no further.
            assert!(stacks == services || stacks == services + 1, "{stacks} stacks, {services} services");
            assert!(stacks >= last, "copies only grow");
            last = stacks;
            copied.close().await;
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn replacing_contents_brings_back_the_copy() {
        let (store, dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        store.create_stack(env.id, "Kept").await.unwrap();
        let copy = dir.path().join("copy.db");
        store.vacuum_into(&copy).await.unwrap();
        store.create_stack(env.id, "Later").await.unwrap();
        store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        let before_token = store.join_token(env.id).await.unwrap();
        store.replace_contents(&copy).await.unwrap();
        let stacks: Vec<String> = store.stacks(env.id).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(stacks, ["Kept"]);
        assert_eq!(store.environments().await.unwrap().len(), 1);
        assert_eq!(store.join_token(env.id).await.unwrap(), before_token);
        // The pool still works for writes afterwards.
        store.create_stack(env.id, "After").await.unwrap();
    }

    /// Emptying users or hosts must not cascade into the rows already copied back: every key
    /// and every agent's last report comes back.
    #[tokio::test]
    async fn replacing_contents_keeps_every_row_that_refers_to_another() {
        use corral_proto::{ContainerState, HostFacts, ObservedContainer};
        let (store, dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let ann = store.create_user("ann", None, false).await.unwrap();
        store.create_api_key(ann.id, None, Some("ann-laptop")).await.unwrap();
        store.create_api_key(ann.id, Some(env.id), Some("ann-ci")).await.unwrap();
        store.create_session(ann.id, std::time::Duration::from_secs(60)).await.unwrap();
        store.register_host(env.id, "h1", &HostFacts { name: "h1".into(), ..Default::default() }).await.unwrap();
        let seen = ObservedContainer {
            name: "x".into(),
            docker_id: "id".into(),
            image: "busybox".into(),
            state: ContainerState::Running,
            status: "Up".into(),
            ip: None,
            ports: vec![],
            labels: Default::default(),
        };
        store.replace_observed("h1", &[seen]).await.unwrap();
        let copy = dir.path().join("copy.db");
        store.vacuum_into(&copy).await.unwrap();
        let keys = store.api_keys(None, None).await.unwrap();
        let observed = store.observed(None).await.unwrap();
        store.replace_contents(&copy).await.unwrap();
        assert_eq!(store.api_keys(None, None).await.unwrap(), keys);
        assert_eq!(store.observed(None).await.unwrap(), observed);
        let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(store.pool()).await.unwrap();
        assert_eq!(sessions, 1);
        // The connection that copied with foreign keys off never went back to the pool.
        for _ in 0..16 {
            let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool()).await.unwrap();
            assert_eq!(on, 1);
        }
    }

    /// Each kind of damage is named with its table and row, on a copy brought to this schema.
    #[tokio::test]
    async fn problems_name_their_table_and_row() {
        let (store, dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let stack = store.create_stack(env.id, "WEB").await.unwrap();
        let service = store.create_service(&stack, "web", &crate::services::tests::spec(), 1).await.unwrap();
        let good = dir.path().join("good.db");
        store.vacuum_into(&good).await.unwrap();
        let id = service.id;
        let cases = [
            ("UPDATE services SET env = '[oops'", format!("table services, row id {id}: unreadable service env: expected value at line 1 column 2")),
            ("UPDATE services SET scale = 'many'", format!("table services, row id {id}: column scale holds text where a whole number belongs")),
            ("UPDATE services SET scale = 4294967296", format!("table services, row id {id}: column scale holds 4294967296, outside 0 to 4294967295")),
            ("UPDATE services SET kind = 'vm'", format!("table services, row id {id}: column kind holds \"vm\", not one of container, load-balancer")),
            (
                "UPDATE services SET updated_at = 'yesterday'",
                format!("table services, row id {id}: column updated_at holds \"yesterday\", not a time (RFC 3339)"),
            ),
            ("DELETE FROM stacks", format!("table services, row id {id}: refers to a row of stacks that is not in the backup")),
            ("DROP TABLE sessions", "table sessions: missing from the backup".to_string()),
            ("CREATE TABLE extra (x)", "table extra: table extra is not part of a Corral database".to_string()),
        ];
        for (n, (sql, expected)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("crafted-{n}.db"));
            std::fs::copy(&good, &path).unwrap();
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).foreign_keys(false);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
            let copy = Store::open(&path).await.unwrap();
            let problems: Vec<String> = copy.restore_problems(&store).await.unwrap().iter().map(ToString::to_string).collect();
            assert_eq!(problems, [expected], "{sql}");
            copy.close().await;
        }
        // A network mode no build knows is named by the column check and by the reading of the row.
        let path = dir.path().join("crafted-network.db");
        std::fs::copy(&good, &path).unwrap();
        let pool = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
        sqlx::raw_sql("UPDATE services SET network = 'overlay'").execute(&pool).await.unwrap();
        pool.close().await;
        let copy = Store::open(&path).await.unwrap();
        let problems: Vec<String> = copy.restore_problems(&store).await.unwrap().iter().map(ToString::to_string).collect();
        assert!(
            problems.contains(&format!("table services, row id {id}: column network holds \"overlay\", not one of managed, bridge, host, none")),
            "{problems:?}"
        );
        copy.close().await;
        let copy = Store::open(&good).await.unwrap();
        assert_eq!(copy.restore_problems(&store).await.unwrap(), []);
    }

    #[tokio::test]
    async fn bad_copies_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello, this is not a database at all, but long enough").unwrap();
        let err = Store::inspect_backup(&text).await.unwrap_err();
        assert!(matches!(&err, StoreError::BadBackup(m) if m.contains("not a SQLite database")), "{err}");

        let other = dir.path().join("other.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&other).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE songs (title TEXT)").execute(&pool).await.unwrap();
        pool.close().await;
        let err = Store::inspect_backup(&other).await.unwrap_err();
        assert!(matches!(&err, StoreError::BadBackup(m) if m.contains("not a Corral database")), "{err}");

        let (store, _store_dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        for i in 0..50 {
            store.create_stack(env.id, &format!("S{i}")).await.unwrap();
        }
        let full = dir.path().join("full.db");
        store.vacuum_into(&full).await.unwrap();
        let bytes = std::fs::read(&full).unwrap();
        let truncated = dir.path().join("truncated.db");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = Store::inspect_backup(&truncated).await.unwrap_err();
        assert!(matches!(&err, StoreError::BadBackup(m) if m.contains("damaged")), "{err}");
    }
}
