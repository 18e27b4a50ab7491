//! Property-based tenant isolation: random multi-tenant events and random queries of every analysis type
//! (random group_by, interval and filters). For each tenant, the answer with the tenant's access key must
//! equal the answer with the master key plus the tenant's filter, and must never mention another tenant.
//! The same holds for an embed token derived from the tenant's key with a narrowing filter of its own
//! (reference: master + tenant filter + token filter), for the same query saved once (every other case as a
//! cached query, read twice so the second answer comes from the result stored for the tenant's scope) and
//! read through `/queries/saved/{name}/result` with each tenant's key, for interval queries defined as a dataset indexed
//! by `category` and read through `/datasets/{name}/results` (reference: master + tenant filter + the
//! index value), and an expired tenant key is refused every time. Each case ends with one tenant's key
//! deleting the events matching the query's filters: afterwards no other tenant has lost an event, and the
//! tenant has lost exactly its events that matched.
//! `KEYHOLE_ISOLATION_CASES` sets the number of cases (default 2,000, as in CI).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::{InProcessServer, client, send};

const TENANTS: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];

fn event_strategy() -> impl Strategy<Value = Value> {
    (
        0..3usize,
        prop_oneof![
            (-50i64..50).prop_map(|n| json!(n)),
            Just(json!("n/a")),
            Just(Value::Null)
        ],
        0..4usize,
        0..5usize,
        0..3i64,
    )
        .prop_map(|(tenant, amount, category, user, day)| {
            let category = ["red", "green", "blue", "none"][category];
            let mut event = json!({
                "vendor_id": TENANTS[tenant],
                "user": {"id": format!("u{user}"), "vendor": TENANTS[tenant]},
                "amount": amount,
                "keen": {"timestamp": format!("2024-05-0{}T12:00:00.000Z", day + 1)},
            });
            if category != "none" {
                event["category"] = json!(category);
            }
            event
        })
}

fn filter_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-50i64..50).prop_map(
            |n| json!({"property_name": "amount", "operator": "gt", "property_value": n})
        ),
        prop::sample::select(vec!["red", "green", "blue"]).prop_map(
            |c| json!({"property_name": "category", "operator": "eq", "property_value": c})
        ),
        any::<bool>().prop_map(
            |b| json!({"property_name": "category", "operator": "exists", "property_value": b})
        ),
        prop::sample::select(TENANTS.to_vec()).prop_map(
            |t| json!({"property_name": "vendor_id", "operator": "ne", "property_value": t})
        ),
        prop::sample::select(TENANTS.to_vec()).prop_map(|t| json!({"operator": "or", "operands": [
            {"property_name": "vendor_id", "operator": "eq", "property_value": t},
            {"property_name": "amount", "operator": "lt", "property_value": 0}]})),
    ]
}

fn query_strategy() -> impl Strategy<Value = (String, Value)> {
    let analysis = prop::sample::select(vec![
        "count",
        "count_unique",
        "minimum",
        "maximum",
        "sum",
        "average",
        "median",
        "percentile",
        "standard_deviation",
        "select_unique",
        "extraction",
        "funnel",
        "multi_analysis",
    ]);
    let target = prop::sample::select(vec![
        "amount",
        "user.id",
        "vendor_id",
        "user.vendor",
        "category",
    ]);
    let group_by = prop::sample::select(vec![
        None,
        Some("category"),
        Some("vendor_id"),
        Some("user.id"),
    ]);
    (analysis, target, group_by, any::<bool>(), prop::collection::vec(filter_strategy(), 0..3)).prop_map(|(analysis, target, group_by, interval, filters)| {
        let mut body = json!({"filters": filters, "percentile": 50, "target_property": target});
        match analysis {
            "funnel" => {
                body = json!({"steps": [
                    {"actor_property": "user.id", "filters": filters},
                    {"actor_property": "user.id", "filters": [{"property_name": "category", "operator": "exists", "property_value": true}], "with_actors": true},
                ]});
            }
            "multi_analysis" => {
                body["analyses"] = json!({"n": {"analysis_type": "count"}, "total": {"analysis_type": "sum", "target_property": "amount"}, "who": {"analysis_type": "select_unique", "target_property": target}});
            }
            _ => {}
        }
        if analysis != "funnel" && analysis != "extraction" {
            if let Some(group_by) = group_by {
                body["group_by"] = json!(group_by);
            }
            if interval {
                body["timeframe"] = json!({"start": "2024-05-01T00:00:00.000Z", "end": "2024-05-04T00:00:00.000Z"});
                body["interval"] = json!("daily");
                body["timezone"] = json!("Europe/Berlin");
            }
        }
        (analysis.to_string(), body)
    })
}

fn with_collection(mut body: Value, collection: &str) -> Value {
    if let Some(steps) = body.get_mut("steps").and_then(Value::as_array_mut) {
        for step in steps {
            step["event_collection"] = json!(collection);
        }
    } else {
        body["event_collection"] = json!(collection);
    }
    body
}

