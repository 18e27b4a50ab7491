//! The organization API, project endpoints, and the `keyhole project` commands.

use std::process::Command;

use serde_json::json;

use crate::support::{
    BinaryServer, InProcessServer, assert_keen_error, client, keyhole_binary, send,
};

#[tokio::test(flavor = "multi_thread")]
async fn organization_key_creates_lists_gets_and_updates_projects() {
    let server = InProcessServer::start().await;
    let org = |path: &str| server.url(&format!("/3.0/organizations/{path}"));
    let created = send(
        client()
            .post(org("default/projects"))
            .header("Authorization", &server.org_key)
            .json(&json!({"name": "Acme"})),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let project_id = created.1["id"].as_str().unwrap().to_string();
    let write_key = created.1["api_keys"]["write"].as_str().unwrap().to_string();
    assert_eq!(created.1["name"], "Acme");
    assert_eq!(created.1["api_keys"]["master"].as_str().unwrap().len(), 64);
    insta::assert_json_snapshot!("created_project", created.1, {
        ".id" => "[id]",
        ".created_at" => "[timestamp]",
        ".api_keys.master" => "[secret]",
        ".api_keys.write" => "[secret]",
        ".api_keys.read" => "[secret]",
        ".api_key_prefixes.master" => "[prefix]",
        ".api_key_prefixes.write" => "[prefix]",
        ".api_key_prefixes.read" => "[prefix]",
    });

    // The new keys work at once.
    let write = send(
        client()
            .post(server.url(&format!("/3.0/projects/{project_id}/events/c")))
            .header("Authorization", &write_key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(write.0, 201);

    let listing = send(
        client()
            .get(org(&format!("{}/projects", server.org_id)))
            .header("Authorization", &server.org_key),
    )
    .await;
    assert_eq!(listing.0, 200);
    let listed = listing.1.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|project| project.get("api_keys").is_none()),
        "secrets are never listed"
    );
    assert_eq!(listed[1]["api_key_prefixes"]["write"], &write_key[..8]);

    let one = send(
        client()
            .get(org(&format!("default/projects/{project_id}")))
            .header("Authorization", &server.org_key),
    )
    .await;
    assert_eq!(one.1["name"], "Acme");
    let renamed = send(
        client()
            .put(org(&format!("default/projects/{project_id}")))
            .header("Authorization", &server.org_key)
            .json(&json!({"name": "Acme Inc"})),
    )
    .await;
    assert_eq!(
        (renamed.0, renamed.1["name"].as_str()),
        (200, Some("Acme Inc"))
    );
    let renamed = send(
        client()
            .post(org(&format!("default/projects/{project_id}")))
            .header("Authorization", &server.org_key)
            .json(&json!({"name": "Acme 3"})),
    )
    .await;
    assert_eq!(renamed.1["name"], "Acme 3");

    assert_keen_error(
        &send(client().get(org("default/projects"))).await,
        401,
        "InvalidApiKeyError",
    );
    assert_keen_error(
        &send(
            client()
                .get(org("default/projects"))
                .header("Authorization", &server.project.master),
        )
        .await,
        401,
        "InvalidApiKeyError",
    );
    assert_keen_error(
        &send(
            client()
                .get(org("someone-else/projects"))
                .header("Authorization", &server.org_key),
        )
        .await,
        404,
        "ResourceNotFoundError",
    );
    assert_keen_error(
        &send(
            client()
                .get(org("default/projects/missing"))
                .header("Authorization", &server.org_key),
        )
        .await,
        404,
        "ResourceNotFoundError",
    );
    assert_keen_error(
        &send(
            client()
                .post(org("default/projects"))
                .header("Authorization", &server.org_key)
                .json(&json!({"name": ""})),
        )
        .await,
        400,
        "InvalidRequestError",
    );
    assert_keen_error(
        &send(
            client()
                .post(org("default/projects"))
                .header("Authorization", &server.org_key)
                .body("nope"),
        )
        .await,
        400,
        "InvalidRequestError",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn master_key_reads_its_project() {
    let server = InProcessServer::start().await;
    send(
        client()
            .post(server.project_url("/events/signups"))
            .header("Authorization", &server.project.write)
            .json(&json!({})),
    )
    .await;
    let project = send(
        client()
            .get(server.project_url(""))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(project.0, 200);
    assert_eq!(project.1["id"], server.project.id.as_str());
    assert!(
        project.1["url"]
            .as_str()
            .unwrap()
            .contains(&server.project.id)
    );
    assert_eq!(project.1["events"][0]["name"], "signups");
    let listing = send(
        client()
            .get(server.url("/3.0/projects"))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(listing.1.as_array().unwrap().len(), 1);
    assert_keen_error(
        &send(
            client()
                .get(server.project_url(""))
                .header("Authorization", &server.project.read),
        )
        .await,
        401,
        "AdminOnlyEndpointError",
    );
    assert_keen_error(
        &send(
            client()
                .get(server.url("/3.0/projects"))
                .header("Authorization", &server.project.write),
        )
        .await,
        401,
        "AdminOnlyEndpointError",
    );
    let health = send(client().get(server.url("/health"))).await;
    assert_eq!(health, (200, json!({"status": "ok"})));
}

#[test]
fn first_start_prints_default_project_and_cli_manages_projects() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = BinaryServer::start(data_dir.path(), &[], &[]);
    let printed = server.printed_project();
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|line| line.starts_with("organization key"))
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("{}/3.0/projects/{}/events/c", server.base_url, printed.id);
        assert_eq!(
            send(
                client()
                    .post(url)
                    .header("Authorization", &printed.write)
                    .json(&json!({"a": 1}))
            )
            .await
            .0,
            201
        );
    });
    assert!(server.terminate().success());

    let output = Command::new(keyhole_binary())
        .args(["project", "create", "CLI made"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(created["name"], "CLI made");
    let output = Command::new(keyhole_binary())
        .args(["project", "list", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .unwrap();
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(
        listing.contains("CLI made") && listing.contains(&printed.id),
        "{listing}"
    );
    assert!(
        !listing.contains(&printed.master),
        "listing must not show secrets"
    );

    // A second start neither prints nor regenerates keys; the CLI-made project's key works.
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    assert!(
        !server.stdout_lines.iter().any(|line| line.contains("key")),
        "{:?}",
        server.stdout_lines
    );
    runtime.block_on(async {
        let url = format!(
            "{}/3.0/projects/{}/events/c",
            server.base_url,
            created["id"].as_str().unwrap()
        );
        let key = created["api_keys"]["write"].as_str().unwrap();
        assert_eq!(
            send(
                client()
                    .post(url)
                    .header("Authorization", key)
                    .json(&json!({}))
            )
            .await
            .0,
            201
        );
    });
}
