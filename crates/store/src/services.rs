//! Services: the desired state of a set of identical containers.

use crate::hosts::{json_field, to_json};
use crate::{is_unique_violation, now, Result, Service, ServiceKind, ServiceSpec, ServiceState, Stack, Store, StoreError};
use sqlx::Row;

pub(crate) const SELECT: &str = "SELECT s.*, st.name AS stack_name, st.environment_id AS environment_id
                      FROM services s JOIN stacks st ON st.id = s.stack_id";

pub(crate) fn row_to_service(row: sqlx::sqlite::SqliteRow) -> Result<Service> {
    Ok(Service {
        id: row.get("id"),
        stack_id: row.get("stack_id"),
        stack: row.get("stack_name"),
        environment_id: row.get("environment_id"),
        name: row.get("name"),
        spec: ServiceSpec {
            kind: ServiceKind::parse(row.get("kind")),
            image: row.get("image"),
            command: json_field(row.get("command"), "service command")?,
            env: json_field(row.get("env"), "service env")?,
            ports: json_field(row.get("ports"), "service ports")?,
            labels: json_field(row.get("labels"), "service labels")?,
            constraints: json_field(row.get("constraints"), "service constraints")?,
            reschedule_after_secs: row.get::<i64, _>("reschedule_after_secs") as u32,
            lb: row.get::<Option<String>, _>("lb").map(|j| json_field(&j, "service lb")).transpose()?,
            hot_spare: row.get::<i64, _>("hot_spare") != 0,
            pull: pull_policy(row.get("pull_policy"))?,
            network: network_mode(row.get("network"))?,
        },
        scale: row.get::<i64, _>("scale") as u32,
        revision: row.get::<i64, _>("revision") as u32,
        state: if row.get::<i64, _>("stopped") != 0 { ServiceState::Stopped } else { ServiceState::Active },
        adopting_until: row.get("adopting_until"),
        previous_spec: row.get::<Option<String>, _>("previous_spec").map(|j| json_field(&j, "previous spec")).transpose()?,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the spec's columns in their table order: kind, image, command, env, ports, labels,
/// constraints, hot_spare, pull_policy, network.
fn bind_spec<'q>(query: SqliteQuery<'q>, spec: &'q ServiceSpec) -> SqliteQuery<'q> {
    query
        .bind(spec.kind.as_str())
        .bind(&spec.image)
        .bind(to_json(&spec.command))
        .bind(to_json(&spec.env))
        .bind(to_json(&spec.ports))
        .bind(to_json(&spec.labels))
        .bind(to_json(&spec.constraints))
        .bind(spec.hot_spare)
        .bind(spec.pull.as_str())
        .bind(spec.network.as_str())
}

fn pull_policy(text: &str) -> Result<corral_proto::PullPolicy> {
    text.parse().map_err(|e: String| StoreError::Corrupt(format!("service pull policy: {e}")))
}

fn network_mode(text: &str) -> Result<corral_proto::network::NetworkMode> {
    corral_proto::network::NetworkMode::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("service network {text:?} is none of managed, bridge, host, none")))
}

impl Store {
    /// Creates a service in `stack`. Container names (`STACK-SERVICE-N`) must stay unique in the
    /// environment, so a service whose name prefix equals another's is refused too.
    pub async fn create_service(&self, stack: &Stack, name: &str, spec: &ServiceSpec, scale: u32) -> Result<Service> {
        self.insert_service(stack, name, spec, scale, 1, None).await
    }

    /// Recreates a service found in container labels (the database that knew it was lost),
    /// at the revision the containers carry. Until `adopting_until` the control plane only
    /// collects instances from re-joining hosts.
    pub async fn adopt_service(&self, stack: &Stack, name: &str, spec: &ServiceSpec, scale: u32, revision: u32, adopting_until: &str) -> Result<Service> {
        self.insert_service(stack, name, spec, scale, revision, Some(adopting_until)).await
    }

    async fn insert_service(&self, stack: &Stack, name: &str, spec: &ServiceSpec, scale: u32, revision: u32, adopting_until: Option<&str>) -> Result<Service> {
        let mut tx = self.write_tx().await?;
        let prefix = format!("{}-{}", stack.name, name);
        let clash: Option<(String, String)> = sqlx::query_as(
            "SELECT st.name, s.name FROM services s JOIN stacks st ON st.id = s.stack_id
             WHERE st.environment_id = ? AND st.name || '-' || s.name = ? COLLATE NOCASE AND s.stack_id != ?",
        )
        .bind(stack.environment_id)
        .bind(&prefix)
        .bind(stack.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((other_stack, other_service)) = clash {
            return Err(StoreError::Conflict(format!(
                "service {other_stack}/{other_service} already names its containers {prefix}-N; choose another service name"
            )));
        }
        let t = now();
        let query = sqlx::query(
            "INSERT INTO services (stack_id, name, kind, image, command, env, ports, labels, constraints, hot_spare, pull_policy, network, scale,
                                   revision, reschedule_after_secs, adopting_until, lb, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(stack.id)
        .bind(name);
        let result = bind_spec(query, spec)
            .bind(scale as i64)
            .bind(revision as i64)
            .bind(spec.reschedule_after_secs as i64)
            .bind(adopting_until)
            .bind(spec.lb.as_ref().map(to_json))
            .bind(&t)
            .bind(&t)
            .fetch_one(&mut *tx)
            .await;
        let id: i64 = match result {
            Ok(row) => row.get("id"),
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict(format!("service {}/{name} already exists", stack.name))),
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        self.service_by_id(id).await
    }

    pub async fn service_by_id(&self, id: i64) -> Result<Service> {
        sqlx::query(&format!("{SELECT} WHERE s.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_service)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("service #{id} does not exist")))
    }

    /// Services of one environment (optionally one stack), or of all environments.
    pub async fn services(&self, environment_id: Option<i64>, stack_id: Option<i64>) -> Result<Vec<Service>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE (?1 IS NULL OR st.environment_id = ?1) AND (?2 IS NULL OR s.stack_id = ?2)
             ORDER BY st.name, s.name"
        ))
        .bind(environment_id)
        .bind(stack_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row_to_service).collect()
    }

    pub async fn service(&self, stack: &Stack, name: &str) -> Result<Service> {
        sqlx::query(&format!("{SELECT} WHERE s.stack_id = ? AND s.name = ?"))
            .bind(stack.id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_service)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("service {}/{name} does not exist; `corral service ls {}` lists its services", stack.name, stack.name)))
    }

    pub async fn set_scale(&self, service_id: i64, scale: u32) -> Result<Service> {
        sqlx::query("UPDATE services SET scale = ?, updated_at = ? WHERE id = ?").bind(scale as i64).bind(now()).bind(service_id).execute(&self.pool).await?;
        self.service_by_id(service_id).await
    }

    /// Stops or starts a service; its containers are kept either way.
    pub async fn set_service_state(&self, service_id: i64, state: ServiceState) -> Result<Service> {
        sqlx::query("UPDATE services SET stopped = ?, updated_at = ? WHERE id = ?")
            .bind(state == ServiceState::Stopped)
            .bind(now())
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        self.service_by_id(service_id).await
    }

    /// Replaces the spec and bumps the revision, keeping the old spec for the rolling upgrade.
    pub async fn upgrade_service(&self, service_id: i64, spec: &ServiceSpec) -> Result<Service> {
        let current = self.service_by_id(service_id).await?;
        let query = sqlx::query(
            "UPDATE services SET kind = ?, image = ?, command = ?, env = ?, ports = ?, labels = ?, constraints = ?, hot_spare = ?, pull_policy = ?,
                                 network = ?, reschedule_after_secs = ?, lb = ?, previous_spec = ?, revision = revision + 1, updated_at = ?
             WHERE id = ? AND revision = ?",
        );
        bind_spec(query, spec)
            .bind(spec.reschedule_after_secs as i64)
            .bind(spec.lb.as_ref().map(to_json))
            .bind(to_json(&current.spec))
            .bind(now())
            .bind(service_id)
            .bind(current.revision as i64)
            .execute(&self.pool)
            .await?;
        self.service_by_id(service_id).await
    }

    /// Raises the scale to at least `at_least`, atomically: hosts adopting instances of one
    /// service at the same time must never lower what another just raised.
    pub async fn raise_scale(&self, service_id: i64, at_least: u32) -> Result<()> {
        sqlx::query("UPDATE services SET scale = MAX(scale, ?), updated_at = ? WHERE id = ?")
            .bind(at_least as i64)
            .bind(now())
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the service and its container records.
    pub async fn delete_service(&self, service_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM services WHERE id = ?").bind(service_id).execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::test_support::store;
    use crate::{ServiceKind, ServiceSpec, StoreError};

    pub(crate) fn spec() -> ServiceSpec {
        ServiceSpec {
            kind: ServiceKind::Container,
            image: "busybox".into(),
            command: vec!["httpd".into(), "-f".into()],
            env: vec!["A=1".into()],
            ports: vec!["80".parse().unwrap()],
            labels: Default::default(),
            constraints: vec!["host.zone=a".into()],
            reschedule_after_secs: 60,
            lb: None,
            hot_spare: false,
            pull: corral_proto::PullPolicy::Always,
            network: corral_proto::network::NetworkMode::Bridge,
        }
    }

    #[tokio::test]
    async fn services_round_trip_and_names_never_collide() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let web = store.create_stack(env.id, "WEB").await.unwrap();
        let svc = store.create_service(&web, "Nginx-cluster", &spec(), 10).await.unwrap();
        assert_eq!((svc.stack.as_str(), svc.scale, svc.revision), ("WEB", 10, 1));
        assert_eq!(svc.spec, spec());
        assert_eq!(svc.container_name(3), "WEB-Nginx-cluster-3");
        assert!(matches!(store.create_service(&web, "Nginx-cluster", &spec(), 1).await, Err(StoreError::Conflict(_))));
        // WEB-Nginx / cluster would also produce WEB-Nginx-cluster-N.
        let web_nginx = store.create_stack(env.id, "WEB-Nginx").await.unwrap();
        let err = store.create_service(&web_nginx, "cluster", &spec(), 1).await.unwrap_err();
        assert!(err.to_string().contains("WEB/Nginx-cluster"), "{err}");
        assert_eq!(store.set_scale(svc.id, 4).await.unwrap().scale, 4);
        store.raise_scale(svc.id, 3).await.unwrap();
        assert_eq!(store.service_by_id(svc.id).await.unwrap().scale, 4, "raising never lowers");
        store.raise_scale(svc.id, 6).await.unwrap();
        assert_eq!(store.set_scale(svc.id, 4).await.unwrap().scale, 4);
        let adopted = store.adopt_service(&web, "from-labels", &spec(), 3, 7, "2030-01-01T00:00:00Z").await.unwrap();
        assert_eq!((adopted.revision, adopted.adopting_until.as_deref()), (7, Some("2030-01-01T00:00:00Z")));
        store.delete_service(adopted.id).await.unwrap();
        assert_eq!(store.services(Some(env.id), Some(web.id)).await.unwrap().len(), 1);
        store.delete_stack(web.id).await.unwrap();
        assert!(store.services(None, None).await.unwrap().is_empty(), "services go with their stack");
    }
}
