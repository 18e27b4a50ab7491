//! Keyhole's event storage: a write-ahead log for durability, in-memory Arrow buffers so every
//! acknowledged event is readable at once, and Parquet files (via `object_store`) partitioned by project,
//! collection and UTC day of `keen.timestamp`, with a schema per collection.
//!
//! The query layer reads through [`Storage::snapshot`]: a collection's schema, the Parquet files that may
//! hold events of a time range and its in-memory rows in that range, shaped to the schema, so files and
//! memory are read alike (`Storage::scan` materializes a snapshot, for tests and tools).
//! See ARCHITECTURE.md for the life of one write.

#![warn(missing_docs, unreachable_pub)]

pub mod backup;
mod buffer_limit;
mod changes;
mod column_cap;
pub mod columns;
pub mod compaction;
mod config;
mod deletes;
mod dir_lock;
mod file_cache;
mod flush;
mod journal;
pub mod manifest;
mod objects;
mod parquet_reader;
pub mod shared;
mod shared_storage;
mod shared_writer;
mod snapshot;
mod state;
pub mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use keyhole_model::PreparedEvent;
use keyhole_model::memory_budget::{MemoryBudget, MemoryConsumer};
use tokio::sync::{Notify, mpsc, oneshot};

pub use dir_lock::{DataDirLock, lock_data_dir};
pub use manifest::{CollectionId, CollectionSchema, DataFile, PropertySchema};
pub use state::BufferedSize;
pub use writer::WriteOutcome;

use crate::columns::{conform_batch, schema_with_columns};
use crate::objects::ObjectFiles;
use crate::state::State;
use crate::wal::Wal;
use crate::writer::{Command, TokenIndex, Writer};

pub use config::{
    DEFAULT_MAX_COLUMNS_PER_COLLECTION, ObjectsLocation, Result, StorageConfig, StorageError,
};
use snapshot::push_in_range;
pub use snapshot::{CollectionScan, CollectionSnapshot, TimeRange};

struct Inner {
    config: StorageConfig,
    state: Arc<Mutex<State>>,
    commands: mpsc::Sender<Command>,
    objects: ObjectFiles,
    /// Serializes flushes, compactions and collection deletes: everything that rewrites the manifest.
    maintenance: Arc<tokio::sync::Mutex<()>>,
    /// Shared: the release of this node's last maintenance lease, awaited before the next is taken.
    lease_release: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    flush_wanted: Arc<Notify>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Per project, the properties rows are ordered by in new Parquet files (see `flush`).
    clustering: std::sync::RwLock<std::collections::HashMap<String, Vec<String>>>,
    /// Released by `close` or when the engine is dropped (see `dir_lock`).
    data_dir_lock: Mutex<Option<dir_lock::DataDirLock>>,
    metrics: StorageMetrics,
}

