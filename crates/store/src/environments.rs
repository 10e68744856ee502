//! Environments (e.g. OPS, DEV): each has its hosts, stacks and join token.

use crate::sealing::{Domain, SealingKey, SEALED_PREFIX};
use crate::tokens::hash_secret;
use crate::{is_unique_violation, now, Environment, Result, Store, StoreError};
use sqlx::Row;

/// The environment every fresh control plane starts with.
pub const DEFAULT_ENVIRONMENT: &str = "Default";

fn row_to_env(row: sqlx::sqlite::SqliteRow) -> Environment {
    Environment {
        id: row.get("id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
        label: row.get::<Option<String>, _>("label").unwrap_or_else(|| row.get("name")),
        subnet: row.get("subnet"),
    }
}

/// The answer for an environment that does not exist, also given for one the caller may not see.
pub fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("environment {name:?} does not exist; `corral env ls` lists the environments"))
}

/// An environment with the size of its contents, for listings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EnvironmentSummary {
    #[serde(flatten)]
    pub environment: Environment,
    pub hosts: usize,
    pub stacks: usize,
}

/// A random URL-safe secret of `bytes` bytes of entropy, hex-encoded.
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// What opening the database with its sealing key did to the join tokens it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SealReport {
    /// Tokens an older version had stored in plaintext, now sealed (and unchanged for hosts).
    pub sealed: usize,
    /// Environments whose token was sealed with another key (a backup from another control
    /// plane, a lost key file) and could not be opened: each got a new token. Hosts that have
    /// joined keep their own credentials; new hosts need the new join command.
    pub replaced: Vec<String>,
}

/// A join token as the database keeps it.
struct NewJoinToken {
    sealed: String,
    hash: String,
}

impl NewJoinToken {
    fn of(key: &SealingKey, secret: &str) -> NewJoinToken {
        NewJoinToken { sealed: key.seal(Domain::JoinToken, secret), hash: hash_secret(secret) }
    }

    fn random(key: &SealingKey) -> NewJoinToken {
        NewJoinToken::of(key, &random_secret(24))
    }
}

/// What the seal pass does with one stored join token.
#[derive(Debug, PartialEq, Eq)]
enum Sealing {
    Keep,
    /// Sealed with this key, but its hash column is missing or wrong.
    Rehash(String),
    /// An older version's plaintext token: sealed as it is.
    SealPlaintext(String),
    /// Sealed with another key: unreadable, so replaced.
    Replace,
}

fn sealing_for(key: &SealingKey, stored: &str, hash: Option<&str>) -> Sealing {
    if !stored.starts_with(SEALED_PREFIX) {
        return Sealing::SealPlaintext(stored.to_string());
    }
    match key.open(Domain::JoinToken, stored) {
        Some(secret) if hash == Some(hash_secret(&secret).as_str()) => Sealing::Keep,
        Some(secret) => Sealing::Rehash(secret),
        None => Sealing::Replace,
    }
}

impl Store {
    fn sealing_key(&self) -> Result<&SealingKey> {
        self.sealing.as_deref().ok_or(StoreError::NoSealingKey)
    }

