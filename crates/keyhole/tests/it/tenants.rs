//! Tenants as objects over HTTP: the tenancy property, creating tenants with their two keys, and what
//! those keys can do — the read key sees only its tenant's events, the write key stamps the tenant
//! whatever the event claims — plus listing, retrieving and the refusals (ids, conflicts, key rules).

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

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

#[tokio::test]
async fn a_tenant_is_created_with_a_read_key_that_sees_only_its_events_and_a_write_key_that_stamps_it()
 {
    let server = InProcessServer::start().await;
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

#[tokio::test]
async fn tenant_ids_are_unique_and_plain_lists_page_by_id_and_bad_options_are_refused() {
    let server = InProcessServer::start().await;
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
