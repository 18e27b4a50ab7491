//! The official SDKs write to Keyhole unchanged: Python `keen` 0.7.0 and npm `keen-tracking` 5.0.1 under
//! Node. `.ci/run` installs both; these tests fail (not skip) when they are missing.

use std::process::Command;

use crate::support::{BinaryServer, open_storage, repo_root, string_values};

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed (install the SDKs as .ci/run does):\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn stored(
    data_dir: &std::path::Path,
    project: &str,
    collection: &str,
    column: &str,
) -> Vec<String> {
    let storage = open_storage(data_dir).await;
    let id = keyhole_storage::CollectionId {
        project: project.into(),
        collection: collection.into(),
    };
    let mut values = string_values(
        &storage
            .scan(&id, keyhole_storage::TimeRange::ALL)
            .await
            .unwrap(),
        column,
    );
    values.sort();
    values
}

#[test]
fn python_keen_sdk_writes_unchanged() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/write_events.py"))
            .env("KEEN_BASE_URL", &server.base_url)
            .env("KEEN_PROJECT_ID", &project.id)
            .env("KEEN_WRITE_KEY", &project.write),
        "the Python keen SDK",
    );
    assert!(server.terminate().success());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sources = stored(data_dir.path(), &project.id, "sdk_python", "source#str").await;
        assert_eq!(
            sources,
            [
                "add_event",
                "add_event_timestamp",
                "add_events",
                "add_events",
                "client.add_event"
            ]
        );
        assert_eq!(
            stored(data_dir.path(), &project.id, "sdk_python", "user.id#str").await,
            ["u1"]
        );
        assert_eq!(
            stored(data_dir.path(), &project.id, "sdk python other", "keen.id")
                .await
                .len(),
            1
        );
        // Python sends a naive datetime: read as UTC, kept at millisecond precision.
        let storage = open_storage(data_dir.path()).await;
        let id = keyhole_storage::CollectionId {
            project: project.id.clone(),
            collection: "sdk_python".into(),
        };
        let range = keyhole_storage::TimeRange {
            start_millis: keyhole_model::timestamp::parse_timestamp("2024-01-02T03:04:05.678Z"),
            end_millis: keyhole_model::timestamp::parse_timestamp("2024-01-02T03:04:05.679Z"),
        };
        assert_eq!(storage.scan(&id, range).await.unwrap().num_rows(), 1);
    });
}

#[test]
fn python_keen_sdk_queries_unchanged() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/query_events.py"))
            .env("KEEN_BASE_URL", &server.base_url)
            .env("KEEN_PROJECT_ID", &project.id)
            .env("KEEN_WRITE_KEY", &project.write)
            .env("KEEN_READ_KEY", &project.read),
        "the Python keen SDK's queries",
    );
}

#[test]
fn python_keen_sdk_access_key_methods_unchanged() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/access_keys.py"))
            .env("KEEN_BASE_URL", &server.base_url)
            .env("KEEN_PROJECT_ID", &project.id)
            .env("KEEN_WRITE_KEY", &project.write)
            .env("KEEN_READ_KEY", &project.read)
            .env("KEEN_MASTER_KEY", &project.master),
        "the Python keen SDK's access-key methods",
    );
}

#[test]
fn the_python_tenant_walkthrough_of_the_docs_runs_as_written() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/tenant_walkthrough.py"))
            .env("KEEN_BASE_URL", &server.base_url)
            .env("KEEN_PROJECT_ID", &project.id)
            .env("KEEN_MASTER_KEY", &project.master),
        "the tenant walkthrough with the Python keen SDK",
    );
}

#[test]
fn python_keen_sdk_saved_query_methods_unchanged() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/saved_queries.py"))
            .env("KEEN_BASE_URL", &server.base_url)
            .env("KEEN_PROJECT_ID", &project.id)
            .env("KEEN_WRITE_KEY", &project.write)
            .env("KEEN_READ_KEY", &project.read)
            .env("KEEN_MASTER_KEY", &project.master),
        "the Python keen SDK's saved-query methods",
    );
}

#[test]
fn python_keen_sdk_dataset_and_delete_methods_unchanged() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/datasets_and_deletes.py"))
            .env("KEEN_BASE_URL", &server.base_url)
            .env("KEEN_PROJECT_ID", &project.id)
            .env("KEEN_WRITE_KEY", &project.write)
            .env("KEEN_READ_KEY", &project.read)
            .env("KEEN_MASTER_KEY", &project.master),
        "the Python keen SDK's cached-dataset and delete methods",
    );
}

#[test]
fn node_keen_tracking_sdk_writes_unchanged() {
    if !keyhole_test_env::node_packages() {
        return;
    }
    let node_dir = repo_root().join("sdk-tests/node");
    assert!(
        node_dir.join("node_modules/keen-tracking").exists(),
        "run `npm ci` in sdk-tests/node (as .ci/run does)"
    );
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    run(
        Command::new("node")
            .arg("write_events.js")
            .current_dir(&node_dir)
            .env("KEYHOLE_URL", &server.base_url)
            .env("KEYHOLE_PROJECT_ID", &project.id)
            .env("KEYHOLE_WRITE_KEY", &project.write),
        "keen-tracking under Node",
    );
    assert!(server.terminate().success());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sources = stored(data_dir.path(), &project.id, "sdk node", "source#str").await;
        assert_eq!(sources, ["recordEvent", "recordEvents", "recordEvents"]);
        assert_eq!(
            stored(data_dir.path(), &project.id, "sdk node", "user.id#str").await,
            ["u2"]
        );
        assert_eq!(
            stored(data_dir.path(), &project.id, "sdk_node_other", "keen.id")
                .await
                .len(),
            1
        );
    });
}
