//! Dashboard definitions, per project: the JSON `keyhole_model::dashboard` validated, with creation and
//! modification times. A dashboard names saved queries by name; deleting a saved query leaves the
//! dashboard's tile to answer `404` when it runs, as a saved query's result would.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{MetaError, MetaStore, Result, now};

/// Most dashboards one list holds.
pub const MAX_DASHBOARDS_LISTED: usize = 1000;

/// A stored dashboard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dashboard {
    /// Its name, unique in the project.
    pub name: String,
    /// The definition as validated (`keyhole_model::dashboard`).
    pub definition: serde_json::Value,
    /// When it was created (ISO-8601, UTC).
    pub created_at: String,
    /// When it was last replaced (ISO-8601, UTC).
    pub modified_at: String,
}

fn dashboard(row: &AnyRow) -> Result<Dashboard> {
    let text: String = row.try_get("definition")?;
    Ok(Dashboard {
        name: row.try_get("name")?,
        definition: serde_json::from_str(&text)
            .map_err(|_| MetaError::Corrupt("dashboard definition".into()))?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
    })
}

impl MetaStore {
    /// Creates or replaces a dashboard; whether it was new, and the stored dashboard.
    pub async fn put_dashboard(
        &self,
        project_id: &str,
        name: &str,
        definition: &serde_json::Value,
    ) -> Result<(bool, Dashboard)> {
        let modified = now();
        let mut transaction = self.database.begin_write().await?;
        let existing: Option<String> =
            sqlx::query("SELECT created_at FROM dashboards WHERE project_id = $1 AND name = $2")
                .bind(project_id)
                .bind(name)
                .fetch_optional(&mut *transaction)
                .await?
                .map(|row| row.try_get("created_at"))
                .transpose()?;
        let created = existing.clone().unwrap_or_else(|| modified.clone());
        sqlx::query(
            "INSERT INTO dashboards (project_id, name, definition, created_at, modified_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (project_id, name) DO UPDATE SET definition = excluded.definition, modified_at = excluded.modified_at",
        )
        .bind(project_id)
        .bind(name)
        .bind(definition.to_string())
        .bind(&created)
        .bind(&modified)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((
            existing.is_none(),
            Dashboard {
                name: name.to_string(),
                definition: definition.clone(),
                created_at: created,
                modified_at: modified,
            },
        ))
    }

    /// The project's dashboards, by name (at most [`MAX_DASHBOARDS_LISTED`]).
    pub async fn dashboards(&self, project_id: &str) -> Result<Vec<Dashboard>> {
        let rows = sqlx::query(
            "SELECT name, definition, created_at, modified_at FROM dashboards WHERE project_id = $1 ORDER BY name LIMIT $2",
        )
        .bind(project_id)
        .bind(MAX_DASHBOARDS_LISTED as i64)
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter().map(dashboard).collect()
    }

    /// One dashboard of the project, if it exists.
    pub async fn dashboard(&self, project_id: &str, name: &str) -> Result<Option<Dashboard>> {
        let row = sqlx::query(
            "SELECT name, definition, created_at, modified_at FROM dashboards WHERE project_id = $1 AND name = $2",
        )
        .bind(project_id)
        .bind(name)
        .fetch_optional(&self.database.pool)
        .await?;
        row.as_ref().map(dashboard).transpose()
    }

    /// Deletes a dashboard; false when there was none.
    pub async fn delete_dashboard(&self, project_id: &str, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM dashboards WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.database.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The web origins of the project's access key whose embed key id (`kid`, public) is `embed_key_id`,
    /// revoked or not: who may frame a page showing that key's data. `None` when no key has that id; an
    /// empty list when the key names no origins.
    pub async fn embed_key_origins(
        &self,
        project_id: &str,
        embed_key_id: &str,
    ) -> Result<Option<Vec<String>>> {
        let row = sqlx::query(
            "SELECT options FROM project_keys WHERE project_id = $1 AND token_key_id = $2 AND kind = 'access'",
        )
        .bind(project_id)
        .bind(embed_key_id)
        .fetch_optional(&self.database.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let options = crate::parse_options(row.try_get("options")?)?;
        let origins = match options.get("origins") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(origins)) => origins
                .iter()
                .map(|origin| {
                    origin
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| MetaError::Corrupt("key origins".into()))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(MetaError::Corrupt("key origins".into())),
        };
        Ok(Some(origins))
    }
}
