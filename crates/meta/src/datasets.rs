//! Cached dataset definitions (Keen's `/datasets`), per project: display name, query and index
//! properties, with creation and modification times. The definition was validated by `model::dataset`
//! before it reaches this store; results are not stored here (see the server's `dataset_results`).

use keyhole_model::dataset::DatasetDefinition;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{MetaError, MetaStore, Result, now};

/// A stored dataset definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The dataset's definition, validated when it was stored.
    pub definition: DatasetDefinition,
    /// When it was created (ISO-8601, UTC).
    pub created_date: String,
    /// When it was last replaced (ISO-8601, UTC); kept results are for this version only.
    pub last_modified_date: String,
}

/// Most definitions one list page holds.
pub const MAX_DATASET_PAGE: usize = 100;

fn dataset(row: &AnyRow) -> Result<Dataset> {
    let corrupt = |what: &str| MetaError::Corrupt(format!("dataset {what}"));
    let query_text: String = row.try_get("query_json")?;
    let index_text: String = row.try_get("index_by_json")?;
    let query_json = serde_json::from_str(&query_text).map_err(|_| corrupt("query"))?;
    let index_by = serde_json::from_str(&index_text).map_err(|_| corrupt("index_by"))?;
    Ok(Dataset {
        definition: DatasetDefinition {
            name: row.try_get("name")?,
            display_name: row.try_get("display_name")?,
            query_json,
            index_by,
        },
        created_date: row.try_get("created_at")?,
        last_modified_date: row.try_get("modified_at")?,
    })
}

macro_rules! select_datasets {
    ($rest:literal) => {
        concat!(
            "SELECT name, display_name, query_json, index_by_json, created_at, modified_at FROM datasets ",
            $rest
        )
    };
}

impl MetaStore {
    /// Creates or replaces a dataset; true when it was created.
    pub async fn put_dataset(
        &self,
        project_id: &str,
        definition: &DatasetDefinition,
    ) -> Result<(bool, Dataset)> {
        let mut transaction = self.database.begin_write().await?;
        let created: Option<String> =
            sqlx::query("SELECT created_at FROM datasets WHERE project_id = $1 AND name = $2")
                .bind(project_id)
                .bind(&definition.name)
                .fetch_optional(&mut *transaction)
                .await?
                .map(|row| row.try_get("created_at"))
                .transpose()?;
        let modified = now();
        let created_date = created.clone().unwrap_or_else(|| modified.clone());
        sqlx::query(
            "INSERT INTO datasets (project_id, name, display_name, query_json, index_by_json, created_at, modified_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (project_id, name) DO UPDATE SET display_name = excluded.display_name, \
             query_json = excluded.query_json, index_by_json = excluded.index_by_json, modified_at = excluded.modified_at",
        )
        .bind(project_id)
        .bind(&definition.name)
        .bind(&definition.display_name)
        .bind(serde_json::Value::Object(definition.query_json.clone()).to_string())
        .bind(serde_json::json!(definition.index_by).to_string())
        .bind(&created_date)
        .bind(&modified)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((
            created.is_none(),
            Dataset {
                definition: definition.clone(),
                created_date,
                last_modified_date: modified,
            },
        ))
    }

    /// Up to `limit` datasets named after `after_name`, by name.
    pub async fn datasets_page(
        &self,
        project_id: &str,
        after_name: &str,
        limit: usize,
    ) -> Result<Vec<Dataset>> {
        let rows = sqlx::query(select_datasets!(
            "WHERE project_id = $1 AND name > $2 ORDER BY name LIMIT $3"
        ))
        .bind(project_id)
        .bind(after_name)
        .bind(i64::try_from(limit.min(MAX_DATASET_PAGE)).unwrap_or(1))
        .fetch_all(&self.database.pool)
        .await?;
        rows.iter().map(dataset).collect()
    }

    /// One dataset of the project, if it exists.
    pub async fn dataset(&self, project_id: &str, name: &str) -> Result<Option<Dataset>> {
        let row = sqlx::query(select_datasets!("WHERE project_id = $1 AND name = $2"))
            .bind(project_id)
            .bind(name)
            .fetch_optional(&self.database.pool)
            .await?;
        row.as_ref().map(dataset).transpose()
    }

    /// Deletes a dataset; false when there was none.
    pub async fn delete_dataset(&self, project_id: &str, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM datasets WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.database.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }
}
