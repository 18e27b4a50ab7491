//! Query conformance: every metric analysis × (plain, group_by, interval, interval + group_by) and every
//! filter operator, over events with type drift, nulls, missing properties and lists, spread across DST
//! changes in two time zones — Keyhole's answers over HTTP against the independent reference evaluator.

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::reference::{analyse, day_boundaries, group_value, json_order, passes};
use crate::support::{InProcessServer, assert_keen_error, client, send};

/// Deterministic events: half around the US spring-forward (2024-03-10), half around the EU fall-back
/// (2024-10-27).
fn events() -> Vec<Value> {
    (0..240u64)
        .map(|i| {
            let window_start = if i % 2 == 0 {
                "2024-03-08T00:00:00Z"
            } else {
                "2024-10-25T00:00:00Z"
            };
            let start = keyhole_model::timestamp::parse_timestamp(window_start).unwrap();
            let timestamp = keyhole_model::timestamp::format_timestamp(
                start + ((i * 7919) % (5 * 24 * 60)) as i64 * 60_000,
            );
            let plan = ["free", "pro"][(i % 2) as usize];
            let mut event = json!({
                "keen": {"timestamp": timestamp},
                "user": {"id": format!("u{}", i % 17), "plan": plan},
                "name": format!("alpha-{}", i % 4),
                "seq": i,
            });
            match i % 10 {
                0 => event["price"] = json!("free"),
                1 => {}
                2 => event["price"] = Value::Null,
                _ => {
                    event["price"] =
                        json!((i * 37 % 100) as f64 + if i % 3 == 0 { 0.5 } else { 0.0 });
                }
            }
            match i % 6 {
                0 => event["country"] = json!("de"),
                1 => event["country"] = json!("us"),
                2 => event["country"] = json!("fr"),
                3 => event["country"] = Value::Null,
                4 => {}
                _ => event["country"] = json!(["de", "us"]),
            }
            if i % 4 == 0 {
                event["flag"] = json!(i % 8 == 0);
            }
            if i % 5 == 0 {
                event["keen"]["location"] =
                    json!({"coordinates": [13.4 + (i % 7) as f64 * 0.5, 52.5]});
            }
            event
        })
        .collect()
}

fn approx_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| approx_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| approx_equal(x, y)))
        }
        _ => left == right,
    }
}

struct Fixture {
    server: InProcessServer,
    events: Vec<Value>,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = InProcessServer::start().await;
        let events = events();
        let (first_half, second_half) = events.split_at(events.len() / 2);
        let post = |batch: &[Value]| {
            send(
                client()
                    .post(server.project_url("/events"))
                    .header("Authorization", &server.project.write)
                    .json(&json!({"sales": batch})),
            )
        };
        assert_eq!(post(first_half).await.0, 200);
        // Half the events in Parquet, half in memory: queries must see both.
        server.storage.flush().await.unwrap();
        assert_eq!(post(second_half).await.0, 200);
        Fixture { server, events }
    }

    async fn query(&self, analysis: &str, body: Value) -> Value {
        let answer = send(
            client()
                .post(self.server.project_url(&format!("/queries/{analysis}")))
                .header("Authorization", &self.server.project.read)
                .json(&body),
        )
        .await;
        assert_eq!(answer.0, 200, "{analysis} {body}: {}", answer.1);
        answer.1["result"].clone()
    }

    fn matching(&self, filters: &[Value]) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|event| filters.iter().all(|filter| passes(event, filter)))
            .collect()
    }
}

const METRICS: [(&str, &str); 12] = [
    ("count", ""),
    ("count_unique", "user.id"),
    ("minimum", "price"),
    ("maximum", "price"),
    ("sum", "price"),
    ("average", "price"),
    ("median", "price"),
    ("percentile", "price"),
    ("standard_deviation", "price"),
    ("select_unique", "country"),
    ("select_unique", "price"),
    // No event has it: every shape must still answer (empty lists), not fail.
    ("select_unique", "no_such_property"),
];

fn body(analysis: &str, target: &str, extra: Value) -> Value {
    let mut body = json!({"event_collection": "sales", "percentile": 90});
    if !target.is_empty() {
        body["target_property"] = json!(target);
    }
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let _ = analysis;
    body
}

