//! Recovery from damaged data directories: corrupt WAL records, missing, garbage or contradicted
//! manifests, unreadable, missing and unlisted data files. Each test damages a real directory the way an
//! operator's bad day would, then reopens it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::tests::{count, id, prepared};

fn config(directory: &Path) -> StorageConfig {
    StorageConfig {
        flush_interval: Duration::from_secs(3600),
        delete_grace: Duration::from_millis(10),
        compact_min_files: 100,
        ..StorageConfig::new(directory)
    }
}

/// `batches` appends of `per_batch` events each (one WAL record per append), each event with its own
/// uniqueness token (so start-up reads tokens from every file, as with a real SDK's events).
async fn write(storage: &Storage, collection: &str, batches: usize, per_batch: usize) {
    static NEXT_TOKEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for batch in 0..batches {
        let events = (0..per_batch)
            .map(|i| {
                let token = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                prepared(json!({"batch": batch, "i": i, "keen": {"uniqueness_token": format!("t{token}")}}))
            })
            .collect();
        storage.append(id(collection), events).await.unwrap();
    }
}

fn files_under(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn wal_segments(directory: &Path) -> Vec<PathBuf> {
    files_under(&directory.join("wal"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect()
}

#[tokio::test]
async fn a_corrupt_wal_record_loses_that_record_only() {
    for (what, position) in [
        ("the middle of the segment", 0.5),
        ("the first record's header", 0.0),
    ] {
        let directory = tempfile::tempdir().unwrap();
        let storage = Storage::open(config(directory.path())).await.unwrap();
        write(&storage, "clicks", 100, 50).await;
        drop(storage);
        let segment = wal_segments(directory.path())
            .into_iter()
            .max_by_key(|path| std::fs::metadata(path).unwrap().len())
            .unwrap();
        let mut bytes = std::fs::read(&segment).unwrap();
        // Byte 9: the first record's length, right after the segment's 8-byte header.
        let at = ((bytes.len() as f64 * position) as usize).max(9);
        bytes[at] ^= 0x04;
        std::fs::write(&segment, &bytes).unwrap();

        let storage = Storage::open(config(directory.path())).await.unwrap();
        assert_eq!(
            count(&storage, "clicks").await,
            4_950,
            "{what}: one record of 50 events lost"
        );
        assert_eq!(storage.health().corrupt_wal_segments, 1, "{what}");
        let quarantined = files_under(&directory.path().join("wal/quarantine"));
        assert_eq!(quarantined.len(), 1, "{what}: the original segment is kept");
        assert_eq!(std::fs::read(&quarantined[0]).unwrap(), bytes, "{what}");
        drop(storage);
        let storage = Storage::open(config(directory.path())).await.unwrap();
        assert_eq!(
            count(&storage, "clicks").await,
            4_950,
            "{what}: stable across restarts"
        );
        assert_eq!(
            storage.health().corrupt_wal_segments,
            0,
            "{what}: reported once"
        );
    }
}

#[tokio::test]
async fn a_missing_or_garbage_manifest_refuses_to_start_and_deletes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    write(&storage, "clicks", 5, 500).await;
    storage.flush().await.unwrap();
    write(&storage, "clicks", 1, 10).await;
    drop(storage);
    let data_files = files_under(&directory.path().join("objects"));
    assert!(!data_files.is_empty());
    let manifest = directory.path().join("manifest.json");
    let renamed = directory.path().join("manifest.json.renamed");
    std::fs::rename(&manifest, &renamed).unwrap();
    let refused = Storage::open(config(directory.path())).await;
    let Err(StorageError::Inconsistent(message)) = refused else {
        panic!("a missing manifest beside data files must refuse to start");
    };
    assert!(message.contains("manifest.json is missing"), "{message}");
    assert_eq!(
        files_under(&directory.path().join("objects")),
        data_files,
        "nothing deleted"
    );

    std::fs::write(&manifest, b"this is not json").unwrap();
    let Err(StorageError::Inconsistent(message)) = Storage::open(config(directory.path())).await
    else {
        panic!("a garbage manifest must refuse to start");
    };
    assert!(
        message.contains("not a readable keyhole manifest"),
        "{message}"
    );
    assert_eq!(
        files_under(&directory.path().join("objects")),
        data_files,
        "nothing deleted"
    );

    std::fs::rename(&renamed, &manifest).unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(count(&storage, "clicks").await, 2_510);
}

#[tokio::test]
async fn a_flushed_sequence_the_wal_contradicts_refuses_to_start() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    write(&storage, "clicks", 2, 100).await;
    storage.flush().await.unwrap();
    write(&storage, "clicks", 10, 10).await;
    drop(storage);
    let manifest_path = directory.path().join("manifest.json");
    let original = std::fs::read(&manifest_path).unwrap();
    let flushed = serde_json::from_slice::<Value>(&original).unwrap()["flushed_sequence"]
        .as_u64()
        .unwrap();
    for raised in [flushed + 5, flushed + 1_000] {
        let mut manifest: Value = serde_json::from_slice(&original).unwrap();
        manifest["flushed_sequence"] = json!(raised);
        std::fs::write(&manifest_path, manifest.to_string()).unwrap();
        let refused = Storage::open(config(directory.path())).await;
        assert!(
            matches!(refused, Err(StorageError::Inconsistent(_))),
            "flushed_sequence raised to {raised} must refuse to start"
        );
    }
    std::fs::write(&manifest_path, &original).unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(count(&storage, "clicks").await, 300);
}

#[tokio::test]
async fn unreadable_and_missing_data_files_are_set_aside_and_the_rest_served() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    for collection in ["intact", "halved", "emptied", "deleted"] {
        write(&storage, collection, 2, 100).await;
    }
    storage.flush().await.unwrap();
    let path_of = |collection: &str| {
        let files = storage.data_files(&id(collection));
        assert_eq!(files.len(), 1);
        directory.path().join("objects").join(&files[0].path)
    };
    let (halved, emptied, deleted) = (path_of("halved"), path_of("emptied"), path_of("deleted"));
    drop(storage);
    let length = std::fs::metadata(&halved).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&halved)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    std::fs::write(&emptied, b"").unwrap();
    std::fs::remove_file(&deleted).unwrap();

    // Uniqueness tokens are in use (they are read from every file at start-up): it must still start.
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(count(&storage, "intact").await, 200);
    for collection in ["halved", "emptied", "deleted"] {
        assert_eq!(count(&storage, collection).await, 0, "{collection}");
        assert!(
            storage.data_files(&id(collection)).is_empty(),
            "{collection} unlisted"
        );
    }
    assert_eq!(storage.health().quarantined_data_files, 3);
    let quarantined = files_under(&directory.path().join("objects/quarantine"));
    assert_eq!(
        quarantined.len(),
        2,
        "the two files that exist are kept aside"
    );
    // New writes and flushes go on as usual.
    write(&storage, "halved", 1, 5).await;
    storage.flush().await.unwrap();
    drop(storage);
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(count(&storage, "halved").await, 5);
    assert_eq!(storage.health().quarantined_data_files, 0, "reported once");
}

