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

use keyhole_model::memory_budget::MemoryConsumer;
use tokio::sync::oneshot;

use crate::commands::Command;
use crate::compaction::{MergeMemory, SpillDirectory, rewrite_file};
use crate::config::{Result, StorageError};
use crate::engine::Engine;
use crate::maintenance::{store_merged_file, swap_files};
use crate::manifest::{CollectionId, DataFile};
use crate::row_edit::RowEdit;

/// Journals `edit`, applies it to the rows in memory, then rewrites the files it touches; the rows (or
/// cells) removed. Durable when this returns.
pub(crate) async fn apply_edit(
    engine: &Arc<Engine>,
    collection: CollectionId,
    edit: RowEdit,
) -> Result<usize> {
    let _maintenance = engine.maintenance(true).await?;
    let (reply, answer) = oneshot::channel();
    engine
        .send(Command::Edit {
            collection: collection.clone(),
            edit: edit.clone(),
            reply,
        })
        .await?;
    let in_memory = answer.await.map_err(|_| StorageError::Closed)??;
    let in_files = rewrite_files_locked(engine, &collection, &edit).await?;
    Ok(in_memory + in_files)
}

/// The edit of deleting these events.
pub(crate) fn events_edit(ids: HashSet<String>, earliest: i64, latest: i64) -> RowEdit {
    RowEdit::Events {
        ids: Arc::new(ids),
        earliest,
        latest,
    }
}

/// Rewrites the files of `collection` that hold what `edit` removes; the maintenance lock must be
/// held. Returns the rows (or cells) removed.
pub(crate) async fn rewrite_files_locked(
    engine: &Arc<Engine>,
    collection: &CollectionId,
    edit: &RowEdit,
) -> Result<usize> {
    let (files, incarnation) = {
        let state = engine.state.lock().expect("state lock");
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
    let budget = &engine.config.memory_budget;
    let share = budget.share(MemoryConsumer::Compaction);
    let _reservation = budget.try_reserve(MemoryConsumer::Compaction, share);
    let memory = MergeMemory::within(share as usize);
    let mut removed = 0;
    let mut replaced: Vec<(DataFile, Option<DataFile>)> = Vec::new();
    for file in files {
        let spill = SpillDirectory::create(&engine.config.data_dir)?;
        let (removed_here, rewritten) =
            rewrite_file(&engine.objects, &file, memory, &spill, edit.clone()).await?;
        if removed_here == 0 {
            continue;
        }
        removed += removed_here;
        let new_file = match rewritten {
            Some(rewritten) => {
                Some(store_merged_file(engine, collection, &file.day, rewritten).await?)
            }
            None => None,
        };
        replaced.push((file, new_file));
    }
    if replaced.is_empty() || !swap_files(engine, collection, incarnation, replaced).await? {
        return Ok(0);
    }
    Ok(removed)
}
