//! Access-key features beyond Keen, over HTTP: expiry, the look-back window, rate limits and daily
//! quotas with usage counters, introspection (`/keys/self`), the audit log, and the stricter validation
//! of key definitions.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

async fn master_get(server: &InProcessServer, path: &str) -> (u16, Value) {
    send(
        client()
            .get(server.project_url(path))
            .header("Authorization", &server.project.master),
    )
    .await
}

async fn count(server: &InProcessServer, key: &str, timeframe: &str) -> (u16, Value) {
    send(
        client()
            .get(server.project_url(&format!(
                "/queries/count?event_collection=visits&timeframe={timeframe}"
            )))
            .header("Authorization", key),
    )
    .await
}

async fn write(server: &InProcessServer, key: &str, events: usize) -> (u16, Value) {
    let events: Vec<Value> = (0..events).map(|n| json!({"n": n})).collect();
    send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", key)
            .json(&json!({"visits": events})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_key_is_refused_on_the_next_request_and_extended_keys_work_again() {
    let server = InProcessServer::start().await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let expires_text = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let definition = json!({"name": "trial", "permitted": ["queries"], "expires_at": expires_text});
    let key = server.create_access_key(definition.clone()).await;
    let shown = master_get(&server, &format!("/keys/{key}")).await;
    assert_eq!(shown.1["expires_at"], expires_text.as_str());
    assert_eq!(count(&server, &key, "this_1_days").await.0, 200);
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(1600)).await;
    let refused = count(&server, &key, "this_1_days").await;
    assert_keen_error(&refused, 401, "InvalidApiKeyError");
    assert!(refused.1["message"].as_str().unwrap().contains("expired"));
    let mut extended = definition;
    extended["expires_at"] = Value::Null;
    let updated = send(
        client()
            .post(server.project_url(&format!("/keys/{key}")))
            .header("Authorization", &server.project.master)
            .json(&extended),
    )
    .await;
    assert_eq!((updated.0, &updated.1["expires_at"]), (200, &Value::Null));
    assert_eq!(count(&server, &key, "this_1_days").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_look_back_window_clips_every_read() {
    let server = InProcessServer::start().await;
    let days_ago = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let events: Vec<Value> = [40, 20, 3, 1]
        .iter()
        .map(|days| json!({"age": days, "keen": {"timestamp": days_ago(*days)}}))
        .collect();
    let written = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&json!({"visits": events})),
    )
    .await;
    assert_eq!(written.0, 200);
    let key = server.create_access_key(json!({"name": "recent", "permitted": ["queries", "schema"], "options": {"queries": {"max_lookback": "7 days"}}}),
    )
    .await;
    assert_eq!(count(&server, &key, "this_60_days").await.1["result"], 2);
    assert_eq!(
        count(&server, &server.project.master, "this_60_days")
            .await
            .1["result"],
        4
    );
    let old_range = format!(
        "{{\"start\":\"{}\",\"end\":\"{}\"}}",
        days_ago(50),
        days_ago(10)
    );
    let encoded = old_range.bytes().fold(String::new(), |mut encoded, byte| {
        use std::fmt::Write;
        let _ = write!(encoded, "%{byte:02X}");
        encoded
    });
    assert_eq!(count(&server, &key, &encoded).await.1["result"], 0);
    let extraction =
        send(
            client()
                .get(server.project_url(
                    "/queries/extraction?event_collection=visits&timeframe=this_60_days",
                ))
                .header("Authorization", &key),
        )
        .await;
    let ages: Vec<i64> = extraction.1["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["age"].as_i64().unwrap())
        .collect();
    assert_eq!(ages.len(), 2);
    assert!(ages.iter().all(|age| *age < 7), "{ages:?}");
    // Events scanned are those inside the window, not the collection's total.
    let with_metadata = send(
        client()
            .get(server.project_url(
                "/queries/count?event_collection=visits&timeframe=this_60_days&include_metadata=true",
            ))
            .header("Authorization", &key),
    )
    .await;
    assert_eq!(with_metadata.1["execution_metadata"]["events_scanned"], 2);
    let introspection = server.key_self(&key).await;
    assert_eq!(introspection.1["max_lookback_seconds"], 7 * 86_400);
    assert_keen_error(
        &send(
            client()
                .post(server.project_url("/keys"))
                .header("Authorization", &server.project.master)
                .json(&json!({"name": "k", "options": {"queries": {"max_lookback": "3 months"}}})),
        )
        .await,
        400,
        "InvalidAccessKeyDefinitionError",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_quotas_answer_429_with_retry_after_and_usage_counts() {
    let server = InProcessServer::start().await;
    let key = server.create_access_key(json!({"name": "metered", "permitted": ["queries", "writes"], "options": {"limits": {
            "reads_per_second": 0.5, "reads_burst": 2, "events_per_day": 5, "queries_per_day": 100}}}),
    )
    .await;
    assert_eq!(count(&server, &key, "this_1_days").await.0, 200);
    assert_eq!(count(&server, &key, "this_1_days").await.0, 200);
    let limited = client()
        .get(server.project_url("/queries/count?event_collection=visits&timeframe=this_1_days"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error_code"], "RateLimitedError");
    // Writes have their own bucket (none here) and the events quota: 3 + 2 fit, one more does not.
    assert_eq!(write(&server, &key, 3).await.0, 200);
    assert_eq!(write(&server, &key, 2).await.0, 200);
    let over = write(&server, &key, 1).await;
    assert_keen_error(&over, 429, "QuotaExceededError");
    // Usage, by the master key and by the key itself.
    let usage = master_get(&server, &format!("/keys/{key}/usage")).await;
    assert_eq!(usage.0, 200, "{}", usage.1);
    assert_eq!(usage.1["usage"]["events"], 5);
    assert_eq!(usage.1["usage"]["queries"], 2);
    assert_eq!(usage.1["usage"]["refused"], 2);
    assert_eq!(usage.1["limits"]["events_per_day"], 5);
    let own = server.key_self(&key).await;
    assert_eq!(own.0, 200, "{}", own.1);
    assert_eq!(own.1["usage"]["counts"]["events"], 5);
    assert_eq!(own.1["limits"]["reads_burst"], 2);
    assert!(!own.1.to_string().contains(&key));
    // Another key's usage is the master key's to read.
    assert_eq!(
        send(
            client()
                .get(server.project_url(&format!("/keys/{key}/usage")))
                .header("Authorization", &key)
        )
        .await
        .0,
        401
    );

    let queries = server.create_access_key(json!({"name": "two queries", "permitted": ["queries"], "options": {"limits": {"queries_per_day": 2}}}),
    )
    .await;
    assert_eq!(count(&server, &queries, "this_1_days").await.0, 200);
    assert_eq!(count(&server, &queries, "this_1_days").await.0, 200);
    let exhausted = count(&server, &queries, "this_1_days").await;
    assert_keen_error(&exhausted, 429, "QuotaExceededError");
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_shows_the_effective_grant_without_secrets() {
    let server = InProcessServer::start().await;
    let key = server.create_access_key(json!({"name": "acme dashboard", "permitted": ["queries", "writes"], "expires_at": "2099-01-01T00:00:00Z",
               "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "acme"}]},
                           "writes": {"autofill": {"tenant": "acme"}, "collections": ["visits"]}}}),
    )
    .await;
    let own = server.key_self(&key).await;
    assert_eq!(own.0, 200, "{}", own.1);
    assert_eq!(own.1["kind"], "access");
    assert_eq!(own.1["credential"], "key");
    assert_eq!(own.1["name"], "acme dashboard");
    assert_eq!(own.1["key_prefix"], &key[..8]);
    assert_eq!(own.1["permitted"], json!(["queries", "writes"]));
    assert_eq!(
        own.1["filters"],
        json!([{"property_name": "tenant", "operator": "eq", "property_value": "acme"}])
    );
    assert_eq!(own.1["autofill"], json!({"tenant": "acme"}));
    assert_eq!(own.1["writable_collections"], json!(["visits"]));
    assert_eq!(own.1["expires_at"], "2099-01-01T00:00:00.000Z");
    assert!(!own.1.to_string().contains(&key));
    insta::assert_json_snapshot!("key_self", own.1, {
        ".project_id" => "[project]", ".key_prefix" => "[prefix]", ".usage.day" => "[day]"
    });
    for project_key in [&server.project.read, &server.project.master] {
        let answer = server.key_self(project_key).await;
        assert_eq!(answer.0, 200);
        assert!(!answer.1.to_string().contains(project_key.as_str()));
    }
    assert_eq!(
        send(client().get(server.project_url("/keys/self"))).await.0,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_records_every_key_change_and_refusal_by_reason() {
    let server = InProcessServer::start().await;
    let definition = json!({"name": "audited", "permitted": ["queries"]});
    let key = server.create_access_key(definition.clone()).await;
    let master_post = |path: String, body: Value| {
        send(
            client()
                .post(server.project_url(&path))
                .header("Authorization", &server.project.master)
                .json(&body),
        )
    };
    let mut renamed = definition;
    renamed["name"] = json!("renamed");
    assert_eq!(master_post(format!("/keys/{key}"), renamed).await.0, 200);
    assert_eq!(
        master_post(format!("/keys/{key}/revoke"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(count(&server, &key, "this_1_days").await.0, 401);
    assert_eq!(count(&server, &key, "this_1_days").await.0, 401);
    assert_eq!(
        master_post(format!("/keys/{key}/unrevoke"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        master_post(format!("/keys/{key}/tokens/t-1/revoke"), json!({}))
            .await
            .0,
        200
    );
    let other = server.create_access_key(json!({"name": "reader"})).await;
    assert_eq!(count(&server, &other, "this_1_days").await.0, 401);
    let deleted = send(
        client()
            .delete(server.project_url(&format!("/keys/{key}")))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(deleted.0, 204);
    server.meta.flush_audit().await;

    let page = master_get(&server, "/keys/audit?limit=100").await;
    assert_eq!(page.0, 200, "{}", page.1);
    let entries = page.1["entries"].as_array().unwrap();
    let summary: Vec<(String, String)> = entries
        .iter()
        .rev()
        .map(|entry| {
            let what = entry["reason"].as_str().unwrap_or_default();
            (
                entry["action"].as_str().unwrap().to_string(),
                what.to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("create", ""),
        ("update", ""),
        ("revoke", ""),
        ("refused", "revoked_key"),
        ("unrevoke", ""),
        ("revoke_token", ""),
        ("create", ""),
        ("refused", "operation_not_permitted"),
        ("delete", ""),
    ]
    .iter()
    .map(|(action, reason)| (action.to_string(), reason.to_string()))
    .collect();
    assert_eq!(summary, expected);
    let revoked_refusal = &entries[entries.len() - 4];
    assert_eq!(
        revoked_refusal["times"], 2,
        "identical refusals are one entry"
    );
    assert_eq!(revoked_refusal["actor"], &key[..8]);
    assert!(
        revoked_refusal["request"]
            .as_str()
            .unwrap()
            .starts_with("GET /3.0/projects/")
    );
    let update = &entries[entries.len() - 2];
    assert_eq!(update["before"]["name"], "audited");
    assert_eq!(update["after"]["name"], "renamed");
    assert_eq!(update["actor"], &server.project.master[..8]);
    let text = page.1.to_string();
    for secret in [&key, &other, &server.project.master] {
        assert!(
            !text.contains(secret.as_str()),
            "the audit log holds a secret"
        );
    }
    // Pages continue where the last one stopped; only the master key reads the log.
    let first = master_get(&server, "/keys/audit?limit=4").await;
    let next = first.1["next_before"].as_str().unwrap().to_string();
    let second = master_get(&server, &format!("/keys/audit?limit=100&before={next}")).await;
    assert_eq!(
        first.1["entries"].as_array().unwrap().len()
            + second.1["entries"].as_array().unwrap().len(),
        entries.len()
    );
    assert_eq!(master_get(&server, "/keys/audit?limit=0").await.0, 400);
    let by_reader = send(
        client()
            .get(server.project_url("/keys/audit"))
            .header("Authorization", &server.project.read),
    )
    .await;
    assert_keen_error(&by_reader, 401, "AdminOnlyEndpointError");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_definitions_are_validated_strictly() {
    let server = InProcessServer::start().await;
    let post = |body: String| {
        send(
            client()
                .post(server.project_url("/keys"))
                .header("Authorization", &server.project.master)
                .header("Content-Type", "application/json")
                .body(body),
        )
    };
    for body in [
        r#"{"name": "k", "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "a"}], "filters": []}}}"#,
        r#"{"name": "k", "name": "j"}"#,
        r#"{"name": "k", "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "eq"}]}}}"#,
        r#"{"name": "k", "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "regex", "property_value": "(unclosed"}]}}}"#,
        r#"{"name": "k", "expires_at": "next week"}"#,
        r#"{"name": "k", "options": {"limits": {"reads_per_second": -1}}}"#,
        r#"{"name": "k", "options": {"limits": {"reads_burst": 3}}}"#,
    ] {
        let answer = post(body.to_string()).await;
        assert_keen_error(&answer, 400, "InvalidAccessKeyDefinitionError");
    }
    let answer = post(r#"{"name": "k", "name": "j"}"#.to_string()).await;
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("appears twice")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_changes_reorder_storage_through_the_change_hook() {
    let server = InProcessServer::start().await;
    let project = server.project.id.clone();
    assert!(server.storage.clustering_of(&project).is_empty());
    let tenant = |value: &str| {
        json!({"name": value, "permitted": ["queries"], "options": {"queries": {"filters": [
            {"property_name": "tenant_id", "operator": "eq", "property_value": value}]}}})
    };
    let key = server.create_access_key(tenant("a")).await;
    assert_eq!(server.storage.clustering_of(&project), ["tenant_id"]);
    let revoked = send(
        client()
            .post(server.project_url(&format!("/keys/{key}/revoke")))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(revoked.0, 200);
    assert!(
        server.storage.clustering_of(&project).is_empty(),
        "a revoked key reads nothing"
    );
    let mut expired = tenant("b");
    expired["expires_at"] = json!("2020-01-01T00:00:00Z");
    server.create_access_key(expired).await;
    assert!(
        server.storage.clustering_of(&project).is_empty(),
        "nor does an expired one"
    );
    server.create_access_key(tenant("c")).await;
    assert_eq!(server.storage.clustering_of(&project), ["tenant_id"]);
}
