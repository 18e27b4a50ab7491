//! Hostile writes and deletes: deletes that once wiped a whole collection, one tenant's uniqueness
//! tokens suppressing another's events, names that are unsafe to store, and schemas grown without
//! bound. Each case here once lost data, leaked or stalled the server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hostile_queries::{tenant_key, write_batch};
use crate::support::{InProcessServer, TestLimits, assert_keen_error, client, send};

async fn count(server: &InProcessServer, collection: &str) -> Value {
    let url = server.project_url(&format!("/queries/count?event_collection={collection}"));
    let (status, body) = send(
        client()
            .get(url)
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_it_does_not_fully_understand_deletes_nothing() {
    let server = InProcessServer::start().await;
    write_batch(&server, "orders", json!([{"k": 1}, {"k": 2}, {"k": 3}])).await;
    let delete = |query: &str| {
        send(
            client()
                .delete(server.project_url(&format!("/events/orders{query}")))
                .header("Authorization", &server.project.master),
        )
    };
    // Filters that do not parse, an empty filters list, a timezone alone: refused, nothing deleted.
    for query in [
        "?filters=%5B%5D",
        "?filters=",
        "?timezone=UTC",
        "?filters[0][property_name]=k&filters[0][operator]=eqq&filters[0][property_value]=1",
        "?filters=%5Bnot-json",
        "?filters=%5B%7B%22property_name%22%3A%22k%22%2C%22operator%22%3A%22eqq%22%2C%22property_value%22%3A1%7D%5D",
        "?timeframe=this_7_fortnights",
    ] {
        let answer = delete(query).await;
        assert_eq!(answer.0, 400, "{query}: {}", answer.1);
        assert_eq!(count(&server, "orders").await, 3, "{query}");
    }
    // A timeframe that matches nothing deletes nothing (and is not widened to the collection).
    let answer =
        delete("?timeframe[start]=2020-01-01T00:00:00Z&timeframe[end]=2020-01-02T00:00:00Z").await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    assert_eq!(count(&server, "orders").await, 3);
    for query in [
        "?filter=x",
        "?where=k%3D1",
        "?api_key[0]=x",
        "?dry_run=true",
    ] {
        assert_keen_error(&delete(query).await, 400, "InvalidParameterError");
        assert_eq!(count(&server, "orders").await, 3, "{query}");
    }
    let with_body = send(
        client()
            .delete(server.project_url("/events/orders"))
            .header("Authorization", &server.project.master)
            .json(&json!({"filters": [{"property_name": "k", "operator": "eq", "property_value": 1}]})),
    )
    .await;
    assert_keen_error(&with_body, 400, "InvalidParameterError");
    assert_eq!(count(&server, "orders").await, 3);
    // PHP's bracket form deletes exactly what it selects.
    let answer = delete(
        "?filters[0][property_name]=k&filters[0][operator]=eq&filters[0][property_value]=1&timezone=UTC",
    )
    .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    assert_eq!(count(&server, "orders").await, 2);
    // The whole collection, asked for plainly (the key in the query string is fine).
    let url = server.project_url(&format!("/events/orders?api_key={}", server.project.master));
    let response = client().delete(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(count(&server, "orders").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_uniqueness_tokens_never_suppress_another_tenants_events() {
    let server = InProcessServer::start().await;
    let acme = tenant_key(&server, "acme", &["writes", "queries"]).await;
    let globex = tenant_key(&server, "globex", &["writes", "queries"]).await;
    let post = |key: &str, body: Value| {
        send(
            client()
                .post(server.project_url("/events/orders"))
                .header("Authorization", key)
                .json(&body),
        )
    };
    let token = json!({"keen": {"uniqueness_token": "order-1"}, "total": 5});
    assert_eq!(post(&acme, token.clone()).await.0, 201);
    assert_eq!(post(&globex, token.clone()).await.0, 201);
    assert_eq!(post(&server.project.write, token.clone()).await.0, 201);
    // Retries within one scope are still deduplicated.
    assert_eq!(post(&acme, token.clone()).await.0, 201);
    assert_eq!(post(&globex, token.clone()).await.0, 201);
    assert_eq!(post(&server.project.write, token.clone()).await.0, 201);
    assert_eq!(count(&server, "orders").await, 3);
    let url = server.project_url("/queries/count?event_collection=orders");
    let per_tenant = |key: String| {
        let url = url.clone();
        async move { send(client().get(url).header("Authorization", key)).await.1["result"].clone() }
    };
    assert_eq!(per_tenant(acme.clone()).await, 1);
    assert_eq!(per_tenant(globex.clone()).await, 1);
    // The scope survives a flush and a restart of the token index.
    server.storage.flush().await.unwrap();
    assert_eq!(post(&acme, token.clone()).await.0, 201);
    assert_eq!(count(&server, "orders").await, 3);
    // The hidden scope property shows neither in the schema nor in extractions.
    let url = server.project_url("/events/orders");
    let (_, schema) = send(
        client()
            .get(url)
            .header("Authorization", &server.project.master),
    )
    .await;
    assert!(
        schema["properties"].get("keen.uniqueness_scope").is_none(),
        "{schema}"
    );
    assert_eq!(schema["properties"]["keen.uniqueness_token"], "string");
    let url = server.project_url("/queries/extraction?event_collection=orders");
    let (_, extracted) = send(client().get(url).header("Authorization", &acme)).await;
    let event = &extracted["result"][0];
    assert_eq!(event["keen"]["uniqueness_token"], "order-1");
    assert!(event["keen"].get("uniqueness_scope").is_none(), "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_collection_and_property_names_are_refused() {
    let server = InProcessServer::start().await;
    for encoded in ["..", "%2E%2E", "..%2F..%2Fx", "a%2Fb", "a%5Cb"] {
        let url = server.project_url(&format!("/events/{encoded}"));
        let answer = send(
            client()
                .post(url)
                .header("Authorization", &server.project.write)
                .json(&json!({"a": 1})),
        )
        .await;
        assert!(
            answer.1["error_code"] == "InvalidCollectionNameError" || answer.0 == 404,
            "{encoded}: {answer:?}"
        );
        assert_ne!(answer.0, 201, "{encoded}");
    }
    let batch = json!({"../../x": [{"a": 1}], "a/b": [{"a": 1}]});
    let (status, body) = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&batch),
    )
    .await;
    assert_eq!(status, 200);
    for collection in ["../../x", "a/b"] {
        assert_eq!(body[collection][0]["success"], false, "{body}");
        assert_eq!(
            body[collection][0]["error"]["name"],
            "InvalidCollectionNameError"
        );
    }
    for name in [
        "nul\u{0}byte",
        "evil\u{202E}txt",
        "zero\u{200B}width",
        "\u{FEFF}bom",
    ] {
        let mut event = serde_json::Map::new();
        event.insert(name.to_string(), json!(1));
        let answer = send(
            client()
                .post(server.project_url("/events/names"))
                .header("Authorization", &server.project.write)
                .json(&Value::Object(event)),
        )
        .await;
        assert_keen_error(&answer, 400, "InvalidPropertyNameError");
    }
    let nested = json!({"user": {"na\u{202E}me": "x"}});
    let answer = send(
        client()
            .post(server.project_url("/events/names"))
            .header("Authorization", &server.project.write)
            .json(&nested),
    )
    .await;
    assert_keen_error(&answer, 400, "InvalidPropertyNameError");
    assert!(server.storage.collections(&server.project.id).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collection_stops_growing_columns_at_its_cap() {
    let server = InProcessServer::start_with(TestLimits {
        max_columns_per_collection: Some(50),
        ..Default::default()
    })
    .await;
    let wide = |prefix: &str, properties: usize| {
        let mut event = serde_json::Map::new();
        for index in 0..properties {
            event.insert(format!("{prefix}{index}"), json!(index));
        }
        Value::Object(event)
    };
    let post = |event: Value| {
        send(
            client()
                .post(server.project_url("/events/wide"))
                .header("Authorization", &server.project.write)
                .json(&event),
        )
    };
    assert_keen_error(
        &post(wide("p", 5_000)).await,
        400,
        "InvalidPropertyNameError",
    );
    assert_eq!(post(wide("p", 40)).await.0, 201);
    // A batch: events within the cap are kept, the one past it is refused, others still go in.
    let batch =
        json!({"wide": [wide("p", 40), wide("q", 20), wide("r", 5), {"p1": "now a string"}]});
    let (status, body) = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&batch),
    )
    .await;
    assert_eq!(status, 200);
    let outcomes: Vec<Value> = body["wide"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["success"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [json!(true), json!(false), json!(true), json!(true)]
    );
    assert_eq!(body["wide"][1]["error"]["name"], "InvalidPropertyNameError");
    assert_eq!(count(&server, "wide").await, 4);
    let columns: usize = server
        .storage
        .collection_schema(&keyhole_storage::CollectionId {
            project: server.project.id.clone(),
            collection: "wide".into(),
        })
        .unwrap()
        .properties
        .values()
        .map(|property| property.kinds.len())
        .sum();
    assert_eq!(columns, 46);
    // Many writers with fresh names: the cap holds, and reads stay fast.
    let writers = (0..20).map(|writer| post(wide(&format!("w{writer}_"), 5_000)));
    for answer in futures::future::join_all(writers).await {
        assert_keen_error(&answer, 400, "InvalidPropertyNameError");
    }
    let started = Instant::now();
    assert_eq!(count(&server, "wide").await, 4);
    let url = server.project_url("/events/wide");
    let (status, _) = send(
        client()
            .get(url)
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}
