//! What `Storage::open` checks before it trusts the data directory, and what it repairs.
//!
//! Rules (ARCHITECTURE.md "Recovery"): data is never deleted because metadata is missing or wrong.
//! - No manifest but data files present: refuse to start (the files would otherwise look unlisted),
//!   unless the WAL still starts at its first record — then the files are a first flush that died
//!   before its manifest commit, handled as unlisted files below.
//! - A manifest that does not parse: refuse to start, naming the file.
//! - A file the manifest lists that is missing, of another size, not Parquet, or whose footer does not
//!   decode into metadata matching the manifest (row count, column chunks inside the file): set aside under
//!   `objects/quarantine/`, unlisted, counted and logged as an error; the rest is served.
//! - A `flushed_sequence` that the WAL contradicts — a segment started at or below it holds later records,
//!   it lies beyond every sequence the WAL assigned, or the WAL starts after it (records in between are
//!   gone, as when an older manifest is put back) — refuse to start: replaying from it would silently skip
//!   events.
//! - A file present but not listed: when its name carries a WAL sequence above `flushed_sequence`, it is
//!   the output of a flush that died before its manifest commit, and its events are still in the WAL
//!   (checked above): removed. Anything else (an unfinished compaction's output, a file of unknown origin)
//!   is set aside under `objects/quarantine/`, never deleted.

use std::path::Path;

use crate::config::{Result, StorageError};
use crate::manifest::Manifest;
use crate::metrics::StorageMetrics;
use crate::objects::ObjectFiles;
use crate::wal::SegmentSpan;

/// The manifest (`None` when there is none), or a refusal when it does not parse.
pub(crate) fn load_manifest(data_dir: &Path) -> Result<Option<Manifest>> {
    let path = data_dir.join(crate::manifest::MANIFEST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Manifest::load(data_dir).map(Some).map_err(|error| {
        StorageError::Inconsistent(format!(
            "{} is not a readable keyhole manifest ({error}); keyhole will not start rather than guess which data files hold events. Restore it from a backup.",
            path.display()
        ))
    })
}

/// Without a manifest, data files are acceptable only as the output of a first flush that died before
/// its manifest commit: the WAL must then still hold every record from the first one. Otherwise (the
/// manifest was lost or renamed after flushes) refuse, since the files would look unlisted.
pub(crate) async fn check_missing_manifest(
    data_dir: &Path,
    objects: &ObjectFiles,
    segments: &[SegmentSpan],
) -> Result<()> {
    let files = objects.list_all().await?;
    let wal_from_the_start = segments
        .first()
        .is_some_and(|first| first.first_sequence <= 1);
    if files.is_empty() || wal_from_the_start {
        return Ok(());
    }
    Err(StorageError::Inconsistent(format!(
        "{} is missing but {} data files exist under {}; keyhole will not start (it would treat them as unlisted). Restore the manifest from a backup or the file it was renamed to.",
        data_dir.join(crate::manifest::MANIFEST_FILE).display(),
        files.len(),
        data_dir.join("objects").display()
    )))
}

/// Sets aside listed files that are missing or unreadable and unlists them; answers how many.
pub(crate) async fn quarantine_unreadable_files(
    objects: &ObjectFiles,
    manifest: &mut Manifest,
    metrics: &StorageMetrics,
) -> Result<usize> {
    let mut quarantined = 0;
    for collection in &mut manifest.collections {
        let mut kept = Vec::with_capacity(collection.files.len());
        for file in std::mem::take(&mut collection.files) {
            let Some(problem) = objects
                .data_file_problem(&file.path, file.bytes, file.rows)
                .await
            else {
                kept.push(file);
                continue;
            };
            let set_aside = match objects.set_aside(&file.path).await {
                Ok(target) => target,
                Err(_) => "nowhere (missing)".to_string(),
            };
            tracing::error!(
                project = %collection.id.project,
                collection = %collection.id.collection,
                path = %file.path,
                rows = file.rows,
                problem,
                set_aside,
                "unreadable data file set aside; its events are missing from answers"
            );
            quarantined += 1;
        }
        collection.files = kept;
    }
    metrics.record_quarantined_files(quarantined);
    Ok(quarantined)
}

/// Sets aside files found unreadable after the checks above (while rebuilding the token index: damage
/// inside a file's pages rather than its footer), unlists them from `state`, and answers how many. With a
/// shared store (`move_objects` false) the object stays where it is for the other nodes and this node
/// only stops reading it.
pub(crate) async fn set_aside_unreadable(
    objects: &ObjectFiles,
    state: &mut crate::state::State,
    unreadable: Vec<(
        crate::manifest::CollectionId,
        crate::manifest::DataFile,
        String,
    )>,
    metrics: &StorageMetrics,
    move_objects: bool,
) -> usize {
    let count = unreadable.len();
    for (id, file, problem) in unreadable {
        let set_aside = if move_objects {
            objects
                .set_aside(&file.path)
                .await
                .unwrap_or_else(|error| format!("nowhere ({error})"))
        } else {
            "left in the shared store, not read by this node".to_string()
        };
        tracing::error!(
            project = %id.project,
            collection = %id.collection,
            path = %file.path,
            rows = file.rows,
            problem,
            set_aside,
            "unreadable data file set aside; its events are missing from answers"
        );
        if let Some(collection) = state.collections.get_mut(&id) {
            collection.files.retain(|listed| listed != &file);
        }
    }
    metrics.record_quarantined_files(count);
    count
}

/// Removes the unlisted output of flushes that did not commit (their events are in the WAL) and sets
/// every other unlisted data file aside. Call only after [`check_flushed_sequence`] passed.
pub(crate) async fn handle_unlisted_files(
    objects: &ObjectFiles,
    listed: &std::collections::HashSet<String>,
    flushed_sequence: u64,
) -> Result<()> {
    for path in objects.list_all().await? {
        if listed.contains(&path) {
            continue;
        }
        if written_after(&path, flushed_sequence) {
            tracing::info!(
                path,
                "removing a data file of a flush that did not commit; its events are replayed from the WAL"
            );
            objects.delete(&path).await;
            continue;
        }
        let target = objects.set_aside(&path).await?;
        tracing::warn!(
            path,
            set_aside = target,
            "data file not in the manifest set aside (an unfinished compaction, or a manifest older than the files)"
        );
    }
    Ok(())
}

/// Whether a data file's name (`{sequence:020}-{random}.parquet`, the WAL sequence its flush covered)
/// says it was written by a flush past `flushed_sequence`.
fn written_after(path: &str, flushed_sequence: u64) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    name.get(..20)
        .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u64>().ok())
        .is_some_and(|sequence| sequence > flushed_sequence)
}

