//! Deletes over HTTP: the master key deletes exactly the events matching filters, timeframe and
//! timezone, in memory and in Parquet files alike, and a property from every event; an access key with
//! the `deletes` operation deletes only inside its forced filters; dataset results stored before a delete
//! are not served after it.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

async fn count(server: &InProcessServer, filters: Value) -> i64 {
    let answer = send(
        client()
            .post(server.project_url("/queries/count"))
            .header("Authorization", &server.project.master)
            .json(&json!({"event_collection": "orders", "filters": filters})),
    )
    .await;
    answer.1["result"].as_i64().unwrap()
}

async fn delete(server: &InProcessServer, key: &str, params: &[(&str, String)]) -> (u16, Value) {
    send(
        client()
            .delete(server.project_url("/events/orders"))
            .query(params)
            .header("Authorization", key),
    )
    .await
}

fn tenant(name: &str) -> Value {
    json!({"property_name": "tenant", "operator": "eq", "property_value": name})
}

fn at(day: u32, hour: u32) -> Value {
    json!({"timestamp": format!("2024-06-{day:02}T{hour:02}:30:00.000Z")})
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_remove_exactly_the_matching_events_from_memory_and_files() {
    let server = InProcessServer::start().await;
    let mut events = Vec::new();
    for index in 0..60u32 {
        events.push(
            json!({"tenant": (["a", "b", "c"][(index % 3) as usize]), "amount": index,
                           "user": {"email": format!("u{index}@example.com"), "plan": "pro"},
                           "keen": at(1 + index % 4, index % 24)}),
        );
    }
    server.write_events("orders", events[..40].to_vec()).await;
    server.storage.flush().await.unwrap();
    server.write_events("orders", events[40..].to_vec()).await;
    assert_eq!(count(&server, json!([])).await, 60);

    // Master: tenant a's events on June 2nd in Berlin time, as keen-analysis and the SDKs send them.
    let selected =
        json!([tenant("a"), {"property_name": "amount", "operator": "gte", "property_value": 10}]);
    let timeframe =
        json!({"start": "2024-06-02T00:00:00+02:00", "end": "2024-06-03T00:00:00+02:00"});
    let matching = [selected.as_array().unwrap().clone(), vec![]].concat();
    let in_window = |events: &[Value]| {
        events
            .iter()
            .filter(|event| {
                let time = keyhole_model::timestamp::parse_timestamp(
                    event["keen"]["timestamp"].as_str().unwrap(),
                )
                .unwrap();
                let start =
                    keyhole_model::timestamp::parse_timestamp("2024-06-01T22:00:00Z").unwrap();
                event["tenant"] == "a"
                    && event["amount"].as_u64().unwrap() >= 10
                    && (start..start + 86_400_000).contains(&time)
            })
            .count() as i64
    };
    let doomed = in_window(&events);
    assert!(doomed > 0);
    let answer = delete(
        &server,
        &server.project.master,
        &[
            ("filters", Value::Array(matching).to_string()),
            ("timeframe", timeframe.to_string()),
            ("timezone", "Europe/Berlin".into()),
        ],
    )
    .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    assert_eq!(count(&server, json!([])).await, 60 - doomed);
    assert_eq!(count(&server, json!([tenant("b")])).await, 20);
    assert_eq!(count(&server, json!([tenant("a")])).await, 20 - doomed);

    // A property, from every event in memory and in files; unknown properties are 404.
    let properties = |server: &InProcessServer| {
        let url = server.project_url("/events/orders");
        let key = server.project.master.clone();
        async move {
            let answer = send(client().get(url).header("Authorization", key)).await;
            answer.1["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    assert!(
        properties(&server)
            .await
            .contains(&"user.email".to_string())
    );
    let property_url =
        |name: &str| server.project_url(&format!("/events/orders/properties/{name}"));
    let removed = client()
        .delete(property_url("user.email"))
        .header("Authorization", &server.project.master)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let remaining = properties(&server).await;
    assert!(
        !remaining.contains(&"user.email".to_string()),
        "{remaining:?}"
    );
    assert!(remaining.contains(&"user.plan".to_string()));
    let extraction = send(
        client()
            .post(server.project_url("/queries/extraction"))
            .header("Authorization", &server.project.master)
            .json(&json!({"event_collection": "orders"})),
    )
    .await;
    assert!(!extraction.1.to_string().contains("@example.com"));
    for (name, key, status) in [
        ("nope", server.project.master.clone(), 404),
        ("keen.id", server.project.master.clone(), 400),
        ("user.plan", server.project.write.clone(), 401),
    ] {
        let answer = send(
            client()
                .delete(property_url(name))
                .header("Authorization", key),
        )
        .await;
        assert_eq!(answer.0, status, "{name}: {}", answer.1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletes_key_erases_its_own_customers_events_and_nothing_else() {
    let server = InProcessServer::start().await;
    let events: Vec<Value> = (0..30u32)
        .map(|index| json!({"tenant": (["a", "b"][(index % 2) as usize]), "amount": index}))
        .collect();
    server.write_events("orders", events).await;
    let erase_a = server
        .create_access_key(json!({"name": "gdpr a", "permitted": ["deletes"],
            "options": {"queries": {"filters": [tenant("a")]}}}))
        .await;
    // Filters naming the other tenant match nothing in this key's scope.
    let answer = delete(
        &server,
        &erase_a,
        &[("filters", json!([tenant("b")]).to_string())],
    )
    .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    assert_eq!(count(&server, json!([tenant("b")])).await, 15);
    // Its own events above 20 only.
    let over_20 = json!([{"property_name": "amount", "operator": "gt", "property_value": 20}]);
    assert_eq!(
        delete(&server, &erase_a, &[("filters", over_20.to_string())])
            .await
            .0,
        204
    );
    assert_eq!(count(&server, json!([tenant("a")])).await, 11);
    assert_eq!(count(&server, json!([tenant("b")])).await, 15);
    // A collection that does not exist looks like one with none of its events: no 404 to probe names.
    let unknown = send(
        client()
            .delete(server.project_url("/events/no-such-collection"))
            .header("Authorization", &erase_a),
    )
    .await;
    assert_eq!(unknown.0, 204, "{}", unknown.1);
    // No parameters: everything in its scope, never the collection.
    assert_eq!(delete(&server, &erase_a, &[]).await.0, 204);
    assert_eq!(count(&server, json!([tenant("a")])).await, 0);
    assert_eq!(count(&server, json!([])).await, 15);
    // The key cannot read, and keys without `deletes` cannot delete.
    let query = send(
        client()
            .get(server.project_url("/queries/count?event_collection=orders"))
            .header("Authorization", &erase_a),
    )
    .await;
    assert_keen_error(&query, 401, "RequestForbiddenError");
    let reader = server
        .create_access_key(json!({"name": "reader", "permitted": ["queries"]}))
        .await;
    assert_keen_error(
        &delete(&server, &reader, &[]).await,
        401,
        "RequestForbiddenError",
    );
    assert_keen_error(
        &delete(&server, &server.project.write, &[]).await,
        401,
        "AdminOnlyEndpointError",
    );
    assert_eq!(count(&server, json!([])).await, 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn dataset_results_stored_before_a_delete_are_not_served_after_it() {
    let server = InProcessServer::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..20i64)
        .map(|index| json!({"tenant": "a", "amount": index,
            "keen": {"timestamp": keyhole_model::timestamp::format_timestamp(now - (1 + index % 3) * 86_400_000)}}))
        .collect();
    server.write_events("orders", events).await;
    let created = send(
        client()
            .put(server.project_url("/datasets/amounts"))
            .header("Authorization", &server.project.master)
            .json(&json!({"index_by": "tenant", "query": {"analysis_type": "count", "event_collection": "orders",
                                                          "timeframe": "this_5_days", "interval": "daily"}})),
    )
    .await;
    assert_eq!(created.0, 201);
    let total = |server: &InProcessServer| {
        let url = server.project_url("/datasets/amounts/results");
        let key = server.project.master.clone();
        async move {
            let answer = send(
                client()
                    .get(url)
                    .query(&[("index_by", "a"), ("timeframe", "this_5_days")])
                    .header("Authorization", key),
            )
            .await;
            answer.1["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|bucket| bucket["value"].as_i64().unwrap())
                .sum::<i64>()
        }
    };
    assert_eq!(total(&server).await, 20);
    assert_eq!(total(&server).await, 20, "from stored buckets");
    let odd =
        json!([{"property_name": "amount", "operator": "in", "property_value": [1, 3, 5, 7]}]);
    assert_eq!(
        delete(
            &server,
            &server.project.master,
            &[("filters", odd.to_string())]
        )
        .await
        .0,
        204
    );
    assert_eq!(total(&server).await, 16);
}
