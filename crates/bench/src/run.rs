//! One benchmark run: for each size, generate the events, ingest them into a fresh Keyhole (measuring
//! freshness meanwhile), load them into DuckDB and chDB, run the query set on all three, and check every
//! answer against DuckDB's; then single-event writes against another fresh Keyhole.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::RunOptions;
use crate::answers::{keen_rows, same_rows};
use crate::engines::{Engine, EngineRun, run_engine};
use crate::generator::EventGenerator;
use crate::ingest::{FreshnessStats, PhaseStats, batch_ingest, percentile_ms, single_event_writes};
use crate::moments::queries_during_ingest;
use crate::query_set::{
    BENCH_TENANT, BenchQuery, KeyKind, dataset_definitions, keen_body, query_set,
};
use crate::report::RunContext;
use crate::server::{KeyholeServer, keyhole_binary};

pub struct Timing {
    pub median_ms: f64,
    pub p95_ms: f64,
}

pub struct QueryOutcome {
    pub name: &'static str,
    pub key: KeyKind,
    /// Settled: at least `--settle-seconds` after the last acknowledgement.
    pub keyhole: Timing,
    /// Right after the last acknowledgement, before the engines load.
    pub right_after: Timing,
    /// While the same events were being ingested into another server (`moments`).
    pub during_ingest: Option<Timing>,
    pub engines: Vec<(Engine, Timing)>,
    pub keyhole_matches_duckdb: bool,
    pub chdb_matches_duckdb: bool,
}

pub struct EngineLoad {
    pub engine: Engine,
    pub version: String,
    pub load_seconds: f64,
    pub peak_rss_mib: f64,
}

pub struct SizeResults {
    pub events: u64,
    pub tenant_events: u64,
    pub batch: PhaseStats,
    pub freshness: FreshnessStats,
    pub idle_rss_mib: f64,
    pub peak_rss_after_ingest_mib: f64,
    pub peak_rss_mib: f64,
    pub rss_at_rest_mib: f64,
    pub loads: Vec<EngineLoad>,
    pub queries: Vec<QueryOutcome>,
    /// The ingest that ran while a dashboard client sent the query set, and its complete rounds.
    pub batch_while_queried: PhaseStats,
    pub rounds_during_ingest: usize,
}

impl SizeResults {
    pub fn load_of(&self, engine: Engine) -> Option<&EngineLoad> {
        self.loads.iter().find(|load| load.engine == engine)
    }
}

pub struct BenchResults {
    pub context: RunContext,
    pub sizes: Vec<SizeResults>,
    pub single: PhaseStats,
    pub single_peak_rss_mib: f64,
    /// Single-event writes by credential, each on a fresh server: write key, embed token, rate-limited
    /// access key.
    pub credentials: Vec<(&'static str, PhaseStats)>,
    /// Batch ingest of the first size's events as auto-collector pageviews with their five add-ons.
    pub with_addons: PhaseStats,
}

impl BenchResults {
    pub fn all_answers_match(&self) -> bool {
        self.sizes.iter().all(|size| {
            size.queries
                .iter()
                .all(|query| query.keyhole_matches_duckdb && query.chdb_matches_duckdb)
        })
    }
}

pub async fn run_all(options: &RunOptions) -> anyhow::Result<BenchResults> {
    let binary = keyhole_binary(options.keyhole.as_ref())?;
    let temporary = tempfile::tempdir()?;
    let work_dir = options
        .work_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&work_dir)?;
    let mut sizes = Vec::new();
    for &events in &options.sizes {
        eprintln!("== {events} events");
        sizes.push(run_size(options, &binary, &work_dir, events).await?);
    }
    eprintln!("== single-event writes");
    let first_ndjson = ndjson_path(&work_dir, options.sizes[0]);
    let data_dir = work_dir.join("data-single");
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = KeyholeServer::start(&binary, &data_dir)?;
    let single = single_event_writes(
        &server,
        &server.write_key,
        &first_ndjson,
        options.single_clients,
        options.single_seconds,
    )
    .await?;
    let single_peak_rss_mib = server.peak_rss_mib();
    drop(server);
    let credentials = credential_writes(&binary, &work_dir, &first_ndjson, options).await?;
    let with_addons = ingest_with_addons(options, &binary, &work_dir, &first_ndjson).await?;
    Ok(BenchResults {
        with_addons,
        context: RunContext::collect(options),
        sizes,
        single,
        single_peak_rss_mib,
        credentials,
    })
}

