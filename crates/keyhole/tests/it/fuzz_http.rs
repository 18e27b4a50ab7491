//! HTTP-level fuzzing over every route of the route table: first the corpus of requests that once broke
//! a server (`corpus/hostile_requests.json`), then random methods' worth of random path values, query
//! parameters and bodies (arbitrary JSON, near-JSON, bytes) with every kind of key. Every answer must be
//! a success or a Keen-style error (`message` and `error_code`), never a 500 or an undocumented 5xx; the
//! server must stay up; and the events acknowledged before the run must be intact after it. A second run
//! aims at the write side: random `keen.addons` declarations through the three write routes, pixel URLs
//! with random `data` and `redirect`, and webhook deliveries with random signature headers.
//!
//! The run is deterministic for a seed: `KEYHOLE_FUZZ_SEED` picks another, `KEYHOLE_FUZZ_CASES` sets the
//! cases per route (default 40). A failing request is printed whole, ready for the corpus.

use serde_json::{Map, Value, json};

use crate::hostile_queries::{tenant_key, write_batch};
use crate::support::{InProcessServer, client, send};

/// SplitMix64: small, seedable, good enough to pick inputs.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const WORDS: &[&str] = &[
    "fuzz",
    "n",
    "a",
    "keen",
    "keen.timestamp",
    "keen.id",
    "user.id",
    "tenant",
    "timestamp",
    "uniqueness_token",
    "or",
    "in",
    "eq",
    "ne",
    "exists",
    "regex",
    "within",
    "this_7_days",
    "previous_4294967295_years",
    "minutely",
    "every_0_days",
    "Europe/Berlin",
    "-86400",
    "count",
    "result",
    "$x",
    "_x",
    "a.b",
    "..",
    "%",
    "\u{202E}",
    "\u{0}",
    "\u{FEFF}",
    "😀",
    "",
];

fn text(dice: &mut Dice) -> String {
    match dice.below(6) {
        0 => "x".repeat(dice.below(3_000)),
        1 => (0..dice.below(20))
            .map(|_| char::from_u32(dice.below(0x11_0000) as u32).unwrap_or('?'))
            .collect(),
        _ => dice.pick(WORDS).to_string(),
    }
}

fn json_value(dice: &mut Dice, depth: usize) -> Value {
    let choice = if depth >= 4 {
        dice.below(5)
    } else {
        dice.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => json!(dice.chance(50)),
        2 => json!(dice.next() as i64),
        3 => json!((dice.next() as f64) / (dice.next() as f64 + 1.0) - 0.5),
        4 => json!(text(dice)),
        5 | 6 => {
            let mut object = Map::new();
            for _ in 0..dice.below(6) {
                object.insert(text(dice), json_value(dice, depth + 1));
            }
            if dice.chance(30) {
                let filters: Vec<Value> = (0..dice.below(4))
                    .map(|_| {
                        json!({"property_name": text(dice), "operator": dice.pick(WORDS),
                            "property_value": json_value(dice, depth + 1)})
                    })
                    .collect();
                object.insert("filters".into(), Value::Array(filters));
            }
            Value::Object(object)
        }
        _ => Value::Array(
            (0..dice.below(6))
                .map(|_| json_value(dice, depth + 1))
                .collect(),
        ),
    }
}

