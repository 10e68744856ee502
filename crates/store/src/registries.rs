//! Image registries per environment: host, optional login and private CA. Passwords are sealed
//! ([`crate::sealing`], domain [`Domain::RegistryPassword`]) and opened only to be sent to the
//! agents whose pulls need them; listings say only whether one is set.

use crate::sealing::{Domain, SealingKey};
use crate::{now, Result, Store, StoreError};
use corral_proto::registry::{RegistryAuth, RegistryEntry};
use serde::Serialize;
use sqlx::Row;

/// Whether a registry has a password, as listings show it (never the password itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordState {
    /// No login: pulls from it are anonymous.
    None,
    Set,
    /// Sealed with another control plane's key (a backup restored elsewhere, a lost key file):
    /// pulls go without it until it is set again with `corral registry add`.
    MustBeSetAgain,
}

/// A registry as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registry {
    pub id: i64,
    pub environment_id: i64,
    pub host: String,
    pub username: Option<String>,
    pub password: PasswordState,
    /// The private CA the agents install for it, PEM.
    pub ca_pem: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A registry to add, or to replace the one of the same host with.
#[derive(Debug, Clone, Default)]
pub struct NewRegistry<'a> {
    pub host: &'a str,
    /// A login: user name and password, both or neither.
    pub login: Option<(&'a str, &'a str)>,
    pub ca_pem: Option<&'a str>,
}

fn password_state(key: Option<&SealingKey>, sealed: Option<&str>) -> PasswordState {
    match (sealed, key) {
        (None, _) => PasswordState::None,
        (Some(sealed), Some(key)) if key.open(Domain::RegistryPassword, sealed).is_some() => PasswordState::Set,
        (Some(_), _) => PasswordState::MustBeSetAgain,
    }
}

fn not_found(host: &str) -> StoreError {
    StoreError::NotFound(format!("registry {host:?} is not known in this environment; `corral registry ls` lists the registries"))
}

impl Store {
    fn row_to_registry(&self, row: &sqlx::sqlite::SqliteRow) -> Registry {
        let sealed: Option<String> = row.get("password");
        Registry {
            id: row.get("id"),
            environment_id: row.get("environment_id"),
            host: row.get("host"),
            username: row.get("username"),
            password: password_state(self.sealing.as_deref(), sealed.as_deref()),
            ca_pem: row.get("ca_pem"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }

    /// Adds the registry, or replaces the environment's entry for the same host (login and CA
    /// together: a replaced entry keeps nothing of the old one). Returns it, and whether it is new.
    pub async fn put_registry(&self, environment_id: i64, new: &NewRegistry<'_>) -> Result<(Registry, bool)> {
        let sealed = match new.login {
            Some((_, password)) => Some(self.sealing_key_for_registries()?.seal(Domain::RegistryPassword, password)),
            None => None,
        };
        let mut tx = self.write_tx().await?;
        let existed: bool = sqlx::query_scalar("SELECT COUNT(*) > 0 FROM registries WHERE environment_id = ? AND host = ?")
            .bind(environment_id)
            .bind(new.host)
            .fetch_one(&mut *tx)
            .await?;
        let at = now();
        let row = sqlx::query(
            "INSERT INTO registries (environment_id, host, username, password, ca_pem, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (environment_id, host) DO UPDATE SET username = ?3, password = ?4, ca_pem = ?5, updated_at = ?6
             RETURNING *",
        )
        .bind(environment_id)
        .bind(new.host)
        .bind(new.login.map(|(user, _)| user))
        .bind(sealed)
        .bind(new.ca_pem)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((self.row_to_registry(&row), !existed))
    }

    /// The environment's registries by host, or every environment's.
    pub async fn registries(&self, environment_id: Option<i64>) -> Result<Vec<Registry>> {
        let rows = sqlx::query("SELECT * FROM registries WHERE ?1 IS NULL OR environment_id = ?1 ORDER BY environment_id, host")
            .bind(environment_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| self.row_to_registry(row)).collect())
    }

    /// Removes the environment's entry for `host`, returning it.
    pub async fn delete_registry(&self, environment_id: i64, host: &str) -> Result<Registry> {
        let row = sqlx::query("DELETE FROM registries WHERE environment_id = ? AND host = ? RETURNING *")
            .bind(environment_id)
            .bind(host)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(host))?;
        Ok(self.row_to_registry(&row))
    }

