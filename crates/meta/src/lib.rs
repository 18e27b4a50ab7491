//! Metadata: the organization, its projects, their keys, saved queries and dataset definitions, stored with
//! `sqlx` in SQLite (WAL mode, in the data directory) or PostgreSQL. Secrets never reach this store: it keeps the SHA-256 of each key and an
//! 8-character prefix for display; a presented key is found by its hash and the stored hash is compared
//! again in constant time. Schema migrations are embedded in the binary and applied at start-up.
//!
//! A presented key or embed token becomes a typed [`Grant`] here, once, when it is loaded (`grants.rs`);
//! a stored key that no longer parses is refused. Every change to a key goes through one path
//! (`access_keys.rs`) that clears the key cache, writes the audit log and calls the change hooks.
//!
//! Design: one `MetaStore` type over either backend (`database.rs`): SQLite for one node, PostgreSQL for
//! several, the same statements and migrations on both, and one conformance suite (`tests.rs`) run
//! against each.

#![warn(missing_docs, unreachable_pub)]

mod access_keys;
mod audit;
mod cluster;
mod dashboards;
mod database;
mod datasets;
mod grants;
mod key_cache;
mod key_changes;
mod migrations;
mod saved_queries;
mod tenant_erasures;
mod tenant_lifecycle;
mod tenants;
mod usage;

pub use audit::{AuditEntry, AuditPage, MAX_PAGE as MAX_AUDIT_PAGE, Refusal};
pub use cluster::{ClusterLog, LogRecord};
pub use dashboards::{Dashboard, MAX_DASHBOARDS_LISTED};
pub use database::{Backend, create_postgres_database};
pub use datasets::{Dataset, MAX_DATASET_PAGE};
pub use grants::{Resolution, Resolved};
pub use key_cache::CacheTicket;
pub use saved_queries::{SavedQuery, SavedQueryWrite};
pub use tenant_erasures::TenantActivity;
pub use tenants::{CreatedTenant, MAX_TENANT_PAGE, Tenant};
pub use usage::{KeyUsage, ProjectUsage};

use std::path::Path;

use chrono::Utc;
use keyhole_model::keys::{display_prefix, generate_id, generate_secret};
use keyhole_model::{KeyHash, Operation};
use serde::Serialize;
use sqlx::Row;

use crate::database::Database;

/// What the metadata store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database failed.
    #[error("metadata store failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date (a migration failed, or one already applied differs
    /// from the file of that version).
    #[error("metadata migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Stored metadata does not read as it must (a value of a newer release, a damaged row).
    #[error("stored metadata is inconsistent: {0}")]
    Corrupt(String),
    #[error(
        "the organization key given differs from the stored one; keyhole does not replace it on start (run `keyhole organization rotate-key` to change it)"
    )]
    /// A start with an organization key other than the stored one.
    OrganizationKeyMismatch,
    /// A key definition that cannot be stored as given (a webhook secret sealed for another key).
    #[error("{0}")]
    InvalidDefinition(String),
    /// A change that conflicts with what is stored (a tenant id already taken, a tenancy property changed
    /// under existing tenants).
    #[error("{0}")]
    Conflict(String),
    /// An operation this backend does not offer (a backup of PostgreSQL is `pg_dump`'s job).
    #[error("{0}")]
    Unsupported(String),
}

/// A metadata store result.
pub type Result<T> = std::result::Result<T, MetaError>;

pub use keyhole_model::{Grant, KeyKind};

/// Called after every committed change to a project's keys (create, update, revoke, unrevoke, delete,
/// token revocation) with the grants of the project's usable access keys; the server orders storage by
/// them. Hooks run after the key cache has been cleared, so the next request already sees the change.
pub(crate) type KeyChangeHook = Box<dyn Fn(&str, &[Grant]) + Send + Sync>;

/// An access key as stored: everything but the secret, which only its creator sees.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccessKey {
    /// The key's display prefix (its first characters).
    pub key_prefix: String,
    /// The project it belongs to.
    pub project_id: String,
    /// Its name, unique in the project.
    pub name: String,
    /// Whether it is active (not revoked).
    pub is_active: bool,
    /// The operations it permits.
    #[serde(serialize_with = "serialize_operations")]
    pub permitted: Vec<Operation>,
    /// Its options as stored (filters, autofill, limits, …).
    pub options: serde_json::Value,
    /// When it was created (ISO-8601, UTC).
    pub created_at: String,
    /// When the key stops working (Keyhole extension).
    pub expires_at: Option<String>,
    /// The `kid` of the key's embed tokens (its Ed25519 public key), once known.
    pub embed_key_id: Option<String>,
}

fn serialize_operations<S: serde::Serializer>(
    operations: &[Operation],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_seq(operations.iter().map(|operation| operation.keen_name()))
}

