//! Writing the benchmark's events to Keyhole over HTTP, as an SDK would, and measuring freshness.
//!
//! - Batch ingest: the NDJSON file is cut into 1,000-event bodies (`{"bench": [...]}`, the lines pasted in
//!   as they are) by a reader thread; `clients` concurrent HTTP clients each POST the next body and wait for
//!   its acknowledgement. Every acknowledgement is durable (the server replies after its WAL fsync).
//! - Single-event writes: `clients` concurrent clients POST one event each to `/events/bench_single` for a
//!   fixed number of seconds.
//! - Freshness: while batch ingest runs, a probe writes `{"probe": i}` to the `freshness` collection and, as
//!   soon as the write is acknowledged, asks for the count of `probe = i`. Freshness is 0 when that first
//!   query after the acknowledgement already counts the event; otherwise the probe polls until it does.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::query_set::COLLECTION;
use crate::server::KeyholeServer;

const EVENTS_PER_BATCH: usize = 1_000;

#[derive(Clone, Debug, Default)]
pub struct PhaseStats {
    pub clients: usize,
    pub events: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl PhaseStats {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn from_latencies(
        clients: usize,
        events: u64,
        elapsed: Duration,
        mut latencies: Vec<Duration>,
    ) -> PhaseStats {
        latencies.sort();
        PhaseStats {
            clients,
            events,
            seconds: elapsed.as_secs_f64(),
            p50_ms: percentile_ms(&latencies, 0.50),
            p99_ms: percentile_ms(&latencies, 0.99),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct FreshnessStats {
    pub probes: usize,
    /// Probes whose first query after the acknowledgement already counted the event.
    pub visible_at_first_query: usize,
    /// The longest time from an acknowledgement to the answer of the query that counted the event.
    pub worst_ack_to_counted_ms: f64,
    pub median_ack_to_counted_ms: f64,
}

pub fn percentile_ms(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Posts `body` and expects a success. A `503` with `Retry-After` (the server at a memory share, nothing
/// of the request stored) is retried after the time it asks, as a well-behaved client does, up to
/// [`MAX_RETRIES_AFTER_503`] times.
pub(crate) async fn post_ok(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: Bytes,
) -> anyhow::Result<Value> {
    let mut retries = 0;
    loop {
        let response = http
            .post(url)
            .header("Authorization", key)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        match retry_after {
            Some(seconds) if status.as_u16() == 503 && retries < MAX_RETRIES_AFTER_503 => {
                retries += 1;
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            _ => bail!("{url} answered {status}: {answer}"),
        }
    }
}

/// How often one request is retried after a `503` with `Retry-After`.
const MAX_RETRIES_AFTER_503: u32 = 30;

/// Batch bodies of the NDJSON file, produced by a reader thread as clients take them.
pub(crate) fn spawn_batch_reader(
    ndjson: &Path,
) -> anyhow::Result<tokio::sync::mpsc::Receiver<Bytes>> {
    let file = std::fs::File::open(ndjson).with_context(|| format!("open {}", ndjson.display()))?;
    let (sender, receiver) = tokio::sync::mpsc::channel(32);
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
        loop {
            let mut body = Vec::with_capacity(EVENTS_PER_BATCH * 220);
            body.extend_from_slice(format!("{{\"{COLLECTION}\":[").as_bytes());
            let mut count = 0;
            for line in lines.by_ref().take(EVENTS_PER_BATCH) {
                let Ok(line) = line else { break };
                if count > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(line.as_bytes());
                count += 1;
            }
            if count == 0 {
                return;
            }
            body.extend_from_slice(b"]}");
            if sender.blocking_send(Bytes::from(body)).is_err() {
                return;
            }
        }
    });
    Ok(receiver)
}

/// POSTs the whole NDJSON file in 1,000-event batches with `clients` clients, while probing freshness.
pub async fn batch_ingest(
    server: &KeyholeServer,
    ndjson: &Path,
    clients: usize,
    freshness_probes: usize,
) -> anyhow::Result<(PhaseStats, FreshnessStats)> {
    let bodies = Arc::new(Mutex::new(spawn_batch_reader(ndjson)?));
    let url = server.project_url("events");
    let started = Instant::now();
    let probe = tokio::spawn(probe_freshness(
        server.project_url(""),
        server.write_key.clone(),
        server.read_key.clone(),
        freshness_probes,
    ));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, url, key) = (bodies.clone(), url.clone(), server.write_key.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut events = 0u64;
            loop {
                let Some(body) = bodies.lock().await.recv().await else {
                    return anyhow::Ok((latencies, events));
                };
                let sent = Instant::now();
                let answer = post_ok(&http, &url, &key, body).await?;
                latencies.push(sent.elapsed());
                let results = answer[COLLECTION].as_array().cloned().unwrap_or_default();
                if let Some(refused) = results.iter().find(|result| result["success"] != true) {
                    bail!("an event was refused: {refused}");
                }
                events += results.len() as u64;
            }
        }));
    }
    let (mut latencies, mut events) = (Vec::new(), 0);
    for task in tasks {
        let (task_latencies, task_events) = task.await??;
        latencies.extend(task_latencies);
        events += task_events;
    }
    let elapsed = started.elapsed();
    let freshness = probe.await??;
    Ok((
        PhaseStats::from_latencies(clients, events, elapsed, latencies),
        freshness,
    ))
}

async fn probe_freshness(
    project_url: String,
    write_key: String,
    read_key: String,
    probes: usize,
) -> anyhow::Result<FreshnessStats> {
    let http = reqwest::Client::new();
    let (write_url, query_url) = (
        format!("{project_url}events/freshness"),
        format!("{project_url}queries/count"),
    );
    let mut stats = FreshnessStats {
        probes,
        ..FreshnessStats::default()
    };
    let mut lags = Vec::new();
    for probe in 0..probes {
        let event = Bytes::from(json!({"probe": probe}).to_string());
        post_ok(&http, &write_url, &write_key, event).await?;
        let acknowledged = Instant::now();
        let query = json!({"event_collection": "freshness", "filters": [
            {"property_name": "probe", "operator": "eq", "property_value": probe}]});
        let mut first_query = true;
        loop {
            let answer = post_ok(&http, &query_url, &read_key, query.to_string().into()).await?;
            if answer["result"] == 1 {
                stats.visible_at_first_query += usize::from(first_query);
                lags.push(acknowledged.elapsed());
                break;
            }
            first_query = false;
            if acknowledged.elapsed() > Duration::from_secs(60) {
                bail!("probe {probe} was not counted within 60 s of its acknowledgement");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lags.sort();
    stats.worst_ack_to_counted_ms = lags.last().map_or(f64::NAN, |lag| lag.as_secs_f64() * 1e3);
    stats.median_ack_to_counted_ms = percentile_ms(&lags, 0.5);
    Ok(stats)
}

/// `clients` clients POST single events (the first lines of the NDJSON file) for `seconds`, presenting
/// `credential` (a key secret or an embed token).
pub async fn single_event_writes(
    server: &KeyholeServer,
    credential: &str,
    ndjson: &Path,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<PhaseStats> {
    let file = std::fs::File::open(ndjson)?;
    let events: Vec<Bytes> = std::io::BufReader::new(file)
        .lines()
        .take(100_000)
        .map(|line| line.map(Bytes::from))
        .collect::<Result<_, _>>()?;
    let events = Arc::new(events);
    let url = server.project_url("events/bench_single");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (events, url, key) = (events.clone(), url.clone(), credential.to_string());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut next = client;
            while Instant::now() < deadline {
                let body = events[next % events.len()].clone();
                next += clients;
                let sent = Instant::now();
                post_ok(&http, &url, &key, body).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let events = latencies.len() as u64;
    Ok(PhaseStats::from_latencies(
        clients, events, elapsed, latencies,
    ))
}
