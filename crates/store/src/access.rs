//! Who may do what where: roles of users and groups in environments, and API keys.
//!
//! API keys live in the `api_tokens` table (the admin token of earlier versions is the built-in
//! admin's first account key). A key acts as its user: an account key in all of the user's
//! environments, an environment key in that one environment only.

use crate::environments::random_secret;
use crate::tokens::hash_secret;
use crate::{is_unique_violation, now, Result, Store, StoreError};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

/// A role in an environment, weakest first: a stronger role can do all a weaker one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sees everything and may read logs; changes nothing.
    ReadOnly,
    /// Stacks and services; not hosts or the environment's settings.
    Restricted,
    /// Stacks, services and hosts.
    Member,
    /// Everything in the environment, including who is a member.
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Member, Role::Restricted, Role::ReadOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Restricted => "restricted",
            Role::Member => "member",
            Role::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a membership names a user or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    User,
    Group,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Membership {
    pub environment: String,
    pub kind: MemberKind,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub user: String,
    #[serde(skip)]
    pub user_id: i64,
    /// `account` (all of the user's environments) or `environment` (only `environment`).
    pub kind: &'static str,
    pub environment: Option<String>,
    #[serde(skip)]
    pub environment_id: Option<i64>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

const KEY_SELECT: &str = "SELECT k.id, k.name, k.user_id, u.name AS user_name, k.environment_id, e.name AS env_name, k.created_at, k.revoked_at
     FROM api_tokens k JOIN users u ON u.id = k.user_id LEFT JOIN environments e ON e.id = k.environment_id";

fn row_to_key(row: &sqlx::sqlite::SqliteRow) -> ApiKey {
    let environment_id: Option<i64> = row.get("environment_id");
    ApiKey {
        id: row.get("id"),
        name: row.get("name"),
        user_id: row.get("user_id"),
        user: row.get("user_name"),
        kind: if environment_id.is_some() { "environment" } else { "account" },
        environment: row.get("env_name"),
        environment_id,
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
    }
}

impl Store {
    /// Gives a user or a group a role in an environment, replacing the role it had there.
    pub async fn set_membership(&self, environment_id: i64, kind: MemberKind, member_id: i64, role: Role) -> Result<()> {
        let column = match kind {
            MemberKind::User => "user_id",
            MemberKind::Group => "group_id",
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("DELETE FROM memberships WHERE environment_id = ? AND {column} = ?"))
            .bind(environment_id)
            .bind(member_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("INSERT INTO memberships (environment_id, {column}, role, created_at) VALUES (?, ?, ?, ?)"))
            .bind(environment_id)
            .bind(member_id)
            .bind(role.as_str())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_membership(&self, environment_id: i64, kind: MemberKind, member_id: i64) -> Result<bool> {
        let column = match kind {
            MemberKind::User => "user_id",
            MemberKind::Group => "group_id",
        };
        let done = sqlx::query(&format!("DELETE FROM memberships WHERE environment_id = ? AND {column} = ?"))
            .bind(environment_id)
            .bind(member_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Who has which role in an environment (or in all of them), by environment, kind and name.
    pub async fn memberships(&self, environment_id: Option<i64>) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT e.name AS env, m.role, u.name AS user_name, g.name AS group_name
             FROM memberships m JOIN environments e ON e.id = m.environment_id
             LEFT JOIN users u ON u.id = m.user_id LEFT JOIN groups g ON g.id = m.group_id
             WHERE ?1 IS NULL OR m.environment_id = ?1
             ORDER BY e.name, u.name IS NULL, COALESCE(u.name, g.name)",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.get("role");
                let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?;
                let (kind, name) = match row.get::<Option<String>, _>("user_name") {
                    Some(user) => (MemberKind::User, user),
                    None => (MemberKind::Group, row.get("group_name")),
                };
                Ok(Membership { environment: row.get("env"), kind, name, role })
            })
            .collect()
    }

    /// A user's role in each environment where it has one: the strongest of its own role and
    /// its groups' roles.
    pub async fn roles_of(&self, user_id: i64) -> Result<HashMap<i64, Role>> {
        let rows = sqlx::query(
            "SELECT environment_id, role FROM memberships WHERE user_id = ?1
             UNION ALL
             SELECT m.environment_id, m.role FROM memberships m JOIN group_members gm ON gm.group_id = m.group_id WHERE gm.user_id = ?1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut roles: HashMap<i64, Role> = HashMap::new();
        for row in rows {
            let Some(role) = Role::parse(row.get::<&str, _>("role")) else { continue };
            let entry = roles.entry(row.get("environment_id")).or_insert(role);
            *entry = (*entry).max(role);
        }
        Ok(roles)
    }

    /// Creates an API key for a user (for one environment, or an account key); returns the key
    /// and its secret, which is not stored anywhere.
    pub async fn create_api_key(&self, user_id: i64, environment_id: Option<i64>, name: Option<&str>) -> Result<(ApiKey, String)> {
        let secret = format!("corral_{}", random_secret(24));
        let name = name.map_or_else(|| format!("key-{}", random_secret(4)), str::to_string);
        let result = sqlx::query("INSERT INTO api_tokens (name, secret_hash, created_at, user_id, environment_id) VALUES (?, ?, ?, ?, ?) RETURNING id")
            .bind(&name)
            .bind(hash_secret(&secret))
            .bind(now())
            .bind(user_id)
            .bind(environment_id)
            .fetch_one(&self.pool)
            .await;
        let id: i64 = match result {
            Ok(row) => row.get("id"),
            // Names are unique per user: the message speaks of the caller's keys only.
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("you already have an API key named {name:?} (revoked keys keep their names); pick another --name")))
            }
            Err(e) => return Err(e.into()),
        };
        Ok((self.api_key(id).await?, secret))
    }

    pub async fn api_key(&self, id: i64) -> Result<ApiKey> {
        let row = sqlx::query(&format!("{KEY_SELECT} WHERE k.id = ?")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(row_to_key).ok_or_else(|| StoreError::NotFound(format!("API key #{id} does not exist")))
    }

    /// Keys by name, then user; of one user or every user's, of one environment or all.
    pub async fn api_keys(&self, user_id: Option<i64>, environment_id: Option<i64>) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(&format!("{KEY_SELECT} WHERE (?1 IS NULL OR k.user_id = ?1) AND (?2 IS NULL OR k.environment_id = ?2) ORDER BY k.name, u.name"))
            .bind(user_id)
            .bind(environment_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row_to_key).collect())
    }

    /// A user's key by its name (names are unique per user only).
    pub async fn api_key_of(&self, user_id: i64, name: &str) -> Result<ApiKey> {
        let row = sqlx::query(&format!("{KEY_SELECT} WHERE k.user_id = ? AND k.name = ?")).bind(user_id).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(row_to_key).ok_or_else(|| StoreError::NotFound(format!("API key {name:?} does not exist; `corral apikey ls` lists them")))
    }

    /// Revokes a key: it opens nothing any more, and stays listed with the time it was revoked.
    pub async fn revoke_api_key(&self, id: i64) -> Result<ApiKey> {
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").bind(now()).bind(id).execute(&self.pool).await?;
        self.api_key(id).await
    }

    /// The unrevoked key whose secret this is.
    pub async fn authenticate_api_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let row =
            sqlx::query(&format!("{KEY_SELECT} WHERE k.secret_hash = ? AND k.revoked_at IS NULL")).bind(hash_secret(secret)).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(row_to_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;

    #[tokio::test]
    async fn the_strongest_role_wins_and_groups_count() {
        let (store, _dir) = store().await;
        let ops = store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        let dev = store.create_environment("DEV", "10.99.0.0/16").await.unwrap();
        let alice = store.create_user("alice", None, false).await.unwrap();
        let devs = store.create_group("devs").await.unwrap();
        store.add_to_group("devs", "alice").await.unwrap();
        store.set_membership(ops.id, MemberKind::User, alice.id, Role::ReadOnly).await.unwrap();
        store.set_membership(ops.id, MemberKind::Group, devs.id, Role::Restricted).await.unwrap();
        store.set_membership(dev.id, MemberKind::User, alice.id, Role::Member).await.unwrap();
        store.set_membership(dev.id, MemberKind::User, alice.id, Role::Owner).await.unwrap();
        let roles = store.roles_of(alice.id).await.unwrap();
        assert_eq!((roles[&ops.id], roles[&dev.id]), (Role::Restricted, Role::Owner));
        let members = store.memberships(Some(ops.id)).await.unwrap();
        assert_eq!(
            members.iter().map(|m| (m.kind, m.name.as_str(), m.role)).collect::<Vec<_>>(),
            [(MemberKind::User, "alice", Role::ReadOnly), (MemberKind::Group, "devs", Role::Restricted)]
        );
        assert!(store.remove_membership(ops.id, MemberKind::Group, devs.id).await.unwrap());
        assert_eq!(store.roles_of(alice.id).await.unwrap()[&ops.id], Role::ReadOnly);
        assert!(Role::parse("admin").is_none() && Role::parse("read-only") == Some(Role::ReadOnly));
    }

    #[tokio::test]
    async fn keys_verify_by_hash_and_revoke() {
        let (store, _dir) = store().await;
        let ops = store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        let alice = store.create_user("alice", None, false).await.unwrap();
        let (account, secret) = store.create_api_key(alice.id, None, Some("laptop")).await.unwrap();
        let (env_key, env_secret) = store.create_api_key(alice.id, Some(ops.id), None).await.unwrap();
        assert_eq!((account.kind, env_key.kind, env_key.environment.as_deref()), ("account", "environment", Some("OPS")));
        assert_eq!(store.authenticate_api_key(&secret).await.unwrap().map(|k| k.id), Some(account.id));
        assert_eq!(store.authenticate_api_key(&env_secret).await.unwrap().map(|k| k.environment_id), Some(Some(ops.id)));
        let revoked = store.revoke_api_key(account.id).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(store.authenticate_api_key(&secret).await.unwrap(), None);
        assert!(matches!(store.create_api_key(alice.id, None, Some("laptop")).await, Err(StoreError::Conflict(_))));
    }

    #[tokio::test]
    async fn key_names_are_unique_per_user() {
        let (store, _dir) = store().await;
        let ops = store.create_environment("OPS", "10.99.0.0/16").await.unwrap();
        let alice = store.create_user("alice", None, false).await.unwrap();
        let bob = store.create_user("bob", None, false).await.unwrap();
        let (alices, _) = store.create_api_key(alice.id, None, Some("laptop")).await.unwrap();
        let (bobs, _) = store.create_api_key(bob.id, Some(ops.id), Some("laptop")).await.unwrap();
        match store.create_api_key(bob.id, None, Some("laptop")).await {
            Err(StoreError::Conflict(m)) => assert!(m.starts_with("you already have an API key named \"laptop\"") && !m.contains("alice"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.api_key_of(bob.id, "laptop").await.unwrap().id, bobs.id);
        assert_eq!(store.api_key_of(alice.id, "laptop").await.unwrap().id, alices.id);
        assert!(matches!(store.api_key_of(alice.id, "nope").await, Err(StoreError::NotFound(_))));
        let all: Vec<(String, String)> = store.api_keys(None, None).await.unwrap().into_iter().map(|k| (k.name, k.user)).collect();
        assert_eq!(all, [("laptop".to_string(), "alice".to_string()), ("laptop".into(), "bob".into())]);
        assert_eq!(store.api_keys(Some(bob.id), Some(ops.id)).await.unwrap().len(), 1);
        assert!(store.api_keys(Some(alice.id), Some(ops.id)).await.unwrap().is_empty());
    }

    /// A database made before names were per user keeps every key, as it was, through the upgrade.
    #[tokio::test]
    async fn upgrading_keeps_every_key_and_its_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut before = sqlx::migrate!("./migrations");
        before.migrations = before.migrations.iter().filter(|m| m.version < 12).cloned().collect::<Vec<_>>().into();
        before.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO environments (name, join_token, created_at) VALUES ('OPS', 'tok', 't')").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO users (name, admin, created_at) VALUES ('alice', 0, 't')").execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO api_tokens (id, name, secret_hash, created_at, user_id, environment_id, revoked_at) VALUES
             (7, 'admin', 'h1', 't1', (SELECT id FROM users WHERE name = 'admin'), NULL, NULL),
             (9, 'laptop', 'h2', 't2', (SELECT id FROM users WHERE name = 'alice'), NULL, 'r2'),
             (12, 'ci', 'h3', 't3', (SELECT id FROM users WHERE name = 'alice'), (SELECT id FROM environments WHERE name = 'OPS'), NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let rows = |pool: sqlx::SqlitePool| async move {
            sqlx::query_as::<_, (i64, String, String, String, i64, Option<i64>, Option<String>)>("SELECT * FROM api_tokens ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap()
        };
        let old = rows(pool.clone()).await;
        pool.close().await;

        let store = Store::open(&path).await.unwrap();
        assert_eq!(rows(store.pool().clone()).await, old, "every key, every column, the same");
        assert!(store.api_token_exists("admin").await.unwrap());
        let admin = store.admin_user().await.unwrap();
        store.create_api_key(admin.id, None, Some("laptop")).await.expect("alice's key name is free for the admin now");
        store.delete_environment("OPS").await.unwrap();
        store.delete_user("alice").await.unwrap();
        let left: Vec<String> = store.api_keys(None, None).await.unwrap().into_iter().map(|k| format!("{}/{}", k.user, k.name)).collect();
        assert_eq!(left, ["admin/admin", "admin/laptop"], "the foreign keys still cascade");
    }
}
