//! What operators see: `GET /metrics` (Prometheus text, behind the organization key) counts requests by
//! route template and status, refusals by reason, ingest, WAL commits and queries — and never carries a
//! key, a project id or a tenant value.

use serde_json::json;

use crate::support::{InProcessServer, client, send};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened_without_naming_tenants() {
    let server = InProcessServer::start().await;
    let written = send(
        client()
            .post(server.project_url("/events/visits"))
            .header("Authorization", &server.project.write)
            .json(&json!({"tenant": "acme-secret-tenant"})),
    )
    .await;
    assert_eq!(written.0, 201);
    let counted = send(
        client()
            .get(server.project_url("/queries/count?event_collection=visits"))
            .header("Authorization", &server.project.read),
    )
    .await;
    assert_eq!(counted.1["result"], 1);
    let refused = send(
        client()
            .get(server.project_url("/queries/count?event_collection=visits"))
            .header("Authorization", "no-such-key"),
    )
    .await;
    assert_eq!(refused.0, 401);

    let metrics_url = server.url("/metrics");
    assert_eq!(send(client().get(&metrics_url)).await.0, 401);
    assert_eq!(
        send(
            client()
                .get(&metrics_url)
                .header("Authorization", &server.project.master)
        )
        .await
        .0,
        401,
        "a project's master key is not the organization key"
    );
    let response = client()
        .get(&metrics_url)
        .header("Authorization", format!("Bearer {}", server.org_key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"keyhole_http_requests_total{route="/3.0/projects/{project_id}/events/{collection}",method="POST",status="201"} 1"#,
        r#"keyhole_http_requests_total{route="/3.0/projects/{project_id}/queries/{analysis_type}",method="GET",status="401"} 1"#,
        r#"keyhole_refused_requests_total{reason="unknown_key"} 1"#,
        r"keyhole_ingested_events_total 1",
        r#"keyhole_queries_total{outcome="ok"} 1"#,
        "keyhole_wal_commit_seconds_count 1",
        "keyhole_http_request_duration_seconds_bucket",
        "keyhole_query_peak_memory_bytes_count 1",
        "keyhole_buffered_rows 1",
        "keyhole_quarantined_data_files_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    for secret in [
        &server.project.id,
        &server.project.master,
        &server.project.write,
        &server.project.read,
        &server.org_key,
    ] {
        assert!(!text.contains(secret.as_str()));
    }
    assert!(!text.contains("acme-secret-tenant"));
    // Raw organization key works too (Keen's header form).
    let raw = send(
        client()
            .get(&metrics_url)
            .header("Authorization", &server.org_key),
    )
    .await;
    assert_eq!(raw.0, 200);
}
