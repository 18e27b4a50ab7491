//! Hostile connections and start-ups: slow or idle clients, unfinished bodies, more connections than
//! the cap, requests hyper cannot parse; and a second server started on a running server's data
//! directory, org keys that are short, changed or passed where every user can read them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{BinaryServer, InProcessServer, TestLimits, client, keyhole_binary, send};

fn short_limits() -> TestLimits {
    TestLimits {
        http: keyhole_server::HttpLimits {
            header_read_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            max_connections: 8,
            max_header_bytes: 16 * 1024,
        },
        ..Default::default()
    }
}

fn connect(server: &InProcessServer) -> TcpStream {
    let address = server.base_url.trim_start_matches("http://");
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the peer closes; returns what arrived and how long it took.
fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// The JSON body of a raw HTTP answer.
fn json_body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap_or(("", ""));
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_unfinished_clients_are_cut_off() {
    let server = InProcessServer::start_with(short_limits()).await;
    let (slow_headers, idle, unfinished) = tokio::task::spawn_blocking({
        let base = server.base_url.clone();
        let project = server.project.clone();
        move || {
            let connect = || {
                let stream = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream
            };
            let mut slow = connect();
            slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            let slow_headers = read_to_close(&mut slow);
            let mut idle = connect();
            let idle = read_to_close(&mut idle);
            let mut unfinished = connect();
            let head = format!(
                "POST /3.0/projects/{}/events/c HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n{{\"a\":",
                project.id, project.write
            );
            unfinished.write_all(head.as_bytes()).unwrap();
            let unfinished = read_to_close(&mut unfinished);
            (slow_headers, idle, unfinished)
        }
    })
    .await
    .unwrap();
    assert!(slow_headers.1 < Duration::from_secs(5), "{slow_headers:?}");
    assert!(idle.1 < Duration::from_secs(5), "{idle:?}");
    assert!(unfinished.1 < Duration::from_secs(5), "{unfinished:?}");
    assert!(unfinished.0.starts_with("HTTP/1.1 408"), "{unfinished:?}");
    assert_eq!(
        json_body(&unfinished.0)["error_code"],
        "RequestTimeoutError"
    );
    assert!(server.storage.collections(&server.project.id).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_get_a_keen_503() {
    let server = InProcessServer::start_with(short_limits()).await;
    let held: Vec<TcpStream> = (0..8).map(|_| connect(&server)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect(&server);
    let answer = tokio::task::spawn_blocking(move || read_to_close(&mut extra).0)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
    assert_eq!(json_body(&answer)["error_code"], "ServiceUnavailableError");
    drop(held);
    // Once they are gone (idle ones are closed by the header timeout anyway), the server serves again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = send(client().get(server.url("/health"))).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_below_the_router_get_keen_errors() {
    let server = InProcessServer::start_with(short_limits()).await;
    let exchange = |request: Vec<u8>| {
        let mut stream = connect(&server);
        tokio::task::spawn_blocking(move || {
            // The server may answer and close before an oversized request is fully sent (a broken pipe
            // here); what it answered is what is checked.
            let _ = stream.write_all(&request);
            read_to_close(&mut stream).0
        })
    };
    let bad_header = exchange(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".to_vec())
        .await
        .unwrap();
    assert!(bad_header.starts_with("HTTP/1.1 400"), "{bad_header}");
    assert_eq!(json_body(&bad_header)["error_code"], "InvalidRequestError");
    assert!(json_body(&bad_header)["message"].is_string());

    let long_url = format!(
        "GET /3.0/projects/x/queries/count?event_collection={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(1_000_000)
    );
    let too_long = exchange(long_url.into_bytes()).await.unwrap();
    assert!(
        too_long.starts_with("HTTP/1.1 431"),
        "{}",
        &too_long[..too_long.len().min(200)]
    );
    assert_eq!(json_body(&too_long)["error_code"], "InvalidRequestError");

    let raw_bytes =
        exchange(b"GET /3.0/projects/\xff\xfe/events HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
            .await
            .unwrap();
    assert!(raw_bytes.starts_with("HTTP/1.1 4"), "{raw_bytes}");
    assert!(
        json_body(&raw_bytes)["error_code"].is_string(),
        "{raw_bytes}"
    );

    // Percent-encoded bytes that are not UTF-8 reach the router; its rejection is Keen-style too.
    let url = server.project_url("/events/%FF%FE");
    let answer = send(
        client()
            .get(url)
            .header("Authorization", &server.project.master),
    )
    .await;
    assert!(answer.0 == 400 || answer.0 == 404, "{answer:?}");
    assert!(answer.1["error_code"].is_string(), "{answer:?}");
    assert!(answer.1["message"].is_string(), "{answer:?}");
    let (status, _) = send(client().get(server.url("/health"))).await;
    assert_eq!(status, 200);
}

fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(keyhole_binary())
        .args(args)
        .env_remove("KEYHOLE_ORG_KEY")
        .env_remove("KEYHOLE_ORG_KEY_FILE")
        .env_remove("KEYHOLE_DATA_DIR")
        .env_remove("KEYHOLE_CONFIG")
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn a_second_server_and_foreign_org_keys_change_nothing() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap();
    let org_key = "o".repeat(40);
    let mut first = BinaryServer::start(data_dir.path(), &[], &[("KEYHOLE_ORG_KEY", &org_key)]);
    let other_key = "z".repeat(40);
    let (succeeded, output) = run_to_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir,
            "--data-dir-lock-wait-secs",
            "1",
        ],
        &[("KEYHOLE_ORG_KEY", &other_key)],
    );
    assert!(!succeeded, "{output}");
    assert!(output.contains("data directory"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
    let organizations = format!("{}/3.0/organizations/default/projects", first.base_url);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status_with = |key: &str| {
        runtime
            .block_on(send(
                client().get(&organizations).header("Authorization", key),
            ))
            .0
    };
    assert_eq!(
        status_with(&org_key),
        200,
        "the running server's key still works"
    );
    assert_eq!(status_with(&other_key), 401);
    assert_eq!(first.terminate().code(), Some(0));

    // On a later start a different key is refused, not swapped in.
    let (succeeded, output) = run_to_exit(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", dir],
        &[("KEYHOLE_ORG_KEY", &other_key)],
    );
    assert!(!succeeded && output.contains("rotate-key"), "{output}");
    // A trivially short key is refused outright.
    let (succeeded, output) = run_to_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir,
            "--org-key",
            "a",
        ],
        &[],
    );
    assert!(!succeeded && output.contains("at least 32"), "{output}");
    // Rotation is explicit, from a file.
    let key_file = data_dir.path().join("new-org-key");
    std::fs::write(&key_file, format!("{other_key}\n")).unwrap();
    let (succeeded, output) = run_to_exit(
        &[
            "organization",
            "rotate-key",
            "--data-dir",
            dir,
            "--org-key-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(succeeded, "{output}");
    // A key on the command line works, with a warning that every local user can read it.
    let mut stderr_path = data_dir.path().to_path_buf();
    stderr_path.push("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let server = BinaryServer::start_with_stderr(
        &[
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.into(),
            "--org-key".into(),
            other_key.clone(),
        ],
        &[],
        Stdio::from(stderr),
    );
    let organizations = format!("{}/3.0/organizations/default/projects", server.base_url);
    let status = runtime
        .block_on(send(
            client()
                .get(&organizations)
                .header("Authorization", &other_key),
        ))
        .0;
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(log.contains("command line"), "{log}");
}
