//! Access keys: created, listed, read, replaced, revoked, unrevoked and deleted by the project's master
//! key, and their embed tokens revoked one by one. They live in `project_keys` beside the project's own
//! keys (kind `access`), so one hashed lookup resolves every key. A key is addressed by its secret (Keen's
//! API puts the key in the path); only its hash is stored, so listings show an 8-character prefix.
//!
//! Design: every change goes through [`MetaStore::change_key`]'s shape — one transaction holding the
//! change and its audit entry (key object before and after), then [`MetaStore::key_changed`], which clears
//! the grant cache and calls the change hooks; on PostgreSQL the transaction also notifies the other
//! nodes, which do the same (`key_changes`). No caller has to remember any of it.

use keyhole_model::KeyHash;
use keyhole_model::access::AccessKeyDefinition;
use keyhole_model::embed_token;
use keyhole_model::keys::{display_prefix, generate_secret};
use keyhole_model::timestamp::format_timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{KeyChangeRecord, record_key_change};
use crate::{
    AccessKey, KeyChangeHook, MetaError, MetaStore, Result, now, parse_options, parse_permitted,
};

/// The columns of an access key's object (a macro, so queries stay static strings).
macro_rules! access_key_columns {
    () => {
        "key_prefix, project_id, name, is_active, permitted, options, created_at, expires_at, token_key_id"
    };
}

fn access_key(row: &AnyRow) -> Result<AccessKey> {
    Ok(AccessKey {
        key_prefix: row.try_get("key_prefix")?,
        project_id: row.try_get("project_id")?,
        name: row
            .try_get::<Option<String>, _>("name")?
            .unwrap_or_default(),
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        permitted: parse_permitted(row.try_get("permitted")?)?,
        options: parse_options(row.try_get("options")?)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        embed_key_id: row.try_get("token_key_id")?,
    })
}

fn expires_at_text(definition: &AccessKeyDefinition) -> Option<String> {
    definition.expires_at.map(format_timestamp)
}

fn key_object(key: &AccessKey) -> serde_json::Value {
    serde_json::to_value(key).unwrap_or_default()
}

async fn access_key_in(
    connection: &mut AnyConnection,
    project_id: &str,
    key_hash: &KeyHash,
) -> Result<Option<AccessKey>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        access_key_columns!(),
        " FROM project_keys WHERE key_hash = $1 AND project_id = $2 AND kind = 'access'"
    ))
    .bind(key_hash.to_hex())
    .bind(project_id)
    .fetch_optional(connection)
    .await?;
    row.as_ref().map(access_key).transpose()
}

impl MetaStore {
    /// Registers a hook called after every committed key change (see [`KeyChangeHook`]).
    pub fn on_key_change(&self, hook: KeyChangeHook) {
        self.key_change_hooks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(hook);
    }

    /// After a committed change to one of `project_id`'s keys: forget cached grants (so the next request
    /// sees the change), then tell the hooks.
    pub(crate) async fn key_changed(&self, project_id: &str) {
        self.resolved_keys.invalidate();
        let grants = match self.usable_access_key_grants(project_id).await {
            Ok(grants) => grants,
            Err(error) => {
                tracing::warn!(project_id, %error, "cannot read access keys after a change");
                return;
            }
        };
        let hooks = self
            .key_change_hooks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for hook in hooks.iter() {
            hook(project_id, &grants);
        }
    }

    /// Creates an access key; the secret is returned only here. `actor` is the acting key's prefix.
    pub async fn create_access_key(
        &self,
        project_id: &str,
        definition: &AccessKeyDefinition,
        actor: &str,
    ) -> Result<(AccessKey, String)> {
        let mut transaction = self.database.begin_write().await?;
        let created =
            insert_access_key(&mut transaction, project_id, definition, actor, None).await?;
        self.commit_key_change(transaction, project_id).await?;
        Ok(created)
    }

