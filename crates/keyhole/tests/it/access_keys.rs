//! Access keys over real HTTP: the key API's lifecycle, permissions, forced query filters on every kind
//! of read, and autofill on every kind of write.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

async fn create_key(server: &InProcessServer, definition: Value) -> (u16, Value) {
    send(
        client()
            .post(server.project_url("/keys"))
            .header("Authorization", &server.project.master)
            .json(&definition),
    )
    .await
}

fn vendor_key(vendor: &str, permitted: &[&str]) -> Value {
    json!({
        "name": format!("vendor {vendor}"),
        "permitted": permitted,
        "options": {
            "queries": {"filters": [{"property_name": "vendor_id", "operator": "eq", "property_value": vendor}]},
            "writes": {"autofill": {"vendor_id": vendor, "vendor": {"id": vendor}}},
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn key_lifecycle_create_list_get_update_revoke_unrevoke_delete() {
    let server = InProcessServer::start().await;
    let (status, created) = create_key(&server, vendor_key("acme", &["queries", "writes"])).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert_eq!(
        created["options"]["datasets"],
        Value::Null,
        "unset option groups read back as null"
    );
    assert_eq!(created["permitted"], json!(["queries", "writes"]));
    let master = |request: reqwest::RequestBuilder| {
        send(request.header("Authorization", &server.project.master))
    };
    let key_url = |suffix: &str| server.project_url(&format!("/keys/{secret}{suffix}"));

    let listing = master(client().get(server.project_url("/keys"))).await;
    assert_eq!(listing.1.as_array().unwrap().len(), 1);
    assert_eq!(
        listing.1[0]["key"],
        Value::Null,
        "listings cannot show secrets that are not stored"
    );
    assert_eq!(listing.1[0]["key_prefix"], &secret[..8]);
    let fetched = master(client().get(key_url(""))).await;
    assert_eq!(
        (fetched.0, fetched.1["name"].as_str()),
        (200, Some("vendor acme"))
    );

    let write = |key: &str| {
        send(
            client()
                .post(server.project_url("/events/orders"))
                .header("Authorization", key)
                .json(&json!({"n": 1})),
        )
    };
    assert_eq!(write(&secret).await.0, 201);

    let updated = master(
        client()
            .post(key_url(""))
            .json(&json!({"name": "renamed", "permitted": ["queries"]})),
    )
    .await;
    assert_eq!(
        (updated.0, updated.1["name"].as_str()),
        (200, Some("renamed"))
    );
    assert_eq!(
        updated.1["options"]["queries"],
        Value::Null,
        "update replaces the whole definition"
    );
    assert_keen_error(&write(&secret).await, 401, "RequestForbiddenError");

    let revoked = master(client().post(key_url("/revoke"))).await;
    assert_eq!((revoked.0, &revoked.1["is_active"]), (200, &json!(false)));
    let query = || {
        send(
            client()
                .get(server.project_url("/queries/count?event_collection=orders"))
                .header("Authorization", &secret),
        )
    };
    assert_keen_error(&query().await, 401, "InvalidApiKeyError");
    let unrevoked = master(client().post(key_url("/unrevoke"))).await;
    assert_eq!(unrevoked.1["is_active"], true);
    assert_eq!(query().await.0, 200);

    let deleted = client()
        .delete(key_url(""))
        .header("Authorization", &server.project.master)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_keen_error(&query().await, 401, "InvalidApiKeyError");
    assert_keen_error(
        &master(client().get(key_url(""))).await,
        404,
        "ResourceNotFoundError",
    );

    // Only the master key manages keys; definitions are validated.
    let as_read = send(
        client()
            .get(server.project_url("/keys"))
            .header("Authorization", &server.project.read),
    )
    .await;
    assert_keen_error(&as_read, 401, "AdminOnlyEndpointError");
    assert_keen_error(
        &create_key(&server, json!({"name": "x", "permitted": ["everything"]})).await,
        400,
        "InvalidAccessKeyDefinitionError",
    );
    assert_keen_error(
        &create_key(&server, json!({"name": "x", "options": {"querys": {}}})).await,
        400,
        "InvalidAccessKeyDefinitionError",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permitted_operations_gate_their_routes() {
    let server = InProcessServer::start().await;
    send(
        client()
            .post(server.project_url("/events/c"))
            .header("Authorization", &server.project.write)
            .json(&json!({"a": 1})),
    )
    .await;
    let key_with = |permitted: &'static [&'static str]| {
        let server = &server;
        async move {
            create_key(server, json!({"name": "k", "permitted": permitted}))
                .await
                .1["key"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let queries_only = key_with(&["queries"]).await;
    let writes_only = key_with(&["writes"]).await;
    let schema_only = key_with(&["schema"]).await;
    let query = |key: &str| {
        send(
            client()
                .get(server.project_url("/queries/count?event_collection=c"))
                .header("Authorization", key),
        )
    };
    let write = |key: &str| {
        send(
            client()
                .post(server.project_url("/events/c"))
                .header("Authorization", key)
                .json(&json!({})),
        )
    };
    let schema = |key: &str| {
        send(
            client()
                .get(server.project_url("/events"))
                .header("Authorization", key),
        )
    };
    assert_eq!(query(&queries_only).await.0, 200);
    assert_keen_error(&write(&queries_only).await, 401, "RequestForbiddenError");
    assert_keen_error(&schema(&queries_only).await, 401, "RequestForbiddenError");
    assert_eq!(write(&writes_only).await.0, 201);
    assert_keen_error(&query(&writes_only).await, 401, "RequestForbiddenError");
    assert_eq!(schema(&schema_only).await.0, 200);
    assert_keen_error(&query(&schema_only).await, 401, "RequestForbiddenError");
    let delete = send(
        client()
            .delete(server.project_url("/events/c"))
            .header("Authorization", &queries_only),
    )
    .await;
    // Deleting needs `deletes` (a Keyhole extension), which this key was not given.
    assert_keen_error(&delete, 401, "RequestForbiddenError");
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_filters_isolate_tenants_on_every_analysis() {
    let server = InProcessServer::start().await;
    let events: Vec<Value> = (0..60)
        .map(|i| {
            let (vendor, step) = (["acme", "globex", "initech"][i % 3], ["view", "buy"][i % 2]);
            json!({"vendor_id": vendor, "user": {"id": format!("u{}", i % 7)}, "amount": i, "step": step})
        })
        .collect();
    send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&json!({"orders": events})),
    )
    .await;
    let acme = create_key(&server, vendor_key("acme", &["queries"]))
        .await
        .1["key"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |key: &str, analysis: &str, body: Value| {
        send(
            client()
                .post(server.project_url(&format!("/queries/{analysis}")))
                .header("Authorization", key)
                .json(&body),
        )
    };
    let acme_filter =
        json!({"property_name": "vendor_id", "operator": "eq", "property_value": "acme"});
    let with_filter = |mut body: Value, extra: &Value| {
        let mut filters = body
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        filters.push(extra.clone());
        body["filters"] = Value::Array(filters);
        body
    };
    let bodies = [
        ("count", json!({"event_collection": "orders"})),
        (
            "sum",
            json!({"event_collection": "orders", "target_property": "amount", "group_by": "step"}),
        ),
        (
            "count_unique",
            json!({"event_collection": "orders", "target_property": "user.id"}),
        ),
        (
            "select_unique",
            json!({"event_collection": "orders", "target_property": "vendor_id"}),
        ),
        (
            "count",
            json!({"event_collection": "orders", "group_by": "vendor_id"}),
        ),
        (
            "median",
            json!({"event_collection": "orders", "target_property": "amount", "filters": [{"property_name": "step", "operator": "eq", "property_value": "buy"}]}),
        ),
        (
            "multi_analysis",
            json!({"event_collection": "orders", "analyses": {"n": {"analysis_type": "count"}, "total": {"analysis_type": "sum", "target_property": "amount"}}}),
        ),
        (
            "extraction",
            json!({"event_collection": "orders", "property_names": ["vendor_id", "amount"]}),
        ),
    ];
    for (analysis, body) in &bodies {
        let scoped = post(&acme, analysis, body.clone()).await;
        let master = post(
            &server.project.master,
            analysis,
            with_filter(body.clone(), &acme_filter),
        )
        .await;
        assert_eq!(scoped.0, 200, "{analysis}: {}", scoped.1);
        assert_eq!(
            scoped.1, master.1,
            "{analysis} with the key must equal master + the tenant filter"
        );
        assert!(
            !scoped.1.to_string().contains("globex") && !scoped.1.to_string().contains("initech"),
            "{analysis} leaked: {}",
            scoped.1
        );
    }
    // Funnel steps each carry the forced filter.
    let funnel = json!({"steps": [
        {"event_collection": "orders", "actor_property": "user.id", "filters": [{"property_name": "step", "operator": "eq", "property_value": "view"}], "with_actors": true},
        {"event_collection": "orders", "actor_property": "user.id", "filters": [{"property_name": "step", "operator": "eq", "property_value": "buy"}], "with_actors": true},
    ]});
    let mut master_funnel = funnel.clone();
    for step in master_funnel["steps"].as_array_mut().unwrap() {
        step["filters"]
            .as_array_mut()
            .unwrap()
            .push(acme_filter.clone());
    }
    let scoped = post(&acme, "funnel", funnel).await;
    let master = post(&server.project.master, "funnel", master_funnel).await;
    assert_eq!(scoped.1["result"], master.1["result"]);
    assert_eq!(scoped.1["actors"], master.1["actors"]);
    // The caller's own filters only narrow.
    let widened = post(&acme, "count", json!({"event_collection": "orders", "filters": [{"property_name": "vendor_id", "operator": "eq", "property_value": "globex"}]})).await;
    assert_eq!(widened.1["result"], 0);
    let or_attempt = post(&acme, "count", json!({"event_collection": "orders", "filters": [{"operator": "or", "operands": [acme_filter, {"property_name": "vendor_id", "operator": "ne", "property_value": "acme"}]}]})).await;
    assert_eq!(or_attempt.1["result"], 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn autofill_wins_over_the_event_body_on_every_write_path() {
    let server = InProcessServer::start().await;
    let acme = create_key(&server, vendor_key("acme", &["writes"])).await.1["key"]
        .as_str()
        .unwrap()
        .to_string();
    let single = json!({"vendor_id": "globex", "vendor": {"id": "globex", "name": "kept"}, "n": 1});
    assert_eq!(
        send(
            client()
                .post(server.project_url("/events/orders"))
                .header("Authorization", &acme)
                .json(&single)
        )
        .await
        .0,
        201
    );
    let batch =
        json!({"orders": [{"vendor_id": "initech"}, {"vendor": "not even an object"}, {"n": 3}]});
    let answer = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &acme)
            .json(&batch),
    )
    .await;
    assert_eq!(
        answer.1["orders"],
        json!([{"success": true}, {"success": true}, {"success": true}])
    );
    use base64::Engine;
    let pixel = base64::engine::general_purpose::STANDARD.encode(r#"{"vendor_id": "globex"}"#);
    let pixel_url = server.project_url(&format!("/events/orders?api_key={acme}&data={pixel}"));
    assert_eq!(
        client()
            .get(pixel_url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let extraction = send(
        client()
            .post(server.project_url("/queries/extraction"))
            .header("Authorization", &server.project.master)
            .json(&json!({"event_collection": "orders"})),
    )
    .await;
    let events = extraction.1["result"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    for event in events {
        assert_eq!(event["vendor_id"], "acme", "{event}");
        assert_eq!(event["vendor"]["id"], "acme", "{event}");
    }
    assert!(
        events.iter().any(|event| event["vendor"]["name"] == "kept"),
        "autofill merges, keeping the event's other nested values"
    );
}

/// Requests by several concurrent clients, each recorded with when it started and how it was answered.
async fn hammer(
    server: &InProcessServer,
    key: &str,
    until: std::time::Instant,
) -> Vec<(std::time::Instant, u16)> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = server.project_url("/queries/count?event_collection=load");
        let key = key.to_string();
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut seen = Vec::new();
            while std::time::Instant::now() < until {
                let started = std::time::Instant::now();
                let status = http
                    .get(&url)
                    .header("Authorization", &key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                seen.push((started, status));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_unrevocation_and_deletion_apply_to_the_next_request_under_load() {
    let server = InProcessServer::start().await;
    send(
        client()
            .post(server.project_url("/events/load"))
            .header("Authorization", &server.project.write)
            .json(&json!({})),
    )
    .await;
    let secret = create_key(&server, json!({"name": "load", "permitted": ["queries"]}))
        .await
        .1["key"]
        .as_str()
        .unwrap()
        .to_string();
    let master = server.project.master.clone();
    let change = |suffix: &'static str, method: reqwest::Method| {
        let url = server.project_url(&format!("/keys/{secret}{suffix}"));
        let master = master.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let status = client()
                .request(method, url)
                .header("Authorization", master)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (std::time::Instant::now(), status)
        }
    };
    for (suffix, method, allowed_after) in [
        ("/revoke", reqwest::Method::POST, false),
        ("/unrevoke", reqwest::Method::POST, true),
        ("", reqwest::Method::DELETE, false),
    ] {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(700);
        let (seen, (changed_at, status)) =
            tokio::join!(hammer(&server, &secret, until), change(suffix, method));
        assert!(status == 200 || status == 204, "{suffix} answered {status}");
        let after: Vec<u16> = seen
            .iter()
            .filter(|(started, _)| *started > changed_at)
            .map(|(_, status)| *status)
            .collect();
        let before: Vec<u16> = seen
            .iter()
            .filter(|(started, _)| *started < changed_at)
            .map(|(_, status)| *status)
            .collect();
        assert!(
            after.len() > 10 && before.len() > 10,
            "the load should straddle the change: {} before, {} after",
            before.len(),
            after.len()
        );
        let expected_after = if allowed_after { 200 } else { 401 };
        assert!(
            after.iter().all(|status| *status == expected_after),
            "{suffix}: requests after the change got {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_reads_show_only_what_the_keys_events_carry() {
    let server = InProcessServer::start().await;
    let batch = json!({
        "orders": [{"vendor_id": "acme", "acme_secret": 1}, {"vendor_id": "globex", "globex_secret": "x", "shared": 1}, {"vendor_id": "acme", "shared": "s"}],
        "globex_only": [{"vendor_id": "globex", "hidden": true}],
    });
    send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&batch),
    )
    .await;
    let acme = create_key(&server, vendor_key("acme", &["schema"])).await.1["key"]
        .as_str()
        .unwrap()
        .to_string();
    let get = |path: &str, key: &str| {
        send(
            client()
                .get(server.project_url(path))
                .header("Authorization", key),
        )
    };

    let listing = get("/events", &acme).await;
    assert_eq!(listing.0, 200);
    let collections = listing.1.as_array().unwrap();
    assert_eq!(
        collections.len(),
        1,
        "a collection with none of the key's events is not listed: {}",
        listing.1
    );
    let properties = &collections[0]["properties"];
    assert!(
        properties.get("acme_secret").is_some() && properties.get("globex_secret").is_none(),
        "{properties}"
    );
    assert_eq!(
        properties["shared"], "string",
        "only the kinds the key's events carry"
    );
    assert!(!listing.1.to_string().contains("globex"));

    assert_keen_error(
        &get("/events/globex_only", &acme).await,
        404,
        "ResourceNotFoundError",
    );
    assert_keen_error(
        &get("/events/orders/properties/globex_secret", &acme).await,
        404,
        "ResourceNotFoundError",
    );
    let listed: Vec<String> = get("/events/orders/properties", &acme)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["property_name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&"acme_secret".to_string())
            && !listed.contains(&"globex_secret".to_string()),
        "{listed:?}"
    );
    // The master key still sees everything.
    let all = get("/events", &server.project.master).await;
    assert_eq!(all.1.as_array().unwrap().len(), 2);
    assert_eq!(all.1[1]["properties"]["globex_secret"], "string");
}

#[test]
fn no_key_secret_reaches_the_logs() {
    use crate::support::BinaryServer;
    let data_dir = tempfile::tempdir().unwrap();
    let log_path = data_dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.path().join("data").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let mut server = BinaryServer::start_with_stderr(
        &args,
        &[("RUST_LOG", "debug")],
        std::process::Stdio::from(log),
    );
    let project = server.printed_project();
    let base = format!("{}/3.0/projects/{}", server.base_url, project.id);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let access = runtime.block_on(async {
        let created = send(
            client()
                .post(format!("{base}/keys"))
                .header("Authorization", &project.master)
                .json(&vendor_key("acme", &["writes", "queries"])),
        )
        .await;
        let access = created.1["key"].as_str().unwrap().to_string();
        send(
            client()
                .post(format!("{base}/events/c"))
                .header("Authorization", &access)
                .json(&json!({"a": 1})),
        )
        .await;
        send(
            client()
                .post(format!("{base}/events/c?api_key={}", project.write))
                .json(&json!({"a": 2})),
        )
        .await;
        send(client().get(format!(
            "{base}/events/c?api_key={access}&data=eyJhIjozfQ=="
        )))
        .await;
        send(client().get(format!(
            "{base}/queries/count?api_key={}&event_collection=c",
            project.read
        )))
        .await;
        send(
            client()
                .get(format!("{base}/keys/{access}"))
                .header("Authorization", &project.master),
        )
        .await;
        send(
            client()
                .post(format!("{base}/keys/{access}/revoke"))
                .header("Authorization", &project.master),
        )
        .await;
        send(
            client()
                .post(format!("{base}/events/c"))
                .header("Authorization", &access)
                .json(&json!({})),
        )
        .await;
        send(
            client()
                .get(format!("{base}/keys/not-a-real-key-but-secret-looking"))
                .header("Authorization", &project.master),
        )
        .await;
        access
    });
    assert!(server.terminate().success());
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("/keys/"),
        "the log should record the key-management requests: {logged}"
    );
    for secret in [&project.master, &project.write, &project.read, &access] {
        assert!(
            !logged.contains(secret.as_str()),
            "a key secret reached the log"
        );
        assert!(
            !logged.contains(&secret[..16]),
            "more than the display prefix of a key reached the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn write_collections_limit_where_a_key_may_write() {
    let server = InProcessServer::start().await;
    let definition = json!({"name": "orders only", "permitted": ["writes"], "options": {"writes": {"collections": ["orders"]}}});
    let key = create_key(&server, definition).await.1["key"]
        .as_str()
        .unwrap()
        .to_string();
    let single = |collection: &str| {
        send(
            client()
                .post(server.project_url(&format!("/events/{collection}")))
                .header("Authorization", &key)
                .json(&json!({"n": 1})),
        )
    };
    assert_eq!(single("orders").await.0, 201);
    assert_keen_error(&single("payments").await, 401, "RequestForbiddenError");
    let batch = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &key)
            .json(&json!({"orders": [{"n": 2}], "payments": [{"n": 3}]})),
    )
    .await;
    assert_eq!(batch.1["orders"], json!([{"success": true}]));
    assert_eq!(
        batch.1["payments"][0]["error"]["name"],
        "RequestForbiddenError"
    );
    let pixel = send(
        client()
            .get(server.project_url(&format!("/events/payments?api_key={key}&data=eyJuIjo0fQ=="))),
    )
    .await;
    assert_keen_error(&pixel, 401, "RequestForbiddenError");
    assert_eq!(server.scan("orders").await.num_rows(), 2);
    assert_eq!(server.scan("payments").await.num_rows(), 0);
    // Each refused write is in the audit log (identical ones within 100 ms as one entry).
    let audit = server.audit_entries().await;
    let refused: u64 = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["reason"] == "collection_not_writable")
        .map(|entry| entry["times"].as_u64().unwrap())
        .sum();
    assert_eq!(refused, 3, "{audit}");
}
