//! Tenants (`keyhole_model::tenant`): a project's tenancy property, its tenants, and which access keys
//! belong to which tenant (`project_keys.tenant_id`).
//!
//! Design: a tenant and its two keys are created in one transaction with the keys' audit entries, so a
//! tenant never exists without its keys, nor a tenant's key without its tenant; the other nodes hear of
//! the new keys as of any key change. The tenancy property cannot change while the project has tenants:
//! their keys' filters and autofill name it, and changing it under them would leave keys filtering on a
//! property the project no longer uses for tenants.

use keyhole_model::tenant::{
    Tenancy, TenantChange, TenantDefinition, read_key_definition, write_key_definition,
};
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::access_keys::insert_access_key;
use crate::audit::{KeyChangeRecord, record_key_change};
use crate::key_changes::notify_key_change;
use crate::{AccessKey, MetaError, MetaStore, Result, now};

/// Most tenants one list page holds.
pub const MAX_TENANT_PAGE: usize = 100;

/// A stored tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    /// Unique in its project.
    pub id: String,
    /// For people.
    pub name: String,
    /// The options its keys were made with (`keyhole_model::tenant`).
    pub options: Map<String, Value>,
    /// Whether its keys are refused.
    pub suspended: bool,
    /// When it was created (ISO-8601, UTC).
    pub created_at: String,
    /// When it last changed (ISO-8601, UTC).
    pub modified_at: String,
}

/// A new tenant with its two keys and their secrets, which are shown only here.
#[derive(Clone, Debug)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: Tenant,
    /// The read key and its secret.
    pub read_key: (AccessKey, String),
    /// The write key and its secret.
    pub write_key: (AccessKey, String),
}

fn tenant(row: &AnyRow) -> Result<Tenant> {
    let options_text: String = row.try_get("options")?;
    let Ok(Value::Object(options)) = serde_json::from_str(&options_text) else {
        return Err(MetaError::Corrupt("tenant options".into()));
    };
    Ok(Tenant {
        id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        options,
        suspended: row.try_get::<i64, _>("suspended")? != 0,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
    })
}

macro_rules! select_tenants {
    ($rest:literal) => {
        concat!(
            "SELECT tenant_id, name, options, suspended, created_at, modified_at FROM tenants ",
            $rest
        )
    };
}

/// One tenant of the project as stored, read through `connection` (inside its transaction, if any).
async fn tenant_in(
    connection: &mut sqlx::AnyConnection,
    project_id: &str,
    tenant_id: &str,
) -> Result<Option<Tenant>> {
    let row = sqlx::query(select_tenants!("WHERE project_id = $1 AND tenant_id = $2"))
        .bind(project_id)
        .bind(tenant_id)
        .fetch_optional(connection)
        .await?;
    row.as_ref().map(tenant).transpose()
}

/// The project's tenancy property as stored, read inside `connection`'s transaction.
async fn tenancy_property_in(
    connection: &mut sqlx::AnyConnection,
    project_id: &str,
) -> Result<Option<String>> {
    let row = sqlx::query("SELECT property FROM project_tenancy WHERE project_id = $1")
        .bind(project_id)
        .fetch_optional(connection)
        .await?;
    Ok(row.map(|row| row.try_get("property")).transpose()?)
}

/// Builds a tenant's read and write keys from its options (see `keyhole_model::tenant`) and stores them,
/// tied to the tenant, inside `transaction`; a definition the key rules refuse is
/// [`MetaError::InvalidDefinition`].
async fn insert_tenant_keys(
    transaction: &mut sqlx::AnyConnection,
    project_id: &str,
    tenancy: &Tenancy,
    tenant_id: &str,
    options: &Map<String, Value>,
    actor: &str,
) -> Result<((AccessKey, String), (AccessKey, String))> {
    let invalid =
        |error: keyhole_model::tenant::TenantDefinitionError| MetaError::InvalidDefinition(error.0);
    let read_definition = read_key_definition(tenancy, tenant_id, options).map_err(invalid)?;
    let write_definition = write_key_definition(tenancy, tenant_id, options).map_err(invalid)?;
    let read_key = insert_access_key(
        transaction,
        project_id,
        &read_definition,
        actor,
        Some(tenant_id),
    )
    .await?;
    let write_key = insert_access_key(
        transaction,
        project_id,
        &write_definition,
        actor,
        Some(tenant_id),
    )
    .await?;
    Ok((read_key, write_key))
}

