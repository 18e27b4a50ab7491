//! Keyhole's event storage: a journal for durability, in-memory Arrow buffers so every acknowledged event
//! is readable at once, and Parquet files (via `object_store`) partitioned by project, collection and UTC
//! day of `keen.timestamp`, with a schema per collection.
//!
//! The query layer reads through [`Storage::snapshot`]: a collection's schema, the Parquet files that may
//! hold events of a time range and its in-memory rows in that range, shaped to the schema, so files and
//! memory are read alike (`Storage::scan` materializes a snapshot, for tests and tools).
//!
//! The modules, from the top: `storage` (the [`Storage`] handle) → the procedures (`maintenance`:
//! flush and compaction; `deletes`; `statistics`; `buffer_limit`) → `engine` (the parts a running engine
//! holds) → `writer` (the writer thread) → `journal` (where changes become durable: the local WAL and
//! manifest, or a shared log) → the pieces (`state`, `wal`, `manifest`, `objects`, `flush`,
//! `compaction`, …). Each module imports only from below it. See ARCHITECTURE.md for the life of one
//! write.

#![warn(missing_docs, unreachable_pub)]

pub mod backup;
mod buffer_limit;
mod changes;
mod column_cap;
pub mod columns;
mod commands;
pub mod compaction;
mod config;
mod deletes;
mod dir_lock;
mod engine;
mod file_cache;
mod flush;
mod journal;
mod local_journal;
mod log_journal;
mod maintenance;
pub mod manifest;
mod metrics;
mod objects;
mod parquet_reader;
mod records;
mod recovery;
mod row_batches;
mod row_edit;
pub mod shared;
mod snapshot;
mod state;
mod statistics;
mod storage;
mod tokens;
pub mod wal;
mod wal_entry;
mod writer;

pub use commands::WriteOutcome;
pub use config::{
    DEFAULT_MAX_COLUMNS_PER_COLLECTION, ObjectsLocation, Result, StorageConfig, StorageError,
};
pub use dir_lock::{DataDirLock, lock_data_dir};
pub use manifest::{CollectionId, CollectionSchema, DataFile, PropertySchema};
pub use metrics::{HealthCounts, StorageMetrics};
pub use snapshot::{CollectionScan, CollectionSnapshot, TimeRange};
pub use state::BufferedSize;
pub use storage::Storage;

#[cfg(test)]
mod delete_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod layering_tests;
#[cfg(test)]
mod log_gap_tests;
#[cfg(test)]
mod memory_log;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod row_record_tests;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
