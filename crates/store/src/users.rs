//! Users with argon2id password hashes, groups of users, and login sessions.
//!
//! Passwords and session tokens are never stored: passwords as argon2id PHC strings, session
//! tokens as SHA-256 hashes (they are long random secrets, so a fast hash is enough).

use crate::environments::random_secret;
use crate::tokens::hash_secret;
use crate::{is_unique_violation, now, Result, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sqlx::Row;

/// The user every control plane has; its credential is the admin key in `DATA_DIR/admin-token`.
pub const ADMIN_USER: &str = "admin";

/// Shortest password a user may set.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Admins see and change everything, in every environment.
    pub admin: bool,
    /// Whether the user can log in with a password.
    pub password: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub members: Vec<String>,
    pub created_at: String,
}

/// A login session, found by its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub expires_at: String,
}

fn row_to_user(row: &sqlx::sqlite::SqliteRow) -> User {
    User {
        id: row.get("id"),
        name: row.get("name"),
        admin: row.get::<i64, _>("admin") != 0,
        password: row.get::<Option<String>, _>("password_hash").is_some(),
        created_at: row.get("created_at"),
    }
}

fn user_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("user {name:?} does not exist; `corral user ls` lists the users"))
}

fn group_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("group {name:?} does not exist; `corral group ls` lists the groups"))
}

/// argon2id with the crate's defaults (19 MiB, 2 passes), on a blocking thread: it is meant to be slow.
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Corrupt(format!("salt: {e}")))?;
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| StoreError::Corrupt(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("hashing a password: {e}")))?
}

/// Checks `password` against a PHC string; an unknown user is checked against a dummy hash,
/// so the answer takes as long whether or not the user exists.
async fn verify_password(hash: Option<String>, password: String) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| {
        DUMMY
            .get_or_init(|| {
                let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes encode");
                Argon2::default().hash_password(b"no such user", &salt).expect("hashing works").to_string()
            })
            .clone()
    });
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .unwrap_or(false)
}

/// When a session started at `now` with `ttl` ends, as stored. A TTL beyond what RFC 3339 can
/// write (`--session-ttl` is the operator's to choose) ends at its last second rather than
/// overflowing the clock.
fn session_expiry(now: time::OffsetDateTime, ttl: std::time::Duration) -> String {
    let last = time::Date::from_calendar_date(9999, time::Month::December, 31).and_then(|d| d.with_hms(23, 59, 59)).expect("a valid date").assume_utc();
    let expires = time::Duration::try_from(ttl).ok().and_then(|ttl| now.checked_add(ttl)).map_or(last, |t| t.min(last));
    expires.format(&time::format_description::well_known::Rfc3339).expect("years up to 9999 always format")
}

