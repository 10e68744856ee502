//! The audit log: every change made through the API, who made it, from where, and how it ended.

use crate::{now, Result, Store};
use serde::Serialize;
use sqlx::Row;

/// One entry, as it is written and as `GET /v1/audit` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// The user, or `None` when the request carried no valid credential.
    pub user: Option<String>,
    /// The API key used, when the request came with one rather than a session.
    pub key: Option<String>,
    /// `ui`, `cli` or `api`.
    pub client: String,
    pub remote: Option<String>,
    pub method: String,
    pub path: String,
    pub environment: Option<String>,
    /// What the request named: e.g. `WEB/nginx`, a user, a key.
    pub target: Option<String>,
    /// The HTTP status of the answer: 2xx done, 4xx refused, 5xx failed.
    pub status: u16,
}

/// What to write; the id and time are the store's.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub user: Option<String>,
    pub key: Option<String>,
    pub client: String,
    pub remote: Option<String>,
    pub method: String,
    pub path: String,
    pub environment: Option<String>,
    pub target: Option<String>,
    pub status: u16,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries of these environments; `None` for all (admins).
    pub environments: Option<Vec<String>>,
    pub limit: u32,
}

impl Store {
    pub async fn record_audit(&self, entry: &NewAuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, user_name, key_name, client, remote, method, path, environment, target, status)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now())
        .bind(&entry.user)
        .bind(&entry.key)
        .bind(&entry.client)
        .bind(&entry.remote)
        .bind(&entry.method)
        .bind(&entry.path)
        .bind(&entry.environment)
        .bind(&entry.target)
        .bind(entry.status as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let envs = filter.environments.as_ref().map(|e| serde_json::to_string(e).expect("names serialize"));
        let rows = sqlx::query(
            "SELECT * FROM audit_log
             WHERE ?1 IS NULL OR environment COLLATE NOCASE IN (SELECT value FROM json_each(?1))
             ORDER BY id DESC LIMIT ?2",
        )
        .bind(envs)
        .bind(filter.limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| AuditEntry {
                id: row.get("id"),
                at: row.get("at"),
                user: row.get("user_name"),
                key: row.get("key_name"),
                client: row.get("client"),
                remote: row.get("remote"),
                method: row.get("method"),
                path: row.get("path"),
                environment: row.get("environment"),
                target: row.get("target"),
                status: row.get::<i64, _>("status") as u16,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;

    #[tokio::test]
    async fn entries_are_read_newest_first_per_environment() {
        let (store, _dir) = store().await;
        for (env, status) in [("OPS", 201), ("DEV", 403), ("OPS", 204)] {
            let entry = NewAuditEntry {
                user: Some("alice".into()),
                client: "cli".into(),
                method: "POST".into(),
                path: "/v1/stacks".into(),
                environment: Some(env.into()),
                status,
                ..Default::default()
            };
            store.record_audit(&entry).await.unwrap();
        }
        let ops = store.audit(&AuditFilter { environments: Some(vec!["ops".into()]), limit: 10 }).await.unwrap();
        assert_eq!(ops.iter().map(|e| e.status).collect::<Vec<_>>(), [204, 201]);
        let all = store.audit(&AuditFilter { environments: None, limit: 2 }).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].user.as_deref(), Some("alice"));
    }
}
