//! The write side as hostile input: a write key sits in a customer's web page, so every event body,
//! `keen.addons` declaration, pixel URL and webhook delivery is an attacker's to shape. Each test here is
//! an attack that once crossed tenants, crashed the process, lost an acknowledged event or stalled the
//! server; the answer must now be a clear Keen error and the server must stay up.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{BinaryServer, InProcessServer, TestLimits, assert_keen_error, client, send};

fn url_parser(input: &str, output: &str) -> Value {
    json!({"name": "keen:url_parser", "input": {"url": input}, "output": output})
}

fn pixel_data(event: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(event.to_string())
}

/// Writes one event through the single-event route, the batch route and the pixel; answers the three
/// (status, body) pairs, the batch's being its one per-event result.
async fn write_three_ways(server: &InProcessServer, key: &str, event: &Value) -> [(u16, Value); 3] {
    let single = server.post_json("/events/visits", key, event).await;
    let batch = server
        .post_json("/events", key, &json!({"visits": [event]}))
        .await;
    let batch = (batch.0, batch.1["visits"][0].clone());
    let pixel = send(client().get(server.project_url(&format!(
        "/events/visits?api_key={key}&data={}",
        pixel_data(event)
    ))))
    .await;
    [single, batch, pixel]
}

#[tokio::test(flavor = "multi_thread")]
async fn add_ons_cannot_touch_what_a_key_autofills() {
    let server = InProcessServer::start().await;
    let key = server
        .create_access_key(json!({"name": "acme", "permitted": ["writes"],
            "options": {"writes": {"autofill": {"site": {"id": "acme"}}}}}))
        .await;
    let page = "https://globex.example/landing";
    for output in ["site", "site.id", "site.id.host"] {
        let event = json!({"page": page, "keen": {"addons": [url_parser("page", output)]}});
        let [single, batch, pixel] = write_three_ways(&server, &key, &event).await;
        assert_keen_error(&single, 400, "InvalidKeenNamespaceProperty");
        let message = single.1["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("'{output}'")) && message.contains("'site.id'"),
            "{message}"
        );
        assert_eq!(batch.0, 200);
        assert_eq!(batch.1["success"], false, "{}", batch.1);
        assert_eq!(batch.1["error"]["name"], "InvalidKeenNamespaceProperty");
        assert_keen_error(&pixel, 400, "InvalidKeenNamespaceProperty");
    }
    // Removing an autofilled input is touching it too.
    let removal = json!({"site": {"id": "x"}, "keen": {"addons": [
        {"name": "keen:ip_to_geo", "input": {"ip": "site.id", "remove_ip_property": true}, "output": "geo"}]}});
    let [single, _, _] = write_three_ways(&server, &key, &removal).await;
    assert_keen_error(&single, 400, "InvalidKeenNamespaceProperty");
    assert!(
        single.1["message"]
            .as_str()
            .unwrap()
            .contains("removed input 'site.id'")
    );

    // A sibling of the stamp may be written; the stamp stays whatever the event says.
    let sibling = json!({"page": page, "site": {"id": "globex", "name": "x"},
                         "keen": {"addons": [url_parser("page", "site.info")]}});
    let [single, batch, pixel] = write_three_ways(&server, &key, &sibling).await;
    assert_eq!(
        (single.0, batch.1["success"].clone(), pixel.0),
        (201, json!(true), 200),
        "{single:?} {batch:?} {pixel:?}"
    );
    let stored = server.extraction("visits").await;
    assert_eq!(
        stored.len(),
        3,
        "only the allowed writes were stored: {stored:?}"
    );
    for event in &stored {
        assert_eq!(event["site"]["id"], "acme", "{event}");
        assert_eq!(event["site"]["info"]["domain"], "globex.example", "{event}");
        assert_eq!(event["site"]["name"], "x", "{event}");
    }

    // A key whose own add-ons would touch its own stamp cannot be saved.
    let definition = json!({"name": "self-defeating", "permitted": ["writes"],
        "options": {"writes": {"autofill": {"site": {"id": "acme"}, "keen": {"addons": [url_parser("page", "site")]}}}}});
    let answer = server
        .post_json("/keys", &server.project.master, &definition)
        .await;
    assert_keen_error(&answer, 400, "InvalidAccessKeyDefinitionError");
}

