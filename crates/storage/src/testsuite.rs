//! The storage suite: engine tests every backend must pass — visibility, restart, flush, compaction,
//! drift, deletes, dedup, clustering, the directory lock, the file cache — written once and declared for
//! each backend by [`storage_test_suite!`](crate::storage_test_suite), as Quickwit's
//! `metastore_test_suite!` does. A [`Backend`] names where Parquet files go and which journal the engine
//! writes: the local WAL (files in the data directory or an S3-compatible bucket) or a shared log.
//! This crate declares it for the data directory, S3 and the in-memory log (`tests.rs`); the server
//! crate, which joins the engine to PostgreSQL, declares it for the PostgreSQL log.
//!
//! Compiled for this crate's tests and with the `testsuite` feature (for other crates' tests).

#![allow(missing_docs, clippy::missing_panics_doc)]

use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, Float64Array, ListArray, StringArray};
use arrow::datatypes::Float64Type;
use keyhole_model::{EventContext, PreparedEvent, prepare_event};
use serde_json::{Value, json};

use crate::shared::SharedLogHandle;
use crate::{
    CollectionId, ObjectsLocation, Storage, StorageConfig, StorageError, TimeRange, WriteOutcome,
};

/// Where a suite test's Parquet files go and where its journal is. The shared log, if any, must be fresh
/// for each test and outlive every engine the test opens (they all journal in it, as restarted nodes do).
pub struct Backend {
    pub objects: ObjectsLocation,
    pub shared_log: Option<SharedLogHandle>,
    /// Run after the test passed: a check that the engine used this backend.
    pub after: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Backend {
    /// Files in the data directory, the local WAL.
    pub fn data_dir() -> Backend {
        Backend {
            objects: ObjectsLocation::DataDir,
            shared_log: None,
            after: None,
        }
    }

    /// Files under a fresh prefix of the S3-compatible bucket `KEYHOLE_TEST_S3_BUCKET` names (and the
    /// `AWS_*` variables; `.ci/run` starts the server), the local WAL; `None` (the test is skipped,
    /// with one line on stderr) without it.
    pub fn s3() -> Option<Backend> {
        let bucket = keyhole_test_env::s3_bucket()?;
        let prefix = format!("storage-tests/{}", keyhole_model::keys::generate_id());
        Some(Backend {
            objects: ObjectsLocation::S3(format!("s3://{bucket}/{prefix}")),
            shared_log: None,
            after: None,
        })
    }

    /// Files in the data directory, the journal in `log`.
    pub fn shared_log(log: SharedLogHandle) -> Backend {
        Backend {
            objects: ObjectsLocation::DataDir,
            shared_log: Some(log),
            after: None,
        }
    }
}

fn config(directory: &Path, backend: &Backend) -> StorageConfig {
    StorageConfig {
        flush_interval: Duration::from_secs(3600),
        delete_grace: Duration::from_millis(10),
        compact_min_files: 3,
        objects: backend.objects.clone(),
        shared_log: backend.shared_log.clone(),
        ..StorageConfig::new(directory)
    }
}

pub fn prepared(event: Value) -> PreparedEvent {
    let context = EventContext {
        received_at: chrono::Utc::now(),
        client_ip: None,
        user_agent: None,
        uniqueness_scope: None,
        autofill: None,
    };
    prepare_event(event, &context).unwrap()
}

pub fn id(collection: &str) -> CollectionId {
    CollectionId {
        project: "p1".into(),
        collection: collection.into(),
    }
}

pub async fn count(storage: &Storage, collection: &str) -> usize {
    storage
        .scan(&id(collection), TimeRange::ALL)
        .await
        .unwrap()
        .num_rows()
}

pub async fn acknowledged_rows_are_visible_before_and_after_flush_and_restart(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    let events = (0..10).map(|i| prepared(json!({"i": i}))).collect();
    storage.append(id("clicks"), events).await.unwrap();
    assert_eq!(count(&storage, "clicks").await, 10);
    storage.flush().await.unwrap();
    assert_eq!(storage.data_files(&id("clicks")).len(), 1);
    assert_eq!(count(&storage, "clicks").await, 10);
    storage
        .append(id("clicks"), vec![prepared(json!({"i": 10}))])
        .await
        .unwrap();
    assert_eq!(count(&storage, "clicks").await, 11);
    // Not closed: the unflushed row must come back from the WAL, the flushed ones from Parquet.
    drop(storage);
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    assert_eq!(count(&storage, "clicks").await, 11);
    storage.close().await.unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    assert_eq!(count(&storage, "clicks").await, 11);
    assert!(storage.append(id("x"), vec![]).await.is_ok());
}

pub async fn time_range_and_day_partitions(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    let events = [
        "2024-01-01T10:00:00Z",
        "2024-01-01T23:59:59.999Z",
        "2024-01-02T00:00:00Z",
        "2024-01-05T12:00:00Z",
    ]
    .iter()
    .map(|time| prepared(json!({"keen": {"timestamp": time}})))
    .collect();
    storage.append(id("c"), events).await.unwrap();
    let range = TimeRange {
        start_millis: keyhole_model::timestamp::parse_timestamp("2024-01-01T12:00:00Z"),
        end_millis: keyhole_model::timestamp::parse_timestamp("2024-01-05T12:00:00Z"),
    };
    assert_eq!(storage.scan(&id("c"), range).await.unwrap().num_rows(), 2);
    storage.flush().await.unwrap();
    let days: Vec<String> = storage
        .data_files(&id("c"))
        .iter()
        .map(|file| file.day.clone())
        .collect();
    assert_eq!(days, ["2024-01-01", "2024-01-02", "2024-01-05"]);
    assert_eq!(storage.scan(&id("c"), range).await.unwrap().num_rows(), 2);
}

pub async fn small_files_are_compacted_without_losing_rows(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    for round in 0..5 {
        let events = (0..4)
            .map(|i| {
                prepared(
                    json!({"round": round, "i": i, "keen": {"timestamp": "2024-02-02T02:02:02Z"}}),
                )
            })
            .collect();
        storage.append(id("c"), events).await.unwrap();
        storage.flush().await.unwrap();
    }
    // Compaction runs after each flush once a day has 3 files: 5 flushes leave at most 2 files.
    assert!(
        storage.data_files(&id("c")).len() < 3,
        "{:?}",
        storage.data_files(&id("c"))
    );
    assert_eq!(count(&storage, "c").await, 20);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(storage);
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    assert_eq!(count(&storage, "c").await, 20);
}

pub async fn a_quiet_tick_merges_every_day_into_one_file(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let ticking = StorageConfig {
        flush_interval: Duration::from_millis(200),
        compact_min_files: 4,
        ..config(directory.path(), backend)
    };
    let storage = Storage::open(ticking).await.unwrap();
    for round in 0..2 {
        let events = ["2024-03-01T01:00:00Z", "2024-03-02T01:00:00Z"]
            .iter()
            .map(|time| prepared(json!({"round": round, "keen": {"timestamp": time}})))
            .collect();
        storage.append(id("c"), events).await.unwrap();
        storage.flush().await.unwrap();
    }
    // Two files per day: under `compact_min_files`, so only a tick with nothing new merges them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while storage.data_files(&id("c")).len() > 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "days were not merged at rest: {:?}",
            storage.data_files(&id("c"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let days: Vec<String> = storage
        .data_files(&id("c"))
        .iter()
        .map(|file| file.day.clone())
        .collect();
    assert_eq!(days.len(), 2, "one file per day: {days:?}");
    assert_eq!(count(&storage, "c").await, 4);
}

pub async fn type_drift_keeps_every_value_with_its_own_type(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    let values = [
        json!(42.5),
        json!("forty-two"),
        json!(true),
        json!({"nested": 7}),
        json!([1, 2, 3]),
        json!(["a", "b"]),
        json!(null),
        json!([1, "a"]),
    ];
    for (half, chunk) in values.chunks(4).enumerate() {
        let events = chunk
            .iter()
            .map(|value| prepared(json!({"v": value})))
            .collect();
        storage.append(id("drift"), events).await.unwrap();
        if half == 0 {
            storage.flush().await.unwrap();
        }
    }
    let scan = storage.scan(&id("drift"), TimeRange::ALL).await.unwrap();
    let batches = &scan.batches;
    let all = arrow::compute::concat_batches(&scan.schema, batches).unwrap();
    assert_eq!(all.num_rows(), 8);
    let nums = all
        .column_by_name("v#num")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let strs = all
        .column_by_name("v#str")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let bools = all
        .column_by_name("v#bool")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    let nested = all
        .column_by_name("v.nested#num")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let num_lists = all
        .column_by_name("v#list_num")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let str_lists = all
        .column_by_name("v#list_str")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let mixed = all
        .column_by_name("v#list_json")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let nulls = all
        .column_by_name("v#null")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert_eq!(nums.value(0), 42.5);
    assert_eq!(strs.value(1), "forty-two");
    assert!(bools.value(2));
    assert_eq!(nested.value(3), 7.0);
    assert_eq!(
        num_lists
            .value(4)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec(),
        vec![1.0, 2.0, 3.0]
    );
    assert_eq!(
        str_lists
            .value(5)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(nulls.value(6));
    assert_eq!(
        mixed
            .value(7)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect::<Vec<_>>(),
        ["1", "\"a\""]
    );
    // Each row has exactly one typed column of `v` set.
    for row in 0..8 {
        let set = [
            "v#num",
            "v#str",
            "v#bool",
            "v.nested#num",
            "v#list_num",
            "v#list_str",
            "v#null",
            "v#list_json",
        ]
        .iter()
        .filter(|column| all.column_by_name(column).unwrap().is_valid(row))
        .count();
        assert_eq!(set, 1, "row {row}");
    }
    let schema = storage.collection_schema(&id("drift")).unwrap();
    assert_eq!(schema.properties["v"].kinds.len(), 7);
    assert_eq!(
        schema.properties["v"].latest,
        keyhole_model::ValueKind::MixedList
    );
}

pub async fn deleting_a_collection_survives_restart_and_flush(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    storage
        .append(id("gone"), vec![prepared(json!({"a": 1}))])
        .await
        .unwrap();
    storage.flush().await.unwrap();
    storage
        .append(id("gone"), vec![prepared(json!({"a": 2}))])
        .await
        .unwrap();
    storage
        .append(id("kept"), vec![prepared(json!({"a": 3}))])
        .await
        .unwrap();
    storage.delete_collection(id("gone")).await.unwrap();
    assert_eq!(count(&storage, "gone").await, 0);
    assert!(storage.collection_schema(&id("gone")).is_none());
    storage
        .append(id("gone"), vec![prepared(json!({"b": 4}))])
        .await
        .unwrap();
    drop(storage);
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    assert_eq!(count(&storage, "gone").await, 1);
    assert_eq!(count(&storage, "kept").await, 1);
    let schema = storage.collection_schema(&id("gone")).unwrap();
    assert!(schema.properties.contains_key("b") && !schema.properties.contains_key("a"));
}

pub async fn uniqueness_tokens_deduplicate_across_flush_and_restart(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    let token = |t: &str| prepared(json!({"keen": {"uniqueness_token": t}}));
    let outcomes = storage
        .append(id("u"), vec![token("a"), token("a"), token("b")])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            WriteOutcome::Stored,
            WriteOutcome::Duplicate,
            WriteOutcome::Stored
        ]
    );
    storage.flush().await.unwrap();
    assert_eq!(
        storage.append(id("u"), vec![token("a")]).await.unwrap(),
        [WriteOutcome::Duplicate]
    );
    // Tokens are per collection.
    assert_eq!(
        storage.append(id("other"), vec![token("a")]).await.unwrap(),
        [WriteOutcome::Stored]
    );
    storage.append(id("u"), vec![token("c")]).await.unwrap();
    drop(storage);
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    for t in ["a", "b", "c"] {
        assert_eq!(
            storage.append(id("u"), vec![token(t)]).await.unwrap(),
            [WriteOutcome::Duplicate],
            "{t}"
        );
    }
    assert_eq!(count(&storage, "u").await, 3);
}

pub async fn flushed_rows_are_ordered_by_the_clustering_properties_then_time(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    storage.set_clustering("p1", vec!["tenant".into()]);
    let events = (0..40)
        .map(|i| {
            let tenant = ["b", "a", "c", "a"][i % 4];
            let timestamp = format!("2024-01-01T00:00:{:02}.000Z", 59 - i);
            prepared(json!({"tenant": tenant, "keen": {"timestamp": timestamp}}))
        })
        .collect();
    storage.append(id("clicks"), events).await.unwrap();
    storage.flush().await.unwrap();
    let scan = storage.scan(&id("clicks"), TimeRange::ALL).await.unwrap();
    let rows = arrow::compute::concat_batches(&scan.schema, &scan.batches).unwrap();
    let tenants = rows
        .column_by_name("tenant#str")
        .unwrap()
        .as_string::<i32>();
    let tenants: Vec<&str> = (0..rows.num_rows()).map(|row| tenants.value(row)).collect();
    let mut expected = tenants.clone();
    expected.sort_unstable();
    assert_eq!(tenants, expected, "rows grouped by tenant");
    let times = rows
        .column_by_name(keyhole_model::flat::TIMESTAMP_COLUMN)
        .unwrap()
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
    for row in 1..rows.num_rows() {
        if tenants[row] == tenants[row - 1] {
            assert!(
                times.value(row) >= times.value(row - 1),
                "time order within a tenant"
            );
        }
    }
    assert_eq!(storage.clustering_of("p1"), vec!["tenant".to_string()]);
    storage.set_clustering("p1", Vec::new());
    assert!(storage.clustering_of("p1").is_empty());
}

pub async fn a_data_directory_is_opened_by_one_engine_at_a_time(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let impatient = StorageConfig {
        lock_wait: Duration::from_millis(200),
        ..config(directory.path(), backend)
    };
    let first = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    first
        .append(id("clicks"), vec![prepared(json!({"i": 1}))])
        .await
        .unwrap();
    let refused = Storage::open(impatient.clone()).await;
    assert!(
        matches!(refused, Err(StorageError::DataDirInUse(_))),
        "a second engine must not open a directory in use"
    );
    // Dropping every handle (as a crash would) releases it; the next engine replays the WAL once.
    drop(first);
    let second = Storage::open(impatient).await.unwrap();
    assert_eq!(count(&second, "clicks").await, 1);
}

/// A flushed file is read back from the file cache, not from the store (with a bucket behind a prefix,
/// the cache once keyed files by the store's form of the path and never found one again).
pub async fn written_files_are_read_from_the_file_cache(backend: &Backend) {
    let directory = tempfile::tempdir().unwrap();
    let storage = Storage::open(config(directory.path(), backend))
        .await
        .unwrap();
    let events = (0..10).map(|i| prepared(json!({"i": i}))).collect();
    storage.append(id("cached"), events).await.unwrap();
    storage.flush().await.unwrap();
    for _ in 0..3 {
        assert_eq!(count(&storage, "cached").await, 10);
    }
    let metrics = storage.metrics();
    assert_eq!(metrics.file_cache_misses.get(), 0);
    assert!(metrics.file_cache_hits.get() >= 3);
}

/// Declares every suite test for one backend, in the module it is invoked in:
/// `storage_test_suite!(make_backend)`, where `make_backend` is an `async fn() -> Option<Backend>`
/// (`None`: the backend's prerequisite is missing and the tests return at once).
#[macro_export]
macro_rules! storage_test_suite {
    ($make_backend:path) => {
        $crate::storage_test_suite!(@declare $make_backend; acknowledged_rows_are_visible_before_and_after_flush_and_restart,
            time_range_and_day_partitions,
            small_files_are_compacted_without_losing_rows,
            a_quiet_tick_merges_every_day_into_one_file,
            type_drift_keeps_every_value_with_its_own_type,
            deleting_a_collection_survives_restart_and_flush,
            uniqueness_tokens_deduplicate_across_flush_and_restart,
            flushed_rows_are_ordered_by_the_clustering_properties_then_time,
            a_data_directory_is_opened_by_one_engine_at_a_time,
            written_files_are_read_from_the_file_cache);
    };
    (@declare $make_backend:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                let Some(backend) = $make_backend().await else {
                    return;
                };
                $crate::testsuite::$test(&backend).await;
                if let Some(after) = &backend.after {
                    after();
                }
            }
        )*
    };
}
