//! `keyhole-bench cluster --log-commit-rate`: how many records the shared log in PostgreSQL commits per
//! second — what bounds a cluster's ingest once nodes no longer do each other's work. Appenders (as many
//! as `--clients`, as nodes' writer threads would) append records of a group commit's typical sizes to
//! the `storage_log` of a fresh database, through the same `ClusterLog::append` the nodes use (one
//! transaction each, serialized by the log's lock), for a few seconds per size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::{ClusterOptions, fresh_database};

/// Record sizes measured: a small group, a 1,000-event batch as rows, a large group.
const PAYLOAD_BYTES: [usize; 3] = [4 * 1024, 128 * 1024, 1024 * 1024];
const SECONDS_PER_SIZE: u64 = 5;

pub async fn run(options: &ClusterOptions) -> anyhow::Result<String> {
    let url = fresh_database(&options.postgres_url).await?;
    let store = keyhole_meta::MetaStore::open(&url).await?;
    let log = store.cluster_log();
    let mut report = String::from(
        "| record size | appenders | records/s | MB/s | median append ms |\n|---|---|---|---|---|\n",
    );
    for bytes in PAYLOAD_BYTES {
        let payload = Arc::new(vec![7u8; bytes]);
        let appended = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(SECONDS_PER_SIZE);
        let mut appenders = Vec::new();
        for _ in 0..options.clients.max(1) {
            let (log, payload, appended) = (log.clone(), payload.clone(), appended.clone());
            appenders.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let now = chrono::Utc::now().timestamp_millis();
                    log.append("bench", &payload, None, now).await?;
                    latencies.push(started.elapsed());
                    appended.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for appender in appenders {
            latencies.extend(appender.await??);
        }
        latencies.sort();
        let records = appended.load(Ordering::Relaxed) as f64 / SECONDS_PER_SIZE as f64;
        report.push_str(&format!(
            "| {} KiB | {} | {records:.0} | {:.1} | {:.2} |\n",
            bytes / 1024,
            options.clients.max(1),
            records * bytes as f64 / 1e6,
            crate::ingest::percentile_ms(&latencies, 0.5),
        ));
        // The next size starts from an empty log, as a truncated one would be.
        log.truncate_through(u64::MAX / 2).await?;
    }
    Ok(report)
}
