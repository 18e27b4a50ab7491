//! Durability over the real binary: writers post while a deleter keeps deleting one writer's events and
//! the server is SIGKILLed and restarted several times; afterwards every acknowledged event of the other
//! writers is present exactly once, and no event a delete acknowledged as gone has come back. And SIGTERM
//! shuts down cleanly, finishing in-flight writes and flushing everything to Parquet.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{BinaryServer, client, open_storage, string_values};

const WRITERS: usize = 6;
const CRASHES: usize = 5;
/// The writer whose events the deleter deletes.
const DELETED_WRITER: usize = 0;

/// Orders acknowledgements: an event acknowledged with a number below the one a delete read before it
/// was sent was acknowledged before that delete began.
static ACK_ORDER: AtomicU64 = AtomicU64::new(0);

/// A small deterministic pseudo-random sequence (the test must not depend on timing luck to pass, only
/// to vary where the kills land).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Posts until the server stops answering; records the ids of events whose write was acknowledged.
async fn write_until_refused(
    base_url: String,
    project: String,
    key: String,
    writer: usize,
    round: usize,
    acknowledged: Arc<Mutex<Vec<(String, u64)>>>,
) {
    let http = client();
    for request in 0.. {
        let ids: Vec<String> = (0..if request % 3 == 0 { 1 } else { 40 })
            .map(|i| format!("r{round}-w{writer}-q{request}-e{i}"))
            .collect();
        let result = if ids.len() == 1 {
            let body = json!({"event_id": ids[0], "writer": writer});
            http.post(format!("{base_url}/3.0/projects/{project}/events/crashy"))
                .header("Authorization", &key)
                .json(&body)
                .send()
                .await
        } else {
            let events: Vec<Value> = ids
                .iter()
                .map(|id| json!({"event_id": id, "writer": writer, "pad": "x".repeat(120)}))
                .collect();
            http.post(format!("{base_url}/3.0/projects/{project}/events"))
                .header("Authorization", &key)
                .json(&json!({"crashy": events}))
                .send()
                .await
        };
        let Ok(response) = result else { return };
        let status = response.status().as_u16();
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let accepted = match ids.len() {
            1 => status == 201 && body == json!({"created": true}),
            _ => {
                status == 200
                    && body["crashy"]
                        .as_array()
                        .is_some_and(|results| results.iter().all(|r| r["success"] == true))
            }
        };
        assert!(
            accepted,
            "a live server refused a valid write: {status} {body}"
        );
        let order = ACK_ORDER.fetch_add(1, Ordering::SeqCst);
        acknowledged
            .lock()
            .unwrap()
            .extend(ids.into_iter().map(|id| (id, order)));
    }
}

