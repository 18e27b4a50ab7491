//! Query latency over HTTP against the release `keyhole` binary, next to DuckDB running the equivalent
//! SQL on the same events in the same run. Every Keyhole answer is checked equal to DuckDB's before its
//! time is reported.
//!
//! `cargo bench -p keyhole --bench queries` (needs `pip install -r bench/requirements.txt`). Knobs:
//! `KEYHOLE_BENCH_EVENTS` (comma-separated sizes, default `1000000`), `KEYHOLE_BENCH_REPEAT` (timed runs
//! per query after one warm-up, default 5). Prints a Markdown table per size.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

struct BenchQuery {
    name: &'static str,
    analysis: &'static str,
    body: Value,
    sql: &'static str,
}

fn filter(property: &str, operator: &str, value: Value) -> Value {
    json!([{"property_name": property, "operator": operator, "property_value": value}])
}

fn query_set() -> Vec<BenchQuery> {
    // January in Berlin (UTC+1), so Keen's clipped first bucket and DuckDB's date_trunc agree.
    let january = json!({"start": "2023-12-31T23:00:00.000Z", "end": "2024-01-31T23:00:00.000Z"});
    vec![
        BenchQuery {
            name: "count",
            analysis: "count",
            body: json!({}),
            sql: "SELECT count(*) FROM events",
        },
        BenchQuery {
            name: "count, filter",
            analysis: "count",
            body: json!({"filters": filter("action", "eq", json!("purchase"))}),
            sql: "SELECT count(*) FROM events WHERE action = 'purchase'",
        },
        BenchQuery {
            name: "count_unique user.id",
            analysis: "count_unique",
            body: json!({"target_property": "user.id"}),
            sql: "SELECT count(DISTINCT \"user\".id) FROM events",
        },
        BenchQuery {
            name: "sum amount",
            analysis: "sum",
            body: json!({"target_property": "amount"}),
            sql: "SELECT sum(amount) FROM events",
        },
        BenchQuery {
            name: "average duration_ms",
            analysis: "average",
            body: json!({"target_property": "duration_ms"}),
            sql: "SELECT avg(duration_ms) FROM events",
        },
        BenchQuery {
            name: "minimum amount",
            analysis: "minimum",
            body: json!({"target_property": "amount"}),
            sql: "SELECT min(amount) FROM events",
        },
        BenchQuery {
            name: "maximum duration_ms",
            analysis: "maximum",
            body: json!({"target_property": "duration_ms"}),
            sql: "SELECT max(duration_ms) FROM events",
        },
        BenchQuery {
            name: "median duration_ms",
            analysis: "median",
            body: json!({"target_property": "duration_ms"}),
            sql: "SELECT median(duration_ms) FROM events",
        },
        BenchQuery {
            name: "percentile 90 amount",
            analysis: "percentile",
            body: json!({"target_property": "amount", "percentile": 90}),
            sql: "SELECT quantile_cont(amount, 0.9) FROM events",
        },
        BenchQuery {
            name: "standard_deviation amount",
            analysis: "standard_deviation",
            body: json!({"target_property": "amount"}),
            sql: "SELECT stddev_pop(amount) FROM events",
        },
        BenchQuery {
            name: "count, group_by action",
            analysis: "count",
            body: json!({"group_by": "action"}),
            sql: "SELECT action, count(*) FROM events GROUP BY 1",
        },
        BenchQuery {
            name: "sum, filter + group_by user.plan",
            analysis: "sum",
            body: json!({"target_property": "amount", "group_by": "user.plan", "filters": filter("amount", "gt", json!(50))}),
            sql: "SELECT \"user\".plan, sum(amount) FROM events WHERE amount > 50 GROUP BY 1",
        },
        BenchQuery {
            name: "count_unique, group_by tenant_id",
            analysis: "count_unique",
            body: json!({"target_property": "user.id", "group_by": "tenant_id"}),
            sql: "SELECT tenant_id, count(DISTINCT \"user\".id) FROM events GROUP BY 1",
        },
        BenchQuery {
            name: "count, daily in Europe/Berlin",
            analysis: "count",
            body: json!({"timeframe": january, "interval": "daily", "timezone": "Europe/Berlin"}),
            sql: "SET TimeZone = 'Europe/Berlin'; SELECT date_trunc('day', ts) AS day, count(*) FROM events \
                  WHERE ts >= TIMESTAMPTZ '2023-12-31 23:00:00+00' AND ts < TIMESTAMPTZ '2024-01-31 23:00:00+00' GROUP BY 1",
        },
        BenchQuery {
            name: "select_unique action",
            analysis: "select_unique",
            body: json!({"target_property": "action"}),
            sql: "SELECT DISTINCT action FROM events ORDER BY 1",
        },
        BenchQuery {
            name: "funnel page_view → signup → purchase",
            analysis: "funnel",
            body: json!({"steps": [
                {"event_collection": "bench", "actor_property": "user.id", "filters": filter("action", "eq", json!("page_view"))},
                {"event_collection": "bench", "actor_property": "user.id", "filters": filter("action", "eq", json!("signup"))},
                {"event_collection": "bench", "actor_property": "user.id", "filters": filter("action", "eq", json!("purchase"))},
            ]}),
            sql: "WITH a AS (SELECT DISTINCT \"user\".id AS u FROM events WHERE action = 'page_view'), \
                  b AS (SELECT DISTINCT \"user\".id AS u FROM events WHERE action = 'signup'), \
                  c AS (SELECT DISTINCT \"user\".id AS u FROM events WHERE action = 'purchase') \
                  SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM a JOIN b USING (u)), (SELECT count(*) FROM a JOIN b USING (u) JOIN c USING (u))",
        },
    ]
}