fn grouped_reference(
    events: &[&Value],
    analysis: &str,
    target: &str,
    groups: &[&str],
) -> Vec<Value> {
    let mut keys: Vec<Vec<Value>> = Vec::new();
    for event in events {
        let key: Vec<Value> = groups
            .iter()
            .map(|group| group_value(event, group))
            .collect();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort_by(|a, b| json_order(&Value::Array(a.clone()), &Value::Array(b.clone())));
    keys.iter()
        .map(|key| {
            let members: Vec<&Value> = events
                .iter()
                .copied()
                .filter(|event| {
                    groups
                        .iter()
                        .map(|g| group_value(event, g))
                        .collect::<Vec<_>>()
                        == *key
                })
                .collect();
            let mut row = serde_json::Map::new();
            for (group, value) in groups.iter().zip(key) {
                row.insert(group.to_string(), value.clone());
            }
            row.insert("result".into(), analyse(analysis, &members, target, 90.0));
            Value::Object(row)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_analysis_in_every_shape_matches_the_reference() {
    let fixture = Fixture::new().await;
    let everything = fixture.matching(&[]);
    for (analysis, target) in METRICS {
        let plain = fixture
            .query(analysis, body(analysis, target, json!({})))
            .await;
        let expected = analyse(analysis, &everything, target, 90.0);
        assert!(
            approx_equal(&plain, &expected),
            "{analysis} plain: got {plain}, expected {expected}"
        );

        let grouped = fixture
            .query(
                analysis,
                body(analysis, target, json!({"group_by": "country"})),
            )
            .await;
        let expected = Value::Array(grouped_reference(
            &everything,
            analysis,
            target,
            &["country"],
        ));
        assert!(
            approx_equal(&grouped, &expected),
            "{analysis} group_by: got {grouped}, expected {expected}"
        );

        for (zone_name, zone, first_day) in [
            (
                "US/Pacific",
                chrono_tz::US::Pacific,
                NaiveDate::from_ymd_opt(2024, 3, 8).unwrap(),
            ),
            (
                "Europe/Berlin",
                chrono_tz::Europe::Berlin,
                NaiveDate::from_ymd_opt(2024, 10, 25).unwrap(),
            ),
        ] {
            let boundaries = day_boundaries(zone, first_day, 5);
            let format = keyhole_model::timestamp::format_timestamp;
            let timeframe = json!({"start": format(boundaries[0]), "end": format(boundaries[5])});
            let in_window: Vec<&Value> = everything
                .iter()
                .copied()
                .filter(|event| {
                    let time = keyhole_model::timestamp::parse_timestamp(
                        event["keen"]["timestamp"].as_str().unwrap(),
                    )
                    .unwrap();
                    time >= boundaries[0] && time < boundaries[5]
                })
                .collect();
            let bucket_members = |bucket: usize| -> Vec<&Value> {
                in_window
                    .iter()
                    .copied()
                    .filter(|event| {
                        let time = keyhole_model::timestamp::parse_timestamp(
                            event["keen"]["timestamp"].as_str().unwrap(),
                        )
                        .unwrap();
                        time >= boundaries[bucket] && time < boundaries[bucket + 1]
                    })
                    .collect()
            };
            let interval_body =
                json!({"timeframe": timeframe, "timezone": zone_name, "interval": "daily"});
            let series = fixture
                .query(analysis, body(analysis, target, interval_body.clone()))
                .await;
            let expected: Vec<Value> = (0..5)
                .map(|bucket| json!({"timeframe": {"start": format(boundaries[bucket]), "end": format(boundaries[bucket + 1])}, "value": analyse(analysis, &bucket_members(bucket), target, 90.0)}))
                .collect();
            assert!(
                approx_equal(&series, &Value::Array(expected.clone())),
                "{analysis} daily in {zone_name}: got {series}, expected {expected:?}"
            );

            let mut grouped_body = interval_body.clone();
            grouped_body["group_by"] = json!("country");
            let grouped_series = fixture
                .query(analysis, body(analysis, target, grouped_body))
                .await;
            let all_groups: Vec<Value> = grouped_reference(&in_window, "count", "", &["country"])
                .iter()
                .map(|row| row["country"].clone())
                .collect();
            let expected: Vec<Value> = (0..5)
                .map(|bucket| {
                    let members = bucket_members(bucket);
                    let rows: Vec<Value> = all_groups
                        .iter()
                        .map(|group| {
                            let in_group: Vec<&Value> = members.iter().copied().filter(|event| group_value(event, "country") == *group).collect();
                            json!({"country": group, "result": analyse(analysis, &in_group, target, 90.0)})
                        })
                        .collect();
                    json!({"timeframe": {"start": format(boundaries[bucket]), "end": format(boundaries[bucket + 1])}, "value": rows})
                })
                .collect();
            assert!(
                approx_equal(&grouped_series, &Value::Array(expected.clone())),
                "{analysis} daily+group_by in {zone_name}: got {grouped_series}, expected {expected:?}"
            );
        }
    }
    // Several group_by properties, nested paths.
    let two = fixture
        .query(
            "count",
            json!({"event_collection": "sales", "group_by": ["country", "user.plan"]}),
        )
        .await;
    assert_eq!(
        two,
        Value::Array(grouped_reference(
            &everything,
            "count",
            "",
            &["country", "user.plan"]
        ))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_filter_operator_matches_the_reference() {
    let fixture = Fixture::new().await;
    let filter = |property: &str, operator: &str, value: Value| json!({"property_name": property, "operator": operator, "property_value": value});
    let cases = vec![
        filter("country", "eq", json!("de")),
        filter("country", "eq", Value::Null),
        filter("country", "ne", json!("de")),
        filter("country", "ne", Value::Null),
        filter("price", "eq", json!(42)),
        filter("price", "eq", json!("free")),
        filter("price", "ne", json!("free")),
        filter("price", "lt", json!(30)),
        filter("price", "lte", json!(30.5)),
        filter("price", "gt", json!(70)),
        filter("price", "gte", json!(70)),
        filter("name", "lt", json!("alpha-2")),
        filter("name", "gte", json!("alpha-2")),
        filter("keen.timestamp", "lt", json!("2024-03-10T12:00:00.000Z")),
        filter("keen.timestamp", "gte", json!("2024-10-27T00:00:00Z")),
        filter("price", "exists", json!(true)),
        filter("price", "exists", json!(false)),
        filter("flag", "exists", json!(true)),
        filter("flag", "eq", json!(true)),
        filter("flag", "ne", json!(true)),
        filter("country", "in", json!(["fr", "us"])),
        filter("price", "in", json!([42, "free", 3.5])),
        filter("name", "contains", json!("ha-1")),
        filter("name", "not_contains", json!("ha-1")),
        filter("country", "contains", json!("us")),
        filter("country", "not_contains", json!("us")),
        filter("name", "regex", json!("^alpha-3")),
        filter("user.id", "eq", json!("u3")),
        filter("user.plan", "ne", json!("pro")),
        filter("flag", "exists", json!(false)),
        filter("missing.path", "ne", json!(1)),
        filter(
            "keen.location.coordinates",
            "within",
            json!({"coordinates": [13.4, 52.5], "max_distance_miles": 40}),
        ),
        json!({"operator": "or", "operands": [filter("country", "eq", json!("fr")), filter("price", "gt", json!(90))]}),
    ];
    for case in &cases {
        let expected = fixture.matching(std::slice::from_ref(case)).len();
        let selects_all = case["property_name"] == "missing.path";
        assert!(
            expected > 0 && (selects_all || expected < fixture.events.len()),
            "the suite's filter {case} should select some but not all events"
        );
        let got = fixture
            .query(
                "count",
                json!({"event_collection": "sales", "filters": [case]}),
            )
            .await;
        assert_eq!(got, json!(expected), "filter {case}");
    }
    // Filters in a list are AND-ed.
    let pair = [cases[0].clone(), cases[18].clone()];
    let got = fixture
        .query(
            "count",
            json!({"event_collection": "sales", "filters": pair}),
        )
        .await;
    assert_eq!(got, json!(fixture.matching(&pair).len()));
}

#[tokio::test(flavor = "multi_thread")]
async fn order_by_limit_multi_analysis_and_errors() {
    let fixture = Fixture::new().await;
    let top = fixture
        .query("count", json!({"event_collection": "sales", "group_by": "user.id", "order_by": {"property_name": "result", "direction": "DESC"}, "limit": 3}))
        .await;
    let rows = top.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0]["result"].as_u64() >= rows[1]["result"].as_u64()
            && rows[1]["result"].as_u64() >= rows[2]["result"].as_u64()
    );

    let multi = fixture
        .query("multi_analysis", json!({"event_collection": "sales", "analyses": {"n": {"analysis_type": "count"}, "total": {"analysis_type": "sum", "target_property": "price"}, "p50": {"analysis_type": "percentile", "target_property": "price", "percentile": 50}}}))
        .await;
    let everything = fixture.matching(&[]);
    assert!(
        approx_equal(
            &multi,
            &json!({"n": 240, "total": analyse("sum", &everything, "price", 0.0), "p50": analyse("median", &everything, "price", 0.0)})
        ),
        "{multi}"
    );

    let read = |path: String| {
        send(
            client()
                .get(fixture.server.project_url(&path))
                .header("Authorization", &fixture.server.project.read),
        )
    };
    assert_keen_error(
        &read("/queries/count?timeframe=this_2_fortnights&event_collection=sales".into()).await,
        400,
        "TimeframeDefinitionError",
    );
    assert_keen_error(
        &read("/queries/count?event_collection=sales&timezone=Mars/Base".into()).await,
        400,
        "InvalidTimezoneError",
    );
    assert_keen_error(
        &read(
            "/queries/count?event_collection=sales&interval=fortnightly&timeframe=this_day".into(),
        )
        .await,
        400,
        "InvalidIntervalError",
    );
    assert_keen_error(
        &read("/queries/sum?event_collection=sales".into()).await,
        400,
        "MissingParameterError",
    );
    assert_keen_error(
        &read("/queries/nonsense?event_collection=sales".into()).await,
        404,
        "ResourceNotFoundError",
    );
    let bad_filter = r#"[{"property_name":"a","operator":"like","property_value":1}]"#;
    assert_keen_error(
        &read(format!(
            "/queries/count?event_collection=sales&filters={bad_filter}"
        ))
        .await,
        400,
        "InvalidFilterError",
    );
    let bad_regex = r#"[{"property_name":"a","operator":"regex","property_value":"(("}]"#;
    assert_keen_error(
        &read(format!(
            "/queries/count?event_collection=sales&filters={bad_regex}"
        ))
        .await,
        400,
        "InvalidFilterError",
    );
    let wrong_geo = r#"[{"property_name":"a","operator":"within","property_value":{"coordinates":[1,2],"max_distance_miles":3}}]"#;
    assert_keen_error(
        &read(format!(
            "/queries/count?event_collection=sales&filters={wrong_geo}"
        ))
        .await,
        400,
        "InvalidPropertyNameForGeoFilter",
    );
    let write_key = send(
        client()
            .get(
                fixture
                    .server
                    .project_url("/queries/count?event_collection=sales"),
            )
            .header("Authorization", &fixture.server.project.write),
    )
    .await;
    assert_keen_error(&write_key, 401, "RequestForbiddenError");
    // An unknown collection counts nothing.
    assert_eq!(
        fixture
            .query("count", json!({"event_collection": "nothing-here"}))
            .await,
        json!(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_event_counts_in_the_next_query() {
    let server = InProcessServer::start().await;
    for expected in 1..=20 {
        let write = send(
            client()
                .post(server.project_url("/events/fresh"))
                .header("Authorization", &server.project.write)
                .json(&json!({"n": expected})),
        )
        .await;
        assert_eq!(write.0, 201);
        let count = send(
            client()
                .get(server.project_url("/queries/count?event_collection=fresh"))
                .header("Authorization", &server.project.read),
        )
        .await;
        assert_eq!(count.1, json!({"result": expected}));
        if expected == 10 {
            server.storage.flush().await.unwrap();
        }
    }
}

fn without_server_fields(event: &Value) -> Value {
    let mut event = event.clone();
    let keen = event["keen"].as_object_mut().unwrap();
    keen.remove("id");
    keen.remove("created_at");
    event
}

#[tokio::test(flavor = "multi_thread")]
async fn extraction_returns_the_events_as_written() {
    let fixture = Fixture::new().await;
    let extracted = fixture
        .query("extraction", json!({"event_collection": "sales"}))
        .await;
    let extracted = extracted.as_array().unwrap();
    assert_eq!(extracted.len(), fixture.events.len());
    let times: Vec<&str> = extracted
        .iter()
        .map(|event| event["keen"]["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first"
    );
    for event in extracted {
        assert_eq!(event["keen"]["id"].as_str().unwrap().len(), 24);
        let original = &fixture.events[event["seq"].as_u64().unwrap() as usize];
        assert!(
            approx_equal(&without_server_fields(event), original),
            "{event} was written as {original}"
        );
    }

    let filter = json!([{"property_name": "country", "operator": "eq", "property_value": "fr"}]);
    let filtered = fixture
        .query(
            "extraction",
            json!({"event_collection": "sales", "filters": filter}),
        )
        .await;
    assert_eq!(
        filtered.as_array().unwrap().len(),
        fixture.matching(filter.as_array().unwrap()).len()
    );

    let latest = fixture
        .query(
            "extraction",
            json!({"event_collection": "sales", "latest": 5}),
        )
        .await;
    let latest_times: Vec<&str> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["keen"]["timestamp"].as_str().unwrap())
        .collect();
    assert_eq!(latest_times, times[times.len() - 5..]);

    let selected = fixture.query("extraction", json!({"event_collection": "sales", "property_names": ["user.id", "price"], "latest": 1})).await;
    let only = &selected[0];
    assert!(only.get("keen").is_none() && only.get("name").is_none());
    assert!(only["user"].as_object().unwrap().len() == 1 && only["user"]["id"].is_string());

    let email = send(
        client()
            .post(fixture.server.project_url("/queries/extraction"))
            .header("Authorization", &fixture.server.project.read)
            .json(&json!({"event_collection": "sales", "email": "a@b.c"})),
    )
    .await;
    assert_keen_error(&email, 400, "InvalidParameterError");
}

#[tokio::test(flavor = "multi_thread")]
async fn funnels_with_optional_inverted_and_actors_match_the_reference() {
    let fixture = Fixture::new().await;
    let filter = |property: &str, operator: &str, value: Value| json!([{"property_name": property, "operator": operator, "property_value": value}]);
    let steps = json!([
        {"event_collection": "sales", "actor_property": "user.id"},
        {"event_collection": "sales", "actor_property": "user.id", "filters": filter("user.id", "in", json!(["u1", "u2", "u3", "u4", "u8", "u16"])), "with_actors": true},
        {"event_collection": "sales", "actor_property": "user.id", "filters": filter("price", "gt", json!(95)), "optional": true},
        {"event_collection": "sales", "actor_property": "user.id", "filters": filter("seq", "in", json!([3, 4])), "inverted": true},
        {"event_collection": "sales", "actor_property": "user.id", "filters": filter("flag", "eq", json!(true)), "timeframe": {"start": "2024-03-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"}},
    ]);
    let answer = send(
        client()
            .post(fixture.server.project_url("/queries/funnel"))
            .header("Authorization", &fixture.server.project.read)
            .json(&json!({"steps": steps})),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);

    // Reference: sets of actors per step.
    let actors_of = |step: &Value| -> std::collections::BTreeSet<String> {
        let filters: Vec<Value> = step
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let window = step.get("timeframe").map(|timeframe| {
            let bound = |name: &str| {
                keyhole_model::timestamp::parse_timestamp(timeframe[name].as_str().unwrap())
                    .unwrap()
            };
            (bound("start"), bound("end"))
        });
        fixture
            .matching(&filters)
            .into_iter()
            .filter(|event| {
                let time = keyhole_model::timestamp::parse_timestamp(
                    event["keen"]["timestamp"].as_str().unwrap(),
                )
                .unwrap();
                window.is_none_or(|(start, end)| time >= start && time < end)
            })
            .map(|event| event["user"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let sets: Vec<_> = steps.as_array().unwrap().iter().map(actors_of).collect();
    let step1 = sets[0].clone();
    let step2: std::collections::BTreeSet<String> = step1.intersection(&sets[1]).cloned().collect();
    let step3: std::collections::BTreeSet<String> = step2.intersection(&sets[2]).cloned().collect();
    let step4: std::collections::BTreeSet<String> = step2.difference(&sets[3]).cloned().collect();
    let step5: std::collections::BTreeSet<String> = step4.intersection(&sets[4]).cloned().collect();
    let expected_counts = json!([
        step1.len(),
        step2.len(),
        step3.len(),
        step4.len(),
        step5.len()
    ]);
    assert_eq!(answer.1["result"], expected_counts);
    assert!(
        step2.len() < step1.len() && !step5.is_empty(),
        "the suite's funnel should narrow"
    );
    let actors: Vec<&str> = answer.1["actors"][1]
        .as_array()
        .unwrap()
        .iter()
        .map(|actor| actor.as_str().unwrap())
        .collect();
    assert_eq!(actors, step2.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(answer.1["actors"][0], Value::Null);
    assert_eq!(answer.1["steps"][2]["optional"], true);
    assert_eq!(answer.1["steps"][0]["inverted"], false);
    assert_eq!(answer.1["steps"][1]["with_actors"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_by_buckets_ranges_created_at_and_property_type() {
    let fixture = Fixture::new().await;
    let everything = fixture.matching(&[]);
    let count_by = |key: &dyn Fn(&Value) -> Value| {
        let mut counts: Vec<(Value, usize)> = Vec::new();
        for event in &everything {
            let group = key(event);
            match counts.iter_mut().find(|(known, _)| *known == group) {
                Some((_, count)) => *count += 1,
                None => counts.push((group, 1)),
            }
        }
        counts
    };

    let buckets = fixture.query("count", json!({"event_collection": "sales", "group_by": {"property_name": "price", "buckets": {"size": 25}}})).await;
    let mut expected = count_by(&|event: &Value| {
        event
            .get("price")
            .and_then(Value::as_f64)
            .map_or(Value::Null, |price| {
                json!(((price / 25.0).floor() * 25.0) as i64)
            })
    });
    expected.sort_by(|a, b| json_order(&a.0, &b.0));
    let expected: Vec<Value> = expected
        .into_iter()
        .map(|(group, count)| json!({"price": group, "result": count}))
        .collect();
    assert_eq!(buckets, Value::Array(expected));

    let ranges = fixture.query("count", json!({"event_collection": "sales", "group_by": {"property_name": "price", "ranges": [{"from": 0, "to": 50}, {"from": 50}]}})).await;
    let low = everything
        .iter()
        .filter(|event| {
            event
                .get("price")
                .and_then(Value::as_f64)
                .is_some_and(|price| price < 50.0)
        })
        .count();
    let high = everything
        .iter()
        .filter(|event| {
            event
                .get("price")
                .and_then(Value::as_f64)
                .is_some_and(|price| price >= 50.0)
        })
        .count();
    assert_eq!(
        ranges,
        json!([
            {"price": null, "result": everything.len() - low - high},
            {"price": {"from": 0, "to": 50}, "result": low},
            {"price": {"from": 50, "to": null}, "result": high},
        ])
    );

    let created = |operator: &str| json!({"event_collection": "sales", "filters": [{"property_name": "keen.created_at", "operator": operator, "property_value": "2020-01-01T00:00:00.000Z"}]});
    assert_eq!(fixture.query("count", created("gt")).await, json!(240));
    assert_eq!(fixture.query("count", created("lt")).await, json!(0));

    // Keen's Explorer adds `property_type` to filters; it is accepted.
    let typed = json!({"event_collection": "sales", "filters": [{"property_name": "country", "operator": "eq", "property_value": "de", "property_type": "String"}]});
    let plain = json!({"event_collection": "sales", "filters": [{"property_name": "country", "operator": "eq", "property_value": "de"}]});
    assert_eq!(
        fixture.query("count", typed).await,
        fixture.query("count", plain).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_analysis_in_every_shape_matches_the_reference() {
    let fixture = Fixture::new().await;
    let analyses = json!({"n": {"analysis_type": "count"}, "total": {"analysis_type": "sum", "target_property": "price"}, "users": {"analysis_type": "count_unique", "target_property": "user.id"}});
    let labelled = |events: &[&Value]| json!({"n": analyse("count", events, "", 0.0), "total": analyse("sum", events, "price", 0.0), "users": analyse("count_unique", events, "user.id", 0.0)});
    let grouped_rows = |events: &[&Value], groups: &[Value]| -> Value {
        Value::Array(
            groups
                .iter()
                .map(|group| {
                    let members: Vec<&Value> = events
                        .iter()
                        .copied()
                        .filter(|event| group_value(event, "country") == *group)
                        .collect();
                    let mut row = labelled(&members);
                    row["country"] = group.clone();
                    row
                })
                .collect(),
        )
    };
    let everything = fixture.matching(&[]);
    let all_groups: Vec<Value> = grouped_reference(&everything, "count", "", &["country"])
        .iter()
        .map(|row| row["country"].clone())
        .collect();

    let plain = fixture
        .query(
            "multi_analysis",
            json!({"event_collection": "sales", "analyses": analyses}),
        )
        .await;
    assert!(
        approx_equal(&plain, &labelled(&everything)),
        "plain: {plain}"
    );
    let grouped = fixture
        .query(
            "multi_analysis",
            json!({"event_collection": "sales", "analyses": analyses, "group_by": "country"}),
        )
        .await;
    assert!(
        approx_equal(&grouped, &grouped_rows(&everything, &all_groups)),
        "group_by: {grouped}"
    );

    let boundaries = day_boundaries(
        chrono_tz::Europe::Berlin,
        NaiveDate::from_ymd_opt(2024, 10, 25).unwrap(),
        5,
    );
    let format = keyhole_model::timestamp::format_timestamp;
    let time_of = |event: &Value| {
        keyhole_model::timestamp::parse_timestamp(event["keen"]["timestamp"].as_str().unwrap())
            .unwrap()
    };
    let in_bucket = |bucket: usize| -> Vec<&Value> {
        everything
            .iter()
            .copied()
            .filter(|event| (boundaries[bucket]..boundaries[bucket + 1]).contains(&time_of(event)))
            .collect()
    };
    let window: Vec<&Value> = everything
        .iter()
        .copied()
        .filter(|event| (boundaries[0]..boundaries[5]).contains(&time_of(event)))
        .collect();
    let window_groups: Vec<Value> = grouped_reference(&window, "count", "", &["country"])
        .iter()
        .map(|row| row["country"].clone())
        .collect();
    let interval = json!({"event_collection": "sales", "analyses": analyses, "timeframe": {"start": format(boundaries[0]), "end": format(boundaries[5])}, "interval": "daily", "timezone": "Europe/Berlin"});
    let series = fixture.query("multi_analysis", interval.clone()).await;
    let expected: Vec<Value> = (0..5).map(|bucket| json!({"timeframe": {"start": format(boundaries[bucket]), "end": format(boundaries[bucket + 1])}, "value": labelled(&in_bucket(bucket))})).collect();
    assert!(
        approx_equal(&series, &Value::Array(expected)),
        "interval: {series}"
    );
    let mut interval_grouped = interval;
    interval_grouped["group_by"] = json!("country");
    let grouped_series = fixture.query("multi_analysis", interval_grouped).await;
    let expected: Vec<Value> = (0..5)
        .map(|bucket| json!({"timeframe": {"start": format(boundaries[bucket]), "end": format(boundaries[bucket + 1])}, "value": grouped_rows(&in_bucket(bucket), &window_groups)}))
        .collect();
    assert!(
        approx_equal(&grouped_series, &Value::Array(expected)),
        "interval + group_by: {grouped_series}"
    );
}

/// Plain minimum/maximum are answered from file statistics and memory; they must equal the plan's answer
/// (forced here with a filter every event passes), over flushed files and buffered rows alike.
#[tokio::test(flavor = "multi_thread")]
async fn minimum_and_maximum_from_statistics_equal_the_scanned_answer() {
    let server = crate::support::InProcessServer::start().await;
    let batch = |values: Vec<serde_json::Value>| serde_json::json!({"m": values});
    let events = |range: std::ops::Range<i64>| {
        range
            .map(|i| serde_json::json!({"x": (i * 37 % 1000) - 500, "y": "text", "keen": {"timestamp": format!("2024-02-{:02}T10:00:00Z", 1 + i % 20)}}))
            .collect::<Vec<_>>()
    };
    let write = |body: serde_json::Value| {
        let server = &server;
        async move {
            let answer = crate::support::send(
                crate::support::client()
                    .post(server.project_url("/events"))
                    .header("Authorization", &server.project.write)
                    .json(&body),
            )
            .await;
            assert_eq!(answer.0, 200);
        }
    };
    write(batch(events(0..400))).await;
    server.storage.flush().await.unwrap();
    write(batch(events(400..450))).await;
    write(serde_json::json!({"m": [{"x": "not a number"}, {"z": true}]})).await;
    for analysis in ["minimum", "maximum"] {
        let ask = |filters: serde_json::Value| {
            crate::support::client()
                .post(server.project_url(&format!("/queries/{analysis}")))
                .header("Authorization", &server.project.master)
                .json(&serde_json::json!({"event_collection": "m", "target_property": "x", "filters": filters}))
        };
        let fast = crate::support::send(ask(serde_json::json!([]))).await;
        let scanned = crate::support::send(ask(serde_json::json!([
            {"property_name": "keen.timestamp", "operator": "exists", "property_value": true}])))
        .await;
        assert_eq!(fast.0, 200, "{}", fast.1);
        assert_eq!(fast.1["result"], scanned.1["result"], "{analysis}");
        assert!(fast.1["result"].is_number());
    }
    let none = crate::support::send(
        crate::support::client()
            .post(server.project_url("/queries/minimum"))
            .header("Authorization", &server.project.master)
            .json(&serde_json::json!({"event_collection": "m", "target_property": "y"})),
    )
    .await;
    assert_eq!(
        none.1["result"],
        serde_json::Value::Null,
        "a property without numbers"
    );
}

/// Keen's `this_` timeframes run "until now": an event stamped later in the current unit is neither
/// counted nor extracted yet, and an interval's last bucket ends now.
#[tokio::test(flavor = "multi_thread")]
async fn this_timeframes_end_now() {
    use chrono::{Duration, Utc};
    let server = InProcessServer::start().await;
    let mut now = Utc::now();
    let end_of_day = |at: chrono::DateTime<Utc>| {
        (at.date_naive() + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    if end_of_day(now) - now < Duration::seconds(20) {
        tokio::time::sleep(std::time::Duration::from_secs(21)).await;
        now = Utc::now();
    }
    let later_today = now + (end_of_day(now) - now) / 2;
    let stamp = |at: chrono::DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    server
        .write_events(
            "visits",
            vec![
                json!({"when": "now", "keen": {"timestamp": stamp(now - Duration::seconds(5))}}),
                json!({"when": "later today", "keen": {"timestamp": stamp(later_today)}}),
            ],
        )
        .await;
    let master = server.project.master.clone();
    for timeframe in ["this_day", "today", "this_1_days", "this_2_days"] {
        let count = server
            .post_json(
                "/queries/count",
                &master,
                &json!({"event_collection": "visits", "timeframe": timeframe}),
            )
            .await;
        assert_eq!(count, (200, json!({"result": 1})), "{timeframe}");
        let extraction = server
            .post_json(
                "/queries/extraction",
                &master,
                &json!({"event_collection": "visits", "timeframe": timeframe}),
            )
            .await;
        assert_eq!(
            extraction.1["result"].as_array().unwrap().len(),
            1,
            "{timeframe}"
        );
        assert_eq!(extraction.1["result"][0]["when"], "now", "{timeframe}");
    }
    let previous = server
        .post_json(
            "/queries/count",
            &master,
            &json!({"event_collection": "visits", "timeframe": "previous_1_days"}),
        )
        .await;
    assert_eq!(previous.1["result"], 0);
    let daily = server
        .post_json(
            "/queries/count",
            &master,
            &json!({"event_collection": "visits", "timeframe": "this_2_days", "interval": "daily"}),
        )
        .await;
    assert_eq!(daily.0, 200, "{}", daily.1);
    let buckets = daily.1["result"].as_array().unwrap();
    assert_eq!(buckets.len(), 2);
    assert_eq!(buckets[1]["value"], 1);
    let last_end: chrono::DateTime<Utc> = buckets[1]["timeframe"]["end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        last_end >= now && last_end < now + Duration::seconds(30) && last_end < end_of_day(now),
        "the last bucket ends now, not at midnight: {last_end} (now {now})"
    );
}
