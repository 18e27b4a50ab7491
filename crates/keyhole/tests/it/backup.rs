//! `keyhole backup` of a live data directory and `keyhole restore` into a new one, over the real binary:
//! the restored server answers every query as the original did when the copy was taken, and a copy taken
//! while writers keep writing opens and holds a consistent prefix of what was acknowledged.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{BinaryServer, ProjectKeys, client, keyhole_binary, send};

fn keyhole(args: &[&str], data_dir: &Path) {
    let output = Command::new(keyhole_binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "keyhole {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn write(base_url: &str, project: &ProjectKeys, from: usize, count: usize) {
    let events: Vec<Value> = (from..from + count)
        .map(|n| json!({"n": n, "tenant": format!("t{}", n % 3)}))
        .collect();
    let answer = send(
        client()
            .post(format!("{base_url}/3.0/projects/{}/events", project.id))
            .header("Authorization", &project.write)
            .json(&json!({"orders": events})),
    )
    .await;
    assert_eq!(answer.0, 200);
}

/// Answers a dashboard would ask for.
async fn answers(base_url: &str, project: &ProjectKeys) -> Vec<Value> {
    let mut answers = Vec::new();
    for query in [
        "count?event_collection=orders",
        "sum?event_collection=orders&target_property=n",
        "count?event_collection=orders&group_by=tenant",
        "maximum?event_collection=orders&target_property=n",
    ] {
        let answer = send(
            client()
                .get(format!(
                    "{base_url}/3.0/projects/{}/queries/{query}",
                    project.id
                ))
                .header("Authorization", &project.read),
        )
        .await;
        assert_eq!(answer.0, 200, "{query}: {}", answer.1);
        answers.push(answer.1["result"].clone());
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_copy_of_a_live_server_answers_as_it_did() {
    let work = tempfile::tempdir().unwrap();
    let (live_dir, copy, restored_dir) = (
        work.path().join("live"),
        work.path().join("copy"),
        work.path().join("restored"),
    );
    let live = BinaryServer::start(&live_dir, &["--flush-interval-secs", "1"], &[]);
    let project = live.printed_project();
    write(&live.base_url, &project, 0, 300).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    write(&live.base_url, &project, 300, 50).await;
    let at_backup = answers(&live.base_url, &project).await;
    assert_eq!(at_backup[0], 350);

    keyhole(&["backup", "--to", copy.to_str().unwrap()], &live_dir);
    write(&live.base_url, &project, 350, 20).await;
    assert_eq!(answers(&live.base_url, &project).await[0], 370);

    keyhole(
        &["restore", "--from", copy.to_str().unwrap()],
        &restored_dir,
    );
    let restored = BinaryServer::start(&restored_dir, &[], &[]);
    assert_eq!(answers(&restored.base_url, &project).await, at_backup);
    drop(restored);

    // Into a directory that already holds data: refused.
    let refused = Command::new(keyhole_binary())
        .args(["restore", "--from", copy.to_str().unwrap(), "--data-dir"])
        .arg(&restored_dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_taken_under_writes_holds_a_consistent_prefix() {
    let work = tempfile::tempdir().unwrap();
    let (live_dir, copy, restored_dir) = (
        work.path().join("live"),
        work.path().join("copy"),
        work.path().join("restored"),
    );
    let live = BinaryServer::start(&live_dir, &["--flush-interval-secs", "1"], &[]);
    let project = live.printed_project();
    let (base_url, writer_project) = (live.base_url.clone(), project.clone());
    let writer = tokio::spawn(async move {
        let mut written = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(4) {
            write(&base_url, &writer_project, written, 100).await;
            written += 100;
        }
        written
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    keyhole(&["backup", "--to", copy.to_str().unwrap()], &live_dir);
    let written = writer.await.unwrap();

    keyhole(
        &["restore", "--from", copy.to_str().unwrap()],
        &restored_dir,
    );
    let restored = BinaryServer::start(&restored_dir, &[], &[]);
    let restored_answers = answers(&restored.base_url, &project).await;
    let count = restored_answers[0].as_u64().unwrap() as usize;
    assert!(count > 0 && count <= written, "{count} of {written}");
    assert_eq!(count % 100, 0, "whole batches only: {count}");
    // A prefix: events 0..count, nothing missing in between.
    let expected_sum: usize = (0..count).sum();
    assert_eq!(restored_answers[1], expected_sum);
    assert_eq!(restored_answers[3], count - 1);
}
