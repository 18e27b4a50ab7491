//! Events travel the shared log as encoded rows: another node adds the writer's batch as it is (never
//! parsing the events' JSON) and ends with the same rows and the same schema, latest kinds included; a
//! record of the older JSON form is still applied; and the node that took events flushes them — a node
//! that only follows the log flushes only when they are left waiting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::memory_log::MemoryLog;
use crate::records::KIND_ENTRIES;
use crate::shared::{SharedLog, SharedLogHandle};
use crate::testsuite::{count, id, prepared};
use crate::wal::{WalEntry, encode_entries};
use crate::{Storage, StorageConfig};

async fn open_node(
    directory: &std::path::Path,
    log: &MemoryLog,
    flush_rows: usize,
    flush_interval: Duration,
) -> Storage {
    let config = StorageConfig {
        flush_interval,
        flush_rows,
        shared_log: Some(SharedLogHandle(Arc::new(log.clone()))),
        ..StorageConfig::new(directory)
    };
    Storage::open(config).await.unwrap()
}

async fn wait_for_count(storage: &Storage, collection: &str, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(storage, collection).await != expected {
        assert!(Instant::now() < deadline, "never counted {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kinds of the records `node` appended.
fn appended_by(log: &MemoryLog, node: &str) -> Vec<String> {
    log.history()
        .into_iter()
        .filter(|(_, appender)| appender == node)
        .map(|(kind, _)| kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_node_takes_the_writers_rows_with_the_same_schema() {
    let first_log = MemoryLog::new();
    let second_log = first_log.for_node("node-1");
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hour = Duration::from_secs(3600);
    let first = open_node(first_dir.path(), &first_log, 200_000, hour).await;
    let second = open_node(second_dir.path(), &second_log, 200_000, hour).await;
    // One write whose `n` changes kind twice (its latest is a number), with nested and list values and a
    // uniqueness token repeated (stored once).
    let events = vec![
        prepared(json!({"n": "text", "user": {"id": 1}, "tags": ["a", "b"]})),
        prepared(json!({"n": 2, "flag": true, "keen": {"uniqueness_token": "t-1"}})),
        prepared(json!({"n": null, "keen": {"uniqueness_token": "t-1"}})),
        prepared(json!({"n": 3, "empty": {}})),
    ];
    first.append(id("orders"), events).await.unwrap();
    wait_for_count(&second, "orders", 3).await;
    assert_eq!(count(&first, "orders").await, 3);
    let writer_schema = first.collection_schema(&id("orders")).unwrap();
    let follower_schema = second.collection_schema(&id("orders")).unwrap();
    assert_eq!(follower_schema, writer_schema);
    assert_eq!(
        writer_schema.properties["n"].latest,
        keyhole_model::ValueKind::Num
    );
    assert_eq!(appended_by(&first_log, "node-0"), ["rows"]);
    assert_eq!(scanned_rows(&second).await, scanned_rows(&first).await);
}

async fn scanned_rows(storage: &Storage) -> Vec<arrow::record_batch::RecordBatch> {
    storage
        .scan(&id("orders"), crate::TimeRange::ALL)
        .await
        .unwrap()
        .batches
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_of_events_as_json_is_still_applied() {
    let log = MemoryLog::new();
    let directory = tempfile::tempdir().unwrap();
    let node = open_node(directory.path(), &log, 200_000, Duration::from_secs(3600)).await;
    let older = WalEntry::Events {
        project: "p1".into(),
        collection: "orders".into(),
        events: vec![
            prepared(json!({"n": 1})).json,
            prepared(json!({"n": 2})).json,
        ],
    };
    log.for_node("older-node")
        .append(KIND_ENTRIES, encode_entries(&[older]), false)
        .await
        .unwrap();
    wait_for_count(&node, "orders", 2).await;
}

/// Two nodes on a fresh log, with these flush points (rows) and flush intervals; their data directories.
async fn two_nodes(
    first: (usize, Duration),
    second: (usize, Duration),
) -> (MemoryLog, [Storage; 2], [tempfile::TempDir; 2]) {
    let log = MemoryLog::new();
    let directories = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let nodes = [
        open_node(directories[0].path(), &log, first.0, first.1).await,
        open_node(
            directories[1].path(),
            &log.for_node("node-1"),
            second.0,
            second.1,
        )
        .await,
    ];
    (log, nodes, directories)
}

fn numbered(range: std::ops::Range<u64>) -> Vec<keyhole_model::PreparedEvent> {
    range.map(|n| prepared(json!({"n": n}))).collect()
}

/// Waits until `node` has appended a `flushed` record; how long that took.
async fn until_flushed_by(log: &MemoryLog, node: &str) -> Duration {
    let started = Instant::now();
    while !appended_by(log, node).contains(&"flushed".to_string()) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{node} never flushed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

// Counts are read only before a flush: each test node keeps its files in its own data directory.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_that_took_events_flushes_them_and_a_follower_only_takes_over() {
    let hour = Duration::from_secs(3600);
    let (log, [first, second], _directories) = two_nodes((100, hour), (50, hour)).await;
    // Past the follower's flush point (50), not the writer's (100): nobody flushes.
    first.append(id("orders"), numbered(0..60)).await.unwrap();
    wait_for_count(&second, "orders", 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(appended_by(&log, "node-1"), Vec::<String>::new());
    // Past the writer's: the writer flushes, the follower still does not.
    first.append(id("orders"), numbered(60..110)).await.unwrap();
    until_flushed_by(&log, "node-0").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(appended_by(&log, "node-1"), Vec::<String>::new());

    // A writer that does not flush: the follower takes over past its takeover point (75 rows).
    let (log, [first, _second], _directories) = two_nodes((1_000_000, hour), (50, hour)).await;
    first.append(id("orders"), numbered(0..80)).await.unwrap();
    until_flushed_by(&log, "node-1").await;

    // On a flush-interval tick, a node that took no events flushes rows only once they waited two ticks.
    let tick = Duration::from_millis(300);
    let (log, [writer, follower], _directories) =
        two_nodes((1_000_000, hour), (1_000_000, tick)).await;
    writer.append(id("orders"), numbered(0..10)).await.unwrap();
    wait_for_count(&follower, "orders", 10).await;
    let waited = until_flushed_by(&log, "node-1").await;
    assert!(
        waited >= tick,
        "flushed {waited:?} after the rows came, before they waited two ticks"
    );
}
