//! Failed logins, counted in the database so a restart of the control plane forgets none:
//! per user name (from any address) and per address (for any user name).

use crate::{Result, Store};
use std::time::Duration;

/// How many failures within `window` refuse further logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

/// What [`Store::begin_login`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Go ahead; the attempt is already counted as a failure (see [`Store::login_succeeded`]).
    Allowed { attempt: i64 },
    /// Over a limit: try again after `wait`. `by_user` says which limit (else the address's).
    Refused { wait: Duration, by_user: bool },
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos().div_euclid(1_000_000) as i64
}

impl Store {
    /// Counts a login attempt before its password is checked, so parallel guesses count too,
    /// unless the user name or the address is over its limit. Refused attempts are not counted:
    /// the wait does not grow while someone keeps knocking.
    pub async fn begin_login(&self, user: &str, address: &str, limits: LoginLimits) -> Result<LoginAttempt> {
        let now = now_ms();
        let window = limits.window.as_millis() as i64;
        let cutoff = now - window;
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM login_failures WHERE at_ms <= ?").bind(cutoff).execute(&mut *tx).await?;
        for (by_user, column, key, limit) in [(true, "user_name", user, limits.per_user), (false, "address", address, limits.per_address)] {
            // Once over the limit, logins open again when the oldest failure that keeps it there leaves the window.
            let sql = format!("SELECT at_ms FROM login_failures WHERE {column} = ? ORDER BY at_ms DESC LIMIT 1 OFFSET ?");
            let blocking: Option<i64> = sqlx::query_scalar(&sql).bind(key).bind(i64::from(limit.max(1) - 1)).fetch_optional(&mut *tx).await?;
            if let Some(at) = blocking {
                let wait = Duration::from_millis((at + window - now).max(1000) as u64);
                return Ok(LoginAttempt::Refused { wait, by_user });
            }
        }
        let attempt = sqlx::query_scalar("INSERT INTO login_failures (user_name, address, at_ms) VALUES (?, ?, ?) RETURNING id")
            .bind(user)
            .bind(address)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(LoginAttempt::Allowed { attempt })
    }

    /// The password was right: the attempt was no failure, and the user's earlier failures from
    /// this address (typos) are forgotten. Failures from other addresses still count.
    pub async fn login_succeeded(&self, attempt: i64, user: &str, address: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE id = ? OR (user_name = ? AND address = ?)")
            .bind(attempt)
            .bind(user)
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;

    const LIMITS: LoginLimits = LoginLimits { per_user: 3, per_address: 5, window: Duration::from_secs(600) };

    fn refused(a: LoginAttempt) -> Option<(Duration, bool)> {
        match a {
            LoginAttempt::Refused { wait, by_user } => Some((wait, by_user)),
            LoginAttempt::Allowed { .. } => None,
        }
    }

    #[tokio::test]
    async fn failures_are_limited_per_user_across_addresses_and_per_address() {
        let (store, _dir) = store().await;
        for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            assert!(refused(store.begin_login("alice", address, LIMITS).await.unwrap()).is_none());
        }
        // A fourth address gets no fresh budget for the same user, whatever the case of its name.
        let (wait, by_user) = refused(store.begin_login("ALICE", "10.0.0.4", LIMITS).await.unwrap()).unwrap();
        assert!(by_user);
        assert!(wait > Duration::from_secs(590) && wait <= LIMITS.window, "{wait:?}");
        // One address guessing many users is limited too.
        for user in ["b1", "b2", "b3", "b4", "b5"] {
            assert!(refused(store.begin_login(user, "10.0.0.9", LIMITS).await.unwrap()).is_none());
        }
        let (_, by_user) = refused(store.begin_login("b6", "10.0.0.9", LIMITS).await.unwrap()).unwrap();
        assert!(!by_user);
    }

    #[tokio::test]
    async fn a_success_clears_its_own_failures_and_old_ones_expire() {
        let (store, _dir) = store().await;
        let short = LoginLimits { window: Duration::from_millis(300), ..LIMITS };
        store.begin_login("alice", "a", short).await.unwrap();
        let LoginAttempt::Allowed { attempt } = store.begin_login("alice", "a", short).await.unwrap() else { panic!("allowed") };
        store.login_succeeded(attempt, "alice", "a").await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_failures").fetch_one(store.pool()).await.unwrap();
        assert_eq!(left, 0);
        for _ in 0..3 {
            store.begin_login("alice", "b", short).await.unwrap();
        }
        assert!(refused(store.begin_login("alice", "b", short).await.unwrap()).is_some());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(refused(store.begin_login("alice", "b", short).await.unwrap()).is_none(), "the window passed");
    }
}
