//! Storage faults over the real binary: a data directory on a small filesystem the test mounts (a
//! tmpfs) fills up under writes. Writes are refused with `507 InsufficientStorageError` and
//! `Retry-After`, reads go on, writes resume by themselves once space is freed, and after a restart every
//! acknowledged event is there once. Where the machine does not allow mounting, the test says so.

use std::path::Path;

use serde_json::json;

use crate::support::{BinaryServer, assert_keen_error, client, send};

/// A tmpfs of `megabytes` on a fresh directory, unmounted when dropped.
struct SmallDisk {
    directory: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: usize) -> Option<SmallDisk> {
        let directory = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(directory.path())
            .output()
            .ok()?;
        mounted.status.success().then_some(SmallDisk { directory })
    }

    fn fill(&self, filler: &Path) {
        use std::io::Write;
        let mut file = std::fs::File::create(filler).unwrap();
        for chunk_size in [1024 * 1024, 64 * 1024, 512] {
            let chunk = vec![0u8; chunk_size];
            while file
                .write_all(&chunk)
                .and_then(|()| file.sync_all())
                .is_ok()
            {}
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.directory.path())
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_answers_507_keeps_reads_and_resumes_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount(48) else {
        eprintln!(
            "skipped: this machine does not allow mounting a tmpfs, so a full disk cannot be made"
        );
        return;
    };
    let data_dir = disk.directory.path().join("data");
    let mut server = BinaryServer::start(&data_dir, &[], &[]);
    let project = server.printed_project();
    let events_url = format!(
        "{}/3.0/projects/{}/events/visits",
        server.base_url, project.id
    );
    let count_url = format!(
        "{}/3.0/projects/{}/queries/count?event_collection=visits",
        server.base_url, project.id
    );
    let post = |n: usize| {
        send(
            client()
                .post(&events_url)
                .header("Authorization", &project.write)
                .json(&json!({"n": n, "pad": "x".repeat(200)})),
        )
    };
    let count = || {
        send(
            client()
                .get(&count_url)
                .header("Authorization", &project.read),
        )
    };
    let mut acknowledged = 0;
    for n in 0..20 {
        assert_eq!(post(n).await.0, 201);
        acknowledged += 1;
    }
    assert_eq!(count().await.1["result"], acknowledged);

    let filler = disk.directory.path().join("filler");
    disk.fill(&filler);
    let refused = loop {
        let response = client()
            .post(&events_url)
            .header("Authorization", &project.write)
            .json(&json!({"n": acknowledged, "pad": "x".repeat(200)}))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() != 201 {
            break response;
        }
        acknowledged += 1;
        assert!(acknowledged < 5_000, "the disk never filled");
    };
    assert_eq!(refused.status().as_u16(), 507);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_keen_error(&(507, body), 507, "InsufficientStorageError");
    assert_eq!(count().await.1["result"], acknowledged, "reads go on");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        post(acknowledged).await.0,
        201,
        "writes resume without a restart"
    );
    acknowledged += 1;
    assert_eq!(count().await.1["result"], acknowledged);

    assert!(server.terminate().success());
    let server = BinaryServer::start(&data_dir, &[], &[]);
    let count_url = format!(
        "{}/3.0/projects/{}/queries/count?event_collection=visits",
        server.base_url, project.id
    );
    let after = send(
        client()
            .get(&count_url)
            .header("Authorization", &project.read),
    )
    .await;
    assert_eq!(
        after.1["result"], acknowledged,
        "every acknowledged event, once"
    );
}
