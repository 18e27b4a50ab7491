//! The storage engine's shared log ([`keyhole_storage::shared::SharedLog`]) over the metadata
//! database's cluster tables ([`keyhole_meta::ClusterLog`]): the two crates do not know each other, so
//! the one layer that holds both joins them. Errors become I/O errors for the engine; times are this
//! node's clock (leases assume the nodes' clocks agree to well within the lease's 15 seconds).

use std::io;
use std::sync::Arc;

use keyhole_meta::{ClusterLog, MetaStore};
use keyhole_storage::shared::{
    BoxFuture, MAINTENANCE_LEASE, SharedLog, SharedLogHandle, SharedRecord,
};

struct MetadataLog(ClusterLog);

/// An unreachable database is `NotConnected` (the journal then pauses its calls, see `log_journal`).
fn io_error(error: keyhole_meta::MetaError) -> io::Error {
    if error.is_unavailable() {
        return io::Error::new(io::ErrorKind::NotConnected, error.to_string());
    }
    io::Error::other(error.to_string())
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SharedLog for MetadataLog {
    fn append<'a>(
        &'a self,
        kind: &'a str,
        payload: Vec<u8>,
        fenced: bool,
    ) -> BoxFuture<'a, io::Result<Option<u64>>> {
        Box::pin(async move {
            let fence = fenced.then_some(MAINTENANCE_LEASE);
            self.0
                .append(kind, &payload, fence, now_millis())
                .await
                .map_err(io_error)
        })
    }

    fn read_after(&self, after: u64, limit: usize) -> BoxFuture<'_, io::Result<Vec<SharedRecord>>> {
        Box::pin(async move {
            let records = self.0.read_after(after, limit).await.map_err(io_error)?;
            Ok(records
                .into_iter()
                .map(|record| SharedRecord {
                    sequence: record.sequence,
                    kind: record.kind,
                    payload: record.payload,
                })
                .collect())
        })
    }

    fn checkpoint(&self) -> BoxFuture<'_, io::Result<Option<(u64, String)>>> {
        Box::pin(async move { self.0.checkpoint().await.map_err(io_error) })
    }

    fn store_checkpoint(
        &self,
        applied_through: u64,
        manifest: String,
    ) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.0
                .store_checkpoint(applied_through, &manifest)
                .await
                .map(|_| ())
                .map_err(io_error)
        })
    }

    fn truncate_through(&self, sequence: u64) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.0
                .truncate_through(sequence)
                .await
                .map(|_| ())
                .map_err(io_error)
        })
    }

    fn try_lease(&self, ttl_millis: i64) -> BoxFuture<'_, io::Result<bool>> {
        Box::pin(async move {
            self.0
                .try_lease(MAINTENANCE_LEASE, now_millis(), ttl_millis)
                .await
                .map_err(io_error)
        })
    }

    fn release_lease(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.0
                .release_lease(MAINTENANCE_LEASE)
                .await
                .map_err(io_error)
        })
    }
}

/// The shared log of the metadata database `meta` opened, for [`keyhole_storage::StorageConfig`].
pub fn shared_log_of(meta: &MetaStore) -> SharedLogHandle {
    SharedLogHandle(Arc::new(MetadataLog(meta.cluster_log())))
}

/// The storage suite (`keyhole_storage::testsuite`) with the engine's journal in the PostgreSQL log of a
/// fresh database, as every node of a cluster journals: the same tests the local WAL and the in-memory
/// log pass. Skipped (one line on stderr) without `KEYHOLE_TEST_POSTGRES_URL`.
#[cfg(test)]
mod postgres_log_suite {
    use keyhole_storage::testsuite::Backend;

    async fn backend() -> Option<Backend> {
        let server_url = keyhole_test_env::postgres_url()?;
        let name = format!("keyhole_log_{}", keyhole_model::keys::generate_id());
        let url = keyhole_meta::create_postgres_database(&server_url, &name)
            .await
            .expect("create a database on the test PostgreSQL server");
        let meta = keyhole_meta::MetaStore::open(&url)
            .await
            .expect("open the fresh metadata database");
        let mut backend = Backend::shared_log(super::shared_log_of(&meta));
        let cluster_log = meta.cluster_log();
        backend.after = Some(Box::new(move || {
            let appended = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(cluster_log.read_after(0, 1))
            })
            .expect("read the PostgreSQL log");
            assert!(!appended.is_empty(), "the engine journaled in PostgreSQL");
        }));
        Some(backend)
    }

    keyhole_storage::storage_test_suite!(backend);
}
