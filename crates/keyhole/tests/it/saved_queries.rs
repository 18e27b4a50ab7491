//! Saved queries over HTTP: Keen's create/replace/get/list/delete with the master key, and `/result`
//! answered live in the reading key's scope — each tenant's key gets its own numbers from one saved query,
//! and keys limited by `options.saved_queries` run only what they may.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

async fn put(server: &InProcessServer, name: &str, body: Value) -> (u16, Value) {
    send(
        client()
            .put(server.project_url(&format!("/queries/saved/{name}")))
            .header("Authorization", &server.project.master)
            .json(&body),
    )
    .await
}

async fn get(server: &InProcessServer, path: &str, key: &str) -> (u16, Value) {
    send(
        client()
            .get(server.project_url(&format!("/queries/saved{path}")))
            .header("Authorization", key),
    )
    .await
}

fn tenant_key(tenant: &str, options: Value) -> Value {
    let mut options = options;
    options["queries"] = json!({"filters": [{"property_name": "tenant", "operator": "eq", "property_value": tenant}]});
    json!({"name": tenant, "permitted": ["saved_queries"], "options": options})
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_queries_are_managed_and_answer_in_each_keys_scope() {
    let server = InProcessServer::start().await;
    let events: Vec<Value> = [("a", 5), ("a", 7), ("b", 100), ("a", 1)]
        .iter()
        .map(|(tenant, amount)| json!({"tenant": tenant, "amount": amount}))
        .collect();
    let written = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&json!({"orders": events})),
    )
    .await;
    assert_eq!(written.0, 200);

    let definition = json!({"refresh_rate": 0, "metadata": {"display_name": "Revenue"},
        "query": {"analysis_type": "sum", "event_collection": "orders", "target_property": "amount"}});
    let created = put(&server, "revenue", definition.clone()).await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["query_name"], "revenue");
    assert_eq!(created.1["metadata"]["display_name"], "Revenue");
    assert!(created.1["created_date"].is_string());
    assert_eq!(
        put(&server, "revenue", definition.clone()).await.0,
        200,
        "replace"
    );
    let master = server.project.master.clone();
    assert_eq!(
        get(&server, "/revenue", &master).await.1["query"]["analysis_type"],
        "sum"
    );
    assert_eq!(
        get(&server, "", &master).await.1.as_array().unwrap().len(),
        1
    );

    // Answers in the reading key's scope.
    assert_eq!(
        get(&server, "/revenue/result", &master).await.1["result"],
        113
    );
    assert_eq!(
        get(&server, "/revenue/result", &server.project.read)
            .await
            .1["result"],
        113
    );
    let key_a = server.create_access_key(tenant_key("a", json!({}))).await;
    let key_b = server.create_access_key(tenant_key("b", json!({}))).await;
    let for_a = get(&server, "/revenue/result", &key_a).await;
    assert_eq!(for_a.0, 200, "{}", for_a.1);
    assert_eq!(for_a.1["result"], 13);
    insta::assert_json_snapshot!("saved_query_result", for_a.1, {
        ".created_date" => "[date]", ".last_modified_date" => "[date]"
    });
    assert_eq!(
        get(&server, "/revenue/result", &key_b).await.1["result"],
        100
    );
    // options.saved_queries: allowed/blocked lists and extra filters.
    let only_other = server
        .create_access_key(tenant_key(
            "a",
            json!({"saved_queries": {"allowed": ["other"]}}),
        ))
        .await;
    assert_keen_error(
        &get(&server, "/revenue/result", &only_other).await,
        401,
        "RequestForbiddenError",
    );
    let filtered = server
        .create_access_key(tenant_key(
            "a",
            json!({"saved_queries": {"filters": [
            {"property_name": "amount", "operator": "gt", "property_value": 4}]}}),
        ))
        .await;
    assert_eq!(
        get(&server, "/revenue/result", &filtered).await.1["result"],
        12
    );
    // A key for saved queries cannot run ad-hoc ones, nor manage saved queries.
    let ad_hoc = send(
        client()
            .get(server.project_url("/queries/count?event_collection=orders"))
            .header("Authorization", &key_a),
    )
    .await;
    assert_keen_error(&ad_hoc, 401, "RequestForbiddenError");
    assert_eq!(get(&server, "", &key_a).await.0, 401);

    // Validation, renaming, deletion.
    let bad = put(
        &server,
        "broken",
        json!({"query": {"analysis_type": "sum", "event_collection": "orders"}}),
    )
    .await;
    assert_keen_error(&bad, 400, "InvalidParameterError");
    let renamed = put(
        &server,
        "revenue",
        json!({"query_name": "income", "query": definition["query"]}),
    )
    .await;
    assert_eq!(
        (renamed.0, &renamed.1["query_name"]),
        (200, &json!("income"))
    );
    assert_eq!(get(&server, "/revenue", &master).await.0, 404);
    let deleted = send(
        client()
            .delete(server.project_url("/queries/saved/income"))
            .header("Authorization", &master),
    )
    .await;
    assert_eq!(deleted.0, 204);
    assert_keen_error(
        &get(&server, "/income/result", &master).await,
        404,
        "ResourceNotFoundError",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_queries_are_read_with_the_cached_queries_permission() {
    let server = InProcessServer::start().await;
    let query = json!({"analysis_type": "count", "event_collection": "orders"});
    assert_eq!(put(&server, "plain", json!({"query": query})).await.0, 201);
    assert_eq!(
        put(
            &server,
            "cached",
            json!({"query": query, "refresh_rate": 14400})
        )
        .await
        .0,
        201
    );
    assert_keen_error(
        &put(
            &server,
            "too-often",
            json!({"query": query, "refresh_rate": 60}),
        )
        .await,
        400,
        "InvalidParameterError",
    );
    let cached_only = server
        .create_access_key(json!({"name": "c", "permitted": ["cached_queries"]}))
        .await;
    assert_eq!(get(&server, "/cached/result", &cached_only).await.0, 200);
    assert_keen_error(
        &get(&server, "/plain/result", &cached_only).await,
        401,
        "RequestForbiddenError",
    );
    let blocked = server
        .create_access_key(json!({"name": "b", "permitted": ["cached_queries"],
            "options": {"cached_queries": {"blocked": ["cached"]}}}))
        .await;
    assert_keen_error(
        &get(&server, "/cached/result", &blocked).await,
        401,
        "RequestForbiddenError",
    );
    let neither = server
        .create_access_key(json!({"name": "n", "permitted": ["queries"]}))
        .await;
    assert_keen_error(
        &get(&server, "/cached/result", &neither).await,
        401,
        "RequestForbiddenError",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_results_are_stored_per_scope_and_max_age_asks_for_fresher() {
    let server = InProcessServer::start().await;
    let write = |tenant: &'static str| {
        send(
            client()
                .post(server.project_url("/events/orders"))
                .header("Authorization", &server.project.write)
                .json(&json!({"tenant": tenant})),
        )
    };
    write("a").await;
    write("b").await;
    let query = json!({"analysis_type": "count", "event_collection": "orders"});
    assert_eq!(
        put(
            &server,
            "orders",
            json!({"query": query, "refresh_rate": 14400})
        )
        .await
        .0,
        201
    );
    let key_a = server.create_access_key(tenant_key("a", json!({}))).await;
    let key_b = server.create_access_key(tenant_key("b", json!({}))).await;

    let first = get(&server, "/orders/result", &key_a).await;
    assert_eq!(first.1["result"], 1);
    assert_eq!(first.1["run_information"]["served_from_cache"], false);
    write("a").await;
    // Within the refresh rate: the stored answer, for this scope only.
    let stored = get(&server, "/orders/result", &key_a).await;
    assert_eq!(
        (
            &stored.1["result"],
            &stored.1["run_information"]["served_from_cache"]
        ),
        (&json!(1), &json!(true))
    );
    insta::assert_json_snapshot!("cached_query_result", stored.1, {
        ".created_date" => "[date]", ".last_modified_date" => "[date]",
        ".run_information.last_run_date" => "[date]", ".run_information.age_seconds" => "[age]"
    });
    assert_eq!(
        get(&server, "/orders/result", &key_b).await.1["result"],
        1,
        "b's own scope"
    );
    assert_eq!(
        get(&server, "/orders/result", &server.project.master)
            .await
            .1["result"],
        3
    );
    // max_age asks for no older than that: a live answer.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresher = get(&server, "/orders/result?max_age=1", &key_a).await;
    assert_eq!(
        (
            &fresher.1["result"],
            &fresher.1["run_information"]["served_from_cache"]
        ),
        (&json!(2), &json!(false))
    );
    // max_age=0 is always a live answer, even right after one was stored.
    let _ = get(&server, "/orders/result", &key_a).await;
    let live = get(&server, "/orders/result?max_age=0", &key_a).await;
    assert_eq!(live.0, 200, "{}", live.1);
    assert_eq!(live.1["run_information"]["served_from_cache"], false);
    for refused in ["-1", "1.5", "2678401", "soon"] {
        assert_keen_error(
            &get(
                &server,
                &format!("/orders/result?max_age={refused}"),
                &key_a,
            )
            .await,
            400,
            "InvalidParameterError",
        );
    }
    // Replacing the definition drops its stored results.
    write("a").await;
    assert_eq!(
        put(
            &server,
            "orders",
            json!({"query": query, "refresh_rate": 14400})
        )
        .await
        .0,
        200
    );
    assert_eq!(get(&server, "/orders/result", &key_a).await.1["result"], 3);
}
