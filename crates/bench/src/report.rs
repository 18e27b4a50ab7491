//! The results as Markdown: the machine and versions, the targets next to what was measured, the
//! ingest and query tables with ratios, and rewriting the generated section of `docs/benchmarks.md`
//! (between the `results:begin` and `results:end` markers; the prose around it is kept).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::RunOptions;
use crate::engines::Engine;
use crate::query_set::KeyKind;
use crate::run::{BenchResults, QueryOutcome, SizeResults, Timing};

const BEGIN_MARKER: &str = "<!-- results:begin";
const END_MARKER: &str = "<!-- results:end -->";

pub struct RunContext {
    pub date: String,
    pub commit: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub datafusion: String,
    pub smoke: bool,
    pub single_seconds: u64,
    pub repeat: usize,
    pub settle_seconds: u64,
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "?".into(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_string(),
        )
}

/// The version of `package` recorded in the workspace's Cargo.lock.
fn locked_version(package: &str) -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
        .unwrap_or_default();
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == name_line
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return version.trim_matches('"').to_string();
        }
    }
    "?".into()
}

impl RunContext {
    pub fn collect(options: &RunOptions) -> RunContext {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        RunContext {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
            cpu: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map_or_else(
                    || "?".into(),
                    |rest| rest.trim_start_matches([' ', '\t', ':']).to_string(),
                ),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            rustc: command_output("rustc", &["--version"]),
            datafusion: locked_version("datafusion"),
            smoke: options.smoke,
            single_seconds: options.single_seconds,
            repeat: options.repeat,
            settle_seconds: options.settle_seconds,
        }
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "**no**" }
}

fn engine_version(results: &BenchResults, engine: Engine) -> String {
    results
        .sizes
        .iter()
        .flat_map(|size| &size.loads)
        .find(|load| load.engine == engine)
        .map_or_else(|| "?".into(), |load| load.version.clone())
}

pub fn render(results: &BenchResults) -> String {
    let context = &results.context;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {}{} · commit `{}` · {} ({} cores, {:.0} GiB) · Linux {} · {} · DataFusion {} · DuckDB {} · chDB {} (PyPI)\n",
        context.date,
        if context.smoke {
            " (smoke mode: tiny sizes, not a measurement)"
        } else {
            ""
        },
        context.commit,
        context.cpu,
        context.cores,
        context.memory_gib,
        context.kernel,
        context.rustc,
        context.datafusion,
        engine_version(results, Engine::DuckDb),
        engine_version(results, Engine::ChDb),
    );
    render_targets(&mut out, results);
    render_ingest(&mut out, results);
    for size in &results.sizes {
        render_queries(&mut out, size, context);
    }
    crate::scale::render_scale(&mut out, results);
    out
}

fn largest(results: &BenchResults) -> Option<&SizeResults> {
    results.sizes.iter().max_by_key(|size| size.events)
}

/// The size the targets are judged on: 10M events when the run has it (the figures), else the
/// largest.
fn target_size(results: &BenchResults) -> Option<&SizeResults> {
    results
        .sizes
        .iter()
        .find(|size| size.events == 10_000_000)
        .or_else(|| largest(results))
}

pub fn duckdb_median(query: &QueryOutcome) -> Option<f64> {
    query
        .engines
        .iter()
        .find(|(engine, _)| *engine == Engine::DuckDb)
        .map(|(_, timing)| timing.median_ms)
}

/// Whether a Keyhole median counts as at or under DuckDB's: ≤ 1×, or within 1 ms of it where DuckDB answers
/// in under 2 ms (below that the HTTP round trip dominates).
fn at_most_duckdb(keyhole_ms: f64, duckdb_ms: f64) -> bool {
    keyhole_ms <= duckdb_ms || (duckdb_ms < 2.0 && keyhole_ms - duckdb_ms <= 1.0)
}