/// Keyhole's answer as DuckDB-comparable rows.
fn keen_rows(result: &Value) -> Vec<Vec<Value>> {
    match result {
        Value::Array(items)
            if items
                .first()
                .is_some_and(|item| item.get("timeframe").is_some()) =>
        {
            items
                .iter()
                .filter(|bucket| bucket["value"].as_f64() != Some(0.0))
                .map(|bucket| {
                    vec![
                        bucket["timeframe"]["start"].clone(),
                        bucket["value"].clone(),
                    ]
                })
                .collect()
        }
        Value::Array(items) if items.first().is_some_and(Value::is_object) => items
            .iter()
            .map(|row| {
                let object = row.as_object().unwrap();
                let group = object
                    .iter()
                    .find(|(key, _)| *key != "result")
                    .map(|(_, value)| value.clone())
                    .unwrap_or(Value::Null);
                vec![group, row["result"].clone()]
            })
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) && items.len() > 1 => {
            vec![items.clone()]
        }
        Value::Array(items) => items.iter().map(|item| vec![item.clone()]).collect(),
        scalar => vec![vec![scalar.clone()]],
    }
}

fn same_rows(keyhole: &[Vec<Value>], duckdb: &[Vec<Value>]) -> bool {
    let sort = |rows: &[Vec<Value>]| {
        let mut rows: Vec<Vec<Value>> = rows.to_vec();
        rows.sort_by_key(|row| row.first().map(Value::to_string).unwrap_or_default());
        rows
    };
    let (left, right) = (sort(keyhole), sort(duckdb));
    left.len() == right.len()
        && left.iter().zip(&right).all(|(a, b)| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| match (x.as_f64(), y.as_f64()) {
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
                        _ => x == y,
                    })
        })
}

fn median_ms(mut timings: Vec<Duration>) -> f64 {
    timings.sort();
    timings[timings.len() / 2].as_secs_f64() * 1000.0
}

