//! Origin-bound keys (`options.origins`): requests and preflights from other origins are refused with
//! `OriginNotAllowedError` (readable by the page: the CORS headers are on the refusal too), listed and
//! wildcard origins pass, requests without an `Origin` pass, embed tokens inherit the binding, refusals
//! reach the audit log, and definitions that are not origins are refused.

use serde_json::json;

use crate::support::{InProcessServer, assert_keen_error, client, send};

#[tokio::test(flavor = "multi_thread")]
async fn a_key_bound_to_origins_works_only_from_them() {
    let server = InProcessServer::start().await;
    server
        .write_events("orders", vec![json!({"vendor": "acme"})])
        .await;
    let key = server
        .create_access_key(json!({"name": "acme dashboard", "permitted": ["queries"],
            "options": {"origins": ["https://app.example.com", "https://*.acme.test", "http://localhost:8080"]}}))
        .await;
    let count = |origin: Option<&'static str>, credential: String| {
        let mut request = client()
            .get(server.project_url("/queries/count?event_collection=orders"))
            .header("Authorization", credential);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    for origin in [
        None,
        Some("https://app.example.com"),
        Some("https://eu.acme.test"),
        Some("https://a.b.acme.test:443"),
        Some("http://localhost:8080"),
    ] {
        let answer = count(origin, key.clone()).await.unwrap();
        assert_eq!(answer.status(), 200, "{origin:?}");
    }
    for origin in [
        "https://evil.test",
        "http://app.example.com",
        "https://acme.test",
        "https://app.example.com.evil.test",
        "http://localhost:8081",
        "null",
    ] {
        let answer = count(Some(origin), key.clone()).await.unwrap();
        assert_eq!(answer.status(), 401, "{origin}");
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            "*",
            "the page can read why"
        );
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error_code"], "OriginNotAllowedError", "{origin}");
        assert!(body["message"].as_str().unwrap().contains(origin));
    }
    // Keys without the option, and the master key, work from anywhere.
    let answer = count(Some("https://evil.test"), server.project.read.clone())
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // An embed token carries its key's binding.
    let claims = json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": "t1"});
    let token = keyhole_model::embed_token::mint(&key, &claims);
    assert_eq!(
        count(Some("https://eu.acme.test"), token.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        count(Some("https://evil.test"), token)
            .await
            .unwrap()
            .status(),
        401
    );

    // Preflights naming the key in their URL are refused from other origins, allowed from listed ones.
    let preflight = |origin: &'static str, with_key: bool| {
        let mut url = server.project_url("/queries/saved/x/result");
        if with_key {
            url = format!("{url}?api_key={key}");
        }
        client()
            .request(reqwest::Method::OPTIONS, url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let refused = preflight("https://evil.test", true).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let allowed = preflight("https://eu.acme.test", true).await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .is_some()
    );
    let keyless = preflight("https://evil.test", false).await.unwrap();
    assert!(keyless.status().is_success());

    let audit = server.audit_entries().await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["reason"] == "origin_not_allowed"),
        "{audit}"
    );

    // Definitions that are not origins are refused; the key object shows the option as given.
    for origins in [
        json!(["app.example.com"]),
        json!(["https://*.com"]),
        json!(["https://example.com/path"]),
        json!([]),
        json!("https://example.com"),
    ] {
        let answer = send(
            client()
                .post(server.project_url("/keys"))
                .header("Authorization", &server.project.master)
                .json(&json!({"name": "bad", "permitted": ["queries"], "options": {"origins": origins}})),
        )
        .await;
        assert_keen_error(&answer, 400, "InvalidAccessKeyDefinitionError");
    }
    let shown = send(
        client()
            .get(server.project_url(&format!("/keys/{key}")))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(shown.1["options"]["origins"][1], "https://*.acme.test");
}