    /// Every environment's registries as agents are told about them, by environment id, with
    /// the login opened. A password that cannot be opened (sealed elsewhere) is left out: pulls
    /// then go without it, and listings say it must be set again.
    pub async fn registry_entries(&self) -> Result<Vec<(i64, RegistryEntry)>> {
        let rows =
            sqlx::query("SELECT environment_id, host, username, password, ca_pem FROM registries ORDER BY environment_id, host").fetch_all(&self.pool).await?;
        let key = self.sealing.as_deref();
        Ok(rows
            .into_iter()
            .map(|row| {
                let username: Option<String> = row.get("username");
                let sealed: Option<String> = row.get("password");
                let password = sealed.and_then(|s| key.and_then(|k| k.open(Domain::RegistryPassword, &s)));
                let auth = username.zip(password).map(|(username, password)| RegistryAuth { username, password });
                (row.get("environment_id"), RegistryEntry { host: row.get("host"), ca_pem: row.get("ca_pem"), auth })
            })
            .collect())
    }

    fn sealing_key_for_registries(&self) -> Result<&SealingKey> {
        self.sealing
            .as_deref()
            .ok_or_else(|| StoreError::Conflict("the database was opened without its sealing key, so registry passwords can be neither stored nor read".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;

    #[tokio::test]
    async fn passwords_are_sealed_listed_only_as_set_and_replaced_with_the_entry() {
        let (store, dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let new = NewRegistry { host: "r.example:5000", login: Some(("ci", "pw-in-plain-text")), ca_pem: Some("PEM") };
        let (reg, created) = store.put_registry(env.id, &new).await.unwrap();
        assert!(created);
        assert_eq!((reg.username.as_deref(), reg.password, reg.ca_pem.as_deref()), (Some("ci"), PasswordState::Set, Some("PEM")));
        assert!(!serde_json::to_string(&reg).unwrap().contains("pw-in-plain-text"));
        let entries = store.registry_entries().await.unwrap();
        assert_eq!(entries[0].1.auth.as_ref().map(|a| a.password.as_str()), Some("pw-in-plain-text"));

        let stored: String = sqlx::query_scalar("SELECT password FROM registries").fetch_one(store.pool()).await.unwrap();
        assert!(stored.starts_with(crate::sealing::SEALED_PREFIX) && !stored.contains("pw-in-plain-text"), "{stored}");
        store.close().await;
        let file = std::fs::read(dir.path().join("corral.db")).unwrap();
        assert!(!file.windows(16).any(|w| w == b"pw-in-plain-text"), "the database file holds no plaintext password");

        let (store, _) = Store::open_sealed(&dir.path().join("corral.db"), SealingKey::generate()).await.unwrap();
        let elsewhere = &store.registries(None).await.unwrap()[0];
        assert_eq!(elsewhere.password, PasswordState::MustBeSetAgain, "another key cannot open it");
        assert_eq!(store.registry_entries().await.unwrap()[0].1.auth, None, "and agents are sent no password for it");

        let (again, created) = store.put_registry(env.id, &NewRegistry { host: "r.example:5000", ..Default::default() }).await.unwrap();
        assert!(!created);
        assert_eq!((again.id, again.username, again.password, again.ca_pem), (reg.id, None, PasswordState::None, None));
        assert_eq!(store.delete_registry(env.id, "r.example:5000").await.unwrap().id, reg.id);
        assert!(matches!(store.delete_registry(env.id, "r.example:5000").await, Err(StoreError::NotFound(_))));
    }
}
