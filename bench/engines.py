"""Loads the benchmark's NDJSON into DuckDB or chDB in process, then times the benchmark's SQL.

Reads a JSON spec on stdin:
  {"engine": "duckdb" | "chdb", "ndjson": path, "db_dir": dir, "repeat": n, "queries": {name: sql}}
Loads the file into a table `events` stored on disk in `db_dir` (DuckDB: a database file, checkpointed;
chDB: a MergeTree table), with `ts` = keen.timestamp as a UTC timestamp. Each query runs once as a warm-up,
then `repeat` timed runs (execution plus fetching the rows). Prints one JSON object:
  {"engine", "version", "load_seconds", "events", "peak_rss_mib",
   "queries": {name: {"rows": [[...]], "median_ms", "p95_ms"}}}
Timestamps in result rows are printed as UTC ISO strings with milliseconds, like Keen's; decimals as floats.
"""
import datetime
import json
import os
import resource
import statistics
import sys
import time


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if hasattr(value, "__float__") and not isinstance(value, (int, float, bool)):
        return float(value)
    return value


def timed(run, repeat):
    rows = run()
    timings = []
    for _ in range(repeat):
        begun = time.perf_counter()
        run()
        timings.append((time.perf_counter() - begun) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(round(0.95 * (len(timings) - 1))))]
    return rows, statistics.median(timings), p95


def duckdb_engine(spec):
    import duckdb

    connection = duckdb.connect(os.path.join(spec["db_dir"], "bench.duckdb"))
    started = time.perf_counter()
    connection.execute(
        "CREATE TABLE events AS SELECT *, CAST(keen.timestamp AS TIMESTAMPTZ) AS ts "
        "FROM read_json_auto(?, format='newline_delimited')",
        [spec["ndjson"]],
    )
    connection.execute("CHECKPOINT")
    load_seconds = time.perf_counter() - started

    def runner(sql):
        def run():
            connection.execute("SET TimeZone = 'UTC'")
            return connection.execute(sql).fetchall()

        return run

    events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    return duckdb.__version__, load_seconds, events, runner


def chdb_engine(spec):
    import chdb
    from chdb import session

    connection = session.Session(os.path.join(spec["db_dir"], "chdb"))
    started = time.perf_counter()
    connection.query(
        "CREATE TABLE events ENGINE = MergeTree ORDER BY tuple() AS "
        "SELECT *, parseDateTime64BestEffort(keen.timestamp, 3, 'UTC') AS ts "
        f"FROM file('{spec['ndjson']}', JSONEachRow) SETTINGS input_format_try_infer_datetimes = 0"
    )
    load_seconds = time.perf_counter() - started

    def runner(sql):
        def run():
            table = connection.query(sql, "ArrowTable")
            return [list(row.values()) for row in table.to_pylist()]

        return run

    events = runner("SELECT count() FROM events")()[0][0]
    return chdb.__version__, load_seconds, events, runner


def main():
    spec = json.load(sys.stdin)
    engine = {"duckdb": duckdb_engine, "chdb": chdb_engine}[spec["engine"]]
    version, load_seconds, events, runner = engine(spec)
    answers = {}
    for name, sql in spec["queries"].items():
        rows, median_ms, p95_ms = timed(runner(sql), spec["repeat"])
        answers[name] = {
            "rows": [[plain(value) for value in row] for row in rows],
            "median_ms": median_ms,
            "p95_ms": p95_ms,
        }
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "engine": spec["engine"],
        "version": version,
        "load_seconds": load_seconds,
        "events": events,
        "peak_rss_mib": peak_rss_mib,
        "queries": answers,
    }))


if __name__ == "__main__":
    main()
