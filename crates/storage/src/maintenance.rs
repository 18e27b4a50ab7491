//! The flush and compaction procedures (see `flush.rs` for why each step is crash-safe, `compaction.rs`
//! for the streaming merge). Both run with
//! the maintenance lock held, so only one of them rewrites the manifest at a time.

use arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;

use keyhole_model::memory_budget::MemoryConsumer;

use crate::compaction::{BetweenWork, MergeMemory, MergedFile, SpillDirectory, merge_files};
use crate::config::{Result, StorageError};
use crate::flush::{day_file_path, days_to_compact, merge_batches, split_by_day, write_day_file};
use crate::manifest::{CollectionId, DataFile};
use crate::shared::{Flushed, KIND_FLUSHED, KIND_SWAPPED, Swapped, payload_of};
use crate::writer::Command;
use crate::{Storage, wal, wal_dir};

impl Storage {
    pub(crate) async fn flush_locked(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let flushed = self.flush_unmeasured().await;
        self.inner
            .metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        let buffered = self.inner.state.lock().expect("state lock").memory_size();
        self.inner.metrics.buffered_rows.set(buffered.rows as i64);
        self.inner.config.memory_budget.set_used(
            keyhole_model::memory_budget::MemoryConsumer::EventBuffer,
            buffered.bytes as u64,
        );
        flushed
    }

    async fn flush_unmeasured(&self) -> Result<()> {
        let nothing_to_flush = {
            let state = self.inner.state.lock().expect("state lock");
            // Rows left "flushing" by a failed flush are retried too.
            state.memory_rows() == 0
                && state
                    .collections
                    .values()
                    .all(|collection| collection.flushing.is_empty())
        };
        if nothing_to_flush {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Rotate { reply }).await?;
        let through_sequence = answer.await.map_err(|_| StorageError::Closed)??;

        let flushing: Vec<(CollectionId, u64, Vec<RecordBatch>)> = {
            let state = self.inner.state.lock().expect("state lock");
            state
                .collections
                .iter()
                .filter(|(_, collection)| !collection.flushing.is_empty())
                .map(|(id, collection)| {
                    (
                        id.clone(),
                        collection.incarnation,
                        collection.flushing.clone(),
                    )
                })
                .collect()
        };
        let mut written: Vec<(CollectionId, u64, Vec<DataFile>)> = Vec::new();
        for (id, incarnation, batches) in flushing {
            // Merging and sorting are CPU work: on a blocking thread, off the request handlers' workers.
            let days = tokio::task::spawn_blocking(move || {
                merge_batches(&batches).map(|merged| split_by_day(&merged))
            })
            .await
            .map_err(std::io::Error::other)?;
            let Some(days) = days else {
                continue;
            };
            let mut files = Vec::new();
            for (day, day_batch) in days {
                files.push(
                    write_day_file(
                        &self.inner.objects,
                        &id,
                        &day,
                        &day_batch,
                        through_sequence,
                        &self.clustering_of(&id.project),
                    )
                    .await?,
                );
            }
            written.push((id, incarnation, files));
        }
        if self.shared_log().is_some() {
            return self.commit_shared_flush(through_sequence, written).await;
        }

        let mut orphaned = Vec::new();
        let manifest = {
            let mut state = self.inner.state.lock().expect("state lock");
            for (id, incarnation, files) in written {
                match state.collections.get_mut(&id) {
                    Some(collection) if collection.incarnation == incarnation => {
                        collection.files.extend(files);
                        collection.flushing.clear();
                        collection.batches_changed();
                    }
                    // Deleted while we wrote: its new files must not come back.
                    _ => orphaned.extend(files),
                }
            }
            state.flushed_sequence = through_sequence;
            state.to_manifest()
        };
        // Until the manifest is stored, a crash replays the WAL; the files just written are then
        // unlisted, and start-up removes them (their names carry a sequence past the manifest's).
        let data_dir = self.inner.config.data_dir.clone();
        let wal_directory = wal_dir(&data_dir);
        tokio::task::spawn_blocking(move || {
            manifest.store(&data_dir)?;
            wal::remove_flushed_segments(&wal_directory, through_sequence)
        })
        .await
        .map_err(std::io::Error::other)??;
        for file in orphaned {
            self.inner.objects.delete(&file.path).await;
        }
        tracing::debug!(through_sequence, "flushed");
        Ok(())
    }

