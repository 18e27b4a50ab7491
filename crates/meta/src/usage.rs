//! Per-key usage counters by UTC day (requests read and written, events written, queries run, requests
//! refused), persisted so daily quotas hold across restarts. The server counts in memory and adds its
//! counts here every few seconds; this module only stores and sums them.

use keyhole_model::KeyHash;
use serde::Serialize;
use sqlx::Row;

use crate::{MetaStore, Result};

/// One key's counts for one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    /// Read requests admitted (queries, schema, …).
    pub reads: u64,
    /// Write requests admitted.
    pub writes: u64,
    /// Events written.
    pub events: u64,
    /// Queries run.
    pub queries: u64,
    /// Requests refused by the key's limits.
    pub refused: u64,
}

impl KeyUsage {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &KeyUsage) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.events += other.events;
        self.queries += other.queries;
        self.refused += other.refused;
    }

    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == KeyUsage::default()
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl MetaStore {
    /// Adds counts to what is stored for each (key, day), and marks each key counted as used now.
    pub async fn add_key_usage(&self, counts: &[(KeyHash, String, KeyUsage)]) -> Result<()> {
        let mut transaction = self.database.begin_write().await?;
        let stored_at = crate::now();
        for (key_hash, day, usage) in counts {
            if !usage.is_zero() {
                sqlx::query("UPDATE project_keys SET last_used_at = $1 WHERE key_hash = $2")
                    .bind(&stored_at)
                    .bind(key_hash.to_hex())
                    .execute(&mut *transaction)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO key_usage (key_hash, day, reads, writes, events, queries, refused) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (key_hash, day) DO UPDATE SET reads = key_usage.reads + excluded.reads, \
                 writes = key_usage.writes + excluded.writes, events = key_usage.events + excluded.events, \
                 queries = key_usage.queries + excluded.queries, refused = key_usage.refused + excluded.refused",
            )
            .bind(key_hash.to_hex())
            .bind(day)
            .bind(count(usage.reads))
            .bind(count(usage.writes))
            .bind(count(usage.events))
            .bind(count(usage.queries))
            .bind(count(usage.refused))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// What is stored for a key's day (zero when nothing is).
    pub async fn key_usage(&self, key_hash: &KeyHash, day: &str) -> Result<KeyUsage> {
        let row = sqlx::query(
            "SELECT reads, writes, events, queries, refused FROM key_usage WHERE key_hash = $1 AND day = $2",
        )
        .bind(key_hash.to_hex())
        .bind(day)
        .fetch_optional(&self.database.pool)
        .await?;
        let Some(row) = row else {
            return Ok(KeyUsage::default());
        };
        let get = |name: &str| -> Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(KeyUsage {
            reads: get("reads")?,
            writes: get("writes")?,
            events: get("events")?,
            queries: get("queries")?,
            refused: get("refused")?,
        })
    }
}

/// What one project holds and its keys did: what Keen's `organization-usage` shows a project's master
/// key. Only the project's own: a project key learns nothing of the organization's other projects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProjectUsage {
    /// Saved queries, cached or not.
    pub saved_queries: u64,
    /// Saved queries with a refresh rate (Keen's cached queries).
    pub cached_queries: u64,
    /// Datasets (Keen's cached datasets).
    pub datasets: u64,
    /// The counts of the project's keys summed from `since_day` (a `YYYY-MM-DD` UTC day) on.
    pub since: KeyUsage,
}

impl MetaStore {
    /// `project_id`'s counts, with its keys' usage summed from `since_day` (inclusive) on.
    pub async fn project_usage(&self, project_id: &str, since_day: &str) -> Result<ProjectUsage> {
        // One statement; PostgreSQL sums BIGINTs as NUMERIC, so the sums are cast back to BIGINT.
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM saved_queries WHERE project_id = $1) AS saved_queries, \
             (SELECT COUNT(*) FROM saved_queries WHERE project_id = $1 AND refresh_rate > 0) AS cached_queries, \
             (SELECT COUNT(*) FROM datasets WHERE project_id = $1) AS datasets, \
             CAST(COALESCE(SUM(reads), 0) AS BIGINT) AS reads, \
             CAST(COALESCE(SUM(writes), 0) AS BIGINT) AS writes, \
             CAST(COALESCE(SUM(events), 0) AS BIGINT) AS events, \
             CAST(COALESCE(SUM(queries), 0) AS BIGINT) AS queries, \
             CAST(COALESCE(SUM(refused), 0) AS BIGINT) AS refused FROM key_usage \
             WHERE day >= $2 AND key_hash IN (SELECT key_hash FROM project_keys WHERE project_id = $1)",
        )
        .bind(project_id)
        .bind(since_day)
        .fetch_one(&self.database.pool)
        .await?;
        let get = |name: &str| -> Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(ProjectUsage {
            saved_queries: get("saved_queries")?,
            cached_queries: get("cached_queries")?,
            datasets: get("datasets")?,
            since: KeyUsage {
                reads: get("reads")?,
                writes: get("writes")?,
                events: get("events")?,
                queries: get("queries")?,
                refused: get("refused")?,
            },
        })
    }
}
