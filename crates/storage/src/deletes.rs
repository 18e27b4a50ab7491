//! Deleting events (by `keen.id`) and properties, durably: a delete is a WAL record, acknowledged once it
//! is fsync'd, applied at once to the in-memory rows (by the writer, under the state lock, so no read sees
//! half of it), and then to the Parquet files that may hold what it removes: each such file is read,
//! rewritten without the removed rows or columns, and swapped in the manifest, all before the caller is
//! answered. Reads between the WAL commit and the swap may still see the old files; the delete is not
//! acknowledged until they cannot.
//!
//! Crash safety: the maintenance lock is held from the WAL record to the manifest swap, so no flush can
//! move the flushed sequence past an unapplied delete. If the process dies in between, the record is
//! replayed at start-up: its rows are removed from memory again and the files are rewritten before the
//! engine serves anything (rewriting a file that no longer holds what is deleted changes nothing). A new
//! file written by an interrupted rewrite is unlisted and set aside like an interrupted compaction's.
//!
//! Design: events are deleted by id (the query layer finds the ids of the events matching filters and a
//! timeframe in the caller's scope), so the record says exactly which events go and a later event that
//! would also match is never touched. `keen.id`s are assigned by Keyhole and unique. Uniqueness tokens of
//! deleted events stay remembered for their 31-day window.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use keyhole_model::flat::ID_COLUMN;
use tokio::sync::oneshot;

use keyhole_model::memory_budget::MemoryConsumer;

use crate::Storage;
use crate::compaction::{MergeMemory, SpillDirectory, rewrite_file};
use crate::config::{Result, StorageError};
use crate::manifest::{CollectionId, DataFile};
use crate::state::CollectionState;
use crate::wal::WalEntry;
use crate::writer::Command;

/// What a delete removes.
#[derive(Clone, Debug)]
pub(crate) enum RowEdit {
    /// Events by `keen.id`, all with `keen.timestamp` in `[earliest, latest]`.
    Events {
        ids: Arc<HashSet<String>>,
        earliest: i64,
        latest: i64,
    },
    /// A property and every property nested under it.
    Property { property: String },
}