fn run_size(events: usize, repeat: usize, runtime: &tokio::runtime::Runtime) {
    let work = tempfile::tempdir().unwrap();
    let ndjson_path = work.path().join("events.ndjson");
    let mut ndjson = std::io::BufWriter::new(std::fs::File::create(&ndjson_path).unwrap());
    let mut server = common::start_server(&work.path().join("data"));
    let http = reqwest::Client::new();
    let ingest_started = Instant::now();
    runtime.block_on(async {
        let mut in_flight = Vec::new();
        for start in (0..events).step_by(1_000) {
            let batch: Vec<Value> = (start..(start + 1_000).min(events))
                .map(common::event)
                .collect();
            for event in &batch {
                serde_json::to_writer(&mut ndjson, event).unwrap();
                ndjson.write_all(b"\n").unwrap();
            }
            let request = http
                .post(format!(
                    "{}/3.0/projects/{}/events",
                    server.base_url, server.project
                ))
                .header("Authorization", &server.write_key)
                .json(&json!({"bench": batch}))
                .send();
            in_flight.push(tokio::spawn(request));
            if in_flight.len() >= 4 {
                let response = in_flight.remove(0).await.unwrap().unwrap();
                assert!(response.status().is_success());
            }
        }
        for request in in_flight {
            assert!(request.await.unwrap().unwrap().status().is_success());
        }
    });
    ndjson.flush().unwrap();
    let ingest_seconds = ingest_started.elapsed().as_secs_f64();

    let queries = query_set();
    let sql: Map<String, Value> = queries
        .iter()
        .map(|query| (query.name.to_string(), json!(query.sql)))
        .collect();
    let spec = json!({"ndjson": ndjson_path, "repeat": repeat, "queries": sql});
    let mut duckdb = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../bench/duckdb_queries.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with duckdb (pip install -r bench/requirements.txt)");
    duckdb
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let output = duckdb.wait_with_output().unwrap();
    assert!(output.status.success(), "duckdb script failed");
    let duckdb: Value = serde_json::from_slice(&output.stdout).unwrap();

    println!("\n### {events} events\n");
    println!(
        "Keyhole ingest over HTTP: {ingest_seconds:.1} s; DuckDB {} load of the same NDJSON: {:.1} s.\n",
        duckdb["duckdb_version"].as_str().unwrap_or("?"),
        duckdb["load_seconds"].as_f64().unwrap_or(0.0)
    );
    println!("| query | Keyhole median ms (HTTP) | DuckDB median ms | ratio | same answer |");
    println!("|---|---|---|---|---|");
    runtime.block_on(async {
        for query in &queries {
            let mut body = query.body.clone();
            if query.analysis != "funnel" {
                body["event_collection"] = json!("bench");
            }
            let url = format!(
                "{}/3.0/projects/{}/queries/{}",
                server.base_url, server.project, query.analysis
            );
            let send = || {
                http.post(&url)
                    .header("Authorization", &server.read_key)
                    .json(&body)
                    .send()
            };
            let answer: Value = send().await.unwrap().json().await.unwrap();
            let mut timings = Vec::new();
            for _ in 0..repeat {
                let started = Instant::now();
                let response = send().await.unwrap();
                let _ = response.bytes().await.unwrap();
                timings.push(started.elapsed());
            }
            let theirs = &duckdb["queries"][query.name];
            let duckdb_rows: Vec<Vec<Value>> =
                serde_json::from_value(theirs["rows"].clone()).unwrap();
            let same = same_rows(&keen_rows(&answer["result"]), &duckdb_rows);
            let ours = median_ms(timings);
            let their_ms = theirs["median_ms"].as_f64().unwrap_or(f64::NAN);
            if same {
                println!(
                    "| {} | {ours:.1} | {their_ms:.1} | {:.2} | yes |",
                    query.name,
                    ours / their_ms
                );
            } else {
                println!("| {} | — | {their_ms:.1} | — | **no** |", query.name);
                eprintln!(
                    "{}: keyhole {} vs duckdb {}",
                    query.name, answer["result"], theirs["rows"]
                );
            }
        }
    });
    println!(
        "\nKeyhole server peak RSS: {:.0} MiB",
        common::peak_rss_mib(server.child.id())
    );
    let _ = server.child.kill();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KEYHOLE_BENCH_EVENTS")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let repeat = std::env::var("KEYHOLE_BENCH_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for size in sizes {
        run_size(size, repeat, &runtime);
    }
}
