//! Event and property deletes on a real data directory: applied to memory and files at once, kept across
//! restarts, replayed into files when the process died between the WAL record and the file rewrite, and
//! never touching events they do not name.

use std::collections::HashSet;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use serde_json::json;

use super::*;
use crate::local_journal::wal_dir;
use crate::tests::{id, prepared};
use crate::wal::{Wal, WalEntry};
use std::path::Path;

fn config(directory: &Path) -> StorageConfig {
    StorageConfig {
        flush_interval: Duration::from_secs(3600),
        delete_grace: Duration::from_millis(10),
        compact_min_files: 100,
        ..StorageConfig::new(directory)
    }
}

/// The `i` of every stored event, sorted, and how many events carry `user.email`.
async fn stored(storage: &Storage) -> (Vec<i64>, usize) {
    let scan = storage.scan(&id("orders"), TimeRange::ALL).await.unwrap();
    let mut numbers = Vec::new();
    let mut emails = 0;
    for batch in &scan.batches {
        let column = batch.column_by_name("i#num").unwrap();
        let values = column.as_primitive::<arrow::datatypes::Float64Type>();
        numbers.extend(values.iter().flatten().map(|value| value as i64));
        if let Some(column) = batch.column_by_name("user.email#str") {
            emails += column.len() - column.null_count();
        }
    }
    numbers.sort_unstable();
    (numbers, emails)
}

async fn ids_where(storage: &Storage, keep: impl Fn(i64) -> bool) -> HashSet<String> {
    let scan = storage.scan(&id("orders"), TimeRange::ALL).await.unwrap();
    let mut ids = HashSet::new();
    for batch in &scan.batches {
        let numbers = batch
            .column_by_name("i#num")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        let keen_ids = batch.column_by_name("keen.id").unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            if keep(numbers.value(row) as i64) {
                ids.insert(keen_ids.value(row).to_string());
            }
        }
    }
    ids
}

fn event(i: i64, day: u32) -> keyhole_model::PreparedEvent {
    prepared(
        json!({"i": i, "user": {"email": format!("u{i}@example.com"), "plan": "pro"},
                    "keen": {"timestamp": format!("2024-03-{day:02}T12:00:00Z")}}),
    )
}

#[tokio::test]
async fn deleted_events_leave_memory_and_files_at_once_and_for_good() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    let first: Vec<_> = (0..20).map(|i| event(i, 1 + (i % 2) as u32)).collect();
    storage.append(id("orders"), first).await.unwrap();
    storage.flush().await.unwrap();
    let second: Vec<_> = (20..30).map(|i| event(i, 2)).collect();
    storage.append(id("orders"), second).await.unwrap();

    let version = storage.change_version();
    let doomed = ids_where(&storage, |i| i % 3 == 0).await;
    let earliest = parse("2024-03-01T12:00:00Z");
    let removed = storage
        .delete_events(
            id("orders"),
            doomed,
            earliest,
            parse("2024-03-02T12:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(removed, 10);
    let expected: Vec<i64> = (0..30).filter(|i| i % 3 != 0).collect();
    assert_eq!(stored(&storage).await.0, expected);
    assert_eq!(
        storage.earliest_change_since(&id("orders"), version),
        Some(earliest)
    );
    // Deleting ids that are gone (or never were) removes nothing.
    let again = storage
        .delete_events(
            id("orders"),
            HashSet::from(["nope".to_string()]),
            0,
            i64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(again, 0);

    drop(storage);
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(stored(&storage).await.0, expected, "after a crash");
    storage.close().await.unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(stored(&storage).await.0, expected, "after a clean close");
}

#[tokio::test]
async fn a_delete_the_process_died_during_is_applied_to_files_at_start() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    storage
        .append(id("orders"), (0..10).map(|i| event(i, 5)).collect())
        .await
        .unwrap();
    storage.close().await.unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    let doomed = ids_where(&storage, |i| i < 4).await;
    let next_sequence = storage.engine().state.lock().unwrap().flushed_sequence + 1;
    storage.close().await.unwrap();

    // The WAL record was committed, then the process died before any file was rewritten.
    let mut wal = Wal::create(&wal_dir(directory.path()), next_sequence).unwrap();
    wal.append(&WalEntry::DeleteEvents {
        project: "p1".into(),
        collection: "orders".into(),
        ids: doomed.into_iter().collect(),
        earliest: 0,
        latest: i64::MAX,
    });
    wal.commit().unwrap();
    drop(wal);

    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(stored(&storage).await.0, (4..10).collect::<Vec<_>>());
    let rows: usize = storage
        .data_files(&id("orders"))
        .iter()
        .map(|file| file.rows)
        .sum();
    assert_eq!(
        rows, 6,
        "the files themselves no longer hold the deleted events"
    );
}

#[tokio::test]
async fn a_deleted_property_is_gone_from_every_event_and_does_not_come_back() {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path())).await.unwrap();
    storage
        .append(id("orders"), (0..5).map(|i| event(i, 1)).collect())
        .await
        .unwrap();
    storage.flush().await.unwrap();
    storage
        .append(id("orders"), (5..8).map(|i| event(i, 1)).collect())
        .await
        .unwrap();
    assert_eq!(stored(&storage).await.1, 8);
    assert!(
        storage
            .delete_property(id("orders"), "user".into())
            .await
            .unwrap()
    );
    let schema = storage.collection_schema(&id("orders")).unwrap();
    assert!(
        schema
            .properties
            .keys()
            .all(|path| !path.starts_with("user"))
    );
    assert!(schema.properties.contains_key("i"));
    assert_eq!(stored(&storage).await, ((0..8).collect(), 0));

    // A new event with the property brings back only its own value.
    storage
        .append(id("orders"), vec![event(8, 1)])
        .await
        .unwrap();
    assert_eq!(stored(&storage).await.1, 1);
    drop(storage);
    let storage = Storage::open(config(directory.path())).await.unwrap();
    assert_eq!(stored(&storage).await, ((0..9).collect(), 1));
}

fn parse(text: &str) -> i64 {
    keyhole_model::timestamp::parse_timestamp(text).unwrap()
}
