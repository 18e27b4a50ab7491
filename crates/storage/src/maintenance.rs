//! The flush and compaction procedures (see `flush.rs` for why each step is crash-safe, `compaction.rs`
//! for the streaming merge), and the background flusher that runs them. Both run with the maintenance
//! lock held, so only one of them changes the files at a time; the journal records what they did
//! (`Journal::commit_flush`, `Journal::commit_swap`).

use std::sync::{Arc, Weak};

use arrow::record_batch::RecordBatch;
use tokio::sync::{Notify, oneshot};

use keyhole_model::memory_budget::MemoryConsumer;

use crate::buffer_limit;
use crate::commands::Command;
use crate::compaction::{BetweenWork, MergeMemory, MergedFile, SpillDirectory, merge_files};
use crate::config::{Result, StorageError};
use crate::engine::Engine;
use crate::flush::{RowsByDay, day_file_path, days_to_compact, write_day_file};
use crate::manifest::{CollectionId, DataFile};

/// Writes every buffered row to Parquet now, then compacts days with many files.
pub(crate) async fn flush(engine: &Arc<Engine>) -> Result<()> {
    let _maintenance = engine.maintenance(true).await?;
    flush_locked(engine).await?;
    compact_locked(engine, engine.config.compact_min_files).await
}

/// Flushes even when nothing is buffered, so the log closes its current segment and every segment
/// (or, in the shared log, every record) up to now is retired: what was deleted leaves the log too.
pub(crate) async fn flush_retiring_log(engine: &Arc<Engine>) -> Result<()> {
    let _maintenance = engine.maintenance(true).await?;
    let started = std::time::Instant::now();
    let flushed = flush_unmeasured(engine, true).await;
    engine
        .metrics
        .flush_seconds
        .observe(started.elapsed().as_secs_f64());
    flushed
}

/// The flush of a flush-interval tick: when nothing was buffered since the previous flush, the
/// collections are at rest and every day with `settled_min_files` files or more is merged.
async fn flush_on_tick(engine: &Arc<Engine>) -> Result<()> {
    // Shared: when another node is flushing or compacting, this tick has nothing to do.
    let Some(_maintenance) = engine.maintenance(false).await? else {
        return Ok(());
    };
    let at_rest = engine.state.lock().expect("state lock").memory_rows() == 0;
    flush_locked(engine).await?;
    let min_files = if at_rest {
        engine.config.settled_min_files
    } else {
        engine.config.compact_min_files
    };
    compact_locked(engine, min_files.max(2)).await
}

/// Flushes when the unflushed rows have reached the size that starts a flush; the caller holds the
/// maintenance lock (a long merge calls this between pieces of its work).
async fn flush_if_buffer_full_locked(engine: &Arc<Engine>) -> Result<()> {
    if !buffer_limit::wants_flush(&engine.config.memory_budget) {
        return Ok(());
    }
    flush_locked(engine).await
}

/// With a shared log, whether this node's flush-interval tick flushes and compacts: a node that took
/// events during the last two intervals does (the tick after its last write finds the collections at rest
/// and merges them), or one that holds rows of its own writes; another only once unflushed rows have
/// waited over two intervals (the nodes that took them stopped). So the node that takes an event writes
/// its Parquet, and a node that only follows the log spends nothing on it.
fn tick_is_this_nodes(engine: &Engine, written_two_ticks_ago: u64) -> bool {
    if !engine.journal.is_shared() {
        return true;
    }
    if engine.metrics.ingested_events.get() != written_two_ticks_ago {
        return true;
    }
    let state = engine.state.lock().expect("state lock");
    state.own_unflushed_rows > 0
        || state
            .unflushed_since
            .is_some_and(|since| since.elapsed() > engine.config.flush_interval * 2)
}

