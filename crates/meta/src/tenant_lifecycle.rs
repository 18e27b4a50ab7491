//! A tenant's life after creation: renamed, given new options, suspended and resumed, its keys rotated,
//! and deleted (`keyhole_model::tenant` says what a tenant is; `tenants` creates and lists them).
//!
//! Design: each change is one transaction holding the tenant row, every key it touches and one audit
//! entry per key, announced as any key change (`key_changes`), so every node drops its cached grants
//! before its next request. A tenant's keys are found by `project_keys.tenant_id`; keys a rotation set to
//! expire are marked `tenant_retiring`, so new options never extend a retirement. Deleting a tenant
//! revokes its keys (their embed tokens with them), unties them from it and removes the tenant, so its id
//! can be created again; its events stay unless the server erases them (`tenant_erasures`).

use keyhole_model::KeyHash;
use keyhole_model::access::AccessKeyDefinition;
use keyhole_model::tenant::{Tenancy, TenantChange};
use keyhole_model::timestamp::{EpochMillis, format_timestamp, parse_timestamp};
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::access_keys::{KeyChangeAudit, change_key_in, replace_definition_in};
use crate::audit::{KeyChangeRecord, record_key_change};
use crate::tenants::{
    insert_tenant_keys, tenancy_of_tenants_in, tenant_in, tenant_key_definitions,
};
use crate::{AccessKey, CreatedTenant, MetaError, MetaStore, Result, Tenant, now};

/// One key of a tenant as its changes need it.
struct TenantKeyRow {
    key_hash: KeyHash,
    key_prefix: String,
    writes: bool,
    expires_at: Option<EpochMillis>,
    retiring: bool,
}

fn tenant_key_row(row: &AnyRow) -> Result<TenantKeyRow> {
    let key_hash_hex: String = row.try_get("key_hash")?;
    let permitted: Option<String> = row.try_get("permitted")?;
    let expires_at: Option<String> = row.try_get("expires_at")?;
    Ok(TenantKeyRow {
        key_hash: KeyHash::from_hex(&key_hash_hex)
            .ok_or_else(|| MetaError::Corrupt("key hash".into()))?,
        key_prefix: row.try_get("key_prefix")?,
        writes: crate::parse_permitted(permitted)?.contains(&keyhole_model::Operation::Writes),
        expires_at: expires_at
            .map(|text| {
                parse_timestamp(&text).ok_or_else(|| MetaError::Corrupt("key expiry".into()))
            })
            .transpose()?,
        retiring: row.try_get::<i64, _>("tenant_retiring")? != 0,
    })
}

/// The tenant's keys that still open something (active), oldest first.
async fn active_tenant_keys_in(
    connection: &mut sqlx::AnyConnection,
    project_id: &str,
    tenant_id: &str,
) -> Result<Vec<TenantKeyRow>> {
    let rows = sqlx::query(
        "SELECT key_hash, key_prefix, permitted, expires_at, tenant_retiring FROM project_keys \
         WHERE project_id = $1 AND tenant_id = $2 AND kind = 'access' AND is_active = 1 \
         ORDER BY created_at, key_prefix",
    )
    .bind(project_id)
    .bind(tenant_id)
    .fetch_all(connection)
    .await?;
    rows.iter().map(tenant_key_row).collect()
}

/// The earlier of two optional expiries (`None` is never).
fn earlier(first: Option<EpochMillis>, second: Option<EpochMillis>) -> Option<EpochMillis> {
    match (first, second) {
        (Some(first), Some(second)) => Some(first.min(second)),
        (first, second) => first.or(second),
    }
}

