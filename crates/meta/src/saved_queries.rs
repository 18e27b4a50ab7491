//! Saved queries (Keen's `/queries/saved`), per project: the query object as given, its metadata and
//! refresh rate, with creation and modification times. The definition was validated by
//! `model::saved_query` before it reaches this store.

use keyhole_model::saved_query::SavedQueryDefinition;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{MetaError, MetaStore, Result, now};

/// A stored saved query, as Keen's API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavedQuery {
    /// Its name, unique in the project.
    pub query_name: String,
    /// Seconds between refreshes of its cached result (0: computed live).
    pub refresh_rate: u64,
    /// The query, as stored (validated when saved).
    pub query: serde_json::Value,
    /// The caller's metadata, returned as given.
    pub metadata: serde_json::Value,
    /// When it was created (ISO-8601, UTC).
    pub created_date: String,
    /// When it was last replaced (ISO-8601, UTC).
    pub last_modified_date: String,
}

/// What a `PUT` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavedQueryWrite {
    /// The name was new.
    Created,
    /// An existing saved query was replaced.
    Replaced,
    /// `query_name` named another saved query that already exists.
    NameTaken,
}

fn saved_query(row: &AnyRow) -> Result<SavedQuery> {
    let json = |column: &str| -> Result<serde_json::Value> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|_| MetaError::Corrupt(format!("saved query {column}")))
    };
    Ok(SavedQuery {
        query_name: row.try_get("name")?,
        refresh_rate: u64::try_from(row.try_get::<i64, _>("refresh_rate")?).unwrap_or(0),
        query: json("query_json")?,
        metadata: json("metadata_json")?,
        created_date: row.try_get("created_at")?,
        last_modified_date: row.try_get("modified_at")?,
    })
}

impl MetaStore {
    /// Creates or fully replaces the saved query at `path_name`; a different `definition.name` renames
    /// it (refused when that name is taken).
    pub async fn put_saved_query(
        &self,
        project_id: &str,
        path_name: &str,
        definition: &SavedQueryDefinition,
    ) -> Result<(SavedQueryWrite, Option<SavedQuery>)> {
        let mut transaction = self.database.begin_write().await?;
        let existing: Option<String> =
            sqlx::query("SELECT created_at FROM saved_queries WHERE project_id = $1 AND name = $2")
                .bind(project_id)
                .bind(path_name)
                .fetch_optional(&mut *transaction)
                .await?
                .map(|row| row.try_get("created_at"))
                .transpose()?;
        if definition.name != path_name {
            let taken =
                sqlx::query("SELECT 1 FROM saved_queries WHERE project_id = $1 AND name = $2")
                    .bind(project_id)
                    .bind(&definition.name)
                    .fetch_optional(&mut *transaction)
                    .await?;
            if taken.is_some() {
                return Ok((SavedQueryWrite::NameTaken, None));
            }
        }
        sqlx::query("DELETE FROM saved_queries WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(path_name)
            .execute(&mut *transaction)
            .await?;
        let modified = now();
        let created = existing.clone().unwrap_or_else(|| modified.clone());
        sqlx::query(
            "INSERT INTO saved_queries (project_id, name, query_json, metadata_json, refresh_rate, created_at, modified_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(project_id)
        .bind(&definition.name)
        .bind(serde_json::Value::Object(definition.query_json.clone()).to_string())
        .bind(definition.metadata.to_string())
        .bind(i64::try_from(definition.refresh_rate).unwrap_or(i64::MAX))
        .bind(&created)
        .bind(&modified)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let stored = self.saved_query(project_id, &definition.name).await?;
        let write = match existing {
            Some(_) => SavedQueryWrite::Replaced,
            None => SavedQueryWrite::Created,
        };
        Ok((write, stored))
    }

    /// The project's saved queries, by name.
    pub async fn saved_queries(&self, project_id: &str) -> Result<Vec<SavedQuery>> {
        let rows = sqlx::query(
            "SELECT name, query_json, metadata_json, refresh_rate, created_at, modified_at FROM saved_queries \
             WHERE project_id = $1 ORDER BY name",
        )
        .bind(project_id)
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter().map(saved_query).collect()
    }

    /// One saved query of the project, if it exists.
    pub async fn saved_query(&self, project_id: &str, name: &str) -> Result<Option<SavedQuery>> {
        let row = sqlx::query(
            "SELECT name, query_json, metadata_json, refresh_rate, created_at, modified_at FROM saved_queries \
             WHERE project_id = $1 AND name = $2",
        )
        .bind(project_id)
        .bind(name)
        .fetch_optional(&self.database.pool)
        .await?;
        row.as_ref().map(saved_query).transpose()
    }

    /// Deletes a saved query; false when there was none.
    pub async fn delete_saved_query(&self, project_id: &str, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM saved_queries WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.database.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }
}
