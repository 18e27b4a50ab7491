//! `keyhole backup --to DIR` and `keyhole restore --from DIR`: a consistent copy of a data directory,
//! taken while a server runs on it, and its restoration into an empty data directory.
//!
//! A copy holds `meta.sqlite` (SQLite's `VACUUM INTO`: one consistent snapshot while writers go on),
//! `events/` (see `keyhole_storage::backup`: the manifest, the files it lists and the WAL, copied again
//! if a flush changed the manifest meanwhile) and `BACKUP.json` (when, from where, what). The metadata
//! is copied first, so every key that can read the copied events is in the copy; a key created during
//! the copy may be missing, never an event's key.

use std::path::Path;

use anyhow::Context;
use keyhole_meta::MetaStore;
use keyhole_storage::backup::{restore_events, snapshot_events};
use serde_json::json;

const BACKUP_MARKER: &str = "BACKUP.json";

pub async fn backup(data_dir: &Path, to: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!to.exists(), "{} already exists", to.display());
    anyhow::ensure!(
        data_dir.join("meta.sqlite").exists(),
        "{} holds no keyhole data (no meta.sqlite)",
        data_dir.display()
    );
    std::fs::create_dir_all(to)?;
    let meta = MetaStore::open_sqlite(&data_dir.join("meta.sqlite"))
        .await
        .context("cannot open the metadata to copy it")?;
    meta.backup_into(&to.join("meta.sqlite"))
        .await
        .context("cannot copy the metadata")?;
    let (events, events_copy) = (data_dir.join("events"), to.join("events"));
    let summary = tokio::task::spawn_blocking(move || snapshot_events(&events, &events_copy))
        .await?
        .context("cannot copy the events")?;
    let marker = json!({
        "taken_at": keyhole_model::timestamp::format_timestamp(chrono::Utc::now().timestamp_millis()),
        "from": data_dir.display().to_string(),
        "flushed_sequence": summary.flushed_sequence,
        "data_files": summary.data_files,
        "wal_segments": summary.wal_segments,
        "manifest_format": keyhole_storage::manifest::MANIFEST_FORMAT,
        "wal_format": keyhole_storage::wal::SEGMENT_FORMAT,
    });
    std::fs::write(to.join(BACKUP_MARKER), serde_json::to_vec_pretty(&marker)?)?;
    println!(
        "backup written to {}: {} data files, {} WAL segments, {} bytes",
        to.display(),
        summary.data_files,
        summary.wal_segments,
        summary.bytes
    );
    Ok(())
}

pub async fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        from.join(BACKUP_MARKER).exists(),
        "{} is not a keyhole backup (no {BACKUP_MARKER})",
        from.display()
    );
    anyhow::ensure!(
        !data_dir.join("meta.sqlite").exists() && !data_dir.join("events").exists(),
        "{} already holds keyhole data; restore into an empty data directory",
        data_dir.display()
    );
    std::fs::create_dir_all(data_dir)?;
    let _lock = keyhole_storage::lock_data_dir(data_dir, std::time::Duration::from_secs(1))
        .await
        .context("the data directory is in use")?;
    let (copy, events) = (from.join("events"), data_dir.join("events"));
    let summary = tokio::task::spawn_blocking(move || restore_events(&copy, &events))
        .await?
        .context("cannot restore the events")?;
    std::fs::copy(from.join("meta.sqlite"), data_dir.join("meta.sqlite"))
        .context("cannot restore the metadata")?;
    std::fs::File::open(data_dir.join("meta.sqlite"))?.sync_all()?;
    println!(
        "restored into {}: {} data files, {} WAL segments; start it with `keyhole serve --data-dir {}`",
        data_dir.display(),
        summary.data_files,
        summary.wal_segments,
        data_dir.display()
    );
    Ok(())
}
