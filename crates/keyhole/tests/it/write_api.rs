//! The Keen write API over real HTTP: single events, batches, pixels, beacons, keys, and every
//! validation error with its Keen `error_code` and status.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, send, string_values};

#[tokio::test(flavor = "multi_thread")]
async fn single_event_is_created_and_readable_at_once() {
    let server = InProcessServer::start().await;
    let answer = send(
        client()
            .post(server.project_url("/events/purchases"))
            .header("Authorization", &server.project.write)
            .json(&json!({"price": 25.5, "item": {"id": "sku-1"}, "keen": {"timestamp": "2024-03-01T10:00:00.000Z"}})),
    )
    .await;
    assert_eq!(answer, (201, json!({"created": true})));
    let scan = server.scan("purchases").await;
    assert_eq!(scan.num_rows(), 1);
    assert_eq!(string_values(&scan, "item.id#str"), ["sku-1"]);
    assert_eq!(string_values(&scan, "keen.id")[0].len(), 24);
    let batch = &scan.batches[0];
    let timestamps = batch
        .column_by_name("keen.timestamp")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(
        keyhole_model::timestamp::format_timestamp(timestamps.value(0)),
        "2024-03-01T10:00:00.000Z"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_checked_by_header_or_query_parameter() {
    let server = InProcessServer::start().await;
    let other = server.meta.create_project("other").await.unwrap().1;
    let post = |key: Option<&str>, query_key: Option<&str>| {
        let mut url = server.project_url("/events/c");
        if let Some(key) = query_key {
            url = format!("{url}?api_key={key}");
        }
        let mut request = client().post(url).json(&json!({"a": 1}));
        if let Some(key) = key {
            request = request.header("Authorization", key);
        }
        send(request)
    };
    assert_keen_error(&post(None, None).await, 401, "InvalidApiKeyError");
    assert_keen_error(
        &post(Some("not-a-key"), None).await,
        401,
        "InvalidApiKeyError",
    );
    assert_keen_error(
        &post(Some(&other.write), None).await,
        401,
        "InvalidApiKeyError",
    );
    assert_keen_error(
        &post(Some(&server.project.read), None).await,
        401,
        "RequestForbiddenError",
    );
    assert_eq!(post(Some(&server.project.write), None).await.0, 201);
    assert_eq!(post(Some(&server.project.master), None).await.0, 201);
    assert_eq!(post(None, Some(&server.project.write)).await.0, 201);
    // Both carriers at once: the header is the key that counts.
    assert_eq!(
        post(Some(&server.project.write), Some("garbage")).await.0,
        201
    );
    assert_keen_error(
        &post(Some(&server.project.read), Some(&server.project.write)).await,
        401,
        "RequestForbiddenError",
    );
    assert_eq!(server.scan("c").await.num_rows(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_keeps_valid_events_and_reports_each_invalid_one() {
    let server = InProcessServer::start().await;
    let answer = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&json!({
                "purchases": [{"price": 1}, {"bad.name": 1}, {"price": 2}, {"keen": "no"}],
                "signups": [{"plan": "pro"}],
                "_hidden": [{"x": 1}],
            })),
    )
    .await;
    assert_eq!(answer.0, 200);
    insta::assert_json_snapshot!("batch_response", answer.1);
    assert_eq!(server.scan("purchases").await.num_rows(), 2);
    assert_eq!(server.scan("signups").await.num_rows(), 1);
    assert_eq!(server.scan("_hidden").await.num_rows(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_batches_are_refused_whole() {
    let server = InProcessServer::start().await;
    let post = |body: &'static str| {
        send(
            client()
                .post(server.project_url("/events"))
                .header("Authorization", &server.project.write)
                .body(body),
        )
    };
    assert_keen_error(&post("[1, 2]").await, 400, "InvalidBatchError");
    assert_keen_error(&post(r#"{"c": {"a": 1}}"#).await, 400, "InvalidBatchError");
    assert_keen_error(&post("{not json").await, 400, "InvalidBatchError");
    let huge = format!(r#"{{"c": [{{"s": "{}"}}]}}"#, "x".repeat(10_000_001));
    let answer = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .body(huge),
    )
    .await;
    assert_keen_error(&answer, 413, "InvalidBatchError");
    assert!(server.storage.collections(&server.project.id).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_validation_error_has_keens_code() {
    let server = InProcessServer::start().await;
    let post_to = |collection: &str, body: String| {
        send(
            client()
                .post(server.project_url(&format!("/events/{collection}")))
                .header("Authorization", &server.project.write)
                .body(body),
        )
    };
    let post = |body: Value| post_to("c", body.to_string());
    assert_keen_error(
        &post_to("c", "{oops".into()).await,
        400,
        "InvalidEventError",
    );
    assert_keen_error(&post(json!(5)).await, 400, "InvalidEventError");
    assert_keen_error(&post(json!({"keen": [1]})).await, 400, "NamespaceTypeError");
    assert_keen_error(
        &post(json!({"keen": {"whatever": 1}})).await,
        400,
        "InvalidKeenNamespaceProperty",
    );
    assert_keen_error(
        &post(json!({"keen": {"timestamp": "not a time"}})).await,
        400,
        "InvalidKeenNamespaceProperty",
    );
    assert_keen_error(
        &post(json!({"keen": {"uniqueness_token": 5}})).await,
        400,
        "InvalidKeenNamespaceProperty",
    );
    assert_keen_error(
        &post(json!({"list": [{"a": 1}]})).await,
        400,
        "ListsOfNonPrimitivesNotAllowedError",
    );
    assert_keen_error(
        &post(json!({"list": [[1]]})).await,
        400,
        "ListsOfNonPrimitivesNotAllowedError",
    );
    assert_keen_error(
        &post(json!({"a.b": 1})).await,
        400,
        "InvalidPropertyNameError",
    );
    assert_keen_error(
        &post(json!({"$a": 1})).await,
        400,
        "InvalidPropertyNameError",
    );
    assert_keen_error(&post(json!({"": 1})).await, 400, "InvalidPropertyNameError");
    assert_keen_error(
        &post(json!({"n": {"x".repeat(256): 1}})).await,
        400,
        "InvalidPropertyNameError",
    );
    assert_keen_error(
        &post(json!({"s": "y".repeat(10_000)})).await,
        400,
        "InvalidPropertyValueError",
    );
    let big: Vec<String> = (0..100).map(|_| "z".repeat(9_000)).collect();
    assert_keen_error(&post(json!({"big": big})).await, 413, "InvalidEventError");
    assert_keen_error(
        &post_to(&"c".repeat(65), "{}".into()).await,
        400,
        "InvalidCollectionNameError",
    );
    assert_keen_error(
        &post_to("a$b", "{}".into()).await,
        400,
        "InvalidCollectionNameError",
    );
    assert_keen_error(
        &post_to("_c", "{}".into()).await,
        400,
        "InvalidCollectionNameError",
    );
    assert_keen_error(
        &post_to("caf%C3%A9", "{}".into()).await,
        400,
        "InvalidCollectionNameError",
    );
    assert_keen_error(
        &post_to("%20", "{}".into()).await,
        400,
        "InvalidCollectionNameError",
    );
    assert!(server.storage.collections(&server.project.id).is_empty());
    // The limits themselves are allowed.
    assert_eq!(
        post(json!({"s": "y".repeat(9_999), "n": {"x".repeat(255): 1}}))
            .await
            .0,
        201
    );
    assert_eq!(post_to(&"c".repeat(64), "{}".into()).await.0, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn keen_fields_placeholders_and_uniqueness_tokens() {
    let server = InProcessServer::start().await;
    let post = |body: Value| {
        send(
            client()
                .post(server.project_url("/events/c"))
                .header("Authorization", &server.project.write)
                .header("User-Agent", "integration-test/1.0")
                .json(&body),
        )
    };
    assert_eq!(post(json!({"ip": "${keen.ip}", "ua": {"raw": "${keen.user_agent}"}, "keen": {"id": "forged", "created_at": "2000-01-01T00:00:00Z"}})).await.0, 201);
    let scan = server.scan("c").await;
    assert_eq!(string_values(&scan, "ip#str"), ["127.0.0.1"]);
    assert_eq!(string_values(&scan, "ua.raw#str"), ["integration-test/1.0"]);
    assert_ne!(string_values(&scan, "keen.id"), ["forged"]);
    for _ in 0..3 {
        assert_eq!(
            post(json!({"keen": {"uniqueness_token": "order-42"}})).await,
            (201, json!({"created": true}))
        );
    }
    let batch = json!({"c": [{"keen": {"uniqueness_token": "order-42"}}, {"keen": {"uniqueness_token": "order-43"}}, {"keen": {"uniqueness_token": "order-43"}}]});
    let answer = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&batch),
    )
    .await;
    assert_eq!(
        answer.1["c"],
        json!([{"success": true}, {"success": true}, {"success": true}])
    );
    assert_eq!(server.scan("c").await.num_rows(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn pixel_writes_accept_every_base64_variant_and_redirect() {
    let server = InProcessServer::start().await;
    let event = json!({"pixel": "ü?>>", "n": 1}).to_string();
    let variants = [
        // keen-tracking: standard alphabet, encodeURIComponent'ed.
        STANDARD
            .encode(&event)
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"),
        // Python: standard alphabet, raw (a `+` arrives as a space).
        STANDARD.encode(&event),
        // Ruby: URL-safe alphabet, padded.
        URL_SAFE.encode(&event),
        URL_SAFE_NO_PAD.encode(&event),
    ];
    assert!(
        variants[1].contains('+') || variants[1].contains('/'),
        "the sample should exercise the alphabets"
    );
    for data in &variants {
        let url = server.project_url(&format!(
            "/events/pixels?api_key={}&data={data}&modified=123&c=clv1",
            server.project.write
        ));
        let response = client().get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "image/gif");
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.starts_with(b"GIF89a") && bytes.len() == 43);
    }
    assert_eq!(
        string_values(&server.scan("pixels").await, "pixel#str"),
        vec!["ü?>>"; 4]
    );

    let redirect = server.project_url(&format!(
        "/events/clicks?api_key={}&data={}&redirect=https%3A%2F%2Fexample.com%2Flanding%3Fa%3D1",
        server.project.write,
        URL_SAFE.encode(r#"{"link": "x"}"#)
    ));
    let response = client().get(redirect).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://example.com/landing?a=1"
    );
    assert_eq!(server.scan("clicks").await.num_rows(), 1);

    let bad = server.project_url(&format!(
        "/events/pixels?api_key={}&data=!!!",
        server.project.write
    ));
    assert_keen_error(&send(client().get(bad)).await, 400, "InvalidEventError");
    let not_object = server.project_url(&format!(
        "/events/pixels?api_key={}&data={}",
        server.project.write,
        STANDARD.encode("[1]")
    ));
    assert_keen_error(
        &send(client().get(not_object)).await,
        400,
        "InvalidEventError",
    );
    let read_key = server.project_url(&format!(
        "/events/pixels?api_key={}&data={}",
        server.project.read,
        STANDARD.encode("{}")
    ));
    assert_keen_error(
        &send(client().get(read_key)).await,
        401,
        "RequestForbiddenError",
    );
    let bad_redirect = server.project_url(&format!(
        "/events/pixels?api_key={}&data={}&redirect=javascript:alert(1)",
        server.project.write,
        STANDARD.encode("{}")
    ));
    assert_keen_error(
        &send(client().get(bad_redirect)).await,
        400,
        "InvalidRequestError",
    );
    assert_eq!(server.scan("pixels").await.num_rows(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn beacons_webhook_arrays_and_encoded_collection_names() {
    let server = InProcessServer::start().await;
    // navigator.sendBeacon: text/plain body, key in the query string.
    let beacon = client()
        .post(server.project_url(&format!(
            "/events/page%20views?api_key={}",
            server.project.write
        )))
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(r#"{"page": "/home"}"#);
    assert_eq!(send(beacon).await.0, 201);
    let batch_beacon = client()
        .post(server.project_url(&format!("/events?api_key={}", server.project.write)))
        .header("Content-Type", "text/plain")
        .body(r#"{"page views": [{"page": "/a"}]}"#);
    assert_eq!(
        send(batch_beacon).await,
        (200, json!({"page views": [{"success": true}]}))
    );
    assert_eq!(server.scan("page views").await.num_rows(), 2);
    // A webhook posting an array to the single-collection route.
    let webhook = client()
        .post(server.project_url(&format!(
            "/events/sendgrid?api_key={}",
            server.project.write
        )))
        .json(&json!([{"event": "open"}, {"event": "click", "bad.name": 1}]));
    let answer = send(webhook).await;
    assert_eq!(answer.0, 200);
    assert_eq!(answer.1[0], json!({"success": true}));
    assert_eq!(answer.1[1]["error"]["name"], "InvalidPropertyNameError");
    assert_eq!(server.scan("sendgrid").await.num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_allows_browser_sdks() {
    let server = InProcessServer::start().await;
    let response = client()
        .request(reqwest::Method::OPTIONS, server.project_url("/events/c"))
        .header("Origin", "https://dashboard.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,keen-sdk",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for name in ["authorization", "content-type", "keen-sdk"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    // Actual responses carry the CORS header too.
    let response = client()
        .post(server.project_url("/events/c"))
        .header("Origin", "https://dashboard.example")
        .header("Authorization", &server.project.write)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

/// A JSON body is read as JSON when no `Content-Type` says otherwise, and when curl's `-d` declares it a
/// form; a real form body is still one event of form fields.
#[tokio::test(flavor = "multi_thread")]
async fn json_bodies_without_a_json_content_type_are_read_as_json() {
    let server = InProcessServer::start().await;
    let url = server.project_url("/events/signups");
    let untyped = client()
        .post(&url)
        .header("Authorization", &server.project.write)
        .body(r#"{"plan": "gold", "seats": 3}"#);
    assert_eq!(send(untyped).await, (201, json!({"created": true})));
    let curl_dash_d = client()
        .post(&url)
        .header("Authorization", &server.project.write)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"  [{"plan": "silver", "seats": 1}]"#);
    assert_eq!(send(curl_dash_d).await, (200, json!([{"success": true}])));
    let form = client()
        .post(&url)
        .header("Authorization", &server.project.write)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("plan=free&seats=1");
    assert_eq!(send(form).await.0, 201);
    let extraction = server
        .post_json(
            "/queries/extraction",
            &server.project.read,
            &json!({"event_collection": "signups", "property_names": ["plan", "seats"]}),
        )
        .await;
    let mut stored: Vec<Value> = extraction.1["result"].as_array().unwrap().clone();
    stored.sort_by_key(|event| event["plan"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        stored,
        [
            json!({"plan": "free", "seats": "1"}),
            json!({"plan": "gold", "seats": 3}),
            json!({"plan": "silver", "seats": 1})
        ]
    );
}
