//! Control-plane settings an administrator changes at run time (one row).

use crate::{now, Result, Store};

/// What the settings row holds; absent values mean "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// The URL hosts reach this control plane at, for join commands.
    pub advertise_url: Option<String>,
    /// When an administrator last changed them; `None` when never.
    pub updated_at: Option<String>,
}

impl Store {
    pub async fn settings(&self) -> Result<Settings> {
        let row: Option<(Option<String>, String)> =
            sqlx::query_as("SELECT advertise_url, updated_at FROM settings WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(row.map_or_else(Settings::default, |(advertise_url, updated_at)| Settings { advertise_url, updated_at: Some(updated_at) }))
    }

    /// Stores the advertised URL (`None` forgets it) and returns the settings as they are now.
    pub async fn set_advertise_url(&self, url: Option<&str>) -> Result<Settings> {
        sqlx::query(
            "INSERT INTO settings (id, advertise_url, updated_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET advertise_url = excluded.advertise_url, updated_at = excluded.updated_at",
        )
        .bind(url)
        .bind(now())
        .execute(&self.pool)
        .await?;
        self.settings().await
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    #[tokio::test]
    async fn the_advertised_url_is_kept_and_forgotten() {
        let (store, _dir) = store().await;
        assert_eq!(store.settings().await.unwrap().advertise_url, None);
        let set = store.set_advertise_url(Some("https://cp.lan:7070")).await.unwrap();
        assert_eq!(set.advertise_url.as_deref(), Some("https://cp.lan:7070"));
        assert!(set.updated_at.is_some());
        assert_eq!(store.settings().await.unwrap(), set);
        assert_eq!(store.set_advertise_url(None).await.unwrap().advertise_url, None);
    }
}