    /// Swaps each old file of `id` for its replacement (none: its rows are gone) if the collection is
    /// still the incarnation that was read, and stores the manifest; otherwise deletes the replacements.
    /// Returns whether it swapped. Old files are deleted after the grace period.
    pub(crate) async fn swap_files(
        &self,
        id: &CollectionId,
        incarnation: u64,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> Result<bool> {
        if self.shared_log().is_some() {
            return self.commit_shared_swap(id, replaced).await;
        }
        let swapped = {
            let mut state = self.inner.state.lock().expect("state lock");
            match state.collections.get_mut(id) {
                Some(collection) if collection.incarnation == incarnation => {
                    for (old, new) in &replaced {
                        collection.files.retain(|file| file != old);
                        collection.files.extend(new.clone());
                    }
                    true
                }
                _ => false,
            }
        };
        if !swapped {
            for new in replaced.into_iter().filter_map(|(_, new)| new) {
                self.inner.objects.delete(&new.path).await;
            }
            return Ok(false);
        }
        self.store_manifest().await?;
        self.delete_later(replaced.into_iter().map(|(old, _)| old).collect());
        Ok(true)
    }

    /// Shared: records the flushed files in the log (every node swaps them for the flushing rows when it
    /// applies the record), deletes files the record could not place, and stores a checkpoint.
    async fn commit_shared_flush(
        &self,
        through: u64,
        written: Vec<(CollectionId, u64, Vec<DataFile>)>,
    ) -> Result<()> {
        let flushed = Flushed {
            through,
            files: written
                .into_iter()
                .map(|(id, _, files)| (id, files))
                .collect(),
        };
        let applied = self
            .append_maintenance(KIND_FLUSHED, payload_of(&flushed))
            .await?;
        for file in applied.rejected_files {
            self.inner.objects.delete(&file.path).await;
        }
        self.store_manifest().await?;
        tracing::debug!(through, "flushed to the shared store");
        Ok(())
    }

    /// Shared: records a swap in the log; whether it applied (the old files were all still listed).
    async fn commit_shared_swap(
        &self,
        id: &CollectionId,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> Result<bool> {
        let swapped = Swapped {
            collection: id.clone(),
            replaced: replaced.clone(),
        };
        let applied = self
            .append_maintenance(KIND_SWAPPED, payload_of(&swapped))
            .await?;
        for file in applied.rejected_files {
            self.inner.objects.delete(&file.path).await;
        }
        if !applied.swapped {
            return Ok(false);
        }
        self.store_manifest().await?;
        self.delete_later(replaced.into_iter().map(|(old, _)| old).collect());
        Ok(true)
    }

    async fn append_maintenance(
        &self,
        kind: &'static str,
        payload: Vec<u8>,
    ) -> Result<crate::shared::Applied> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Maintenance {
            kind,
            payload,
            reply,
        })
        .await?;
        Ok(answer.await.map_err(|_| StorageError::Closed)??)
    }

    /// Merges every day of every collection that has `min_files` files or more.
    pub(crate) async fn compact_locked(&self, min_files: usize) -> Result<()> {
        let candidates: Vec<(CollectionId, u64, Vec<DataFile>)> = {
            let state = self.inner.state.lock().expect("state lock");
            state
                .collections
                .iter()
                .flat_map(|(id, collection)| {
                    days_to_compact(&collection.files, min_files)
                        .into_iter()
                        .map(|files| (id.clone(), collection.incarnation, files))
                })
                .collect()
        };
        for (id, incarnation, old_files) in candidates {
            let started = std::time::Instant::now();
            self.compact_day(id, incarnation, old_files).await?;
            self.inner
                .metrics
                .compaction_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Merges one day's files with the streaming merge (`compaction`), within the memory budget's
    /// `Compaction` share; skipped (tried again at the next tick) while the share is held elsewhere.
    async fn compact_day(
        &self,
        id: CollectionId,
        incarnation: u64,
        old_files: Vec<DataFile>,
    ) -> Result<()> {
        let schema = {
            let state = self.inner.state.lock().expect("state lock");
            let Some(collection) = state.collections.get(&id) else {
                return Ok(());
            };
            crate::columns::schema_with_columns(&collection.schema.column_names())
        };
        let budget = &self.inner.config.memory_budget;
        let share = budget.share(MemoryConsumer::Compaction);
        let Some(_reservation) = budget.try_reserve(MemoryConsumer::Compaction, share) else {
            budget.record_refusal(MemoryConsumer::Compaction);
            tracing::debug!(collection = %id.collection, "compaction deferred: its memory is in use");
            return Ok(());
        };
        let spill = SpillDirectory::create(&self.inner.config.data_dir)?;
        let cluster_by = self.clustering_of(&id.project);
        // The merge holds the maintenance lock: it flushes the event buffer itself when that fills.
        let storage = self.clone();
        let between: BetweenWork = std::sync::Arc::new(move || {
            let storage = storage.clone();
            Box::pin(async move {
                storage
                    .flush_if_buffer_full_locked()
                    .await
                    .map_err(std::io::Error::other)
            })
        });
        let merged = merge_files(
            &self.inner.objects,
            &old_files,
            &schema,
            &cluster_by,
            MergeMemory::within(share as usize),
            &spill,
            between,
        )
        .await?;
        let day = old_files[0].day.clone();
        let new_file = match merged {
            Some(merged) => Some(self.store_merged_file(&id, &day, merged).await?),
            None => None,
        };
        // The first old file is replaced by the new one; the others just go.
        let mut replaced: Vec<(DataFile, Option<DataFile>)> =
            old_files.iter().map(|file| (file.clone(), None)).collect();
        replaced[0].1.clone_from(&new_file);
        if !self.swap_files(&id, incarnation, replaced).await? {
            return Ok(());
        }
        tracing::debug!(
            collection = %id.collection,
            day,
            merged_files = old_files.len(),
            rows = new_file.map_or(0, |file| file.rows),
            "compacted"
        );
        Ok(())
    }

    /// Stores a file that replaces files of `id`'s `day` (a compaction's merge or a delete's rewrite),
    /// named after the flushed sequence so recovery sets it aside if its swap never committed.
    pub(crate) async fn store_merged_file(
        &self,
        id: &CollectionId,
        day: &str,
        merged: MergedFile,
    ) -> Result<DataFile> {
        self.inner
            .metrics
            .compaction_spilled_runs
            .inc_by(merged.spilled_runs as u64);
        let name_hint = self
            .inner
            .state
            .lock()
            .expect("state lock")
            .flushed_sequence;
        let path = day_file_path(id, day, name_hint);
        let bytes = self
            .inner
            .objects
            .put_file_durable(&path, &merged.local_path)
            .await?;
        Ok(DataFile {
            path,
            day: day.to_string(),
            min_timestamp_millis: merged.min_timestamp_millis,
            max_timestamp_millis: merged.max_timestamp_millis,
            rows: merged.rows,
            bytes: bytes as usize,
        })
    }
}
