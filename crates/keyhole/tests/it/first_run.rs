//! The first run, as a new user meets it: a first start that cannot take its port creates nothing and
//! prints no keys (the next start prints them); the start says where the console is; a demo runs beside a
//! server on a free port and keeps its data where `--data-dir` says; logs written to a file carry no colour
//! codes.

use std::process::Command;

use serde_json::json;

use crate::support::{BinaryServer, client, keyhole_binary, send};

#[test]
fn a_first_start_that_cannot_listen_creates_nothing_and_the_next_prints_the_keys() {
    let data_dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let refused = Command::new(keyhole_binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env_remove("KEYHOLE_ORG_KEY")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!stdout.contains("key"), "no key may be printed: {stdout}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    drop(taken);

    // The next start is the real first one: it prints the keys, then where the console is.
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let organization_key = server.printed_organization_key();
    let project = server.printed_project();
    assert_eq!(organization_key.len(), 64);
    let console = format!("console: {}/console/", server.base_url);
    assert!(
        server.stdout_lines.contains(&console),
        "{:?}",
        server.stdout_lines
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let page = client()
            .get(format!("{}/console/", server.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let root = send(client().get(&server.base_url)).await;
        assert_eq!(root.1[0]["console_url"], "/console/");
        let own = send(
            client()
                .get(format!("{}/3.0/projects/{}", server.base_url, project.id))
                .header("Authorization", &project.master),
        )
        .await;
        assert_eq!(own.0, 200, "the printed master key works: {}", own.1);
    });
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let data_dir = tempfile::tempdir().unwrap();
    let (mut server, log_path) =
        BinaryServer::start_logging_to_file(data_dir.path(), &[("RUST_LOG", "info")]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let answer = send(client().get(format!("{}/3.0/projects/x/events", server.base_url))).await;
        assert_eq!(answer.0, 401);
    });
    assert!(server.terminate().success());
    let written = std::fs::read_to_string(&log_path).unwrap();
    assert!(written.contains("serving"), "{written}");
    assert!(
        !written.contains('\u{1b}'),
        "escape codes in a log file: {written}"
    );
}

#[test]
fn the_demo_runs_beside_a_server_on_a_free_port_and_keeps_its_data_in_data_dir() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(server_dir.path(), &[], &[]);
    let demo_parent = tempfile::tempdir().unwrap();
    let demo_dir = demo_parent.path().join("demo-data");
    let args: Vec<String> = ["demo", "--events", "120", "--data-dir"]
        .iter()
        .map(ToString::to_string)
        .chain([demo_dir.display().to_string()])
        .collect();
    let mut demo = BinaryServer::start_raw(&args, &[]);
    assert_ne!(demo.base_url, server.base_url);
    let console_line = demo
        .stdout_lines
        .iter()
        .find(|line| line.starts_with("console:"))
        .cloned()
        .unwrap_or_default();
    assert!(
        console_line.contains(&format!("{}/console/", demo.base_url)),
        "{:?}",
        demo.stdout_lines
    );
    assert!(
        demo.stdout_lines
            .iter()
            .any(|line| line.contains(&demo_dir.display().to_string())),
        "the demo says where its data stays: {:?}",
        demo.stdout_lines
    );
    let master = console_line_key(&demo.stdout_lines);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let projects = send(
            client()
                .get(format!("{}/3.0/projects", demo.base_url))
                .header("Authorization", &master),
        )
        .await;
        assert_eq!(projects.0, 200, "{}", projects.1);
        let project_id = projects.1[0]["id"].as_str().unwrap().to_string();
        let count = send(
            client()
                .post(format!(
                    "{}/3.0/projects/{project_id}/queries/count",
                    demo.base_url
                ))
                .header("Authorization", &master)
                .json(&json!({"event_collection": "orders"})),
        )
        .await;
        assert_eq!(count, (200, json!({"result": 120})));
    });
    assert!(demo.terminate().success());
    assert!(
        std::fs::read_dir(&demo_dir).unwrap().next().is_some(),
        "the demo's data stays in --data-dir"
    );
    // A directory that holds something is not the demo's to fill.
    let refused = Command::new(keyhole_binary())
        .args(["demo", "--events", "10", "--data-dir"])
        .arg(&demo_dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds files already"));
}

/// The demo project's master key, from the line after the console's URL.
fn console_line_key(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|line| {
            line.split("sign in with the demo project's master key: ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no master key printed: {lines:?}"))
        .trim()
        .to_string()
}