/// Deletes `DELETED_WRITER`'s events until the server stops answering; returns the highest
/// acknowledgement number read before a delete that was then acknowledged.
async fn delete_until_refused(base_url: String, project: String, key: String) -> u64 {
    let http = client();
    let filters =
        json!([{"property_name": "writer", "operator": "eq", "property_value": DELETED_WRITER}]);
    let mut covered = 0;
    loop {
        let before = ACK_ORDER.load(Ordering::SeqCst);
        let result = http
            .delete(format!("{base_url}/3.0/projects/{project}/events/crashy"))
            .query(&[("filters", filters.to_string())])
            .header("Authorization", &key)
            .send()
            .await;
        let Ok(response) = result else {
            return covered;
        };
        match response.status().as_u16() {
            204 => covered = before,
            // The collection does not exist yet.
            404 => {}
            status => panic!("a live server refused a valid delete: {status}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `count` writers against `server`, all recording into `acknowledged`.
fn spawn_writers(
    runtime: &tokio::runtime::Runtime,
    server: &BinaryServer,
    keys: &crate::support::ProjectKeys,
    count: usize,
    round: usize,
    acknowledged: &Arc<Mutex<Vec<(String, u64)>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|writer| {
            runtime.spawn(write_until_refused(
                server.base_url.clone(),
                keys.id.clone(),
                keys.write.clone(),
                writer,
                round,
                acknowledged.clone(),
            ))
        })
        .collect()
}

#[test]
fn sigkill_loses_no_acknowledged_event_and_doubles_none() {
    let data_dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut project = None;
    let mut random_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut deleted_before = 0u64;
    // Small flush thresholds so kills also land during flushes and compactions.
    let args = ["--flush-rows", "700", "--flush-interval-secs", "1"];
    for round in 0..CRASHES {
        let mut server = BinaryServer::start(data_dir.path(), &args, &[]);
        let keys = project
            .get_or_insert_with(|| server.printed_project())
            .clone();
        let writers = spawn_writers(&runtime, &server, &keys, WRITERS, round, &acknowledged);
        let deleter = runtime.spawn(delete_until_refused(
            server.base_url.clone(),
            keys.id.clone(),
            keys.master.clone(),
        ));
        let alive_for = Duration::from_millis(300 + next_random(&mut random_state) % 900);
        std::thread::sleep(alive_for);
        server.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        for writer in writers {
            runtime.block_on(async {
                tokio::time::timeout(deadline - Instant::now(), writer)
                    .await
                    .unwrap()
                    .unwrap();
            });
        }
        let covered = runtime.block_on(async {
            tokio::time::timeout(deadline - Instant::now(), deleter)
                .await
                .unwrap()
                .unwrap()
        });
        deleted_before = deleted_before.max(covered);
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 500,
        "the test should acknowledge many writes, got {}",
        acknowledged.len()
    );

    let project_id = project.unwrap().id;
    let stored_ids = runtime.block_on(async {
        let storage = open_storage(data_dir.path()).await;
        let id = keyhole_storage::CollectionId {
            project: project_id,
            collection: "crashy".into(),
        };
        let scan = storage
            .scan(&id, keyhole_storage::TimeRange::ALL)
            .await
            .unwrap();
        string_values(&scan, "event_id#str")
    });
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for id in &stored_ids {
        *occurrences.entry(id.as_str()).or_default() += 1;
    }
    let doubled: Vec<_> = occurrences
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    assert!(doubled.is_empty(), "events stored twice: {doubled:?}");
    let deleted_writer = format!("-w{DELETED_WRITER}-");
    let resurrected: Vec<_> = acknowledged
        .iter()
        .filter(|(id, order)| {
            id.contains(&deleted_writer)
                && *order < deleted_before
                && occurrences.contains_key(id.as_str())
        })
        .collect();
    assert!(deleted_before > 0, "the test should acknowledge deletes");
    assert!(
        resurrected.is_empty(),
        "{} deleted events came back, e.g. {:?}",
        resurrected.len(),
        &resurrected[..resurrected.len().min(5)]
    );
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|(id, _)| !id.contains(&deleted_writer))
        .filter(|(id, _)| !occurrences.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let kept: HashSet<&String> = acknowledged
        .iter()
        .filter(|(id, _)| !id.contains(&deleted_writer))
        .map(|(id, _)| id)
        .collect();
    eprintln!(
        "crash test: {} acknowledged, {} of them by writers not deleted, {} stored",
        acknowledged.len(),
        kept.len(),
        stored_ids.len(),
    );
}

#[test]
fn sigterm_finishes_in_flight_writes_and_flushes() {
    let data_dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut server = BinaryServer::start(data_dir.path(), &[], &[]);
    let keys = server.printed_project();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers = spawn_writers(&runtime, &server, &keys, 4, 0, &acknowledged);
    std::thread::sleep(Duration::from_millis(500));
    let status = server.terminate();
    assert!(status.success(), "keyhole exited with {status}");
    for writer in writers {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .unwrap()
                .unwrap();
        });
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());
    runtime.block_on(async {
        let storage = open_storage(data_dir.path()).await;
        let id = keyhole_storage::CollectionId {
            project: keys.id.clone(),
            collection: "crashy".into(),
        };
        let scan = storage
            .scan(&id, keyhole_storage::TimeRange::ALL)
            .await
            .unwrap();
        let stored: HashSet<String> = string_values(&scan, "event_id#str").into_iter().collect();
        assert!(acknowledged.iter().all(|(id, _)| stored.contains(id)));
        // Everything was flushed at shutdown: the files alone hold every row.
        let rows_in_files: usize = storage.data_files(&id).iter().map(|file| file.rows).sum();
        assert_eq!(rows_in_files, scan.num_rows());
    });
}