fn add_filter(mut body: Value, filter: &Value) -> Value {
    let targets: Vec<&mut Value> = match body.get_mut("steps").and_then(Value::as_array_mut) {
        Some(steps) => steps.iter_mut().collect(),
        None => vec![&mut body],
    };
    for target in targets {
        let mut filters = target
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        filters.push(filter.clone());
        target["filters"] = Value::Array(filters);
    }
    body
}

/// Per tenant (master key, by `vendor_id`): all its events, and those matching `filters`.
async fn tenant_counts(
    server: &InProcessServer,
    collection: &str,
    filters: &Value,
) -> Vec<(i64, i64)> {
    let mut counts = Vec::new();
    for tenant in TENANTS {
        let tenant_filter =
            json!({"property_name": "vendor_id", "operator": "eq", "property_value": tenant});
        let mut matching_filters = filters.as_array().cloned().unwrap_or_default();
        matching_filters.push(tenant_filter.clone());
        let mut pair = [0i64; 2];
        for (slot, filters) in [json!([tenant_filter]), Value::Array(matching_filters)]
            .into_iter()
            .enumerate()
        {
            let answer = send(
                client()
                    .post(server.project_url("/queries/count"))
                    .header("Authorization", &server.project.master)
                    .json(&json!({"event_collection": collection, "filters": filters})),
            )
            .await;
            pair[slot] = answer.1["result"].as_i64().unwrap_or(-1);
        }
        counts.push((pair[0], pair[1]));
    }
    counts
}

