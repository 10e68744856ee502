//! Stacks: named groups of services within an environment.

use crate::{is_unique_violation, now, Result, Stack, Store, StoreError};
use sqlx::Row;

fn row_to_stack(row: sqlx::sqlite::SqliteRow) -> Stack {
    Stack { id: row.get("id"), environment_id: row.get("environment_id"), name: row.get("name"), created_at: row.get("created_at") }
}

impl Store {
    pub async fn create_stack(&self, environment_id: i64, name: &str) -> Result<Stack> {
        let result = sqlx::query("INSERT INTO stacks (environment_id, name, created_at) VALUES (?, ?, ?) RETURNING *")
            .bind(environment_id)
            .bind(name)
            .bind(now())
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => Ok(row_to_stack(row)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("stack {name:?} already exists"))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn stacks(&self, environment_id: i64) -> Result<Vec<Stack>> {
        let rows = sqlx::query("SELECT * FROM stacks WHERE environment_id = ? ORDER BY name").bind(environment_id).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(row_to_stack).collect())
    }

    pub async fn stack(&self, environment_id: i64, name: &str) -> Result<Stack> {
        sqlx::query("SELECT * FROM stacks WHERE environment_id = ? AND name = ?")
            .bind(environment_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(row_to_stack)
            .ok_or_else(|| StoreError::NotFound(format!("stack {name:?} does not exist; `corral stack ls` lists the stacks")))
    }

    /// Deletes the stack with its services and their container records, in one transaction.
    pub async fn delete_stack(&self, stack_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM stacks WHERE id = ?").bind(stack_id).execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;
    use crate::StoreError;

    #[tokio::test]
    async fn stacks_are_unique_per_environment() {
        let (store, _dir) = store().await;
        let default = store.ensure_default_environment().await.unwrap();
        let dev = store.create_environment("DEV", "10.99.0.0/16").await.unwrap();
        let s = store.create_stack(default.id, "WEB-Server").await.unwrap();
        assert!(matches!(store.create_stack(default.id, "WEB-Server").await, Err(StoreError::Conflict(_))));
        store.create_stack(dev.id, "WEB-Server").await.unwrap();
        assert_eq!(store.stack(default.id, "WEB-Server").await.unwrap(), s);
        store.delete_stack(s.id).await.unwrap();
        assert!(matches!(store.stack(default.id, "WEB-Server").await, Err(StoreError::NotFound(_))));
        assert_eq!(store.stacks(dev.id).await.unwrap().len(), 1);
    }
}
