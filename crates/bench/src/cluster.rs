//! `keyhole-bench cluster`: the figures of `docs/scale-out.md`. For each node count, a fresh cluster —
//! a new PostgreSQL database and a new prefix of an S3-compatible bucket, `n` keyhole processes on this
//! machine — takes the benchmark events in 1,000-event batches from clients spread over its nodes; then,
//! on the last cluster, an event written to the first node is timed until the last node counts it
//! (cross-node freshness) and a key revoked through the first node is timed until the last refuses it.
//! Every node must count every event at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::ingest::{percentile_ms, post_ok, spawn_batch_reader};
use crate::query_set::COLLECTION;
use crate::server::{KeyholeServer, keyhole_binary};

#[derive(clap::Args, Clone)]
pub struct ClusterOptions {
    /// NDJSON events (`generate`).
    #[arg(long)]
    pub events: PathBuf,
    /// Node counts to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub nodes: Vec<usize>,
    /// Ingest clients in all, spread over the nodes.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// A PostgreSQL server on which this role may create databases.
    #[arg(long, env = "KEYHOLE_TEST_POSTGRES_URL")]
    pub postgres_url: String,
    /// The bucket (the `AWS_*` variables name the S3-compatible server).
    #[arg(long, env = "KEYHOLE_TEST_S3_BUCKET")]
    pub bucket: String,
    /// Cross-node freshness and revocation probes.
    #[arg(long, default_value_t = 50)]
    pub probes: usize,
    #[arg(long)]
    pub keyhole: Option<PathBuf>,
    /// Seconds to wait after the ingest before the freshness probes (0: at once, while the flushes and
    /// compactions of the ingest run).
    #[arg(long, default_value_t = 0)]
    pub settle_seconds: u64,
    /// Instead: two nodes, every event written to the first; the CPU time each spends on them (the
    /// second only follows the log), per million events.
    #[arg(long)]
    pub cpu_ratio: bool,
    /// Instead: the shared log's commit rate in PostgreSQL (records appended per second, by record size,
    /// from `--clients` appenders).
    #[arg(long)]
    pub log_commit_rate: bool,
}

struct Cluster {
    nodes: Vec<KeyholeServer>,
    _data_dirs: Vec<tempfile::TempDir>,
}

pub(crate) async fn fresh_database(server_url: &str) -> anyhow::Result<String> {
    let (base, _) = server_url
        .rsplit_once('/')
        .context("the PostgreSQL URL names a database")?;
    let name = format!("keyhole_bench_{}", keyhole_model::keys::generate_id());
    let status = tokio::process::Command::new("psql")
        .arg(server_url)
        .args(["-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .await
        .context("psql (the PostgreSQL client) is needed to make a fresh database")?;
    if !status.success() {
        bail!("psql could not create a database");
    }
    Ok(format!("{base}/{name}"))
}

async fn start_cluster(options: &ClusterOptions, size: usize) -> anyhow::Result<Cluster> {
    let binary = keyhole_binary(options.keyhole.as_ref())?;
    let envs = vec![
        (
            "KEYHOLE_METADATA_URL".to_string(),
            fresh_database(&options.postgres_url).await?,
        ),
        (
            "KEYHOLE_OBJECTS".to_string(),
            format!(
                "s3://{}/bench/{}",
                options.bucket,
                keyhole_model::keys::generate_id()
            ),
        ),
        (
            "KEYHOLE_ORG_KEY".to_string(),
            "benchmark-cluster-organization-key-0123456789".to_string(),
        ),
    ];
    let mut nodes: Vec<KeyholeServer> = Vec::new();
    let mut data_dirs = Vec::new();
    for _ in 0..size {
        let data_dir = tempfile::tempdir()?;
        let node = KeyholeServer::start_node(&binary, data_dir.path(), &[], &envs, nodes.first())?;
        nodes.push(node);
        data_dirs.push(data_dir);
    }
    Ok(Cluster {
        nodes,
        _data_dirs: data_dirs,
    })
}

async fn count(
    http: &reqwest::Client,
    node: &KeyholeServer,
    filters: Value,
) -> anyhow::Result<u64> {
    let query = json!({"event_collection": COLLECTION, "filters": filters});
    let answer = post_ok(
        http,
        &node.project_url("queries/count"),
        &node.read_key,
        Bytes::from(query.to_string()),
    )
    .await?;
    answer["result"].as_u64().context("a count")
}

/// Batch ingest with clients spread over `targets`; events per second.
async fn ingest(
    options: &ClusterOptions,
    targets: &[&KeyholeServer],
) -> anyhow::Result<(u64, f64)> {
    let bodies = Arc::new(Mutex::new(spawn_batch_reader(&options.events)?));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..options.clients {
        let node = targets[client % targets.len()];
        let (bodies, url, key) = (
            bodies.clone(),
            node.project_url("events"),
            node.write_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut events = 0u64;
            loop {
                let Some(body) = bodies.lock().await.recv().await else {
                    return anyhow::Ok(events);
                };
                let answer = post_ok(&http, &url, &key, body).await?;
                events += answer[COLLECTION].as_array().map_or(0, Vec::len) as u64;
            }
        }));
    }
    let mut events = 0;
    for task in tasks {
        events += task.await??;
    }
    Ok((events, events as f64 / started.elapsed().as_secs_f64()))
}

