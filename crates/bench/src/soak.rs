//! `keyhole-bench soak`: a bounded mixed load against the `keyhole` binary for a fixed time — writers
//! posting batches with tenant keys, dashboard readers querying with tenant keys, and a share of the
//! hostile requests that once crashed or exhausted the server — reporting, per window, requests, failures
//! of well-formed requests, write and query p99 and the server's RSS. At the end every acknowledged event
//! must be counted, and the report says whether RSS stayed flat.
//!
//! Only loopback traffic; every loop stops at the deadline. `bench/soak` is the documented command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::server::{KeyholeServer, keyhole_binary};

#[derive(clap::Args, Clone)]
pub struct SoakOptions {
    /// Minutes of load.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Concurrent writers (100-event batches with tenant keys).
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Concurrent dashboard readers (tenant-key queries).
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// Concurrent senders of hostile requests.
    #[arg(long, default_value_t = 2)]
    pub attackers: usize,
    /// Seconds per report window.
    #[arg(long, default_value_t = 30)]
    pub window_seconds: u64,
    /// The keyhole binary (default: `keyhole` next to this binary).
    #[arg(long)]
    pub keyhole: Option<std::path::PathBuf>,
    /// Markdown file the report is written to (it is also printed).
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

const TENANTS: usize = 20;
pub(crate) const COLLECTION: &str = "activity";

/// What one window saw.
#[derive(Default, Clone)]
struct Window {
    writes: Vec<f64>,
    queries: Vec<f64>,
    hostile: usize,
    /// Well-formed requests that failed: must stay 0.
    failures: usize,
    /// Hostile requests answered with a 5xx other than the documented 503/504, or not Keen-style.
    hostile_misanswered: usize,
    acknowledged_events: u64,
}

/// What every load task shares.
struct Load {
    server: Arc<KeyholeServer>,
    http: reqwest::Client,
    keys: Arc<Vec<String>>,
    shared: Arc<Shared>,
}

struct Shared {
    window: Mutex<Window>,
    failures_seen: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    async fn record_failure(&self, what: String) {
        let mut seen = self.failures_seen.lock().await;
        if seen.len() < 20 {
            seen.push(what);
        }
    }
}

pub async fn run(options: &SoakOptions) -> anyhow::Result<String> {
    let binary = keyhole_binary(options.keyhole.as_ref())?;
    let data_dir = tempfile::tempdir()?;
    let server = Arc::new(KeyholeServer::start(&binary, data_dir.path())?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut keys = Vec::with_capacity(TENANTS);
    for tenant in 0..TENANTS {
        keys.push(create_key(&server, &http, &format!("t{tenant:02}")).await?);
    }
    let keys = Arc::new(keys);
    let shared = Arc::new(Shared {
        window: Mutex::new(Window::default()),
        failures_seen: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let load = Arc::new(Load {
        server: server.clone(),
        http: http.clone(),
        keys,
        shared: shared.clone(),
    });
    let mut tasks = Vec::new();
    for worker in 0..options.writers {
        tasks.push(tokio::spawn(writer(worker, load.clone())));
    }
    for worker in 0..options.readers {
        tasks.push(tokio::spawn(reader(worker, load.clone())));
    }
    for worker in 0..options.attackers {
        tasks.push(tokio::spawn(attacker(worker, load.clone())));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.minutes * 60);
    let mut rows = Vec::new();
    let mut total = Window::default();
    while Instant::now() < deadline {
        let wait = Duration::from_secs(options.window_seconds)
            .min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
        let window = std::mem::take(&mut *shared.window.lock().await);
        let rss = server.rss_mib();
        rows.push(format!(
            "| {:>5.0} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.0} |",
            started.elapsed().as_secs_f64(),
            window.writes.len(),
            window.queries.len(),
            window.hostile,
            window.failures,
            window.hostile_misanswered,
            percentile(&window.writes, 99.0),
            percentile(&window.queries, 99.0),
            rss,
        ));
        println!("{}", rows.last().expect("just pushed"));
        total.writes.extend(window.writes);
        total.queries.extend(window.queries);
        total.hostile += window.hostile;
        total.failures += window.failures;
        total.hostile_misanswered += window.hostile_misanswered;
        total.acknowledged_events += window.acknowledged_events;
    }
    shared.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    let last = std::mem::take(&mut *shared.window.lock().await);
    total.acknowledged_events += last.acknowledged_events;
    total.failures += last.failures;

    let counted = count_all(&server, &http).await?;
    let rss_samples: Vec<f64> = rows
        .iter()
        .filter_map(|row| row.rsplit('|').nth(1)?.trim().parse().ok())
        .collect();
    let flat = rss_is_flat(&rss_samples);
    let failures = shared.failures_seen.lock().await.clone();
    let mut report = format!(
        "Soak: {} minutes, {} writers, {} readers, {} attackers, {} tenants, keyhole {}\n\n",
        options.minutes,
        options.writers,
        options.readers,
        options.attackers,
        TENANTS,
        binary.display()
    );
    report.push_str("| t (s) | write batches | queries | hostile | failed well-formed | hostile misanswered | write p99 (ms) | query p99 (ms) | RSS (MiB) |\n");
    report.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in &rows {
        report.push_str(row);
        report.push('\n');
    }
    report.push_str(&format!(
        "\nTotals: {} write batches ({} events acknowledged, {} counted by the master key afterwards), {} queries, {} hostile requests; {} well-formed requests failed; {} hostile requests misanswered; write p99 {:.1} ms, query p99 {:.1} ms; peak RSS {:.0} MiB; RSS after warm-up {}.\n",
        total.writes.len(),
        total.acknowledged_events,
        counted,
        total.queries.len(),
        total.hostile,
        total.failures,
        total.hostile_misanswered,
        percentile(&total.writes, 99.0),
        percentile(&total.queries, 99.0),
        server.peak_rss_mib(),
        if flat { "stayed flat" } else { "kept growing" },
    ));
    for failure in &failures {
        report.push_str(&format!("- failure: {failure}\n"));
    }
    if let Some(path) = &options.report {
        std::fs::write(path, &report)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if total.failures > 0 || total.hostile_misanswered > 0 {
        bail!("{report}\nthe soak saw failures");
    }
    if counted != total.acknowledged_events {
        bail!("{report}\nacknowledged events are missing or doubled");
    }
    if !flat {
        bail!("{report}\nRSS kept growing");
    }
    Ok(report)
}

/// Flat: the samples of the second half stay within 25% (and 64 MiB) of the first half's maximum.
fn rss_is_flat(samples: &[f64]) -> bool {
    if samples.len() < 4 {
        return true;
    }
    let half = samples.len() / 2;
    let early = samples[..half].iter().copied().fold(0.0, f64::max);
    let late = samples[half..].iter().copied().fold(0.0, f64::max);
    late <= (early * 1.25).max(early + 64.0)
}

pub(crate) fn percentile(samples: &[f64], percentile: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((percentile / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

pub(crate) async fn create_key(
    server: &KeyholeServer,
    http: &reqwest::Client,
    tenant: &str,
) -> anyhow::Result<String> {
    let definition = json!({
        "name": format!("tenant {tenant}"),
        "permitted": ["queries", "writes", "schema"],
        "options": {
            "queries": {"filters": [{"property_name": "tenant_id", "operator": "eq", "property_value": tenant}]},
            "writes": {"autofill": {"tenant_id": tenant}},
        },
    });
    server.create_access_key(http, &definition).await
}

/// One event of the activity collection: an action by one of 5,000 users, with an amount.
pub(crate) fn activity_event(dice: &mut Dice) -> Value {
    const ACTIONS: [&str; 4] = ["view", "click", "signup", "purchase"];
    let action = ACTIONS[dice.next(4) as usize];
    json!({
        "action": action,
        "user": {"id": format!("u{}", dice.next(5_000))},
        "amount": dice.next(10_000) as f64 / 100.0,
    })
}

/// Sends a request; returns the answer and how long it took, in milliseconds.
pub(crate) async fn timed(
    request: reqwest::RequestBuilder,
) -> (reqwest::Result<reqwest::Response>, f64) {
    let started = Instant::now();
    let answer = request.send().await;
    (answer, started.elapsed().as_secs_f64() * 1000.0)
}

/// How a hostile request was answered.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// A 500, an undocumented 5xx (only 501, 503 and 504 are documented), or an error without
    /// `message` and `error_code`.
    pub(crate) misanswered: bool,
}

/// Reads an answer to a hostile request; `None` when the request failed (the connection dropped).
pub(crate) async fn judge(answer: reqwest::Result<reqwest::Response>) -> Option<Answer> {
    let response = answer.ok()?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let keen_style =
        status < 400 || (body["message"].is_string() && body["error_code"].is_string());
    let documented_5xx = matches!(status, 501 | 503 | 504);
    let misanswered = !keen_style || (status >= 500 && !documented_5xx);
    Some(Answer {
        status,
        misanswered,
    })
}

/// A small deterministic generator per worker.
pub(crate) struct Dice(pub(crate) u64);

impl Dice {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

async fn writer(worker: usize, load: Arc<Load>) {
    let Load {
        server,
        http,
        keys,
        shared,
    } = load.as_ref();
    let mut dice = Dice(worker as u64 * 7919 + 1);
    while !shared.stop.load(Ordering::SeqCst) {
        let key = &keys[dice.next(keys.len() as u64) as usize];
        let events: Vec<Value> = (0..100).map(|_| activity_event(&mut dice)).collect();
        let (answer, elapsed) = timed(
            http.post(server.project_url("events"))
                .header("Authorization", key)
                .json(&json!({ COLLECTION: events })),
        )
        .await;
        let ok = match answer {
            Ok(response) if response.status().as_u16() == 200 => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                body[COLLECTION]
                    .as_array()
                    .is_some_and(|results| results.iter().all(|r| r["success"] == true))
            }
            _ => false,
        };
        let mut window = shared.window.lock().await;
        window.writes.push(elapsed);
        if ok {
            window.acknowledged_events += 100;
        } else {
            window.failures += 1;
            drop(window);
            shared
                .record_failure(format!("write batch after {elapsed:.0} ms"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dashboard_query(dice: &mut Dice) -> (&'static str, Value) {
    let base = json!({"event_collection": COLLECTION, "timeframe": "this_2_days"});
    let with = |extra: Value| {
        let mut query = base.clone();
        for (name, value) in extra.as_object().expect("an object") {
            query[name] = value.clone();
        }
        query
    };
    match dice.next(6) {
        0 => (
            "count",
            with(json!({"interval": "hourly", "timezone": "Europe/Berlin"})),
        ),
        1 => (
            "sum",
            with(json!({"target_property": "amount", "group_by": "action"})),
        ),
        2 => ("count_unique", with(json!({"target_property": "user.id"}))),
        3 => ("select_unique", with(json!({"target_property": "action"}))),
        4 => (
            "funnel",
            json!({"timeframe": "this_2_days", "steps": [
                {"event_collection": COLLECTION, "actor_property": "user.id", "filters": [{"property_name": "action", "operator": "eq", "property_value": "view"}]},
                {"event_collection": COLLECTION, "actor_property": "user.id", "filters": [{"property_name": "action", "operator": "eq", "property_value": "purchase"}]}]}),
        ),
        _ => ("extraction", with(json!({"latest": 20}))),
    }
}

async fn reader(worker: usize, load: Arc<Load>) {
    let Load {
        server,
        http,
        keys,
        shared,
    } = load.as_ref();
    let mut dice = Dice(worker as u64 * 104_729 + 3);
    while !shared.stop.load(Ordering::SeqCst) {
        let key = &keys[dice.next(keys.len() as u64) as usize];
        let (analysis, body) = dashboard_query(&mut dice);
        let (answer, elapsed) = timed(
            http.post(server.project_url(&format!("queries/{analysis}")))
                .header("Authorization", key)
                .json(&body),
        )
        .await;
        let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
        let mut window = shared.window.lock().await;
        window.queries.push(elapsed);
        if status != 200 {
            window.failures += 1;
            drop(window);
            shared
                .record_failure(format!("{analysis} answered {status}"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The classes of hostile request the soak and `attack` send, by index.
pub(crate) const HOSTILE_CLASSES: [&str; 9] = [
    "`in` filter with 5,000 values",
    "`or` filter with 900 operands",
    "timeframe this_4294967295_weeks",
    "count, group_by 5,000 users, minutely over 2 days",
    "multi_analysis of 100 count_unique, group_by 5,000 users",
    "event with 3,000 fresh property names",
    "collection ../../x, property with U+202E",
    "DELETE with PHP bracket filters (master key)",
    "select_unique of 5,000 users by action",
];

/// A random hostile request: (method, path under the project, body).
fn hostile_request(dice: &mut Dice) -> (reqwest::Method, String, Option<Value>) {
    let class = dice.next(HOSTILE_CLASSES.len() as u64);
    hostile_request_of(class, dice)
}

/// A hostile request of class `class` (an index into [`HOSTILE_CLASSES`]).
pub(crate) fn hostile_request_of(
    class: u64,
    dice: &mut Dice,
) -> (reqwest::Method, String, Option<Value>) {
    let values: Vec<Value> = (0..5_000).map(|i| json!(i)).collect();
    let operands: Vec<Value> = (0..900)
        .map(|i| json!({"property_name": "amount", "operator": "eq", "property_value": i}))
        .collect();
    let wide: serde_json::Map<String, Value> = (0..3_000)
        .map(|i| (format!("f{}_{i}", dice.next(1_000_000)), json!(i)))
        .collect();
    match class {
        0 => (
            reqwest::Method::POST,
            "queries/count".into(),
            Some(
                json!({"event_collection": COLLECTION, "filters": [{"property_name": "amount", "operator": "in", "property_value": values}]}),
            ),
        ),
        1 => (
            reqwest::Method::POST,
            "queries/count".into(),
            Some(
                json!({"event_collection": COLLECTION, "filters": [{"operator": "or", "operands": operands}]}),
            ),
        ),
        2 => (
            reqwest::Method::GET,
            format!("queries/count?event_collection={COLLECTION}&timeframe=this_4294967295_weeks"),
            None,
        ),
        3 => (
            reqwest::Method::POST,
            "queries/count".into(),
            Some(
                json!({"event_collection": COLLECTION, "group_by": "user.id", "interval": "minutely", "timeframe": "this_2_days"}),
            ),
        ),
        4 => {
            let analyses: serde_json::Map<String, Value> = (0..100)
                .map(|i| {
                    (
                        format!("a{i}"),
                        json!({"analysis_type": "count_unique", "target_property": "user.id"}),
                    )
                })
                .collect();
            (
                reqwest::Method::POST,
                "queries/multi_analysis".into(),
                Some(
                    json!({"event_collection": COLLECTION, "group_by": "user.id", "analyses": analyses}),
                ),
            )
        }
        5 => (
            reqwest::Method::POST,
            format!("events/{COLLECTION}"),
            Some(Value::Object(wide)),
        ),
        6 => (
            reqwest::Method::POST,
            "events/..%2F..%2Fx".into(),
            Some(json!({"evil\u{202E}name": 1})),
        ),
        7 => (
            reqwest::Method::DELETE,
            format!(
                "events/{COLLECTION}?filters[0][property_name]=action&filters[0][operator]=eq&filters[0][property_value]=view"
            ),
            None,
        ),
        _ => (
            reqwest::Method::POST,
            "queries/select_unique".into(),
            Some(
                json!({"event_collection": COLLECTION, "target_property": "user.id", "group_by": "action"}),
            ),
        ),
    }
}

async fn attacker(worker: usize, load: Arc<Load>) {
    let Load {
        server,
        http,
        keys,
        shared,
    } = load.as_ref();
    let mut dice = Dice(worker as u64 * 15_485_863 + 5);
    while !shared.stop.load(Ordering::SeqCst) {
        let (method, path, body) = hostile_request(&mut dice);
        // Deletes need the master key; everything else comes from a tenant's browser.
        let key = if method == reqwest::Method::DELETE {
            server.master_key.clone()
        } else {
            keys[dice.next(keys.len() as u64) as usize].clone()
        };
        let mut request = http
            .request(method, server.project_url(&path))
            .header("Authorization", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let misanswered = judge(request.send().await)
            .await
            .is_none_or(|answer| answer.misanswered);
        let mut window = shared.window.lock().await;
        window.hostile += 1;
        if misanswered {
            window.hostile_misanswered += 1;
            drop(window);
            shared
                .record_failure(format!("hostile request {path}"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count_all(server: &KeyholeServer, http: &reqwest::Client) -> anyhow::Result<u64> {
    let response = http
        .post(server.project_url("queries/count"))
        .header("Authorization", &server.master_key)
        .json(&json!({"event_collection": COLLECTION}))
        .send()
        .await?;
    let body: Value = response.json().await?;
    body["result"]
        .as_u64()
        .with_context(|| format!("count answered {body}"))
}
