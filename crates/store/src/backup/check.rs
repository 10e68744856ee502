//! What keeps a backup from replacing the live contents, found before anything is replaced: a
//! schema other than this build's, references to rows that are not there, values of another type
//! than their column's or outside what the store reads them into, and rows that do not parse.
//! Whether the values are within the API's own limits is for the control plane to say: it reads
//! the copy through the store's typed readers once these checks found nothing.

use super::quote;
use crate::access::Role;
use crate::{parse_time, HostState, Result, ServiceKind, Store, StoreError};
use sqlx::Row;
use std::collections::BTreeMap;

/// Problems collected per check at most: enough to say what is wrong, and bounded work.
const ENOUGH: usize = 20;

/// One thing wrong in a backup, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub table: String,
    /// The row by its key (`id 3`), when the problem is in one row.
    pub row: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(table: &str, row: Option<String>, message: impl Into<String>) -> Problem {
        Problem { table: table.to_string(), row, message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.row {
            Some(row) => write!(f, "table {}, row {row}: {}", self.table, self.message),
            None => write!(f, "table {}: {}", self.table, self.message),
        }
    }
}

/// Integer columns the store reads into narrower types, with the largest value each may hold.
const NARROWED: [(&str, &str, i64); 9] = [
    ("services", "scale", u32::MAX as i64),
    ("services", "revision", u32::MAX as i64),
    ("services", "reschedule_after_secs", u32::MAX as i64),
    ("containers", "instance", u32::MAX as i64),
    ("containers", "revision", u32::MAX as i64),
    ("containers", "restart_generation", i64::MAX),
    ("containers", "incarnation", i64::MAX),
    ("hosts", "cpus", u32::MAX as i64),
    ("hosts", "memory_bytes", i64::MAX),
];

