//! The engine under a small memory budget, on a real data directory: the event buffer flushes by bytes
//! and refuses writes while it cannot, compaction spills sorted runs and merges them in order, and a data
//! file whose footer is damaged is set aside at start-up instead of stopping it.

use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::TimestampMillisecondType;
use keyhole_model::memory_budget::{MemoryBudget, MemoryConsumer};
use serde_json::{Value, json};

use super::tests::{count, id, prepared};
use super::*;
use keyhole_model::PreparedEvent;
use std::path::Path;

/// The smallest budget: an event buffer share of about 25 MiB, a compaction share of about 10 MiB.
fn small_budget() -> MemoryBudget {
    MemoryBudget::new(keyhole_model::memory_budget::MIN_MEMORY_LIMIT_BYTES)
}

fn config(directory: &Path, budget: &MemoryBudget) -> StorageConfig {
    StorageConfig {
        flush_interval: Duration::from_secs(3600),
        flush_rows: usize::MAX,
        delete_grace: Duration::from_millis(10),
        compact_min_files: 1_000,
        settled_min_files: 1_000,
        memory_budget: budget.clone(),
        buffer_wait: Duration::from_millis(300),
        ..StorageConfig::new(directory)
    }
}

/// Events of about `event_bytes` each, in properties of 9,000 characters (strings must stay under 10,000).
fn wide_events(count: usize, event_bytes: usize) -> Vec<PreparedEvent> {
    (0..count)
        .map(|i| {
            let mut event = serde_json::Map::new();
            event.insert("i".into(), json!(i));
            for part in 0..event_bytes.div_ceil(9_000) {
                event.insert(format!("text{part}"), json!("x".repeat(9_000)));
            }
            prepared(Value::Object(event))
        })
        .collect()
}

#[tokio::test]
async fn the_event_buffer_flushes_by_bytes_and_refuses_writes_it_cannot_hold() {
    let directory = tempfile::tempdir().unwrap();
    let budget = small_budget();
    let share = budget.share(MemoryConsumer::EventBuffer) as usize;
    let storage = Storage::open(config(directory.path(), &budget))
        .await
        .unwrap();

    // Over a quarter of the share: a flush starts by itself (no row count or timer would start one).
    storage
        .append(id("big"), wide_events(share / 3 / 50_000 + 1, 50_000))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while storage.data_files(&id("big")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no flush by bytes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while budget.used(MemoryConsumer::EventBuffer) as usize > share / 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the buffer was not emptied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // While no flush can run, the buffer fills to a third of its share and the next write is refused,
    // nothing of it stored.
    let maintenance = storage.engine().maintenance_lock.clone().lock_owned().await;
    storage
        .append(id("big"), wide_events(share / 3 / 50_000 + 1, 50_000))
        .await
        .unwrap();
    let stored = count(&storage, "big").await;
    let refused = storage.append(id("big"), wide_events(1, 10)).await;
    assert!(
        matches!(refused, Err(StorageError::BufferFull)),
        "{refused:?}"
    );
    assert_eq!(count(&storage, "big").await, stored);
    let usage = budget.usage();
    let buffer = usage
        .iter()
        .find(|usage| usage.consumer == MemoryConsumer::EventBuffer)
        .unwrap();
    assert_eq!(buffer.refusals, 1);
    assert!(buffer.used_bytes as usize >= share / 3);

    // Once the flush can run, writes are taken again.
    drop(maintenance);
    storage.append(id("big"), wide_events(1, 10)).await.unwrap();
    assert_eq!(count(&storage, "big").await, stored + 1);
}

#[tokio::test]
async fn compaction_spills_sorted_runs_and_merges_them_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let budget = small_budget();
    let storage = Storage::open(config(directory.path(), &budget))
        .await
        .unwrap();
    storage.set_clustering("p1", vec!["tenant".into()]);
    // Four files of one day, about 5 MB of rows each: more than one run of a ~2.7 MB run budget.
    let day_start = 1_706_832_000_000_i64; // 2024-02-02T00:00:00Z
    let mut written = 0;
    for file in 0..4 {
        let events = (0..20_000)
            .map(|i| {
                let millis = day_start + i64::from((i * 7919 + file * 13) % 86_000_000);
                let timestamp = chrono::DateTime::from_timestamp_millis(millis)
                    .unwrap()
                    .to_rfc3339();
                prepared(json!({
                    "tenant": format!("tenant-{}", (i * 31 + file) % 97),
                    "padding": "p".repeat(100),
                    "keen": {"timestamp": timestamp},
                }))
            })
            .collect();
        storage.append(id("c"), events).await.unwrap();
        storage.flush().await.unwrap();
        written += 20_000;
    }
    assert_eq!(storage.data_files(&id("c")).len(), 4);
    {
        let _maintenance = storage.engine().maintenance_lock.lock().await;
        crate::maintenance::compact_locked(storage.engine(), 2)
            .await
            .unwrap();
    }
    let files = storage.data_files(&id("c"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].rows, written);
    assert!(
        storage.metrics().compaction_spilled_runs.get() >= 2,
        "the day did not fit one run, so it was merged from spilled runs"
    );
    assert_eq!(
        budget.used(MemoryConsumer::Compaction),
        0,
        "given back after the merge"
    );
    assert!(
        !compaction::tmp_dir(directory.path())
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some()),
        "spilled runs are removed"
    );

    // Read the merged file as written: ordered by tenant, then time, every row present once.
    let bytes = storage.engine().objects.get(&files[0].path).await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut keys: Vec<(String, i64)> = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let tenants = batch
            .column_by_name("tenant#str")
            .unwrap()
            .as_string::<i32>();
        let times = batch
            .column_by_name(keyhole_model::flat::TIMESTAMP_COLUMN)
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        for row in 0..batch.num_rows() {
            keys.push((tenants.value(row).to_string(), times.value(row)));
        }
    }
    assert_eq!(keys.len(), written);
    assert!(
        keys.windows(2).all(|pair| pair[0] <= pair[1]),
        "rows are ordered by tenant, then time"
    );
    assert_eq!(count(&storage, "c").await, written);
}

