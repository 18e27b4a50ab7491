//! Metadata databases written by earlier releases still open. `fixtures/schema-v6/meta.sqlite` was made
//! by the release whose migrations recorded themselves in `schema_migrations` (versions 1–6): a project,
//! an access key forcing `tenant = a`, a saved query. Opening it marks those versions applied in sqlx's
//! `_sqlx_migrations` without running them again, and everything in it reads as before. The same
//! holds on PostgreSQL (`a_database_migrated_before_sqlx_opens_without_rerunning`, part of the
//! conformance suite in `tests.rs`), for a database laid out as that release's runner left it.

use keyhole_model::query::{Filter, now_millis};
use sqlx::Row;

use crate::database::{Backend, Database};
use crate::{MetaStore, Resolution};

const PROJECT_ID: &str = "efe5c24f870280b8f22e8e6b";
const TENANT_KEY: &str = "8abd8e3f278eb6c36ff5833e9bc9831b73e00b3eddde08097ea722b28a4b1194";
const MASTER_KEY: &str = "7d3c3fea7fa6369518fd6af90c2467ddf2d770e96cb5dba8c99d829b3b9ab07d";

async fn applied_migrations(store: &MetaStore) -> Vec<i64> {
    sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&store.database.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<i64, _>("version"))
        .collect()
}

/// The version of every migration this release has.
fn every_version() -> Vec<i64> {
    crate::migrations::MIGRATOR
        .iter()
        .map(|migration| migration.version)
        .collect()
}

#[tokio::test]
async fn a_schema_v6_database_opens_and_reads_as_before() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("meta.sqlite");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema-v6/meta.sqlite");
    std::fs::copy(fixture, &path).unwrap();
    for opening in 0..2 {
        let store = MetaStore::open_sqlite(&path).await.unwrap();
        assert_eq!(
            applied_migrations(&store).await,
            every_version(),
            "opening {opening}"
        );
        let Resolution::Granted(grant) = store
            .resolve_credential(TENANT_KEY, now_millis())
            .await
            .unwrap()
            .resolution
        else {
            panic!("the access key resolves");
        };
        assert_eq!(grant.project_id(), PROJECT_ID);
        assert!(
            matches!(
                grant.forced_query_filters(),
                [Filter::Condition { property, value, .. }] if property == "tenant" && value == "a"
            ),
            "{:?}",
            grant.forced_query_filters()
        );
        assert!(matches!(
            store
                .resolve_credential(MASTER_KEY, now_millis())
                .await
                .unwrap()
                .resolution,
            Resolution::Granted(_)
        ));
        let saved = store
            .saved_query(PROJECT_ID, "orders-week")
            .await
            .unwrap()
            .expect("the saved query is there");
        assert_eq!(saved.query["analysis_type"], "count");
    }
}

/// A database as the `schema_migrations` runner left it (every `TEXT` collated `"C"` on PostgreSQL, as
/// it declared them), holding one project, opens with that project and every migration recorded once.
pub(crate) async fn a_database_migrated_before_sqlx_opens_without_rerunning(url: String) {
    let raw = Database::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .execute(&raw.pool)
    .await
    .unwrap();
    for migration in crate::migrations::MIGRATOR.iter() {
        let sql = match raw.backend {
            Backend::Sqlite => migration.sql.as_str().to_string(),
            Backend::Postgres => migration
                .sql
                .as_str()
                .replace(" TEXT", " TEXT COLLATE \"C\""),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&raw.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 'then')")
            .bind(migration.version)
            .execute(&raw.pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO projects (id, name, created_at) VALUES ('old-project', 'old', 'then')",
    )
    .execute(&raw.pool)
    .await
    .unwrap();
    raw.pool.close().await;
    for _ in 0..2 {
        let store = MetaStore::open(&url).await.unwrap();
        assert_eq!(applied_migrations(&store).await, every_version());
        let project = store.project("old-project").await.unwrap();
        assert_eq!(project.map(|project| project.name).as_deref(), Some("old"));
    }
}
