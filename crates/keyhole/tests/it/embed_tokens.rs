//! Embed tokens over HTTP: a token minted by a backend (here also by Node's built-in crypto, to prove the
//! scheme is what the README says) reads exactly what its key and its own claims allow, never more;
//! revoking the token, or revoking or deleting its key, acts on the very next request.

use serde_json::{Value, json};

use crate::support::{InProcessServer, assert_keen_error, client, keyhole_binary, repo_root, send};

fn claims(jti: &str, extra: Value) -> Value {
    let mut claims = json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": jti});
    if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
        claims.extend(extra);
    }
    claims
}

async fn count(server: &InProcessServer, credential: &str) -> (u16, Value) {
    send(
        client()
            .get(server.project_url("/queries/count?event_collection=visits"))
            .header("Authorization", credential),
    )
    .await
}

async fn seed(server: &InProcessServer) {
    let events: Vec<Value> = [("a", "u1"), ("a", "u1"), ("a", "u2"), ("b", "u1")]
        .iter()
        .map(|(tenant, user)| json!({"tenant": tenant, "user": user}))
        .collect();
    let written = send(
        client()
            .post(server.project_url("/events"))
            .header("Authorization", &server.project.write)
            .json(&json!({"visits": events})),
    )
    .await;
    assert_eq!(written.0, 200);
}