#[tokio::test]
async fn a_file_with_a_damaged_footer_is_set_aside_and_the_rest_served() {
    let directory = tempfile::tempdir().unwrap();
    let budget = small_budget();
    let storage = Storage::open(config(directory.path(), &budget))
        .await
        .unwrap();
    // Uniqueness tokens make start-up read every file of the collection (the token index).
    for round in 0..2 {
        let events = (0..50)
            .map(|i| {
                prepared(json!({"i": i, "keen": {"uniqueness_token": format!("{round}-{i}")}}))
            })
            .collect();
        storage.append(id("c"), events).await.unwrap();
        storage.flush().await.unwrap();
    }
    let files = storage.data_files(&id("c"));
    assert_eq!(files.len(), 2);
    storage.close().await.unwrap();
    drop(storage);

    // Damage the footer's bytes, keeping the file's size and its PAR1 magic at both ends.
    let damaged = directory.path().join("objects").join(&files[1].path);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let length = bytes.len();
    let footer_length =
        u32::from_le_bytes(bytes[length - 8..length - 4].try_into().unwrap()) as usize;
    for byte in &mut bytes[length - 8 - footer_length..length - 8] {
        *byte = !*byte;
    }
    std::fs::write(&damaged, &bytes).unwrap();

    let storage = Storage::open(config(directory.path(), &budget))
        .await
        .expect("a damaged file does not stop the engine from starting");
    assert_eq!(storage.health().quarantined_data_files, 1);
    assert_eq!(storage.data_files(&id("c")), vec![files[0].clone()]);
    assert_eq!(count(&storage, "c").await, 50);
    assert!(
        directory
            .path()
            .join("objects/quarantine")
            .join(&files[1].path)
            .exists(),
        "set aside for inspection, not deleted"
    );
    // The undamaged file's tokens still deduplicate.
    let outcomes = storage
        .append(
            id("c"),
            vec![prepared(json!({"keen": {"uniqueness_token": "0-1"}}))],
        )
        .await
        .unwrap();
    assert_eq!(count(&storage, "c").await, 50, "{outcomes:?}");
}
