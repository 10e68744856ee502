//! The audit log: every change made through the API, who made it, from where, and how it ended.

use crate::{now, Result, Store};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;

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
    /// The route the request matched, as the route table names it
    /// (`/v1/stacks/{stack}/services/{service}/scale`); `None` for entries written before it
    /// was recorded, and for requests that matched no route.
    pub route: Option<String>,
    /// What the request named and asked for, to tell it as an action.
    pub detail: AuditDetail,
}

/// The names in a request's path (by their parameter names in the route) and the few fields of
/// its JSON body that say what it asked for (a scale, an image, a role); never a secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditDetail {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub path: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body: BTreeMap<String, serde_json::Value>,
}

impl AuditDetail {
    pub fn is_empty(&self) -> bool {
        self.path.is_empty() && self.body.is_empty()
    }

    /// A path parameter or, failing that, a body field, as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.path.get(name).cloned().or_else(|| self.body_text(name))
    }

    /// A body field as text (strings as they are, numbers and booleans written out).
    pub fn body_text(&self, name: &str) -> Option<String> {
        match self.body.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
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
    pub route: Option<String>,
    pub detail: AuditDetail,
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
            "INSERT INTO audit_log (at, user_name, key_name, client, remote, method, path, environment, target, status, route, detail)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(&entry.route)
        .bind((!entry.detail.is_empty()).then(|| serde_json::to_string(&entry.detail).expect("details serialize")))
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
                route: row.get("route"),
                // Only this store writes it; a backup's odd value reads as no detail.
                detail: row.get::<Option<String>, _>("detail").and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
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
        assert_eq!((all[0].route.as_deref(), all[0].detail.is_empty()), (None, true));
    }

    #[tokio::test]
    async fn route_and_detail_are_kept() {
        let (store, _dir) = store().await;
        let detail = AuditDetail {
            path: [("stack".to_string(), "WEB".to_string()), ("service".to_string(), "web".to_string())].into(),
            body: [("scale".to_string(), serde_json::json!(4))].into(),
        };
        let entry = NewAuditEntry {
            method: "PUT".into(),
            path: "/v1/stacks/WEB/services/web/scale".into(),
            route: Some("/v1/stacks/{stack}/services/{service}/scale".into()),
            detail: detail.clone(),
            status: 200,
            ..Default::default()
        };
        store.record_audit(&entry).await.unwrap();
        let read = store.audit(&AuditFilter { environments: None, limit: 1 }).await.unwrap().remove(0);
        assert_eq!(read.route, entry.route);
        assert_eq!(read.detail, detail);
        assert_eq!((read.detail.text("stack"), read.detail.body_text("scale")), (Some("WEB".into()), Some("4".into())));
    }
}