#[tokio::test(flavor = "multi_thread")]
async fn add_on_paths_obey_the_event_rules_before_any_work() {
    let server = InProcessServer::start().await;
    let deep = vec!["d"; 10_000].join(".");
    let mut bad_outputs = vec![
        deep.clone(),
        "a..b".into(),
        String::new(),
        "a.$b".into(),
        "p".repeat(256),
    ];
    bad_outputs.push(format!("ok.{}", "q".repeat(300)));
    for output in &bad_outputs {
        let event =
            json!({"page": "https://a.example/", "keen": {"addons": [url_parser("page", output)]}});
        let [single, batch, pixel] = write_three_ways(&server, &server.project.write, &event).await;
        assert_keen_error(&single, 400, "InvalidPropertyNameError");
        assert_eq!(
            batch.1["error"]["name"], "InvalidPropertyNameError",
            "{}",
            batch.1
        );
        assert_keen_error(&pixel, 400, "InvalidPropertyNameError");
    }
    let deep_input = json!({"keen": {"addons": [url_parser(&deep, "out")]}});
    let [single, _, _] = write_three_ways(&server, &server.project.write, &deep_input).await;
    assert_keen_error(&single, 400, "InvalidPropertyNameError");
    let health = send(client().get(server.url("/health"))).await;
    assert_eq!(health.0, 200, "the process is still up");
    assert!(server.extraction("visits").await.is_empty());
}

