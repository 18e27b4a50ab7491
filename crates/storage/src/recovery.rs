//! What `Storage::open` checks before it trusts the data directory, and what it repairs.
//!
//! Rules (ARCHITECTURE.md "Recovery"): data is never deleted because metadata is missing or wrong.
//! - No manifest but data files present: refuse to start (the files would otherwise look unlisted).
//! - A manifest that does not parse: refuse to start, naming the file.
//! - A file the manifest lists that is missing, of another size, or not Parquet: set aside under
//!   `objects/quarantine/`, unlisted, counted and logged as an error; the rest is served.
//! - A file present but not listed (a flush or compaction that died before its manifest commit, or a
//!   manifest older than the files): set aside under `objects/quarantine/`, not deleted.
//! - A `flushed_sequence` that the WAL contradicts (a segment started at or below it holds later
//!   records, or it lies beyond every sequence the WAL assigned): refuse to start, since replaying from it
//!   would silently skip or invent events.

use std::path::Path;

use crate::health::StorageHealth;
use crate::manifest::Manifest;
use crate::objects::ObjectFiles;
use crate::wal::SegmentSpan;
use crate::{Result, StorageError};

/// The manifest, or a refusal when it is missing beside data files or does not parse.
pub async fn load_manifest(data_dir: &Path, objects: &ObjectFiles) -> Result<Manifest> {
    let path = data_dir.join(crate::manifest::MANIFEST_FILE);
    if !path.exists() {
        let files = objects.list_all().await?;
        if !files.is_empty() {
            return Err(StorageError::Inconsistent(format!(
                "{} is missing but {} data files exist under {}; keyhole will not start (it would treat them as unlisted). Restore the manifest from a backup or the file it was renamed to.",
                path.display(),
                files.len(),
                data_dir.join("objects").display()
            )));
        }
        return Ok(Manifest::default());
    }
    Manifest::load(data_dir).map_err(|error| {
        StorageError::Inconsistent(format!(
            "{} is not a readable keyhole manifest ({error}); keyhole will not start rather than guess which data files hold events. Restore it from a backup.",
            path.display()
        ))
    })
}

/// Sets aside listed files that are missing or unreadable and unlists them; answers how many.
pub async fn quarantine_unreadable_files(
    objects: &ObjectFiles,
    manifest: &mut Manifest,
    health: &StorageHealth,
) -> Result<usize> {
    let mut quarantined = 0;
    for collection in &mut manifest.collections {
        let mut kept = Vec::with_capacity(collection.files.len());
        for file in std::mem::take(&mut collection.files) {
            let Some(problem) = objects.data_file_problem(&file.path, file.bytes).await else {
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
    health.record_quarantined_files(quarantined);
    Ok(quarantined)
}

/// Sets aside data files the manifest does not list (never deletes them).
pub async fn set_aside_unlisted_files(objects: &ObjectFiles, manifest: &Manifest) -> Result<()> {
    let listed: std::collections::HashSet<&str> = manifest
        .collections
        .iter()
        .flat_map(|collection| collection.files.iter().map(|file| file.path.as_str()))
        .collect();
    for path in objects.list_all().await? {
        if listed.contains(path.as_str()) {
            continue;
        }
        let target = objects.set_aside(&path).await?;
        tracing::warn!(
            path,
            set_aside = target,
            "data file not in the manifest set aside (a flush that did not finish, or an older manifest)"
        );
    }
    Ok(())
}

/// Refuses a `flushed_sequence` the WAL contradicts.
pub fn check_flushed_sequence(flushed_sequence: u64, segments: &[SegmentSpan]) -> Result<()> {
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
    }
}