/// The background flusher. It waits holding only a weak reference, so dropping every `Storage` handle
/// drops the engine (and releases the data directory) without waiting for the next flush interval.
pub(crate) fn spawn_flusher(engine: &Arc<Engine>) {
    let interval = engine.config.flush_interval;
    let flush_wanted: Arc<Notify> = engine.flush_wanted.clone();
    let weak: Weak<Engine> = Arc::downgrade(engine);
    // This node's written-event count at its last two ticks (oldest first).
    let mut written_at_ticks = [0u64; 2];
    tokio::spawn(async move {
        loop {
            let timer_fired = tokio::time::timeout(interval, flush_wanted.notified())
                .await
                .is_err();
            let Some(engine) = weak.upgrade() else {
                return;
            };
            let flushed = if timer_fired {
                let this_nodes = tick_is_this_nodes(&engine, written_at_ticks[0]);
                written_at_ticks = [written_at_ticks[1], engine.metrics.ingested_events.get()];
                if this_nodes {
                    flush_on_tick(&engine).await
                } else {
                    Ok(())
                }
            } else {
                flush(&engine).await
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

pub(crate) async fn flush_locked(engine: &Arc<Engine>) -> Result<()> {
    let started = std::time::Instant::now();
    let flushed = flush_unmeasured(engine, false).await;
    engine
        .metrics
        .flush_seconds
        .observe(started.elapsed().as_secs_f64());
    let buffered = engine.state.lock().expect("state lock").memory_size();
    engine.metrics.buffered_rows.set(buffered.rows as i64);
    engine
        .config
        .memory_budget
        .set_used(MemoryConsumer::EventBuffer, buffered.bytes as u64);
    flushed
}

/// Rotates the log and writes the rows it held; with nothing buffered, does nothing unless `always`.
async fn flush_unmeasured(engine: &Arc<Engine>, always: bool) -> Result<()> {
    let nothing_to_flush = !always && {
        let state = engine.state.lock().expect("state lock");
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
    engine.send(Command::Rotate { reply }).await?;
    let through_sequence = answer.await.map_err(|_| StorageError::Closed)??;

    let flushing: Vec<(CollectionId, u64, Vec<RecordBatch>)> = {
        let state = engine.state.lock().expect("state lock");
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
        // Ordering and copying rows are CPU work: on a blocking thread, off the request handlers' workers.
        let rows = tokio::task::spawn_blocking(move || RowsByDay::new(&batches).map(Arc::new))
            .await
            .map_err(std::io::Error::other)?;
        let Some(rows) = rows else {
            continue;
        };
        let cluster_by = engine.clustering_of(&id.project);
        let mut files = Vec::new();
        for day_index in 0..rows.day_count() {
            let rows_of_days = rows.clone();
            let (day, day_batch) =
                tokio::task::spawn_blocking(move || rows_of_days.copy_day(day_index))
                    .await
                    .map_err(std::io::Error::other)?;
            files.push(
                write_day_file(
                    &engine.objects,
                    &id,
                    &day,
                    &day_batch,
                    through_sequence,
                    &cluster_by,
                )
                .await?,
            );
        }
        written.push((id, incarnation, files));
    }
    engine
        .journal
        .commit_flush(engine.parts(), through_sequence, written)
        .await
}

/// Swaps each old file of `id` for its replacement through the journal (see `Journal::commit_swap`);
/// whether it swapped.
pub(crate) async fn swap_files(
    engine: &Engine,
    id: &CollectionId,
    incarnation: u64,
    replaced: Vec<(DataFile, Option<DataFile>)>,
) -> Result<bool> {
    engine
        .journal
        .commit_swap(engine.parts(), id, incarnation, replaced)
        .await
}

/// Merges every day of every collection that has `min_files` files or more.
pub(crate) async fn compact_locked(engine: &Arc<Engine>, min_files: usize) -> Result<()> {
    let candidates: Vec<(CollectionId, u64, Vec<DataFile>)> = {
        let state = engine.state.lock().expect("state lock");
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
        compact_day(engine, id, incarnation, old_files).await?;
        engine
            .metrics
            .compaction_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Merges one day's files with the streaming merge (`compaction`), within the memory budget's
/// `Compaction` share; skipped (tried again at the next tick) while the share is held elsewhere.
async fn compact_day(
    engine: &Arc<Engine>,
    id: CollectionId,
    incarnation: u64,
    old_files: Vec<DataFile>,
) -> Result<()> {
    let schema = {
        let state = engine.state.lock().expect("state lock");
        let Some(collection) = state.collections.get(&id) else {
            return Ok(());
        };
        crate::columns::schema_with_columns(&collection.schema().column_names())
    };
    let budget = &engine.config.memory_budget;
    let share = budget.share(MemoryConsumer::Compaction);
    let Some(_reservation) = budget.try_reserve(MemoryConsumer::Compaction, share) else {
        budget.record_refusal(MemoryConsumer::Compaction);
        tracing::debug!(collection = %id.collection, "compaction deferred: its memory is in use");
        return Ok(());
    };
    let spill = SpillDirectory::create(&engine.config.data_dir)?;
    let cluster_by = engine.clustering_of(&id.project);
    // The merge holds the maintenance lock: it flushes the event buffer itself when that fills.
    let for_between = engine.clone();
    let between: BetweenWork = Arc::new(move || {
        let engine = for_between.clone();
        Box::pin(async move {
            flush_if_buffer_full_locked(&engine)
                .await
                .map_err(std::io::Error::other)
        })
    });
    let merged = merge_files(
        &engine.objects,
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
        Some(merged) => Some(store_merged_file(engine, &id, &day, merged).await?),
        None => None,
    };
    // The first old file is replaced by the new one; the others just go.
    let mut replaced: Vec<(DataFile, Option<DataFile>)> =
        old_files.iter().map(|file| (file.clone(), None)).collect();
    replaced[0].1.clone_from(&new_file);
    if !swap_files(engine, &id, incarnation, replaced).await? {
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
    engine: &Engine,
    id: &CollectionId,
    day: &str,
    merged: MergedFile,
) -> Result<DataFile> {
    engine
        .metrics
        .compaction_spilled_runs
        .inc_by(merged.spilled_runs as u64);
    let name_hint = engine.state.lock().expect("state lock").flushed_sequence;
    let path = day_file_path(id, day, name_hint);
    let bytes = engine
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
