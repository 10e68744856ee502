//! What each agent last reported about its engine.

use crate::hosts::{json_field, to_json};
use crate::{now, ObservedRecord, Result, Store};
use corral_proto::{ContainerState, ObservedContainer};
use sqlx::Row;

pub(crate) fn row_to_observed(row: sqlx::sqlite::SqliteRow) -> Result<ObservedRecord> {
    Ok(ObservedRecord {
        host_id: row.get("host_id"),
        name: row.get("name"),
        docker_id: row.get("docker_id"),
        image: row.get("image"),
        state: ContainerState::from_engine(row.get("state")),
        status: row.get("status"),
        ip: row.get("ip"),
        ports: json_field(row.get("ports"), "observed ports")?,
        labels: json_field(row.get("labels"), "observed labels")?,
        updated_at: row.get("updated_at"),
    })
}

impl Store {
    /// Replaces everything recorded for the host with its latest report, atomically.
    pub async fn replace_observed(&self, host_id: &str, containers: &[ObservedContainer]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM observed WHERE host_id = ?").bind(host_id).execute(&mut *tx).await?;
        let t = now();
        for c in containers {
            sqlx::query(
                "INSERT OR REPLACE INTO observed (host_id, name, docker_id, image, state, status, ip, ports, labels, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(host_id)
            .bind(&c.name)
            .bind(&c.docker_id)
            .bind(&c.image)
            .bind(c.state.as_str())
            .bind(&c.status)
            .bind(&c.ip)
            .bind(to_json(&c.ports))
            .bind(to_json(&c.labels))
            .bind(&t)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the host last reported about the container `name`, if anything.
    pub async fn observed_one(&self, host_id: &str, name: &str) -> Result<Option<ObservedRecord>> {
        sqlx::query("SELECT * FROM observed WHERE host_id = ? AND name = ?")
            .bind(host_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_observed)
            .transpose()
    }

    /// Observed containers on the hosts of one environment, or of all.
    pub async fn observed(&self, environment_id: Option<i64>) -> Result<Vec<ObservedRecord>> {
        let rows = sqlx::query(
            "SELECT o.* FROM observed o JOIN hosts h ON h.id = o.host_id
             WHERE ?1 IS NULL OR h.environment_id = ?1 ORDER BY o.name",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row_to_observed).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use corral_proto::{ContainerState, HostFacts, ObservedContainer};

    #[tokio::test]
    async fn observed_sets_replace_whole() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        store.register_host(env.id, "a", &HostFacts { name: "h1".into(), ..Default::default() }).await.unwrap();
        let c = |name: &str| ObservedContainer {
            name: name.into(),
            docker_id: format!("id-{name}"),
            image: "busybox".into(),
            state: ContainerState::Running,
            status: "Up 1 second".into(),
            ip: Some("172.17.0.2".into()),
            ports: vec!["80".parse().unwrap()],
            labels: Default::default(),
        };
        store.replace_observed("a", &[c("x"), c("y")]).await.unwrap();
        store.replace_observed("a", &[c("y")]).await.unwrap();
        let seen = store.observed(Some(env.id)).await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].name.as_str(), seen[0].state, seen[0].ip.as_deref()), ("y", ContainerState::Running, Some("172.17.0.2")));
        assert_eq!(store.observed_one("a", "y").await.unwrap().as_ref(), Some(&seen[0]));
        assert_eq!(store.observed_one("a", "x").await.unwrap(), None);
    }
}