    /// Makes an environment with the managed network `subnet` (checked by the caller).
    pub async fn create_environment(&self, name: &str, subnet: &str) -> Result<Environment> {
        let token = NewJoinToken::random(self.sealing_key()?);
        let result =
            sqlx::query("INSERT INTO environments (name, join_token, join_token_hash, created_at, label, subnet) VALUES (?1, ?2, ?3, ?4, ?1, ?5) RETURNING *")
                .bind(name)
                .bind(&token.sealed)
                .bind(&token.hash)
                .bind(now())
                .bind(subnet)
                .fetch_one(&self.pool)
                .await;
        match result {
            Ok(row) => Ok(row_to_env(row)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("environment {name:?} already exists"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the default environment unless it exists; returns it either way.
    pub async fn ensure_default_environment(&self) -> Result<Environment> {
        match self.environment(DEFAULT_ENVIRONMENT).await {
            Ok(env) => Ok(env),
            Err(StoreError::NotFound(_)) => self.create_environment(DEFAULT_ENVIRONMENT, corral_proto::network::DEFAULT_SUBNET).await,
            Err(e) => Err(e),
        }
    }

    pub async fn environments(&self) -> Result<Vec<Environment>> {
        let rows = sqlx::query("SELECT * FROM environments ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(row_to_env).collect())
    }

    pub async fn environment(&self, name: &str) -> Result<Environment> {
        sqlx::query("SELECT * FROM environments WHERE name = ?").bind(name).fetch_optional(&self.pool).await?.map(row_to_env).ok_or_else(|| not_found(name))
    }

    pub async fn environment_by_id(&self, id: i64) -> Result<Environment> {
        sqlx::query("SELECT * FROM environments WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_env)
            .ok_or_else(|| StoreError::NotFound(format!("environment #{id} does not exist")))
    }

    /// Every environment with how many hosts and stacks it has, by name.
    pub async fn environment_summaries(&self) -> Result<Vec<EnvironmentSummary>> {
        let rows = sqlx::query(
            "SELECT e.*,
                    (SELECT COUNT(*) FROM hosts h WHERE h.environment_id = e.id) AS host_count,
                    (SELECT COUNT(*) FROM stacks s WHERE s.environment_id = e.id) AS stack_count
             FROM environments e ORDER BY e.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let hosts = row.get::<i64, _>("host_count") as usize;
                let stacks = row.get::<i64, _>("stack_count") as usize;
                EnvironmentSummary { environment: row_to_env(row), hosts, stacks }
            })
            .collect())
    }

    /// Removes an empty environment. The default one stays, and one with hosts or stacks is
    /// refused rather than emptied: removing them is a separate, deliberate step. Returns the
    /// removed environment's id.
    pub async fn delete_environment(&self, name: &str) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let env = sqlx::query("SELECT * FROM environments WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(row_to_env)
            .ok_or_else(|| not_found(name))?;
        if env.name.eq_ignore_ascii_case(DEFAULT_ENVIRONMENT) {
            return Err(StoreError::Conflict(format!("the default environment {DEFAULT_ENVIRONMENT:?} cannot be removed")));
        }
        let (hosts, stacks): (i64, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM hosts WHERE environment_id = ?1), (SELECT COUNT(*) FROM stacks WHERE environment_id = ?1)")
                .bind(env.id)
                .fetch_one(&mut *tx)
                .await?;
        if hosts > 0 || stacks > 0 {
            return Err(StoreError::Conflict(format!(
                "environment {:?} still has {hosts} host(s) and {stacks} stack(s); remove them first (e.g. `corral stack rm --env {} STACK`)",
                env.name, env.name
            )));
        }
        sqlx::query("DELETE FROM environments WHERE id = ?").bind(env.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(env.id)
    }

    /// Renames an environment. Everything in it stays (it is referenced by id); its containers'
    /// `io.corral.environment` label keeps its value ([`Environment::label`]).
    pub async fn rename_environment(&self, name: &str, new_name: &str) -> Result<Environment> {
        let env = self.environment(name).await?;
        if env.name.eq_ignore_ascii_case(DEFAULT_ENVIRONMENT) {
            // Requests without an environment, and every start of the control plane, find it by this name.
            return Err(StoreError::Conflict(format!(
                "the default environment {DEFAULT_ENVIRONMENT:?} cannot be renamed: requests without --env use it by name; create another environment instead"
            )));
        }
        let result = sqlx::query("UPDATE environments SET name = ? WHERE id = ? RETURNING *").bind(new_name).bind(env.id).fetch_optional(&self.pool).await;
        match result {
            Ok(Some(row)) => Ok(row_to_env(row)),
            Ok(None) => Err(not_found(name)),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("environment {new_name:?} already exists; choose another name, or remove that one first")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the value of the `io.corral.environment` label the environment's containers get.
    /// Used when a rebuilt database adopts containers labelled under an earlier name, so that
    /// their specs hash the same and nothing is recreated.
    pub async fn set_environment_label(&self, environment_id: i64, label: &str) -> Result<()> {
        sqlx::query("UPDATE environments SET label = ? WHERE id = ?").bind(label).bind(environment_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Gives the environment a new join token and returns it; the old one is refused from then
    /// on. Hosts that have joined keep their own credentials and are not affected.
    pub async fn rotate_join_token(&self, environment_id: i64) -> Result<String> {
        let secret = random_secret(24);
        let token = NewJoinToken::of(self.sealing_key()?, &secret);
        let updated = sqlx::query("UPDATE environments SET join_token = ?, join_token_hash = ? WHERE id = ?")
            .bind(&token.sealed)
            .bind(&token.hash)
            .bind(environment_id)
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("environment #{environment_id} does not exist")));
        }
        Ok(secret)
    }

    /// The environment's join token in plaintext, for the join command: the only place it is
    /// ever opened.
    pub async fn join_token(&self, environment_id: i64) -> Result<String> {
        let key = self.sealing_key()?;
        let sealed: String = sqlx::query_scalar("SELECT join_token FROM environments WHERE id = ?")
            .bind(environment_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("environment #{environment_id} does not exist")))?;
        key.open(Domain::JoinToken, &sealed).ok_or_else(|| {
            StoreError::Conflict(format!(
                "the join token of environment #{environment_id} cannot be opened with this control plane's sealing key; give it a new one with `corral host join-command --rotate`"
            ))
        })
    }

    /// The environment a join token belongs to, if any (found by the token's hash).
    pub async fn environment_by_join_token(&self, token: &str) -> Result<Option<Environment>> {
        Ok(sqlx::query("SELECT * FROM environments WHERE join_token_hash = ?").bind(hash_secret(token)).fetch_optional(&self.pool).await?.map(row_to_env))
    }

    /// Brings every stored join token under this store's sealing key: plaintext ones (from an
    /// older version, or a restored backup of one) are sealed, unreadable ones replaced, missing
    /// hashes filled in. Run when the database is opened and after a restore; idempotent.
    pub async fn seal_join_tokens(&self) -> Result<SealReport> {
        let key = self.sealing_key()?;
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, join_token, join_token_hash FROM environments").fetch_all(&mut *conn).await?;
        let plan: Vec<(i64, &str, &str, Sealing)> =
            rows.iter().map(|(id, name, stored, hash)| (*id, name.as_str(), stored.as_str(), sealing_for(key, stored, hash.as_deref()))).collect();
        if plan.iter().all(|(.., s)| *s == Sealing::Keep) {
            return Ok(SealReport::default());
        }
        let mut report = SealReport::default();
        // A page keeps the bytes of a replaced value in its free space unless told to zero them.
        let secure_delete: i64 = sqlx::query_scalar("PRAGMA secure_delete").fetch_one(&mut *conn).await?;
        sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
        let written = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for (id, name, stored, sealing) in &plan {
                let token = match sealing {
                    Sealing::Keep => continue,
                    Sealing::Rehash(secret) => NewJoinToken { sealed: stored.to_string(), hash: hash_secret(secret) },
                    Sealing::SealPlaintext(secret) => {
                        report.sealed += 1;
                        NewJoinToken::of(key, secret)
                    }
                    Sealing::Replace => {
                        report.replaced.push(name.to_string());
                        NewJoinToken::random(key)
                    }
                };
                sqlx::query("UPDATE environments SET join_token = ?, join_token_hash = ? WHERE id = ?")
                    .bind(&token.sealed)
                    .bind(&token.hash)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await;
        sqlx::query(&format!("PRAGMA secure_delete = {secure_delete}")).execute(&mut *conn).await?;
        written?;
        if report.sealed > 0 {
            // The plaintext may still lie in freed pages and in the WAL: rewrite the file and empty
            // the log. Readers elsewhere can delay that; the next checkpoint finishes it.
            if let Err(e) = sqlx::query("VACUUM").execute(&mut *conn).await {
                tracing::warn!(error = %e, "could not rewrite the database after sealing its join tokens");
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await {
                tracing::warn!(error = %e, "could not empty the write-ahead log after sealing join tokens");
            }
        }
        Ok(report)
    }
}

/// How many hosts of the environment other than `host_id` joined with the join token whose
/// hash is `token_hash`. Counted per token value, so a rotated token starts from zero.
pub(crate) async fn hosts_joined_with(conn: &mut sqlx::SqliteConnection, environment_id: i64, token_hash: &str, host_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM hosts WHERE environment_id = ? AND join_token_hash = ? AND id != ?")
        .bind(environment_id)
        .bind(token_hash)
        .bind(host_id)
        .fetch_one(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use crate::StoreError;

    #[tokio::test]
    async fn default_environment_is_created_once() {
        let (store, _dir) = store().await;
        let a = store.ensure_default_environment().await.unwrap();
        let b = store.ensure_default_environment().await.unwrap();
        assert_eq!(a, b);
        assert_eq!(store.environments().await.unwrap().len(), 1);
        let token = store.join_token(a.id).await.unwrap();
        assert_eq!(store.environment_by_join_token(&token).await.unwrap(), Some(a));
        assert_eq!(store.environment_by_join_token("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn only_empty_non_default_environments_are_removed() {
        let (store, _dir) = store().await;
        let default = store.ensure_default_environment().await.unwrap();
        let ops = store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        assert_ne!(store.join_token(ops.id).await.unwrap(), store.join_token(default.id).await.unwrap(), "each environment has its own join token");
        let stack = store.create_stack(ops.id, "S").await.unwrap();
        let err = store.delete_environment("ops").await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("remove them first")), "{err}");
        let err = store.delete_environment("Default").await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("cannot be removed")), "{err}");
        assert!(matches!(store.delete_environment("nope").await, Err(StoreError::NotFound(_))));
        let summaries = store.environment_summaries().await.unwrap();
        assert_eq!(summaries.iter().map(|s| (s.environment.name.as_str(), s.stacks)).collect::<Vec<_>>(), [("Default", 0), ("OPS", 1)]);
        store.delete_stack(stack.id).await.unwrap();
        store.delete_environment("OPS").await.unwrap();
        assert_eq!(store.environments().await.unwrap(), vec![default]);
    }

    #[tokio::test]
    async fn renames_keep_contents_and_label_and_tokens_rotate() {
        let (store, _dir) = store().await;
        store.ensure_default_environment().await.unwrap();
        let dev = store.create_environment("DEV", "10.99.0.0/16").await.unwrap();
        assert_eq!(dev.label, "DEV");
        store.create_stack(dev.id, "S").await.unwrap();
        let renamed = store.rename_environment("dev", "STAGING").await.unwrap();
        assert_eq!((renamed.id, renamed.name.as_str(), renamed.label.as_str()), (dev.id, "STAGING", "DEV"));
        assert_eq!(store.environment_summaries().await.unwrap().iter().find(|s| s.environment.id == dev.id).unwrap().stacks, 1);
        assert!(matches!(store.environment("DEV").await, Err(StoreError::NotFound(_))));
        let err = store.rename_environment("STAGING", "default").await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("already exists")), "{err}");
        assert!(matches!(store.rename_environment("nope", "X").await, Err(StoreError::NotFound(_))));
        let err = store.rename_environment("default", "Main").await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("cannot be renamed")), "{err}");
        // A case-only rename is a rename, not a clash with itself.
        assert_eq!(store.rename_environment("STAGING", "Staging").await.unwrap().name, "Staging");

        store.set_environment_label(dev.id, "OLD").await.unwrap();
        assert_eq!(store.environment("staging").await.unwrap().label, "OLD");

        let before = store.join_token(dev.id).await.unwrap();
        let rotated = store.rotate_join_token(dev.id).await.unwrap();
        assert_ne!(rotated, before);
        assert_eq!(store.join_token(dev.id).await.unwrap(), rotated);
        assert_eq!(store.environment_by_join_token(&before).await.unwrap(), None);
        assert_eq!(store.environment_by_join_token(&rotated).await.unwrap().map(|e| e.id), Some(dev.id));
    }

    /// Join tokens are in the database file only sealed; an older version's plaintext token is
    /// sealed on the next open and keeps working, and no byte of it is left in the file or its
    /// log; a token sealed with another key is replaced; a store without the key makes none.
    #[tokio::test]
    async fn join_tokens_are_sealed_at_rest_and_plaintext_ones_are_sealed_on_open() {
        use crate::{SealingKey, Store};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.db");
        let key = SealingKey::generate();
        let (store, report) = Store::open_sealed(&path, key.clone()).await.unwrap();
        assert_eq!(report, super::SealReport::default());
        let env = store.ensure_default_environment().await.unwrap();
        let ops = store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        let token = store.join_token(env.id).await.unwrap();
        store.close().await;
        // The log before the file: a checkpoint finishing meanwhile moves pages from one to the
        // other in that order, so nothing is missed.
        let file_holds = |needle: &str| {
            ["-wal", ""].iter().any(|suffix| {
                let bytes = std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default();
                bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
        };
        assert!(!file_holds(&token), "a sealed token is not in the file");

        // What an older version left: the token in plaintext, no hash.
        let plain = Store::open(&path).await.unwrap();
        assert!(matches!(plain.join_token(env.id).await, Err(StoreError::NoSealingKey)));
        assert!(matches!(plain.create_environment("DEV", "10.99.0.0/16").await, Err(StoreError::NoSealingKey)));
        sqlx::query("UPDATE environments SET join_token = ?, join_token_hash = NULL WHERE id = ?")
            .bind(&token)
            .bind(env.id)
            .execute(plain.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE environments SET join_token = ? WHERE id = ?")
            .bind(SealingKey::generate().seal(crate::sealing::Domain::JoinToken, "elsewhere"))
            .bind(ops.id)
            .execute(plain.pool())
            .await
            .unwrap();
        plain.close().await;
        assert!(file_holds(&token), "the test really left a plaintext token behind");

        let (store, report) = Store::open_sealed(&path, key.clone()).await.unwrap();
        assert_eq!(report, super::SealReport { sealed: 1, replaced: vec!["OPS".into()] });
        assert_eq!(store.join_token(env.id).await.unwrap(), token, "a sealed plaintext token is the same token");
        assert_eq!(store.environment_by_join_token(&token).await.unwrap().map(|e| e.id), Some(env.id));
        let new_ops = store.join_token(ops.id).await.unwrap();
        assert_eq!(store.environment_by_join_token(&new_ops).await.unwrap().map(|e| e.id), Some(ops.id));
        assert_eq!(store.environment_by_join_token("elsewhere").await.unwrap(), None);
        store.close().await;
        assert!(!file_holds(&token), "no byte of the plaintext token is left in the file or its log");
        let (_, report) = Store::open_sealed(&path, key).await.unwrap();
        assert_eq!(report, super::SealReport::default(), "sealing again changes nothing");
    }

    #[tokio::test]
    async fn duplicate_environment_is_a_conflict() {
        let (store, _dir) = store().await;
        store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        let err = store.create_environment("ops", "10.99.0.0/16").await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
}
