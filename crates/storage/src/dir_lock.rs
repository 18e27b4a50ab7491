//! One engine per data directory: an exclusive lock on `<data dir>/LOCK`, held as long as the storage
//! engine lives (released by the OS if the process dies).
//!
//! Two engines on one directory would both replay the WAL and flush the same records — a way to store an
//! acknowledged event twice. The usual way to get there is restarting a server while the old one is still
//! flushing on shutdown, so `open` waits for the lock (`StorageConfig::lock_wait`) before giving up.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Result, StorageError};

/// Holds the lock until dropped.
pub struct DataDirLock {
    _file: File,
}

/// Takes the data directory's lock, waiting up to `wait` for another engine to release it.
pub async fn lock_data_dir(data_dir: &Path, wait: Duration) -> Result<DataDirLock> {
    let path = data_dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let started = Instant::now();
    let mut logged = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DataDirLock { _file: file }),
            Err(TryLockError::Error(error)) => return Err(error.into()),
            Err(TryLockError::WouldBlock) => {}
        }
        if started.elapsed() >= wait {
            return Err(StorageError::DataDirInUse(data_dir.display().to_string()));
        }
        if !logged {
            tracing::info!(path = %path.display(), "waiting for another keyhole to release the data directory");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
