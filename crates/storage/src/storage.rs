//! [`Storage`], the handle every other crate holds: opening an engine on its journal, writing, reading
//! snapshots, deleting, flushing and closing. Each method forwards to the procedure that owns its concern
//! (`engine`, `maintenance`, `deletes`, `statistics`, `buffer_limit`); the journal it opened on decides
//! how changes are made durable (`journal`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use keyhole_model::PreparedEvent;
use keyhole_model::memory_budget::MemoryBudget;
use tokio::sync::oneshot;

use crate::buffer_limit;
use crate::columns::{conform_batch, schema_with_columns};
use crate::commands::{Command, WriteOutcome};
use crate::compaction;
use crate::config::{ObjectsLocation, Result, StorageConfig, StorageError};
use crate::deletes;
use crate::dir_lock;
use crate::engine::Engine;
use crate::flush;
use crate::journal::Journal;
use crate::local_journal::LocalJournal;
use crate::log_journal::LogJournal;
use crate::maintenance;
use crate::manifest::{CollectionId, CollectionSchema, DataFile};
use crate::metrics::{HealthCounts, StorageMetrics};
use crate::objects::ObjectFiles;
use crate::row_edit::RowEdit;
use crate::snapshot::{CollectionScan, CollectionSnapshot, TimeRange, push_in_range};
use crate::statistics;

/// Handle to the storage engine; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    engine: Arc<Engine>,
}