    /// The access keys tied to one tenant, oldest first.
    pub(crate) async fn access_keys_where_tenant(
        &self,
        project_id: &str,
        tenant_id: &str,
    ) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            access_key_columns!(),
            " FROM project_keys WHERE project_id = $1 AND tenant_id = $2 AND kind = 'access' ORDER BY created_at, key_prefix"
        ))
        .bind(project_id)
        .bind(tenant_id)
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter().map(access_key).collect()
    }

    /// The project's access keys (not its master, write and read keys), by name.
    pub async fn access_keys(&self, project_id: &str) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query(concat!(
        "SELECT ",
        access_key_columns!(),
        " FROM project_keys WHERE project_id = $1 AND kind = 'access' ORDER BY created_at, key_prefix"
    ))
        .bind(project_id)
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter().map(access_key).collect()
    }

    /// The access key with this secret in this project.
    pub async fn access_key(&self, project_id: &str, secret: &str) -> Result<Option<AccessKey>> {
        let mut connection = self.database.pool.acquire().await?;
        access_key_in(&mut connection, project_id, &KeyHash::of_secret(secret)).await
    }

    /// Applies `change` to one access key inside a transaction that also audits it; `None` if there is
    /// no such key. `change` runs against the key's row and answers whether it changed anything.
    async fn change_key(
        &self,
        project_id: &str,
        secret: &str,
        action: &str,
        actor: &str,
        token_id: Option<&str>,
        change: impl AsyncFnOnce(&mut AnyConnection, &KeyHash) -> Result<()>,
    ) -> Result<Option<AccessKey>> {
        let key_hash = KeyHash::of_secret(secret);
        let mut transaction = self.database.begin_write().await?;
        let audit = KeyChangeAudit {
            project_id,
            action,
            actor,
            token_id,
        };
        let Some(changed) = change_key_in(&mut transaction, &audit, &key_hash, change).await?
        else {
            return Ok(None);
        };
        self.commit_key_change(transaction, project_id).await?;
        Ok(Some(changed))
    }

    /// Replaces a key's definition (Keen's update is a full replace); `None` if there is no such key.
    pub async fn update_access_key(
        &self,
        project_id: &str,
        secret: &str,
        definition: &AccessKeyDefinition,
        actor: &str,
    ) -> Result<Option<AccessKey>> {
        let options = stored_options(definition, secret)?;
        self.change_key(project_id, secret, "update", actor, None, async |connection, key_hash| {
            sqlx::query("UPDATE project_keys SET name = $1, is_active = $2, permitted = $3, options = $4, expires_at = $5 WHERE key_hash = $6")
                .bind(&definition.name)
                .bind(i64::from(definition.is_active))
                .bind(definition.permitted_names().to_string())
                .bind(options.to_string())
                .bind(expires_at_text(definition))
                .bind(key_hash.to_hex())
                .execute(connection)
                .await?;
            Ok(())
        })
        .await
    }

    /// Revokes (`false`) or unrevokes (`true`) a key; `None` if there is no such key.
    pub async fn set_access_key_active(
        &self,
        project_id: &str,
        secret: &str,
        is_active: bool,
        actor: &str,
    ) -> Result<Option<AccessKey>> {
        let action = if is_active { "unrevoke" } else { "revoke" };
        self.change_key(
            project_id,
            secret,
            action,
            actor,
            None,
            async |connection, key_hash| {
                sqlx::query("UPDATE project_keys SET is_active = $1 WHERE key_hash = $2")
                    .bind(i64::from(is_active))
                    .bind(key_hash.to_hex())
                    .execute(connection)
                    .await?;
                Ok(())
            },
        )
        .await
    }

    /// Deletes a key and its token revocations; false if there was none.
    pub async fn delete_access_key(
        &self,
        project_id: &str,
        secret: &str,
        actor: &str,
    ) -> Result<bool> {
        let deleted = self
            .change_key(
                project_id,
                secret,
                "delete",
                actor,
                None,
                async |connection, key_hash| {
                    sqlx::query("DELETE FROM revoked_tokens WHERE key_hash = $1")
                        .bind(key_hash.to_hex())
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("DELETE FROM project_keys WHERE key_hash = $1")
                        .bind(key_hash.to_hex())
                        .execute(&mut *connection)
                        .await?;
                    Ok(())
                },
            )
            .await?;
        Ok(deleted.is_some())
    }

    /// Revokes one embed token of a key by its `jti`; `None` if there is no such key. Revoking twice is
    /// not an error.
    pub async fn revoke_token(
        &self,
        project_id: &str,
        secret: &str,
        token_id: &str,
        actor: &str,
    ) -> Result<Option<AccessKey>> {
        self.change_key(project_id, secret, "revoke_token", actor, Some(token_id), async |connection, key_hash| {
            sqlx::query("INSERT INTO revoked_tokens (key_hash, token_id, revoked_at) VALUES ($1, $2, $3) ON CONFLICT (key_hash, token_id) DO NOTHING")
                .bind(key_hash.to_hex())
                .bind(token_id)
                .bind(now())
                .execute(connection)
                .await?;
            Ok(())
        })
        .await
    }
}

