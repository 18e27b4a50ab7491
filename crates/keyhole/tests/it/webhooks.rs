//! Webhook streams: third-party services post to `…/events/{collection}?api_key=<access key>` in the body
//! shapes they use — a form (Twilio's SMS status callback, Mailgun's legacy event webhook), a JSON array
//! (SendGrid's event webhook), NDJSON — and the events are stored with the key's autofill (entity data and
//! add-ons) in the key's one collection.

use serde_json::{Value, json};

use crate::support::{InProcessServer, client, send};

async fn post(
    server: &InProcessServer,
    path: &str,
    key: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    send(
        client()
            .post(format!("{}?api_key={key}", server.project_url(path)))
            .header("Content-Type", content_type)
            .body(body.to_string()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_payloads_are_stored_with_the_keys_autofill() {
    let server = InProcessServer::start().await;
    let key = server
        .create_access_key(json!({"name": "twilio webhook", "permitted": ["writes"],
            "options": {"writes": {"collections": ["sms", "email", "stream"],
                "autofill": {"customer": {"id": "acme"}, "keen": {"addons": [
                    {"name": "keen:url_parser", "input": {"url": "link"}, "output": "link_info"}]}}}}}))
        .await;

    // Twilio's SMS status callback: a form.
    let twilio = "SmsSid=SM5ef8732a&SmsStatus=delivered&MessageStatus=delivered&To=%2B15558675310&MessageSid=SM5ef8732a&AccountSid=AC3094732a&From=%2B15017122661&ApiVersion=2010-04-01";
    let answer = post(
        &server,
        "/events/sms",
        &key,
        "application/x-www-form-urlencoded",
        twilio,
    )
    .await;
    assert_eq!(answer, (201, json!({"created": true})));
    let sms = server.extraction("sms").await;
    assert_eq!(sms[0]["MessageStatus"], "delivered");
    assert_eq!(sms[0]["To"], "+15558675310");
    assert_eq!(sms[0]["customer"]["id"], "acme");

    // Mailgun's legacy event webhook: a form with hyphenated names and a link to enrich.
    let mailgun = "event=clicked&recipient=alice%40example.com&domain=mg.example.com&message-id=20130503182626.18666.16540%40example.com&link=https%3A%2F%2Fexample.com%2Foffer%3Fid%3D7&timestamp=1700000000";
    let answer = post(
        &server,
        "/events/email",
        &key,
        "application/x-www-form-urlencoded",
        mailgun,
    )
    .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    let email = server.extraction("email").await;
    assert_eq!(email[0]["event"], "clicked");
    assert_eq!(
        email[0]["message-id"],
        "20130503182626.18666.16540@example.com"
    );
    assert_eq!(email[0]["link_info"]["query_string"]["id"], "7");

    // SendGrid's event webhook: a JSON array, one result per event.
    let sendgrid = json!([
        {"email": "bob@example.com", "event": "delivered", "sg_event_id": "e1", "timestamp": 1_700_000_001},
        {"email": "bob@example.com", "event": "open", "sg_event_id": "e2", "timestamp": 1_700_000_002},
    ]);
    let answer = post(
        &server,
        "/events/email",
        &key,
        "application/json",
        &sendgrid.to_string(),
    )
    .await;
    assert_eq!(answer, (200, json!([{"success": true}, {"success": true}])));

    // NDJSON: a batch; a line that does not parse refuses the body and stores nothing.
    let ndjson = "{\"n\": 1}\n{\"n\": 2}\n\n{\"n\": 3}\n";
    let answer = post(
        &server,
        "/events/stream",
        &key,
        "application/x-ndjson",
        ndjson,
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1.as_array().unwrap().len(), 3);
    let answer = post(
        &server,
        "/events/stream",
        &key,
        "application/x-ndjson",
        "{\"n\": 4}\n{nope}\n",
    )
    .await;
    assert_eq!(answer.0, 400);
    assert!(
        answer.1["message"].as_str().unwrap().contains("Line 2"),
        "{}",
        answer.1
    );
    let stream = server.extraction("stream").await;
    assert_eq!(stream.len(), 3);
    assert!(stream.iter().all(|event| event["customer"]["id"] == "acme"));

    // The key's collections bind the webhook: another collection is refused.
    let answer = post(
        &server,
        "/events/other",
        &key,
        "application/x-www-form-urlencoded",
        "a=1",
    )
    .await;
    assert_eq!(answer.0, 401, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_webhook_key_accepts_only_deliveries_signed_by_the_provider() {
    use keyhole_model::webhook::hmac_sha256_hex;
    let server = InProcessServer::start().await;
    let github_secret = "gh-webhook-secret-0123456789";
    let github = server
        .create_access_key(json!({"name": "github", "permitted": ["writes"],
            "options": {"writes": {"collections": ["pushes"], "webhook": {"signature": "github", "secret": github_secret}}}}))
        .await;
    let deliver = |key: String, header: Option<(&'static str, String)>, body: String| {
        let mut request = client()
            .post(format!(
                "{}?api_key={key}",
                server.project_url("/events/pushes")
            ))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        send(request)
    };
    let body = json!({"ref": "refs/heads/main", "commits": 3}).to_string();
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(github_secret.as_bytes(), &[body.as_bytes()])
    );
    assert_eq!(
        deliver(
            github.clone(),
            Some(("X-Hub-Signature-256", signature.clone())),
            body.clone()
        )
        .await
        .0,
        201
    );
    let unsigned = deliver(github.clone(), None, body.clone()).await;
    assert_eq!(unsigned.0, 401);
    assert_eq!(unsigned.1["error_code"], "InvalidWebhookSignatureError");
    let tampered = deliver(
        github.clone(),
        Some(("X-Hub-Signature-256", signature.clone())),
        body.replace('3', "4"),
    )
    .await;
    assert_eq!(tampered.0, 401);
    assert_eq!(server.extraction("pushes").await.len(), 1);

    // The key object never shows the secret; what it shows can be sent back unchanged.
    let shown = send(
        client()
            .get(server.project_url(&format!("/keys/{github}")))
            .header("Authorization", &server.project.master),
    )
    .await;
    let webhook = &shown.1["options"]["writes"]["webhook"];
    assert!(
        webhook.get("secret").is_none() && webhook["secret_sealed"].is_string(),
        "{webhook}"
    );
    assert!(!shown.1.to_string().contains(github_secret));
    let mut definition = shown.1.clone();
    for field in [
        "key",
        "key_prefix",
        "created_at",
        "project_id",
        "embed_key_id",
    ] {
        definition.as_object_mut().unwrap().remove(field);
    }
    let updated = send(
        client()
            .post(server.project_url(&format!("/keys/{github}")))
            .header("Authorization", &server.project.master)
            .json(&definition),
    )
    .await;
    assert_eq!(updated.0, 200, "{}", updated.1);
    assert_eq!(
        deliver(
            github.clone(),
            Some(("X-Hub-Signature-256", signature.clone())),
            body.clone()
        )
        .await
        .0,
        201
    );

    // An embed token cannot open the secret; the batch route is checked too.
    let token = keyhole_model::embed_token::mint(
        &github,
        &json!({"exp": chrono::Utc::now().timestamp() + 60, "jti": "t"}),
    );
    assert_eq!(
        deliver(
            token,
            Some(("X-Hub-Signature-256", signature)),
            body.clone()
        )
        .await
        .0,
        401
    );
    let batch = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &github)
            .json(&json!({"pushes": [{"a": 1}]})),
    )
    .await;
    assert_eq!(batch.0, 401, "{}", batch.1);

    // Stripe's scheme: a timestamped signature, refused once older than the tolerance.
    let stripe_secret = "whsec_0123456789abcdefghij";
    let stripe = server
        .create_access_key(json!({"name": "stripe", "permitted": ["writes"],
            "options": {"writes": {"collections": ["pushes"], "webhook": {"signature": "stripe", "secret": stripe_secret, "tolerance_seconds": 300}}}}))
        .await;
    let signed_at = |t: i64| {
        format!(
            "t={t},v1={}",
            hmac_sha256_hex(
                stripe_secret.as_bytes(),
                &[t.to_string().as_bytes(), b".", body.as_bytes()]
            )
        )
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        deliver(
            stripe.clone(),
            Some(("Stripe-Signature", signed_at(now))),
            body.clone()
        )
        .await
        .0,
        201
    );
    let stale = deliver(
        stripe.clone(),
        Some(("Stripe-Signature", signed_at(now - 3600))),
        body.clone(),
    )
    .await;
    assert_eq!(stale.0, 401);
    assert!(stale.1["message"].as_str().unwrap().contains("older"));

    // The master key reads each key's refused deliveries.
    server.meta.flush_audit().await;
    let refused = send(
        client()
            .get(server.project_url(&format!("/keys/{github}/deliveries")))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(refused.0, 200, "{}", refused.1);
    let reasons: Vec<&str> = refused.1["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "webhook_unsigned",
        "webhook_bad_signature",
        "webhook_secret_unavailable",
    ] {
        assert!(reasons.contains(&reason), "{reasons:?}");
    }
    let stripe_refused = send(
        client()
            .get(server.project_url(&format!("/keys/{stripe}/deliveries")))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(stripe_refused.1["entries"][0]["reason"], "webhook_stale");
}
