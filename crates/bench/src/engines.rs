//! DuckDB and chDB, run in their own Python processes (`bench/engines.py`) over the same NDJSON file Keyhole
//! ingested: each loads the file into its own on-disk table, then times every query's SQL in process.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::answers::Rows;
use crate::query_set::BenchQuery;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Engine {
    DuckDb,
    ChDb,
}

impl Engine {
    pub fn id(self) -> &'static str {
        match self {
            Engine::DuckDb => "duckdb",
            Engine::ChDb => "chdb",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Engine::DuckDb => "DuckDB",
            Engine::ChDb => "chDB",
        }
    }

    fn sql(self, query: &BenchQuery) -> &str {
        match self {
            Engine::DuckDb => &query.duckdb_sql,
            Engine::ChDb => &query.chdb_sql,
        }
    }
}

pub struct EngineAnswer {
    pub rows: Rows,
    pub median_ms: f64,
    pub p95_ms: f64,
}

pub struct EngineRun {
    pub engine: Engine,
    pub version: String,
    pub load_seconds: f64,
    pub events: u64,
    pub peak_rss_mib: f64,
    pub answers: HashMap<String, EngineAnswer>,
}

pub fn engines_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/engines.py")
}

/// Loads `ndjson` into `engine` (its files under `db_dir`) and runs every query `repeat` times.
pub fn run_engine(
    python: &str,
    engine: Engine,
    ndjson: &Path,
    db_dir: &Path,
    queries: &[BenchQuery],
    repeat: usize,
) -> anyhow::Result<EngineRun> {
    std::fs::create_dir_all(db_dir)?;
    let sql: serde_json::Map<String, Value> = queries
        .iter()
        .map(|query| (query.name.to_string(), json!(engine.sql(query))))
        .collect();
    let spec = json!({
        "engine": engine.id(), "ndjson": ndjson, "db_dir": db_dir, "repeat": repeat, "queries": sql,
    });
    let mut child = Command::new(python)
        .arg(engines_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {python} (pip install -r bench/requirements.txt)"))?;
    child
        .stdin
        .take()
        .context("engine stdin")?
        .write_all(spec.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("{} failed: {}", engine.display_name(), output.status);
    }
    let report: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{} printed no JSON report", engine.display_name()))?;
    let mut answers = HashMap::new();
    for query in queries {
        let answer = &report["queries"][query.name];
        answers.insert(
            query.name.to_string(),
            EngineAnswer {
                rows: serde_json::from_value(answer["rows"].clone())
                    .with_context(|| format!("rows of {}", query.name))?,
                median_ms: answer["median_ms"].as_f64().unwrap_or(f64::NAN),
                p95_ms: answer["p95_ms"].as_f64().unwrap_or(f64::NAN),
            },
        );
    }
    Ok(EngineRun {
        engine,
        version: report["version"].as_str().unwrap_or("?").to_string(),
        load_seconds: report["load_seconds"].as_f64().unwrap_or(f64::NAN),
        events: report["events"].as_u64().unwrap_or(0),
        peak_rss_mib: report["peak_rss_mib"].as_f64().unwrap_or(0.0),
        answers,
    })
}
