//! Container records: which host each instance of a service is placed on.

use crate::{now, ContainerRecord, Result, Store};
use sqlx::Row;

fn row_to_record(row: sqlx::sqlite::SqliteRow) -> ContainerRecord {
    ContainerRecord {
        id: row.get("id"),
        service_id: row.get("service_id"),
        instance: row.get::<i64, _>("instance") as u32,
        host_id: row.get("host_id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
        draining_since: row.get("draining_since"),
        revision: row.get::<i64, _>("revision") as u32,
        stopped: row.get("stopped"),
        restart_generation: row.get::<i64, _>("restart_generation") as u64,
        incarnation: row.get::<i64, _>("incarnation") as u64,
    }
}

/// A new or moved instance: `(instance, host id, container name)`.
pub type Placement = (u32, String, String);

impl Store {
    /// Container records of one environment, or all, ordered by name.
    pub async fn container_records(&self, environment_id: Option<i64>) -> Result<Vec<ContainerRecord>> {
        let rows = sqlx::query(
            "SELECT c.* FROM containers c JOIN services s ON s.id = c.service_id JOIN stacks st ON st.id = s.stack_id
             WHERE ?1 IS NULL OR st.environment_id = ?1 ORDER BY c.service_id, c.instance",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row_to_record).collect())
    }

    /// The record of the container named `name` in the environment, if there is one.
    pub async fn container_record(&self, environment_id: i64, name: &str) -> Result<Option<ContainerRecord>> {
        Ok(sqlx::query(
            "SELECT c.* FROM containers c JOIN services s ON s.id = c.service_id JOIN stacks st ON st.id = s.stack_id
             WHERE st.environment_id = ? AND c.name = ?",
        )
        .bind(environment_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(row_to_record))
    }

    /// Deletes the record of the container named `name` in the environment and returns it.
    pub async fn delete_container_record(&self, environment_id: i64, name: &str) -> Result<ContainerRecord> {
        sqlx::query(
            "DELETE FROM containers WHERE name = ? AND service_id IN
               (SELECT s.id FROM services s JOIN stacks st ON st.id = s.stack_id WHERE st.environment_id = ?)
             RETURNING *",
        )
        .bind(name)
        .bind(environment_id)
        .fetch_optional(&self.pool)
        .await?
        .map(row_to_record)
        .ok_or_else(|| crate::StoreError::NotFound(format!("container {name:?} does not exist; `corral ps` lists the containers")))
    }

    /// Keeps the container named `name` stopped (`true`), or lets it run again (`false`), and
    /// returns its record.
    pub async fn set_container_stopped(&self, environment_id: i64, name: &str, stopped: bool) -> Result<ContainerRecord> {
        self.update_container(environment_id, name, "stopped = ?3", i64::from(stopped)).await
    }

    /// Asks for a restart of the container named `name`: it runs again (not stopped) and gets a
    /// new restart generation, larger than its last and than `at_least` (a clock reading, so a
    /// container whose record was made anew never reuses a generation its agent already applied).
    pub async fn restart_container(&self, environment_id: i64, name: &str, at_least: u64) -> Result<ContainerRecord> {
        let at_least = i64::try_from(at_least).unwrap_or(i64::MAX);
        self.update_container(environment_id, name, "stopped = 0, restart_generation = MAX(restart_generation + 1, ?3)", at_least).await
    }

    /// `UPDATE containers SET {set}` for one container of the environment, `?3` bound to `value`.
    async fn update_container(&self, environment_id: i64, name: &str, set: &str, value: i64) -> Result<ContainerRecord> {
        let sql = format!(
            "UPDATE containers SET {set} WHERE name = ?1 AND service_id IN
               (SELECT s.id FROM services s JOIN stacks st ON st.id = s.stack_id WHERE st.environment_id = ?2)
             RETURNING *"
        );
        sqlx::query(&sql)
            .bind(name)
            .bind(environment_id)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_record)
            .ok_or_else(|| crate::StoreError::NotFound(format!("container {name:?} does not exist; `corral ps` lists the containers")))
    }

    /// Makes instance `instance` of a service a new container (see [`ContainerRecord::incarnation`]).
    pub async fn set_incarnation(&self, service_id: i64, instance: u32, incarnation: u64) -> Result<()> {
        sqlx::query("UPDATE containers SET incarnation = ? WHERE service_id = ? AND instance = ?")
            .bind(i64::try_from(incarnation).unwrap_or(i64::MAX))
            .bind(service_id)
            .bind(i64::from(instance))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts or stops draining instances of a service; a placed (moved) instance never drains.
    pub async fn set_draining(&self, service_id: i64, instances: &[u32], draining: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let since = draining.then(now);
        for instance in instances {
            sqlx::query("UPDATE containers SET draining_since = ? WHERE service_id = ? AND instance = ?")
                .bind(&since)
                .bind(service_id)
                .bind(*instance as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves one instance to `revision` (its container is recreated from that spec) and ends its draining.
    pub async fn set_revision(&self, service_id: i64, instance: u32, revision: u32) -> Result<()> {
        sqlx::query("UPDATE containers SET revision = ?, draining_since = NULL WHERE service_id = ? AND instance = ?")
            .bind(revision as i64)
            .bind(service_id)
            .bind(instance as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies one service's placement plan atomically: places or moves `place`, deletes `remove`.
    pub async fn apply_placement(&self, service_id: i64, place: &[Placement], remove: &[u32]) -> Result<()> {
        if place.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for instance in remove {
            sqlx::query("DELETE FROM containers WHERE service_id = ? AND instance = ?").bind(service_id).bind(*instance as i64).execute(&mut *tx).await?;
        }
        let t = now();
        for (instance, host_id, name) in place {
            sqlx::query(
                "INSERT INTO containers (service_id, instance, host_id, name, created_at, revision)
                 VALUES (?, ?, ?, ?, ?, (SELECT revision FROM services WHERE id = ?))
                 ON CONFLICT (service_id, instance) DO UPDATE SET host_id = excluded.host_id, created_at = excluded.created_at,
                                                                  draining_since = NULL, revision = excluded.revision",
            )
            .bind(service_id)
            .bind(*instance as i64)
            .bind(host_id)
            .bind(name)
            .bind(&t)
            .bind(service_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use corral_proto::HostFacts;

    #[tokio::test]
    async fn placements_apply_atomically() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        for (id, name) in [("a", "h1"), ("b", "h2")] {
            store.register_host(env.id, id, &HostFacts { name: name.into(), ..Default::default() }).await.unwrap();
        }
        let stack = store.create_stack(env.id, "S").await.unwrap();
        let svc = store.create_service(&stack, "web", &crate::services::tests::spec(), 3).await.unwrap();
        let place: Vec<_> = (1..=3).map(|i| (i, if i % 2 == 0 { "b" } else { "a" }.to_string(), svc.container_name(i))).collect();
        store.apply_placement(svc.id, &place, &[]).await.unwrap();
        let recs = store.container_records(Some(env.id)).await.unwrap();
        assert_eq!(recs.iter().map(|r| (r.instance, r.host_id.as_str())).collect::<Vec<_>>(), [(1, "a"), (2, "b"), (3, "a")]);
        // Move 1 to b and drop 3.
        store.apply_placement(svc.id, &[(1, "b".into(), svc.container_name(1))], &[3]).await.unwrap();
        assert!(store.delete_container_record(env.id, "S-web-9").await.is_err());
        assert_eq!(store.container_record(env.id, "S-web-1").await.unwrap().map(|r| r.host_id), Some("b".to_string()));
        assert_eq!(store.container_record(env.id, "S-web-9").await.unwrap(), None);
        let recs = store.container_records(None).await.unwrap();
        assert_eq!(recs.iter().map(|r| (r.instance, r.host_id.as_str())).collect::<Vec<_>>(), [(1, "b"), (2, "b")]);
        assert_eq!(recs[0].name, "S-web-1");
        let gone = store.delete_container_record(env.id, "S-web-2").await.unwrap();
        assert_eq!((gone.instance, gone.host_id.as_str()), (2, "b"));
        store.apply_placement(svc.id, &[(2, "b".into(), svc.container_name(2))], &[]).await.unwrap();
        // Placements run the service's current revision; an upgrade moves instances one by one.
        assert!(store.container_records(None).await.unwrap().iter().all(|r| r.revision == 1));
        let mut v2 = svc.spec.clone();
        v2.image = "busybox:2".into();
        let upgraded = store.upgrade_service(svc.id, &v2).await.unwrap();
        assert_eq!((upgraded.revision, upgraded.previous_spec.as_ref()), (2, Some(&svc.spec)));
        store.set_revision(svc.id, 2, 2).await.unwrap();
        let revs: Vec<u32> = store.container_records(None).await.unwrap().iter().map(|r| r.revision).collect();
        assert_eq!(revs, [1, 2]);
        store.set_draining(svc.id, &[1], true).await.unwrap();
        assert!(store.container_records(None).await.unwrap()[0].draining_since.is_some());
        store.apply_placement(svc.id, &[(1, "a".into(), svc.container_name(1))], &[]).await.unwrap();
        assert!(store.container_records(None).await.unwrap()[0].draining_since.is_none(), "a placed instance does not drain");
        // Stopping and restarting one container survive its move to another host.
        let stopped = store.set_container_stopped(env.id, "S-web-1", true).await.unwrap();
        assert!(stopped.stopped && stopped.restart_generation == 0);
        store.apply_placement(svc.id, &[(1, "b".into(), svc.container_name(1))], &[]).await.unwrap();
        assert!(store.container_record(env.id, "S-web-1").await.unwrap().unwrap().stopped, "a moved instance stays stopped");
        let restarted = store.restart_container(env.id, "S-web-1", 1_000).await.unwrap();
        assert_eq!((restarted.stopped, restarted.restart_generation), (false, 1_000), "a restart runs it again");
        assert_eq!(store.restart_container(env.id, "S-web-1", 5).await.unwrap().restart_generation, 1_001, "generations only grow");
        assert!(matches!(store.set_container_stopped(env.id, "S-web-9", true).await, Err(crate::StoreError::NotFound(_))));
        store.set_incarnation(svc.id, 1, 42).await.unwrap();
        assert_eq!(store.container_record(env.id, "S-web-1").await.unwrap().unwrap().incarnation, 42);
        store.delete_service(svc.id).await.unwrap();
        assert!(store.container_records(None).await.unwrap().is_empty());
    }
}
