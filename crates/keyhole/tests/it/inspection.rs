//! Collection listing, per-collection schema and properties, and deleting a collection.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

async fn write(server: &InProcessServer, collection: &str, events: Value) {
    let body = json!({ collection: events });
    let answer = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&body),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

fn redact_ids(value: Value, project_id: &str) -> Value {
    serde_json::from_str(&value.to_string().replace(project_id, "[project_id]")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_endpoints_list_collections_and_property_types() {
    let server = InProcessServer::start().await;
    write(&server, "purchases", json!([
        {"price": 10, "user": {"id": "u1", "vip": true}, "tags": ["a"], "keen": {"location": {"coordinates": [13.4, 52.5]}}},
        {"price": "free", "nothing": null},
    ]))
    .await;
    write(&server, "page views", json!([{"url": "/"}])).await;
    let get = |path: &str, key: &str| {
        send(
            client()
                .get(server.project_url(path))
                .header("Authorization", key),
        )
    };

    let listing = get("/events", &server.project.read).await;
    assert_eq!(listing.0, 200);
    insta::assert_json_snapshot!(
        "collections_listing",
        redact_ids(listing.1, &server.project.id)
    );

    let one = get("/events/purchases", &server.project.master).await;
    assert_eq!(one.0, 200);
    assert_eq!(
        one.1["properties"]["price"], "string",
        "the latest kind is reported"
    );
    assert_eq!(one.1["properties"]["keen.location.coordinates"], "geo");
    assert_eq!(
        one.1["url"],
        format!("/3.0/projects/{}/events/purchases", server.project.id)
    );

    let properties = get("/events/purchases/properties", &server.project.read).await;
    assert_eq!(properties.0, 200);
    insta::assert_json_snapshot!(
        "purchases_properties",
        redact_ids(properties.1, &server.project.id)
    );
    let property = get(
        "/events/purchases/properties/user.vip",
        &server.project.read,
    )
    .await;
    assert_eq!(property.1["type"], "bool");
    assert_eq!(
        get("/events/page%20views", &server.project.read).await.1["name"],
        "page views"
    );

    assert_keen_error(
        &get("/events/nope", &server.project.read).await,
        404,
        "ResourceNotFoundError",
    );
    assert_keen_error(
        &get("/events/purchases/properties/nope", &server.project.read).await,
        404,
        "ResourceNotFoundError",
    );
    assert_keen_error(
        &get("/events", &server.project.write).await,
        401,
        "RequestForbiddenError",
    );
    assert_keen_error(
        &get("/events/purchases", &server.project.write).await,
        401,
        "RequestForbiddenError",
    );
    assert_keen_error(&get("/events", "bogus").await, 401, "InvalidApiKeyError");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_collection_needs_the_master_key() {
    let server = InProcessServer::start().await;
    write(&server, "doomed", json!([{"a": 1}, {"a": 2}])).await;
    server.storage.flush().await.unwrap();
    write(&server, "doomed", json!([{"b": 3}])).await;
    write(&server, "kept", json!([{"a": 1}])).await;
    let delete = |path: &str, key: &str| {
        send(
            client()
                .delete(server.project_url(path))
                .header("Authorization", key),
        )
    };
    assert_keen_error(
        &delete("/events/doomed", &server.project.write).await,
        401,
        "AdminOnlyEndpointError",
    );
    assert_keen_error(
        &delete("/events/doomed", &server.project.read).await,
        401,
        "AdminOnlyEndpointError",
    );
    let nothing_matched = delete(
        "/events/doomed?timeframe=previous_7_years",
        &server.project.master,
    )
    .await;
    assert_eq!(nothing_matched.0, 204, "{}", nothing_matched.1);
    assert_eq!(server.scan("doomed").await.num_rows(), 3);
    let answer = client()
        .delete(server.project_url("/events/doomed"))
        .header("Authorization", &server.project.master)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 204);
    assert_eq!(server.scan("doomed").await.num_rows(), 0);
    assert_keen_error(
        &delete("/events/doomed", &server.project.master).await,
        404,
        "ResourceNotFoundError",
    );
    let names: Vec<String> = server
        .storage
        .collections(&server.project.id)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["kept"]);
}
