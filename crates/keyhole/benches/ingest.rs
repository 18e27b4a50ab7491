//! Ingest throughput over real HTTP against the release `keyhole` binary, every write acknowledged
//! durably (WAL fsync) as in production.
//!
//! `cargo bench -p keyhole --bench ingest` runs two phases on a fresh data directory:
//! - batch: `KEYHOLE_BENCH_BATCH_CLIENTS` (default 4) clients POST 1,000-event batches to `/events`;
//! - single: `KEYHOLE_BENCH_SINGLE_CLIENTS` (default 64) clients POST one event each to `/events/{c}`;
//!
//! each for `KEYHOLE_BENCH_SECONDS` (default 10). Events are ~200 bytes of JSON. The clients run in this
//! process, on the same machine, so they share its cores with the server. Prints a Markdown table.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const EVENTS_PER_BATCH: usize = 1_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct PhaseResult {
    events: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn run_phase(
    url: String,
    key: String,
    bodies: Arc<Vec<bytes::Bytes>>,
    clients: usize,
    events_per_body: usize,
    seconds: u64,
) -> PhaseResult {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let (url, key, bodies) = (url.clone(), key.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut next = client_index;
            while Instant::now() < deadline {
                let body = bodies[next % bodies.len()].clone();
                next += clients;
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("Authorization", &key)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                let _ = response.bytes().await.expect("response body");
                assert!(status.is_success(), "write refused: {status}");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    PhaseResult {
        events: latencies.len() * events_per_body,
        elapsed,
        latencies,
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    let seconds = env_number("KEYHOLE_BENCH_SECONDS", 10) as u64;
    let batch_clients = env_number("KEYHOLE_BENCH_BATCH_CLIENTS", 4);
    let single_clients = env_number("KEYHOLE_BENCH_SINGLE_CLIENTS", 64);
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = common::start_server(data_dir.path());

    let batch_bodies: Vec<bytes::Bytes> = (0..64)
        .map(|batch| {
            let events: Vec<Value> = (0..EVENTS_PER_BATCH)
                .map(|i| common::event_at_receipt(batch * EVENTS_PER_BATCH + i))
                .collect();
            bytes::Bytes::from(serde_json::to_vec(&json!({ "bench": events })).unwrap())
        })
        .collect();
    let average_event_bytes = batch_bodies[0].len() / EVENTS_PER_BATCH;
    let single_bodies: Vec<bytes::Bytes> = (0..4096)
        .map(|i| bytes::Bytes::from(serde_json::to_vec(&common::event_at_receipt(i)).unwrap()))
        .collect();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let batch = runtime.block_on(run_phase(
        format!("{}/3.0/projects/{}/events", server.base_url, server.project),
        server.write_key.clone(),
        Arc::new(batch_bodies),
        batch_clients,
        EVENTS_PER_BATCH,
        seconds,
    ));
    let single = runtime.block_on(run_phase(
        format!(
            "{}/3.0/projects/{}/events/bench_single",
            server.base_url, server.project
        ),
        server.write_key.clone(),
        Arc::new(single_bodies),
        single_clients,
        1,
        seconds,
    ));
    let rss = common::peak_rss_mib(server.child.id());
    let _ = server.child.kill();

    println!("| phase | clients | events/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (name, clients, result) in [
        ("batch of 1,000", batch_clients, &batch),
        ("single event", single_clients, &single),
    ] {
        println!(
            "| {name} | {clients} | {:.0} | {:.2} | {:.2} |",
            result.events as f64 / result.elapsed.as_secs_f64(),
            percentile(&result.latencies, 0.50),
            percentile(&result.latencies, 0.99),
        );
    }
    println!();
    println!(
        "average event size: {average_event_bytes} bytes of JSON; server peak RSS: {rss:.0} MiB; {seconds} s per phase"
    );
}
