//! One node's journal: the WAL (`wal`) for every group commit and the manifest (`manifest`) for what was
//! flushed, both in the data directory. Opening loads the manifest, sets aside files it cannot trust
//! (`recovery`) and replays the WAL records past its flushed sequence. A flush stores the manifest, then
//! drops the WAL segments it covers; a swap stores the manifest. Nobody else writes here, so there is no
//! lease and nothing to follow.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Result;
use crate::manifest::{CollectionId, DataFile};
use crate::metrics::StorageMetrics;
use crate::objects::ObjectFiles;
use crate::recovery;
use crate::row_edit::RowEdit;
use crate::shared::BoxFuture;
use crate::state::State;
use crate::tokens::{TokenIndex, load_tokens_from_files};
use crate::wal::{self, CorruptSegment, SegmentSpan, Wal, WalEntry};

use crate::journal::{EngineParts, Followed, Journal, Lease, Recovered, WrittenFiles};
use crate::records::{Applied, apply_entry};

/// The WAL and manifest of one data directory.
pub(crate) struct LocalJournal {
    data_dir: PathBuf,
    delete_grace: Duration,
    /// Only the writer thread appends; the lock is never contended.
    wal: Mutex<Wal>,
}

/// The WAL's directory in a data directory.
pub(crate) fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

