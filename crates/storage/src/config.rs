//! How an engine is opened (`StorageConfig`: where, how it flushes and compacts, its limits and memory
//! budget, where its Parquet files live) and what it can fail with (`StorageError`).

use std::path::PathBuf;
use std::time::Duration;

use keyhole_model::memory_budget::MemoryBudget;

use crate::shared;

/// Storage failures. Callers show clients a generic error and log the detail.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading or writing failed.
    #[error("storage i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The engine is closed.
    #[error("storage is shut down")]
    Closed,
    /// Another engine holds the data directory.
    #[error("the data directory {0} is in use by another keyhole process")]
    DataDirInUse(String),
    /// The data directory contradicts itself in a way recovery must not guess about (see `recovery`).
    #[error("{0}")]
    Inconsistent(String),
    /// The unflushed rows hold their share of the memory budget and a flush did not free room in time:
    /// nothing of the write was stored; retrying shortly succeeds once the flush is done.
    #[error("the event buffer is full until a flush completes")]
    BufferFull,
    /// This node lacks records of the shared log that it knows exist and cannot read them yet
    /// ([`crate::Storage::is_behind_log`]): a read would be answered short, so it is refused.
    #[error("this node is catching up with the shared log")]
    BehindLog,
}

impl StorageError {
    /// Whether the data directory's filesystem is full (or the user's quota is): the write was undone and
    /// will succeed once space is freed.
    pub fn is_disk_full(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match self {
            StorageError::Io(error) => {
                error.kind() == std::io::ErrorKind::StorageFull
                    || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
            }
            _ => false,
        }
    }
}

/// A storage result.
pub type Result<T> = std::result::Result<T, StorageError>;

/// The default of [`StorageConfig::max_columns_per_collection`].
pub const DEFAULT_MAX_COLUMNS_PER_COLLECTION: usize = 1_000;

/// How an engine is opened: where, how it flushes and compacts, its limits and its memory budget.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// The directory of the WAL, the manifest and (by default) the Parquet files.
    pub data_dir: PathBuf,
    /// Flush to Parquet once this many rows are buffered in memory.
    pub flush_rows: usize,
    /// Flush buffered rows at least this often.
    pub flush_interval: Duration,
    /// Merge a day's files once it has this many.
    pub compact_min_files: usize,
    /// At rest (a flush-interval tick that finds nothing written since the previous one), merge every day
    /// that has at least this many files: a collection nobody is writing to is then read as one file per
    /// day. Queries pay a fixed cost per file (footer, schema, pruning setup), which dominates a tenant's
    /// scoped read; while events arrive, the day being written would be rewritten at every tick, so this
    /// waits for a quiet tick.
    pub settled_min_files: usize,
    /// How long replaced files stay readable for scans that listed them.
    pub delete_grace: Duration,
    /// Bytes of whole data files kept in memory for queries (`file_cache`); 0 disables the cache.
    pub file_cache_bytes: usize,
    /// How long `open` waits for another engine to release the data directory (`dir_lock`).
    pub lock_wait: Duration,
    /// Most property columns (`{path}#{kind}`) one collection may have. Every read widens batches to the
    /// collection's schema, so an unbounded schema would make every query on it slow; events that would
    /// add columns past the cap are refused (`WriteOutcome::TooManyColumns`).
    pub max_columns_per_collection: usize,
    /// Where Parquet files are kept.
    pub objects: ObjectsLocation,
    /// Several nodes share one store through this log (see `shared`); `None`: this node's own WAL and
    /// manifest in the data directory.
    pub shared_log: Option<shared::SharedLogHandle>,
    /// The server's memory budget: the unflushed rows draw from its `EventBuffer` share (a flush starts
    /// at a quarter of it, writes wait at a third), compaction from `Compaction`, the file cache reports
    /// to `FileCache` (see `keyhole_model::memory_budget`).
    pub memory_budget: MemoryBudget,
    /// How long a write waits for a flush to free the event buffer before it is refused
    /// ([`StorageError::BufferFull`]).
    pub buffer_wait: Duration,
}

/// Where a node keeps its Parquet files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ObjectsLocation {
    /// `objects/` in the data directory.
    #[default]
    DataDir,
    /// An S3-compatible bucket, `s3://bucket/prefix` (see `objects::ObjectFiles::s3`).
    S3(String),
}

impl ObjectsLocation {
    /// `s3://…` names a bucket; anything else is refused (the default needs no option).
    pub fn parse(text: &str) -> std::result::Result<ObjectsLocation, String> {
        if text.starts_with("s3://") {
            return Ok(ObjectsLocation::S3(text.to_string()));
        }
        Err(format!(
            "the objects location must be s3://bucket/prefix (without it, files stay in the data directory), not {text}"
        ))
    }
}

impl StorageConfig {
    /// The defaults for an engine on `data_dir` (flush every 30 s or 200,000 rows, files in the data directory).
    pub fn new(data_dir: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            data_dir: data_dir.into(),
            flush_rows: 200_000,
            flush_interval: Duration::from_secs(30),
            compact_min_files: 4,
            settled_min_files: 2,
            delete_grace: Duration::from_secs(60),
            file_cache_bytes: 512 * 1024 * 1024,
            lock_wait: Duration::from_secs(30),
            max_columns_per_collection: DEFAULT_MAX_COLUMNS_PER_COLLECTION,
            objects: ObjectsLocation::DataDir,
            shared_log: None,
            memory_budget: MemoryBudget::default(),
            buffer_wait: Duration::from_secs(5),
        }
    }
}