/// Makes every active key of the tenant again from `options` (the read key's rules for read keys, the
/// write key's for write keys), keeping each key's secret; a retiring key keeps its retirement.
async fn rederive_tenant_keys(
    transaction: &mut sqlx::AnyConnection,
    project_id: &str,
    tenancy: &Tenancy,
    tenant_id: &str,
    options: &Map<String, Value>,
    actor: &str,
) -> Result<()> {
    let (read_definition, write_definition) = tenant_key_definitions(tenancy, tenant_id, options)?;
    let audit = KeyChangeAudit {
        project_id,
        action: "update",
        actor,
        token_id: None,
    };
    for key in active_tenant_keys_in(transaction, project_id, tenant_id).await? {
        let template = if key.writes {
            &write_definition
        } else {
            &read_definition
        };
        let definition = AccessKeyDefinition {
            expires_at: if key.retiring {
                earlier(key.expires_at, template.expires_at)
            } else {
                template.expires_at
            },
            ..template.clone()
        };
        change_key_in(
            transaction,
            &audit,
            &key.key_hash,
            async |connection, key_hash| {
                replace_definition_in(connection, key_hash, &definition).await
            },
        )
        .await?;
    }
    Ok(())
}

/// Audits a suspension or resumption on each of the tenant's keys.
async fn record_suspension(
    transaction: &mut sqlx::AnyConnection,
    project_id: &str,
    tenant_id: &str,
    suspended: bool,
    actor: &str,
) -> Result<()> {
    let prefixes: Vec<String> = sqlx::query(
        "SELECT key_prefix FROM project_keys WHERE project_id = $1 AND tenant_id = $2 ORDER BY key_prefix",
    )
    .bind(project_id)
    .bind(tenant_id)
    .fetch_all(&mut *transaction)
    .await?
    .iter()
    .map(|row| row.try_get("key_prefix"))
    .collect::<std::result::Result<_, _>>()?;
    let state = |suspended: bool| json!({"tenant": tenant_id, "suspended": suspended});
    for key_prefix in &prefixes {
        record_key_change(
            transaction,
            KeyChangeRecord {
                project_id,
                action: if suspended { "suspend" } else { "resume" },
                actor,
                key_prefix,
                token_id: None,
                before: Some(state(!suspended)),
                after: Some(state(suspended)),
            },
        )
        .await?;
    }
    Ok(())
}

impl MetaStore {
    /// Renames a tenant, gives it new options (both keys made again from them, secrets kept) and suspends
    /// or resumes it; `None` when the project has no such tenant. A suspended tenant's keys resolve to a
    /// refusal in the grant lookup itself (`grants::grant_of_row`); each change of a key is audited
    /// (`update`, `suspend`, `resume`) and announced as any key change.
    /// [`MetaError::InvalidDefinition`] when the options do not make valid keys.
    pub async fn update_tenant(
        &self,
        project_id: &str,
        tenant_id: &str,
        change: &TenantChange,
        actor: &str,
    ) -> Result<Option<Tenant>> {
        let mut transaction = self.database.begin_write().await?;
        let Some(mut updated) = tenant_in(&mut transaction, project_id, tenant_id).await? else {
            return Ok(None);
        };
        let suspension_changes = change
            .suspended
            .is_some_and(|suspended| suspended != updated.suspended);
        if let Some(name) = &change.name {
            updated.name.clone_from(name);
        }
        if let Some(suspended) = change.suspended {
            updated.suspended = suspended;
        }
        if let Some(options) = &change.options {
            let tenancy = tenancy_of_tenants_in(&mut transaction, project_id).await?;
            rederive_tenant_keys(
                &mut transaction,
                project_id,
                &tenancy,
                tenant_id,
                options,
                actor,
            )
            .await?;
            updated.options.clone_from(options);
        }
        updated.modified_at = now();
        sqlx::query(
            "UPDATE tenants SET name = $1, options = $2, suspended = $3, modified_at = $4 \
             WHERE project_id = $5 AND tenant_id = $6",
        )
        .bind(&updated.name)
        .bind(Value::Object(updated.options.clone()).to_string())
        .bind(i64::from(updated.suspended))
        .bind(&updated.modified_at)
        .bind(project_id)
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        if suspension_changes {
            record_suspension(
                &mut transaction,
                project_id,
                tenant_id,
                updated.suspended,
                actor,
            )
            .await?;
        }
        if suspension_changes || change.options.is_some() {
            self.commit_key_change(transaction, project_id).await?;
        } else {
            transaction.commit().await?;
        }
        Ok(Some(updated))
    }

