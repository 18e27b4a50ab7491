//! Origin-bound keys (`options.origins`): requests and preflights from other origins are refused with
//! `OriginNotAllowedError` (readable by the page: the CORS headers are on the refusal too), listed and
//! wildcard origins pass, a request without `Origin` is judged by its `Referer` (`<img>` tags, no-cors
//! fetches and links send no `Origin`) and one with neither is refused with 403, embed tokens inherit the
//! binding, refusals reach the audit log, and definitions that are not origins — or whose wildcard covers
//! a public suffix — are refused.

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
    let from_page = |referer: Option<&'static str>, credential: String| {
        let mut request = client()
            .get(server.project_url("/queries/count?event_collection=orders"))
            .header("Authorization", credential);
        if let Some(referer) = referer {
            request = request.header("Referer", referer);
        }
        request.send()
    };
    // Without an Origin, the page's origin comes from the Referer; with neither, the request is refused.
    let via_referer = from_page(Some("https://eu.acme.test/reports?week=3"), key.clone())
        .await
        .unwrap();
    assert_eq!(via_referer.status(), 200);
    let foreign_page = from_page(Some("https://evil.test/steal.html"), key.clone())
        .await
        .unwrap();
    assert_eq!(foreign_page.status(), 401);
    let nameless = from_page(None, key.clone()).await.unwrap();
    assert_eq!(nameless.status(), 403);
    let body: serde_json::Value = nameless.json().await.unwrap();
    assert_eq!(body["error_code"], "OriginRequiredError", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("neither an Origin nor a Referer"),
        "{body}"
    );
    for origin in [
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
    for reason in ["origin_not_allowed", "origin_missing"] {
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|entry| entry["reason"] == reason),
            "{reason}: {audit}"
        );
    }

    // Definitions that are not origins are refused; the key object shows the option as given.
    for origins in [
        json!(["app.example.com"]),
        json!(["https://*.com"]),
        json!(["https://*.co.uk"]),
        json!(["https://*.github.io"]),
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

/// An `<img>` pixel sends no `Origin`: an origin-bound write key's pixel is judged by its `Referer`, so
/// another site embedding the pixel cannot write with the key, and one with neither header cannot either.
#[tokio::test(flavor = "multi_thread")]
async fn an_origin_bound_keys_pixel_writes_only_from_its_pages() {
    let server = InProcessServer::start().await;
    let key = server
        .create_access_key(json!({"name": "acme tracking", "permitted": ["writes"],
            "options": {"origins": ["https://shop.acme.test"], "writes": {"autofill": {"vendor": "acme"}}}}))
        .await;
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        br#"{"page": "home"}"#,
    );
    let pixel = |referer: Option<&'static str>| {
        let mut request =
            client().get(server.project_url(&format!("/events/views?api_key={key}&data={data}")));
        if let Some(referer) = referer {
            request = request.header("Referer", referer);
        }
        request.send()
    };
    assert_eq!(
        pixel(Some("https://shop.acme.test/home"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        pixel(Some("https://evil.test/")).await.unwrap().status(),
        401
    );
    assert_eq!(pixel(None).await.unwrap().status(), 403);
    let counted = send(
        client()
            .get(server.project_url("/queries/count?event_collection=views"))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(
        counted.1["result"], 1,
        "only the pixel from the key's own page wrote"
    );
}
