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
    /// Adds counts to what is stored for each (key, day).
    pub async fn add_key_usage(&self, counts: &[(KeyHash, String, KeyUsage)]) -> Result<()> {
        let mut transaction = self.database.begin_write().await?;
        for (key_hash, day, usage) in counts {
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

/// What the whole organization holds and did: Keen's `organization-usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OrganizationUsage {
    /// Projects.
    pub projects: u64,
    /// Saved queries, cached or not.
    pub saved_queries: u64,
    /// Saved queries with a refresh rate (Keen's cached queries).
    pub cached_queries: u64,
    /// Datasets (Keen's cached datasets).
    pub datasets: u64,
    /// Every key's counts summed from `since_day` (a `YYYY-MM-DD` UTC day) on.
    pub since: KeyUsage,
}

impl MetaStore {
    /// The organization's counts, with key usage summed from `since_day` (inclusive) on.
    pub async fn organization_usage(&self, since_day: &str) -> Result<OrganizationUsage> {
        let total = |sql: &'static str| async move {
            let row = sqlx::query(sql).fetch_one(&self.database.pool).await?;
            Ok::<u64, crate::MetaError>(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
        };
        let row = sqlx::query(
            // PostgreSQL sums BIGINTs as NUMERIC: cast back so both databases answer a BIGINT.
            "SELECT CAST(COALESCE(SUM(reads), 0) AS BIGINT) AS reads, \
             CAST(COALESCE(SUM(writes), 0) AS BIGINT) AS writes, \
             CAST(COALESCE(SUM(events), 0) AS BIGINT) AS events, \
             CAST(COALESCE(SUM(queries), 0) AS BIGINT) AS queries, \
             CAST(COALESCE(SUM(refused), 0) AS BIGINT) AS refused FROM key_usage WHERE day >= $1",
        )
        .bind(since_day)
        .fetch_one(&self.database.pool)
        .await?;
        let get = |name: &str| -> Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(OrganizationUsage {
            projects: total("SELECT COUNT(*) FROM projects").await?,
            saved_queries: total("SELECT COUNT(*) FROM saved_queries").await?,
            cached_queries: total("SELECT COUNT(*) FROM saved_queries WHERE refresh_rate > 0")
                .await?,
            datasets: total("SELECT COUNT(*) FROM datasets").await?,
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