/// Refuses a `flushed_sequence` the WAL contradicts.
pub(crate) fn check_flushed_sequence(
    flushed_sequence: u64,
    segments: &[SegmentSpan],
) -> Result<()> {
    // Every flush closes the WAL's segment first, so records after the flushed sequence always live in
    // segments that start after it.
    if let Some(segment) = segments.iter().find(|segment| {
        segment.first_sequence <= flushed_sequence
            && segment
                .last_record
                .is_some_and(|last| last > flushed_sequence)
    }) {
        return Err(StorageError::Inconsistent(format!(
            "the manifest says events through WAL sequence {flushed_sequence} are in data files, but the WAL segment starting at {} holds records up to {}; replaying from the manifest would skip acknowledged events. keyhole will not start: restore the manifest from a backup.",
            segment.first_sequence,
            segment.last_record.unwrap_or_default()
        )));
    }
    if let Some(first) = segments.first()
        && first.first_sequence > flushed_sequence + 1
    {
        return Err(StorageError::Inconsistent(format!(
            "the manifest says events through WAL sequence {flushed_sequence} are in data files, but the WAL starts at {}; the events in between are in neither (is the manifest older than the data?). keyhole will not start: restore the matching manifest.",
            first.first_sequence
        )));
    }
    let assigned = segments
        .iter()
        .map(|segment| {
            segment
                .first_sequence
                .saturating_sub(1)
                .max(segment.last_record.unwrap_or(0))
        })
        .max();
    if let Some(assigned) = assigned
        && flushed_sequence > assigned
    {
        return Err(StorageError::Inconsistent(format!(
            "the manifest says events through WAL sequence {flushed_sequence} are in data files, but the WAL never went past {assigned}. keyhole will not start: restore the manifest from a backup."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first_sequence: u64, last_record: Option<u64>) -> SegmentSpan {
        SegmentSpan {
            first_sequence,
            last_record,
        }
    }

    #[test]
    fn the_flushed_sequence_must_agree_with_the_wal() {
        // After a flush at 100: the segment opened at 101 (empty, or with later records).
        assert!(check_flushed_sequence(100, &[span(101, None)]).is_ok());
        assert!(check_flushed_sequence(100, &[span(101, Some(150))]).is_ok());
        // A crash between the manifest commit and the segment removal leaves flushed segments behind.
        assert!(check_flushed_sequence(100, &[span(51, Some(100)), span(101, Some(120))]).is_ok());
        assert!(check_flushed_sequence(0, &[]).is_ok());
        // Raised: records after it sit in a segment that starts before it.
        assert!(check_flushed_sequence(120, &[span(101, Some(150))]).is_err());
        // Beyond anything the WAL assigned.
        assert!(check_flushed_sequence(500, &[span(101, Some(150))]).is_err());
        assert!(check_flushed_sequence(500, &[span(101, None)]).is_err());
        // Older than the WAL: records 51..100 are in no segment.
        assert!(check_flushed_sequence(50, &[span(101, Some(120))]).is_err());
    }

    #[test]
    fn unlisted_files_of_uncommitted_flushes_are_recognized_by_name() {
        assert!(written_after(
            "p/c/2026-11-29/00000000000000000101-0a0b0c0d.parquet",
            100
        ));
        assert!(!written_after(
            "p/c/2026-11-29/00000000000000000100-0a0b0c0d.parquet",
            100
        ));
        assert!(!written_after("p/stray.parquet", 100));
    }
}
