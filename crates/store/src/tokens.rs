//! The admin token: the built-in admin's account key, by name. Only SHA-256 hashes are stored;
//! the secret is shown once when created. Other API keys are in [`crate::access`].

use crate::environments::random_secret;
use crate::{is_unique_violation, now, Result, Store, StoreError};
use sha2::{Digest, Sha256};

/// The built-in admin's id, in SQL: the admin token is the key of that name *of that user*.
const ADMIN_ID: &str = "SELECT id FROM users WHERE name = 'admin'";

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Creates an account key of the built-in admin and returns its secret, which is not
    /// stored anywhere.
    pub async fn create_api_token(&self, name: &str) -> Result<String> {
        let secret = format!("corral_{}", random_secret(24));
        let admin = self.admin_user().await?;
        let result = sqlx::query("INSERT INTO api_tokens (name, secret_hash, created_at, user_id) VALUES (?, ?, ?, ?)")
            .bind(name)
            .bind(hash_secret(&secret))
            .bind(now())
            .bind(admin.id)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(secret),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("token {name:?} already exists"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the built-in admin has an unrevoked key named `name` (others' keys may have any name).
    pub async fn api_token_exists(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query(&format!("SELECT 1 FROM api_tokens WHERE name = ? AND user_id = ({ADMIN_ID}) AND revoked_at IS NULL"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Makes `secret` the secret of the admin's account key `name`, creating or un-revoking it
    /// if needed.
    pub async fn set_api_token_secret(&self, name: &str, secret: &str) -> Result<()> {
        self.set_api_token_hash(name, &hash_secret(secret)).await
    }

    /// [`set_api_token_secret`](Store::set_api_token_secret) by the secret's hash: keeps the
    /// admin token working when a restored database brings other tokens, without knowing it.
    pub async fn set_api_token_hash(&self, name: &str, secret_hash: &str) -> Result<()> {
        let admin = self.admin_user().await?;
        let mut tx = self.write_tx().await?;
        // A secret is unique; another token holding it would be the same credential twice.
        sqlx::query("DELETE FROM api_tokens WHERE secret_hash = ? AND NOT (name = ? AND user_id = ?)")
            .bind(secret_hash)
            .bind(name)
            .bind(admin.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_tokens (name, secret_hash, created_at, user_id) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id, name) DO UPDATE SET secret_hash = excluded.secret_hash, environment_id = NULL, revoked_at = NULL",
        )
        .bind(name)
        .bind(secret_hash)
        .bind(now())
        .bind(admin.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The secret's hash of `name` when it is what the admin token must be: an unrevoked
    /// account key of the built-in admin.
    pub async fn admin_token_hash(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT k.secret_hash FROM api_tokens k JOIN users u ON u.id = k.user_id
             WHERE k.name = ? AND k.revoked_at IS NULL AND k.environment_id IS NULL AND u.name = ?",
        )
        .bind(name)
        .bind(crate::users::ADMIN_USER)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The name of the unrevoked key whose secret this is, if any.
    pub async fn verify_api_token(&self, secret: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM api_tokens WHERE secret_hash = ? AND revoked_at IS NULL")
            .bind(hash_secret(secret))
            .fetch_optional(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    #[tokio::test]
    async fn tokens_verify_by_hash_only() {
        let (store, _dir) = store().await;
        let secret = store.create_api_token("admin").await.unwrap();
        assert!(store.api_token_exists("admin").await.unwrap());
        assert_eq!(store.verify_api_token(&secret).await.unwrap().as_deref(), Some("admin"));
        assert_eq!(store.verify_api_token("corral_wrong").await.unwrap(), None);
        let stored: String = sqlx::query_scalar("SELECT secret_hash FROM api_tokens").fetch_one(store.pool()).await.unwrap();
        assert!(!stored.contains(&secret), "the secret itself is never stored");
        assert!(store.create_api_token("admin").await.is_err());
        store.set_api_token_secret("admin", "corral_other").await.unwrap();
        assert_eq!(store.verify_api_token("corral_other").await.unwrap().as_deref(), Some("admin"));
        assert_eq!(store.verify_api_token(&secret).await.unwrap(), None);
        assert_eq!(store.admin_token_hash("admin").await.unwrap(), Some(super::hash_secret("corral_other")));
        let ann = store.create_user("ann", None, false).await.unwrap();
        store.create_api_key(ann.id, None, Some("ann-key")).await.unwrap();
        assert_eq!(store.admin_token_hash("ann-key").await.unwrap(), None, "only the built-in admin's key is an admin token");
    }

    #[tokio::test]
    async fn the_admin_token_is_the_admins_key_whatever_others_call_theirs() {
        let (store, _dir) = store().await;
        let bob = store.create_user("bob", None, false).await.unwrap();
        let (bobs, bob_secret) = store.create_api_key(bob.id, None, Some("admin")).await.unwrap();
        assert!(!store.api_token_exists("admin").await.unwrap(), "bob's key named admin is not the admin token");
        store.set_api_token_secret("admin", "corral_first").await.unwrap();
        assert!(store.api_token_exists("admin").await.unwrap());
        let revoked = store.api_keys(None, None).await.unwrap().into_iter().find(|k| k.user == "admin").unwrap();
        store.revoke_api_key(revoked.id).await.unwrap();
        assert!(!store.api_token_exists("admin").await.unwrap(), "a revoked admin token is made again at the next start");
        store.set_api_token_secret("admin", "corral_second").await.unwrap();
        let admin = store.admin_user().await.unwrap();
        assert_eq!(store.api_key_of(admin.id, "admin").await.unwrap().revoked_at, None);
        assert_eq!(store.api_key_of(bob.id, "admin").await.unwrap().id, bobs.id, "bob's key is untouched");
        assert_eq!(store.authenticate_api_key(&bob_secret).await.unwrap().map(|k| k.user), Some("bob".into()));
    }
}
