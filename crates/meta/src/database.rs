//! The metadata database behind one `sqlx` pool of the `Any` driver: SQLite (embedded, one node) or
//! PostgreSQL (several nodes), chosen by the URL. Every statement is written once, in the SQL both accept
//! (`$1` placeholders, `TEXT`/`BIGINT` columns, `ON CONFLICT`), so the two backends run the same queries
//! and the same migrations.
//!
//! Design: the two differ in three places, all here. Opening (SQLite's pragmas: WAL, `synchronous =
//! FULL`, a busy timeout); a writing transaction ([`Database::begin_write`]: SQLite's `BEGIN IMMEDIATE`
//! takes its single write lock up front; PostgreSQL takes one transaction-scoped advisory lock, so
//! metadata writes from every node are serialized exactly as on SQLite and a read-then-write never races
//! another node); and text comparison (PostgreSQL columns are declared `COLLATE "C"` so ordering and
//! paging compare bytes, as SQLite's default `BINARY` collation does).

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{MetaError, Result};

/// The advisory lock every writing PostgreSQL transaction takes (an arbitrary constant: "keyhole").
const WRITE_LOCK: i64 = 0x006b_6579_686f_6c65;

/// The database behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one node, embedded.
    Sqlite,
    /// PostgreSQL: several nodes.
    Postgres,
}

/// How long a request waits for a PostgreSQL connection (a new one included) before giving up.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long a request's key lookup may wait on PostgreSQL in all. A pooled connection whose packets are
/// lost neither answers nor fails (the pool tests a connection only as it is handed out); past this the
/// lookup is answered 503 instead of hanging until TCP gives up.
const POSTGRES_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// How often PostgreSQL is probed after a key lookup found it unreachable. Meanwhile lookups fail at once
/// (`keyhole_model::reachability`): during an outage a request is answered 503 at once instead of after
/// its own timeout.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub(crate) struct Database {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Set while PostgreSQL is known unreachable (see [`PROBE_INTERVAL`]).
    reachability: keyhole_model::reachability::Reachability,
}

impl Database {
    /// Runs a lookup a request waits on, bounded on PostgreSQL by [`POSTGRES_LOOKUP_TIMEOUT`] (a timeout is
    /// an unreachable database, [`MetaError::is_unavailable`]); while PostgreSQL is known unreachable,
    /// fails at once.
    pub(crate) async fn bounded_lookup<T>(
        &self,
        lookup: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.backend != Backend::Postgres {
            return lookup.await;
        }
        if self.reachability.is_unreachable() {
            return Err(unreachable("the metadata database is unreachable"));
        }
        let outcome = tokio::time::timeout(POSTGRES_LOOKUP_TIMEOUT, lookup)
            .await
            .unwrap_or_else(|_| Err(unreachable("the metadata database did not answer in time")));
        if let Err(error) = &outcome
            && error.is_unavailable()
            && self.reachability.mark_unreachable()
        {
            tracing::warn!(%error, "the metadata database is unreachable; key lookups fail at once until it answers");
            tokio::spawn(probe_database(self.pool.clone(), self.reachability.clone()));
        }
        outcome
    }

    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating a SQLite file if needed.
    pub(crate) async fn connect(url: &str) -> Result<Database> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let options: AnyConnectOptions = url.parse()?;
        if backend == Backend::Sqlite {
            check_sqlite_file(&url).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            // On PostgreSQL, a request waits at most this long for a connection before it is answered
            // 503: a server that is down or overloaded is said so at once, not after a long hang.
            .acquire_timeout(match backend {
                Backend::Sqlite => Duration::from_secs(30),
                Backend::Postgres => POSTGRES_ACQUIRE_TIMEOUT,
            })
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Database {
            pool,
            backend,
            reachability: keyhole_model::reachability::Reachability::default(),
        })
    }

    /// A transaction that writes, holding the backend's write lock from its start (see the module note).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.begin_locked(WRITE_LOCK).await
    }

    /// A writing transaction serialized with every other one taking `lock`: on PostgreSQL the
    /// transaction-scoped advisory lock `lock`; on SQLite (one writer anyway) `BEGIN IMMEDIATE`.
    pub(crate) async fn begin_locked(
        &self,
        lock: i64,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut transaction = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock)
                    .execute(&mut *transaction)
                    .await?;
                Ok(transaction)
            }
        }
    }
}

/// Creates an empty database `name` (letters, digits and `_`) on the PostgreSQL server `server_url`
/// points to (its role must be allowed to); the URL of the new database. For tests and tools that need a
/// fresh metadata database.
pub async fn create_postgres_database(server_url: &str, name: &str) -> Result<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        return Err(MetaError::InvalidDefinition(format!(
            "{name:?} cannot name a database"
        )));
    }
    let (base, _) = server_url
        .rsplit_once('/')
        .ok_or_else(|| MetaError::InvalidDefinition("the URL names no database".into()))?;
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(server_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    Ok(format!("{base}/{name}"))
}

/// Runs `SELECT 1` every [`PROBE_INTERVAL`] until it answers, then lets lookups through.
async fn probe_database(pool: AnyPool, reachability: keyhole_model::reachability::Reachability) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let probe = sqlx::query("SELECT 1").execute(&pool);
        if let Ok(Ok(_)) = tokio::time::timeout(POSTGRES_LOOKUP_TIMEOUT, probe).await {
            reachability.mark_reachable();
            tracing::info!("the metadata database answers again");
            return;
        }
    }
}

/// An unreachable-database error (timed out), as [`MetaError::is_unavailable`] tells.
fn unreachable(message: &str) -> MetaError {
    MetaError::Database(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        message.to_string(),
    )))
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        return Ok(Backend::Sqlite);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Backend::Postgres);
    }
    Err(MetaError::InvalidDefinition(
        "the metadata URL must start with sqlite:// or postgres://".into(),
    ))
}

/// How long opening the SQLite file may take before it is reported as unusable.
const SQLITE_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the SQLite file once, outside the pool, and runs `PRAGMA quick_check`: a damaged file is then
/// reported at once, naming the file and how to recover, instead of the pool retrying its connections
/// until its acquire timeout and reporting only that it timed out.
async fn check_sqlite_file(url: &str) -> Result<()> {
    use sqlx::{Connection, Row};
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let unusable = |problem: String| {
        crate::MetaError::Corrupt(format!(
            "{path} is not a usable SQLite database ({problem}); keyhole will not start on it. Restore the data directory from a backup with `keyhole restore --from <backup dir>` into an empty directory (see docs/reliability.md)"
        ))
    };
    let verdicts = tokio::time::timeout(SQLITE_OPEN_TIMEOUT, async {
        let mut connection = sqlx::AnyConnection::connect(url).await?;
        connection.execute("PRAGMA busy_timeout = 10000;").await?;
        let rows = sqlx::query("PRAGMA quick_check")
            .fetch_all(&mut connection)
            .await?;
        let verdicts: Vec<String> = rows
            .iter()
            .filter_map(|row| row.try_get::<String, _>(0).ok())
            .collect();
        connection.close().await?;
        Ok::<_, sqlx::Error>(verdicts)
    })
    .await
    .map_err(|_| unusable(format!("it did not open within {SQLITE_OPEN_TIMEOUT:?}")))?
    .map_err(|error| unusable(error.to_string()))?;
    if verdicts != ["ok"] {
        return Err(unusable(format!(
            "its integrity check reports: {}",
            verdicts.join("; ")
        )));
    }
    Ok(())
}
