//! Keen's resource listings: `GET /` (JSON for a client, the console for a browser), `GET /3.0`, the
//! query resources of a project, and the organization's usage.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send};

#[tokio::test(flavor = "multi_thread")]
async fn the_api_root_lists_versions_and_sends_browsers_to_the_console() {
    let server = InProcessServer::start().await;
    let root = send(client().get(server.url("/"))).await;
    assert_eq!(
        root,
        (
            200,
            json!([{"is_public": true, "url": "/3.0", "version": "3.0", "console_url": "/console/"}])
        )
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let browser = no_redirects
        .get(server.url("/"))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert!(browser.status().is_redirection(), "{}", browser.status());
    assert_eq!(browser.headers()["location"], "/console/");
    let head = client().head(server.url("/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        send(client().get(server.url("/3.0"))).await,
        (200, json!({"projects_resource_url": "/3.0/projects"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_query_resources_name_every_analysis_and_each_url_answers() {
    let server = InProcessServer::start().await;
    server
        .write_events("orders", vec![json!({"price": 3})])
        .await;
    let listing = send(
        client()
            .get(server.project_url("/queries"))
            .header("Authorization", &server.project.read),
    )
    .await;
    assert_eq!(listing.0, 200, "{}", listing.1);
    let redacted: Value = serde_json::from_str(
        &listing
            .1
            .to_string()
            .replace(&server.project.id, "[project]"),
    )
    .unwrap();
    insta::assert_json_snapshot!("query_resources", redacted);
    let count_url = listing.1["count_url"].as_str().unwrap();
    let counted = send(
        client()
            .get(server.url(count_url))
            .query(&[("event_collection", "orders")])
            .header("Authorization", &server.project.read),
    )
    .await;
    assert_eq!(counted, (200, json!({"result": 1})));
    // A key without `queries` cannot list them.
    assert_keen_error(
        &send(
            client()
                .get(server.project_url("/queries"))
                .header("Authorization", &server.project.write),
        )
        .await,
        401,
        "RequestForbiddenError",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_usage_counts_cached_queries_datasets_and_this_months_events() {
    let server = InProcessServer::start().await;
    // Another project of the organization, busier: nothing of it shows in this project's usage.
    let (_, other) = send(
        client()
            .post(server.url(&format!("/3.0/organizations/{}/projects", server.org_id)))
            .header("Authorization", &server.org_key)
            .json(&json!({"name": "other"})),
    )
    .await;
    let other_url = |rest: &str| {
        server.url(&format!(
            "/3.0/projects/{}{rest}",
            other["id"].as_str().unwrap()
        ))
    };
    let other_master = other["api_keys"]["master"].as_str().unwrap().to_string();
    for name in ["theirs", "theirs-too"] {
        let saved = send(
            client()
                .put(other_url(&format!("/queries/saved/{name}")))
                .header("Authorization", &other_master)
                .json(&json!({"query": {"analysis_type": "count", "event_collection": "x"}, "refresh_rate": 14400})),
        )
        .await;
        assert_eq!(saved.0, 201, "{}", saved.1);
    }
    let written = send(
        client()
            .post(other_url("/events/x"))
            .header(
                "Authorization",
                other["api_keys"]["write"].as_str().unwrap(),
            )
            .json(&json!([{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}])),
    )
    .await;
    assert_eq!(written.0, 200, "{}", written.1);
    let saved = send(
        client()
            .put(server.project_url("/queries/saved/daily"))
            .header("Authorization", &server.project.master)
            .json(
                &json!({"query": {"analysis_type": "count", "event_collection": "orders",
                                     "timeframe": "this_7_days"}, "refresh_rate": 14400}),
            ),
    )
    .await;
    assert!(saved.0 == 200 || saved.0 == 201, "{}", saved.1);
    server
        .write_events(
            "orders",
            vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
        )
        .await;
    let usage_url = server.project_url("/organization-usage");
    let mut usage = Value::Null;
    for _ in 0..40 {
        usage = send(
            client()
                .get(&usage_url)
                .header("Authorization", &server.project.master),
        )
        .await
        .1;
        if usage["this_month"]["events_written"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        usage["cached_queries"],
        json!({"limited": false, "limit": null, "current_usage": 1}),
        "{usage}"
    );
    assert_eq!(usage["cached_datasets"]["current_usage"], 0);
    assert_eq!(usage["this_month"]["events_written"], 3, "{usage}");
    assert_eq!(usage["saved_queries"]["current_usage"], 1, "{usage}");
    assert!(usage.get("projects").is_none(), "{usage}");
    // The master key only: a read key is refused.
    assert_keen_error(
        &send(
            client()
                .get(&usage_url)
                .header("Authorization", &server.project.read),
        )
        .await,
        401,
        "AdminOnlyEndpointError",
    );
}
