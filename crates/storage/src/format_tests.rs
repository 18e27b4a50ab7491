//! Data directories written by every released format are read by this version. Each fixture was written
//! by the `keyhole` binary of its time with the same requests: three events flushed to Parquet (one per
//! day, with a uniqueness token each), then two more left in the WAL by a SIGKILL. `format-v0`: before
//! the manifest and WAL segments carried a version; `format-v1`: manifest `version: 1`, segments headed by
//! `KHWAL\0` + format 1; `format-v2`: segments of format 2, whose WAL also holds a sixth event, the delete
//! of its property `note` and the delete of the event itself (so it reads the same five events). A new
//! format adds a fixture here; none is ever removed.

use std::path::Path;

use arrow::array::{Array, AsArray};
use keyhole_model::{EventContext, prepare_event};
use serde_json::json;

use super::*;

const FIXTURES: [(&str, &str); 3] = [
    ("format-v0", "6361c8d2e4140eecfa4e74b3"),
    ("format-v1", "c1860b5bb69391347261f0b6"),
    ("format-v2", "2decfb11288d68ec4a981f53"),
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixture(name: &str) -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    copy_tree(&source, directory.path());
    directory
}

#[tokio::test]
async fn every_released_format_is_read_unchanged() {
    for (name, project) in FIXTURES {
        read_fixture(name, project).await;
    }
}

async fn read_fixture(name: &str, project: &str) {
    let directory = fixture(name);
    let storage = Storage::open(StorageConfig::new(directory.path()))
        .await
        .unwrap();
    let purchases = CollectionId {
        project: project.into(),
        collection: "purchases".into(),
    };
    let scan = storage.scan(&purchases, TimeRange::ALL).await.unwrap();
    assert_eq!(scan.num_rows(), 5, "{name}");
    let mut items: Vec<String> = scan
        .batches
        .iter()
        .flat_map(|batch| {
            let column = batch
                .column_by_name("item#str")
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..column.len()).map(move |row| column.value(row).to_string())
        })
        .collect();
    items.sort();
    assert_eq!(
        items,
        ["book 1", "book 2", "book 3", "pen 4", "pen 5"],
        "{name}"
    );
    // `price` drifted from number to string: both kinds kept, the latest one reported.
    let schema = storage.collection_schema(&purchases).unwrap();
    let price = &schema.properties["price"];
    assert_eq!(price.kinds.len(), 2);
    assert_eq!(price.latest, keyhole_model::ValueKind::Str);
    assert!(schema.column_names().contains(&"tags#list_str".to_string()));
    assert!(!schema.properties.contains_key("note"), "{name}");
    // The uniqueness tokens of the flushed events still deduplicate.
    let context = EventContext {
        received_at: chrono::Utc::now(),
        client_ip: None,
        user_agent: None,
        uniqueness_scope: None,
        autofill: None,
    };
    let again = prepare_event(
        json!({"item": "book 1", "keen": {"uniqueness_token": "tok-1"}}),
        &context,
    )
    .unwrap();
    let outcomes = storage
        .append(purchases.clone(), vec![again])
        .await
        .unwrap();
    assert_eq!(outcomes, [WriteOutcome::Duplicate], "{name}");
    storage.close().await.unwrap();
    let storage = Storage::open(StorageConfig::new(directory.path()))
        .await
        .unwrap();
    assert_eq!(
        storage
            .scan(&purchases, TimeRange::ALL)
            .await
            .unwrap()
            .num_rows(),
        5
    );
}
