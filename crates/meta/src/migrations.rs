//! Embedded schema migrations, applied in order inside one transaction each, recorded in
//! `schema_migrations` so each runs once. The SQL keeps to what SQLite and PostgreSQL both accept (TEXT
//! and BIGINT columns, no autoincrement: audit ids are generated, time-ordered text).

use crate::database::{Backend, Database};

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
    (
        3,
        "ALTER TABLE project_keys ADD COLUMN expires_at TEXT;
    ALTER TABLE project_keys ADD COLUMN token_key_id TEXT;
    CREATE UNIQUE INDEX project_keys_by_token_key_id ON project_keys(token_key_id);
    CREATE TABLE revoked_tokens (
        key_hash TEXT NOT NULL,
        token_id TEXT NOT NULL,
        revoked_at TEXT NOT NULL,
        PRIMARY KEY (key_hash, token_id)
    );
    CREATE TABLE key_audit (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT,
        key_prefix TEXT,
        token_id TEXT,
        reason TEXT,
        request TEXT,
        times BIGINT NOT NULL DEFAULT 1,
        before_json TEXT,
        after_json TEXT
    );
    CREATE INDEX key_audit_by_project ON key_audit(project_id, id);
    CREATE TABLE key_usage (
        key_hash TEXT NOT NULL,
        day TEXT NOT NULL,
        reads BIGINT NOT NULL,
        writes BIGINT NOT NULL,
        events BIGINT NOT NULL,
        queries BIGINT NOT NULL,
        refused BIGINT NOT NULL,
        PRIMARY KEY (key_hash, day)
    );",
    ),
    (
        4,
        "CREATE TABLE saved_queries (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        query_json TEXT NOT NULL,
        metadata_json TEXT NOT NULL,
        refresh_rate BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        modified_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
    );",
    ),
    (
        5,
        "CREATE TABLE datasets (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        display_name TEXT NOT NULL,
        query_json TEXT NOT NULL,
        index_by_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        modified_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
    );",
    ),
    (
        6,
        "CREATE TABLE storage_log (
        sequence BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        payload BYTEA NOT NULL,
        appended_by TEXT NOT NULL
    );
    CREATE TABLE storage_checkpoint (
        id BIGINT PRIMARY KEY,
        applied_through BIGINT NOT NULL,
        manifest TEXT NOT NULL
    );
    CREATE TABLE storage_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at_millis BIGINT NOT NULL
    );",
    ),
];

/// Applies the migrations not yet recorded, each in a writing transaction (so nodes starting together
/// apply each once). On PostgreSQL every `TEXT` column is declared `COLLATE "C"` (see `database.rs`).
pub async fn apply(database: &Database) -> crate::Result<()> {
    let mut transaction = database.begin_write().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    for (version, sql) in MIGRATIONS {
        let mut transaction = database.begin_write().await?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *transaction)
            .await?
            .is_some();
        if applied {
            continue;
        }
        let sql = match database.backend {
            Backend::Sqlite => sql.to_string(),
            Backend::Postgres => sql.replace(" TEXT", " TEXT COLLATE \"C\""),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *transaction)
            .await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(crate::now())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}