    /// Gives a tenant a new read key and a new write key (made from its stored options, as at creation)
    /// and sets its current keys to expire `grace_millis` from now (or sooner, if they already expire
    /// sooner), marking them retiring; `None` when the project has no such tenant. One transaction,
    /// audited per key (`rotate` on the old keys, `create` on the new), announced like any key change.
    pub async fn rotate_tenant_keys(
        &self,
        project_id: &str,
        tenant_id: &str,
        grace_millis: i64,
        actor: &str,
    ) -> Result<Option<CreatedTenant>> {
        let mut transaction = self.database.begin_write().await?;
        let Some(tenant) = tenant_in(&mut transaction, project_id, tenant_id).await? else {
            return Ok(None);
        };
        let tenancy = tenancy_of_tenants_in(&mut transaction, project_id).await?;
        let retire_at = chrono::Utc::now()
            .timestamp_millis()
            .saturating_add(grace_millis.max(0));
        for key in active_tenant_keys_in(&mut transaction, project_id, tenant_id).await? {
            let expires_at = earlier(key.expires_at, Some(retire_at));
            sqlx::query(
                "UPDATE project_keys SET expires_at = $1, tenant_retiring = 1 WHERE key_hash = $2",
            )
            .bind(expires_at.map(format_timestamp))
            .bind(key.key_hash.to_hex())
            .execute(&mut *transaction)
            .await?;
            if expires_at == key.expires_at {
                continue;
            }
            record_key_change(
                &mut transaction,
                KeyChangeRecord {
                    project_id,
                    action: "rotate",
                    actor,
                    key_prefix: &key.key_prefix,
                    token_id: None,
                    before: Some(json!({"expires_at": key.expires_at.map(format_timestamp)})),
                    after: Some(json!({"expires_at": expires_at.map(format_timestamp)})),
                },
            )
            .await?;
        }
        let key_definitions = tenant_key_definitions(&tenancy, tenant_id, &tenant.options)?;
        let (read_key, write_key) = insert_tenant_keys(
            &mut transaction,
            project_id,
            tenant_id,
            &key_definitions,
            actor,
        )
        .await?;
        self.commit_key_change(transaction, project_id).await?;
        Ok(Some(CreatedTenant {
            tenant,
            read_key,
            write_key,
        }))
    }

    /// Deletes a tenant: revokes each of its keys (and so their embed tokens; audited `revoke`), unties
    /// them from it and removes it, in one transaction announced as a key change. Its events stay. The
    /// keys revoked; `None` when the project has no such tenant.
    pub async fn delete_tenant(
        &self,
        project_id: &str,
        tenant_id: &str,
        actor: &str,
    ) -> Result<Option<Vec<AccessKey>>> {
        let mut transaction = self.database.begin_write().await?;
        if tenant_in(&mut transaction, project_id, tenant_id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let key_hashes: Vec<String> = sqlx::query(
            "SELECT key_hash FROM project_keys WHERE project_id = $1 AND tenant_id = $2 AND kind = 'access' \
             ORDER BY created_at, key_prefix",
        )
        .bind(project_id)
        .bind(tenant_id)
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(|row| row.try_get("key_hash"))
        .collect::<std::result::Result<_, _>>()?;
        let audit = KeyChangeAudit {
            project_id,
            action: "revoke",
            actor,
            token_id: None,
        };
        let mut revoked = Vec::with_capacity(key_hashes.len());
        for key_hash_hex in &key_hashes {
            let key_hash = KeyHash::from_hex(key_hash_hex)
                .ok_or_else(|| MetaError::Corrupt("key hash".into()))?;
            let key = change_key_in(
                &mut transaction,
                &audit,
                &key_hash,
                async |connection, key_hash| {
                    sqlx::query(
                        "UPDATE project_keys SET is_active = 0, tenant_id = NULL, tenant_retiring = 0 \
                         WHERE key_hash = $1",
                    )
                    .bind(key_hash.to_hex())
                    .execute(connection)
                    .await?;
                    Ok(())
                },
            )
            .await?;
            revoked.extend(key);
        }
        sqlx::query("DELETE FROM tenants WHERE project_id = $1 AND tenant_id = $2")
            .bind(project_id)
            .bind(tenant_id)
            .execute(&mut *transaction)
            .await?;
        self.commit_key_change(transaction, project_id).await?;
        Ok(Some(revoked))
    }
}