/// An event whose add-on output lands exactly at the depth limit is acknowledged and survives a SIGKILL
/// (replayed from the WAL, then read from Parquet after a flush); one level deeper is refused at the edge.
#[test]
fn an_event_at_the_depth_limit_is_acknowledged_and_replayed() {
    let limit = keyhole_model::event::MAX_EVENT_DEPTH;
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = BinaryServer::start(data_dir.path(), &["--flush-interval-secs", "3600"], &[]);
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let post = |event: Value| {
        let url = format!(
            "{}/3.0/projects/{}/events/deep",
            server.base_url, project.id
        );
        runtime.block_on(send(
            client()
                .post(url)
                .header("Authorization", &project.write)
                .json(&event),
        ))
    };
    // url_parser's answer is an object at its output path, holding `query_string`, one more level: with
    // an output path of `limit - 2` segments that innermost object is at level `limit` (the event itself
    // is level 1). One more segment puts it past the limit: refused when the whole event is checked.
    let at_limit = vec!["n"; limit - 2].join(".");
    let url = "https://deep.example/x?a=1";
    let answer = post(json!({"u": url, "keen": {"addons": [url_parser("u", &at_limit)]}}));
    assert_eq!(answer.0, 201, "{}", answer.1);
    let deeper = format!("{at_limit}.n");
    let refused = post(json!({"u": url, "keen": {"addons": [url_parser("u", &deeper)]}}));
    assert_keen_error(&refused, 400, "InvalidEventError");
    // The event itself nested to the limit, and one level past it.
    let mut nested = json!([1]);
    for _ in 0..limit - 1 {
        nested = json!({ "n": nested });
    }
    assert_eq!(post(nested.clone()).0, 201);
    assert_keen_error(&post(json!({ "n": nested })), 400, "InvalidEventError");

    server.kill();
    for flush in ["3600", "1"] {
        let restarted =
            BinaryServer::start(data_dir.path(), &["--flush-interval-secs", flush], &[]);
        if flush == "1" {
            std::thread::sleep(Duration::from_secs(3));
        }
        let answer = runtime.block_on(send(
            client()
                .post(format!(
                    "{}/3.0/projects/{}/queries/extraction",
                    restarted.base_url, project.id
                ))
                .header("Authorization", &project.master)
                .json(&json!({"event_collection": "deep"})),
        ));
        assert_eq!(answer.0, 200, "{}", answer.1);
        let events = answer.1["result"].as_array().unwrap();
        assert_eq!(
            events.len(),
            2,
            "both acknowledged events are back (flush interval {flush})"
        );
        let mut innermost = events
            .iter()
            .find(|event| event.get("u").is_some())
            .unwrap()
            .clone();
        for segment in at_limit.split('.') {
            innermost = innermost[segment].clone();
        }
        assert_eq!(innermost["domain"], "deep.example");
        assert_eq!(innermost["query_string"]["a"], "1");
        drop(restarted);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_cpu_budget_is_refused_and_stores_nothing() {
    if !crate::support::has_third_party_assets() {
        return;
    }
    let limits = TestLimits {
        writes: keyhole_server::write_pool::WriteLimits {
            cpu_budget: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = InProcessServer::start_with(limits).await;
    // Distinct long user agents: none is cached, each costs uap-core's regexes.
    let events: Vec<Value> = (0..500)
        .map(|n| json!({"ua": format!("Mozilla/5.0 ({n}) {}", "AppleWebKit/537.36 ".repeat(500)),
                        "keen": {"addons": [{"name": "keen:ua_parser", "input": {"ua_string": "ua"}, "output": "tech"}]}}))
        .collect();
    let answer = server
        .post_json(
            "/events",
            &server.project.write,
            &json!({"expensive": events}),
        )
        .await;
    assert_keen_error(&answer, 400, "LimitExceededError");
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("20 ms of CPU")
    );
    assert!(server.extraction("expensive").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_event_cap_are_refused_before_parsing() {
    let limits = TestLimits {
        writes: keyhole_server::write_pool::WriteLimits {
            max_events_per_request: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = InProcessServer::start_with(limits).await;
    let many = |count: usize| vec![json!({}); count];
    let batch = |body: Value| {
        let server = &server;
        async move {
            server
                .post_json("/events", &server.project.write, &body)
                .await
        }
    };
    assert_eq!(batch(json!({"a": many(60), "b": many(40)})).await.0, 200);
    assert_keen_error(
        &batch(json!({"a": many(60), "b": many(41)})).await,
        413,
        "InvalidBatchError",
    );
    let list = server
        .post_json("/events/a", &server.project.write, &json!(many(101)))
        .await;
    assert_keen_error(&list, 413, "InvalidBatchError");
    let ndjson = send(
        client()
            .post(server.project_url("/events/a"))
            .header("Authorization", &server.project.write)
            .header("Content-Type", "application/x-ndjson")
            .body("{}\n".repeat(101)),
    )
    .await;
    assert_keen_error(&ndjson, 413, "InvalidBatchError");
    // The default cap refuses 10 MB of empty events at once.
    let default = InProcessServer::start().await;
    let started = Instant::now();
    let body = format!("{{\"tiny\": [{}{{}}]}}", "{},".repeat(3_300_000));
    let answer = send(
        client()
            .post(default.project_url("/events"))
            .header("Authorization", &default.project.write)
            .header("Content-Type", "application/json")
            .body(body),
    )
    .await;
    assert_keen_error(&answer, 413, "InvalidBatchError");
    assert!(
        answer.1["message"]
            .as_str()
            .unwrap()
            .contains("at most 5000 events")
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// The longest `/health` took while `flood` ran, probing every 25 ms from a thread of its own over a
/// plain socket, so the flood's clients never delay the probe itself.
async fn slowest_health_during(
    base_url: &str,
    flood: impl std::future::Future<Output = ()>,
) -> Duration {
    use std::io::{Read, Write};
    let address = base_url.trim_start_matches("http://").to_string();
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                stream
                    .write_all(
                        b"GET /health HTTP/1.1\r\nHost: keyhole\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).unwrap();
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                latencies.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(25));
            }
            latencies
        })
    };
    flood.await;
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let latencies = prober.join().unwrap();
    assert!(latencies.len() > 20, "only {} probes", latencies.len());
    latencies.into_iter().max().unwrap_or_default()
}

/// Runs `writers` clients sending `request(n)` (n counting requests) back to back for `duration`; answers
/// their statuses, 0 for a request the server closed before answering (it may refuse from the headers
/// alone, before the body is sent).
async fn flood_with(
    writers: usize,
    duration: Duration,
    request: impl Fn(usize) -> reqwest::RequestBuilder + Sync,
) -> Vec<u16> {
    let deadline = Instant::now() + duration;
    let request = &request;
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let sent = &sent;
    let clients = (0..writers).map(|_| async move {
        let mut statuses = Vec::new();
        while Instant::now() < deadline {
            let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let status = match request(n).send().await {
                Ok(answer) => answer.status().as_u16(),
                Err(_) => 0,
            };
            statuses.push(status);
        }
        statuses
    });
    futures::future::join_all(clients).await.concat()
}

#[test]
fn health_stays_instant_under_a_flood_of_expensive_add_on_writes() {
    if !crate::support::has_third_party_assets() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let long_host = format!("{}example.com", "a.".repeat(1_900));
    // Bodies are built before the flood, so the clients only send; each has distinct user agents.
    let bodies: Vec<bytes::Bytes> = (0..64)
        .map(|n| {
            let events: Vec<Value> = (0..40)
                .map(|i| json!({
                    "ua": format!("Mozilla/5.0 ({n}-{i}) {}", "Gecko/20100101 Firefox/126.0 ".repeat(300)),
                    "referrer": format!("https://{long_host}/search?q=x"),
                    "page": format!("https://shop.example/{}", "p/".repeat(1_500)),
                    "keen": {"addons": [
                        {"name": "keen:ua_parser", "input": {"ua_string": "ua"}, "output": "tech"},
                        {"name": "keen:referrer_parser", "input": {"referrer_url": "referrer", "page_url": "page"}, "output": "ref"},
                        {"name": "keen:url_parser", "input": {"url": "page"}, "output": "page_info"}]}}))
                .collect();
            json!({"flood": events}).to_string().into()
        })
        .collect();
    let url = format!("{}/3.0/projects/{}/events", server.base_url, project.id);
    let slowest = runtime.block_on(slowest_health_during(&server.base_url, async {
        let statuses = flood_with(8, Duration::from_secs(6), |n| {
            client()
                .post(&url)
                .header("Authorization", &project.write)
                .header("Content-Type", "application/json")
                .body(bodies[n % bodies.len()].clone())
        })
        .await;
        assert!(
            statuses
                .iter()
                .all(|status| [200, 400, 503].contains(status)),
            "{statuses:?}"
        );
        assert!(
            statuses.contains(&200),
            "some writes got through: {statuses:?}"
        );
    }));
    assert!(
        slowest < Duration::from_millis(100),
        "/health took {slowest:?} under the flood"
    );
}

#[test]
fn signature_headers_cannot_buy_cpu() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(async {
        let created = send(
            client()
                .post(format!("{}/3.0/projects/{}/keys", server.base_url, project.id))
                .header("Authorization", &project.master)
                .json(&json!({"name": "stripe", "permitted": ["writes"],
                    "options": {"writes": {"webhook": {"signature": "stripe", "secret": "whsec_0123456789abcdefghij"}}}})),
        )
        .await;
        created.1["key"].as_str().unwrap().to_string()
    });
    let body: bytes::Bytes = format!(
        "[{}{{}}]",
        format!("{{\"pad\": \"{}\"}},", "x".repeat(9_000)).repeat(100)
    )
    .into();
    let now = chrono::Utc::now().timestamp();
    let candidates = format!(
        "t={now},{}",
        vec![format!("v1={}", "ab".repeat(32)); 800].join(",")
    );
    let headers = [
        ("many candidates", candidates),
        (
            "stale",
            format!("t={},v1={}", now - 86_400, "ab".repeat(32)),
        ),
        ("long", format!("t={now},v1={}", "a".repeat(4_000))),
    ];
    for (what, header) in headers {
        let started = Instant::now();
        let slowest = runtime.block_on(slowest_health_during(&server.base_url, async {
            let statuses = flood_with(6, Duration::from_secs(2), |_| {
                client()
                    .post(format!(
                        "{}/3.0/projects/{}/events/payments?api_key={key}",
                        server.base_url, project.id
                    ))
                    .header("Stripe-Signature", &header)
                    .body(body.clone())
            })
            .await;
            assert!(
                statuses.iter().all(|status| [0, 401].contains(status)),
                "{what}: {statuses:?}"
            );
            assert!(statuses.contains(&401), "{what}: {statuses:?}");
        }));
        assert!(
            slowest < Duration::from_millis(100),
            "{what}: /health took {slowest:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            started.elapsed()
        );
    }
}

/// The peak resident memory of a process (VmHWM) and its current (VmRSS), in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap()
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The memory a write costs, from outside: the process's peak resident memory while one 5–10 MB request
/// is answered, above what it held before.
#[test]
fn a_writes_memory_stays_within_ten_times_its_body() {
    let shapes: Vec<(&str, String, u16)> = vec![
        (
            "10 MB of empty events",
            format!("{{\"tiny\": [{}{{}}]}}", "{},".repeat(3_300_000)),
            413,
        ),
        (
            "5,000 events of 20 properties",
            json!({"orders": (0..5_000).map(|n| {
                let mut event = serde_json::Map::new();
                for p in 0..20 {
                    event.insert(format!("property_{p}"), json!(format!("value {n} {p} {}", "v".repeat(60))));
                }
                Value::Object(event)
            }).collect::<Vec<_>>()})
            .to_string(),
            200,
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (shape, body, status) in shapes {
        assert!(
            body.len() <= 10_000_000 && body.len() > 5_000_000,
            "{shape}: {} bytes",
            body.len()
        );
        let data_dir = tempfile::tempdir().unwrap();
        let server = BinaryServer::start(data_dir.path(), &["--flush-interval-secs", "3600"], &[]);
        let project = server.printed_project();
        let url = format!("{}/3.0/projects/{}/events", server.base_url, project.id);
        // Warm up every path a write takes with a small body of the same kind.
        let small = runtime.block_on(send(
            client()
                .post(&url)
                .header("Authorization", &project.write)
                .json(&json!({"warm": [{"a": 1}]})),
        ));
        assert_eq!(small.0, 200);
        std::thread::sleep(Duration::from_millis(300));
        let (_, before) = memory_of(server.child.id());
        let answer = runtime.block_on(send(
            client()
                .post(&url)
                .header("Authorization", &project.write)
                .header("Content-Type", "application/json")
                .body(body.clone()),
        ));
        assert_eq!(answer.0, status, "{shape}: {}", answer.1);
        let (peak, _) = memory_of(server.child.id());
        let grown = peak.saturating_sub(before);
        println!(
            "{shape}: body {} bytes, peak memory grew {} bytes ({:.1}×)",
            body.len(),
            grown,
            grown as f64 / body.len() as f64
        );
        assert!(
            grown <= 10 * body.len() as u64,
            "{shape}: grew {grown} bytes for a {} byte body",
            body.len()
        );
    }
}

/// A credential is cached only for a request that passed every check: refused ones (rate limit, origin,
/// permission, another project) leave the grant cache as it was. The cache is bounded in bytes: tokens
/// with large filters push older entries out instead of growing it.
#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_never_enter_the_grant_cache_and_it_is_bounded_in_bytes() {
    let server = InProcessServer::start().await;
    server
        .write_events("orders", vec![json!({"tenant": "a"})])
        .await;
    let limited = server
        .create_access_key(json!({"name": "limited", "permitted": ["queries"],
            "options": {"limits": {"reads_per_second": 0.001, "reads_burst": 1}, "origins": ["https://app.example.com"]}}))
        .await;
    let count = |credential: String, origin: &'static str| {
        send(
            client()
                .get(server.project_url("/queries/count?event_collection=orders"))
                .header("Authorization", credential)
                .header("Origin", origin),
        )
    };
    let token = |n: usize| {
        let claims = json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": format!("t{n}")});
        keyhole_model::embed_token::mint(&limited, &claims)
    };
    let entries = || server.meta.grant_cache_usage().1;
    let before = entries();
    assert_eq!(count(token(0), "https://app.example.com").await.0, 200);
    assert_eq!(entries(), before + 1, "an admitted credential is cached");
    for n in 1..=5 {
        assert_eq!(
            count(token(n), "https://app.example.com").await.0,
            429,
            "rate limited"
        );
        assert_eq!(
            count(token(100 + n), "https://evil.test").await.0,
            401,
            "wrong origin"
        );
    }
    let writes = send(
        client()
            .post(server.project_url("/events/orders"))
            .header("Authorization", token(200))
            .header("Origin", "https://app.example.com")
            .json(&json!({})),
    )
    .await;
    assert_eq!(writes.0, 401, "not permitted: {}", writes.1);
    assert_eq!(entries(), before + 1, "no refused credential was cached");

    // Tokens of a key with a large filter: each token's grant holds the key's rules, is charged its size,
    // and the cache stays within its bytes by dropping the oldest.
    let values: Vec<String> = (0..8_000).map(|n| format!("v{n:05}")).collect();
    let large = server
        .create_access_key(
            json!({"name": "large", "permitted": ["queries"], "options": {"queries": {"filters": [
            {"property_name": "tenant", "operator": "in", "property_value": values}]}}}),
        )
        .await;
    for n in 0..400 {
        let claims =
            json!({"exp": chrono::Utc::now().timestamp() + 600, "jti": format!("large{n}")});
        let answer = server
            .key_self(&keyhole_model::embed_token::mint(&large, &claims))
            .await;
        assert_eq!(answer.0, 200, "{}", answer.1);
    }
    let (bytes, cached) = server.meta.grant_cache_usage();
    println!("grant cache after 400 large tokens: {bytes} bytes, {cached} grants");
    // The cache is the grant share of the server's memory budget.
    let share = server
        .storage
        .memory_budget()
        .share(keyhole_model::memory_budget::MemoryConsumer::GrantCache) as usize;
    assert!(bytes <= share, "{bytes} bytes cached of {share}");
    assert!(cached < 400, "older grants were dropped: {cached} cached");
    assert!(
        bytes > share / 2,
        "large grants are charged their size: {bytes}"
    );
}

/// Every read of events counts against `queries_per_day` and the read rate: saved and cached query
/// results, dataset results and deletes, not only ad-hoc queries.
#[tokio::test(flavor = "multi_thread")]
async fn every_read_a_key_makes_counts_against_its_limits() {
    let server = InProcessServer::start().await;
    let yesterday = keyhole_model::timestamp::format_timestamp(
        chrono::Utc::now().timestamp_millis() - 86_400_000,
    );
    server
        .write_events(
            "orders",
            vec![json!({"tenant": "a", "keen": {"timestamp": yesterday}})],
        )
        .await;
    let master = |request: reqwest::RequestBuilder| {
        send(request.header("Authorization", &server.project.master))
    };
    for (name, body) in [
        (
            "saved",
            json!({"query": {"analysis_type": "count", "event_collection": "orders", "timeframe": "this_7_days"}}),
        ),
        (
            "cached",
            json!({"query": {"analysis_type": "count", "event_collection": "orders", "timeframe": "this_7_days"}, "refresh_rate": 14_400}),
        ),
    ] {
        let created = master(
            client()
                .put(server.project_url(&format!("/queries/saved/{name}")))
                .json(&body),
        )
        .await;
        assert!(created.0 < 300, "{}", created.1);
    }
    let dataset = master(client().put(server.project_url("/datasets/daily")).json(&json!({"index_by": "tenant",
        "query": {"analysis_type": "count", "event_collection": "orders", "timeframe": "this_5_days", "interval": "daily"}}))).await;
    assert_eq!(dataset.0, 201, "{}", dataset.1);
    let reads = |key: String| {
        let url = |path: &str| server.project_url(path);
        vec![
            client().get(url("/queries/saved/saved/result")).header("Authorization", key.clone()),
            client().get(url("/queries/saved/cached/result")).header("Authorization", key.clone()),
            client()
                .get(url("/datasets/daily/results"))
                .query(&[("index_by", "a"), ("timeframe", "this_5_days")])
                .header("Authorization", key.clone()),
            client()
                .delete(url("/events/orders"))
                .query(&[("filters", r#"[{"property_name": "tenant", "operator": "eq", "property_value": "nobody"}]"#)])
                .header("Authorization", key.clone()),
        ]
    };
    let permitted = json!(["saved_queries", "cached_queries", "datasets", "deletes"]);
    let quota = server
        .create_access_key(json!({"name": "quota", "permitted": permitted, "options": {"limits": {"queries_per_day": 4}}}))
        .await;
    for read in reads(quota.clone()) {
        let answer = send(read).await;
        assert!(answer.0 < 300, "{}", answer.1);
    }
    for read in reads(quota.clone()) {
        assert_keen_error(&send(read).await, 429, "QuotaExceededError");
    }
    let usage = server.key_self(&quota).await;
    assert_eq!(usage.1["usage"]["counts"]["queries"], 4, "{}", usage.1);

    let rate = server
        .create_access_key(json!({"name": "rate", "permitted": permitted,
            "options": {"limits": {"reads_per_second": 0.001, "reads_burst": 2}}}))
        .await;
    let statuses: Vec<u16> = futures::future::join_all(
        reads(rate)
            .into_iter()
            .map(|read| async move { send(read).await.0 }),
    )
    .await;
    assert_eq!(
        statuses.iter().filter(|status| **status == 429).count(),
        2,
        "{statuses:?}"
    );
}
