//! Resource usage history: raw samples for an hour, 1-minute roll-ups for a day, 1-hour
//! roll-ups for a month (migration `0007_metrics.sql`).
//!
//! Size stays bounded whatever the uptime: every table is pruned by age, and a sample is a
//! dozen integers keyed by (series, ts). With 1,000 containers reporting every 5 s that is
//! about 720k raw rows, 1.4M minute rows and 720k hour rows at most.

use crate::{Result, Store};
use serde::Serialize;
use sqlx::Row;

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    Host,
    Container,
}

impl SeriesKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Host => "host",
            SeriesKind::Container => "container",
        }
    }
}

/// One table of history, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Raw, Resolution::Minute, Resolution::Hour];

    fn table(self) -> &'static str {
        match self {
            Resolution::Raw => "metric_raw",
            Resolution::Minute => "metric_1m",
            Resolution::Hour => "metric_1h",
        }
    }

    /// Seconds between two points of this table (raw samples come every 5 s by default).
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Raw => 5,
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
        }
    }

    /// How far back this table reaches.
    pub fn keep_seconds(self) -> i64 {
        match self {
            Resolution::Raw => 3600,
            Resolution::Minute => 86_400,
            Resolution::Hour => 31 * 86_400,
        }
    }

    /// The finest table that still holds `from` (Unix seconds) at time `now`.
    pub fn for_range(from: i64, now: i64) -> Resolution {
        Resolution::ALL.into_iter().find(|r| from >= now - r.keep_seconds()).unwrap_or(Resolution::Hour)
    }
}

/// One point of a series: integers, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Unix seconds; for roll-ups and stepped queries, the start of the bucket.
    pub ts: i64,
    /// Hundredths of a percent.
    pub cpu: i64,
    pub memory: i64,
    pub memory_limit: i64,
    /// Bytes per second.
    pub net_rx: i64,
    pub net_tx: i64,
    pub block_read: i64,
    pub block_write: i64,
    pub disk_used: i64,
    pub disk_total: i64,
    /// Hundredths.
    pub load1: i64,
}

const COLUMNS: &str = "cpu, memory, memory_limit, net_rx, net_tx, block_read, block_write, disk_used, disk_total, load1";
/// Averages of every column, rounded, in [`COLUMNS`] order.
const AVERAGES: &str = "CAST(ROUND(AVG(cpu)) AS INTEGER), CAST(ROUND(AVG(memory)) AS INTEGER), CAST(ROUND(AVG(memory_limit)) AS INTEGER), \
     CAST(ROUND(AVG(net_rx)) AS INTEGER), CAST(ROUND(AVG(net_tx)) AS INTEGER), CAST(ROUND(AVG(block_read)) AS INTEGER), \
     CAST(ROUND(AVG(block_write)) AS INTEGER), CAST(ROUND(AVG(disk_used)) AS INTEGER), CAST(ROUND(AVG(disk_total)) AS INTEGER), \
     CAST(ROUND(AVG(load1)) AS INTEGER)";

fn row_to_sample(row: &sqlx::sqlite::SqliteRow) -> Sample {
    Sample {
        ts: row.get("ts"),
        cpu: row.get(2),
        memory: row.get(3),
        memory_limit: row.get(4),
        net_rx: row.get(5),
        net_tx: row.get(6),
        block_read: row.get(7),
        block_write: row.get(8),
        disk_used: row.get(9),
        disk_total: row.get(10),
        load1: row.get(11),
    }
}

/// Which series a metric belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesKey<'a> {
    pub kind: SeriesKind,
    pub environment_id: i64,
    pub name: &'a str,
    pub stack: &'a str,
    pub service: &'a str,
}

