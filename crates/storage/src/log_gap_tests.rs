//! A node that cannot read the shared log right after committing one of its own groups: the group is
//! refused to its writer (it may still be stored), the node says it is behind the log — so reads are
//! refused, never answered short — and as soon as the log can be read again it applies everything,
//! its own refused group included, exactly once, and answers reads again.

use std::sync::Arc;

use serde_json::json;

use crate::memory_log::MemoryLog;
use crate::shared::SharedLogHandle;
use crate::testsuite::{count, id, prepared};
use crate::{Storage, StorageConfig};

async fn open_node(directory: &std::path::Path, log: &MemoryLog) -> Storage {
    let config = StorageConfig {
        flush_interval: std::time::Duration::from_secs(3600),
        shared_log: Some(SharedLogHandle(Arc::new(log.clone()))),
        ..StorageConfig::new(directory)
    };
    Storage::open(config).await.unwrap()
}

fn events(range: std::ops::Range<u64>) -> Vec<keyhole_model::PreparedEvent> {
    range.map(|n| prepared(json!({"n": n}))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_cannot_read_the_log_refuses_reads_until_it_has_applied_everything_once() {
    let first_log = MemoryLog::new();
    let second_log = first_log.for_node("node-1");
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = open_node(first_dir.path(), &first_log).await;
    let second = open_node(second_dir.path(), &second_log).await;

    first_log.fail_reads(true);
    second.append(id("orders"), events(0..3)).await.unwrap();
    // Committed to the log, but what came before it cannot be read: refused here, and the node is behind.
    let refused = first.append(id("orders"), events(3..5)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(first.is_behind_log());
    assert!(!second.is_behind_log());

    first_log.fail_reads(false);
    first.append(id("orders"), events(5..6)).await.unwrap();
    assert!(!first.is_behind_log(), "caught up with its next group");
    // The other node's 3, this node's refused 2 (they were in the log) and its last 1: each once.
    assert_eq!(count(&first, "orders").await, 6);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count(&second, "orders").await < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other node never saw them"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count(&second, "orders").await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_uniqueness_token_written_through_two_nodes_is_kept_once_on_both() {
    let first_log = MemoryLog::new();
    let second_log = first_log.for_node("node-1");
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = open_node(first_dir.path(), &first_log).await;
    let second = open_node(second_dir.path(), &second_log).await;
    let with_token = |n: u64| prepared(json!({"n": n, "keen": {"uniqueness_token": "order-17"}}));
    // The second node cannot see the first's event when it takes its own: both are committed to the log.
    second_log.fail_reads(true);
    first
        .append(id("orders"), vec![with_token(1)])
        .await
        .unwrap();
    second_log.fail_reads(false);
    second
        .append(id("orders"), vec![with_token(2)])
        .await
        .unwrap();
    second.append(id("orders"), events(10..11)).await.unwrap();
    first.append(id("orders"), events(11..12)).await.unwrap();
    // Each node keeps the first in log order and drops the other, so both hold the same events.
    for node in [&first, &second] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while count(node, "orders").await < 3 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(count(node, "orders").await, 3);
    }
}