/// Text columns that hold one of a few words.
fn enumerations() -> [(&'static str, &'static str, Vec<&'static str>); 4] {
    use corral_proto::network::NetworkMode;
    [
        ("services", "kind", vec![ServiceKind::Container.as_str(), ServiceKind::LoadBalancer.as_str()]),
        ("services", "network", [NetworkMode::Managed, NetworkMode::Bridge, NetworkMode::Host, NetworkMode::None].map(NetworkMode::as_str).to_vec()),
        ("hosts", "state", vec![HostState::Active.as_str(), HostState::Disconnected.as_str()]),
        ("memberships", "role", Role::ALL.iter().map(|r| r.as_str()).collect()),
    ]
}

/// Times are RFC 3339 text, in columns named like these.
fn is_time_column(name: &str) -> bool {
    name == "at" || name == "last_seen" || ["_at", "_since", "_until"].iter().any(|end| name.ends_with(end))
}

#[derive(Debug)]
struct Column {
    name: String,
    /// As declared: `INTEGER` or `TEXT` in Corral's schema.
    declared: String,
    not_null: bool,
}

#[derive(Debug)]
struct Table {
    columns: Vec<Column>,
    /// An SQL expression naming a row by its primary key, e.g. `'id ' || quote("id")`.
    key: String,
}

impl Store {
    /// What keeps this database (a backup brought to this build's schema) from replacing the
    /// contents of `live`; empty when nothing does.
    pub async fn restore_problems(&self, live: &Store) -> Result<Vec<Problem>> {
        let schema = schema_differences(live, self).await?;
        if !schema.is_empty() {
            return Ok(schema);
        }
        let tables = self.tables().await?;
        let mut problems = self.broken_references(&tables).await?;
        problems.extend(self.wrong_types(&tables).await?);
        if !problems.is_empty() {
            // The checks below read values as their column's type.
            return Ok(problems);
        }
        problems.extend(self.out_of_range(&tables).await?);
        problems.extend(self.unknown_words(&tables).await?);
        problems.extend(self.bad_times(&tables).await?);
        problems.extend(self.unreadable_rows().await?);
        Ok(problems)
    }

    async fn tables(&self) -> Result<BTreeMap<String, Table>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetch_all(&self.pool).await?;
        let mut tables = BTreeMap::new();
        for name in names {
            let rows = sqlx::query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY pk, cid").bind(&name).fetch_all(&self.pool).await?;
            let columns: Vec<Column> = rows
                .iter()
                .map(|r| Column { name: r.get("name"), declared: r.get::<String, _>("type").to_uppercase(), not_null: r.get::<i64, _>("notnull") != 0 })
                .collect();
            let key_columns: Vec<String> = rows.iter().filter(|r| r.get::<i64, _>("pk") > 0).map(|r| r.get("name")).collect();
            let key = if key_columns.is_empty() {
                "'rowid ' || rowid".to_string()
            } else {
                key_columns.iter().map(|c| format!("'{c} ' || quote({})", quote(c))).collect::<Vec<_>>().join(" || ', ' || ")
            };
            tables.insert(name, Table { columns, key });
        }
        Ok(tables)
    }

    async fn broken_references(&self, tables: &BTreeMap<String, Table>) -> Result<Vec<Problem>> {
        let rows = sqlx::query("PRAGMA foreign_key_check").fetch_all(&self.pool).await?;
        let mut problems = Vec::new();
        for r in rows.iter().take(ENOUGH) {
            let (table, rowid, parent): (String, Option<i64>, String) = (r.get(0), r.get(1), r.get(2));
            let row = match (tables.get(&table), rowid) {
                (Some(t), Some(rowid)) => {
                    sqlx::query_scalar(&format!("SELECT {} FROM {} WHERE rowid = ?", t.key, quote(&table))).bind(rowid).fetch_optional(&self.pool).await?
                }
                _ => None,
            };
            problems.push(Problem::new(&table, row, format!("refers to a row of {parent} that is not in the backup")));
        }
        Ok(problems)
    }

    /// SQLite stores any value in any column; the store reads each as its column's type.
    async fn wrong_types(&self, tables: &BTreeMap<String, Table>) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for (name, table) in tables {
            for column in &table.columns {
                let (want, what) = match column.declared.as_str() {
                    "INTEGER" => ("integer", "a whole number"),
                    "TEXT" => ("text", "text"),
                    _ => continue,
                };
                let c = quote(&column.name);
                let sql = format!(
                    "SELECT {key}, typeof({c}) FROM {t} WHERE typeof({c}) NOT IN (?, 'null') OR (typeof({c}) = 'null' AND ?) LIMIT {ENOUGH}",
                    key = table.key,
                    t = quote(name),
                );
                for r in sqlx::query(&sql).bind(want).bind(column.not_null).fetch_all(&self.pool).await? {
                    let got: String = r.get(1);
                    let message = match got.as_str() {
                        "null" => format!("column {} is empty, which it may not be", column.name),
                        _ => format!("column {} holds {got} where {what} belongs", column.name),
                    };
                    problems.push(Problem::new(name, r.get(0), message));
                }
            }
        }
        Ok(problems)
    }

    async fn out_of_range(&self, tables: &BTreeMap<String, Table>) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for (name, column, max) in NARROWED {
            let Some(table) = tables.get(name) else { continue };
            let c = quote(column);
            let sql = format!("SELECT {}, {c} FROM {} WHERE {c} < 0 OR {c} > ? LIMIT {ENOUGH}", table.key, quote(name));
            for r in sqlx::query(&sql).bind(max).fetch_all(&self.pool).await? {
                problems.push(Problem::new(name, r.get(0), format!("column {column} holds {}, outside 0 to {max}", r.get::<i64, _>(1))));
            }
        }
        Ok(problems)
    }

    async fn unknown_words(&self, tables: &BTreeMap<String, Table>) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for (name, column, words) in enumerations() {
            let Some(table) = tables.get(name) else { continue };
            let c = quote(column);
            let placeholders = vec!["?"; words.len()].join(", ");
            let sql = format!("SELECT {}, {c} FROM {} WHERE {c} NOT IN ({placeholders}) LIMIT {ENOUGH}", table.key, quote(name));
            let mut query = sqlx::query(&sql);
            for word in &words {
                query = query.bind(*word);
            }
            for r in query.fetch_all(&self.pool).await? {
                problems.push(Problem::new(name, r.get(0), format!("column {column} holds {:?}, not one of {}", r.get::<String, _>(1), words.join(", "))));
            }
        }
        Ok(problems)
    }

    async fn bad_times(&self, tables: &BTreeMap<String, Table>) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for (name, table) in tables {
            for column in table.columns.iter().filter(|c| c.declared == "TEXT" && is_time_column(&c.name)) {
                let c = quote(&column.name);
                let sql = format!("SELECT {}, {c} FROM {} WHERE {c} IS NOT NULL", table.key, quote(name));
                for r in sqlx::query(&sql).fetch_all(&self.pool).await? {
                    let value: String = r.get(1);
                    if parse_time(&value).is_none() {
                        problems.push(Problem::new(name, r.get(0), format!("column {} holds {value:?}, not a time (RFC 3339)", column.name)));
                    }
                    if problems.len() >= ENOUGH {
                        return Ok(problems);
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Rows through the store's own readers: JSON columns that do not parse into their types.
    async fn unreadable_rows(&self) -> Result<Vec<Problem>> {
        let unreadable = |e: StoreError| match e {
            StoreError::Corrupt(m) => format!("unreadable {m}"),
            other => other.to_string(),
        };
        let mut problems = Vec::new();
        for r in sqlx::query(&format!("{} ORDER BY s.id", crate::services::SELECT)).fetch_all(&self.pool).await? {
            let id: i64 = r.get("id");
            if let Err(e) = crate::services::row_to_service(r) {
                problems.push(Problem::new("services", Some(format!("id {id}")), unreadable(e)));
            }
        }
        for r in sqlx::query("SELECT * FROM hosts ORDER BY id").fetch_all(&self.pool).await? {
            let id: String = r.get("id");
            if let Err(e) = crate::hosts::row_to_host(r) {
                problems.push(Problem::new("hosts", Some(format!("id '{id}'")), unreadable(e)));
            }
        }
        for r in sqlx::query("SELECT * FROM observed ORDER BY host_id, name").fetch_all(&self.pool).await? {
            let key = format!("host_id '{}', name '{}'", r.get::<String, _>("host_id"), r.get::<String, _>("name"));
            if let Err(e) = crate::observed::row_to_observed(r) {
                problems.push(Problem::new("observed", Some(key), unreadable(e)));
            }
        }
        problems.truncate(ENOUGH);
        Ok(problems)
    }
}

/// Tables, indexes and triggers that differ between this build's schema (`live`'s) and `copy`'s.
async fn schema_differences(live: &Store, copy: &Store) -> Result<Vec<Problem>> {
    async fn objects(store: &Store) -> Result<BTreeMap<(String, String), (String, Option<String>)>> {
        let rows = sqlx::query("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetch_all(&store.pool).await?;
        Ok(rows.iter().map(|r| ((r.get("type"), r.get("name")), (r.get("tbl_name"), r.get("sql")))).collect())
    }
    let (want, have) = (objects(live).await?, objects(copy).await?);
    let mut problems = Vec::new();
    for ((kind, name), (table, sql)) in &want {
        let message = match have.get(&(kind.clone(), name.clone())) {
            None if kind == "table" => "missing from the backup".to_string(),
            None => format!("{kind} {name} is missing from the backup"),
            Some((_, have_sql)) if have_sql != sql => format!("{kind} {name} is defined differently than in this build"),
            Some(_) => continue,
        };
        problems.push(Problem::new(table, None, message));
    }
    for ((kind, name), (table, _)) in have.iter().filter(|(k, _)| !want.contains_key(k)) {
        problems.push(Problem::new(table, None, format!("{kind} {name} is not part of a Corral database")));
    }
    Ok(problems)
}