/// Handle to the storage engine; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl Storage {
    /// Opens (or creates) the data directory, replays the WAL and starts the writer and flusher.
    pub async fn open(config: StorageConfig) -> Result<Storage> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)?;
        let data_dir_lock = dir_lock::lock_data_dir(&data_dir, config.lock_wait).await?;
        compaction::clear_tmp(&data_dir)?;
        let metrics = StorageMetrics::default();
        let objects = match &config.objects {
            ObjectsLocation::DataDir => ObjectFiles::local(
                data_dir.join("objects"),
                config.file_cache_bytes,
                &metrics,
                &config.memory_budget,
            )?,
            ObjectsLocation::S3(url) => ObjectFiles::s3(
                url,
                config.file_cache_bytes,
                &metrics,
                &config.memory_budget,
            )?,
        };
        if let Some(shared) = config.shared_log.clone() {
            return Storage::open_shared(config, shared, objects, metrics, data_dir_lock).await;
        }
        let loaded = recovery::load_manifest(&data_dir)?;
        let manifest_missing = loaded.is_none();
        let mut manifest = loaded.unwrap_or_default();
        let quarantined =
            recovery::quarantine_unreadable_files(&objects, &mut manifest, &metrics).await?;
        if quarantined > 0 {
            manifest.store(&data_dir)?;
        }
        let listed: std::collections::HashSet<String> = manifest
            .collections
            .iter()
            .flat_map(|collection| collection.files.iter().map(|file| file.path.clone()))
            .collect();
        let mut state = State::from_manifest(manifest);
        let (mut tokens, unreadable) = load_tokens_from_files(&objects, &state).await?;
        if recovery::set_aside_unreadable(&objects, &mut state, unreadable, &metrics, true).await
            > 0
        {
            state.to_manifest().store(&data_dir)?;
        }
        let replay = replay_wal(&wal_dir(&data_dir), &mut state, &mut tokens)?;
        if manifest_missing {
            recovery::check_missing_manifest(&data_dir, &objects, &replay.segments).await?;
        }
        recovery::check_flushed_sequence(state.flushed_sequence, &replay.segments)?;
        recovery::handle_unlisted_files(&objects, &listed, state.flushed_sequence).await?;
        for file in &replay.deleted_files {
            objects.delete(&file.path).await;
        }
        if !replay.deleted_files.is_empty() {
            state.to_manifest().store(&data_dir)?;
        }
        metrics.record_corrupt_wal(&replay.corrupt_segments);
        let buffered = state.memory_size();
        metrics.buffered_rows.set(buffered.rows as i64);
        config
            .memory_budget
            .set_used(MemoryConsumer::EventBuffer, buffered.bytes as u64);
        let next_sequence = replay.highest_sequence.max(state.flushed_sequence) + 1;
        tracing::info!(
            replayed_records = replay.records,
            next_sequence,
            "storage opened"
        );

        let wal = Wal::create(&wal_dir(&data_dir), next_sequence)?;
        let storage = Storage::start(
            config,
            objects,
            metrics,
            state,
            tokens,
            journal::Journal::Local(wal),
            data_dir_lock,
        );
        if !replay.edits.is_empty() {
            let _maintenance = storage.inner.maintenance.lock().await;
            for (collection, edit) in &replay.edits {
                storage.rewrite_files_locked(collection, edit).await?;
            }
            tracing::info!(
                deletes = replay.edits.len(),
                "replayed deletes applied to data files"
            );
        }
        Ok(storage)
    }

    /// Starts the writer thread and the flusher over a loaded state.
    fn start(
        config: StorageConfig,
        objects: ObjectFiles,
        metrics: StorageMetrics,
        state: State,
        tokens: TokenIndex,
        journal: journal::Journal,
        data_dir_lock: DataDirLock,
    ) -> Storage {
        let state = Arc::new(Mutex::new(state));
        let (commands, receiver) = mpsc::channel(1024);
        let flush_wanted = Arc::new(Notify::new());
        let runtime = tokio::runtime::Handle::current();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let flush_rows = config.flush_rows;
            let budget = config.memory_budget.clone();
            let flush_bytes =
                budget.share(MemoryConsumer::EventBuffer) / buffer_limit::FLUSH_AT_SHARE_DIVISOR;
            let weak_for_writer = weak.clone();
            let weak_for_prefetch = weak.clone();
            let writer = Writer {
                metrics: metrics.clone(),
                journal,
                max_columns_per_collection: config.max_columns_per_collection,
                tokens,
                state: state.clone(),
                broken: false,
                on_files_added: Box::new(move |files| {
                    let weak = weak_for_prefetch.clone();
                    runtime.spawn(async move {
                        for file in files {
                            let Some(inner) = weak.upgrade() else { return };
                            // Into the file cache if there is room (a file this node wrote already is).
                            if let Err(error) = inner.objects.get(&file.path).await {
                                tracing::debug!(path = file.path, %error, "cannot prefetch a data file");
                            }
                        }
                    });
                }),
                on_applied: Box::new(move |buffered: state::BufferedSize| {
                    budget.set_used(MemoryConsumer::EventBuffer, buffered.bytes as u64);
                    if buffered.rows < flush_rows && (buffered.bytes as u64) < flush_bytes {
                        return;
                    }
                    if let Some(inner) = weak_for_writer.upgrade() {
                        inner.flush_wanted.notify_one();
                    }
                }),
            };
            let thread = std::thread::Builder::new()
                .name("keyhole-wal".into())
                .spawn(move || writer.run(receiver))
                .expect("spawn wal writer thread");
            Inner {
                config,
                state,
                commands,
                objects,
                maintenance: Arc::default(),
                lease_release: Arc::default(),
                flush_wanted: flush_wanted.clone(),
                writer_thread: Mutex::new(Some(thread)),
                clustering: std::sync::RwLock::default(),
                data_dir_lock: Mutex::new(Some(data_dir_lock)),
                metrics: metrics.clone(),
            }
        });
        spawn_flusher(Arc::downgrade(&inner), flush_wanted);
        Storage { inner }
    }

    /// Appends events to a collection. Returns once they are fsync'd in the WAL and visible to scans.
    /// While the unflushed rows hold their part of the memory budget, waits for a flush to free room
    /// (up to [`StorageConfig::buffer_wait`]), then refuses with [`StorageError::BufferFull`], nothing
    /// stored.
    pub async fn append(
        &self,
        collection: CollectionId,
        events: Vec<PreparedEvent>,
    ) -> Result<Vec<WriteOutcome>> {
        self.wait_for_buffer_room().await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write {
            collection,
            events,
            reply,
        })
        .await?;
        Ok(answer.await.map_err(|_| StorageError::Closed)??)
    }

    /// Deletes a collection: its events, files and schema. Durable when this returns.
    pub async fn delete_collection(&self, collection: CollectionId) -> Result<()> {
        let _maintenance = self.maintenance(true).await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::DeleteCollection { collection, reply })
            .await?;
        let removed_files = answer.await.map_err(|_| StorageError::Closed)??;
        self.store_manifest().await?;
        if self.shared_log().is_some() {
            // Other nodes may be reading them until they apply the delete.
            self.delete_later(removed_files);
            return Ok(());
        }
        for file in removed_files {
            self.inner.objects.delete(&file.path).await;
        }
        Ok(())
    }

    /// What recovery found wrong since the engine opened.
    pub fn health(&self) -> HealthCounts {
        self.inner.metrics.health()
    }

    /// The engine's metrics, for the server to register and serve.
    /// The memory budget the engine draws from (the server's one budget).
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.inner.config.memory_budget
    }

    /// Where work that outgrows its memory spills (merges, queries): `<data dir>/tmp`, emptied at start.
    pub fn spill_dir(&self) -> PathBuf {
        compaction::tmp_dir(&self.inner.config.data_dir)
    }

    /// The engine's metrics, for the server to register and serve.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.inner.metrics
    }

    /// The column cap of [`StorageConfig::max_columns_per_collection`].
    pub fn max_columns_per_collection(&self) -> usize {
        self.inner.config.max_columns_per_collection
    }

    /// Names and schemas of a project's collections, by name.
    pub fn collections(&self, project: &str) -> Vec<(String, CollectionSchema)> {
        let state = self.inner.state.lock().expect("state lock");
        state
            .collections
            .iter()
            .filter(|(id, _)| id.project == project)
            .map(|(id, collection)| (id.collection.clone(), collection.schema.clone()))
            .collect()
    }

    /// One collection's schema; `None` if it holds no events.
    pub fn collection_schema(&self, collection: &CollectionId) -> Option<CollectionSchema> {
        let state = self.inner.state.lock().expect("state lock");
        state
            .collections
            .get(collection)
            .map(|collection| collection.schema.clone())
    }

    /// What a reader needs to see every acknowledged event of a collection in `range`: the collection's
    /// schema, the Parquet files that may hold such events (pruned by their min/max `keen.timestamp`;
    /// rows outside `range` may remain in them), and the in-memory rows in `range`, shaped to the schema.
    /// Files stay readable for at least the delete grace period after a compaction replaces them.
    pub fn snapshot(&self, collection: &CollectionId, range: TimeRange) -> CollectionSnapshot {
        let mut state = self.inner.state.lock().expect("state lock");
        let Some(target) = state.collections.get_mut(collection) else {
            return CollectionSnapshot {
                schema: schema_with_columns(&[]),
                files: Vec::new(),
                memory: Vec::new(),
            };
        };
        target.seal();
        let schema = schema_with_columns(&target.schema.column_names());
        let files = target
            .files
            .iter()
            .filter(|file| range.overlaps_file(file))
            .cloned()
            .collect();
        let mut memory = Vec::new();
        for batch in target.flushing.iter().chain(&target.sealed) {
            push_in_range(&mut memory, conform_batch(batch, &schema), range);
        }
        CollectionSnapshot {
            schema,
            files,
            memory,
        }
    }

    /// The current change version: pass it to [`Storage::earliest_change_since`] later to learn what
    /// changed in between. Read it before a query's snapshot: whatever the query did not see then
    /// counts as a later change.
    pub fn change_version(&self) -> u64 {
        self.inner.state.lock().expect("state lock").change_version
    }

    /// The earliest `keen.timestamp` of `collection` written, deleted or otherwise changed after
    /// `version`; `None` when nothing changed. A collection that does not exist answers `i64::MIN`.
    pub fn earliest_change_since(&self, collection: &CollectionId, version: u64) -> Option<i64> {
        let state = self.inner.state.lock().expect("state lock");
        match state.collections.get(collection) {
            Some(target) => target.changes.earliest_since(version),
            None => Some(i64::MIN),
        }
    }

    /// The object store holding the data files (paths as in [`DataFile::path`]).
    /// Sets the properties by which `project`'s rows are ordered in Parquet files written from now on (by
    /// flushes and compactions), so that reads filtered on them skip other values' data. Not persisted:
    /// the server derives it from the project's access keys at start and whenever they change.
    pub fn set_clustering(&self, project: &str, properties: Vec<String>) {
        let mut clustering = self
            .inner
            .clustering
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if properties.is_empty() {
            clustering.remove(project);
        } else {
            clustering.insert(project.to_string(), properties);
        }
    }

    /// The properties `project`'s new Parquet files are ordered by.
    pub fn clustering_of(&self, project: &str) -> Vec<String> {
        self.inner
            .clustering
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(project)
            .cloned()
            .unwrap_or_default()
    }

    /// The object store the engine's Parquet files are in.
    pub fn object_store(&self) -> std::sync::Arc<dyn object_store::ObjectStore> {
        self.inner.objects.store()
    }

    /// Every acknowledged event of a collection with `keen.timestamp` in `range`, read into memory.
    pub async fn scan(
        &self,
        collection: &CollectionId,
        range: TimeRange,
    ) -> Result<CollectionScan> {
        let snapshot = self.snapshot(collection, range);
        let mut batches = Vec::new();
        for file in &snapshot.files {
            for batch in flush::read_data_file(&self.inner.objects, file, &snapshot.schema).await? {
                push_in_range(&mut batches, batch, range);
            }
        }
        batches.extend(snapshot.memory);
        Ok(CollectionScan {
            schema: snapshot.schema,
            batches,
        })
    }

    /// Writes every buffered row to Parquet now, then compacts days with many files.
    pub async fn flush(&self) -> Result<()> {
        let _maintenance = self.maintenance(true).await?;
        self.flush_locked().await?;
        self.compact_locked(self.inner.config.compact_min_files)
            .await
    }

    /// The flush of a flush-interval tick: when nothing was buffered since the previous flush, the
    /// collections are at rest and every day with `settled_min_files` files or more is merged.
    async fn flush_on_tick(&self) -> Result<()> {
        // Shared: when another node is flushing or compacting, this tick has nothing to do.
        let Some(_maintenance) = self.maintenance(false).await? else {
            return Ok(());
        };
        let at_rest = self.inner.state.lock().expect("state lock").memory_rows() == 0;
        self.flush_locked().await?;
        let min_files = if at_rest {
            self.inner.config.settled_min_files
        } else {
            self.inner.config.compact_min_files
        };
        self.compact_locked(min_files.max(2)).await
    }

    /// Data files of a collection (for inspection and tests).
    pub fn data_files(&self, collection: &CollectionId) -> Vec<DataFile> {
        let state = self.inner.state.lock().expect("state lock");
        state
            .collections
            .get(collection)
            .map(|c| c.files.clone())
            .unwrap_or_default()
    }

    /// Flushes everything and stops the writer. Later calls fail with [`StorageError::Closed`].
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        // Shared: the lease that flush took is given back before the process goes, so other nodes need
        // not wait for it to expire.
        self.lease_released().await;
        let _ = self.inner.commands.send(Command::Stop).await;
        let thread = self
            .inner
            .writer_thread
            .lock()
            .expect("writer thread lock")
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Everything is flushed and the writer has stopped (later writes and flushes answer `Closed`), so
        // another engine may open the directory now.
        self.inner
            .data_dir_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        Ok(())
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| StorageError::Closed)
    }

    async fn store_manifest(&self) -> Result<()> {
        if let Some(log) = self.shared_log() {
            return self.store_checkpoint(&log).await;
        }
        let manifest = self.inner.state.lock().expect("state lock").to_manifest();
        let data_dir = self.inner.config.data_dir.clone();
        tokio::task::spawn_blocking(move || manifest.store(&data_dir))
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    fn delete_later(&self, files: Vec<DataFile>) {
        if files.is_empty() {
            return;
        }
        let objects = self.inner.objects.clone();
        let grace = self.inner.config.delete_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for file in files {
                objects.delete(&file.path).await;
            }
        });
    }
}

fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// The background flusher. It waits holding only a weak reference, so dropping every `Storage` handle drops
/// the engine (and releases the data directory) without waiting for the next flush interval.
fn spawn_flusher(inner: Weak<Inner>, flush_wanted: Arc<Notify>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let interval = strong.config.flush_interval;
    drop(strong);
    tokio::spawn(async move {
        loop {
            let timer_fired = tokio::time::timeout(interval, flush_wanted.notified())
                .await
                .is_err();
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let storage = Storage { inner: strong };
            let flushed = if timer_fired {
                storage.flush_on_tick().await
            } else {
                storage.flush().await
            };
            if let Err(error) = flushed {
                if matches!(error, StorageError::Closed) {
                    return;
                }
                tracing::error!(%error, "background flush failed");
            }
        }
    });
}

struct ReplaySummary {
    highest_sequence: u64,
    /// Deletes replayed into memory whose files must be rewritten before the engine serves.
    edits: Vec<(CollectionId, deletes::RowEdit)>,
    records: usize,
    deleted_files: Vec<DataFile>,
    corrupt_segments: Vec<wal::CorruptSegment>,
    segments: Vec<wal::SegmentSpan>,
}

fn replay_wal(
    directory: &Path,
    state: &mut State,
    tokens: &mut TokenIndex,
) -> std::io::Result<ReplaySummary> {
    let flushed = state.flushed_sequence;
    let mut summary = ReplaySummary {
        highest_sequence: 0,
        edits: Vec::new(),
        records: 0,
        deleted_files: Vec::new(),
        corrupt_segments: Vec::new(),
        segments: Vec::new(),
    };
    let report = wal::replay(directory, |sequence, entry| {
        if sequence <= flushed {
            return;
        }
        summary.records += 1;
        let mut applied = shared::Applied::default();
        shared::apply_entry(state, tokens, entry, false, &mut applied);
        summary.deleted_files.extend(applied.deleted_files);
        summary.edits.extend(applied.edits);
    })?;
    summary.highest_sequence = report.highest_sequence;
    summary.corrupt_segments = report.corrupt_segments;
    summary.segments = report.segments;
    Ok(summary)
}

mod maintenance;
mod metrics;
mod recovery;
mod statistics;
mod tokens;
pub use metrics::{HealthCounts, StorageMetrics};
use tokens::load_tokens_from_files;

#[cfg(test)]
mod delete_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod memory_log;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod tests;
