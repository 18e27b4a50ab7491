//! Query bodies shaped exactly as keen-analysis.js 3.7 POSTs them (snake_case parameters plus
//! `analysis_type`, `timezone` as the browser's offset in seconds, `include_metadata`), over plain HTTP,
//! with every response shape pinned by an insta snapshot (timestamps and timings redacted).

use serde_json::{Value, json};

use crate::support::{InProcessServer, client, send};

async fn setup() -> InProcessServer {
    let server = InProcessServer::start().await;
    // Events a few milliseconds apart just before now: inside every `this_…` timeframe below, and in a
    // definite order for `latest`.
    let now = chrono::Utc::now().timestamp_millis();
    let at = |index: i64| json!({"timestamp": keyhole_model::timestamp::format_timestamp(now - 10 + index)});
    let mut batch = json!({
        "pageviews": [
            {"page": "/", "user": {"id": "a"}, "country": "de", "ms": 120},
            {"page": "/pricing", "user": {"id": "b"}, "country": "us", "ms": 80},
            {"page": "/", "user": {"id": "b"}, "country": "us", "ms": 100},
            {"page": "/signup", "user": {"id": "c"}, "ms": 300},
        ],
        "signups": [{"user": {"id": "b"}}, {"user": {"id": "c"}}],
    });
    for (index, event) in batch["pageviews"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        event["keen"] = at(index as i64);
    }
    let answer = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&batch),
    )
    .await;
    assert_eq!(answer.0, 200);
    server
}

async fn post(server: &InProcessServer, analysis: &str, body: Value) -> Value {
    let answer = send(
        client()
            .post(server.project_url(&format!("/queries/{analysis}")))
            .header("Authorization", &server.project.read)
            .header("Content-type", "application/json")
            .header("keen-sdk", "javascript-3.7.0")
            .json(&body),
    )
    .await;
    assert_eq!(answer.0, 200, "{analysis}: {}", answer.1);
    assert!(answer.1.get("error_code").is_none());
    answer.1
}

#[tokio::test(flavor = "multi_thread")]
async fn keen_analysis_bodies_and_response_shapes() {
    let server = setup().await;
    let offset = -28800;
    let count = post(&server, "count", json!({"analysis_type": "count", "event_collection": "pageviews", "timeframe": "this_14_days", "timezone": offset})).await;
    insta::assert_json_snapshot!("ka_count", count);

    let grouped = post(&server, "count", json!({"analysis_type": "count", "event_collection": "pageviews", "timeframe": "this_14_days", "timezone": offset, "group_by": ["country"]})).await;
    insta::assert_json_snapshot!("ka_count_group_by", grouped);

    let series = post(&server, "sum", json!({"analysis_type": "sum", "event_collection": "pageviews", "target_property": "ms", "timeframe": "this_3_days", "interval": "daily", "timezone": offset})).await;
    insta::assert_json_snapshot!("ka_sum_interval", series, {".result[].timeframe.start" => "[start]", ".result[].timeframe.end" => "[end]"});

    let grouped_series = post(&server, "select_unique", json!({"analysis_type": "select_unique", "event_collection": "pageviews", "target_property": "page", "timeframe": "this_2_days", "interval": "daily", "group_by": "country", "timezone": offset})).await;
    insta::assert_json_snapshot!("ka_select_unique_interval_group_by", grouped_series, {".result[].timeframe.start" => "[start]", ".result[].timeframe.end" => "[end]"});

    let with_metadata = post(&server, "average", json!({"analysis_type": "average", "event_collection": "pageviews", "target_property": "ms", "timeframe": "this_1_days", "timezone": offset, "include_metadata": true})).await;
    insta::assert_json_snapshot!("ka_average_metadata", with_metadata, {".execution_metadata.total_processing_time" => "[seconds]"});

    let funnel = post(&server, "funnel", json!({"analysis_type": "funnel", "timezone": offset, "steps": [
        {"event_collection": "pageviews", "actor_property": "user.id", "timeframe": "this_7_days", "timezone": offset},
        {"event_collection": "signups", "actor_property": "user.id", "timeframe": "this_7_days", "timezone": offset, "with_actors": true},
    ]}))
    .await;
    insta::assert_json_snapshot!("ka_funnel", funnel);

    let multi = post(&server, "multi_analysis", json!({"analysis_type": "multi_analysis", "event_collection": "pageviews", "timeframe": "this_14_days", "timezone": offset, "group_by": "country",
        "analyses": {"views": {"analysis_type": "count"}, "slowest": {"analysis_type": "maximum", "target_property": "ms"}}}))
    .await;
    insta::assert_json_snapshot!("ka_multi_analysis_group_by", multi);

    let extraction = post(&server, "extraction", json!({"analysis_type": "extraction", "event_collection": "pageviews", "timeframe": "this_14_days", "timezone": offset, "latest": 2, "property_names": ["page", "user.id"]})).await;
    insta::assert_json_snapshot!("ka_extraction", extraction);
}