#[tokio::test]
async fn unlisted_data_files_are_set_aside_not_deleted() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    write(&storage, "clicks", 1, 10).await;
    storage.flush().await.unwrap();
    drop(storage);
    let stray = directory.path().join("objects/p1/stray.parquet");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"PAR1 events of an older manifest PAR1").unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(count(&storage, "clicks").await, 10);
    assert!(!stray.exists());
    let kept = directory.path().join("objects/quarantine/p1/stray.parquet");
    assert_eq!(
        std::fs::read(kept).unwrap(),
        b"PAR1 events of an older manifest PAR1"
    );
}

#[tokio::test]
async fn an_older_manifest_put_back_refuses_to_start() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    write(&storage, "clicks", 2, 10).await;
    storage.flush().await.unwrap();
    let older = std::fs::read(directory.path().join("manifest.json")).unwrap();
    write(&storage, "clicks", 2, 10).await;
    storage.flush().await.unwrap();
    write(&storage, "clicks", 1, 10).await;
    drop(storage);
    let current = std::fs::read(directory.path().join("manifest.json")).unwrap();
    let data_files = files_under(&directory.path().join("objects"));
    std::fs::write(directory.path().join("manifest.json"), &older).unwrap();
    let refused = Storage::open(config(directory.path())).await;
    assert!(matches!(refused, Err(StorageError::Inconsistent(_))));
    assert_eq!(
        files_under(&directory.path().join("objects")),
        data_files,
        "nothing moved"
    );
    std::fs::write(directory.path().join("manifest.json"), &current).unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(count(&storage, "clicks").await, 50);
}

