//! One memory budget in bytes, seen from outside: write requests wait for their share and are then
//! refused with 503, caches stay within theirs however large their entries, `/metrics` shows every
//! consumer; and what a damaged or busy data directory does to a start or an admin command.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use keyhole_model::memory_budget::{MIN_MEMORY_LIMIT_BYTES, MemoryBudget, MemoryConsumer};
use serde_json::{Value, json};

use crate::support::{BinaryServer, InProcessServer, TestLimits, client, keyhole_binary, send};

async fn small_server() -> InProcessServer {
    InProcessServer::start_with(TestLimits {
        memory_limit: Some(MIN_MEMORY_LIMIT_BYTES),
        ..Default::default()
    })
    .await
}

async fn metrics_text(server: &InProcessServer) -> String {
    client()
        .get(server.url("/metrics"))
        .header("Authorization", &server.org_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the metric line starting with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_waits_for_its_memory_share_then_is_refused_with_503() {
    let server = small_server().await;
    // A body announced at 5 MB is charged its whole share of the 128 MiB budget; it is held while the
    // body trickles in.
    let address = server.base_url.trim_start_matches("http://").to_string();
    let path = format!("/3.0/projects/{}/events/slow", server.project.id);
    let write_key = server.project.write.clone();
    let holder = std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {write_key}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n[{{\"a\": 1}}"
        );
        socket.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        drop(socket);
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let request = client()
        .post(server.project_url("/events/hits"))
        .header("Authorization", &server.project.write)
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(request.status(), 503);
    assert_eq!(request.headers()["retry-after"], "1");
    let body: Value = request.json().await.unwrap();
    assert_eq!(body["error_code"], "ServiceUnavailableError");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(7),
        "waited {waited:?} before refusing"
    );
    let text = metrics_text(&server).await;
    assert_eq!(
        metric(
            &text,
            "keyhole_memory_refusals_total{consumer=\"request_bodies\"}"
        ),
        1.0
    );
    let share = MemoryBudget::new(MIN_MEMORY_LIMIT_BYTES).share(MemoryConsumer::RequestBodies);
    assert_eq!(
        metric(
            &text,
            "keyhole_memory_used_bytes{consumer=\"request_bodies\"}"
        ),
        share as f64
    );
    assert_eq!(
        metric(&text, "keyhole_memory_limit_bytes"),
        MIN_MEMORY_LIMIT_BYTES as f64
    );

    // Once the held request is gone, its share is given back and writes are taken again.
    holder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = send(
            client()
                .post(server.project_url("/events/hits"))
                .header("Authorization", &server.project.write)
                .json(&json!({"n": 2})),
        )
        .await;
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "writes never resumed: {status}");
    }
    assert_eq!(
        server.scan("hits").await.num_rows(),
        1,
        "the refused write stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grant_cache_stays_within_its_share_of_the_budget() {
    let server = small_server().await;
    server
        .write_events(
            "visits",
            vec![json!({"tenant": "a"}), json!({"tenant": "b"})],
        )
        .await;
    let key = server
        .create_access_key(json!({"name": "tenant a", "permitted": ["queries"],
            "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "a"}]}}}))
        .await;
    // Tokens with 200 filters each: together many times the grant cache's share (2.6 MB here).
    let share = MemoryBudget::new(MIN_MEMORY_LIMIT_BYTES).share(MemoryConsumer::GrantCache);
    for token in 0..150 {
        let filters: Vec<Value> = (0..200)
            .map(|filter| json!({"property_name": "p", "operator": "ne", "property_value": filter}))
            .collect();
        let claims = json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": format!("t{token}"), "filters": filters});
        let credential = keyhole_model::embed_token::mint(&key, &claims);
        let response = client()
            .get(server.project_url("/queries/count?event_collection=visits"))
            .header("Authorization", &credential)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{} bytes: {text}", credential.len());
        assert_eq!((status, &answer["result"]), (200, &json!(1)));
    }
    let text = metrics_text(&server).await;
    let used = metric(&text, "keyhole_memory_used_bytes{consumer=\"grant_cache\"}");
    assert!(
        used > 0.0 && used <= share as f64,
        "grant cache {used} of {share}"
    );
    assert_eq!(
        metric(
            &text,
            "keyhole_memory_share_bytes{consumer=\"grant_cache\"}"
        ),
        share as f64
    );
    for consumer in MemoryConsumer::ALL {
        assert!(
            text.contains(&format!(
                "keyhole_memory_used_bytes{{consumer=\"{}\"}}",
                consumer.name()
            )),
            "{} is shown",
            consumer.name()
        );
    }
}

/// Stops a server cleanly once its signal handler is surely installed (it answered a request).
fn stop_cleanly(mut server: BinaryServer) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let health = runtime.block_on(send(client().get(format!("{}/health", server.base_url))));
    assert_eq!(health.0, 200);
    assert_eq!(server.terminate().code(), Some(0));
}

fn run_to_exit(args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let output = std::process::Command::new(keyhole_binary())
        .args(args)
        .env_remove("KEYHOLE_ORG_KEY")
        .env_remove("KEYHOLE_DATA_DIR")
        .env_remove("KEYHOLE_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text, started.elapsed())
}

#[test]
fn a_damaged_metadata_file_fails_the_start_at_once_naming_the_file() {
    let data_dir = tempfile::tempdir().unwrap();
    stop_cleanly(BinaryServer::start(data_dir.path(), &[], &[]));
    let meta = data_dir.path().join("meta.sqlite");
    // Without its write-ahead log, which could otherwise restore the damaged pages.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data_dir.path().join(format!("meta.sqlite{suffix}")));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&meta)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    // The header and the first pages overwritten: the size stays, SQLite no longer reads it.
    for byte in bytes.iter_mut().take(8192) {
        *byte = 0xA5;
    }
    std::fs::write(&meta, &bytes).unwrap();
    let dir = data_dir.path().to_str().unwrap();
    let (started, output, took) =
        run_to_exit(&["serve", "--listen", "127.0.0.1:0", "--data-dir", dir]);
    assert!(!started, "{output}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {output}");
    assert!(output.contains("meta.sqlite"), "{output}");
    assert!(output.contains("keyhole restore"), "{output}");
}

#[test]
fn admin_commands_that_write_refuse_while_a_server_holds_the_directory() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let (created, output, took) = run_to_exit(&["project", "create", "other", "--data-dir", dir]);
    assert!(!created, "{output}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        output.contains("is in use by another keyhole process")
            && output.contains("POST /3.0/organizations/"),
        "{output}"
    );
    let (rotated, output, _) = run_to_exit(&["organization", "rotate-key", "--data-dir", dir]);
    assert!(
        !rotated && output.contains("stop the server first"),
        "{output}"
    );
    // Reading is fine while it runs.
    let (listed, output, _) = run_to_exit(&["project", "list", "--data-dir", dir]);
    assert!(listed && output.contains("default"), "{output}");

    stop_cleanly(server);
    let (created, output, _) = run_to_exit(&["project", "create", "other", "--data-dir", dir]);
    assert!(created, "{output}");
}

#[test]
fn memory_limit_settings_are_parsed_and_refused_when_unreadable() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap();
    let (started, output, _) = run_to_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--memory-limit",
        "lots",
    ]);
    assert!(!started && output.contains("--memory-limit"), "{output}");
    let server = BinaryServer::start(data_dir.path(), &["--memory-limit", "1GiB"], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let org_key = server.printed_organization_key();
    let text = runtime.block_on(async {
        client()
            .get(format!("{}/metrics", server.base_url))
            .header("Authorization", &org_key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert_eq!(
        metric(&text, "keyhole_memory_limit_bytes"),
        (1u64 << 30) as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_over_its_memory_spills_to_disk_and_answers() {
    let server = InProcessServer::start_with(TestLimits {
        queries: keyhole_query::QueryLimits {
            memory_bytes: 8 * 1024 * 1024,
            // What is tested is the spill, not the time limit: on a CI machine busy with the browser and
            // cluster tests the spilling query has taken over the default 60 s.
            timeout: std::time::Duration::from_secs(600),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let events: Vec<Value> = (0..150_000)
        .map(|i| json!({"user": format!("user-{i:06}-{}", "x".repeat(40))}))
        .collect();
    for chunk in events.chunks(5_000) {
        server.write_events("hits", chunk.to_vec()).await;
    }
    let answer = send(
        client()
            .post(server.project_url("/queries/count"))
            .header("Authorization", &server.project.read)
            .json(&json!({"event_collection": "hits", "group_by": "user"})),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let groups = answer.1["result"].as_array().unwrap();
    assert_eq!(groups.len(), 150_000);
    assert!(groups.iter().all(|group| group["result"] == 1));
    let text = metrics_text(&server).await;
    assert!(
        metric(&text, "keyhole_queries_total{outcome=\"memory_budget\"}") >= 1.0,
        "the first run was over its budget, the second spilled"
    );
}