fn tenant_a() -> Value {
    json!({"name": "tenant a", "permitted": ["queries", "schema"],
           "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "a"}]}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_reads_what_its_key_and_claims_allow_and_never_more() {
    let server = InProcessServer::start().await;
    seed(&server).await;
    let key = server.create_access_key(tenant_a()).await;
    assert_eq!(count(&server, &key).await.1["result"], 3);
    let mint = |claims: Value| keyhole_model::embed_token::mint(&key, &claims);

    let plain = mint(claims("plain", json!({})));
    assert_eq!(count(&server, &plain).await.1["result"], 3);
    let user = json!({"filters": [{"property_name": "user", "operator": "eq", "property_value": "u1"}], "permitted": ["queries"]});
    let narrowed = mint(claims("user-u1", user));
    assert_eq!(count(&server, &narrowed).await.1["result"], 2);
    // Its own filter cannot reach another tenant: the key's filter is still AND-ed.
    let other_tenant =
        json!({"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "b"}]});
    assert_eq!(
        count(&server, &mint(claims("b", other_tenant))).await.1["result"],
        0
    );
    // Fewer operations: the narrowed token may not read schemas, its key may.
    let schema = |credential: &str| {
        send(
            client()
                .get(server.project_url("/events/visits"))
                .header("Authorization", credential),
        )
    };
    assert_eq!(schema(&key).await.0, 200);
    assert_keen_error(&schema(&narrowed).await, 401, "RequestForbiddenError");
    // Wider than the key, tampered, expired or unknown: refused.
    assert_keen_error(
        &count(
            &server,
            &mint(claims("w", json!({"permitted": ["writes"]}))),
        )
        .await,
        401,
        "InvalidApiKeyError",
    );
    let (signed, _) = narrowed.rsplit_once('.').unwrap();
    let (_, other_signature) = plain.rsplit_once('.').unwrap();
    assert_keen_error(
        &count(&server, &format!("{signed}.{other_signature}")).await,
        401,
        "InvalidApiKeyError",
    );
    let expired = mint(json!({"exp": chrono::Utc::now().timestamp() - 1, "jti": "old"}));
    let answer = count(&server, &expired).await;
    assert_keen_error(&answer, 401, "InvalidApiKeyError");
    assert!(
        answer.1["message"].as_str().unwrap().contains("expired"),
        "{}",
        answer.1
    );
    let misspelt = mint(claims("typo", json!({"filter": []})));
    assert_keen_error(&count(&server, &misspelt).await, 401, "InvalidApiKeyError");
    // Presented as a query parameter, as a dashboard's pixel or GET would.
    let by_parameter = send(client().get(server.project_url(&format!(
        "/queries/count?event_collection=visits&api_key={narrowed}"
    ))))
    .await;
    assert_eq!(by_parameter.1["result"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_token_or_its_key_acts_on_the_next_request() {
    let server = InProcessServer::start().await;
    seed(&server).await;
    let key = server.create_access_key(tenant_a()).await;
    let first = keyhole_model::embed_token::mint(&key, &claims("first", json!({})));
    let second = keyhole_model::embed_token::mint(&key, &claims("second", json!({})));
    assert_eq!(count(&server, &first).await.0, 200);
    assert_eq!(count(&server, &second).await.0, 200);
    let master_post = |path: String| {
        send(
            client()
                .post(server.project_url(&path))
                .header("Authorization", &server.project.master),
        )
    };
    let revoked = master_post(format!("/keys/{key}/tokens/first/revoke")).await;
    assert_eq!(revoked.0, 200, "{}", revoked.1);
    assert_keen_error(&count(&server, &first).await, 401, "InvalidApiKeyError");
    assert_eq!(count(&server, &second).await.0, 200);
    // Only the master key revokes tokens; a token cannot revoke anything.
    let by_token = send(
        client()
            .post(server.project_url(&format!("/keys/{key}/tokens/second/revoke")))
            .header("Authorization", &second),
    )
    .await;
    assert_eq!(by_token.0, 401);
    assert_eq!(
        master_post(format!("/keys/{key}/tokens/not%20an%20id/revoke"))
            .await
            .0,
        400
    );

    assert_eq!(master_post(format!("/keys/{key}/revoke")).await.0, 200);
    assert_keen_error(&count(&server, &second).await, 401, "InvalidApiKeyError");
    assert_eq!(master_post(format!("/keys/{key}/unrevoke")).await.0, 200);
    assert_eq!(count(&server, &second).await.0, 200);
    assert_keen_error(&count(&server, &first).await, 401, "InvalidApiKeyError");

    let deleted = send(
        client()
            .delete(server.project_url(&format!("/keys/{key}")))
            .header("Authorization", &server.project.master),
    )
    .await;
    assert_eq!(deleted.0, 204);
    assert_keen_error(&count(&server, &second).await, 401, "InvalidApiKeyError");
}

/// Runs a minting script (`interpreter script secret claims`) and answers the token it printed.
fn mint_with(interpreter: &str, script: &str, secret: &str, claims: &Value) -> String {
    let output = std::process::Command::new(interpreter)
        .arg(repo_root().join(script))
        .arg(secret)
        .arg(claims.to_string())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {interpreter} (installed by .ci/run): {error}"));
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn header(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_mints_tokens_with_standard_tools() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let server = InProcessServer::start().await;
    seed(&server).await;
    let key = server.create_access_key(tenant_a()).await;
    let user =
        json!({"filters": [{"property_name": "user", "operator": "eq", "property_value": "u2"}]});
    let ours = keyhole_model::embed_token::mint(&key, &claims("x", json!({})));
    for (interpreter, script) in [
        ("node", "sdk-tests/node/mint_embed_token.js"),
        ("python3", "sdk-tests/python/mint_embed_token.py"),
    ] {
        let jti = format!("from-{interpreter}");
        let token = mint_with(interpreter, script, &key, &claims(&jti, user.clone()));
        assert_eq!(
            header(&token),
            header(&ours),
            "{script}: the same alg, typ, kid"
        );
        assert_eq!(count(&server, &token).await.1["result"], 1, "{script}");
        let introspection = server.key_self(&token).await;
        assert_eq!(introspection.0, 200, "{}", introspection.1);
        assert_eq!(introspection.1["credential"], "embed_token");
        assert_eq!(introspection.1["token_id"], jti.as_str());
        assert_eq!(introspection.1["filters"].as_array().unwrap().len(), 2);
        assert!(!introspection.1.to_string().contains(&key));
    }
    // `keyhole token mint`, with the key from the environment.
    let output = std::process::Command::new(keyhole_binary())
        .args([
            "token",
            "mint",
            "--jti",
            "from-cli",
            "--ttl-secs",
            "60",
            "--claims",
        ])
        .arg(user.to_string())
        .env("KEYHOLE_ACCESS_KEY", &key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    assert_eq!(count(&server, token.trim()).await.1["result"], 1);
}
