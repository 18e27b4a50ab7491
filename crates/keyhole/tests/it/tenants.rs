//! Tenants as objects over HTTP: the tenancy property, creating tenants with their two keys, and what
//! those keys can do — the read key sees only its tenant's events, the write key stamps the tenant
//! whatever the event claims — plus listing, retrieving and the refusals (ids, conflicts, key rules);
//! each on SQLite and on PostgreSQL metadata.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    InProcessServer, MetadataBackend, TestLimits, assert_keen_error, client, send,
};

async fn put_tenancy(server: &InProcessServer, key: &str, body: &Value) -> (u16, Value) {
    send(
        client()
            .put(server.project_url("/tenancy"))
            .header("Authorization", key)
            .json(body),
    )
    .await
}

async fn get(server: &InProcessServer, rest: &str, key: &str) -> (u16, Value) {
    send(
        client()
            .get(server.project_url(rest))
            .header("Authorization", key),
    )
    .await
}

async fn count(server: &InProcessServer, key: &str) -> Value {
    let answer = server
        .post_json(
            "/queries/count",
            key,
            &json!({"event_collection": "orders"}),
        )
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["result"].clone()
}

async fn a_tenant_is_created_with_a_read_key_that_sees_only_its_events_and_a_write_key_that_stamps_it(
    metadata: MetadataBackend,
) {
    let server = InProcessServer::start_with(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let master = server.project.master.clone();

    // Tenants need the tenancy property first.
    let refused = server
        .post_json("/tenants", &master, &json!({"id": "acme"}))
        .await;
    assert_keen_error(&refused, 409, "ConflictError");
    assert_keen_error(
        &get(&server, "/tenancy", &master).await,
        404,
        "ResourceNotFoundError",
    );
    assert_keen_error(
        &put_tenancy(&server, &master, &json!({"property": "keen.id"})).await,
        400,
        "InvalidTenantDefinitionError",
    );
    let set = put_tenancy(&server, &master, &json!({"property": "customer.id"})).await;
    assert_eq!(set, (200, json!({"property": "customer.id"})));
    assert_eq!(
        get(&server, "/tenancy", &master).await,
        (200, json!({"property": "customer.id"}))
    );
    // Only the master key manages tenants.
    assert_keen_error(
        &put_tenancy(&server, &server.project.write, &json!({"property": "x"})).await,
        401,
        "AdminOnlyEndpointError",
    );

    let acme = server
        .post_json(
            "/tenants",
            &master,
            &json!({"id": "acme", "name": "Acme Inc.", "options": {"limits": {"queries_per_day": 1000}}}),
        )
        .await;
    assert_eq!(acme.0, 201, "{}", acme.1);
    assert_eq!(acme.1["id"], "acme");
    assert_eq!(acme.1["name"], "Acme Inc.");
    assert_eq!(acme.1["suspended"], false);
    let acme_read = acme.1["read_key"].as_str().unwrap().to_string();
    let acme_write = acme.1["write_key"].as_str().unwrap().to_string();
    let globex = server
        .post_json("/tenants", &master, &json!({"id": "globex"}))
        .await;
    assert_eq!(globex.0, 201, "{}", globex.1);
    assert_eq!(globex.1["name"], "globex");
    let globex_read = globex.1["read_key"].as_str().unwrap().to_string();
    let globex_write = globex.1["write_key"].as_str().unwrap().to_string();

    // Each write key stamps its own tenant, whatever the event says.
    for (write_key, claims) in [
        (&acme_write, ["acme", "globex", "initech"]),
        (&globex_write, ["globex", "acme", "acme"]),
    ] {
        for claimed in claims {
            let written = server
                .post_json(
                    "/events/orders",
                    write_key,
                    &json!({"customer": {"id": claimed}, "amount": 1}),
                )
                .await;
            assert_eq!(written.0, 201, "{}", written.1);
        }
    }
    server
        .write_events(
            "orders",
            vec![json!({"customer": {"id": "acme"}, "amount": 1})],
        )
        .await;
    // The read keys see their tenant's events only: acme 3 + 1 written with the project's write key.
    assert_eq!(count(&server, &acme_read).await, json!(4));
    assert_eq!(count(&server, &globex_read).await, json!(3));
    assert_eq!(count(&server, &master).await, json!(7));
    // A read key cannot write, nor a write key read.
    assert_keen_error(
        &server
            .post_json("/events/orders", &acme_read, &json!({"amount": 1}))
            .await,
        401,
        "RequestForbiddenError",
    );
    assert_keen_error(
        &server
            .post_json(
                "/queries/count",
                &acme_write,
                &json!({"event_collection": "orders"}),
            )
            .await,
        401,
        "RequestForbiddenError",
    );

    // Retrieving shows the tenant and its keys' metadata, never a secret.
    let shown = get(&server, "/tenants/acme", &master).await;
    assert_eq!(shown.0, 200, "{}", shown.1);
    assert_eq!(
        shown.1["options"],
        json!({"limits": {"queries_per_day": 1000}})
    );
    let keys = shown.1["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let permitted: Vec<&Value> = keys.iter().map(|key| &key["permitted"]).collect();
    assert!(permitted.contains(&&json!([
        "queries",
        "saved_queries",
        "cached_queries",
        "datasets"
    ])));
    assert!(permitted.contains(&&json!(["writes"])));
    let text = shown.1.to_string();
    assert!(!text.contains(&acme_read) && !text.contains(&acme_write));
    assert_keen_error(
        &get(&server, "/tenants/nobody", &master).await,
        404,
        "ResourceNotFoundError",
    );

    // The tenancy property cannot change under existing tenants; setting the same one again is fine.
    assert_keen_error(
        &put_tenancy(&server, &master, &json!({"property": "account"})).await,
        409,
        "ConflictError",
    );
    assert_eq!(
        put_tenancy(&server, &master, &json!({"property": "customer.id"}))
            .await
            .0,
        200
    );
}

async fn tenant_ids_are_unique_and_plain_lists_page_by_id_and_bad_options_are_refused(
    metadata: MetadataBackend,
) {
    let server = InProcessServer::start_with(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let master = server.project.master.clone();
    assert_eq!(
        put_tenancy(&server, &master, &json!({"property": "tenant"}))
            .await
            .0,
        200
    );
    for id in ["c", "a", "b.2", "b_1", "B-0"] {
        let created = server
            .post_json("/tenants", &master, &json!({"id": id}))
            .await;
        assert_eq!(created.0, 201, "{id}: {}", created.1);
    }
    assert_keen_error(
        &server
            .post_json("/tenants", &master, &json!({"id": "a"}))
            .await,
        409,
        "ConflictError",
    );
    for refused in [
        json!({"id": ""}),
        json!({"id": "has space"}),
        json!({"id": "x".repeat(129)}),
        json!({"id": "a/b"}),
        json!({"name": "no id"}),
        json!({"id": "d", "extra": true}),
        json!({"id": "d", "options": {"filter": []}}),
        json!({"id": "d", "options": {"max_lookback": "forever"}}),
        json!({"id": "d", "options": {"filters": [{"property_name": "plan"}]}}),
    ] {
        let answer = server.post_json("/tenants", &master, &refused).await;
        assert_keen_error(&answer, 400, "InvalidTenantDefinitionError");
    }
    // A refused tenant left nothing behind.
    assert_keen_error(
        &get(&server, "/tenants/d", &master).await,
        404,
        "ResourceNotFoundError",
    );

    // Pages in byte order of ids, two at a time.
    let mut seen = Vec::new();
    let mut next = Some("/tenants?limit=2".to_string());
    while let Some(rest) = next {
        let page = get(&server, &rest, &master).await;
        assert_eq!(page.0, 200, "{}", page.1);
        for tenant in page.1["tenants"].as_array().unwrap() {
            seen.push(tenant["id"].as_str().unwrap().to_string());
        }
        next = page.1["next_page_url"].as_str().map(|url| {
            url.strip_prefix(&format!("/3.0/projects/{}", server.project.id))
                .unwrap()
                .to_string()
        });
    }
    assert_eq!(seen, ["B-0", "a", "b.2", "b_1", "c"]);
    // A full page of the largest size still says whether another follows.
    for index in 0..96 {
        let created = server
            .post_json("/tenants", &master, &json!({"id": format!("t{index:03}")}))
            .await;
        assert_eq!(created.0, 201, "{}", created.1);
    }
    let full = get(&server, "/tenants?limit=100", &master).await;
    assert_eq!(full.1["tenants"].as_array().unwrap().len(), 100);
    let rest = full.1["next_page_url"]
        .as_str()
        .expect("a next page after 100 of 101");
    let rest = rest
        .strip_prefix(&format!("/3.0/projects/{}", server.project.id))
        .unwrap();
    let last = get(&server, rest, &master).await;
    assert_eq!(last.1["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(last.1["next_page_url"], Value::Null);
    assert_keen_error(
        &get(&server, "/tenants?limit=0", &master).await,
        400,
        "InvalidParameterError",
    );
    assert_keen_error(
        &get(&server, "/tenants?color=red", &master).await,
        400,
        "InvalidParameterError",
    );
}

async fn a_suspended_tenants_keys_and_embed_tokens_are_refused_until_it_is_resumed_unchanged(
    metadata: MetadataBackend,
) {
    let server = InProcessServer::start_with(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let master = server.project.master.clone();
    assert_eq!(
        put_tenancy(&server, &master, &json!({"property": "customer.id"}))
            .await
            .0,
        200
    );
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for id in ["acme", "globex"] {
        let created = server
            .post_json("/tenants", &master, &json!({"id": id}))
            .await;
        assert_eq!(created.0, 201, "{}", created.1);
        reads.push(created.1["read_key"].as_str().unwrap().to_string());
        writes.push(created.1["write_key"].as_str().unwrap().to_string());
    }
    let write = |key: String| {
        let server = &server;
        async move {
            server
                .post_json("/events/orders", &key, &json!({"amount": 1}))
                .await
        }
    };
    for key in &writes {
        assert_eq!(write(key.clone()).await.0, 201);
    }
    let token = keyhole_model::embed_token::mint(
        &reads[0],
        &json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": "dashboard"}),
    );
    assert_eq!(count(&server, &reads[0]).await, json!(1));
    assert_eq!(count(&server, &token).await, json!(1));

    let patch = |body: Value| {
        let server = &server;
        let master = master.clone();
        async move {
            send(
                client()
                    .patch(server.project_url("/tenants/acme"))
                    .header("Authorization", &master)
                    .json(&body),
            )
            .await
        }
    };
    let suspended = patch(json!({"suspended": true, "name": "Acme (on hold)"})).await;
    assert_eq!(suspended.0, 200, "{}", suspended.1);
    assert_eq!(suspended.1["suspended"], true);
    assert_eq!(suspended.1["name"], "Acme (on hold)");
    // The very next request of each of acme's credentials is refused; globex is untouched.
    let refused_count = server
        .post_json(
            "/queries/count",
            &reads[0],
            &json!({"event_collection": "orders"}),
        )
        .await;
    assert_keen_error(&refused_count, 403, "TenantSuspendedError");
    let refused_token = server
        .post_json(
            "/queries/count",
            &token,
            &json!({"event_collection": "orders"}),
        )
        .await;
    assert_keen_error(&refused_token, 403, "TenantSuspendedError");
    assert_keen_error(&write(writes[0].clone()).await, 403, "TenantSuspendedError");
    assert_eq!(count(&server, &reads[1]).await, json!(1));
    assert_eq!(write(writes[1].clone()).await.0, 201);
    // Audited per key, and the refusals too.
    let audit = server.audit_entries().await.to_string();
    assert!(audit.contains("\"suspend\""), "{audit}");
    assert!(audit.contains("tenant_suspended"), "{audit}");

    // Resuming restores the same credentials.
    let resumed = patch(json!({"suspended": false})).await;
    assert_eq!(resumed.0, 200, "{}", resumed.1);
    assert_eq!(resumed.1["suspended"], false);
    assert_eq!(count(&server, &reads[0]).await, json!(1));
    assert_eq!(count(&server, &token).await, json!(1));
    assert_eq!(write(writes[0].clone()).await.0, 201);
    assert_eq!(count(&server, &reads[0]).await, json!(2));

    assert_keen_error(&patch(json!({})).await, 400, "InvalidTenantDefinitionError");
    assert_keen_error(
        &patch(json!({"suspended": "yes"})).await,
        400,
        "InvalidTenantDefinitionError",
    );
    let missing = send(
        client()
            .patch(server.project_url("/tenants/nobody"))
            .header("Authorization", &master)
            .json(&json!({"suspended": true})),
    )
    .await;
    assert_keen_error(&missing, 404, "ResourceNotFoundError");
}

/// Two nodes on one PostgreSQL database: a tenant suspended through one node is refused by the other
/// within a second, its key and its embed token alike, and resumed the same way.
#[test]
fn a_tenant_suspended_on_one_node_is_refused_by_another_within_a_second() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime.block_on(crate::scale_out::Cluster::create(2));
    let first = cluster.start(0);
    let keys = first.printed_project();
    let second = cluster.start(1);
    runtime.block_on(async {
        let on_first = |rest: &str| format!("{}/3.0/projects/{}{rest}", first.base_url, keys.id);
        let tenancy = send(
            client()
                .put(on_first("/tenancy"))
                .header("Authorization", &keys.master)
                .json(&json!({"property": "customer.id"})),
        )
        .await;
        assert_eq!(tenancy.0, 200, "{}", tenancy.1);
        let created = send(
            client()
                .post(on_first("/tenants"))
                .header("Authorization", &keys.master)
                .json(&json!({"id": "acme"})),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.1);
        let read_key = created.1["read_key"].as_str().unwrap().to_string();
        let token = keyhole_model::embed_token::mint(
            &read_key,
            &json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": "dashboard"}),
        );
        let status_on_second = |credential: String| {
            let url = format!(
                "{}/3.0/projects/{}/queries/count?event_collection=orders",
                second.base_url, keys.id
            );
            async move {
                send(client().get(url).header("Authorization", &credential))
                    .await
                    .0
            }
        };
        let set_suspended = |suspended: bool| {
            let request = client()
                .patch(on_first("/tenants/acme"))
                .header("Authorization", &keys.master)
                .json(&json!({"suspended": suspended}));
            async move {
                let answer = send(request).await;
                assert_eq!(answer.0, 200, "{}", answer.1);
            }
        };
        for credential in [&read_key, &token] {
            // Used on the second node first, so its grant is cached there.
            for _ in 0..3 {
                assert_eq!(status_on_second(credential.clone()).await, 200);
            }
            set_suspended(true).await;
            let suspended_at = Instant::now();
            while status_on_second(credential.clone()).await != 403 {
                assert!(
                    suspended_at.elapsed() < Duration::from_secs(1),
                    "the second node still accepts a suspended tenant's credential after 1 s"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            set_suspended(false).await;
            let resumed_at = Instant::now();
            while status_on_second(credential.clone()).await != 200 {
                assert!(
                    resumed_at.elapsed() < Duration::from_secs(1),
                    "the second node still refuses a resumed tenant's credential after 1 s"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
}

async fn rotating_a_tenants_keys_answers_new_ones_and_retires_the_old_after_the_grace_period(
    metadata: MetadataBackend,
) {
    let server = InProcessServer::start_with(TestLimits {
        metadata,
        ..TestLimits::default()
    })
    .await;
    let master = server.project.master.clone();
    assert_eq!(
        put_tenancy(&server, &master, &json!({"property": "customer.id"}))
            .await
            .0,
        200
    );
    let created = server
        .post_json("/tenants", &master, &json!({"id": "acme"}))
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let first_read = created.1["read_key"].as_str().unwrap().to_string();
    let first_write = created.1["write_key"].as_str().unwrap().to_string();
    let write = |key: String| {
        let server = &server;
        async move {
            server
                .post_json(
                    "/events/orders",
                    &key,
                    &json!({"customer": {"id": "globex"}}),
                )
                .await
        }
    };
    assert_eq!(write(first_write.clone()).await.0, 201);

    // With a grace period, old and new keys work side by side until it ends.
    let rotated = server
        .post_json(
            "/tenants/acme/rotate-keys",
            &master,
            &json!({"grace_seconds": 1}),
        )
        .await;
    assert_eq!(rotated.0, 200, "{}", rotated.1);
    let second_read = rotated.1["read_key"].as_str().unwrap().to_string();
    let second_write = rotated.1["write_key"].as_str().unwrap().to_string();
    assert_ne!(second_read, first_read);
    assert_eq!(write(second_write.clone()).await.0, 201);
    assert_eq!(write(first_write.clone()).await.0, 201);
    assert_eq!(count(&server, &first_read).await, json!(3));
    assert_eq!(count(&server, &second_read).await, json!(3));
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let expired = server
        .post_json(
            "/queries/count",
            &first_read,
            &json!({"event_collection": "orders"}),
        )
        .await;
    assert_keen_error(&expired, 401, "InvalidApiKeyError");
    assert_keen_error(&write(first_write.clone()).await, 401, "InvalidApiKeyError");
    assert_eq!(count(&server, &second_read).await, json!(3));

    // Without one, the keys in use stop at once; the tenant then lists the retired keys with their expiry.
    let again = server
        .post_json("/tenants/acme/rotate-keys", &master, &json!({}))
        .await;
    assert_eq!(again.0, 200, "{}", again.1);
    let third_read = again.1["read_key"].as_str().unwrap().to_string();
    let stopped = server
        .post_json(
            "/queries/count",
            &second_read,
            &json!({"event_collection": "orders"}),
        )
        .await;
    assert_keen_error(&stopped, 401, "InvalidApiKeyError");
    assert_eq!(count(&server, &third_read).await, json!(3));
    let shown = get(&server, "/tenants/acme", &master).await;
    let keys = shown.1["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 6);
    assert_eq!(
        keys.iter()
            .filter(|key| key["expires_at"].is_null())
            .count(),
        2,
        "{}",
        shown.1
    );

    for refused in [
        json!({"grace_seconds": -1}),
        json!({"grace_seconds": "60"}),
        json!({"wait": 1}),
    ] {
        let answer = server
            .post_json("/tenants/acme/rotate-keys", &master, &refused)
            .await;
        assert_keen_error(&answer, 400, "InvalidTenantDefinitionError");
    }
    assert_keen_error(
        &server
            .post_json("/tenants/nobody/rotate-keys", &master, &json!({}))
            .await,
        404,
        "ResourceNotFoundError",
    );
}

crate::support::on_each_metadata_backend!(
    a_tenant_is_created_with_a_read_key_that_sees_only_its_events_and_a_write_key_that_stamps_it,
    tenant_ids_are_unique_and_plain_lists_page_by_id_and_bad_options_are_refused,
    a_suspended_tenants_keys_and_embed_tokens_are_refused_until_it_is_resumed_unchanged,
    rotating_a_tenants_keys_answers_new_ones_and_retires_the_old_after_the_grace_period,
);