impl Store {
    /// Creates a user; without a password it can only act through API keys. An admin sees and
    /// manages every environment, users and groups.
    pub async fn create_user(&self, name: &str, password: Option<&str>, admin: bool) -> Result<User> {
        let hash = match password {
            Some(p) => Some(hash_password(p.to_string()).await?),
            None => None,
        };
        let result = sqlx::query("INSERT INTO users (name, password_hash, admin, created_at) VALUES (?, ?, ?, ?) RETURNING *")
            .bind(name)
            .bind(hash)
            .bind(admin)
            .bind(now())
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => Ok(row_to_user(&row)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("user {name:?} already exists"))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_user).collect())
    }

    pub async fn user(&self, name: &str) -> Result<User> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(row_to_user).ok_or_else(|| user_not_found(name))
    }

    pub async fn user_by_id(&self, id: i64) -> Result<User> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(row_to_user).ok_or_else(|| StoreError::NotFound(format!("user #{id} does not exist")))
    }

    /// Sets (or replaces) a user's password; existing sessions end.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let user = self.user(name).await?;
        let hash = hash_password(password.to_string()).await?;
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?").bind(hash).bind(user.id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(user.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user with its sessions, keys and memberships. The built-in admin stays.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let user = self.user(name).await?;
        if user.name.eq_ignore_ascii_case(ADMIN_USER) {
            return Err(StoreError::Conflict(format!("the built-in user {ADMIN_USER:?} cannot be removed")));
        }
        sqlx::query("DELETE FROM users WHERE id = ?").bind(user.id).execute(&self.pool).await?;
        Ok(())
    }

    /// The user whose name and password these are; `None` for a wrong password or unknown user.
    pub async fn check_password(&self, name: &str, password: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        let hash = row.as_ref().and_then(|r| r.get::<Option<String>, _>("password_hash"));
        let ok = verify_password(hash, password.to_string()).await;
        Ok(if ok { row.as_ref().map(row_to_user) } else { None })
    }

    /// The built-in admin user, created if a database somehow lacks it.
    pub async fn admin_user(&self) -> Result<User> {
        sqlx::query("INSERT INTO users (name, password_hash, admin, created_at) VALUES (?, NULL, 1, ?) ON CONFLICT (name) DO NOTHING")
            .bind(ADMIN_USER)
            .bind(now())
            .execute(&self.pool)
            .await?;
        self.user(ADMIN_USER).await
    }

    /// Makes the built-in admin an administrator again, creating it if needed: whoever holds the
    /// admin token must be one, also after a forced restore of a backup where it was not.
    pub async fn ensure_admin_is_admin(&self) -> Result<()> {
        let admin = self.admin_user().await?;
        if !admin.admin {
            sqlx::query("UPDATE users SET admin = 1 WHERE id = ?").bind(admin.id).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub async fn create_group(&self, name: &str) -> Result<Group> {
        let result = sqlx::query("INSERT INTO groups (name, created_at) VALUES (?, ?) RETURNING *").bind(name).bind(now()).fetch_one(&self.pool).await;
        match result {
            Ok(row) => Ok(Group { id: row.get("id"), name: row.get("name"), members: Vec::new(), created_at: row.get("created_at") }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("group {name:?} already exists"))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query("SELECT * FROM groups ORDER BY name").fetch_all(&self.pool).await?;
        let members =
            sqlx::query("SELECT gm.group_id, u.name FROM group_members gm JOIN users u ON u.id = gm.user_id ORDER BY u.name").fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let id: i64 = row.get("id");
                Group {
                    id,
                    name: row.get("name"),
                    members: members.iter().filter(|m| m.get::<i64, _>("group_id") == id).map(|m| m.get("name")).collect(),
                    created_at: row.get("created_at"),
                }
            })
            .collect())
    }

    pub async fn group(&self, name: &str) -> Result<Group> {
        self.groups().await?.into_iter().find(|g| g.name.eq_ignore_ascii_case(name)).ok_or_else(|| group_not_found(name))
    }

    pub async fn delete_group(&self, name: &str) -> Result<()> {
        let group = self.group(name).await?;
        sqlx::query("DELETE FROM groups WHERE id = ?").bind(group.id).execute(&self.pool).await?;
        Ok(())
    }

    /// Adds a user to a group; adding one already in it changes nothing.
    pub async fn add_to_group(&self, group: &str, user: &str) -> Result<Group> {
        let (g, u) = (self.group(group).await?, self.user(user).await?);
        sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING").bind(g.id).bind(u.id).execute(&self.pool).await?;
        self.group(group).await
    }

    pub async fn remove_from_group(&self, group: &str, user: &str) -> Result<Group> {
        let (g, u) = (self.group(group).await?, self.user(user).await?);
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?").bind(g.id).bind(u.id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {:?} is not in group {:?}", u.name, g.name)));
        }
        self.group(group).await
    }

    /// Starts a session for a user; returns its token, which is not stored anywhere.
    pub async fn create_session(&self, user_id: i64, ttl: std::time::Duration) -> Result<(String, String)> {
        let token = format!("corral_s_{}", random_secret(24));
        let expires = session_expiry(time::OffsetDateTime::now_utc(), ttl);
        sqlx::query("INSERT INTO sessions (user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(user_id)
            .bind(hash_secret(&token))
            .bind(now())
            .bind(&expires)
            .execute(&self.pool)
            .await?;
        Ok((token, expires))
    }

    /// The unexpired session a token opens; expired ones are removed when met.
    pub async fn session(&self, token: &str) -> Result<Option<Session>> {
        let row = sqlx::query("SELECT id, user_id, expires_at FROM sessions WHERE token_hash = ?").bind(hash_secret(token)).fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let session = Session { id: row.get("id"), user_id: row.get("user_id"), expires_at: row.get("expires_at") };
        let expired = crate::parse_time(&session.expires_at).is_none_or(|t| t <= time::OffsetDateTime::now_utc());
        if expired {
            sqlx::query("DELETE FROM sessions WHERE id = ?").bind(session.id).execute(&self.pool).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Ends the session of this token (logout); an unknown token is already logged out.
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?").bind(hash_secret(token)).execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use crate::StoreError;
    use std::time::Duration;

    #[tokio::test]
    async fn passwords_are_argon2id_and_checked() {
        let (store, _dir) = store().await;
        let alice = store.create_user("alice", Some("correct horse"), false).await.unwrap();
        assert!(alice.password && !alice.admin);
        let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'alice'").fetch_one(store.pool()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert_eq!(store.check_password("ALICE", "correct horse").await.unwrap().map(|u| u.id), Some(alice.id));
        assert_eq!(store.check_password("alice", "wrong").await.unwrap(), None);
        assert_eq!(store.check_password("bob", "correct horse").await.unwrap(), None);
        assert!(matches!(store.create_user("Alice", None, false).await, Err(StoreError::Conflict(_))));
        // The built-in admin has no password: its credential is the admin key.
        assert_eq!(store.check_password("admin", "").await.unwrap(), None);
        assert!(matches!(store.delete_user("admin").await, Err(StoreError::Conflict(_))));
    }

    #[tokio::test]
    async fn groups_hold_users() {
        let (store, _dir) = store().await;
        store.create_user("alice", None, false).await.unwrap();
        store.create_group("devs").await.unwrap();
        store.add_to_group("devs", "alice").await.unwrap();
        let g = store.add_to_group("DEVS", "alice").await.unwrap();
        assert_eq!(g.members, ["alice"]);
        assert!(matches!(store.add_to_group("devs", "nobody").await, Err(StoreError::NotFound(_))));
        store.delete_user("alice").await.unwrap();
        assert!(store.group("devs").await.unwrap().members.is_empty());
    }

    #[test]
    fn a_session_ttl_beyond_the_calendar_ends_at_its_last_second() {
        let now = crate::parse_time("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(super::session_expiry(now, Duration::from_secs(3600)), "2026-01-02T04:04:05Z");
        for huge in [Duration::from_secs(u64::MAX), Duration::from_secs(400_000 * 365 * 86_400)] {
            assert_eq!(super::session_expiry(now, huge), "9999-12-31T23:59:59Z");
        }
    }

    #[tokio::test]
    async fn sessions_expire() {
        let (store, _dir) = store().await;
        let alice = store.create_user("alice", None, false).await.unwrap();
        let (token, _) = store.create_session(alice.id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(store.session(&token).await.unwrap().map(|s| s.user_id), Some(alice.id));
        store.delete_session(&token).await.unwrap();
        assert_eq!(store.session(&token).await.unwrap(), None);
        let (short, _) = store.create_session(alice.id, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(store.session(&short).await.unwrap(), None, "an expired session opens nothing");
    }
}