/// A project as listed: keys appear only as display prefixes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Project {
    /// The project's id (24 hex digits).
    pub id: String,
    /// The project's name.
    pub name: String,
    /// When it was created (ISO-8601, UTC).
    pub created_at: String,
    /// The display prefixes of its master, write and read keys.
    pub key_prefixes: KeyPrefixes,
}

/// The display prefixes of a project's three keys (their secrets are not stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyPrefixes {
    /// The master key's prefix.
    pub master: String,
    /// The write key's prefix.
    pub write: String,
    /// The read key's prefix.
    pub read: String,
}

/// The secrets of a project's keys, available only when they are created.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ProjectKeys {
    /// The master key's secret.
    pub master: String,
    /// The write key's secret.
    pub write: String,
    /// The read key's secret.
    pub read: String,
}

impl std::fmt::Debug for ProjectKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ProjectKeys(<secrets>)")
    }
}

/// The organization, and its key's secret when it was generated on this call.
#[derive(Clone, Debug)]
pub struct OrganizationBootstrap {
    /// The organization's id.
    pub id: String,
    /// The organization key's secret, when this call generated it (shown once).
    pub generated_key: Option<String>,
    /// Whether this call created the organization.
    pub created: bool,
}

/// The metadata store: organization, projects, keys, saved queries, datasets, audit and, for several nodes, the shared event log; cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    database: Database,
    /// This process's id in key-change notifications (so it skips its own).
    node_id: std::sync::Arc<str>,
    resolved_keys: std::sync::Arc<key_cache::KeyCache>,
    key_change_hooks: std::sync::Arc<std::sync::RwLock<Vec<KeyChangeHook>>>,
    audit: audit::AuditSink,
}

impl MetaStore {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<MetaStore> {
        MetaStore::open(&format!("sqlite://{}", path.display())).await
    }

    /// Opens the metadata database at `url` (`sqlite://path` or `postgres://user:password@host/db`) and
    /// applies migrations (several nodes starting at once apply each migration once).
    pub async fn open(url: &str) -> Result<MetaStore> {
        let database = Database::connect(url).await?;
        migrations::apply(&database).await?;
        let audit = audit::AuditSink::start(database.clone());
        let store = MetaStore {
            database,
            node_id: generate_id().into(),
            resolved_keys: std::sync::Arc::default(),
            key_change_hooks: std::sync::Arc::default(),
            audit,
        };
        if store.database.backend == Backend::Postgres {
            key_changes::start_listening(store.clone(), url.to_string());
        }
        Ok(store)
    }

    /// Which database the store is on.
    pub fn backend(&self) -> Backend {
        self.database.backend
    }

    /// Makes sure the organization exists. Without one, it is created with `given_key`, or with a generated
    /// key that is returned to be shown once. An existing organization keeps its key: a `given_key` that
    /// differs from the stored one is refused ([`MetaError::OrganizationKeyMismatch`]), since replacing it
    /// silently would lock out whoever holds the current key; [`MetaStore::rotate_organization_key`] is
    /// the explicit way to change it.
    pub async fn ensure_organization(
        &self,
        given_key: Option<&str>,
    ) -> Result<OrganizationBootstrap> {
        // Under the write lock, so nodes starting together create one organization.
        let mut transaction = self.database.begin_write().await?;
        let existing = sqlx::query("SELECT id FROM organization LIMIT 1")
            .fetch_optional(&mut *transaction)
            .await?;
        if let Some(row) = existing {
            drop(transaction);
            let id: String = row.get("id");
            if let Some(key) = given_key
                && !self.is_organization_key(key).await?
            {
                return Err(MetaError::OrganizationKeyMismatch);
            }
            return Ok(OrganizationBootstrap {
                id,
                generated_key: None,
                created: false,
            });
        }
        let id = generate_id();
        let generated_key = given_key.is_none().then(generate_secret);
        let key = given_key
            .map(str::to_string)
            .or_else(|| generated_key.clone())
            .expect("one of the two");
        sqlx::query(
            "INSERT INTO organization (id, key_hash, key_prefix, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(KeyHash::of_secret(&key).to_hex())
        .bind(display_prefix(&key))
        .bind(now())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(OrganizationBootstrap {
            id,
            generated_key,
            created: true,
        })
    }

    /// Replaces the organization key's hash. `false` when there is no organization yet.
    pub async fn rotate_organization_key(&self, new_key: &str) -> Result<bool> {
        let updated = sqlx::query("UPDATE organization SET key_hash = $1, key_prefix = $2")
            .bind(KeyHash::of_secret(new_key).to_hex())
            .bind(display_prefix(new_key))
            .execute(&self.database.pool)
            .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// The organization's id, once it exists.
    pub async fn organization_id(&self) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM organization LIMIT 1")
            .fetch_optional(&self.database.pool)
            .await?;
        Ok(row.map(|row| row.get("id")))
    }

    /// True when `secret` is the organization key.
    pub async fn is_organization_key(&self, secret: &str) -> Result<bool> {
        let presented = KeyHash::of_secret(secret);
        let row = sqlx::query("SELECT key_hash FROM organization LIMIT 1")
            .fetch_optional(&self.database.pool)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let stored: String = row.get("key_hash");
        let stored = KeyHash::from_hex(&stored)
            .ok_or_else(|| MetaError::Corrupt("organization key hash".into()))?;
        Ok(stored.matches(&presented))
    }

    /// Creates a project with fresh master, write and read keys; the secrets are returned only here.
    pub async fn create_project(&self, name: &str) -> Result<(Project, ProjectKeys)> {
        let id = generate_id();
        let created_at = now();
        let keys = ProjectKeys {
            master: generate_secret(),
            write: generate_secret(),
            read: generate_secret(),
        };
        let mut transaction = self.database.begin_write().await?;
        sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(&created_at)
            .execute(&mut *transaction)
            .await?;
        for (kind, secret) in [
            (KeyKind::Master, &keys.master),
            (KeyKind::Write, &keys.write),
            (KeyKind::Read, &keys.read),
        ] {
            sqlx::query(
                "INSERT INTO project_keys (key_hash, key_prefix, project_id, kind, is_active, created_at) VALUES ($1, $2, $3, $4, 1, $5)",
            )
            .bind(KeyHash::of_secret(secret).to_hex())
            .bind(display_prefix(secret))
            .bind(&id)
            .bind(kind.as_str())
            .bind(&created_at)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        let project = self
            .project(&id)
            .await?
            .ok_or_else(|| MetaError::Corrupt("project vanished".into()))?;
        Ok((project, keys))
    }

    /// Every project.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query("SELECT id FROM projects ORDER BY created_at, id")
            .fetch_all(&self.database.pool)
            .await?;
        let mut projects = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get("id");
            if let Some(project) = self.project(&id).await? {
                projects.push(project);
            }
        }
        Ok(projects)
    }

