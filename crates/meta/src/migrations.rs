//! Embedded schema migrations, applied in order inside one transaction each, recorded in
//! `schema_migrations` so each runs once.

use sqlx::{Row, SqlitePool};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE organization (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL,
        key_prefix TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE project_keys (
        key_hash TEXT PRIMARY KEY,
        key_prefix TEXT NOT NULL,
        project_id TEXT NOT NULL REFERENCES projects(id),
        kind TEXT NOT NULL,
        is_active INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX project_keys_by_project ON project_keys(project_id);",
    ),
    (
        2,
        "ALTER TABLE project_keys ADD COLUMN name TEXT;
    ALTER TABLE project_keys ADD COLUMN permitted TEXT;
    ALTER TABLE project_keys ADD COLUMN options TEXT;",
    ),
];

pub async fn apply(pool: &SqlitePool) -> sqlx::Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        .execute(pool)
        .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.get("version"))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut transaction = pool.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *transaction).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, datetime('now'))",
        )
        .bind(version)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}
