//! The managed network's state: each host's `/24` lease in its environment's network, and the
//! tunnel key and port its agent reported. Which lease a host gets is decided by the caller (a
//! pure function of the leases taken); the store makes taking it atomic.

use crate::{now, Result, Store};
use sqlx::Row;

/// One host's lease and what the control plane knows about its tunnel: the parts of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub host_id: String,
    pub host_name: String,
    pub environment_id: i64,
    pub subnet: String,
    /// The host's own address (where its tunnel is reached).
    pub address: String,
    pub tunnel_key: Option<String>,
    pub tunnel_port: Option<u16>,
}

impl Store {
    /// The host's lease: the one it has, or the one `choose` picks given the subnets already
    /// leased in its environment (`None` when it finds none free). Reading and taking are one
    /// transaction, so two hosts joining at once never get the same subnet.
    pub async fn lease_for_host(&self, host_id: &str, environment_id: i64, choose: impl FnOnce(&[String]) -> Option<String>) -> Result<Option<String>> {
        let mut tx = self.write_tx().await?;
        let held: Option<String> = sqlx::query_scalar("SELECT subnet FROM host_leases WHERE host_id = ?").bind(host_id).fetch_optional(&mut *tx).await?;
        if held.is_some() {
            return Ok(held);
        }
        let taken: Vec<String> = sqlx::query_scalar("SELECT subnet FROM host_leases WHERE environment_id = ?").bind(environment_id).fetch_all(&mut *tx).await?;
        let Some(subnet) = choose(&taken) else { return Ok(None) };
        sqlx::query("INSERT INTO host_leases (host_id, environment_id, subnet, created_at) VALUES (?, ?, ?, ?)")
            .bind(host_id)
            .bind(environment_id)
            .bind(&subnet)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(subnet))
    }

    /// Every lease, with its host's tunnel facts; of one environment, or of all.
    pub async fn leases(&self, environment_id: Option<i64>) -> Result<Vec<Lease>> {
        let rows = sqlx::query(
            "SELECT l.host_id, h.name, l.environment_id, l.subnet, h.address, h.tunnel_key, h.tunnel_port
             FROM host_leases l JOIN hosts h ON h.id = l.host_id
             WHERE ?1 IS NULL OR l.environment_id = ?1 ORDER BY h.name",
        )
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| Lease {
                host_id: row.get(0),
                host_name: row.get(1),
                environment_id: row.get(2),
                subnet: row.get(3),
                address: row.get(4),
                tunnel_key: row.get(5),
                tunnel_port: row.get::<Option<i64>, _>(6).and_then(|p| u16::try_from(p).ok()),
            })
            .collect())
    }

    /// The IPv4 networks each host said it is on, by host name (of every environment: a
    /// managed network must not cover any of them).
    pub async fn host_networks(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, networks FROM hosts ORDER BY name").fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let networks: Vec<String> = crate::hosts::json_field(row.get(1), "host networks")?;
            out.extend(networks.into_iter().map(|n| (name.clone(), n)));
        }
        Ok(out)
    }

    /// Gives environments without a managed network one, chosen by `choose` from the networks
    /// the others have (those the migration could not number). Returns how many it gave.
    pub async fn ensure_environment_subnets(&self, mut choose: impl FnMut(&[String]) -> Option<String>) -> Result<usize> {
        let mut tx = self.write_tx().await?;
        let missing: Vec<i64> = sqlx::query_scalar("SELECT id FROM environments WHERE subnet IS NULL ORDER BY id").fetch_all(&mut *tx).await?;
        let mut given = 0;
        for id in missing {
            let taken: Vec<String> = sqlx::query_scalar("SELECT subnet FROM environments WHERE subnet IS NOT NULL").fetch_all(&mut *tx).await?;
            let Some(subnet) = choose(&taken) else { break };
            sqlx::query("UPDATE environments SET subnet = ? WHERE id = ?").bind(subnet).bind(id).execute(&mut *tx).await?;
            given += 1;
        }
        tx.commit().await?;
        Ok(given)
    }

    /// The managed networks of every environment, for overlap checks.
    pub async fn environment_subnets(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, subnet FROM environments WHERE subnet IS NOT NULL ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