    /// One project, if it exists.
    pub async fn project(&self, id: &str) -> Result<Option<Project>> {
        let Some(row) = sqlx::query("SELECT id, name, created_at FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.database.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut key_prefixes = KeyPrefixes::default();
        let key_rows =
            sqlx::query("SELECT kind, key_prefix FROM project_keys WHERE project_id = $1")
                .bind(id)
                .fetch_all(&self.database.pool)
                .await?;
        for key_row in key_rows {
            let prefix: String = key_row.get("key_prefix");
            match KeyKind::parse(key_row.get("kind")) {
                Some(KeyKind::Master) => key_prefixes.master = prefix,
                Some(KeyKind::Write) => key_prefixes.write = prefix,
                Some(KeyKind::Read) => key_prefixes.read = prefix,
                Some(KeyKind::Access) | None => {}
            }
        }
        Ok(Some(Project {
            id: row.get("id"),
            name: row.get("name"),
            created_at: row.get("created_at"),
            key_prefixes,
        }))
    }

    /// Renames a project; `None` if it does not exist.
    pub async fn rename_project(&self, id: &str, name: &str) -> Result<Option<Project>> {
        let updated = sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&self.database.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        self.project(id).await
    }
}

impl MetaStore {
    /// Writes a consistent copy of the metadata database to `target` (SQLite's `VACUUM INTO`, which
    /// reads one snapshot while writers go on). `target` must not exist. PostgreSQL is backed up with its
    /// own tools (`pg_dump`), so there this is refused.
    pub async fn backup_into(&self, target: &Path) -> Result<()> {
        if self.database.backend != Backend::Sqlite {
            return Err(MetaError::Unsupported(
                "metadata on PostgreSQL is backed up with pg_dump, not by keyhole".into(),
            ));
        }
        let target = target
            .to_str()
            .ok_or_else(|| MetaError::Corrupt("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.database.pool)
            .await?;
        Ok(())
    }
}

fn parse_permitted(text: Option<String>) -> Result<Vec<Operation>> {
    let names: Vec<String> = serde_json::from_str(text.as_deref().unwrap_or("[]"))
        .map_err(|_| MetaError::Corrupt("permitted".into()))?;
    names
        .iter()
        .map(|name| {
            Operation::from_keen_name(name)
                .ok_or_else(|| MetaError::Corrupt(format!("permission {name}")))
        })
        .collect()
}

impl MetaError {
    /// Whether the database could not be reached — a connection failed or broke, or none was free in
    /// time — rather than refusing what was asked: the same request may succeed once it is back.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            MetaError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}

fn parse_options(text: Option<String>) -> Result<serde_json::Value> {
    serde_json::from_str(text.as_deref().unwrap_or("null"))
        .map_err(|_| MetaError::Corrupt("options".into()))
}

fn now() -> String {
    keyhole_model::timestamp::format_timestamp(Utc::now().timestamp_millis())
}

#[cfg(test)]
mod dashboard_tests;
#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tenant_tests;
#[cfg(test)]
mod tests;
