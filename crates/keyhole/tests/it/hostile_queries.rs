//! Hostile queries, as a tenant's browser could send them with its key: huge filter lists, absurd
//! timeframes, answers that would exhaust memory, side channels. Each must get a Keen-style answer and
//! leave the server serving; each case here once crashed, exhausted or leaked.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{InProcessServer, TestLimits, assert_keen_error, client, send};

/// Creates an access key; returns its secret.
pub async fn tenant_key(server: &InProcessServer, tenant: &str, permitted: &[&str]) -> String {
    let (status, created) = send(
        client()
            .post(server.project_url("/keys"))
            .header("Authorization", &server.project.master)
            .json(&json!({
                "name": format!("tenant {tenant}"),
                "permitted": permitted,
                "options": {
                    "queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": tenant}]},
                    "writes": {"autofill": {"tenant": tenant}},
                },
            })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().unwrap().to_string()
}

pub async fn write_batch(server: &InProcessServer, collection: &str, events: Value) {
    let (status, body) = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&json!({ collection: events })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn query(server: &InProcessServer, key: &str, analysis: &str, body: Value) -> (u16, Value) {
    send(
        client()
            .post(server.project_url(&format!("/queries/{analysis}")))
            .header("Authorization", key)
            .json(&body),
    )
    .await
}

async fn assert_alive(server: &InProcessServer) {
    let (status, _) = send(client().get(server.url("/health"))).await;
    assert_eq!(status, 200, "the server must survive");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_filter_lists_answer_instead_of_overflowing_the_stack() {
    let server = InProcessServer::start().await;
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"tenant": if i % 2 == 0 { "acme" } else { "globex" }, "n": i}))
        .collect();
    write_batch(&server, "hits", Value::Array(events)).await;
    let acme = tenant_key(&server, "acme", &["queries"]).await;

    let many_values: Vec<Value> = (0..950).map(|i| json!(i)).collect();
    let in_filter = json!({"event_collection": "hits",
        "filters": [{"property_name": "n", "operator": "in", "property_value": many_values}]});
    let answer = query(&server, &acme, "count", in_filter).await;
    assert_eq!(answer, (200, json!({"result": 10})));

    let operands: Vec<Value> = (0..950)
        .map(|i| json!({"property_name": "n", "operator": "eq", "property_value": i}))
        .collect();
    let or_filter = json!({"event_collection": "hits",
        "filters": [{"operator": "or", "operands": operands}]});
    let answer = query(&server, &acme, "count", or_filter).await;
    assert_eq!(answer, (200, json!({"result": 10})));

    let anded: Vec<Value> = (0..700)
        .map(|i| json!({"property_name": "n", "operator": "ne", "property_value": 1000 + i}))
        .collect();
    let and_filter = json!({"event_collection": "hits", "filters": anded});
    let answer = query(&server, &acme, "count", and_filter).await;
    assert_eq!(answer, (200, json!({"result": 10})));

    // Past the limits: refused before anything is planned.
    let too_many_values: Vec<Value> = (0..10_001).map(|i| json!(i)).collect();
    let too_many_conditions: Vec<Value> = (0..1_001)
        .map(|i| json!({"property_name": "n", "operator": "ne", "property_value": i}))
        .collect();
    let mut nested = json!({"property_name": "n", "operator": "eq", "property_value": 1});
    for _ in 0..9 {
        nested = json!({"operator": "or", "operands": [nested]});
    }
    for filters in [
        json!([{"property_name": "n", "operator": "in", "property_value": too_many_values}]),
        Value::Array(too_many_conditions),
        json!([nested]),
    ] {
        let answer = query(
            &server,
            &acme,
            "count",
            json!({"event_collection": "hits", "filters": filters}),
        )
        .await;
        assert_keen_error(&answer, 400, "InvalidFilterError");
    }
    // A funnel's steps share the query's budget.
    let step_filters: Vec<Value> = (0..600)
        .map(|i| json!({"property_name": "n", "operator": "ne", "property_value": i}))
        .collect();
    let step = json!({"event_collection": "hits", "actor_property": "n", "filters": step_filters});
    let answer = query(&server, &acme, "funnel", json!({"steps": [step, step]})).await;
    assert_keen_error(&answer, 400, "InvalidFilterError");
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn absurd_timeframes_are_refused_not_panics() {
    let server = InProcessServer::start().await;
    write_batch(&server, "hits", json!([{"tenant": "acme"}])).await;
    for timeframe in [
        json!("this_4294967295_weeks"),
        json!("this_99999999_days"),
        json!("this_300000_years"),
        json!("previous_4294967295_months"),
        json!({"start": "+200000-01-01T00:00:00Z", "end": "+200001-01-01T00:00:00Z"}),
    ] {
        for analysis in ["count", "extraction"] {
            let answer = query(
                &server,
                &server.project.read,
                analysis,
                json!({"event_collection": "hits", "timeframe": timeframe, "interval": if analysis == "count" { json!("daily") } else { Value::Null }}),
            )
            .await;
            assert_keen_error(&answer, 400, "TimeframeDefinitionError");
        }
        let funnel = json!({"steps": [{"event_collection": "hits", "actor_property": "tenant", "timeframe": timeframe}]});
        let answer = query(&server, &server.project.read, "funnel", funnel).await;
        assert_keen_error(&answer, 400, "TimeframeDefinitionError");
    }
    let url =
        server.project_url("/queries/count?event_collection=hits&timeframe=this_4294967295_weeks");
    let answer = send(
        client()
            .get(url)
            .header("Authorization", &server.project.read),
    )
    .await;
    assert_keen_error(&answer, 400, "TimeframeDefinitionError");
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_past_the_cell_cap_are_refused_before_they_are_built() {
    let server = InProcessServer::start_with(TestLimits {
        queries: keyhole_query::QueryLimits {
            max_result_cells: 5_000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let events: Vec<Value> = (0..400)
        .map(|i| json!({"tenant": "acme", "user": format!("u{i}"), "n": i}))
        .collect();
    write_batch(&server, "hits", Value::Array(events)).await;
    let acme = tenant_key(&server, "acme", &["queries"]).await;
    // 400 groups × 2 880 minutes would be over a million cells.
    let minutely = json!({"event_collection": "hits", "group_by": "user", "interval": "minutely", "timeframe": "this_2_days"});
    assert_keen_error(
        &query(&server, &acme, "count", minutely).await,
        400,
        "LimitExceededError",
    );
    // 20 analyses × 400 groups = 8 000 cells.
    let analyses: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("a{i}"), json!({"analysis_type": "count"})))
        .collect();
    let multi = json!({"event_collection": "hits", "group_by": "user", "analyses": analyses});
    assert_keen_error(
        &query(&server, &acme, "multi_analysis", multi).await,
        400,
        "LimitExceededError",
    );
    // 400 distinct values listed by 20 groups... within the cap; and over it with fewer, larger lists.
    let select = json!({"event_collection": "hits", "target_property": "n", "group_by": "user"});
    let (status, _) = query(&server, &acme, "select_unique", select).await;
    assert_eq!(status, 200, "400 groups of one value each fit");
    let many_buckets = json!({"event_collection": "hits", "interval": "minutely", "timeframe": "this_5_days",
        "analyses": {"a": {"analysis_type": "count"}, "b": {"analysis_type": "count"}}});
    assert_keen_error(
        &query(&server, &acme, "multi_analysis", many_buckets).await,
        400,
        "LimitExceededError",
    );
    // Under the cap the same shapes answer.
    let small = json!({"event_collection": "hits", "group_by": "user", "interval": "daily", "timeframe": "this_2_days"});
    assert_eq!(query(&server, &acme, "count", small).await.0, 200);
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_past_their_memory_budget_or_time_get_clear_errors() {
    let server = InProcessServer::start_with(TestLimits {
        queries: keyhole_query::QueryLimits {
            memory_bytes: 256 * 1024,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let events: Vec<Value> = (0..20_000)
        .map(|i| json!({"user": format!("user-{i}-{}", "x".repeat(40)), "n": i}))
        .collect();
    for chunk in events.chunks(5_000) {
        write_batch(&server, "hits", Value::Array(chunk.to_vec())).await;
    }
    let grouped = json!({"event_collection": "hits", "target_property": "user", "group_by": "n"});
    assert_keen_error(
        &query(&server, &server.project.read, "count_unique", grouped).await,
        413,
        "QueryTooLargeError",
    );
    let plain = json!({"event_collection": "hits"});
    assert_eq!(
        query(&server, &server.project.read, "count", plain).await,
        (200, json!({"result": 20_000}))
    );

    // A zero budget: the timer has elapsed by the query's first wait, however fast the machine (with any
    // budget under the timer's millisecond resolution a quick run can finish first).
    let slow = InProcessServer::start_with(TestLimits {
        queries: keyhole_query::QueryLimits {
            timeout: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let events: Vec<Value> = (0..20_000).map(|i| json!({"n": i % 977})).collect();
    for chunk in events.chunks(5_000) {
        write_batch(&slow, "hits", Value::Array(chunk.to_vec())).await;
    }
    let answer = query(
        &slow,
        &slow.project.read,
        "median",
        json!({"event_collection": "hits", "target_property": "n", "group_by": "n"}),
    )
    .await;
    assert_keen_error(&answer, 504, "QueryTimeoutError");
    assert_alive(&slow).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_queries_past_the_concurrency_cap_is_told_to_retry() {
    let server = InProcessServer::start_with(TestLimits {
        queries: keyhole_query::QueryLimits {
            max_concurrent: 1,
            queue_wait: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let events: Vec<Value> = (0..30_000).map(|i| json!({"n": i % 5_000})).collect();
    for chunk in events.chunks(5_000) {
        write_batch(&server, "hits", Value::Array(chunk.to_vec())).await;
    }
    let body = json!({"event_collection": "hits", "target_property": "n", "group_by": "n"});
    let requests = (0..24).map(|_| {
        client()
            .post(server.project_url("/queries/median"))
            .header("Authorization", &server.project.read)
            .json(&body)
            .send()
    });
    let mut refused = 0;
    for response in futures::future::join_all(requests).await {
        let response = response.unwrap();
        let status = response.status().as_u16();
        if status == 503 {
            refused += 1;
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error_code"], "TooManyQueriesError");
        } else {
            assert_eq!(status, 200);
        }
    }
    assert!(
        refused > 0,
        "24 simultaneous queries with one slot and no queue"
    );
    // Writes go on meanwhile, and the next query runs.
    write_batch(&server, "hits", json!([{"n": 1}])).await;
    let answer = query(
        &server,
        &server.project.read,
        "count",
        json!({"event_collection": "hits"}),
    )
    .await;
    assert_eq!(answer, (200, json!({"result": 30_001})));
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_key_errors_reveal_nothing_outside_the_scope() {
    let server = InProcessServer::start().await;
    let mut events = vec![json!({"tenant": "acme"}), json!({"tenant": "acme"})];
    events.extend((0..13).map(|_| json!({"tenant": "globex", "plan": "gold", "seats": 40})));
    write_batch(&server, "hits", Value::Array(events)).await;
    write_batch(
        &server,
        "acme_only",
        json!([{"tenant": "acme"}, {"tenant": "acme"}]),
    )
    .await;
    write_batch(
        &server,
        "globex_only",
        json!([{"tenant": "globex"}, {"tenant": "globex"}]),
    )
    .await;
    server.storage.flush().await.unwrap();
    write_batch(&server, "hits", json!([{"tenant": "globex"}])).await;
    let acme = tenant_key(&server, "acme", &["queries"]).await;
    let with_metadata = |collection: &str| json!({"event_collection": collection, "include_metadata": true, "timeframe": "this_1_days"});
    let answer = query(&server, &acme, "count", with_metadata("hits")).await;
    assert_eq!(answer.1["result"], 2);
    assert_eq!(answer.1["execution_metadata"]["events_scanned"], 2);
    // Keen's four fields, counted as if the tenant's events were all there is: the same numbers as a
    // master-key read of a collection holding only those events (the other tenant's extra properties and
    // events leave no trace).
    let metadata = &answer.1["execution_metadata"];
    let alone = query(
        &server,
        &server.project.master,
        "count",
        with_metadata("acme_only"),
    )
    .await;
    for field in [
        "events_scanned",
        "properties_per_event",
        "total_properties_scanned",
    ] {
        assert_eq!(
            metadata[field], alone.1["execution_metadata"][field],
            "{field}: {metadata}"
        );
    }
    assert!(
        metadata["properties_per_event"].as_u64().unwrap() >= 1,
        "{metadata}"
    );
    assert_eq!(
        metadata["total_properties_scanned"].as_u64(),
        Some(2 * metadata["properties_per_event"].as_u64().unwrap())
    );
    assert!(metadata["total_processing_time"].as_f64().unwrap() >= 0.0);
    let other = query(&server, &acme, "count", with_metadata("globex_only")).await;
    let missing = query(&server, &acme, "count", with_metadata("never_written")).await;
    assert_eq!(other.1["result"], missing.1["result"]);
    assert_eq!(
        other.1["execution_metadata"]["events_scanned"],
        missing.1["execution_metadata"]["events_scanned"]
    );
    let funnel = json!({"include_metadata": true, "steps": [
        {"event_collection": "hits", "actor_property": "tenant"},
        {"event_collection": "globex_only", "actor_property": "tenant"}]});
    let answer = query(&server, &acme, "funnel", funnel).await;
    assert_eq!(answer.1["execution_metadata"]["events_scanned"], 2);
    let extraction = query(&server, &acme, "extraction", with_metadata("hits")).await;
    assert_eq!(extraction.1["execution_metadata"]["events_scanned"], 2);
    // The master key still sees the whole collection scanned.
    let answer = query(
        &server,
        &server.project.master,
        "count",
        with_metadata("hits"),
    )
    .await;
    assert_eq!(answer.1["execution_metadata"]["events_scanned"], 16);
    let master_properties = answer.1["execution_metadata"]["total_properties_scanned"]
        .as_u64()
        .unwrap();
    assert!(
        master_properties > 16 * metadata["properties_per_event"].as_u64().unwrap(),
        "{}",
        answer.1
    );

    // A key of another project and a random string get the same answer.
    let (_, other_project) = send(
        client()
            .post(server.url(&format!("/3.0/organizations/{}/projects", server.org_id)))
            .header("Authorization", &server.org_key)
            .json(&json!({"name": "other"})),
    )
    .await;
    let foreign = other_project["api_keys"]["read"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.project_url("/queries/count?event_collection=hits");
    let with_foreign = send(client().get(&url).header("Authorization", &foreign)).await;
    let with_random = send(client().get(&url).header("Authorization", "f".repeat(64))).await;
    assert_keen_error(&with_foreign, 401, "InvalidApiKeyError");
    assert_eq!(with_foreign, with_random);
}
