//! Cached datasets over HTTP: Keen's definition routes with their status codes and shapes, results that
//! equal the live query with the index value as an extra filter (for every analysis that takes an
//! interval, many index values, events written a moment ago and late events into closed buckets), stored
//! closed buckets reused between reads, and `options.datasets` enforced for access keys.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send, with_now_redacted};

const DAY: i64 = 86_400_000;

fn event(vendor: &str, shard: i64, country: &str, amount: i64, user: i64, at: i64) -> Value {
    json!({"vendor": vendor, "shard": shard, "country": country, "amount": amount, "user": user,
           "keen": {"timestamp": keyhole_model::timestamp::format_timestamp(at)}})
}

async fn put_dataset(server: &InProcessServer, name: &str, body: &Value) -> (u16, Value) {
    send(
        client()
            .put(server.project_url(&format!("/datasets/{name}")))
            .header("Authorization", &server.project.master)
            .json(body),
    )
    .await
}

/// Results and the number of buckets that came from stored results.
async fn results(
    server: &InProcessServer,
    name: &str,
    key: &str,
    index_by: &str,
    timeframe: &str,
) -> (u16, Value, usize) {
    let response = client()
        .get(server.project_url(&format!("/datasets/{name}/results")))
        .query(&[
            ("api_key", key),
            ("dataset_name", name),
            ("index_by", index_by),
            ("timeframe", timeframe),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let stored = response
        .headers()
        .get("keyhole-stored-buckets")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    (status, response.json().await.unwrap(), stored)
}

async fn live(server: &InProcessServer, query: &Value, extra_filters: Vec<Value>) -> Value {
    let mut query = query.clone();
    let analysis = query["analysis_type"].as_str().unwrap().to_string();
    query["filters"] = Value::Array(extra_filters);
    query["timeframe"] = json!("this_10_days");
    let answer = send(
        client()
            .post(server.project_url(&format!("/queries/{analysis}")))
            .header("Authorization", &server.project.master)
            .json(&query),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["result"].clone()
}

fn analyses() -> Vec<Value> {
    let base = |analysis: &str, extra: Value| {
        let mut query = json!({"analysis_type": analysis, "event_collection": "orders",
            "timeframe": "this_14_days", "interval": "daily"});
        for (name, value) in extra.as_object().unwrap() {
            query[name] = value.clone();
        }
        query
    };
    vec![
        base("count", json!({})),
        base("count", json!({"group_by": "country"})),
        base("count", json!({"timezone": "America/New_York"})),
        base("count_unique", json!({"target_property": "user"})),
        base("minimum", json!({"target_property": "amount"})),
        base("maximum", json!({"target_property": "amount"})),
        base(
            "sum",
            json!({"target_property": "amount", "interval": "every_2_days"}),
        ),
        base("average", json!({"target_property": "amount"})),
        base("median", json!({"target_property": "amount"})),
        base(
            "percentile",
            json!({"target_property": "amount", "percentile": 90}),
        ),
        base("standard_deviation", json!({"target_property": "amount"})),
        base("select_unique", json!({"target_property": "country"})),
        base(
            "multi_analysis",
            json!({"analyses": {
            "orders": {"analysis_type": "count"},
            "revenue": {"analysis_type": "sum", "target_property": "amount"}}}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn dataset_results_equal_live_queries_with_the_index_as_a_filter() {
    let server = InProcessServer::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let vendors = ["acme", "globex", "initech", "umbrella", "hooli", "42"];
    let mut events = Vec::new();
    for index in 0..600i64 {
        let vendor = vendors[(index % 6) as usize];
        let at = now - (index % 9) * DAY - (index * 7_919) % DAY;
        let country = ["de", "us", "fr"][(index % 3) as usize];
        events.push(event(
            vendor,
            index % 4,
            country,
            index % 97,
            index % 23,
            at,
        ));
    }
    // The number 42 as well as the string "42": a raw `index_by=42` reads both.
    events.push(json!({"vendor": 42, "amount": 5, "user": 1, "country": "de"}));
    server.write_events("orders", events).await;

    for (position, query) in analyses().into_iter().enumerate() {
        let name = format!("ds{position}");
        let created = put_dataset(
            &server,
            &name,
            &json!({"display_name": name, "index_by": "vendor", "query": query}),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.1);
        for vendor in vendors {
            let filter = if vendor == "42" {
                json!({"property_name": "vendor", "operator": "in", "property_value": ["42", 42]})
            } else {
                json!({"property_name": "vendor", "operator": "eq", "property_value": vendor})
            };
            let expected = live(&server, &query, vec![filter]).await;
            let first = results(&server, &name, &server.project.read, vendor, "this_10_days").await;
            assert_eq!(first.0, 200, "{}", first.1);
            assert_eq!(
                with_now_redacted(&first.1["result"]),
                with_now_redacted(&expected),
                "{name} {vendor}: {query}"
            );
            let again = results(&server, &name, &server.project.read, vendor, "this_10_days").await;
            assert_eq!(
                with_now_redacted(&again.1["result"]),
                with_now_redacted(&expected),
                "{name} {vendor} from stored buckets"
            );
            let buckets = again.1["result"].as_array().unwrap().len();
            assert!(
                again.2 + 1 >= buckets && again.2 > 0,
                "{name}: every closed bucket is reused ({} of {buckets})",
                again.2
            );
        }
    }

    // Events written a moment ago count at once; a late event in a closed bucket invalidates it.
    let count = analyses()[0].clone();
    let before = results(&server, "ds0", &server.project.read, "acme", "this_10_days").await;
    server
        .write_events(
            "orders",
            vec![
                event("acme", 0, "de", 1, 1, now),
                event("acme", 0, "de", 1, 1, now - 5 * DAY),
            ],
        )
        .await;
    let after = results(&server, "ds0", &server.project.read, "acme", "this_10_days").await;
    let expected = live(
        &server,
        &count,
        vec![json!({"property_name": "vendor", "operator": "eq", "property_value": "acme"})],
    )
    .await;
    assert_eq!(
        with_now_redacted(&after.1["result"]),
        with_now_redacted(&expected)
    );
    assert_ne!(after.1["result"], before.1["result"]);
    assert!(
        after.2 < before.2,
        "the late event's bucket and later ones are recomputed"
    );

    // A sub-timeframe; an absolute one as JSON; a timeframe reaching outside the dataset's is clipped.
    let three = results(&server, "ds0", &server.project.read, "acme", "this_3_days").await;
    assert_eq!(three.1["result"].as_array().unwrap().len(), 3);
    let absolute = json!({"start": keyhole_model::timestamp::format_timestamp(now - 2 * DAY),
                          "end": keyhole_model::timestamp::format_timestamp(now)})
    .to_string();
    let within = results(&server, "ds0", &server.project.read, "acme", &absolute).await;
    assert_eq!(within.0, 200, "{}", within.1);
    let wide = results(&server, "ds0", &server.project.read, "acme", "this_30_days").await;
    assert_eq!(wide.1["result"].as_array().unwrap().len(), 14);

    // Several index properties: a JSON object naming each.
    let two = put_dataset(
        &server,
        "by-vendor-country",
        &json!({"index_by": ["vendor", "country"], "query": analyses()[0]}),
    )
    .await;
    assert_eq!(two.0, 201);
    let index = json!({"vendor": "globex", "country": "us"}).to_string();
    let both = results(
        &server,
        "by-vendor-country",
        &server.project.read,
        &index,
        "this_10_days",
    )
    .await;
    let expected = live(
        &server,
        &count,
        vec![
            json!({"property_name": "vendor", "operator": "eq", "property_value": "globex"}),
            json!({"property_name": "country", "operator": "eq", "property_value": "us"}),
        ],
    )
    .await;
    assert_eq!(
        with_now_redacted(&both.1["result"]),
        with_now_redacted(&expected)
    );
    let partial = results(
        &server,
        "by-vendor-country",
        &server.project.read,
        "globex",
        "this_10_days",
    )
    .await;
    assert_keen_error(&(partial.0, partial.1), 400, "InvalidParameterError");
}

#[tokio::test(flavor = "multi_thread")]
async fn datasets_are_managed_as_keen_does_and_keys_read_only_what_they_may() {
    let server = InProcessServer::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    server
        .write_events(
            "orders",
            vec![
                event("acme", 0, "de", 10, 1, now - DAY),
                event("globex", 0, "us", 20, 2, now - DAY),
                event("acme", 1, "de", 30, 3, now),
            ],
        )
        .await;
    let query = json!({"analysis_type": "sum", "event_collection": "orders", "target_property": "amount",
                       "timeframe": "this_3_days", "interval": "daily", "timezone": "UTC"});
    let created = put_dataset(
        &server,
        "revenue",
        &json!({"display_name": "Revenue", "index_by": "vendor", "query": query}),
    )
    .await;
    assert_eq!(created.0, 201);
    insta::assert_json_snapshot!("dataset_definition", created.1, {
        ".project_id" => "[id]", ".organization_id" => "[id]", ".query.project_id" => "[id]",
        ".last_scheduled_date" => "[date]", ".latest_subtimeframe_available" => "[date]"
    });
    assert_eq!(
        put_dataset(
            &server,
            "revenue",
            &json!({"display_name": "Revenue", "index_by": "vendor", "query": query})
        )
        .await
        .0,
        200
    );
    for name in ["a-one", "b-two", "c-three"] {
        let body = json!({"index_by": "vendor", "query": query});
        assert_eq!(put_dataset(&server, name, &body).await.0, 201);
    }
    let bad = put_dataset(&server, "bad", &json!({"index_by": "vendor", "query": {"analysis_type": "count", "event_collection": "orders"}})).await;
    assert_keen_error(&bad, 400, "InvalidParameterError");

    // Listing pages as Keen does.
    let master = server.project.master.clone();
    let list = |query: &'static str, key: String| {
        let server = &server;
        async move {
            send(
                client()
                    .get(server.project_url(&format!("/datasets{query}")))
                    .header("Authorization", key),
            )
            .await
        }
    };
    let first = list("?limit=2", master.clone()).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let names: Vec<&str> = first.1["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dataset| dataset["dataset_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-one", "b-two"]);
    assert!(
        first.1["next_page_url"]
            .as_str()
            .unwrap()
            .ends_with("after_name=b-two")
    );
    let rest = list("?limit=2&after_name=b-two", master.clone()).await;
    assert_eq!(rest.1["datasets"].as_array().unwrap().len(), 2);
    assert_eq!(rest.1["next_page_url"], Value::Null);
    insta::assert_json_snapshot!("dataset_list_page", first.1, {
        ".datasets[].project_id" => "[id]", ".datasets[].organization_id" => "[id]",
        ".datasets[].query.project_id" => "[id]", ".datasets[].last_scheduled_date" => "[date]",
        ".datasets[].latest_subtimeframe_available" => "[date]", ".next_page_url" => "[url]"
    });
    assert_eq!(
        list("", master.clone()).await.1["datasets"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let acme = results(&server, "revenue", &master, "acme", "this_3_days").await;
    assert_eq!(acme.0, 200, "{}", acme.1);
    insta::assert_json_snapshot!("dataset_results", acme.1, {
        ".result[].timeframe.start" => "[date]", ".result[].timeframe.end" => "[date]"
    });
    let total: f64 = acme.1["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|bucket| bucket["value"].as_f64())
        .sum();
    assert_eq!(total, 40.0);

    // A customer's key limited to one dataset and pinned to its own index value.
    let customer = server
        .create_access_key(json!({"name": "acme dashboard", "permitted": ["datasets"],
            "options": {"datasets": {"operations": ["read", "retrieve"],
                                      "allowed": {"revenue": {"index_by": {"vendor": ["acme"]}}}}}}))
        .await;
    let own = results(&server, "revenue", &customer, "acme", "this_3_days").await;
    assert_eq!(with_now_redacted(&own.1), with_now_redacted(&acme.1));
    let other = results(&server, "revenue", &customer, "globex", "this_3_days").await;
    assert_keen_error(&(other.0, other.1), 401, "RequestForbiddenError");
    let other_dataset = results(&server, "a-one", &customer, "acme", "this_3_days").await;
    assert_keen_error(
        &(other_dataset.0, other_dataset.1),
        401,
        "RequestForbiddenError",
    );
    assert_keen_error(
        &list("", customer.clone()).await,
        401,
        "RequestForbiddenError",
    );
    let retrieved = send(
        client()
            .get(server.project_url("/datasets/revenue"))
            .header("Authorization", &customer),
    )
    .await;
    assert_eq!(retrieved.0, 200);
    for forbidden in [
        client().get(server.project_url("/queries/count?event_collection=orders")),
        client().delete(server.project_url("/datasets/revenue")),
    ] {
        let answer = send(forbidden.header("Authorization", &customer)).await;
        assert_eq!(answer.0, 401, "{}", answer.1);
    }
    // A tenant key's forced filters apply on top of the index value.
    let filtered = server
        .create_access_key(json!({"name": "filtered", "permitted": ["datasets"],
            "options": {"queries": {"filters": [{"property_name": "shard", "operator": "eq", "property_value": 1}]}}}))
        .await;
    let shard_one = results(&server, "revenue", &filtered, "acme", "this_3_days").await;
    let total: f64 = shard_one.1["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|bucket| bucket["value"].as_f64())
        .sum();
    assert_eq!(total, 30.0);

    let unknown = results(&server, "nope", &master, "acme", "this_3_days").await;
    assert_keen_error(&(unknown.0, unknown.1), 404, "ResourceNotFoundError");
    let deleted = client()
        .delete(server.project_url("/datasets/revenue"))
        .header("Authorization", &master)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = results(&server, "revenue", &master, "acme", "this_3_days").await;
    assert_eq!(gone.0, 404);
}

/// Tenant keys read their own index values: a key pinned to a numeric value reads it by its bare text
/// (`index_by=2`, which could mean `2` or `"2"`), resolved to the reading the key lists; a key without
/// `options.datasets` whose forced filters are `eq` tests on the index property reads exactly the value
/// they admit, and no other.
#[tokio::test(flavor = "multi_thread")]
async fn tenant_keys_read_the_index_values_their_pins_and_filters_admit() {
    let server = InProcessServer::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..12i64)
        .map(|index| {
            let vendor_id = match index % 3 {
                0 => json!(2),
                1 => json!("2"),
                _ => json!("acme"),
            };
            json!({"vendor_id": vendor_id, "amount": index,
                   "keen": {"timestamp": keyhole_model::timestamp::format_timestamp(now - (index % 2) * DAY)}})
        })
        .collect();
    server.write_events("orders", events).await;
    let created = put_dataset(
        &server,
        "by-vendor",
        &json!({"display_name": "By vendor", "index_by": "vendor_id",
                "query": {"analysis_type": "sum", "event_collection": "orders", "target_property": "amount",
                          "timeframe": "this_3_days", "interval": "daily", "timezone": "UTC"}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let total = |result: &Value| -> f64 {
        result["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|bucket| bucket["value"].as_f64())
            .sum()
    };
    let sum_of = |vendor_id: Value| -> f64 {
        (0..12i64)
            .filter(|index| match index % 3 {
                0 => vendor_id == json!(2),
                1 => vendor_id == json!("2"),
                _ => vendor_id == json!("acme"),
            })
            .map(|index| index as f64)
            .sum()
    };

    // Pinned to the number 2: `index_by=2` reads the number only.
    let numeric = server
        .create_access_key(json!({"name": "vendor 2", "permitted": ["datasets"],
            "options": {"datasets": {"allowed": {"by-vendor": {"index_by": {"vendor_id": [2]}}}}}}))
        .await;
    let read = results(&server, "by-vendor", &numeric, "2", "this_3_days").await;
    assert_eq!(read.0, 200, "{}", read.1);
    assert_eq!(total(&read.1), sum_of(json!(2)));
    // Pinned to the text "2": the same request reads the text only.
    let textual = server
        .create_access_key(json!({"name": "vendor '2'", "permitted": ["datasets"],
            "options": {"datasets": {"allowed": {"by-vendor": {"index_by": {"vendor_id": ["2"]}}}}}}))
        .await;
    let read = results(&server, "by-vendor", &textual, "2", "this_3_days").await;
    assert_eq!(read.0, 200, "{}", read.1);
    assert_eq!(total(&read.1), sum_of(json!("2")));
    let other = results(&server, "by-vendor", &textual, "acme", "this_3_days").await;
    assert_keen_error(&(other.0, other.1), 401, "RequestForbiddenError");
    // The master key reads both readings of the bare value.
    let both = results(
        &server,
        "by-vendor",
        &server.project.master,
        "2",
        "this_3_days",
    )
    .await;
    assert_eq!(total(&both.1), sum_of(json!(2)) + sum_of(json!("2")));

    // A tenant key: `datasets` permitted, forced filter vendor_id eq acme, no options.datasets.
    let tenant = server
        .create_access_key(json!({"name": "acme", "permitted": ["datasets"],
            "options": {"queries": {"filters": [
                {"property_name": "vendor_id", "operator": "eq", "property_value": "acme"}]}}}))
        .await;
    let own = results(&server, "by-vendor", &tenant, "acme", "this_3_days").await;
    assert_eq!(own.0, 200, "{}", own.1);
    assert_eq!(total(&own.1), sum_of(json!("acme")));
    let quoted = results(&server, "by-vendor", &tenant, "\"acme\"", "this_3_days").await;
    assert_eq!(with_now_redacted(&quoted.1), with_now_redacted(&own.1));
    for foreign in ["2", "\"2\"", "globex"] {
        let refused = results(&server, "by-vendor", &tenant, foreign, "this_3_days").await;
        assert_keen_error(&(refused.0, refused.1), 401, "RequestForbiddenError");
    }
}
