"""Runs the benchmark's SQL in DuckDB over the same NDJSON events Keyhole ingested.

Reads a JSON spec on stdin: {"ndjson": path, "repeat": n, "queries": {name: sql}}. Loads the file into an
in-memory table `events` (with `ts` = keen.timestamp as TIMESTAMPTZ), runs each query once to warm up and
then `repeat` times, and prints {"load_seconds": s, "queries": {name: {"rows": [...], "median_ms": m}}}.
Timestamps in results are printed as UTC ISO strings with milliseconds, like Keen's.
"""
import datetime
import json
import statistics
import sys
import time

import duckdb


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if hasattr(value, "__float__") and not isinstance(value, (int, float, bool)):
        return float(value)
    return value


spec = json.load(sys.stdin)
connection = duckdb.connect()
started = time.perf_counter()
connection.execute(
    "CREATE TABLE events AS SELECT *, CAST(keen.timestamp AS TIMESTAMPTZ) AS ts FROM read_json_auto(?, format='newline_delimited')",
    [spec["ndjson"]],
)
load_seconds = time.perf_counter() - started
answers = {}
for name, sql in spec["queries"].items():
    connection.execute("SET TimeZone = 'UTC'")
    rows = connection.execute(sql).fetchall()
    timings = []
    for _ in range(spec["repeat"]):
        begun = time.perf_counter()
        connection.execute(sql).fetchall()
        timings.append((time.perf_counter() - begun) * 1000)
    answers[name] = {"rows": [[plain(value) for value in row] for row in rows], "median_ms": statistics.median(timings)}
print(json.dumps({"load_seconds": load_seconds, "duckdb_version": duckdb.__version__, "queries": answers}))
