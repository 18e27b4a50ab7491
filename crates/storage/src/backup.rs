//! Consistent copies of an event store, taken while a server may be writing to it (`keyhole backup`), and
//! restored into an empty directory (`keyhole restore`).
//!
//! Design: the manifest is replaced atomically and data files are immutable, so a copy is consistent when
//! the manifest did not change while the files it lists and the WAL segments were copied: then the files
//! hold every event through its `flushed_sequence` and the segments every later record (a segment is only
//! deleted by a flush, which rewrites the manifest). If the manifest changed, the copy is discarded and
//! taken again. A record being appended during the copy may arrive torn; replay cuts such a tail, so the
//! copy holds every event acknowledged before its WAL segments were read. Restoring opens nothing but
//! checks the copy first: the manifest reads, and every file it lists is there with its size.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::manifest::{MANIFEST_FILE, Manifest};

/// Attempts before giving up when flushes keep changing the manifest during the copy.
const ATTEMPTS: usize = 10;

/// What a copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySummary {
    /// The WAL sequence through which the copied files hold every event.
    pub flushed_sequence: u64,
    /// Data files copied.
    pub data_files: usize,
    /// WAL segments copied.
    pub wal_segments: usize,
    /// Bytes copied.
    pub bytes: u64,
}

/// Copies the event store at `events_dir` (possibly in use by a server) into `target`, which must not
/// exist yet.
pub fn snapshot_events(events_dir: &Path, target: &Path) -> io::Result<CopySummary> {
    if target.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", target.display()),
        ));
    }
    for _ in 0..ATTEMPTS {
        let _ = fs::remove_dir_all(target);
        if let Some(summary) = try_snapshot(events_dir, target)? {
            return Ok(summary);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = fs::remove_dir_all(target);
    Err(io::Error::other(format!(
        "the manifest changed during each of {ATTEMPTS} attempts to copy {}; retry when the server is less busy",
        events_dir.display()
    )))
}

/// One attempt: `None` when the manifest changed (or a listed file vanished) meanwhile.
fn try_snapshot(events_dir: &Path, target: &Path) -> io::Result<Option<CopySummary>> {
    let manifest_path = events_dir.join(MANIFEST_FILE);
    let manifest_bytes = match fs::read(&manifest_path) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let manifest = match &manifest_bytes {
        Some(_) => Manifest::load(events_dir)?,
        None => Manifest::default(),
    };
    fs::create_dir_all(target.join("objects"))?;
    fs::create_dir_all(target.join("wal"))?;
    let mut summary = CopySummary {
        flushed_sequence: manifest.flushed_sequence,
        data_files: 0,
        wal_segments: 0,
        bytes: 0,
    };
    for file in manifest.collections.iter().flat_map(|c| &c.files) {
        let from = events_dir.join("objects").join(&file.path);
        let to = target.join("objects").join(&file.path);
        fs::create_dir_all(to.parent().unwrap_or(target))?;
        match fs::copy(&from, &to) {
            Ok(bytes) => summary.bytes += bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        }
        summary.data_files += 1;
    }
    for segment in wal_segments(&events_dir.join("wal"))? {
        let to = target
            .join("wal")
            .join(segment.file_name().unwrap_or_default());
        summary.bytes += fs::copy(&segment, to)?;
        summary.wal_segments += 1;
    }
    let manifest_after = fs::read(&manifest_path).ok();
    if manifest_after != manifest_bytes {
        return Ok(None);
    }
    if let Some(bytes) = manifest_bytes {
        fs::write(target.join(MANIFEST_FILE), bytes)?;
    }
    sync_tree(target)?;
    Ok(Some(summary))
}

fn wal_segments(directory: &Path) -> io::Result<Vec<PathBuf>> {
    let mut segments = Vec::new();
    if !directory.exists() {
        return Ok(segments);
    }
    for entry in fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|extension| extension == "wal") {
            segments.push(path);
        }
    }
    segments.sort();
    Ok(segments)
}

/// Checks a copy made by [`snapshot_events`] and copies it into `events_dir`, which must be empty or
/// absent.
pub fn restore_events(copy: &Path, events_dir: &Path) -> io::Result<CopySummary> {
    if events_dir.exists() && fs::read_dir(events_dir)?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not empty", events_dir.display()),
        ));
    }
    let manifest = if copy.join(MANIFEST_FILE).exists() {
        Manifest::load(copy)?
    } else {
        Manifest::default()
    };
    for file in manifest.collections.iter().flat_map(|c| &c.files) {
        let path = copy.join("objects").join(&file.path);
        let size = fs::metadata(&path).map_or(0, |meta| meta.len());
        if size != file.bytes as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the copy is incomplete: {} is missing or not {} bytes",
                    path.display(),
                    file.bytes
                ),
            ));
        }
    }
    copy_tree(copy, events_dir)?;
    sync_tree(events_dir)?;
    Ok(CopySummary {
        flushed_sequence: manifest.flushed_sequence,
        data_files: manifest.collections.iter().map(|c| c.files.len()).sum(),
        wal_segments: wal_segments(&events_dir.join("wal"))?.len(),
        bytes: 0,
    })
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// fsync of every file and directory under `root`, so a finished copy survives a power loss.
fn sync_tree(root: &Path) -> io::Result<()> {
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(root)?.sync_all()
}
