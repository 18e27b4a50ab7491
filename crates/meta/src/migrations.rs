//! The metadata schema's migrations: the SQL files in `crates/meta/migrations/`, embedded by
//! `sqlx::migrate!` and applied by sqlx's migrator, which records each in `_sqlx_migrations` with its
//! checksum (a changed file is refused at start), runs each in its own transaction, and on PostgreSQL
//! holds an advisory lock so nodes starting together apply each once. The SQL keeps to what SQLite and
//! PostgreSQL both accept (TEXT and BIGINT columns, no autoincrement: audit ids are generated,
//! time-ordered text).
//!
//! Design: on PostgreSQL every `TEXT` column is declared `COLLATE "C"` (see `database.rs`: pages by name
//! are in byte order on both backends), so the PostgreSQL migrator is the same list with that rewrite;
//! each migration keeps the checksum of its file, so one file has one checksum whichever backend ran it.
//! Databases made before sqlx's migrator recorded their versions in `schema_migrations`; on first open
//! those versions are marked applied in `_sqlx_migrations` without running them again (sqlx's `skip`),
//! and `schema_migrations` is left as it was.

use sqlx::migrate::{Migration, Migrator};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use crate::database::{Backend, Database};

/// Every migration, in version order (the files of `crates/meta/migrations/`).
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Applies the migrations not yet recorded, all inside one writing transaction (`begin_write`: on SQLite
/// `BEGIN IMMEDIATE`, where sqlx's migrator takes no lock of its own; each migration is a savepoint in
/// it), so stores opening one database together apply each migration once.
pub(crate) async fn apply(database: &Database) -> crate::Result<()> {
    let postgres;
    let migrator = match database.backend {
        Backend::Sqlite => &MIGRATOR,
        Backend::Postgres => {
            postgres = postgres_migrator();
            &postgres
        }
    };
    let mut transaction = database.begin_write().await?;
    if let Some(legacy_version) = legacy_version(database.backend, &mut transaction).await? {
        tracing::info!(
            legacy_version,
            "recording migrations applied before sqlx's migrator"
        );
        migrator
            .skip(&mut *transaction, Some(legacy_version))
            .await?;
    }
    migrator.run(&mut *transaction).await?;
    transaction.commit().await?;
    Ok(())
}

/// [`MIGRATOR`] with every `TEXT` column collated `"C"`, each migration keeping its file's checksum.
fn postgres_migrator() -> Migrator {
    let migrations = MIGRATOR
        .iter()
        .map(|migration| {
            let sql = migration
                .sql
                .as_str()
                .replace(" TEXT", " TEXT COLLATE \"C\"");
            let mut collated: Migration = migration.clone();
            collated.sql = AssertSqlSafe(sql).into_sql_str();
            collated
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// The last version a database made before sqlx's migrator recorded in `schema_migrations`, when that
/// table exists and `_sqlx_migrations` records nothing yet.
async fn legacy_version(
    backend: Backend,
    connection: &mut sqlx::AnyConnection,
) -> crate::Result<Option<i64>> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) AS found FROM sqlite_master WHERE type = 'table' AND name = $1"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) AS found FROM information_schema.tables WHERE table_name = $1 AND table_schema = current_schema()"
        }
    };
    let mut table_exists = async |name: &'static str| -> crate::Result<bool> {
        let row = sqlx::query(sql)
            .bind(name)
            .fetch_one(&mut *connection)
            .await?;
        Ok(row.try_get::<i64, _>("found")? > 0)
    };
    if !table_exists("schema_migrations").await? {
        return Ok(None);
    }
    if table_exists("_sqlx_migrations").await? {
        let recorded = sqlx::query("SELECT COUNT(*) AS recorded FROM _sqlx_migrations")
            .fetch_one(&mut *connection)
            .await?;
        if recorded.try_get::<i64, _>("recorded")? > 0 {
            return Ok(None);
        }
    }
    let row = sqlx::query("SELECT MAX(version) AS version FROM schema_migrations")
        .fetch_one(&mut *connection)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("version")?)
}
