//! `keyhole tenant …` from the binary: through a running server (`--server`), and on the data directory
//! when none runs — the tenant's whole cycle, ending with an erase that leaves no Parquet file holding
//! the tenant's id.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::stored_files::parquet_files_containing;
use crate::support::{BinaryServer, client, keyhole_binary, send};

/// Runs `keyhole tenant <args>` with the admin key in the environment; its exit status and output.
fn tenant(data_dir: &Path, admin_key: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(keyhole_binary())
        .arg("tenant")
        .args(args)
        .env_remove("KEYHOLE_SERVER_URL")
        .env_remove("KEYHOLE_CONFIG")
        .env("KEYHOLE_DATA_DIR", data_dir)
        .env("KEYHOLE_ADMIN_KEY", admin_key)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn json_of(run: &(bool, String, String)) -> Value {
    assert!(run.0, "keyhole tenant failed: {}{}", run.1, run.2);
    serde_json::from_str(&run.1).unwrap_or_else(|_| panic!("not JSON: {}", run.1))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_command_runs_the_whole_cycle_through_a_server_and_on_the_data_directory() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let mut server = BinaryServer::start(&data_dir, &[], &[]);
    let org_key = server.printed_organization_key();
    let project = server.printed_project();
    let through_server = |args: &[&str]| {
        let mut all = vec![
            "--server",
            server.base_url.as_str(),
            "--project",
            &project.id,
        ];
        all.extend_from_slice(args);
        tenant(&data_dir, &org_key, &all)
    };
    assert_eq!(
        json_of(&through_server(&["tenancy", "customer.id"])),
        json!({"property": "customer.id"})
    );
    let created = json_of(&through_server(&["create", "acme", "--name", "Acme Inc."]));
    assert_eq!(created["name"], "Acme Inc.");
    let write_key = created["write_key"].as_str().unwrap().to_string();
    let read_key = created["read_key"].as_str().unwrap().to_string();
    json_of(&through_server(&["create", "globex"]));
    let events_url = format!(
        "{}/3.0/projects/{}/events/orders",
        server.base_url, project.id
    );
    for _ in 0..3 {
        let written = send(
            client()
                .post(&events_url)
                .header("Authorization", &write_key)
                .json(&json!({"amount": 1})),
        )
        .await;
        assert_eq!(written.0, 201, "{}", written.1);
    }
    let listed = json_of(&through_server(&["list", "--limit", "1"]));
    assert_eq!(listed["tenants"][0]["id"], "acme");
    assert!(
        listed["next_page_url"]
            .as_str()
            .unwrap()
            .contains("after=acme")
    );
    let shown = json_of(&through_server(&["show", "acme"]));
    assert_eq!(shown["usage"]["events_stored"], 3);
    assert_eq!(shown["usage"]["events_written"], 3);

    let count_url = format!(
        "{}/3.0/projects/{}/queries/count",
        server.base_url, project.id
    );
    let count = |key: String| {
        let url = count_url.clone();
        async move {
            send(
                client()
                    .post(&url)
                    .header("Authorization", key)
                    .json(&json!({"event_collection": "orders"})),
            )
            .await
        }
    };
    assert_eq!(
        json_of(&through_server(&["suspend", "acme"]))["suspended"],
        true
    );
    assert_eq!(count(read_key.clone()).await.0, 403);
    assert_eq!(
        json_of(&through_server(&["resume", "acme"]))["suspended"],
        false
    );
    assert_eq!(count(read_key.clone()).await, (200, json!({"result": 3})));
    let rotated = json_of(&through_server(&[
        "rotate",
        "acme",
        "--grace-seconds",
        "600",
    ]));
    let new_read_key = rotated["read_key"].as_str().unwrap().to_string();
    assert_eq!(count(new_read_key).await, (200, json!({"result": 3})));
    // An error of the API is the command's failure, with the API's error code.
    let refused = through_server(&["create", "acme"]);
    assert!(!refused.0);
    assert!(refused.2.contains("409 ConflictError"), "{}", refused.2);

    // On the data directory: refused while the server runs, then done by the command itself.
    let on_data_dir = |args: &[&str]| {
        let mut all = vec!["--project", project.id.as_str()];
        all.extend_from_slice(args);
        tenant(&data_dir, &org_key, &all)
    };
    let locked = on_data_dir(&["show", "acme"]);
    assert!(!locked.0);
    assert!(locked.2.contains("--server"), "{}", locked.2);
    assert!(server.terminate().success());
    assert!(!parquet_files_containing(&data_dir.join("events"), "acme").is_empty());
    let receipt = json_of(&on_data_dir(&["delete", "acme", "--erase"]));
    assert_eq!(receipt["tenant"], "acme");
    assert_eq!(receipt["collections"], json!({"orders": 3}));
    assert_eq!(receipt["keys_revoked"].as_array().unwrap().len(), 4);
    assert_eq!(
        parquet_files_containing(&data_dir.join("events"), "acme"),
        Vec::<std::path::PathBuf>::new()
    );
    let listed = json_of(&on_data_dir(&["list"]));
    let ids: Vec<&str> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tenant| tenant["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["globex"]);
    // The project's master key works as well as the organization key.
    let with_master = tenant(
        &data_dir,
        &project.master,
        &["--project", &project.id, "show", "globex"],
    );
    assert_eq!(json_of(&with_master)["id"], "globex");
}