fn ratios(values: &[f64]) -> String {
    values
        .iter()
        .map(|ratio| format!("{ratio:.2}×"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_targets(out: &mut String, results: &BenchResults) {
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "| target | goal | measured | met |\n|---|---|---|---|");
    if let Some(size) = target_size(results) {
        let rate = size.batch.events_per_second();
        let duckdb_rate = size
            .load_of(Engine::DuckDb)
            .map_or(f64::NAN, |load| size.events as f64 / load.load_seconds);
        let _ = writeln!(
            out,
            "| batch ingest, durable acks ({} events) | ≥ 400 000 events/s and ≥ 0.35× DuckDB's load | {} events/s, {:.2}× | {} |",
            thousands(size.events as f64),
            thousands(rate),
            rate / duckdb_rate,
            yes_no(rate >= 400_000.0 && rate / duckdb_rate >= 0.35)
        );
    }
    if let Some(plain) = results.sizes.first() {
        let with_addons = results.with_addons.events_per_second();
        let ratio = with_addons / plain.batch.events_per_second();
        let _ = writeln!(
            out,
            "| auto-collector pageviews, five add-ons each ({} events) | ≥ 0.5× plain ingest | {} events/s, {ratio:.2}× | {} |",
            thousands(results.with_addons.events as f64),
            thousands(with_addons),
            yes_no(ratio >= 0.5)
        );
    }
    let single = &results.single;
    let _ = writeln!(
        out,
        "| single-event writes | ≥ 60 000/s, p99 < 3 ms | {}/s, p99 {:.1} ms | {} |",
        thousands(single.events_per_second()),
        single.p99_ms,
        yes_no(single.events_per_second() >= 60_000.0 && single.p99_ms < 3.0)
    );
    if let Some(size) = target_size(results) {
        let events = thousands(size.events as f64);
        let unscoped: Vec<&QueryOutcome> = size
            .queries
            .iter()
            .filter(|query| query.key == KeyKind::Read && query.keyhole_matches_duckdb)
            .collect();
        let met_when = |timing: fn(&QueryOutcome) -> f64| {
            unscoped
                .iter()
                .filter(|query| {
                    duckdb_median(query).is_some_and(|duckdb| at_most_duckdb(timing(query), duckdb))
                })
                .count()
        };
        let settled = met_when(|query| query.keyhole.median_ms);
        let right_after = met_when(|query| query.right_after.median_ms);
        // A query with no during-ingest timing (the phase was skipped) does not count as met.
        let during_ingest = met_when(|query| {
            query
                .during_ingest
                .as_ref()
                .map_or(f64::INFINITY, |timing| timing.median_ms)
        });
        let total = unscoped.len();
        let _ = writeln!(
            out,
            "| unscoped queries ({events} events) | every query ≤ 1× DuckDB, or within 1 ms where DuckDB < 2 ms, at all three moments | settled {settled} of {total}, right after ingest {right_after} of {total}, during ingest {during_ingest} of {total} | {} |",
            yes_no(total > 0 && settled == total && right_after == total && during_ingest == total)
        );
        let tenant: Vec<(f64, f64, f64)> = size
            .queries
            .iter()
            .filter(|query| query.key == KeyKind::Tenant && query.keyhole_matches_duckdb)
            .filter_map(|query| {
                let duckdb = duckdb_median(query)?;
                let during_ingest = query
                    .during_ingest
                    .as_ref()
                    .map_or(f64::INFINITY, |timing| timing.median_ms);
                Some((
                    query.keyhole.median_ms / duckdb,
                    query.right_after.median_ms / duckdb,
                    during_ingest / duckdb,
                ))
            })
            .collect();
        let settled: Vec<f64> = tenant.iter().map(|ratios| ratios.0).collect();
        let right_after: Vec<f64> = tenant.iter().map(|ratios| ratios.1).collect();
        let during_ingest: Vec<f64> = tenant.iter().map(|ratios| ratios.2).collect();
        let worst = settled
            .iter()
            .chain(&right_after)
            .chain(&during_ingest)
            .copied()
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| tenant-key queries ({events} events) | every one ≤ 0.3× DuckDB, at all three moments | settled {}; right after ingest {}; during ingest {} | {} |",
            ratios(&settled),
            ratios(&right_after),
            ratios(&during_ingest),
            yes_no(!tenant.is_empty() && worst <= 0.3)
        );
        // Each dataset read follows the live query that gives the same answer (`query_set::dataset_reads`).
        let dataset_ratios: Vec<f64> = size
            .queries
            .windows(2)
            .filter(|pair| pair[1].key == KeyKind::Dataset)
            .map(|pair| pair[1].keyhole.median_ms / pair[0].keyhole.median_ms)
            .collect();
        let worst = dataset_ratios.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| dataset read vs the same live query ({events} events) | well under it (≤ 0.5×) | {} | {} |",
            ratios(&dataset_ratios),
            yes_no(!dataset_ratios.is_empty() && worst <= 0.5)
        );
        let duckdb_peak = size
            .load_of(Engine::DuckDb)
            .map_or(f64::NAN, |load| load.peak_rss_mib);
        let _ = writeln!(
            out,
            "| peak RSS, ingest + queries ({events} events) | ≤ DuckDB's process peak | {:.0} MiB vs {:.0} MiB | {} |",
            size.peak_rss_mib,
            duckdb_peak,
            yes_no(size.peak_rss_mib <= duckdb_peak)
        );
    }
    let (probes, first) = results.sizes.iter().fold((0, 0), |(probes, first), size| {
        (
            probes + size.freshness.probes,
            first + size.freshness.visible_at_first_query,
        )
    });
    let worst_lag = results
        .sizes
        .iter()
        .map(|size| size.freshness.worst_ack_to_counted_ms)
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "| freshness (ack → counted) | 0 s | {first} of {probes} writes counted by the first query after their ack (worst ack → answer {worst_lag:.1} ms) | {} |",
        yes_no(probes > 0 && first == probes)
    );
    let idle = results
        .sizes
        .iter()
        .map(|size| size.idle_rss_mib)
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "| idle RSS | ≤ 50 MB | {idle:.0} MiB | {} |\n",
        yes_no(idle * 1.048_576 <= 50.0)
    );
}

