//! Tenants (`keyhole_model::tenant`): a project's tenancy property, its tenants, and which access keys
//! belong to which tenant (`project_keys.tenant_id`).
//!
//! Design: a tenant and its two keys are created in one transaction with the keys' audit entries, so a
//! tenant never exists without its keys, nor a tenant's key without its tenant; the other nodes hear of
//! the new keys as of any key change. The tenancy property cannot change while the project has tenants:
//! their keys' filters and autofill name it, and changing it under them would leave keys filtering on a
//! property the project no longer uses for tenants.

use keyhole_model::access::AccessKeyDefinition;
use keyhole_model::tenant::{Tenancy, TenantDefinition, read_key_definition, write_key_definition};
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::access_keys::insert_access_key;
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

pub(crate) fn tenant(row: &AnyRow) -> Result<Tenant> {
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
pub(crate) async fn tenant_in(
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
pub(crate) async fn tenancy_property_in(
    connection: &mut sqlx::AnyConnection,
    project_id: &str,
) -> Result<Option<String>> {
    let row = sqlx::query("SELECT property FROM project_tenancy WHERE project_id = $1")
        .bind(project_id)
        .fetch_optional(connection)
        .await?;
    Ok(row.map(|row| row.try_get("property")).transpose()?)
}

/// The tenancy of a project that has tenants, read inside `connection`'s transaction.
pub(crate) async fn tenancy_of_tenants_in(
    connection: &mut sqlx::AnyConnection,
    project_id: &str,
) -> Result<Tenancy> {
    let property = tenancy_property_in(connection, project_id)
        .await?
        .ok_or_else(|| MetaError::Corrupt("a tenant without a tenancy property".into()))?;
    Tenancy::new(&property).map_err(|_| MetaError::Corrupt("tenancy property".into()))
}

/// A tenant's read and write key definitions, made from its options (see `keyhole_model::tenant`); options
/// the key rules refuse are [`MetaError::InvalidDefinition`].
pub(crate) fn tenant_key_definitions(
    tenancy: &Tenancy,
    tenant_id: &str,
    options: &Map<String, Value>,
) -> Result<(AccessKeyDefinition, AccessKeyDefinition)> {
    let invalid =
        |error: keyhole_model::tenant::TenantDefinitionError| MetaError::InvalidDefinition(error.0);
    Ok((
        read_key_definition(tenancy, tenant_id, options).map_err(invalid)?,
        write_key_definition(tenancy, tenant_id, options).map_err(invalid)?,
    ))
}

/// Stores a tenant's read and write keys ([`tenant_key_definitions`]), tied to the tenant, inside
/// `transaction`; the keys with their secrets.
pub(crate) async fn insert_tenant_keys(
    transaction: &mut sqlx::AnyConnection,
    project_id: &str,
    tenant_id: &str,
    (read_definition, write_definition): &(AccessKeyDefinition, AccessKeyDefinition),
    actor: &str,
) -> Result<((AccessKey, String), (AccessKey, String))> {
    let tied = Some(tenant_id);
    let read_key = insert_access_key(transaction, project_id, read_definition, actor, tied).await?;
    let write_key =
        insert_access_key(transaction, project_id, write_definition, actor, tied).await?;
    Ok((read_key, write_key))
}

impl MetaStore {
    /// The project's tenancy, if one was set.
    pub async fn tenancy(&self, project_id: &str) -> Result<Option<Tenancy>> {
        let mut connection = self.database.pool.acquire().await?;
        let Some(property) = tenancy_property_in(&mut connection, project_id).await? else {
            return Ok(None);
        };
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
        // Both keys are made before anything is stored.
        let key_definitions =
            tenant_key_definitions(&tenancy, &definition.id, &definition.options)?;
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
            &definition.id,
            &key_definitions,
            actor,
        )
        .await?;
        self.commit_key_change(transaction, project_id).await?;
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