/// How a key change is audited: its project, action, actor and (for a token revocation) token.
pub(crate) struct KeyChangeAudit<'a> {
    pub project_id: &'a str,
    pub action: &'a str,
    pub actor: &'a str,
    pub token_id: Option<&'a str>,
}

/// Applies `change` to one access key of the project inside `transaction`, with its audit entry (the key
/// object before and after); the caller notifies and commits. `None` when the project has no such key.
pub(crate) async fn change_key_in(
    transaction: &mut AnyConnection,
    audit: &KeyChangeAudit<'_>,
    key_hash: &KeyHash,
    change: impl AsyncFnOnce(&mut AnyConnection, &KeyHash) -> Result<()>,
) -> Result<Option<AccessKey>> {
    let Some(before) = access_key_in(transaction, audit.project_id, key_hash).await? else {
        return Ok(None);
    };
    change(transaction, key_hash).await?;
    let after = access_key_in(transaction, audit.project_id, key_hash).await?;
    record_key_change(
        transaction,
        KeyChangeRecord {
            project_id: audit.project_id,
            action: audit.action,
            actor: audit.actor,
            key_prefix: &before.key_prefix,
            token_id: audit.token_id,
            before: Some(key_object(&before)),
            after: after.as_ref().map(key_object),
        },
    )
    .await?;
    Ok(Some(after.unwrap_or(before)))
}

/// Replaces a key's name, permissions, options and expiry inside the caller's transaction, for a
/// definition without a webhook (whose secret would be sealed under the key's secret, which is not at
/// hand): tenant keys, made from options that cannot hold one.
pub(crate) async fn replace_definition_in(
    connection: &mut AnyConnection,
    key_hash: &KeyHash,
    definition: &AccessKeyDefinition,
) -> Result<()> {
    if !definition.options_json["writes"]["webhook"].is_null() {
        return Err(MetaError::InvalidDefinition(
            "a key with a webhook is replaced through its secret".into(),
        ));
    }
    sqlx::query("UPDATE project_keys SET name = $1, permitted = $2, options = $3, expires_at = $4 WHERE key_hash = $5")
        .bind(&definition.name)
        .bind(definition.permitted_names().to_string())
        .bind(definition.options_json.to_string())
        .bind(expires_at_text(definition))
        .bind(key_hash.to_hex())
        .execute(connection)
        .await?;
    Ok(())
}

/// Stores a new access key with its audit entry inside `transaction` (the caller notifies and commits);
/// `tenant_id` ties it to a tenant. Answers the key and its secret, which is never stored.
pub(crate) async fn insert_access_key(
    transaction: &mut AnyConnection,
    project_id: &str,
    definition: &AccessKeyDefinition,
    actor: &str,
    tenant_id: Option<&str>,
) -> Result<(AccessKey, String)> {
    let secret = generate_secret();
    let key_hash = KeyHash::of_secret(&secret);
    let options = stored_options(definition, &secret)?;
    sqlx::query(
        "INSERT INTO project_keys (key_hash, key_prefix, project_id, kind, is_active, created_at, name, permitted, options, expires_at, token_key_id, tenant_id) \
         VALUES ($1, $2, $3, 'access', $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(key_hash.to_hex())
    .bind(display_prefix(&secret))
    .bind(project_id)
    .bind(i64::from(definition.is_active))
    .bind(now())
    .bind(&definition.name)
    .bind(definition.permitted_names().to_string())
    .bind(options.to_string())
    .bind(expires_at_text(definition))
    .bind(embed_token::key_id_of_secret(&secret))
    .bind(tenant_id)
    .execute(&mut *transaction)
    .await?;
    let key = access_key_in(transaction, project_id, &key_hash)
        .await?
        .ok_or_else(|| MetaError::Corrupt("access key vanished".into()))?;
    record_key_change(
        transaction,
        KeyChangeRecord {
            project_id,
            action: "create",
            actor,
            key_prefix: &key.key_prefix,
            token_id: None,
            before: None,
            after: Some(key_object(&key)),
        },
    )
    .await?;
    Ok((key, secret))
}

/// The options JSON as stored: a webhook secret given in clear is sealed under the key's secret.
fn stored_options(definition: &AccessKeyDefinition, secret: &str) -> Result<serde_json::Value> {
    keyhole_model::webhook::seal_options(&definition.options_json, secret)
        .map_err(|error| MetaError::InvalidDefinition(error.to_string()))
}