impl Storage {
    /// The engine behind the handle, for the crate's tests.
    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Opens (or creates) the data directory, recovers the journal's state (the WAL replayed, or the
    /// shared log applied) and starts the writer and the flusher.
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
        let grace = config.delete_grace;
        let (journal, mut recovered): (Arc<dyn Journal>, _) = match &config.shared_log {
            None => {
                let (journal, recovered) =
                    LocalJournal::open(&data_dir, grace, &objects, &metrics).await?;
                (Arc::new(journal), recovered)
            }
            Some(log) => {
                let (journal, recovered) =
                    LogJournal::open(log.0.clone(), grace, &objects, &metrics).await?;
                (Arc::new(journal), recovered)
            }
        };
        let edits = std::mem::take(&mut recovered.edits);
        let engine = Engine::start(config, objects, metrics, journal, recovered, data_dir_lock);
        maintenance::spawn_flusher(&engine);
        if !edits.is_empty() {
            let _maintenance = engine.maintenance(true).await?;
            for (collection, edit) in &edits {
                deletes::rewrite_files_locked(&engine, collection, edit).await?;
            }
            tracing::info!(
                deletes = edits.len(),
                "replayed deletes applied to data files"
            );
        }
        Ok(Storage { engine })
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
        let engine = &self.engine;
        buffer_limit::wait_for_buffer_room(
            &engine.config.memory_budget,
            engine.config.buffer_wait,
            &engine.flush_wanted,
        )
        .await?;
        let (reply, answer) = oneshot::channel();
        engine
            .send(Command::Write {
                collection,
                events,
                reply,
            })
            .await?;
        Ok(answer.await.map_err(|_| StorageError::Closed)??)
    }

    /// Deletes a collection: its events, files and schema. Durable when this returns.
    pub async fn delete_collection(&self, collection: CollectionId) -> Result<()> {
        let engine = &self.engine;
        let _maintenance = engine.maintenance(true).await?;
        let (reply, answer) = oneshot::channel();
        engine
            .send(Command::DeleteCollection { collection, reply })
            .await?;
        let removed_files = answer.await.map_err(|_| StorageError::Closed)??;
        engine.store_state().await?;
        engine
            .journal
            .retire_files(engine.parts(), removed_files)
            .await;
        Ok(())
    }

    /// What recovery found wrong since the engine opened.
    pub fn health(&self) -> HealthCounts {
        self.engine.metrics.health()
    }

    /// The memory budget the engine draws from (the server's one budget).
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.engine.config.memory_budget
    }

    /// Where work that outgrows its memory spills (merges, queries): `<data dir>/tmp`, emptied at start.
    pub fn spill_dir(&self) -> PathBuf {
        compaction::tmp_dir(&self.engine.config.data_dir)
    }

    /// The engine's metrics, for the server to register and serve.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.engine.metrics
    }

    /// The column cap of [`StorageConfig::max_columns_per_collection`].
    pub fn max_columns_per_collection(&self) -> usize {
        self.engine.config.max_columns_per_collection
    }

    /// Names and schemas of a project's collections, by name.
    pub fn collections(&self, project: &str) -> Vec<(String, CollectionSchema)> {
        let state = self.engine.state.lock().expect("state lock");
        state
            .collections
            .iter()
            .filter(|(id, _)| id.project == project)
            .map(|(id, collection)| (id.collection.clone(), collection.schema().clone()))
            .collect()
    }

    /// One collection's schema; `None` if it holds no events.
    pub fn collection_schema(&self, collection: &CollectionId) -> Option<CollectionSchema> {
        let state = self.engine.state.lock().expect("state lock");
        state
            .collections
            .get(collection)
            .map(|collection| collection.schema().clone())
    }

    /// What a reader needs to see every acknowledged event of a collection in `range`: the collection's
    /// schema, the Parquet files that may hold such events (pruned by their min/max `keen.timestamp`;
    /// rows outside `range` may remain in them), and the in-memory rows in `range`, shaped to the schema.
    /// Files stay readable for at least the delete grace period after a compaction replaces them.
    /// Refused with [`StorageError::BehindLog`] while this node lacks records of the shared log it knows
    /// exist: the snapshot would be short of them.
    pub fn snapshot(
        &self,
        collection: &CollectionId,
        range: TimeRange,
    ) -> Result<CollectionSnapshot> {
        let mut state = self.engine.state.lock().expect("state lock");
        if state.behind_log {
            return Err(StorageError::BehindLog);
        }
        let Some(target) = state.collections.get_mut(collection) else {
            return Ok(CollectionSnapshot {
                schema: schema_with_columns(&[]),
                files: Vec::new(),
                memory: Vec::new(),
            });
        };
        target.seal();
        let schema = schema_with_columns(&target.schema().column_names());
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
        Ok(CollectionSnapshot {
            schema,
            files,
            memory,
        })
    }

    /// The current change version: pass it to [`Storage::earliest_change_since`] later to learn what
    /// changed in between. Read it before a query's snapshot: whatever the query did not see then
    /// counts as a later change.
    pub fn change_version(&self) -> u64 {
        self.engine.state.lock().expect("state lock").change_version
    }

    /// The earliest `keen.timestamp` of `collection` written, deleted or otherwise changed after
    /// `version`; `None` when nothing changed. A collection that does not exist answers `i64::MIN`.
    pub fn earliest_change_since(&self, collection: &CollectionId, version: u64) -> Option<i64> {
        let state = self.engine.state.lock().expect("state lock");
        match state.collections.get(collection) {
            Some(target) => target.changes.earliest_since(version),
            None => Some(i64::MIN),
        }
    }

    /// Sets the properties by which `project`'s rows are ordered in Parquet files written from now on (by
    /// flushes and compactions), so that reads filtered on them skip other values' data. Not persisted:
    /// the server derives it from the project's access keys at start and whenever they change.
    pub fn set_clustering(&self, project: &str, properties: Vec<String>) {
        let mut clustering = self
            .engine
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
        self.engine.clustering_of(project)
    }

    /// The object store the engine's Parquet files are in.
    pub fn object_store(&self) -> std::sync::Arc<dyn object_store::ObjectStore> {
        self.engine.objects.store()
    }

    /// Every acknowledged event of a collection with `keen.timestamp` in `range`, read into memory.
    pub async fn scan(
        &self,
        collection: &CollectionId,
        range: TimeRange,
    ) -> Result<CollectionScan> {
        let snapshot = self.snapshot(collection, range)?;
        let mut batches = Vec::new();
        for file in &snapshot.files {
            for batch in flush::read_data_file(&self.engine.objects, file, &snapshot.schema).await?
            {
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
        maintenance::flush(&self.engine).await
    }

    /// Flushes, even with nothing buffered, so the write-ahead log keeps nothing written before now
    /// (after a delete that must not stay in it: a tenant's erasure).
    pub async fn flush_retiring_log(&self) -> Result<()> {
        maintenance::flush_retiring_log(&self.engine).await
    }

    /// Whether this node lacks records of the shared log it knows exist (one of its own groups could not
    /// be applied after it was committed): reads must be refused until it catches up, never answered
    /// short. Always false without a shared log.
    pub fn is_behind_log(&self) -> bool {
        self.engine.state.lock().expect("state lock").behind_log
    }

    /// Data files of a collection (for inspection and tests).
    pub fn data_files(&self, collection: &CollectionId) -> Vec<DataFile> {
        let state = self.engine.state.lock().expect("state lock");
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
        self.engine.journal.settle().await;
        let _ = self.engine.commands.send(Command::Stop).await;
        let thread = self
            .engine
            .writer_thread
            .lock()
            .expect("writer thread lock")
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Everything is flushed and the writer has stopped (later writes and flushes answer `Closed`), so
        // another engine may open the directory now.
        self.engine
            .data_dir_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        Ok(())
    }

    /// Deletes the events of `collection` with these ids (whose times lie in `[earliest, latest]`).
    /// Returns how many were removed; durable when this returns.
    pub async fn delete_events(
        &self,
        collection: CollectionId,
        ids: HashSet<String>,
        earliest: i64,
        latest: i64,
    ) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let edit = deletes::events_edit(ids, earliest, latest);
        deletes::apply_edit(&self.engine, collection, edit).await
    }

    /// Deletes a property (and the properties nested under it) from every event of `collection`.
    /// Returns whether anything held it; durable when this returns.
    pub async fn delete_property(
        &self,
        collection: CollectionId,
        property: String,
    ) -> Result<bool> {
        let edit = RowEdit::Property { property };
        Ok(deletes::apply_edit(&self.engine, collection, edit).await? > 0)
    }

    /// The smallest and largest value of the Float64 column `column` in a collection `snapshot`, from file
    /// statistics and memory; `None` when there is no value, or when a file holding the column has a row
    /// group without statistics for it (the caller then scans).
    pub async fn number_range(
        &self,
        snapshot: &CollectionSnapshot,
        column: &str,
    ) -> Result<Option<(f64, f64)>> {
        statistics::number_range(&self.engine.objects, snapshot, column).await
    }
}
