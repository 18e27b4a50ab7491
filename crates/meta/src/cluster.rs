//! The tables that let several nodes share one event store (`storage_log`, `storage_checkpoint`,
//! `storage_leases`), as plain rows and bytes: what the rows mean is the storage engine's business
//! (`keyhole_storage::shared`); this module only keeps them ordered, atomic and fenced.
//!
//! Design: appends are serialized by the database's write lock (SQLite's `BEGIN IMMEDIATE`, a PostgreSQL
//! advisory lock of its own), so a record's sequence is one more than the last one and sequences are
//! committed in order — a reader that has seen sequence `n` has seen every record before it. An append
//! may be fenced by a lease: it commits only while this node holds that lease, so a node whose lease ran
//! out (a long pause) cannot write maintenance records over its successor's. The checkpoint only moves
//! forward.

use sqlx::Row;

use crate::database::Database;
use crate::{MetaStore, Result};

/// The advisory lock taken by appends on PostgreSQL ("khlog").
const LOG_LOCK: i64 = 0x006b_686c_6f67;

/// One record of the shared log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The record's place in the log.
    pub sequence: u64,
    /// What the record is (`entries`, `rotate`, `flushed`, `swapped`).
    pub kind: String,
    /// The record's bytes, as the storage engine encoded them.
    pub payload: Vec<u8>,
}

/// The shared log, checkpoint and leases of one metadata database, acting as one node.
#[derive(Clone)]
pub struct ClusterLog {
    database: Database,
    node_id: std::sync::Arc<str>,
}

/// The most payload bytes one [`ClusterLog::read_after`] returns (beyond its first
/// record).
pub(crate) const READ_AFTER_MAX_BYTES: u64 = 16 * 1024 * 1024;

impl MetaStore {
    /// The cluster tables, acting as this node (its id is the lease holder's name).
    pub fn cluster_log(&self) -> ClusterLog {
        ClusterLog {
            database: self.database.clone(),
            node_id: self.node_id.clone(),
        }
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl ClusterLog {
    /// Appends a record; its sequence. With `fence`, only while this node holds that lease (`None` when
    /// it does not).
    pub async fn append(
        &self,
        kind: &str,
        payload: &[u8],
        fence: Option<&str>,
        now_millis: i64,
    ) -> Result<Option<u64>> {
        let mut transaction = self.database.begin_locked(LOG_LOCK).await?;
        if let Some(lease) = fence {
            let held = sqlx::query(
                "SELECT 1 FROM storage_leases WHERE name = $1 AND holder = $2 AND expires_at_millis > $3",
            )
            .bind(lease)
            .bind(&*self.node_id)
            .bind(now_millis)
            .fetch_optional(&mut *transaction)
            .await?;
            if held.is_none() {
                return Ok(None);
            }
        }
        let last: Option<i64> = sqlx::query("SELECT MAX(sequence) AS last FROM storage_log")
            .fetch_one(&mut *transaction)
            .await?
            .try_get("last")?;
        let sequence = last.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO storage_log (sequence, kind, payload, appended_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(sequence)
        .bind(kind)
        .bind(payload)
        .bind(&*self.node_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(u64::try_from(sequence).unwrap_or(0)))
    }

    /// Up to `limit` records with sequences above `after`, oldest first, stopping once their payloads
    /// pass [`READ_AFTER_MAX_BYTES`] (at least one record): a node catching up applies the log in
    /// pieces of bounded memory, whatever one group commit held.
    pub async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        let rows = sqlx::query(
            "SELECT sequence, kind, payload FROM (
                 SELECT sequence, kind, payload,
                        SUM(length(payload)) OVER (ORDER BY sequence) - length(payload) AS bytes_before
                 FROM (SELECT sequence, kind, payload FROM storage_log
                       WHERE sequence > $1 ORDER BY sequence LIMIT $2) AS next_records
             ) AS sized
             WHERE bytes_before < $3
             ORDER BY sequence",
        )
        .bind(to_i64(after))
        .bind(to_i64(limit as u64))
        .bind(to_i64(READ_AFTER_MAX_BYTES))
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    sequence: u64::try_from(row.try_get::<i64, _>("sequence")?).unwrap_or(0),
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect()
    }

    /// The newest record's sequence (0 when the log is empty).
    pub async fn last_sequence(&self) -> Result<u64> {
        let last: Option<i64> = sqlx::query("SELECT MAX(sequence) AS last FROM storage_log")
            .fetch_one(&self.database.pool)
            .await?
            .try_get("last")?;
        Ok(u64::try_from(last.unwrap_or(0)).unwrap_or(0))
    }

    /// Deletes records through `sequence`, always keeping the newest (it carries the next sequence).
    pub async fn truncate_through(&self, sequence: u64) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM storage_log WHERE sequence <= $1 AND sequence < (SELECT MAX(sequence) FROM storage_log)",
        )
        .bind(to_i64(sequence))
        .execute(&self.database.pool)
        .await?;
        Ok(deleted.rows_affected())
    }

    /// The stored checkpoint: the sequence through which it reflects the log, and its text.
    pub async fn checkpoint(&self) -> Result<Option<(u64, String)>> {
        let row =
            sqlx::query("SELECT applied_through, manifest FROM storage_checkpoint WHERE id = 1")
                .fetch_optional(&self.database.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let applied_through = u64::try_from(row.try_get::<i64, _>("applied_through")?).unwrap_or(0);
        Ok(Some((applied_through, row.try_get("manifest")?)))
    }

    /// Stores a checkpoint unless a newer one is stored; whether it was stored.
    pub async fn store_checkpoint(&self, applied_through: u64, manifest: &str) -> Result<bool> {
        let stored = sqlx::query(
            "INSERT INTO storage_checkpoint (id, applied_through, manifest) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET applied_through = excluded.applied_through, manifest = excluded.manifest \
             WHERE storage_checkpoint.applied_through < excluded.applied_through",
        )
        .bind(to_i64(applied_through))
        .bind(manifest)
        .execute(&self.database.pool)
        .await?;
        Ok(stored.rows_affected() > 0)
    }

    /// Takes or renews the lease `name` until `now_millis + ttl_millis`, unless another node holds it
    /// unexpired; whether this node holds it now.
    pub async fn try_lease(&self, name: &str, now_millis: i64, ttl_millis: i64) -> Result<bool> {
        let taken = sqlx::query(
            "INSERT INTO storage_leases (name, holder, expires_at_millis) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_millis = excluded.expires_at_millis \
             WHERE storage_leases.holder = excluded.holder OR storage_leases.expires_at_millis <= $4",
        )
        .bind(name)
        .bind(&*self.node_id)
        .bind(now_millis + ttl_millis)
        .bind(now_millis)
        .execute(&self.database.pool)
        .await?;
        Ok(taken.rows_affected() > 0)
    }

    /// Gives the lease up if this node holds it.
    pub async fn release_lease(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM storage_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(&*self.node_id)
            .execute(&self.database.pool)
            .await?;
        Ok(())
    }
}