impl Store {
    /// The id of a series, created on first use; a container's stack and service follow its labels.
    pub async fn metric_series_id(&self, key: &SeriesKey<'_>) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO metric_series (kind, environment_id, name, stack, service) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (kind, environment_id, name) DO UPDATE SET stack = excluded.stack, service = excluded.service
             RETURNING id",
        )
        .bind(key.kind.as_str())
        .bind(key.environment_id)
        .bind(key.name)
        .bind(key.stack)
        .bind(key.service)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get(0))
    }

    /// The series of one host or container, if it ever reported.
    pub async fn find_metric_series(&self, kind: SeriesKind, environment_id: i64, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM metric_series WHERE kind = ? AND environment_id = ? AND name = ?")
            .bind(kind.as_str())
            .bind(environment_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every container series that belongs to `stack/service`, including containers gone since.
    pub async fn service_metric_series(&self, environment_id: i64, stack: &str, service: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM metric_series WHERE kind = 'container' AND environment_id = ? AND stack = ? AND service = ?")
            .bind(environment_id)
            .bind(stack)
            .bind(service)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Stores raw samples of many series in one transaction; a repeated (series, ts) replaces.
    pub async fn insert_metric_samples(&self, samples: &[(i64, Sample)]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let sql = format!("INSERT OR REPLACE INTO metric_raw (series, ts, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let mut tx = self.write_tx().await?;
        for (series, s) in samples {
            sqlx::query(&sql)
                .bind(series)
                .bind(s.ts)
                .bind(s.cpu)
                .bind(s.memory)
                .bind(s.memory_limit)
                .bind(s.net_rx)
                .bind(s.net_tx)
                .bind(s.block_read)
                .bind(s.block_write)
                .bind(s.disk_used)
                .bind(s.disk_total)
                .bind(s.load1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Averages the recent complete minutes and hours into the roll-up tables, then drops what
    /// each table no longer needs to keep. Idempotent: buckets are recomputed whole, so running
    /// it late, twice, or after a restart gives the same rows.
    pub async fn roll_up_metrics(&self, now: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (from, to, span) in [(Resolution::Raw, Resolution::Minute, 600), (Resolution::Minute, Resolution::Hour, 3 * 3600)] {
            let size = to.seconds();
            let end = now - now.rem_euclid(size);
            let sql = format!(
                "INSERT OR REPLACE INTO {dst} (series, ts, {COLUMNS})
                 SELECT series, ts - (ts % {size}) AS bucket, {AVERAGES} FROM {src}
                 WHERE ts >= ? AND ts < ? GROUP BY series, bucket",
                dst = to.table(),
                src = from.table(),
            );
            sqlx::query(&sql).bind(end - span).bind(end).execute(&mut *tx).await?;
        }
        for resolution in Resolution::ALL {
            // Raw and minute rows outlive their window a little, so the coarser table above
            // can always be recomputed from complete buckets.
            let margin = resolution.seconds().max(60) * 10;
            sqlx::query(&format!("DELETE FROM {} WHERE ts < ?", resolution.table())).bind(now - resolution.keep_seconds() - margin).execute(&mut *tx).await?;
        }
        sqlx::query(
            "DELETE FROM metric_series WHERE id NOT IN (SELECT series FROM metric_raw)
               AND id NOT IN (SELECT series FROM metric_1m) AND id NOT IN (SELECT series FROM metric_1h)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Points of each series in `[from, to)` from one table, averaged per `step` seconds,
    /// ordered by series then time.
    pub async fn metric_points(&self, series: &[i64], resolution: Resolution, from: i64, to: i64, step: i64) -> Result<Vec<(i64, Sample)>> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let step = step.max(1);
        let ids = vec!["?"; series.len()].join(", ");
        let sql = format!(
            "SELECT series, ts - (ts % {step}) AS ts, {AVERAGES} FROM {table}
             WHERE series IN ({ids}) AND ts >= ? AND ts < ? GROUP BY series, 2 ORDER BY series, 2",
            table = resolution.table(),
        );
        let mut query = sqlx::query(&sql);
        for id in series {
            query = query.bind(id);
        }
        let rows = query.bind(from).bind(to).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get::<i64, _>(0), row_to_sample(r))).collect())
    }

    /// Rows per table, for the size check in docs and tests.
    pub async fn metric_row_counts(&self) -> Result<[i64; 3]> {
        let mut counts = [0; 3];
        for (i, r) in Resolution::ALL.into_iter().enumerate() {
            counts[i] = sqlx::query(&format!("SELECT COUNT(*) FROM {}", r.table())).fetch_one(&self.pool).await?.get(0);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;

    fn sample(ts: i64, cpu: i64) -> Sample {
        Sample { ts, cpu, memory: cpu * 10, memory_limit: 1000, ..Default::default() }
    }

    #[tokio::test]
    async fn samples_roll_up_into_minutes_and_hours_and_old_ones_go() {
        let (store, _dir) = store().await;
        let env = store.ensure_default_environment().await.unwrap();
        let key = SeriesKey { kind: SeriesKind::Container, environment_id: env.id, name: "S-web-1", stack: "S", service: "web" };
        let id = store.metric_series_id(&key).await.unwrap();
        assert_eq!(store.metric_series_id(&key).await.unwrap(), id, "a series is created once");

        // 30 s into an hour (1,800,000,000 s is a whole number of hours).
        let now = 1_800_000_000 + 30;
        // Two full minutes of samples every 5 s ending at the start of this minute: cpu 100 in
        // the first, 300 in the second; plus one sample two days old.
        let mut samples: Vec<(i64, Sample)> = (0..24).map(|i| (id, sample(now - 30 - 120 + i * 5, if i < 12 { 100 } else { 300 }))).collect();
        samples.push((id, sample(now - 2 * 86_400, 50)));
        store.insert_metric_samples(&samples).await.unwrap();
        store.roll_up_metrics(now).await.unwrap();

        let minutes = store.metric_points(&[id], Resolution::Minute, now - 3600, now, 60).await.unwrap();
        let got: Vec<(i64, i64, i64)> = minutes.iter().map(|(_, s)| (s.ts, s.cpu, s.memory)).collect();
        assert_eq!(got, [(now - 30 - 120, 100, 1000), (now - 30 - 60, 300, 3000)], "one averaged point per minute, in order");

        // The hour before `now` is complete, so its minutes are averaged into one hour row.
        let hours = store.metric_points(&[id], Resolution::Hour, now - 86_400, now + 3600, 3600).await.unwrap();
        assert_eq!(hours.iter().map(|(_, s)| (s.ts, s.cpu)).collect::<Vec<_>>(), [(now - 3630, 200)]);
        store.roll_up_metrics(now + 60).await.unwrap();
        assert_eq!(store.metric_points(&[id], Resolution::Minute, 0, now + 60, 60).await.unwrap(), minutes, "rolling up again changes nothing");

        let raw = store.metric_points(&[id], Resolution::Raw, 0, now + 10, 5).await.unwrap();
        assert!(raw.iter().all(|(_, s)| s.ts > now - 86_400), "the two-day-old raw sample was pruned");
        assert!(raw.windows(2).all(|w| w[0].1.ts < w[1].1.ts), "raw points are ordered");

        // Coarser steps over raw samples average them.
        let stepped = store.metric_points(&[id], Resolution::Raw, now - 3600, now, 3600).await.unwrap();
        assert_eq!(stepped.iter().map(|(_, s)| (s.ts, s.cpu)).collect::<Vec<_>>(), [(now - 3630, 200)]);
        assert_eq!(store.service_metric_series(env.id, "S", "web").await.unwrap(), [id]);
        assert_eq!(Resolution::for_range(now - 600, now), Resolution::Raw);
        assert_eq!(Resolution::for_range(now - 7200, now), Resolution::Minute);
        assert_eq!(Resolution::for_range(now - 7 * 86_400, now), Resolution::Hour);
    }
}