/// A query-parameter object over the names the routes read, with random values.
fn parameters(dice: &mut Dice) -> Map<String, Value> {
    const NAMES: &[&str] = &[
        "event_collection",
        "target_property",
        "percentile",
        "timeframe",
        "timezone",
        "interval",
        "filters",
        "group_by",
        "order_by",
        "limit",
        "include_metadata",
        "latest",
        "property_names",
        "steps",
        "analyses",
        "data",
        "redirect",
        "api_key",
        "name",
        "permitted",
        "options",
        "timeframe[start]",
        "filters[0][property_name]",
    ];
    let mut parameters = Map::new();
    if dice.chance(80) {
        parameters.insert("event_collection".into(), json!("fuzz"));
    }
    for _ in 0..dice.below(6) {
        parameters.insert(dice.pick(NAMES).to_string(), json_value(dice, 2));
    }
    parameters
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn query_string(dice: &mut Dice) -> String {
    parameters(dice)
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!("{}={}", encode(name), encode(&text))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn body(dice: &mut Dice) -> Vec<u8> {
    match dice.below(7) {
        0 => Vec::new(),
        1 => (0..dice.below(300)).map(|_| dice.next() as u8).collect(),
        2 => {
            let text = json_value(dice, 0).to_string();
            let cut = dice.below(text.len() + 1);
            text.as_bytes()[..cut].to_vec()
        }
        3 => Value::Object(parameters(dice)).to_string().into_bytes(),
        _ => json_value(dice, 0).to_string().into_bytes(),
    }
}

/// The keys a request may carry.
struct Keys {
    master: String,
    read: String,
    write: String,
    tenant: String,
    org: String,
}

fn key_for(dice: &mut Dice, keys: &Keys) -> Option<String> {
    match dice.below(7) {
        0 => Some(keys.master.clone()),
        1 => Some(keys.read.clone()),
        2 => Some(keys.write.clone()),
        3 => Some(keys.org.clone()),
        4 => None,
        5 => Some(text(dice)),
        _ => Some(keys.tenant.clone()),
    }
}

/// Fails the test unless `answer` is a success or a Keen-style error with a documented status.
fn check_answer(description: &str, status: u16, body: &[u8]) {
    if status == 0 {
        return;
    }
    let description = shorten(description);
    let documented_5xx = matches!(status, 501 | 503 | 504);
    assert!(
        status < 500 || documented_5xx,
        "{description} answered {status}: {}",
        String::from_utf8_lossy(body)
    );
    if status < 400 {
        return;
    }
    let error: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    assert!(
        error["message"].is_string() && error["error_code"].is_string(),
        "{description} answered {status} without a Keen error body: {}",
        String::from_utf8_lossy(body)
    );
}

async fn send_raw(method: &str, url: &str, key: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method.clone(), url).body(body);
    if let Some(key) = key.filter(|key| reqwest::header::HeaderValue::from_str(key).is_ok()) {
        request = request.header("Authorization", key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        // A URL the client itself cannot build (over 64 KiB): nothing reached the server.
        Err(error) if error.is_builder() => return (0, Vec::new()),
        Err(error) => panic!("{method} {} failed: {error}", shorten(url)),
    };
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// After a run: the server answers and the events acknowledged before it are intact.
async fn assert_survived(server: &InProcessServer, before: &Value) {
    let (status, _) = send_raw("GET", &server.url("/health"), None, Vec::new()).await;
    assert_eq!(status, 200, "the server survives the run");
    assert_eq!(
        &sentinel_total(server).await,
        before,
        "acknowledged events are intact"
    );
}

/// The run's seed and cases per route: `KEYHOLE_FUZZ_SEED`, `KEYHOLE_FUZZ_CASES` (default 0x5EED, 40).
fn fuzz_settings() -> (u64, usize) {
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
    };
    (
        setting("KEYHOLE_FUZZ_SEED").unwrap_or(0x5EED),
        setting("KEYHOLE_FUZZ_CASES").map_or(40, |cases: u64| cases as usize),
    )
}

/// At most 2,000 characters of `text`, for messages.
fn shorten(text: &str) -> String {
    text.chars().take(2_000).collect()
}

fn corpus_body(entry: &Value) -> Vec<u8> {
    if let Some(body) = entry.get("body") {
        return body.to_string().into_bytes();
    }
    let Some((kind, count)) = entry["body_repeat"]
        .as_object()
        .and_then(|object| object.iter().next())
        .map(|(kind, count)| (kind.as_str(), count.as_u64().unwrap_or(0) as usize))
    else {
        return Vec::new();
    };
    let condition = |i: usize| json!({"property_name": "n", "operator": "ne", "property_value": i});
    let body = match kind {
        "in_values" => {
            json!({"event_collection": "fuzz", "filters": [{"property_name": "n", "operator": "in",
            "property_value": (0..count).collect::<Vec<_>>()}]})
        }
        "or_operands" => json!({"event_collection": "fuzz", "filters": [{"operator": "or",
            "operands": (0..count).map(condition).collect::<Vec<_>>()}]}),
        "and_filters" => {
            json!({"event_collection": "fuzz", "filters": (0..count).map(condition).collect::<Vec<_>>()})
        }
        "wide_event" => Value::Object((0..count).map(|i| (format!("p{i}"), json!(i))).collect()),
        "analyses" => json!({"event_collection": "fuzz", "group_by": "n", "analyses":
            (0..count).map(|i| (format!("a{i}"), json!({"analysis_type": "count_unique", "target_property": "n"}))).collect::<Map<_, _>>()}),
        other => panic!("unknown corpus body kind {other}"),
    };
    body.to_string().into_bytes()
}

async fn sentinel_total(server: &InProcessServer) -> Value {
    let url = server.project_url("/queries/sum?event_collection=sentinel&target_property=n");
    let response = client()
        .get(url)
        .header("Authorization", &server.project.master)
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_fuzzed_requests_with_keen_answers_and_keeps_its_data() {
    let server = InProcessServer::start().await;
    let sentinel: Vec<Value> = (0..50).map(|n| json!({"n": n, "tenant": "acme"})).collect();
    write_batch(&server, "sentinel", Value::Array(sentinel)).await;
    server.storage.flush().await.unwrap();
    write_batch(
        &server,
        "fuzz",
        json!([{"n": 1, "tenant": "acme"}, {"n": 2}]),
    )
    .await;
    let before = sentinel_total(&server).await;
    assert_eq!(before, 1225);
    let keys = Keys {
        master: server.project.master.clone(),
        read: server.project.read.clone(),
        write: server.project.write.clone(),
        tenant: tenant_key(&server, "acme", &["queries", "writes", "schema"]).await,
        org: server.org_key.clone(),
    };

    let corpus: Value = serde_json::from_str(include_str!("corpus/hostile_requests.json")).unwrap();
    for entry in corpus["requests"].as_array().unwrap() {
        let key = match entry["key"].as_str().unwrap() {
            "master" => &keys.master,
            "read" => &keys.read,
            "write" => &keys.write,
            _ => &keys.tenant,
        };
        let path = entry["path"]
            .as_str()
            .unwrap()
            .replace("{project}", &server.project.id);
        let method = entry["method"].as_str().unwrap();
        let (status, answer) =
            send_raw(method, &server.url(&path), Some(key), corpus_body(entry)).await;
        check_answer(&format!("corpus: {}", entry["why"]), status, &answer);
    }

    let (seed, cases) = fuzz_settings();
    let mut dice = Dice(seed);
    let mut requests = 0;
    for route in keyhole_server::routes::ROUTES {
        for _ in 0..cases {
            let mut path = route.path.to_string();
            let collection = match dice.below(4) {
                0 => text(&mut dice),
                _ => dice.pick(&["fuzz", "fuzz2", "other"]).to_string(),
            };
            let collection = if collection == "sentinel" {
                "fuzz".into()
            } else {
                collection
            };
            let substitutions = [
                (
                    "{project_id}",
                    if dice.chance(85) {
                        server.project.id.clone()
                    } else {
                        text(&mut dice)
                    },
                ),
                (
                    "{org_id}",
                    if dice.chance(70) {
                        "default".to_string()
                    } else {
                        text(&mut dice)
                    },
                ),
                ("{collection}", collection),
                (
                    "{analysis_type}",
                    if dice.chance(80) {
                        dice.pick(&[
                            "count",
                            "count_unique",
                            "sum",
                            "median",
                            "percentile",
                            "select_unique",
                            "extraction",
                            "funnel",
                            "multi_analysis",
                            "minimum",
                        ])
                        .to_string()
                    } else {
                        text(&mut dice)
                    },
                ),
                ("{property}", text(&mut dice)),
                ("{key}", text(&mut dice)),
            ];
            for (placeholder, value) in substitutions {
                path = path.replace(placeholder, &encode(&value));
            }
            let url = format!("{}?{}", server.url(&path), query_string(&mut dice));
            let key = key_for(&mut dice, &keys);
            let body = body(&mut dice);
            let method = route.method.to_ascii_uppercase();
            let description = format!(
                "{method} {url} with key {key:?} and body {:?}",
                String::from_utf8_lossy(&body)
            );
            let (status, answer) = send_raw(&method, &url, key.as_deref(), body).await;
            check_answer(&description, status, &answer);
            requests += usize::from(status != 0);
        }
    }
    assert!(requests >= keyhole_server::routes::ROUTES.len() * cases * 9 / 10);
    assert_survived(&server, &before).await;
}

/// A random path for an add-on to read or write: short over a small alphabet (colliding with the
/// tenant's autofill), or hostile (thousands of segments, empty or refused names).
fn addon_path(dice: &mut Dice) -> String {
    match dice.below(8) {
        0 => vec!["d"; 1 + dice.below(12_000)].join("."),
        1 => dice
            .pick(&["", ".", "a..b", "tenant.$x", "tenant.\u{202E}"])
            .to_string(),
        2 => text(dice),
        _ => (0..=dice.below(3))
            .map(|_| *dice.pick(&["tenant", "a", "b", "page", "keen"]))
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// An event carrying random add-on declarations.
fn event_with_addons(dice: &mut Dice) -> Value {
    let mut event = match json_value(dice, 2) {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    event.insert("page".into(), json!("https://a.example/x?y=1"));
    event.insert("ua".into(), json!("Mozilla/5.0 ".repeat(dice.below(1_000))));
    let addons: Vec<Value> = (0..dice.below(4))
        .map(|_| {
            let name = *dice.pick(&[
                "keen:url_parser",
                "keen:ua_parser",
                "keen:date_time_parser",
                "keen:referrer_parser",
                "keen:ip_to_geo",
                "keen:nope",
            ]);
            let mut input = Map::new();
            for _ in 0..dice.below(3) {
                let parameter = *dice.pick(&[
                    "url",
                    "ua_string",
                    "date_time",
                    "referrer_url",
                    "page_url",
                    "ip",
                    "remove_ip_property",
                ]);
                let value = if dice.chance(80) {
                    json!(addon_path(dice))
                } else {
                    json_value(dice, 3)
                };
                input.insert(parameter.into(), value);
            }
            if dice.chance(20) {
                return json_value(dice, 3);
            }
            json!({"name": name, "input": input, "output": addon_path(dice)})
        })
        .collect();
    event.insert("keen".into(), json!({"addons": addons}));
    Value::Object(event)
}

/// The `data=` of a pixel: the event in one of the base64 forms SDKs send, or junk.
fn pixel_data(dice: &mut Dice, event: &Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let json = event.to_string();
    match dice.below(5) {
        0 => text(dice),
        1 => URL_SAFE_NO_PAD.encode(&json),
        2 => STANDARD.encode(&json).replace('+', " "),
        _ => encode(&STANDARD.encode(&json)),
    }
}

/// A Stripe- or GitHub-style signature header: random timestamps, many candidates, junk.
fn signature_header(dice: &mut Dice) -> String {
    let now = chrono::Utc::now().timestamp();
    match dice.below(4) {
        0 => format!(
            "t={},{}",
            now - dice.below(1_000) as i64,
            (0..dice.below(2_000))
                .map(|_| format!("v1={:064x}", dice.next()))
                .collect::<Vec<_>>()
                .join(",")
        ),
        1 => format!("sha256={}", "ab".repeat(dice.below(3_000))),
        2 => text(dice),
        _ => format!("t={},v1={:064x}", dice.next() as i64, dice.next()),
    }
}

/// The write side's hostile shapes, fuzzed: events with random add-on declarations through the three
/// write routes, pixel URLs with random `data` and `redirect`, webhook deliveries with random signature
/// headers. Every answer is a Keen answer, the server stays up, acknowledged events stay, and every event
/// the tenant's key wrote carries the tenant's autofill.
#[tokio::test(flavor = "multi_thread")]
async fn write_routes_answer_fuzzed_add_ons_pixels_and_signatures_with_keen_answers() {
    let server = InProcessServer::start().await;
    let sentinel: Vec<Value> = (0..50).map(|n| json!({"n": n, "tenant": "acme"})).collect();
    write_batch(&server, "sentinel", Value::Array(sentinel)).await;
    let before = sentinel_total(&server).await;
    let tenant = tenant_key(&server, "acme", &["writes"]).await;
    let stripe = server
        .create_access_key(json!({"name": "stripe", "permitted": ["writes"],
            "options": {"writes": {"webhook": {"signature": "stripe", "secret": "whsec_0123456789abcdefghij"}}}}))
        .await;
    let github = server
        .create_access_key(json!({"name": "github", "permitted": ["writes"],
            "options": {"writes": {"webhook": {"signature": "github", "secret": "whsec_0123456789abcdefghij"}}}}))
        .await;
    let (seed, cases) = fuzz_settings();
    let mut dice = Dice(seed ^ 0xADD0);
    for _ in 0..cases * 4 {
        let event = event_with_addons(&mut dice);
        // The tenant's key writes to a collection of its own, whose every event must carry its autofill.
        let (key, collection) = if dice.chance(50) {
            (tenant.clone(), "by_tenant")
        } else {
            (server.project.write.clone(), "fuzzed")
        };
        let (method, url, body) = match dice.below(3) {
            0 => (
                "POST",
                server.project_url(&format!("/events/{collection}")),
                event.to_string().into_bytes(),
            ),
            1 => (
                "POST",
                server.project_url("/events"),
                json!({collection: [event, event_with_addons(&mut dice)]})
                    .to_string()
                    .into_bytes(),
            ),
            _ => {
                let mut url = server.project_url(&format!(
                    "/events/{collection}?data={}",
                    pixel_data(&mut dice, &event)
                ));
                if dice.chance(30) {
                    url.push_str(&format!("&redirect={}", encode(&text(&mut dice))));
                }
                ("GET", url, Vec::new())
            }
        };
        let description = format!(
            "{method} {url} with body {:?}",
            String::from_utf8_lossy(&body)
        );
        let (status, answer) = send_raw(method, &url, Some(&key), body).await;
        check_answer(&description, status, &answer);
    }
    for _ in 0..cases {
        let key = if dice.chance(50) { &stripe } else { &github };
        let header = signature_header(&mut dice);
        let name = if key == &stripe {
            "Stripe-Signature"
        } else {
            "X-Hub-Signature-256"
        };
        let request = client()
            .post(server.project_url("/events/payments"))
            .header("Authorization", key)
            .header(name, &header)
            .body(json_value(&mut dice, 1).to_string());
        let description = format!("webhook delivery with {name}: {}", shorten(&header));
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                check_answer(&description, status, &response.bytes().await.unwrap());
                // 431: a header past the server's head limit, refused below the router.
                assert!(
                    status == 401 || (status == 431 && header.len() > 60_000),
                    "{status}: {description}"
                );
            }
            // A header past the server's head limit is refused below the router (431 or a closed socket).
            Err(error) => assert!(header.len() > 60_000, "{description}: {error}"),
        }
    }
    assert_survived(&server, &before).await;
    let count = |filters: Value| {
        send(
            client()
                .post(server.project_url("/queries/count"))
                .header("Authorization", &server.project.master)
                .json(&json!({"event_collection": "by_tenant", "filters": filters})),
        )
    };
    let written = count(json!([])).await.1["result"].clone();
    let stamped =
        count(json!([{"property_name": "tenant", "operator": "eq", "property_value": "acme"}]))
            .await;
    assert!(
        written.as_i64().unwrap_or_default() > 0,
        "the tenant wrote something: {written}"
    );
    assert_eq!(
        stamped.1["result"], written,
        "every event of the tenant's key carries its autofill"
    );
}
