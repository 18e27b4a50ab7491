//! `Idempotency-Key`: a write sent again with the same key stores its events once — a single event, a
//! batch for a collection and the multi-collection batch — while a new key stores them again, an event's
//! own `keen.uniqueness_token` is kept, and a malformed key is refused before anything is stored.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

async fn post(
    server: &InProcessServer,
    rest: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = client()
        .post(server.project_url(rest))
        .header("Authorization", &server.project.write)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    send(request).await
}

async fn count(server: &InProcessServer, collection: &str) -> u64 {
    let answer = server
        .post_json(
            "/queries/count",
            &server.project.master,
            &json!({"event_collection": collection}),
        )
        .await;
    answer.1["result"].as_u64().unwrap()
}

#[tokio::test]
async fn a_write_retried_with_the_same_idempotency_key_is_stored_once() {
    let server = InProcessServer::start().await;
    for _ in 0..3 {
        let single = post(&server, "/events/orders", Some("order-1"), &json!({"n": 1})).await;
        assert_eq!(single.0, 201, "{}", single.1);
        let list = post(
            &server,
            "/events/orders",
            Some("list-1"),
            &json!([{"n": 2}, {"n": 2}]),
        )
        .await;
        assert_eq!(list.0, 200, "{}", list.1);
        let batch = post(
            &server,
            "/events",
            Some("batch-1"),
            &json!({"orders": [{"n": 3}], "visits": [{"page": "/"}, {"page": "/"}]}),
        )
        .await;
        assert_eq!(batch.0, 200, "{}", batch.1);
        assert_eq!(batch.1["visits"][1]["success"], true, "{}", batch.1);
    }
    // Once each: 1 + 2 (two events of one list, told apart by position) + 1, and 2 visits.
    assert_eq!(count(&server, "orders").await, 4);
    assert_eq!(count(&server, "visits").await, 2);
    // Another key is another request.
    let again = post(&server, "/events/orders", Some("order-2"), &json!({"n": 1})).await;
    assert_eq!(again.0, 201);
    assert_eq!(count(&server, "orders").await, 5);
    // An event's own token wins over the derived one.
    for key in ["own-a", "own-b"] {
        let own = post(
            &server,
            "/events/orders",
            Some(key),
            &json!({"n": 9, "keen": {"uniqueness_token": "mine"}}),
        )
        .await;
        assert_eq!(own.0, 201);
    }
    assert_eq!(count(&server, "orders").await, 6);
    let stored = server.extraction("orders").await;
    let tokens: Vec<&str> = stored
        .iter()
        .filter_map(|event| event["keen"]["uniqueness_token"].as_str())
        .collect();
    assert!(tokens.contains(&"mine"));
    assert!(tokens.iter().any(|token| token.starts_with("idempotency:")));
    // A malformed key stores nothing.
    for bad in ["", "a key with spaces", &"k".repeat(256)] {
        let refused = send(
            client()
                .post(server.project_url("/events/orders"))
                .header("Authorization", &server.project.write)
                .header("Idempotency-Key", bad)
                .json(&json!({"n": 100})),
        )
        .await;
        assert_keen_error(&refused, 400, "InvalidRequestError");
    }
    assert_eq!(count(&server, "orders").await, 6);
}
