//! Several nodes sharing one event store. The durable record of every change is a log kept in the
//! metadata database ([`SharedLog`], `storage_log` in PostgreSQL); Parquet files live in a shared object
//! store. Every node applies the log, in sequence order, to its own in-memory [`State`], so every node
//! holds every acknowledged event: what was flushed as files (listed by the log), the rest as rows.
//!
//! Records: `entries` (a group commit of one node: events, deletes, in the WAL's record encoding),
//! `rotate` (rows written so far start being flushed), `flushed` (the files holding the rows of the last
//! rotate; they replace those rows), `swapped` (files replaced by a compaction or a delete's rewrite).
//! The last three are maintenance records, appended only by the node holding the maintenance lease (and
//! fenced by it), so rotate → flushed pairs never interleave.
//!
//! A checkpoint — the manifest of a node's state and the sequence through which it reflects the log — is
//! stored after each maintenance step. A node starting up loads it and applies the records after the
//! checkpoint's `flushed_sequence`: `entries` records are applied again (their rows were not in files
//! yet; deletes re-apply harmlessly), maintenance records only past the checkpoint's sequence.
//!
//! Design: this is the group-commit WAL of one node moved into a shared, ordered table, so an
//! acknowledged event is on the database's disk (PostgreSQL's fsync) before its 2xx and survives the
//! loss of the node that took it; the same state machine runs on every node, so flushing and compaction
//! are decisions recorded in the log rather than coordinated by messages.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, as the shared log's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The lease a node holds while it flushes, compacts or rewrites files.
pub const MAINTENANCE_LEASE: &str = "maintenance";

/// One record of the shared log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRecord {
    /// The record's place in the log.
    pub sequence: u64,
    /// What the record is (`entries`, `rotate`, `flushed`, `swapped`).
    pub kind: String,
    /// The record's bytes.
    pub payload: Vec<u8>,
}

/// The shared, ordered log and its checkpoint (implemented over the metadata database).
pub trait SharedLog: Send + Sync + 'static {
    /// Appends a record; its sequence. `fenced`: only while this node holds [`MAINTENANCE_LEASE`]
    /// (`None` when it does not).
    fn append<'a>(
        &'a self,
        kind: &'a str,
        payload: Vec<u8>,
        fenced: bool,
    ) -> BoxFuture<'a, io::Result<Option<u64>>>;
    /// Up to `limit` records after `after`, oldest first.
    fn read_after(&self, after: u64, limit: usize) -> BoxFuture<'_, io::Result<Vec<SharedRecord>>>;
    /// The stored checkpoint: the sequence it reflects and the manifest JSON.
    fn checkpoint(&self) -> BoxFuture<'_, io::Result<Option<(u64, String)>>>;
    /// Stores a checkpoint unless a newer one is stored.
    fn store_checkpoint(
        &self,
        applied_through: u64,
        manifest: String,
    ) -> BoxFuture<'_, io::Result<()>>;
    /// Deletes records through `sequence` (the newest is always kept).
    fn truncate_through(&self, sequence: u64) -> BoxFuture<'_, io::Result<()>>;
    /// Takes or renews the maintenance lease for `ttl_millis`; whether this node holds it.
    fn try_lease(&self, ttl_millis: i64) -> BoxFuture<'_, io::Result<bool>>;
    /// Gives the maintenance lease up.
    fn release_lease(&self) -> BoxFuture<'_, io::Result<()>>;
}

/// A shared log in a configuration (which must be `Debug` and `Clone`).
#[derive(Clone)]
pub struct SharedLogHandle(pub Arc<dyn SharedLog>);

impl std::fmt::Debug for SharedLogHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SharedLog")
    }
}
