//! A tenant's life after creation over HTTP, with the organization key as well as the master key: new
//! options applied to the keys in use, usage per tenant, deleting (keys and embed tokens revoked, events
//! kept) and erasing (every event of the tenant removed from every collection and every Parquet file,
//! with a receipt kept and readable later); each on SQLite and on PostgreSQL metadata.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stored_files::{other_event_files_containing, parquet_files_containing};
use crate::support::{
    InProcessServer, MetadataBackend, TestLimits, assert_keen_error, client, send,
};

async fn call(
    server: &InProcessServer,
    method: reqwest::Method,
    rest: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, server.project_url(rest))
        .header("Authorization", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

/// A server whose project has the tenancy property `customer.id`.
async fn server_with_tenancy(limits: TestLimits) -> InProcessServer {
    let server = InProcessServer::start_with(limits).await;
    let answer = call(
        &server,
        reqwest::Method::PUT,
        "/tenancy",
        &server.org_key,
        Some(json!({"property": "customer.id"})),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    server
}

async fn create_tenant(server: &InProcessServer, key: &str, body: Value) -> (String, String) {
    let created = server.post_json("/tenants", key, &body).await;
    assert_eq!(created.0, 201, "{}", created.1);
    (
        created.1["read_key"].as_str().unwrap().to_string(),
        created.1["write_key"].as_str().unwrap().to_string(),
    )
}

async fn count_where(server: &InProcessServer, collection: &str, filters: Value) -> u64 {
    let answer = server
        .post_json(
            "/queries/count",
            &server.project.master,
            &json!({"event_collection": collection, "filters": filters}),
        )
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["result"].as_u64().unwrap()
}

async fn tenant_count(server: &InProcessServer, collection: &str, tenant: &str) -> u64 {
    count_where(
        server,
        collection,
        json!([{"property_name": "customer.id", "operator": "eq", "property_value": tenant}]),
    )
    .await
}

async fn erasing_a_tenant_removes_its_events_from_every_collection_and_every_parquet_file(
    metadata: MetadataBackend,
) {
    let server = server_with_tenancy(TestLimits {
        delete_grace: Some(Duration::from_millis(100)),
        metadata,
        ..TestLimits::default()
    })
    .await;
    let org_key = server.org_key.clone();
    let erased_id = "erased-tenant-7f3a";
    let (_, erased_write) = create_tenant(&server, &org_key, json!({"id": erased_id})).await;
    let (kept_read, kept_write) = create_tenant(
        &server,
        &server.project.master,
        json!({"id": "kept-tenant"}),
    )
    .await;
    for collection in ["orders", "pageviews"] {
        for write_key in [&erased_write, &kept_write] {
            for amount in 0..3 {
                let written = server
                    .post_json(
                        &format!("/events/{collection}"),
                        write_key,
                        &json!({"amount": amount, "note": format!("from {collection}")}),
                    )
                    .await;
                assert_eq!(written.0, 201, "{}", written.1);
            }
        }
    }
    // An event of the tenant written with another key is the tenant's too.
    server
        .write_events(
            "signups",
            vec![
                json!({"customer": {"id": erased_id}, "plan": "pro"}),
                json!({"customer": {"id": "kept-tenant"}, "plan": "free"}),
            ],
        )
        .await;
    server.storage.flush().await.unwrap();
    // Some events only in memory (and the write-ahead log) when the erase starts.
    let unflushed = server
        .post_json("/events/orders", &erased_write, &json!({"amount": 9}))
        .await;
    assert_eq!(unflushed.0, 201, "{}", unflushed.1);
    let events_dir = server.data_dir().join("events");
    assert!(
        !parquet_files_containing(&events_dir, erased_id).is_empty(),
        "the check below must be able to fail: the tenant's id is in the flushed files"
    );
    let kept_before = [
        tenant_count(&server, "orders", "kept-tenant").await,
        tenant_count(&server, "pageviews", "kept-tenant").await,
        tenant_count(&server, "signups", "kept-tenant").await,
    ];
    assert_eq!(kept_before, [3, 3, 1]);

    let erased = call(
        &server,
        reqwest::Method::DELETE,
        &format!("/tenants/{erased_id}?erase=true"),
        &org_key,
        None,
    )
    .await;
    assert_eq!(erased.0, 200, "{}", erased.1);
    let receipt = erased.1;
    assert_eq!(receipt["tenant"], erased_id);
    assert_eq!(receipt["property"], "customer.id");
    assert_eq!(
        receipt["collections"],
        json!({"orders": 4, "pageviews": 3, "signups": 1})
    );
    assert_eq!(receipt["events_deleted"], 8);
    assert_eq!(receipt["keys_revoked"].as_array().unwrap().len(), 2);
    assert!(receipt["completed_at"].as_str().unwrap().ends_with('Z'));
    let receipt_id = receipt["receipt_id"].as_str().unwrap().to_string();

    for collection in ["orders", "pageviews", "signups"] {
        assert_eq!(tenant_count(&server, collection, erased_id).await, 0);
    }
    let kept_after = [
        tenant_count(&server, "orders", "kept-tenant").await,
        tenant_count(&server, "pageviews", "kept-tenant").await,
        tenant_count(&server, "signups", "kept-tenant").await,
    ];
    assert_eq!(kept_after, kept_before);
    let kept_sees = server
        .post_json(
            "/queries/count",
            &kept_read,
            &json!({"event_collection": "orders"}),
        )
        .await;
    assert_eq!(kept_sees, (200, json!({"result": 3})));
    // The tenant is gone, its write key with it.
    assert_keen_error(
        &server
            .post_json("/events/orders", &erased_write, &json!({"amount": 1}))
            .await,
        401,
        "InvalidApiKeyError",
    );
    assert_keen_error(
        &call(
            &server,
            reqwest::Method::GET,
            &format!("/tenants/{erased_id}"),
            &org_key,
            None,
        )
        .await,
        404,
        "ResourceNotFoundError",
    );
    // The receipt is kept: readable later, and in the audit log.
    let again = call(
        &server,
        reqwest::Method::GET,
        &format!("/tenants/erasures/{receipt_id}"),
        &server.project.master,
        None,
    )
    .await;
    assert_eq!(again, (200, receipt.clone()));
    let audit = server.audit_entries().await;
    let erase_entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["action"] == "erase")
        .expect("an erase entry in the audit log")
        .clone();
    assert_eq!(erase_entry["after"], receipt);
    assert_eq!(erase_entry["actor"], "organization");

    // No Parquet file still holds the id once the replaced files' grace period is over, and the
    // write-ahead log segments that held the erased events are gone with the flush.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holding = parquet_files_containing(&events_dir, erased_id);
        if holding.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Parquet files still hold the erased tenant: {holding:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        other_event_files_containing(&events_dir, erased_id),
        Vec::<PathBuf>::new()
    );
    assert!(!parquet_files_containing(&events_dir, "kept-tenant").is_empty());

    // Erasing again by the id (the tenant is gone) is allowed and finds nothing.
    let repeated = call(
        &server,
        reqwest::Method::DELETE,
        &format!("/tenants/{erased_id}?erase=true"),
        &server.project.master,
        None,
    )
    .await;
    assert_eq!(repeated.0, 200, "{}", repeated.1);
    assert_eq!(repeated.1["events_deleted"], 0);
    assert_ne!(repeated.1["receipt_id"], receipt["receipt_id"]);
}

async fn deleting_a_tenant_revokes_its_keys_and_tokens_and_keeps_its_events(
    metadata: MetadataBackend,
) {
    let server = server_with_tenancy(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let org_key = server.org_key.clone();
    let (read_key, write_key) = create_tenant(&server, &org_key, json!({"id": "acme"})).await;
    let token = keyhole_model::embed_token::mint(
        &read_key,
        &json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": "dashboard"}),
    );
    for amount in 0..2 {
        let written = server
            .post_json("/events/orders", &write_key, &json!({"amount": amount}))
            .await;
        assert_eq!(written.0, 201, "{}", written.1);
    }
    let query = json!({"event_collection": "orders"});
    assert_eq!(
        server.post_json("/queries/count", &token, &query).await,
        (200, json!({"result": 2}))
    );

    // Parameters are checked before anything is deleted.
    for bad in ["?erase=yes", "?erase=true&force=1", "?purge=true"] {
        assert_keen_error(
            &call(
                &server,
                reqwest::Method::DELETE,
                &format!("/tenants/acme{bad}"),
                &org_key,
                None,
            )
            .await,
            400,
            "InvalidParameterError",
        );
    }
    // Other keys than the master and organization keys are refused.
    assert_keen_error(
        &call(
            &server,
            reqwest::Method::DELETE,
            "/tenants/acme",
            &read_key,
            None,
        )
        .await,
        401,
        "AdminOnlyEndpointError",
    );
    let deleted = call(
        &server,
        reqwest::Method::DELETE,
        "/tenants/acme",
        &org_key,
        None,
    )
    .await;
    assert_eq!(deleted.0, 204, "{}", deleted.1);
    for credential in [&read_key, &write_key, &token] {
        let answer = if credential == &write_key {
            server
                .post_json("/events/orders", credential, &json!({"amount": 5}))
                .await
        } else {
            server.post_json("/queries/count", credential, &query).await
        };
        assert_keen_error(&answer, 401, "InvalidApiKeyError");
    }
    assert_keen_error(
        &call(
            &server,
            reqwest::Method::DELETE,
            "/tenants/acme",
            &org_key,
            None,
        )
        .await,
        404,
        "ResourceNotFoundError",
    );
    let listed = call(&server, reqwest::Method::GET, "/tenants", &org_key, None).await;
    assert_eq!(listed.1["tenants"], json!([]));
    // The events stay; a tenant created again with the id is the same customer and sees them.
    assert_eq!(tenant_count(&server, "orders", "acme").await, 2);
    let (read_again, _) = create_tenant(&server, &org_key, json!({"id": "acme"})).await;
    assert_eq!(
        server
            .post_json("/queries/count", &read_again, &query)
            .await,
        (200, json!({"result": 2}))
    );
    let again = call(
        &server,
        reqwest::Method::GET,
        "/tenants/acme",
        &org_key,
        None,
    )
    .await;
    assert_eq!(again.1["keys"].as_array().unwrap().len(), 2, "{}", again.1);
    // The revoked keys were audited as revoked by the organization.
    let audit = server.audit_entries().await;
    let revocations = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "revoke" && entry["actor"] == "organization")
        .count();
    assert_eq!(revocations, 2);
}

async fn new_options_apply_to_the_keys_in_use_and_a_rotation_is_not_extended(
    metadata: MetadataBackend,
) {
    let server = server_with_tenancy(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let master = server.project.master.clone();
    let (read_key, write_key) = create_tenant(&server, &master, json!({"id": "acme"})).await;
    for amount in [1, 10, 20] {
        let written = server
            .post_json("/events/orders", &write_key, &json!({"amount": amount}))
            .await;
        assert_eq!(written.0, 201, "{}", written.1);
    }
    let query = json!({"event_collection": "orders"});
    assert_eq!(
        server.post_json("/queries/count", &read_key, &query).await,
        (200, json!({"result": 3}))
    );
    let patch = |body: Value| {
        let master = master.clone();
        let server = &server;
        async move {
            call(
                server,
                reqwest::Method::PATCH,
                "/tenants/acme",
                &master,
                Some(body),
            )
            .await
        }
    };
    // Options the key rules refuse change nothing.
    let refused = patch(json!({"options": {"filters": [{"property_name": "amount"}]}})).await;
    assert_keen_error(&refused, 400, "InvalidTenantDefinitionError");
    assert_eq!(
        server.post_json("/queries/count", &read_key, &query).await,
        (200, json!({"result": 3}))
    );
    let changed = patch(json!({"options": {
        "filters": [{"property_name": "amount", "operator": "gte", "property_value": 10}],
        "origins": ["https://acme.example"],
    }}))
    .await;
    assert_eq!(changed.0, 200, "{}", changed.1);
    assert_eq!(
        changed.1["options"]["filters"][0]["property_name"],
        "amount"
    );
    // The same secret now reads under the new filter and is bound to the origin.
    let from_acme = send(
        client()
            .post(server.project_url("/queries/count"))
            .header("Authorization", &read_key)
            .header("Origin", "https://acme.example")
            .json(&query),
    )
    .await;
    assert_eq!(from_acme, (200, json!({"result": 2})));
    let elsewhere = send(
        client()
            .post(server.project_url("/queries/count"))
            .header("Authorization", &read_key)
            .header("Origin", "https://evil.example")
            .json(&query),
    )
    .await;
    assert_keen_error(&elsewhere, 401, "OriginNotAllowedError");
    // The write key still stamps the tenant (its options carry the origins too).
    let written = send(
        client()
            .post(server.project_url("/events/orders"))
            .header("Authorization", &write_key)
            .header("Origin", "https://acme.example")
            .json(&json!({"amount": 30, "customer": {"id": "globex"}})),
    )
    .await;
    assert_eq!(written.0, 201, "{}", written.1);
    assert_eq!(tenant_count(&server, "orders", "acme").await, 4);

    // Keys retiring after a rotation keep their retirement when the options change.
    let rotated = server
        .post_json(
            "/tenants/acme/rotate-keys",
            &master,
            &json!({"grace_seconds": 60}),
        )
        .await;
    assert_eq!(rotated.0, 200, "{}", rotated.1);
    let unbound = patch(json!({"options": {"expires_at": "2099-01-01T00:00:00Z"}})).await;
    assert_eq!(unbound.0, 200, "{}", unbound.1);
    let mut expiries: Vec<String> = unbound.1["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["expires_at"].as_str().unwrap().to_string())
        .collect();
    expiries.sort();
    assert_eq!(expiries.len(), 4, "{}", unbound.1);
    assert!(expiries[0].starts_with("20") && !expiries[0].starts_with("2099"));
    assert!(expiries[1].starts_with("20") && !expiries[1].starts_with("2099"));
    assert!(expiries[2].starts_with("2099") && expiries[3].starts_with("2099"));
    // And the old read key, no longer bound to an origin, still works until then.
    assert_eq!(
        server.post_json("/queries/count", &read_key, &query).await,
        (200, json!({"result": 4}))
    );
}

async fn a_tenant_shows_its_usage_and_what_it_stores(metadata: MetadataBackend) {
    let server = server_with_tenancy(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let org_key = server.org_key.clone();
    let (read_key, write_key) = create_tenant(&server, &org_key, json!({"id": "acme"})).await;
    create_tenant(&server, &org_key, json!({"id": "globex"})).await;
    let batch = json!({"orders": [{"amount": 1}, {"amount": 2}], "pageviews": [{"page": "/"}]});
    let written = server.post_json("/events", &write_key, &batch).await;
    assert_eq!(written.0, 200, "{}", written.1);
    for _ in 0..2 {
        let answer = server
            .post_json(
                "/queries/count",
                &read_key,
                &json!({"event_collection": "orders"}),
            )
            .await;
        assert_eq!(answer.0, 200, "{}", answer.1);
    }
    server.storage.flush().await.unwrap();

    let shown = call(
        &server,
        reqwest::Method::GET,
        "/tenants/acme",
        &org_key,
        None,
    )
    .await;
    assert_eq!(shown.0, 200, "{}", shown.1);
    let usage = &shown.1["usage"];
    assert_eq!(usage["events_written"], 3, "{usage}");
    assert_eq!(usage["queries"], 2, "{usage}");
    assert_eq!(usage["events_stored"], 3, "{usage}");
    assert!(usage["bytes_stored"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["last_activity"].as_str().unwrap().ends_with('Z'));
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(
        days[29],
        json!({"day": today, "events_written": 3, "queries": 2})
    );
    assert_eq!(usage["since"], days[0]["day"]);

    let listed = call(&server, reqwest::Method::GET, "/tenants", &org_key, None).await;
    assert_eq!(listed.0, 200, "{}", listed.1);
    let tenants = listed.1["tenants"].as_array().unwrap();
    assert_eq!(tenants[0]["usage"]["events_stored"], 3);
    assert_eq!(tenants[0]["usage"]["events_written"], 3);
    assert_eq!(tenants[1]["id"], "globex");
    assert_eq!(tenants[1]["usage"]["events_stored"], 0);
    assert_eq!(tenants[1]["usage"]["events_written"], 0);
    assert_eq!(tenants[1]["usage"]["last_activity"], Value::Null);
}

crate::support::on_each_metadata_backend!(
    erasing_a_tenant_removes_its_events_from_every_collection_and_every_parquet_file,
    deleting_a_tenant_revokes_its_keys_and_tokens_and_keeps_its_events,
    new_options_apply_to_the_keys_in_use_and_a_rotation_is_not_extended,
    a_tenant_shows_its_usage_and_what_it_stores,
);