impl RowEdit {
    /// Whether a physical column `{path}#{kind}` belongs to the deleted property.
    fn drops_column(&self, column: &str) -> bool {
        let RowEdit::Property { property } = self else {
            return false;
        };
        let path = column.rsplit_once('#').map_or(column, |(path, _)| path);
        path == property
            || path
                .strip_prefix(property.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Whether a data file may hold what this edit removes.
    fn may_touch(&self, file: &DataFile) -> bool {
        match self {
            RowEdit::Events {
                earliest, latest, ..
            } => file.max_timestamp_millis >= *earliest && file.min_timestamp_millis <= *latest,
            RowEdit::Property { .. } => true,
        }
    }

    /// The batch without the removed rows or columns, and how many rows (or cells) went.
    pub(crate) fn apply(&self, batch: &RecordBatch) -> (RecordBatch, usize) {
        match self {
            RowEdit::Events { ids, .. } => {
                let Some(column) = batch
                    .column_by_name(ID_COLUMN)
                    .and_then(|column| column.as_any().downcast_ref::<StringArray>())
                else {
                    return (batch.clone(), 0);
                };
                let keep: BooleanArray = column
                    .iter()
                    .map(|id| Some(!id.is_some_and(|id| ids.contains(id))))
                    .collect();
                let removed = keep.false_count();
                if removed == 0 {
                    return (batch.clone(), 0);
                }
                let kept = filter_record_batch(batch, &keep).expect("mask of equal length");
                (kept, removed)
            }
            RowEdit::Property { .. } => {
                let schema = batch.schema();
                let keep: Vec<usize> = (0..schema.fields().len())
                    .filter(|index| !self.drops_column(schema.field(*index).name()))
                    .collect();
                if keep.len() == schema.fields().len() {
                    return (batch.clone(), 0);
                }
                let dropped_cells: usize = (0..schema.fields().len())
                    .filter(|index| !keep.contains(index))
                    .map(|index| batch.num_rows() - batch.column(index).null_count())
                    .sum();
                let kept = batch
                    .project(&keep)
                    .expect("indices of the batch's own columns");
                (kept, dropped_cells.max(1))
            }
        }
    }

    /// The WAL record of this edit on `collection`.
    pub(crate) fn wal_entry(&self, collection: &CollectionId) -> WalEntry {
        let (project, collection) = (collection.project.clone(), collection.collection.clone());
        match self {
            RowEdit::Events {
                ids,
                earliest,
                latest,
            } => {
                let mut ids: Vec<String> = ids.iter().cloned().collect();
                ids.sort();
                WalEntry::DeleteEvents {
                    project,
                    collection,
                    ids,
                    earliest: *earliest,
                    latest: *latest,
                }
            }
            RowEdit::Property { property } => WalEntry::DeleteProperty {
                project,
                collection,
                property: property.clone(),
            },
        }
    }

    /// The edit a replayed WAL record describes, with its collection; `None` for other records.
    pub(crate) fn from_wal_entry(entry: WalEntry) -> Option<(CollectionId, RowEdit)> {
        match entry {
            WalEntry::DeleteEvents {
                project,
                collection,
                ids,
                earliest,
                latest,
            } => Some((
                CollectionId {
                    project,
                    collection,
                },
                RowEdit::Events {
                    ids: Arc::new(ids.into_iter().collect()),
                    earliest,
                    latest,
                },
            )),
            WalEntry::DeleteProperty {
                project,
                collection,
                property,
            } => Some((
                CollectionId {
                    project,
                    collection,
                },
                RowEdit::Property { property },
            )),
            _ => None,
        }
    }

    /// The earliest event time the edit changes (for the change log).
    pub(crate) fn earliest_time(&self) -> i64 {
        match self {
            RowEdit::Events { earliest, .. } => *earliest,
            RowEdit::Property { .. } => i64::MIN,
        }
    }

    /// Applies the edit to a collection's in-memory rows and schema; returns the rows (or cells) removed.
    pub(crate) fn apply_to_memory(&self, collection: &mut CollectionState) -> usize {
        collection.seal();
        let mut removed = 0;
        for batches in [&mut collection.sealed, &mut collection.flushing] {
            for batch in batches.iter_mut() {
                let (kept, gone) = self.apply(batch);
                removed += gone;
                *batch = kept;
            }
            batches.retain(|batch| batch.num_rows() > 0);
        }
        collection.batches_changed();
        if let RowEdit::Property { .. } = self {
            collection
                .schema
                .properties
                .retain(|path, _| !self.drops_column(path));
        }
        removed
    }
}

impl Storage {
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
        let edit = RowEdit::Events {
            ids: Arc::new(ids),
            earliest,
            latest,
        };
        self.apply_edit(collection, edit).await
    }

    /// Deletes a property (and the properties nested under it) from every event of `collection`.
    /// Returns whether anything held it; durable when this returns.
    pub async fn delete_property(
        &self,
        collection: CollectionId,
        property: String,
    ) -> Result<bool> {
        let edit = RowEdit::Property { property };
        Ok(self.apply_edit(collection, edit).await? > 0)
    }

    async fn apply_edit(&self, collection: CollectionId, edit: RowEdit) -> Result<usize> {
        let _maintenance = self.maintenance(true).await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Edit {
            collection: collection.clone(),
            edit: edit.clone(),
            reply,
        })
        .await?;
        let in_memory = answer.await.map_err(|_| StorageError::Closed)??;
        let in_files = self.rewrite_files_locked(&collection, &edit).await?;
        Ok(in_memory + in_files)
    }

    /// Rewrites the files of `collection` that hold what `edit` removes; the maintenance lock must be
    /// held. Returns the rows (or cells) removed.
    pub(crate) async fn rewrite_files_locked(
        &self,
        collection: &CollectionId,
        edit: &RowEdit,
    ) -> Result<usize> {
        let (files, incarnation) = {
            let state = self.inner.state.lock().expect("state lock");
            let Some(target) = state.collections.get(collection) else {
                return Ok(0);
            };
            let files: Vec<DataFile> = target
                .files
                .iter()
                .filter(|file| edit.may_touch(file))
                .cloned()
                .collect();
            (files, target.incarnation)
        };
        // Deletes and compactions both hold the maintenance lock, so the compaction share is free here;
        // each file is rewritten streaming within it (`compaction::rewrite_file`).
        let budget = &self.inner.config.memory_budget;
        let share = budget.share(MemoryConsumer::Compaction);
        let _reservation = budget.try_reserve(MemoryConsumer::Compaction, share);
        let memory = MergeMemory::within(share as usize);
        let mut removed = 0;
        let mut replaced: Vec<(DataFile, Option<DataFile>)> = Vec::new();
        for file in files {
            let spill = SpillDirectory::create(&self.inner.config.data_dir)?;
            let (removed_here, rewritten) =
                rewrite_file(&self.inner.objects, &file, memory, &spill, edit.clone()).await?;
            if removed_here == 0 {
                continue;
            }
            removed += removed_here;
            let new_file = match rewritten {
                Some(rewritten) => Some(
                    self.store_merged_file(collection, &file.day, rewritten)
                        .await?,
                ),
                None => None,
            };
            replaced.push((file, new_file));
        }
        if replaced.is_empty() || !self.swap_files(collection, incarnation, replaced).await? {
            return Ok(0);
        }
        Ok(removed)
    }
}