/// Batch ingest of `plain`'s events extended as keen-tracking's auto-collector pageviews, with their five
/// add-ons, on a fresh server given a GeoIP database (see `addons`).
async fn ingest_with_addons(
    options: &RunOptions,
    binary: &Path,
    work_dir: &Path,
    plain: &Path,
) -> anyhow::Result<PhaseStats> {
    eprintln!("== batch ingest with the auto-collector's add-ons");
    let ndjson = work_dir.join("events-addons.ndjson");
    crate::addons::write_auto_collector_ndjson(plain, &ndjson)?;
    let geo_db = work_dir.join("geo.mmdb");
    crate::addons::write_geoip_db(&options.python, &geo_db)?;
    let data_dir = work_dir.join("data-addons");
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = KeyholeServer::start_with(
        binary,
        &data_dir,
        &["--geoip-db".as_ref(), geo_db.as_os_str()],
    )?;
    let (stats, _) = batch_ingest(&server, &ndjson, options.batch_clients, 0).await?;
    eprintln!(
        "keyhole ingested {} events with add-ons at {:.0} events/s",
        stats.events,
        stats.events_per_second()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_file(&ndjson);
    Ok(stats)
}

/// Single-event writes with each kind of credential a dashboard or backend presents, to show what an
/// embed token's signature check and a key's rate limiter cost per request. Each runs on a fresh server:
/// on one server, throughput drifts as its buffers fill, which would favour whichever runs first.
async fn credential_writes(
    binary: &Path,
    work_dir: &Path,
    ndjson: &Path,
    options: &RunOptions,
) -> anyhow::Result<Vec<(&'static str, PhaseStats)>> {
    let mut runs = Vec::new();
    for name in ["write key", "embed token", "rate-limited access key"] {
        let data_dir = work_dir.join("data-credentials");
        let _ = std::fs::remove_dir_all(&data_dir);
        let server = KeyholeServer::start(binary, &data_dir)?;
        let credential = match name {
            "write key" => server.write_key.clone(),
            "embed token" => {
                let parent = writer_key(&server, serde_json::json!({})).await?;
                let exp = chrono::Utc::now().timestamp() + 3600;
                keyhole_model::embed_token::mint(
                    &parent,
                    &serde_json::json!({"exp": exp, "jti": "bench"}),
                )
            }
            _ => {
                let limits = serde_json::json!({"writes_per_second": 1e8, "writes_burst": 1_000_000_000u64,
                                                "events_per_day": 1_000_000_000_000u64});
                writer_key(&server, limits).await?
            }
        };
        eprintln!("== single-event writes with a {name}");
        let stats = single_event_writes(
            &server,
            &credential,
            ndjson,
            options.single_clients,
            options.single_seconds,
        )
        .await?;
        runs.push((name, stats));
    }
    Ok(runs)
}

/// An access key that writes with a tenant's autofill and the given `options.limits`.
async fn writer_key(server: &KeyholeServer, limits: serde_json::Value) -> anyhow::Result<String> {
    let definition = serde_json::json!({"name": "bench writer", "permitted": ["writes"],
        "options": {"writes": {"autofill": {"tenant_id": "t7"}}, "limits": limits}});
    server
        .create_access_key(&reqwest::Client::new(), &definition)
        .await
}

fn ndjson_path(work_dir: &Path, events: u64) -> std::path::PathBuf {
    work_dir.join(format!("events-{events}.ndjson"))
}

async fn run_size(
    options: &RunOptions,
    binary: &Path,
    work_dir: &Path,
    events: u64,
) -> anyhow::Result<SizeResults> {
    let ndjson = ndjson_path(work_dir, events);
    let generator = EventGenerator::new();
    if !ndjson.exists() {
        let started = Instant::now();
        generator.write_ndjson(events, std::fs::File::create(&ndjson)?)?;
        eprintln!(
            "generated {events} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let tenant_rank: usize = BENCH_TENANT[1..].parse()?;
    let tenant_events = (0..events)
        .filter(|sequence| generator.tenant_rank(*sequence) == tenant_rank)
        .count() as u64;

    let data_dir = work_dir.join(format!("data-{events}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = KeyholeServer::start(binary, &data_dir)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_mib = server.rss_mib();
    // The SaaS mints its customer's key before the customer's events arrive, as in production.
    let http = reqwest::Client::new();
    let tenant_key = server.create_tenant_key(&http, BENCH_TENANT).await?;
    let (batch, freshness) = batch_ingest(
        &server,
        &ndjson,
        options.batch_clients,
        options.freshness_probes,
    )
    .await?;
    eprintln!(
        "keyhole ingested {} events at {:.0} events/s",
        batch.events,
        batch.events_per_second()
    );
    let ingest_finished = Instant::now();
    let peak_rss_after_ingest_mib = server.peak_rss_mib();
    let dataset_key = define_datasets(&http, &server).await?;
    let key_of = |query: &BenchQuery| key_for(query.key, &server, &tenant_key, &dataset_key);

    let queries = query_set();
    let mut right_after = Vec::new();
    for query in &queries {
        let timed = time_keyhole(&http, &server, key_of(query), query, options.repeat).await?;
        right_after.push(timed);
    }
    let mut engine_runs = Vec::new();
    for engine in [Engine::DuckDb, Engine::ChDb] {
        let db_dir = work_dir.join(format!("{}-{events}", engine.id()));
        let _ = std::fs::remove_dir_all(&db_dir);
        let run = run_engine(
            &options.python,
            engine,
            &ndjson,
            &db_dir,
            &queries,
            options.repeat,
        )?;
        eprintln!(
            "{} loaded {} events in {:.1} s",
            engine.display_name(),
            run.events,
            run.load_seconds
        );
        let _ = std::fs::remove_dir_all(&db_dir);
        engine_runs.push(run);
    }

    let settled_at = ingest_finished + Duration::from_secs(options.settle_seconds);
    tokio::time::sleep(settled_at.saturating_duration_since(Instant::now())).await;
    let mut outcomes = Vec::new();
    for (query, right_after) in queries.iter().zip(right_after) {
        let settled = time_keyhole(&http, &server, key_of(query), query, options.repeat).await?;
        outcomes.push(compare(query, settled, right_after, &engine_runs)?);
    }
    let peak_rss_mib = server.peak_rss_mib();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_at_rest_mib = server.rss_mib();
    if options.work_dir.is_some() {
        // Kept for inspection or profiling: `keyhole serve --data-dir` on it, with these keys. They are the
        // throwaway benchmark server's read-only keys (the master key is not written anywhere).
        let keys = serde_json::json!({"base_url": server.base_url, "project": server.project,
            "read_key": server.read_key, "tenant_key": tenant_key});
        std::fs::write(data_dir.join("bench-keys.json"), keys.to_string())?;
    }
    drop(server);
    if options.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    eprintln!("== {events} events again, queried during ingest");
    let during = queries_during_ingest(options, binary, work_dir, &ndjson, &queries).await?;
    for (outcome, timing) in outcomes.iter_mut().zip(during.timings) {
        outcome.during_ingest = timing;
    }
    Ok(SizeResults {
        batch_while_queried: during.batch,
        rounds_during_ingest: during.rounds,
        events,
        tenant_events,
        batch,
        freshness,
        idle_rss_mib,
        peak_rss_after_ingest_mib,
        peak_rss_mib,
        rss_at_rest_mib,
        loads: engine_runs
            .iter()
            .map(|run| EngineLoad {
                engine: run.engine,
                version: run.version.clone(),
                load_seconds: run.load_seconds,
                peak_rss_mib: run.peak_rss_mib,
            })
            .collect(),
        queries: outcomes,
    })
}

/// The secret a query of `kind` is sent with: the read key, the tenant's key or the dataset key.
pub fn key_for<'a>(
    kind: KeyKind,
    server: &'a KeyholeServer,
    tenant_key: &'a str,
    dataset_key: &'a str,
) -> &'a str {
    match kind {
        KeyKind::Read => &server.read_key,
        KeyKind::Tenant => tenant_key,
        KeyKind::Dataset => dataset_key,
    }
}

/// Defines the benchmark's datasets (master key) and mints a key that may read only `BENCH_TENANT`'s
/// index value of them, as a customer's dashboard would.
pub async fn define_datasets(
    http: &reqwest::Client,
    server: &KeyholeServer,
) -> anyhow::Result<String> {
    let mut allowed = serde_json::Map::new();
    for (name, definition) in dataset_definitions() {
        let response = http
            .put(server.project_url(&format!("datasets/{name}")))
            .header("Authorization", &server.master_key)
            .json(&definition)
            .send()
            .await?;
        if !response.status().is_success() {
            anyhow::bail!("defining dataset {name} failed: {}", response.text().await?);
        }
        allowed.insert(
            name.to_string(),
            serde_json::json!({"index_by": {"tenant_id": [BENCH_TENANT]}}),
        );
    }
    let definition = serde_json::json!({"name": format!("{BENCH_TENANT} datasets"), "permitted": ["datasets"],
        "options": {"datasets": {"operations": ["read"], "allowed": allowed}}});
    server.create_access_key(http, &definition).await
}

/// One request of `query`: its analysis POSTed, or for a dataset read its results fetched.
pub async fn keyhole_request(
    http: &reqwest::Client,
    server: &KeyholeServer,
    key: &str,
    query: &BenchQuery,
) -> anyhow::Result<Value> {
    let Some(dataset) = query.dataset else {
        let url = server.project_url(&format!("queries/{}", query.analysis));
        return keyhole_answer(http.post(url).json(&keen_body(query)), key).await;
    };
    let url = server.project_url(&format!("datasets/{dataset}/results"));
    let timeframe = query.body["timeframe"].to_string();
    let request = http.get(url).query(&[
        ("index_by", BENCH_TENANT),
        ("timeframe", timeframe.as_str()),
    ]);
    keyhole_answer(request, key).await
}

async fn keyhole_answer(request: reqwest::RequestBuilder, key: &str) -> anyhow::Result<Value> {
    let response = request.header("Authorization", key).send().await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    if !status.is_success() {
        anyhow::bail!("answered {status}: {answer}");
    }
    Ok(answer)
}

/// A Keyhole answer to one query and the timing of `repeat` runs after the warm-up that gave it.
pub struct Timed {
    answer: Value,
    timing: Timing,
}

async fn time_keyhole(
    http: &reqwest::Client,
    server: &KeyholeServer,
    key: &str,
    query: &BenchQuery,
    repeat: usize,
) -> anyhow::Result<Timed> {
    let answer = keyhole_request(http, server, key, query)
        .await
        .with_context(|| query.name)?;
    let mut latencies = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        keyhole_request(http, server, key, query).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let timing = Timing {
        median_ms: percentile_ms(&latencies, 0.5),
        p95_ms: percentile_ms(&latencies, 0.95),
    };
    Ok(Timed { answer, timing })
}

/// Checks both Keyhole answers (settled, right after) and chDB's against DuckDB's.
fn compare(
    query: &BenchQuery,
    settled: Timed,
    right_after: Timed,
    engine_runs: &[EngineRun],
) -> anyhow::Result<QueryOutcome> {
    let answer = &settled.answer;
    let keyhole_rows = keen_rows(&query.shape, &answer["result"]);
    let rows_of = |engine: Engine| {
        engine_runs
            .iter()
            .find(|run| run.engine == engine)
            .and_then(|run| run.answers.get(query.name))
    };
    let (duckdb, chdb) = (
        rows_of(Engine::DuckDb).context("duckdb answer")?,
        rows_of(Engine::ChDb).context("chdb answer")?,
    );
    let right_after_rows = keen_rows(&query.shape, &right_after.answer["result"]);
    let keyhole_matches_duckdb =
        same_rows(&keyhole_rows, &duckdb.rows) && same_rows(&right_after_rows, &duckdb.rows);
    let chdb_matches_duckdb = same_rows(&chdb.rows, &duckdb.rows);
    if !keyhole_matches_duckdb {
        eprintln!(
            "MISMATCH {}: keyhole {} (right after ingest: {}) vs duckdb {:?}",
            query.name, answer["result"], right_after.answer["result"], duckdb.rows
        );
    }
    if !chdb_matches_duckdb {
        eprintln!(
            "MISMATCH {}: chdb {:?} vs duckdb {:?}",
            query.name, chdb.rows, duckdb.rows
        );
    }
    Ok(QueryOutcome {
        name: query.name,
        key: query.key,
        keyhole: settled.timing,
        right_after: right_after.timing,
        during_ingest: None,
        engines: engine_runs
            .iter()
            .filter_map(|run| {
                let answer = run.answers.get(query.name)?;
                Some((
                    run.engine,
                    Timing {
                        median_ms: answer.median_ms,
                        p95_ms: answer.p95_ms,
                    },
                ))
            })
            .collect(),
        keyhole_matches_duckdb,
        chdb_matches_duckdb,
    })
}