impl LocalJournal {
    /// Recovers the state of `data_dir`: its manifest, checked against the files, then the WAL replayed.
    pub(crate) async fn open(
        data_dir: &Path,
        delete_grace: Duration,
        objects: &ObjectFiles,
        metrics: &StorageMetrics,
    ) -> Result<(LocalJournal, Recovered)> {
        let loaded = recovery::load_manifest(data_dir)?;
        let manifest_missing = loaded.is_none();
        let mut manifest = loaded.unwrap_or_default();
        let quarantined =
            recovery::quarantine_unreadable_files(objects, &mut manifest, metrics).await?;
        if quarantined > 0 {
            manifest.store(data_dir)?;
        }
        let listed: HashSet<String> = manifest
            .collections
            .iter()
            .flat_map(|collection| collection.files.iter().map(|file| file.path.clone()))
            .collect();
        let mut state = State::from_manifest(manifest);
        let (mut tokens, unreadable) = load_tokens_from_files(objects, &state).await?;
        if recovery::set_aside_unreadable(objects, &mut state, unreadable, metrics, true).await > 0
        {
            state.to_manifest().store(data_dir)?;
        }
        let replay = replay_wal(&wal_dir(data_dir), &mut state, &mut tokens)?;
        if manifest_missing {
            recovery::check_missing_manifest(data_dir, objects, &replay.segments).await?;
        }
        recovery::check_flushed_sequence(state.flushed_sequence, &replay.segments)?;
        recovery::handle_unlisted_files(objects, &listed, state.flushed_sequence).await?;
        for file in &replay.deleted_files {
            objects.delete(&file.path).await;
        }
        if !replay.deleted_files.is_empty() {
            state.to_manifest().store(data_dir)?;
        }
        metrics.record_corrupt_wal(&replay.corrupt_segments);
        let next_sequence = replay.highest_sequence.max(state.flushed_sequence) + 1;
        tracing::info!(
            replayed_records = replay.records,
            next_sequence,
            "storage opened"
        );
        let journal = LocalJournal {
            data_dir: data_dir.to_path_buf(),
            delete_grace,
            wal: Mutex::new(Wal::create(&wal_dir(data_dir), next_sequence)?),
        };
        let recovered = Recovered {
            state,
            tokens,
            edits: replay.edits,
        };
        Ok((journal, recovered))
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn store_manifest(&self, state: &Mutex<State>) -> Result<()> {
        let manifest = state.lock().expect("state lock").to_manifest();
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || manifest.store(&data_dir))
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    async fn commit_flush_here(
        &self,
        parts: EngineParts<'_>,
        through_sequence: u64,
        written: WrittenFiles,
    ) -> Result<()> {
        let mut orphaned = Vec::new();
        let manifest = {
            let mut state = parts.state.lock().expect("state lock");
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
        let data_dir = self.data_dir.clone();
        let wal_directory = wal_dir(&data_dir);
        tokio::task::spawn_blocking(move || {
            manifest.store(&data_dir)?;
            wal::remove_flushed_segments(&wal_directory, through_sequence)
        })
        .await
        .map_err(io::Error::other)??;
        for file in orphaned {
            parts.objects.delete(&file.path).await;
        }
        tracing::debug!(through_sequence, "flushed");
        Ok(())
    }

    async fn commit_swap_here(
        &self,
        parts: EngineParts<'_>,
        collection: &CollectionId,
        incarnation: u64,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> Result<bool> {
        let swapped = {
            let mut state = parts.state.lock().expect("state lock");
            match state.collections.get_mut(collection) {
                Some(target) if target.incarnation == incarnation => {
                    for (old, new) in &replaced {
                        target.files.retain(|file| file != old);
                        target.files.extend(new.clone());
                    }
                    true
                }
                _ => false,
            }
        };
        if !swapped {
            for new in replaced.into_iter().filter_map(|(_, new)| new) {
                parts.objects.delete(&new.path).await;
            }
            return Ok(false);
        }
        self.store_manifest(parts.state).await?;
        parts.objects.delete_after(
            self.delete_grace,
            replaced.into_iter().map(|(old, _)| old).collect(),
        );
        Ok(true)
    }
}

impl Journal for LocalJournal {
    fn follow_others(&self, _commands: tokio::sync::mpsc::WeakSender<crate::commands::Command>) {}

    fn append(&self, entry: &WalEntry) {
        self.wal().append(entry);
    }

    fn commit(&self) -> io::Result<Option<u64>> {
        self.wal().commit().map(|()| None)
    }

    fn discard_pending(&self) {
        self.wal().discard_pending();
    }

    fn is_consistent(&self) -> bool {
        self.wal().is_consistent()
    }

    fn apply_through(
        &self,
        _through: u64,
        _state: &Mutex<State>,
        _tokens: &mut TokenIndex,
    ) -> io::Result<Followed> {
        Ok(Followed::default())
    }

    fn rotate(
        &self,
        state: &Mutex<State>,
        _tokens: &mut TokenIndex,
    ) -> io::Result<(u64, Followed)> {
        let through_sequence = self.wal().rotate()?;
        state.lock().expect("state lock").start_flushing();
        Ok((through_sequence, Followed::default()))
    }

    fn append_maintenance(
        &self,
        kind: &'static str,
        _payload: Vec<u8>,
        _state: &Mutex<State>,
        _tokens: &mut TokenIndex,
    ) -> io::Result<Followed> {
        Err(io::Error::other(format!(
            "the local WAL journals no {kind} record: its manifest records maintenance"
        )))
    }

    fn lease<'a>(&'a self, _wait: bool, _parts: EngineParts<'a>) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async { Ok(Lease::NotNeeded) })
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn commit_flush<'a>(
        &'a self,
        parts: EngineParts<'a>,
        through: u64,
        written: WrittenFiles,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.commit_flush_here(parts, through, written))
    }

    fn commit_swap<'a>(
        &'a self,
        parts: EngineParts<'a>,
        collection: &'a CollectionId,
        incarnation: u64,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.commit_swap_here(parts, collection, incarnation, replaced))
    }

    fn store_state<'a>(&'a self, parts: EngineParts<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.store_manifest(parts.state))
    }

    fn retire_files<'a>(
        &'a self,
        parts: EngineParts<'a>,
        files: Vec<DataFile>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for file in files {
                parts.objects.delete(&file.path).await;
            }
        })
    }
}

struct ReplaySummary {
    highest_sequence: u64,
    /// Deletes replayed into memory whose files must be rewritten before the engine serves.
    edits: Vec<(CollectionId, RowEdit)>,
    records: usize,
    deleted_files: Vec<DataFile>,
    corrupt_segments: Vec<CorruptSegment>,
    segments: Vec<SegmentSpan>,
}

fn replay_wal(
    directory: &Path,
    state: &mut State,
    tokens: &mut TokenIndex,
) -> io::Result<ReplaySummary> {
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
        let mut applied = Applied::default();
        // The local WAL holds only what this node admitted, duplicates already refused: replayed as is.
        apply_entry(state, tokens, entry, false, false, &mut applied);
        summary.deleted_files.extend(applied.deleted_files);
        summary.edits.extend(applied.edits);
    })?;
    summary.highest_sequence = report.highest_sequence;
    summary.corrupt_segments = report.corrupt_segments;
    summary.segments = report.segments;
    Ok(summary)
}