impl MetaStore {
    /// The project's tenancy, if one was set.
    pub async fn tenancy(&self, project_id: &str) -> Result<Option<Tenancy>> {
        let row = sqlx::query("SELECT property FROM project_tenancy WHERE project_id = $1")
            .bind(project_id)
            .fetch_optional(&self.database.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let property: String = row.try_get("property")?;
        Tenancy::new(&property)
            .map(Some)
            .map_err(|_| MetaError::Corrupt("tenancy property".into()))
    }

    /// Sets the project's tenancy; [`MetaError::Conflict`] when it would change while tenants exist.
    pub async fn set_tenancy(&self, project_id: &str, tenancy: &Tenancy) -> Result<()> {
        let mut transaction = self.database.begin_write().await?;
        let current = tenancy_property_in(&mut transaction, project_id).await?;
        if current.as_deref() == Some(tenancy.property.as_str()) {
            return Ok(());
        }
        let tenants: i64 =
            sqlx::query("SELECT COUNT(*) AS tenants FROM tenants WHERE project_id = $1")
                .bind(project_id)
                .fetch_one(&mut *transaction)
                .await?
                .try_get("tenants")?;
        if tenants > 0 {
            return Err(MetaError::Conflict(format!(
                "The tenancy property cannot change while the project has tenants ({tenants}): their keys filter and stamp {:?}.",
                current.unwrap_or_default()
            )));
        }
        sqlx::query(
            "INSERT INTO project_tenancy (project_id, property, modified_at) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id) DO UPDATE SET property = excluded.property, modified_at = excluded.modified_at",
        )
        .bind(project_id)
        .bind(&tenancy.property)
        .bind(now())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Creates a tenant and its read and write keys (see `keyhole_model::tenant`). [`MetaError::Conflict`]
    /// when the project has no tenancy yet or already has a tenant with this id;
    /// [`MetaError::InvalidDefinition`] when the options do not make valid keys.
    pub async fn create_tenant(
        &self,
        project_id: &str,
        definition: &TenantDefinition,
        actor: &str,
    ) -> Result<CreatedTenant> {
        let tenancy = self.tenancy(project_id).await?.ok_or_else(|| {
            MetaError::Conflict(
                "The project has no tenancy property yet: set one with PUT /3.0/projects/{project_id}/tenancy first.".into(),
            )
        })?;
        // Both keys are checked before anything is stored (the transaction would roll back anyway).
        read_key_definition(&tenancy, &definition.id, &definition.options)
            .and_then(|_| write_key_definition(&tenancy, &definition.id, &definition.options))
            .map_err(|error| MetaError::InvalidDefinition(error.0))?;
        let mut transaction = self.database.begin_write().await?;
        // The tenancy is read again inside the transaction: a change between the two reads is refused.
        let property_now = tenancy_property_in(&mut transaction, project_id).await?;
        if property_now.as_deref() != Some(tenancy.property.as_str()) {
            return Err(MetaError::Conflict(
                "The tenancy property changed while the tenant was being created; retry.".into(),
            ));
        }
        let created_at = now();
        let inserted = sqlx::query(
            "INSERT INTO tenants (project_id, tenant_id, name, options, suspended, created_at, modified_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5) ON CONFLICT (project_id, tenant_id) DO NOTHING",
        )
        .bind(project_id)
        .bind(&definition.id)
        .bind(&definition.name)
        .bind(Value::Object(definition.options.clone()).to_string())
        .bind(&created_at)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(MetaError::Conflict(format!(
                "The project already has a tenant {:?}.",
                definition.id
            )));
        }
        let (read_key, write_key) = insert_tenant_keys(
            &mut transaction,
            project_id,
            &tenancy,
            &definition.id,
            &definition.options,
            actor,
        )
        .await?;
        notify_key_change(self, &mut transaction, project_id).await?;
        transaction.commit().await?;
        self.key_changed(project_id).await;
        Ok(CreatedTenant {
            tenant: Tenant {
                id: definition.id.clone(),
                name: definition.name.clone(),
                options: definition.options.clone(),
                suspended: false,
                created_at: created_at.clone(),
                modified_at: created_at,
            },
            read_key,
            write_key,
        })
    }

    /// Renames a tenant and suspends or resumes it; `None` when the project has no such tenant. A change
    /// of suspension is a change of the tenant's keys: each is audited (`suspend` / `resume`) and the change
    /// is announced as any key change, so every node drops its cached grants before its next request (a
    /// suspended tenant's keys resolve to a refusal in the grant lookup itself, `grants::grant_of_row`).
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
        updated.modified_at = now();
        sqlx::query(
            "UPDATE tenants SET name = $1, suspended = $2, modified_at = $3 WHERE project_id = $4 AND tenant_id = $5",
        )
        .bind(&updated.name)
        .bind(i64::from(updated.suspended))
        .bind(&updated.modified_at)
        .bind(project_id)
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        if suspension_changes {
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
            let state =
                |suspended: bool| serde_json::json!({"tenant": tenant_id, "suspended": suspended});
            for key_prefix in &prefixes {
                record_key_change(
                    &mut transaction,
                    KeyChangeRecord {
                        project_id,
                        action: if updated.suspended {
                            "suspend"
                        } else {
                            "resume"
                        },
                        actor,
                        key_prefix,
                        token_id: None,
                        before: Some(state(!updated.suspended)),
                        after: Some(state(updated.suspended)),
                    },
                )
                .await?;
            }
            notify_key_change(self, &mut transaction, project_id).await?;
        }
        transaction.commit().await?;
        if suspension_changes {
            self.key_changed(project_id).await;
        }
        Ok(Some(updated))
    }

