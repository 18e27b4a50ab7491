//! Erase receipts and usage by tenant: what `DELETE …/tenants/{id}?erase=true` deleted (kept in
//! `tenant_erasures` and in the audit log, readable after the tenant is gone), and the activity of a
//! tenant's keys summed from their per-day usage (`usage`).
//!
//! Design: the events themselves are erased by the server through the storage engine; this store only
//! keeps the receipt the server hands it, as the JSON it answered, so a receipt read later is the one the
//! caller was given. A receipt id is time-ordered text like an audit entry's.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;

use crate::audit::{new_entry_id, record_project_change};
use crate::{KeyUsage, MetaError, MetaStore, Result};

/// A tenant's activity: its keys' usage by UTC day and when one was last used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantActivity {
    /// Summed counts of the tenant's keys per `YYYY-MM-DD` day, days with no counts left out.
    pub days: BTreeMap<String, KeyUsage>,
    /// When one of its keys last had a request counted (ISO-8601, UTC; within the few seconds usage
    /// takes to be stored), if ever.
    pub last_activity: Option<String>,
}

impl MetaStore {
    /// A new receipt id.
    pub fn new_erasure_receipt_id(&self) -> String {
        new_entry_id()
    }

    /// Stores an erase receipt (its `receipt_id`, `tenant` and `completed_at` fields name it) and its audit
    /// entry (`erase`), in one transaction.
    pub async fn record_tenant_erasure(
        &self,
        project_id: &str,
        receipt: &Value,
        actor: &str,
    ) -> Result<()> {
        let field = |name: &str| {
            receipt[name].as_str().map(str::to_string).ok_or_else(|| {
                MetaError::InvalidDefinition(format!("an erase receipt needs {name}"))
            })
        };
        let receipt_id = field("receipt_id")?;
        let tenant_id = field("tenant")?;
        let completed_at = field("completed_at")?;
        let mut transaction = self.database.begin_write().await?;
        sqlx::query(
            "INSERT INTO tenant_erasures (project_id, receipt_id, tenant_id, receipt, completed_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(project_id)
        .bind(&receipt_id)
        .bind(&tenant_id)
        .bind(receipt.to_string())
        .bind(&completed_at)
        .execute(&mut *transaction)
        .await?;
        record_project_change(&mut transaction, project_id, "erase", actor, receipt).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// An erase receipt of the project, as it was answered.
    pub async fn tenant_erasure(
        &self,
        project_id: &str,
        receipt_id: &str,
    ) -> Result<Option<Value>> {
        let row = sqlx::query(
            "SELECT receipt FROM tenant_erasures WHERE project_id = $1 AND receipt_id = $2",
        )
        .bind(project_id)
        .bind(receipt_id)
        .fetch_optional(&self.database.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: String = row.try_get("receipt")?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| MetaError::Corrupt("erase receipt".into()))
    }

    /// The activity of the tenants whose ids are from `first_id` to `last_id` (inclusive, byte order; a
    /// page of the tenant list), their usage summed from `since_day` on. Tenants without activity are
    /// absent.
    pub async fn tenants_activity(
        &self,
        project_id: &str,
        first_id: &str,
        last_id: &str,
        since_day: &str,
    ) -> Result<BTreeMap<String, TenantActivity>> {
        // PostgreSQL sums BIGINTs as NUMERIC, so the sums are cast back to BIGINT.
        let rows = sqlx::query(
            "SELECT k.tenant_id AS tenant_id, u.day AS day, \
             CAST(SUM(u.reads) AS BIGINT) AS reads, CAST(SUM(u.writes) AS BIGINT) AS writes, \
             CAST(SUM(u.events) AS BIGINT) AS events, CAST(SUM(u.queries) AS BIGINT) AS queries, \
             CAST(SUM(u.refused) AS BIGINT) AS refused \
             FROM key_usage u JOIN project_keys k ON k.key_hash = u.key_hash \
             WHERE k.project_id = $1 AND k.tenant_id >= $2 AND k.tenant_id <= $3 AND u.day >= $4 \
             GROUP BY k.tenant_id, u.day",
        )
        .bind(project_id)
        .bind(first_id)
        .bind(last_id)
        .bind(since_day)
        .fetch_all(&self.database.pool)
        .await?;
        let mut activity: BTreeMap<String, TenantActivity> = BTreeMap::new();
        for row in &rows {
            let get = |name: &str| -> Result<u64> {
                Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
            };
            let usage = KeyUsage {
                reads: get("reads")?,
                writes: get("writes")?,
                events: get("events")?,
                queries: get("queries")?,
                refused: get("refused")?,
            };
            let tenant_id: String = row.try_get("tenant_id")?;
            let day: String = row.try_get("day")?;
            activity
                .entry(tenant_id)
                .or_default()
                .days
                .entry(day)
                .or_default()
                .add(&usage);
        }
        let last_used = sqlx::query(
            "SELECT tenant_id, MAX(last_used_at) AS last_used_at FROM project_keys \
             WHERE project_id = $1 AND tenant_id >= $2 AND tenant_id <= $3 AND last_used_at IS NOT NULL \
             GROUP BY tenant_id",
        )
        .bind(project_id)
        .bind(first_id)
        .bind(last_id)
        .fetch_all(&self.database.pool)
        .await?;
        for row in &last_used {
            let tenant_id: String = row.try_get("tenant_id")?;
            activity.entry(tenant_id).or_default().last_activity = row.try_get("last_used_at")?;
        }
        Ok(activity)
    }
}