#[test]
fn a_tenant_key_sees_exactly_master_plus_its_filter_and_nothing_else() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(InProcessServer::start());
    let (keys, expired_keys): (Vec<String>, Vec<String>) = runtime.block_on(async {
        let mut keys = (Vec::new(), Vec::new());
        for tenant in TENANTS {
            let mut definition = json!({"name": tenant, "permitted": ["queries", "saved_queries", "datasets", "deletes"], "options": {"queries": {"filters": [{"property_name": "vendor_id", "operator": "eq", "property_value": tenant}]}}});
            let created = send(client().post(server.project_url("/keys")).header("Authorization", &server.project.master).json(&definition)).await;
            keys.0.push(created.1["key"].as_str().unwrap().to_string());
            definition["expires_at"] = json!("2021-06-01T00:00:00Z");
            let expired = send(client().post(server.project_url("/keys")).header("Authorization", &server.project.master).json(&definition)).await;
            keys.1.push(expired.1["key"].as_str().unwrap().to_string());
        }
        keys
    });
    let token_filter =
        json!({"property_name": "category", "operator": "exists", "property_value": true});
    let tokens: Vec<String> = keys
        .iter()
        .map(|key| {
            let claims = json!({"exp": chrono::Utc::now().timestamp() + 3600, "jti": "iso", "filters": [token_filter]});
            keyhole_model::embed_token::mint(key, &claims)
        })
        .collect();
    let cases = std::env::var("KEYHOLE_ISOLATION_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let case_number = std::cell::Cell::new(0usize);
    let strategy = (
        prop::collection::vec(event_strategy(), 1..25),
        query_strategy(),
    );
    runner
        .run(&strategy, |(events, (analysis, body))| {
            case_number.set(case_number.get() + 1);
            let collection = format!("iso{}", case_number.get());
            runtime.block_on(async {
                let written = send(client().post(server.project_url("/events")).header("Authorization", &server.project.write).json(&json!({ collection.clone(): events }))).await;
                prop_assert_eq!(written.0, 200);
                let body = with_collection(body, &collection);
                let url = server.project_url(&format!("/queries/{analysis}"));
                // The same query saved once: its /result is read by each tenant's key below.
                let mut saved_query = body.clone();
                saved_query["analysis_type"] = json!(analysis);
                let saved_url = server.project_url(&format!("/queries/saved/{collection}"));
                // Every other case it is a cached query: each tenant reads it twice, the second time from
                // the result stored for its own scope.
                let refresh_rate = if case_number.get().is_multiple_of(2) { 14_400 } else { 0 };
                let saved = send(client().put(&saved_url).header("Authorization", &server.project.master).json(&json!({"query": saved_query, "refresh_rate": refresh_rate}))).await;
                prop_assert_eq!(saved.0, 201, "{} {}: {}", analysis, body, saved.1);
                // Interval queries are also defined as a dataset indexed by category.
                let dataset_url = if body.get("interval").is_some() && analysis != "extraction" {
                    let dataset_url = server.project_url(&format!("/datasets/{collection}"));
                    let created = send(client().put(&dataset_url).header("Authorization", &server.project.master).json(&json!({"query": saved_query, "index_by": "category"}))).await;
                    prop_assert_eq!(created.0, 201, "dataset {} {}: {}", analysis, body, created.1);
                    Some(dataset_url)
                } else {
                    None
                };
                for (index, tenant) in TENANTS.iter().enumerate() {
                    let scoped = send(client().post(&url).header("Authorization", &keys[index]).json(&body)).await;
                    let tenant_filter = json!({"property_name": "vendor_id", "operator": "eq", "property_value": tenant});
                    let reference = send(client().post(&url).header("Authorization", &server.project.master).json(&add_filter(body.clone(), &tenant_filter))).await;
                    prop_assert_eq!(scoped.0, 200, "{} {}: {}", analysis, body, scoped.1);
                    prop_assert_eq!(&scoped.1["result"], &reference.1["result"], "{} {}", analysis, body);
                    prop_assert_eq!(&scoped.1["actors"], &reference.1["actors"]);
                    // The data only: a funnel also echoes its steps, whose filters the caller wrote.
                    let text = json!([scoped.1["result"], scoped.1["actors"]]).to_string();
                    for other in TENANTS.iter().filter(|other| *other != tenant) {
                        prop_assert!(!text.contains(other), "{} leaked {} into {}'s answer: {}", analysis, other, tenant, text);
                    }
                    let by_token = send(client().post(&url).header("Authorization", &tokens[index]).json(&body)).await;
                    let narrowed = add_filter(add_filter(body.clone(), &tenant_filter), &token_filter);
                    let token_reference = send(client().post(&url).header("Authorization", &server.project.master).json(&narrowed)).await;
                    prop_assert_eq!(by_token.0, 200, "{} {}: {}", analysis, body, by_token.1);
                    prop_assert_eq!(&by_token.1["result"], &token_reference.1["result"], "token: {} {}", analysis, body);
                    prop_assert_eq!(&by_token.1["actors"], &token_reference.1["actors"]);
                    let text = json!([by_token.1["result"], by_token.1["actors"]]).to_string();
                    for other in TENANTS.iter().filter(|other| *other != tenant) {
                        prop_assert!(!text.contains(other), "{} leaked {} into {}'s token answer", analysis, other, tenant);
                    }
                    let mut by_saved_query = send(client().get(format!("{saved_url}/result")).header("Authorization", &keys[index])).await;
                    if refresh_rate > 0 {
                        by_saved_query = send(client().get(format!("{saved_url}/result")).header("Authorization", &keys[index])).await;
                        prop_assert_eq!(&by_saved_query.1["run_information"]["served_from_cache"], &json!(true));
                    }
                    prop_assert_eq!(by_saved_query.0, 200, "saved {} {}: {}", analysis, body, by_saved_query.1);
                    let saved_result = &by_saved_query.1["result"];
                    let (saved_result, saved_actors) = if analysis == "funnel" {
                        (&saved_result["result"], &saved_result["actors"])
                    } else {
                        (saved_result, &Value::Null)
                    };
                    prop_assert_eq!(saved_result, &reference.1["result"], "saved: {} {}", analysis, body);
                    if analysis == "funnel" {
                        prop_assert_eq!(saved_actors, &reference.1["actors"]);
                    }
                    if let Some(dataset_url) = &dataset_url {
                        let by_dataset = send(client().get(format!("{dataset_url}/results")).query(&[("index_by", "red"), ("timeframe", &body["timeframe"].to_string())]).header("Authorization", &keys[index])).await;
                        prop_assert_eq!(by_dataset.0, 200, "dataset {} {}: {}", analysis, body, by_dataset.1);
                        let red = json!({"property_name": "category", "operator": "eq", "property_value": "red"});
                        let dataset_reference = send(client().post(&url).header("Authorization", &server.project.master).json(&add_filter(add_filter(body.clone(), &tenant_filter), &red))).await;
                        prop_assert_eq!(&by_dataset.1["result"], &dataset_reference.1["result"], "dataset: {} {}", analysis, body);
                    }
                    let expired = send(client().post(&url).header("Authorization", &expired_keys[index]).json(&body)).await;
                    prop_assert_eq!(expired.0, 401, "an expired key answered {}", expired.1);
                }
                // One tenant's key deletes what the query's filters match, in its scope only.
                let deleter = case_number.get() % TENANTS.len();
                let filters = body.get("filters").cloned().unwrap_or(json!([]));
                let before = tenant_counts(&server, &collection, &filters).await;
                // Keen's bare DELETE deletes everything the key may; an empty `filters` present is refused.
                let mut delete = client()
                    .delete(server.project_url(&format!("/events/{collection}")))
                    .header("Authorization", &keys[deleter]);
                if filters.as_array().is_some_and(|filters| !filters.is_empty()) {
                    delete = delete.query(&[("filters", filters.to_string())]);
                }
                let deleted = delete.send().await.unwrap();
                prop_assert_eq!(deleted.status().as_u16(), 204);
                let after = tenant_counts(&server, &collection, &filters).await;
                for (index, tenant) in TENANTS.iter().enumerate() {
                    let (all_before, matching_before) = before[index];
                    let (all_after, matching_after) = after[index];
                    if index == deleter {
                        prop_assert_eq!(matching_after, 0, "{} kept events its delete matched", tenant);
                        prop_assert_eq!(all_after, all_before - matching_before, "{} lost other events", tenant);
                    } else {
                        prop_assert_eq!((all_after, matching_after), (all_before, matching_before), "{}'s delete reached {}", TENANTS[deleter], tenant);
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    assert_eq!(case_number.get(), cases as usize);
}
