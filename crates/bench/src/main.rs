//! `keyhole-bench`: the one benchmark of Keyhole, next to DuckDB and chDB on the same events.
//!
//! - `keyhole-bench generate --events N --output FILE` writes the deterministic NDJSON events.
//! - `keyhole-bench run` starts the `keyhole` binary on fresh data directories and measures, over loopback
//!   HTTP: batch ingest of the NDJSON (1,000-event POSTs), single-event writes (64 clients), freshness (an
//!   acknowledged write counted by the next query), and a fixed set of Keen queries, each also run as SQL
//!   in DuckDB and chDB (`bench/engines.py`) over the same file, every Keyhole answer checked equal to
//!   DuckDB's before its time counts. With `--docs FILE` it rewrites the results section of that Markdown
//!   file; `--smoke` is the small CI mode (≤ 1 minute) that proves the whole path still works.
//!
//! - `keyhole-bench soak --minutes N` runs a bounded mixed load with hostile requests and reports
//!   failures, p99s and RSS over time (`bench/soak`); `keyhole-bench attack` sends each class of hostile
//!   request on its own and reports its answers, failures and peak memory.
//!
//! `bench/run` is the one command that builds the release binaries and runs this.

mod addons;
mod answers;
mod attack;
mod cluster;
mod engines;
mod faults;
mod generator;
mod ingest;
mod log_rate;
mod moments;
mod query_set;
mod report;
mod run;
mod scale;
mod server;
mod soak;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keyhole-bench",
    about = "Benchmarks Keyhole next to DuckDB and chDB"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Write the deterministic benchmark events as NDJSON.
    Generate {
        #[arg(long)]
        events: u64,
        #[arg(long)]
        output: PathBuf,
        /// Write the events as keen-tracking's auto-collector pageviews (five add-ons each), as the
        /// add-on ingest of `run` sends them.
        #[arg(long)]
        auto_collector: bool,
    },
    /// Run the benchmark and print (and optionally write) the results.
    Run(RunOptions),
    /// A bounded mixed load (writers, tenant dashboards, hostile requests) for a fixed time.
    Soak(soak::SoakOptions),
    /// Each class of hostile request on its own: answers, failures, restarts, peak memory.
    Attack(attack::AttackOptions),
    /// Mixed load while the server is killed, terminated and its disk filled: acknowledged events lost.
    Faults(faults::FaultOptions),
    /// Several nodes on PostgreSQL and an S3-compatible bucket: ingest with 1 and 3 nodes, cross-node
    /// freshness, revocation delay (docs/scale-out.md).
    Cluster(cluster::ClusterOptions),
    /// Batch ingest alone into a fresh server (for profiling and quick comparisons): prints events/s.
    Ingest {
        /// NDJSON events (`generate`).
        #[arg(long)]
        events: PathBuf,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// The keyhole binary (default: `keyhole` next to this binary).
        #[arg(long)]
        keyhole: Option<PathBuf>,
        /// A MaxMind-format database the server reads for `keen:ip_to_geo` (for events carrying add-ons).
        #[arg(long)]
        geoip_db: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
pub struct RunOptions {
    /// Event counts for the ingest + query runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    pub sizes: Vec<u64>,
    /// Seconds of single-event writes.
    #[arg(long, default_value_t = 10)]
    pub single_seconds: u64,
    /// Concurrent clients sending 1,000-event batches.
    #[arg(long, default_value_t = 4)]
    pub batch_clients: usize,
    /// Concurrent clients sending single events.
    #[arg(long, default_value_t = 64)]
    pub single_clients: usize,
    /// Timed runs per query (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    pub repeat: usize,
    /// Write/query probes for freshness.
    #[arg(long, default_value_t = 200)]
    pub freshness_probes: usize,
    /// The keyhole binary (default: `keyhole` next to this binary).
    #[arg(long)]
    pub keyhole: Option<PathBuf>,
    /// The Python interpreter that has duckdb and chdb (bench/requirements.txt).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Directory for NDJSON files and data directories (default: a temporary directory, removed after).
    /// When given, each size's Keyhole data directory is kept, with its read and tenant keys in
    /// `bench-keys.json`.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Markdown file whose results section is rewritten.
    #[arg(long)]
    pub docs: Option<PathBuf>,
    /// Seconds after the last acknowledgement before the settled query timings: two of the storage's
    /// 30 s flush ticks (the first flushes the last rows, the second finds nothing new and merges each
    /// day into one file) plus that compaction.
    #[arg(long, default_value_t = 75)]
    pub settle_seconds: u64,
    /// Small, fast mode for CI: 20,000 events, short phases; fails on any mismatch.
    #[arg(long)]
    pub smoke: bool,
}

impl RunOptions {
    fn apply_smoke(mut self) -> RunOptions {
        if self.smoke {
            self.sizes = vec![20_000];
            self.single_seconds = 2;
            self.repeat = 2;
            self.freshness_probes = 20;
            self.settle_seconds = 0;
        }
        self
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        BenchCommand::Generate {
            events,
            output,
            auto_collector,
        } => {
            let write_plain = |path: &std::path::Path| -> anyhow::Result<()> {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                generator::EventGenerator::new().write_ndjson(events, file)?;
                Ok(())
            };
            if !auto_collector {
                return write_plain(&output);
            }
            // The pageviews are the plain events extended, as `run` makes them.
            let plain_dir = tempfile::tempdir()?;
            let plain = plain_dir.path().join("plain.ndjson");
            write_plain(&plain)?;
            addons::write_auto_collector_ndjson(&plain, &output)
        }
        BenchCommand::Run(options) => {
            let options = options.apply_smoke();
            let runtime = tokio::runtime::Runtime::new()?;
            let results = runtime.block_on(run::run_all(&options))?;
            let markdown = report::render(&results);
            println!("{markdown}");
            if let Some(docs) = &options.docs {
                report::rewrite_docs(docs, &markdown)?;
                if let Some(svg) = scale::plot_svg(&results) {
                    let plot = docs
                        .parent()
                        .unwrap_or(std::path::Path::new("."))
                        .join(scale::PLOT_PATH);
                    std::fs::create_dir_all(plot.parent().unwrap_or(std::path::Path::new(".")))?;
                    std::fs::write(&plot, svg)?;
                }
                println!("rewrote the results section of {}", docs.display());
            }
            if !results.all_answers_match() {
                anyhow::bail!("some answers differ from DuckDB's (see the table)");
            }
            Ok(())
        }
        BenchCommand::Attack(options) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(attack::run(&options))?;
            println!("{report}");
            Ok(())
        }
        BenchCommand::Soak(options) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(soak::run(&options))?;
            println!("{report}");
            Ok(())
        }
        BenchCommand::Ingest {
            events,
            clients,
            keyhole,
            geoip_db,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let binary = server::keyhole_binary(keyhole.as_ref())?;
                let data_dir = tempfile::tempdir()?;
                let geo_arguments: Vec<&std::ffi::OsStr> = match &geoip_db {
                    Some(path) => vec!["--geoip-db".as_ref(), path.as_os_str()],
                    None => Vec::new(),
                };
                let server =
                    server::KeyholeServer::start_with(&binary, data_dir.path(), &geo_arguments)?;
                let (stats, _) = ingest::batch_ingest(&server, &events, clients, 0).await?;
                println!(
                    "{} events at {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms per batch; server pid {}",
                    stats.events,
                    stats.events_per_second(),
                    stats.p50_ms,
                    stats.p99_ms,
                    server.pid()
                );
                anyhow::Ok(())
            })
        }
        BenchCommand::Cluster(options) => {
            let runtime = tokio::runtime::Runtime::new()?;
            println!("{}", runtime.block_on(cluster::run(&options))?);
            Ok(())
        }
        BenchCommand::Faults(options) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(faults::run(&options))?;
            println!("{report}");
            if report.contains("lost: **0**") && report.contains("stored twice: **0**") {
                return Ok(());
            }
            anyhow::bail!("acknowledged events were lost or stored twice (see the report)")
        }
    }
}