    /// Gives a tenant a new read key and a new write key (made from its stored options, as at creation)
    /// and sets its current keys to expire `grace_millis` from now (or sooner, if they already expire
    /// sooner); `None` when the project has no such tenant. One transaction, audited per key (`rotate` on
    /// the old keys, `create` on the new), announced like any key change.
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
        let property = tenancy_property_in(&mut transaction, project_id)
            .await?
            .ok_or_else(|| MetaError::Corrupt("a tenant without a tenancy property".into()))?;
        let tenancy =
            Tenancy::new(&property).map_err(|_| MetaError::Corrupt("tenancy property".into()))?;
        let now_millis = chrono::Utc::now().timestamp_millis();
        let retire_at = now_millis.saturating_add(grace_millis.max(0));
        let current = sqlx::query(
            "SELECT key_hash, key_prefix, expires_at FROM project_keys \
             WHERE project_id = $1 AND tenant_id = $2 AND kind = 'access' AND is_active = 1",
        )
        .bind(project_id)
        .bind(tenant_id)
        .fetch_all(&mut *transaction)
        .await?;
        for key in &current {
            let key_hash: String = key.try_get("key_hash")?;
            let key_prefix: String = key.try_get("key_prefix")?;
            let expires_at: Option<String> = key.try_get("expires_at")?;
            let expires_millis = match expires_at.as_deref() {
                None => None,
                Some(text) => Some(
                    keyhole_model::timestamp::parse_timestamp(text)
                        .ok_or_else(|| MetaError::Corrupt("key expiry".into()))?,
                ),
            };
            if expires_millis.is_some_and(|expiry| expiry <= retire_at) {
                continue;
            }
            let retire_text = keyhole_model::timestamp::format_timestamp(retire_at);
            sqlx::query("UPDATE project_keys SET expires_at = $1 WHERE key_hash = $2")
                .bind(&retire_text)
                .bind(&key_hash)
                .execute(&mut *transaction)
                .await?;
            record_key_change(
                &mut transaction,
                KeyChangeRecord {
                    project_id,
                    action: "rotate",
                    actor,
                    key_prefix: &key_prefix,
                    token_id: None,
                    before: Some(serde_json::json!({"expires_at": expires_at})),
                    after: Some(serde_json::json!({"expires_at": retire_text})),
                },
            )
            .await?;
        }
        let (read_key, write_key) = insert_tenant_keys(
            &mut transaction,
            project_id,
            &tenancy,
            tenant_id,
            &tenant.options,
            actor,
        )
        .await?;
        notify_key_change(self, &mut transaction, project_id).await?;
        transaction.commit().await?;
        self.key_changed(project_id).await;
        Ok(Some(CreatedTenant {
            tenant,
            read_key,
            write_key,
        }))
    }

    /// Up to `limit` tenants whose ids sort after `after_id` (byte order), by id; `limit` may be one more
    /// than a page ([`MAX_TENANT_PAGE`]), so a caller can tell whether another page follows.
    pub async fn tenants_page(
        &self,
        project_id: &str,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(select_tenants!(
            "WHERE project_id = $1 AND tenant_id > $2 ORDER BY tenant_id LIMIT $3"
        ))
        .bind(project_id)
        .bind(after_id)
        .bind(i64::try_from(limit.clamp(1, MAX_TENANT_PAGE + 1)).unwrap_or(1))
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter().map(tenant).collect()
    }

    /// One tenant of the project, if it exists.
    pub async fn tenant(&self, project_id: &str, tenant_id: &str) -> Result<Option<Tenant>> {
        let mut connection = self.database.pool.acquire().await?;
        tenant_in(&mut connection, project_id, tenant_id).await
    }

    /// The access keys of one tenant (metadata only: secrets are never stored), oldest first.
    pub async fn tenant_keys(&self, project_id: &str, tenant_id: &str) -> Result<Vec<AccessKey>> {
        self.access_keys_where_tenant(project_id, tenant_id).await
    }
}
