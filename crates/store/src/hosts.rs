//! Hosts: registered by their agents, one environment each.

use crate::{now, Host, HostState, Result, Store, StoreError};
use corral_proto::HostFacts;
use sqlx::Row;

pub(crate) fn json_field<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store values always serialize")
}

pub(crate) fn row_to_host(row: sqlx::sqlite::SqliteRow) -> Result<Host> {
    Ok(Host {
        id: row.get("id"),
        environment_id: row.get("environment_id"),
        name: row.get("name"),
        address: row.get("address"),
        docker_version: row.get("docker_version"),
        cpus: row.get::<i64, _>("cpus") as u32,
        memory_bytes: row.get::<i64, _>("memory_bytes") as u64,
        os: row.get("os"),
        kernel: row.get("kernel"),
        agent_version: row.get("agent_version"),
        labels: json_field(row.get("labels"), "host labels")?,
        state: HostState::parse(row.get("state")),
        state_since: row.get("state_since"),
        last_seen: row.get("last_seen"),
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
        deactivated: row.get::<Option<String>, _>("deactivated_at").is_some(),
        problem: row.get("problem"),
    })
}

/// A hello with the join token: counted against the hosts that joined with the same token.
#[derive(Debug, Clone, Copy)]
pub struct Joining<'a> {
    /// SHA-256 of the join token the hello carried.
    pub token_hash: &'a str,
    /// The most hosts one token value may bring in; 0 for no limit.
    pub max_hosts: u32,
}

/// What the store knows about a host's own credential.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCredential {
    pub environment_id: i64,
    /// SHA-256 of the secret; `None` for a host that joined before hosts had credentials.
    pub hash: Option<String>,
    pub revoked: bool,
}

impl Store {
    /// Records a host that has just connected with these facts, and marks it active; a new
    /// session starts with no problem recorded.
    ///
    /// A host keeps its environment for life; its name must be unique in the environment.
    /// Also says whether the host is new to this database.
    pub async fn register_host(&self, environment_id: i64, host_id: &str, facts: &HostFacts) -> Result<(Host, bool)> {
        self.register_host_joining(environment_id, host_id, facts, None).await
    }

