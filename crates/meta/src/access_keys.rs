//! Access keys: created, listed, read, replaced, revoked, unrevoked and deleted by the project's master
//! key. They live in `project_keys` beside the project's own keys (kind `access`), so one hashed lookup
//! resolves every key. A key is addressed by its secret (Keen's API puts the key in the path); only its
//! hash is stored, so listings show an 8-character prefix instead of the secret.

use keyhole_model::KeyHash;
use keyhole_model::access::AccessKeyDefinition;
use keyhole_model::keys::{display_prefix, generate_secret};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{AccessKey, MetaError, MetaStore, Result, now, parse_options, parse_permitted};

fn access_key(row: &SqliteRow) -> Result<AccessKey> {
    Ok(AccessKey {
        key_prefix: row.get("key_prefix"),
        project_id: row.get("project_id"),
        name: row.get::<Option<String>, _>("name").unwrap_or_default(),
        is_active: row.get::<i64, _>("is_active") != 0,
        permitted: parse_permitted(row.get("permitted"))?,
        options: parse_options(row.get("options"))?,
        created_at: row.get("created_at"),
    })
}

fn permitted_json(definition: &AccessKeyDefinition) -> String {
    definition.permitted_names().to_string()
}

impl MetaStore {
    /// Creates an access key; the secret is returned only here.
    pub async fn create_access_key(
        &self,
        project_id: &str,
        definition: &AccessKeyDefinition,
    ) -> Result<(AccessKey, String)> {
        let secret = generate_secret();
        sqlx::query(
            "INSERT INTO project_keys (key_hash, key_prefix, project_id, kind, is_active, created_at, name, permitted, options) \
             VALUES (?, ?, ?, 'access', ?, ?, ?, ?, ?)",
        )
        .bind(KeyHash::of_secret(&secret).to_hex())
        .bind(display_prefix(&secret))
        .bind(project_id)
        .bind(definition.is_active as i64)
        .bind(now())
        .bind(&definition.name)
        .bind(permitted_json(definition))
        .bind(definition.options.to_string())
        .execute(&self.pool)
        .await?;
        let key = self
            .access_key(project_id, &secret)
            .await?
            .ok_or_else(|| MetaError::Corrupt("access key vanished".into()))?;
        Ok((key, secret))
    }

    pub async fn access_keys(&self, project_id: &str) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query(
            "SELECT key_prefix, project_id, name, is_active, permitted, options, created_at FROM project_keys \
             WHERE project_id = ? AND kind = 'access' ORDER BY created_at, key_prefix",
        )
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(access_key).collect()
    }

    /// The access key with this secret in this project.
    pub async fn access_key(&self, project_id: &str, secret: &str) -> Result<Option<AccessKey>> {
        let row = sqlx::query(
            "SELECT key_prefix, project_id, name, is_active, permitted, options, created_at FROM project_keys \
             WHERE key_hash = ? AND project_id = ? AND kind = 'access'",
        )
            .bind(KeyHash::of_secret(secret).to_hex())
            .bind(project_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(access_key).transpose()
    }

    /// Replaces a key's definition (Keen's update is a full replace); `None` if there is no such key.
    pub async fn update_access_key(
        &self,
        project_id: &str,
        secret: &str,
        definition: &AccessKeyDefinition,
    ) -> Result<Option<AccessKey>> {
        let updated = sqlx::query("UPDATE project_keys SET name = ?, is_active = ?, permitted = ?, options = ? WHERE key_hash = ? AND project_id = ? AND kind = 'access'")
            .bind(&definition.name)
            .bind(definition.is_active as i64)
            .bind(permitted_json(definition))
            .bind(definition.options.to_string())
            .bind(KeyHash::of_secret(secret).to_hex())
            .bind(project_id)
            .execute(&self.pool)
            .await?;
        self.after_key_change(project_id, secret, updated.rows_affected())
            .await
    }

    /// Revokes (`false`) or unrevokes (`true`) a key; `None` if there is no such key.
    pub async fn set_access_key_active(
        &self,
        project_id: &str,
        secret: &str,
        is_active: bool,
    ) -> Result<Option<AccessKey>> {
        let updated = sqlx::query("UPDATE project_keys SET is_active = ? WHERE key_hash = ? AND project_id = ? AND kind = 'access'")
            .bind(is_active as i64)
            .bind(KeyHash::of_secret(secret).to_hex())
            .bind(project_id)
            .execute(&self.pool)
            .await?;
        self.after_key_change(project_id, secret, updated.rows_affected())
            .await
    }

    /// After a committed UPDATE that touched `rows` rows: forgets cached key resolutions (so the next
    /// request sees the change) and returns the key as stored now, `None` when there was no such key.
    async fn after_key_change(
        &self,
        project_id: &str,
        secret: &str,
        rows: u64,
    ) -> Result<Option<AccessKey>> {
        self.resolved_keys.invalidate();
        if rows == 0 {
            return Ok(None);
        }
        self.access_key(project_id, secret).await
    }

    /// Deletes a key; false if there was none.
    pub async fn delete_access_key(&self, project_id: &str, secret: &str) -> Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM project_keys WHERE key_hash = ? AND project_id = ? AND kind = 'access'",
        )
        .bind(KeyHash::of_secret(secret).to_hex())
        .bind(project_id)
        .execute(&self.pool)
        .await?;
        self.resolved_keys.invalidate();
        Ok(deleted.rows_affected() > 0)
    }
}
