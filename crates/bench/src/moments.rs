//! Queries at the three moments a dashboard meets the data: while it is being written, right after the
//! last acknowledgement (rows still in memory, flushes and compactions pending) and settled
//! (`--settle-seconds` later: after the flush interval and compaction). The settled and right-after timings come from the main run
//! (`run::run_size`); this module times the query set during ingest, on a fresh server that ingests the
//! same events while one dashboard client sends the query set in a loop.
//!
//! Answers given during ingest cannot be checked against DuckDB's (the data is still arriving); they must
//! be successful answers. The ingest rate of that phase is reported next to the undisturbed one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::RunOptions;
use crate::ingest::{PhaseStats, batch_ingest, percentile_ms};
use crate::query_set::{BENCH_TENANT, BenchQuery};
use crate::run::{Timing, define_datasets, key_for, keyhole_request};
use crate::server::KeyholeServer;

pub struct DuringIngest {
    /// The ingest with the dashboard client running.
    pub batch: PhaseStats,
    /// Per query (in query-set order): the median over every run during ingest, if any run finished.
    pub timings: Vec<Option<Timing>>,
    /// Complete passes over the query set.
    pub rounds: usize,
}

/// Ingests `ndjson` into a fresh server while timing `queries` in a loop (one query at a time).
pub async fn queries_during_ingest(
    options: &RunOptions,
    binary: &Path,
    work_dir: &Path,
    ndjson: &Path,
    queries: &[BenchQuery],
) -> anyhow::Result<DuringIngest> {
    let data_dir = work_dir.join("data-during-ingest");
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = KeyholeServer::start(binary, &data_dir)?;
    let http = reqwest::Client::new();
    let tenant_key = server.create_tenant_key(&http, BENCH_TENANT).await?;
    let dataset_key = define_datasets(&http, &server).await?;
    let ingest_finished = AtomicBool::new(false);
    let ingest = async {
        let outcome = batch_ingest(&server, ndjson, options.batch_clients, 0).await;
        ingest_finished.store(true, Ordering::Release);
        outcome
    };
    let dashboard = async {
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); queries.len()];
        let mut rounds = 0;
        'rounds: while !ingest_finished.load(Ordering::Acquire) {
            for (index, query) in queries.iter().enumerate() {
                if ingest_finished.load(Ordering::Acquire) {
                    break 'rounds;
                }
                let key = key_for(query.key, &server, &tenant_key, &dataset_key);
                let started = Instant::now();
                keyhole_request(&http, &server, key, query).await?;
                latencies[index].push(started.elapsed());
            }
            rounds += 1;
        }
        anyhow::Ok((latencies, rounds))
    };
    let (ingested, dashboard) = tokio::join!(ingest, dashboard);
    let ((batch, _), (latencies, rounds)) = (ingested?, dashboard?);
    eprintln!(
        "keyhole ingested {} events at {:.0} events/s while {rounds} rounds of queries ran",
        batch.events,
        batch.events_per_second()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    let timings = latencies
        .into_iter()
        .map(|mut runs| {
            runs.sort();
            (!runs.is_empty()).then(|| Timing {
                median_ms: percentile_ms(&runs, 0.5),
                p95_ms: percentile_ms(&runs, 0.95),
            })
        })
        .collect();
    Ok(DuringIngest {
        batch,
        timings,
        rounds,
    })
}