#[tokio::test]
async fn the_output_of_a_flush_that_did_not_commit_is_removed() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    write(&storage, "clicks", 2, 10).await;
    drop(storage);
    // As a flush that died after writing its file: named after a sequence the manifest has not reached.
    let unfinished = directory
        .path()
        .join("objects/p1/clicks/2026-11-29/00000000000000000002-0badf00d.parquet");
    std::fs::create_dir_all(unfinished.parent().unwrap()).unwrap();
    std::fs::write(&unfinished, b"PAR1 half a flush").unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(
        count(&storage, "clicks").await,
        20,
        "its events come from the WAL"
    );
    assert!(!unfinished.exists());
    assert!(files_under(&directory.path().join("objects/quarantine")).is_empty());
}

/// A tmpfs of `megabytes` mounted on a fresh directory, unmounted when dropped; `None` where this
/// machine does not let the tests mount one (then the disk-full test says so and checks nothing).
struct SmallDisk {
    directory: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: usize) -> Option<SmallDisk> {
        let directory = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(directory.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(SmallDisk { directory })
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }

    /// Writes zeros into `filler` until the filesystem is full.
    fn fill(&self, filler: &Path) {
        use std::io::Write;
        let mut file = std::fs::File::create(filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
        let small = [0u8; 512];
        while file
            .write_all(&small)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.directory.path())
            .output();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_reads_and_resumes_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount(16) else {
        eprintln!(
            "skipped: this machine does not allow mounting a tmpfs, so a full disk cannot be made"
        );
        return;
    };
    let data_dir = disk.path().join("data");
    let storage = Storage::open(config(&data_dir)).await.unwrap();
    write(&storage, "clicks", 10, 10).await;
    let filler = disk.path().join("filler");
    disk.fill(&filler);
    // The WAL's last page may hold a few more small records; then the disk is full for it too.
    let mut acknowledged = 100;
    let refused = loop {
        match storage
            .append(id("clicks"), vec![prepared(json!({"more": true}))])
            .await
        {
            Ok(_) => acknowledged += 1,
            Err(error) => break error,
        }
        assert!(acknowledged < 10_000, "the disk never filled");
    };
    assert!(refused.is_disk_full(), "{refused}");
    assert_eq!(count(&storage, "clicks").await, acknowledged, "reads go on");
    assert!(
        storage.flush().await.is_err(),
        "a flush cannot write its file either"
    );
    assert_eq!(
        count(&storage, "clicks").await,
        acknowledged,
        "nothing lost by the failed flush"
    );

    std::fs::remove_file(&filler).unwrap();
    write(&storage, "clicks", 1, 10).await;
    acknowledged += 10;
    storage.flush().await.unwrap();
    assert_eq!(count(&storage, "clicks").await, acknowledged);
    drop(storage);
    let storage = Storage::open(config(&data_dir)).await.unwrap();
    assert_eq!(
        count(&storage, "clicks").await,
        acknowledged,
        "every acknowledged event, once"
    );
    storage.close().await.unwrap();
}