async fn freshness(options: &ClusterOptions, cluster: &Cluster) -> anyhow::Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let (writer, reader) = (&cluster.nodes[0], cluster.nodes.last().expect("a node"));
    let mut delays = Vec::new();
    for probe in 0..options.probes {
        let filters =
            json!([{"property_name": "cluster_probe", "operator": "eq", "property_value": probe}]);
        post_ok(
            &http,
            &writer.project_url(&format!("events/{COLLECTION}")),
            &writer.write_key,
            Bytes::from(json!({"cluster_probe": probe}).to_string()),
        )
        .await?;
        let acknowledged = Instant::now();
        let mut slowest_query = Duration::ZERO;
        let mut polls = 0;
        loop {
            let asked = Instant::now();
            let counted = count(&http, reader, filters.clone()).await?;
            slowest_query = slowest_query.max(asked.elapsed());
            polls += 1;
            if counted > 0 {
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(10) {
                bail!("probe {probe} was not counted by the last node within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if acknowledged.elapsed() > Duration::from_millis(500) {
            eprintln!(
                "probe {probe}: {:?} after {polls} queries, the slowest {slowest_query:?}",
                acknowledged.elapsed()
            );
        }
        delays.push(acknowledged.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "freshness probes in order (ms): {:?}",
        delays
            .iter()
            .map(std::time::Duration::as_millis)
            .collect::<Vec<_>>()
    );
    delays.sort();
    Ok(delays)
}

async fn revocation(options: &ClusterOptions, cluster: &Cluster) -> anyhow::Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let (first, last) = (&cluster.nodes[0], cluster.nodes.last().expect("a node"));
    let mut delays = Vec::new();
    for _ in 0..options.probes.min(20) {
        let key = first
            .create_access_key(&http, &json!({"name": "probe", "permitted": ["queries"]}))
            .await?;
        let url = last.project_url(&format!("queries/count?event_collection={COLLECTION}"));
        let status = http
            .get(&url)
            .header("Authorization", &key)
            .send()
            .await?
            .status();
        if status != 200 {
            bail!("a new key was refused by the last node: {status}");
        }
        let revoke = first.project_url(&format!("keys/{key}/revoke"));
        post_ok(&http, &revoke, &first.master_key, Bytes::new()).await?;
        let revoked = Instant::now();
        while http
            .get(&url)
            .header("Authorization", &key)
            .send()
            .await?
            .status()
            == 200
        {
            if revoked.elapsed() > Duration::from_secs(10) {
                bail!("the last node accepted a revoked key for 10 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(revoked.elapsed());
    }
    delays.sort();
    Ok(delays)
}

/// Waits (30 s at most) until every node counts `events`.
async fn every_node_counts(cluster: &Cluster, events: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &cluster.nodes {
        while count(&http, node, json!([])).await? != events {
            if Instant::now() > deadline {
                bail!("{} does not count all {events} events", node.base_url);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Two nodes, every event written to the first: the CPU seconds each spends from before the ingest until
/// both count every event and the first's flushes of it are done (it writes the Parquet files).
async fn cpu_ratio(options: &ClusterOptions) -> anyhow::Result<String> {
    let cluster = start_cluster(options, 2).await?;
    let before: Vec<f64> = cluster
        .nodes
        .iter()
        .map(KeyholeServer::cpu_seconds)
        .collect();
    let (events, rate) = ingest(options, &[&cluster.nodes[0]]).await?;
    every_node_counts(&cluster, events).await?;
    // The flush of the last rows (the flush interval) and the follower's taking of its files.
    tokio::time::sleep(Duration::from_secs(options.settle_seconds.max(5))).await;
    let used: Vec<f64> = cluster
        .nodes
        .iter()
        .zip(&before)
        .map(|(node, before)| node.cpu_seconds() - before)
        .collect();
    let per_million = |seconds: f64| seconds * 1_000_000.0 / events.max(1) as f64;
    Ok(format!(
        "| events | ingest events/s | ingesting node CPU s per 1M | following node CPU s per 1M | ratio |\n|---|---|---|---|---|\n| {events} | {rate:.0} | {:.1} | {:.1} | {:.2} |\n",
        per_million(used[0]),
        per_million(used[1]),
        used[1] / used[0].max(f64::EPSILON),
    ))
}

pub async fn run(options: &ClusterOptions) -> anyhow::Result<String> {
    if options.cpu_ratio {
        return cpu_ratio(options).await;
    }
    if options.log_commit_rate {
        return crate::log_rate::run(options).await;
    }
    let mut report = String::from(
        "| nodes | events | events/s | every node counts every event |\n|---|---|---|---|\n",
    );
    let mut last_cluster = None;
    for &size in &options.nodes {
        let cluster = start_cluster(options, size).await?;
        let targets: Vec<&KeyholeServer> = cluster.nodes.iter().collect();
        let (events, rate) = ingest(options, &targets).await?;
        every_node_counts(&cluster, events).await?;
        report.push_str(&format!("| {size} | {events} | {rate:.0} | yes |\n"));
        last_cluster = Some(cluster);
    }
    let cluster = last_cluster.context("no node count given")?;
    tokio::time::sleep(Duration::from_secs(options.settle_seconds)).await;
    let fresh = freshness(options, &cluster).await?;
    let revoked = revocation(options, &cluster).await?;
    report.push_str(&format!(
        "\nWith {} nodes: an event acknowledged by the first node is counted by the last after median {:.1} ms, \
         90th percentile {:.1} ms, worst {:.1} ms ({} probes, one every 10 ms, right after the ingest); a key \
         revoked through the first node is refused by the last after median {:.1} ms, worst {:.1} ms ({} keys).\n",
        cluster.nodes.len(),
        percentile_ms(&fresh, 0.5),
        percentile_ms(&fresh, 0.9),
        percentile_ms(&fresh, 1.0),
        fresh.len(),
        percentile_ms(&revoked, 0.5),
        percentile_ms(&revoked, 1.0),
        revoked.len(),
    ));
    Ok(report)
}