    /// [`Store::register_host`] for a hello with the join token: refused with a conflict when
    /// `joining.max_hosts` other hosts already joined with that token value. Counting and
    /// registering are one transaction, so hellos at the same moment cannot both slip in.
    pub async fn register_host_joining(&self, environment_id: i64, host_id: &str, facts: &HostFacts, joining: Option<Joining<'_>>) -> Result<(Host, bool)> {
        let mut tx = self.write_tx().await?;
        if let Some(joining) = joining.filter(|j| j.max_hosts > 0) {
            let joined = crate::environments::hosts_joined_with(&mut tx, environment_id, joining.token_hash, host_id).await?;
            if joined >= i64::from(joining.max_hosts) {
                return Err(StoreError::Conflict(format!(
                    "{joined} hosts have already joined this environment with this join token, the most one token may bring in (--max-hosts-per-join-token {}); rotate the join token (`corral host join-command --rotate`) and join with the new one, or start the control plane with a higher limit",
                    joining.max_hosts
                )));
            }
        }
        let existing_env: Option<i64> = sqlx::query_scalar("SELECT environment_id FROM hosts WHERE id = ?").bind(host_id).fetch_optional(&mut *tx).await?;
        if let Some(env) = existing_env {
            if env != environment_id {
                return Err(StoreError::Conflict(format!(
                    "host {host_id} already belongs to another environment; remove it there first or start the agent with a new state dir"
                )));
            }
        }
        let clash: Option<String> = sqlx::query_scalar("SELECT id FROM hosts WHERE environment_id = ? AND name = ? AND id != ?")
            .bind(environment_id)
            .bind(&facts.name)
            .bind(host_id)
            .fetch_optional(&mut *tx)
            .await?;
        if clash.is_some() {
            return Err(StoreError::Conflict(format!(
                "another host named {:?} is already registered in this environment; start this agent with --name to give it a different name",
                facts.name
            )));
        }
        let t = now();
        let row = sqlx::query(
            "INSERT INTO hosts (id, environment_id, name, address, docker_version, cpus, memory_bytes, os, kernel,
                                agent_version, labels, state, state_since, last_seen, created_at, join_token_hash,
                                tunnel_key, tunnel_port, networks)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
                name = excluded.name, address = excluded.address, docker_version = excluded.docker_version,
                cpus = excluded.cpus, memory_bytes = excluded.memory_bytes, os = excluded.os,
                kernel = excluded.kernel, agent_version = excluded.agent_version, labels = excluded.labels,
                state = 'active', state_since = excluded.state_since, last_seen = excluded.last_seen,
                join_token_hash = COALESCE(excluded.join_token_hash, hosts.join_token_hash), problem = NULL,
                tunnel_key = excluded.tunnel_key, tunnel_port = excluded.tunnel_port, networks = excluded.networks
             RETURNING *",
        )
        .bind(host_id)
        .bind(environment_id)
        .bind(&facts.name)
        .bind(&facts.address)
        .bind(&facts.docker_version)
        .bind(facts.cpus as i64)
        .bind(facts.memory_bytes as i64)
        .bind(&facts.os)
        .bind(&facts.kernel)
        .bind(&facts.agent_version)
        .bind(to_json(&facts.labels))
        .bind(&t)
        .bind(&t)
        .bind(&t)
        .bind(joining.map(|j| j.token_hash))
        .bind(&facts.network.public_key)
        .bind(facts.network.tunnel_port.map(i64::from))
        .bind(to_json(&facts.network.host_networks))
        .fetch_one(&mut *tx)
        .await?;
        let host = row_to_host(row)?;
        tx.commit().await?;
        Ok((host, existing_env.is_none()))
    }

    /// The host's credential, if the host is known.
    pub async fn host_credential(&self, host_id: &str) -> Result<Option<HostCredential>> {
        let row = sqlx::query("SELECT environment_id, credential_hash, revoked_at FROM hosts WHERE id = ?").bind(host_id).fetch_optional(&self.pool).await?;
        Ok(row.map(|row| HostCredential {
            environment_id: row.get("environment_id"),
            hash: row.get("credential_hash"),
            revoked: row.get::<Option<String>, _>("revoked_at").is_some(),
        }))
    }

    /// Gives a host a new credential (after a join with the join token), lifting a revocation.
    pub async fn set_host_credential(&self, host_id: &str, credential_hash: &str) -> Result<()> {
        sqlx::query("UPDATE hosts SET credential_hash = ?, revoked_at = NULL WHERE id = ?").bind(credential_hash).bind(host_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Revokes a host's credential: its agent is refused until it joins with the join token again.
    pub async fn revoke_host(&self, environment_id: i64, name: &str) -> Result<Host> {
        let host = self.host(environment_id, name).await?;
        sqlx::query("UPDATE hosts SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?").bind(now()).bind(&host.id).execute(&self.pool).await?;
        self.host(environment_id, name).await
    }

    /// Deactivates (`true`) or activates a host; a no-op when it already is.
    pub async fn set_host_deactivated(&self, environment_id: i64, name: &str, deactivated: bool) -> Result<Host> {
        let host = self.host(environment_id, name).await?;
        sqlx::query("UPDATE hosts SET deactivated_at = CASE WHEN ?1 THEN COALESCE(deactivated_at, ?2) END WHERE id = ?3")
            .bind(deactivated)
            .bind(now())
            .bind(&host.id)
            .execute(&self.pool)
            .await?;
        self.host(environment_id, name).await
    }

    /// Removes a deactivated or disconnected host with its container records and observed
    /// containers, and remembers its credential as removed (see [`Store::removed_host`]). The
    /// check and the removal are one transaction, so a hello cannot come in between.
    pub async fn remove_host(&self, environment_id: i64, name: &str) -> Result<Host> {
        let mut tx = self.write_tx().await?;
        let host = sqlx::query("SELECT * FROM hosts WHERE environment_id = ? AND name = ?")
            .bind(environment_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(row_to_host)
            .transpose()?
            .ok_or_else(|| host_not_found(name))?;
        if host.state == HostState::Active && !host.deactivated {
            return Err(StoreError::HostActive(format!(
                "host {name} is active and connected; deactivate it first (`corral host deactivate {name}`), so nothing new lands on it, then remove it"
            )));
        }
        let hash: Option<String> = sqlx::query_scalar("SELECT credential_hash FROM hosts WHERE id = ?").bind(&host.id).fetch_one(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO removed_hosts (id, environment_id, name, credential_hash, removed_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET environment_id = excluded.environment_id, name = excluded.name,
                credential_hash = excluded.credential_hash, removed_at = excluded.removed_at",
        )
        .bind(&host.id)
        .bind(environment_id)
        .bind(&host.name)
        .bind(&hash)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        // Container records and observed rows go with the host (ON DELETE CASCADE); the control
        // loop places the missing instances elsewhere.
        sqlx::query("DELETE FROM hosts WHERE id = ?").bind(&host.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(host)
    }

    /// The credential hash a removed host had, if `host_id` is a removed host not seen since.
    pub async fn removed_host(&self, host_id: &str) -> Result<Option<Option<String>>> {
        Ok(sqlx::query_scalar("SELECT credential_hash FROM removed_hosts WHERE id = ?").bind(host_id).fetch_optional(&self.pool).await?)
    }

    /// Forgets that a host was removed: it has joined again with the join token.
    pub async fn forget_removed_host(&self, host_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM removed_hosts WHERE id = ?").bind(host_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Records what was refused from the host's agent (`None`: nothing now).
    pub async fn set_host_problem(&self, host_id: &str, problem: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE hosts SET problem = ? WHERE id = ?").bind(problem).bind(host_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Changes a host's state; a no-op when it is already in that state, so `state_since` stays true.
    pub async fn set_host_state(&self, host_id: &str, state: HostState) -> Result<()> {
        let t = now();
        sqlx::query("UPDATE hosts SET state = ?, state_since = ?, last_seen = ? WHERE id = ? AND state != ?")
            .bind(state.as_str())
            .bind(&t)
            .bind(&t)
            .bind(host_id)
            .bind(state.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// At start-up no agent is connected yet: every host is disconnected until its agent says hello.
    pub async fn mark_all_hosts_disconnected(&self) -> Result<()> {
        sqlx::query("UPDATE hosts SET state = 'disconnected', state_since = ? WHERE state != 'disconnected'").bind(now()).execute(&self.pool).await?;
        Ok(())
    }

    /// Hosts of one environment, or of all when `environment_id` is `None`, by name.
    pub async fn hosts(&self, environment_id: Option<i64>) -> Result<Vec<Host>> {
        let rows = sqlx::query("SELECT * FROM hosts WHERE ?1 IS NULL OR environment_id = ?1 ORDER BY name").bind(environment_id).fetch_all(&self.pool).await?;
        rows.into_iter().map(row_to_host).collect()
    }

    /// A host by its agent's id, if it is registered.
    pub async fn host_by_id(&self, host_id: &str) -> Result<Option<Host>> {
        sqlx::query("SELECT * FROM hosts WHERE id = ?").bind(host_id).fetch_optional(&self.pool).await?.map(row_to_host).transpose()
    }

    pub async fn host(&self, environment_id: i64, name: &str) -> Result<Host> {
        sqlx::query("SELECT * FROM hosts WHERE environment_id = ? AND name = ?")
            .bind(environment_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_host)
            .transpose()?
            .ok_or_else(|| host_not_found(name))
    }
}

fn host_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("host {name:?} does not exist; `corral host ls` lists the hosts"))
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use crate::{HostState, StoreError};
    use corral_proto::HostFacts;

    fn facts(name: &str) -> HostFacts {
        HostFacts { name: name.into(), cpus: 4, memory_bytes: 1 << 30, labels: [("zone".into(), "a".into())].into(), ..Default::default() }
    }

    #[tokio::test]
    async fn hosts_register_reconnect_and_keep_unique_names() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let (h, new) = store.register_host(env.id, "id-1", &facts("h1")).await.unwrap();
        assert!(new);
        assert_eq!(h.state, HostState::Active);
        assert_eq!(h.labels["zone"], "a");
        store.set_host_state("id-1", HostState::Disconnected).await.unwrap();
        assert_eq!(store.host(env.id, "h1").await.unwrap().state, HostState::Disconnected);
        // Reconnecting with the same identity updates the record in place.
        let (again, new) = store.register_host(env.id, "id-1", &facts("h1")).await.unwrap();
        assert_eq!(store.host_by_id("id-1").await.unwrap().map(|h| h.name), Some("h1".to_string()));
        assert_eq!(store.host_by_id("id-9").await.unwrap(), None);
        assert!(!new);
        assert_eq!((again.state, again.created_at), (HostState::Active, h.created_at));
        // Another identity may not take the same name.
        let err = store.register_host(env.id, "id-2", &facts("h1")).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("--name")), "{err}");
        // Nor may a host move to another environment.
        let other = store.create_environment("DEV", "10.99.0.0/16").await.unwrap();
        assert!(store.register_host(other.id, "id-1", &facts("h1")).await.is_err());
        assert_eq!(store.hosts(None).await.unwrap().len(), 1);
        store.mark_all_hosts_disconnected().await.unwrap();
        assert_eq!(store.hosts(Some(env.id)).await.unwrap()[0].state, HostState::Disconnected);
    }

    #[tokio::test]
    async fn hosts_deactivate_and_are_removed_with_their_records() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        store.register_host(env.id, "id-1", &facts("h1")).await.unwrap();
        store.set_host_credential("id-1", "hash-1").await.unwrap();
        assert!(!store.host(env.id, "h1").await.unwrap().deactivated);
        let h = store.set_host_deactivated(env.id, "h1", true).await.unwrap();
        assert!(h.deactivated);
        assert!(store.set_host_deactivated(env.id, "h1", true).await.unwrap().deactivated, "idempotent");
        assert!(!store.set_host_deactivated(env.id, "h1", false).await.unwrap().deactivated);
        assert!(matches!(store.set_host_deactivated(env.id, "nope", true).await, Err(StoreError::NotFound(_))));

        let stack = store.create_stack(env.id, "S").await.unwrap();
        let svc = store.create_service(&stack, "web", &crate::services::tests::spec(), 1).await.unwrap();
        store.apply_placement(svc.id, &[(1, "id-1".into(), svc.container_name(1))], &[]).await.unwrap();
        // Active and not deactivated: refused, and nothing changes.
        let err = store.remove_host(env.id, "h1").await.unwrap_err();
        assert!(matches!(&err, StoreError::HostActive(m) if m.contains("corral host deactivate h1")), "{err}");
        assert_eq!(store.container_records(None).await.unwrap().len(), 1);
        assert_eq!(store.removed_host("id-1").await.unwrap(), None);
        assert!(matches!(store.remove_host(env.id, "nope").await, Err(StoreError::NotFound(_))));

        // Disconnected (or deactivated): removed with its records.
        store.set_host_state("id-1", HostState::Disconnected).await.unwrap();
        let removed = store.remove_host(env.id, "h1").await.unwrap();
        assert_eq!(removed.id, "id-1");
        assert!(store.hosts(None).await.unwrap().is_empty());
        assert!(store.container_records(None).await.unwrap().is_empty(), "its records go with it");
        assert_eq!(store.removed_host("id-1").await.unwrap(), Some(Some("hash-1".into())));
        store.forget_removed_host("id-1").await.unwrap();
        assert_eq!(store.removed_host("id-1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn hosts_are_counted_per_join_token_and_a_hello_clears_the_problem() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let joining = |hash| Some(super::Joining { token_hash: hash, max_hosts: 2 });
        store.register_host_joining(env.id, "id-1", &facts("h1"), joining("t1")).await.unwrap();
        store.register_host_joining(env.id, "id-2", &facts("h2"), joining("t1")).await.unwrap();
        let err = store.register_host_joining(env.id, "id-3", &facts("h3"), joining("t1")).await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("2 hosts") && m.contains("--rotate")), "{err}");
        assert!(store.host_by_id("id-3").await.unwrap().is_none(), "a refused hello registers nothing");
        // A host that joined with the token may say hello with it again; a new token counts anew.
        store.register_host_joining(env.id, "id-1", &facts("h1"), joining("t1")).await.unwrap();
        store.register_host_joining(env.id, "id-3", &facts("h3"), joining("t2")).await.unwrap();
        // A hello with the host's credential neither counts nor forgets the token it joined with.
        store.register_host(env.id, "id-3", &facts("h3")).await.unwrap();
        let err = store.register_host_joining(env.id, "id-4", &facts("h4"), Some(super::Joining { token_hash: "t2", max_hosts: 1 })).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        store.register_host_joining(env.id, "id-4", &facts("h4"), Some(super::Joining { token_hash: "t2", max_hosts: 0 })).await.unwrap();

        store.set_host_problem("id-1", Some("refused container \"x\"")).await.unwrap();
        assert_eq!(store.host(env.id, "h1").await.unwrap().problem.as_deref(), Some("refused container \"x\""));
        store.register_host(env.id, "id-1", &facts("h1")).await.unwrap();
        assert_eq!(store.host(env.id, "h1").await.unwrap().problem, None, "a new session starts clean");
    }
}