fn render_ingest(out: &mut String, results: &BenchResults) {
    let _ = writeln!(
        out,
        "### Ingest\n\nKeyhole: HTTP POSTs of 1,000 events, durable acks; DuckDB/chDB: loading the same NDJSON file in \
         process into an on-disk table. Ratios are Keyhole's events/s over the engine's (> 1 means Keyhole is faster).\n"
    );
    let _ = writeln!(
        out,
        "| events | Keyhole events/s (clients) | p50 / p99 ms per batch | while a dashboard queries | DuckDB load events/s | chDB load events/s | Keyhole ÷ DuckDB | Keyhole ÷ chDB |\n|---|---|---|---|---|---|---|---|"
    );
    for size in &results.sizes {
        let rate = |engine: Engine| {
            size.load_of(engine)
                .map_or(f64::NAN, |load| size.events as f64 / load.load_seconds)
        };
        let (keyhole, duckdb, chdb) = (
            size.batch.events_per_second(),
            rate(Engine::DuckDb),
            rate(Engine::ChDb),
        );
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {:.1} / {:.1} | {} | {} | {} | {:.2} | {:.2} |",
            thousands(size.events as f64),
            thousands(keyhole),
            size.batch.clients,
            size.batch.p50_ms,
            size.batch.p99_ms,
            thousands(size.batch_while_queried.events_per_second()),
            thousands(duckdb),
            thousands(chdb),
            keyhole / duckdb,
            keyhole / chdb
        );
    }
    if let Some(plain) = results.sizes.first() {
        let with_addons = &results.with_addons;
        let _ = writeln!(
            out,
            "\nWith Keen's enrichment add-ons: the {} events of the first size sent as keen-tracking's auto-collector pageviews (its five add-ons on every event: ua_parser, url_parser ×2, date_time_parser ×2, ip_to_geo), {} clients, durable acks: **{} events/s**, {:.2}× the plain ingest of the same events ({} events/s).",
            thousands(with_addons.events as f64),
            with_addons.clients,
            thousands(with_addons.events_per_second()),
            with_addons.events_per_second() / plain.batch.events_per_second(),
            thousands(plain.batch.events_per_second()),
        );
    }
    let single = &results.single;
    let _ = writeln!(
        out,
        "\nSingle-event writes (`POST /events/{{collection}}`, {} clients, {} s): **{} events/s**, p50 {:.2} ms, p99 {:.2} ms; server peak RSS {:.0} MiB.\n",
        single.clients,
        results.context.single_seconds,
        thousands(single.events_per_second()),
        single.p50_ms,
        single.p99_ms,
        results.single_peak_rss_mib
    );
    if let Some((_, baseline)) = results.credentials.first() {
        let baseline = baseline.events_per_second();
        let _ = writeln!(
            out,
            "Single-event writes by credential ({} clients, {} s each, each on a fresh server):\n\n| credential | events/s | p99 | vs. write key |\n|---|---|---|---|",
            results.single.clients, results.context.single_seconds
        );
        for (name, stats) in &results.credentials {
            let _ = writeln!(
                out,
                "| {name} | {} | {:.2} ms | {:.2}× |",
                thousands(stats.events_per_second()),
                stats.p99_ms,
                stats.events_per_second() / baseline
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "| events | Keyhole idle RSS | peak after ingest | peak after queries | at rest after queries | DuckDB process peak | chDB process peak | freshness: counted by first query | median / worst ack → answer |\n|---|---|---|---|---|---|---|---|---|"
    );
    for size in &results.sizes {
        let engine_peak = |engine: Engine| {
            size.load_of(engine)
                .map_or(f64::NAN, |load| load.peak_rss_mib)
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB | {} of {} | {:.1} / {:.1} ms |",
            thousands(size.events as f64),
            size.idle_rss_mib,
            size.peak_rss_after_ingest_mib,
            size.peak_rss_mib,
            size.rss_at_rest_mib,
            engine_peak(Engine::DuckDb),
            engine_peak(Engine::ChDb),
            size.freshness.visible_at_first_query,
            size.freshness.probes,
            size.freshness.median_ack_to_counted_ms,
            size.freshness.worst_ack_to_counted_ms,
        );
    }
    let _ = writeln!(out);
}

fn render_queries(out: &mut String, size: &SizeResults, context: &RunContext) {
    let _ = writeln!(
        out,
        "### Queries, {} events\n\nMedian / p95 ms. **Settled**: {} timed runs after one warm-up, at least {} s after \
         the last acknowledgement (flushed and compacted). **Right after**: the same, started as soon as the last batch \
         was acknowledged (rows in memory, flush and compaction pending). **During ingest**: another server ingesting \
         the same events while one client sent the query set in a loop ({} complete rounds; median over the runs). \
         Keyhole through HTTP; DuckDB and chDB in process, on the loaded table. Ratios are Keyhole's settled median \
         (right after in brackets) over the engine's (< 1 means Keyhole is faster). Both Keyhole answers are checked \
         against DuckDB's. The tenant key's forced filter selects {} events ({:.2}%).\n",
        thousands(size.events as f64),
        context.repeat,
        context.settle_seconds,
        size.rounds_during_ingest,
        thousands(size.tenant_events as f64),
        100.0 * size.tenant_events as f64 / size.events.max(1) as f64
    );
    let _ = writeln!(
        out,
        "| query | Keyhole settled | right after | during ingest | DuckDB | chDB | Keyhole ÷ DuckDB | Keyhole ÷ chDB | Keyhole = DuckDB | chDB = DuckDB |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let pair = |timing: &Timing| format!("{:.1} / {:.1}", timing.median_ms, timing.p95_ms);
    for query in &size.queries {
        let timing = |engine: Engine| {
            query
                .engines
                .iter()
                .find(|(candidate, _)| *candidate == engine)
                .map_or((f64::NAN, f64::NAN), |(_, timing)| {
                    (timing.median_ms, timing.p95_ms)
                })
        };
        let (duckdb, chdb) = (timing(Engine::DuckDb), timing(Engine::ChDb));
        let matches = query.keyhole_matches_duckdb;
        let (settled, right_after) = if matches {
            (pair(&query.keyhole), pair(&query.right_after))
        } else {
            ("—".into(), "—".into())
        };
        let during = query.during_ingest.as_ref().map_or("–".into(), pair);
        let ratio = |theirs: f64| {
            if matches {
                format!(
                    "{:.2} ({:.2})",
                    query.keyhole.median_ms / theirs,
                    query.right_after.median_ms / theirs
                )
            } else {
                "—".into()
            }
        };
        let _ = writeln!(
            out,
            "| {} | {settled} | {right_after} | {during} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} | {} | {} |",
            query.name,
            duckdb.0,
            duckdb.1,
            chdb.0,
            chdb.1,
            ratio(duckdb.0),
            ratio(chdb.0),
            yes_no(matches),
            yes_no(query.chdb_matches_duckdb),
        );
    }
    let _ = writeln!(out);
}

/// Replaces the generated section of `docs` (between the markers) with `markdown`.
pub fn rewrite_docs(docs: &Path, markdown: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(docs).with_context(|| format!("read {}", docs.display()))?;
    let begin = text
        .find(BEGIN_MARKER)
        .with_context(|| format!("{} has no `{BEGIN_MARKER}` marker", docs.display()))?;
    let begin_line_end = begin + text[begin..].find('\n').context("marker line")? + 1;
    let end = text
        .find(END_MARKER)
        .with_context(|| format!("{} has no `{END_MARKER}` marker", docs.display()))?;
    let rewritten = format!("{}\n{markdown}\n{}", &text[..begin_line_end], &text[end..]);
    std::fs::write(docs, rewritten)?;
    Ok(())
}
