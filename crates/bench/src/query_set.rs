//! The fixed set of benchmark queries: each a Keen query body, the key it is sent with, the shape of its
//! Keen result, and the equivalent SQL for DuckDB and for chDB over a table `events` loaded from the same
//! NDJSON (`ts` is `keen.timestamp` as a UTC timestamp).
//!
//! The set covers every Keen analysis type (the nine metrics, select_unique, multi_analysis, funnel,
//! extraction), filters, group_by (one property and nested), intervals in two time zones across the month,
//! and queries made with a tenant's access key, whose forced `tenant_id` filter the SQL writes as a WHERE.
//! Dataset reads (one tenant's index value over 90 and 30 daily buckets) sit next to the live query that
//! gives the same answer; the SQL is the same for both.
//!
//! Time-zone intervals cover January in that zone (Keen clips the first and last bucket to the timeframe,
//! SQL's `date_trunc` does not, so the timeframe is aligned to the zone's midnight to make both agree).

use serde_json::{Value, json};

/// The tenant whose access key the tenant-scoped queries use: rank 20 of 200, about 1% of all events.
pub const BENCH_TENANT: &str = "t020";
pub const COLLECTION: &str = "bench";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The project's read key: sees every event.
    Read,
    /// An access key whose forced filter is `tenant_id = BENCH_TENANT`.
    Tenant,
    /// An access key that may only read the benchmark's datasets, pinned to `BENCH_TENANT`'s index value.
    Dataset,
}

#[derive(Clone)]
pub enum ResultShape {
    /// A single number.
    Scalar,
    /// `[{group_property: g, "result": n}]`.
    Groups(&'static str),
    /// `[{"timeframe": {...}, "value": n}]`.
    Intervals,
    /// `[{"timeframe": {...}, "value": [{group_property: g, "result": n}]}]`.
    IntervalGroups(&'static str),
    /// A list of distinct values.
    List,
    /// A funnel's per-step counts.
    Funnel,
    /// `{label: n}` in this label order.
    Multi(&'static [&'static str]),
    /// Events; these property paths, in this order.
    Extraction(&'static [&'static str]),
}

pub struct BenchQuery {
    pub name: &'static str,
    pub analysis: &'static str,
    pub body: Value,
    pub key: KeyKind,
    pub shape: ResultShape,
    pub duckdb_sql: String,
    pub chdb_sql: String,
    /// For dataset reads: the dataset whose results (index `BENCH_TENANT`, the body's timeframe) answer.
    pub dataset: Option<&'static str>,
}

fn filter(property: &str, operator: &str, value: Value) -> Value {
    json!({"property_name": property, "operator": operator, "property_value": value})
}

fn query(
    name: &'static str,
    analysis: &'static str,
    body: Value,
    shape: ResultShape,
    sql: &str,
) -> BenchQuery {
    BenchQuery {
        name,
        analysis,
        body,
        key: KeyKind::Read,
        shape,
        duckdb_sql: sql.to_string(),
        chdb_sql: sql.to_string(),
        dataset: None,
    }
}

impl BenchQuery {
    fn chdb(mut self, sql: &str) -> BenchQuery {
        self.chdb_sql = sql.to_string();
        self
    }

    fn tenant(mut self) -> BenchQuery {
        self.key = KeyKind::Tenant;
        self
    }

    /// The same answer read from dataset `name` with the dataset key.
    fn read_from_dataset(mut self, name: &'static str, label: &'static str) -> BenchQuery {
        self.name = label;
        self.key = KeyKind::Dataset;
        self.dataset = Some(name);
        self.body = json!({"timeframe": self.body["timeframe"]});
        self
    }
}

/// The datasets the dataset reads use: (name, definition), indexed by `tenant_id`.
pub fn dataset_definitions() -> Vec<(&'static str, Value)> {
    let (count, unique) = dataset_queries();
    let definition = |query: &BenchQuery| {
        let mut body = keen_body(query);
        body["analysis_type"] = json!(query.analysis);
        // The dataset is defined for every tenant; the index value selects one.
        if let Some(fields) = body.as_object_mut() {
            fields.remove("filters");
        }
        json!({"display_name": query.name, "index_by": "tenant_id", "query": body})
    };
    vec![
        (DATASET_90_DAYS, definition(&count)),
        (DATASET_30_DAYS, definition(&unique)),
    ]
}

const DATASET_90_DAYS: &str = "daily-count-90";
const DATASET_30_DAYS: &str = "daily-users-30";

/// The live queries (read key, tenant filter) the datasets precompute: a daily count over 90 days
/// (2023-11-03 to 2024-02-01, UTC) and daily unique users over 30 days (2024-01-02 to 2024-02-01).
fn dataset_queries() -> (BenchQuery, BenchQuery) {
    let tenant = BENCH_TENANT;
    let ninety = json!({"start": "2023-11-03T00:00:00.000Z", "end": "2024-02-01T00:00:00.000Z"});
    let thirty = json!({"start": "2024-01-02T00:00:00.000Z", "end": "2024-02-01T00:00:00.000Z"});
    let sql = |metric: &str, start: &str| {
        format!(
            "SET TimeZone = 'UTC'; SELECT date_trunc('day', ts), {metric} FROM events WHERE tenant_id = '{tenant}' \
             AND ts >= TIMESTAMPTZ '{start} 00:00:00+00' AND ts < TIMESTAMPTZ '2024-02-01 00:00:00+00' GROUP BY 1"
        )
    };
    let chdb = |metric: &str, start: &str| {
        format!(
            "SELECT {}, {metric} FROM events WHERE tenant_id = '{tenant}' \
             AND ts >= '{start} 00:00:00' AND ts < '2024-02-01 00:00:00' GROUP BY 1",
            chdb_day("UTC")
        )
    };
    let tenant_filter = filter("tenant_id", "eq", json!(tenant));
    let count = query(
        "live, filter tenant_id: count, daily, 90 days",
        "count",
        json!({"timeframe": ninety, "interval": "daily", "timezone": "UTC", "filters": [tenant_filter]}),
        ResultShape::Intervals,
        &sql("count(*)", "2023-11-03"),
    )
    .chdb(&chdb("count(*)", "2023-11-03"));
    let unique = query(
        "live, filter tenant_id: count_unique user.id, daily, 30 days",
        "count_unique",
        json!({"target_property": "user.id", "timeframe": thirty, "interval": "daily", "timezone": "UTC",
               "filters": [tenant_filter]}),
        ResultShape::Intervals,
        &sql("count(DISTINCT \"user\".id)", "2024-01-02"),
    )
    .chdb(&chdb("count(DISTINCT \"user\".id)", "2024-01-02"));
    (count, unique)
}

/// The daily-bucket start of `ts` in `zone`, as a UTC ISO string (chDB; DuckDB's rows are converted by
/// `bench/engines.py`).
fn chdb_day(zone: &str) -> String {
    format!("formatDateTime(toStartOfDay(ts, '{zone}'), '%Y-%m-%dT%H:%i:%S.000Z', 'UTC')")
}

fn funnel_sql(extra_where: &str) -> String {
    let step = |action: &str| {
        format!(
            "SELECT DISTINCT \"user\".id AS u FROM events WHERE action = '{action}'{extra_where}"
        )
    };
    format!(
        "WITH a AS ({}), b AS ({}), c AS ({}) SELECT (SELECT count(*) FROM a), \
         (SELECT count(*) FROM a JOIN b USING (u)), (SELECT count(*) FROM a JOIN b USING (u) JOIN c USING (u))",
        step("page_view"),
        step("signup"),
        step("purchase")
    )
}

fn funnel_body() -> Value {
    let step = |action: &str| {
        json!({"event_collection": COLLECTION, "actor_property": "user.id",
               "filters": [filter("action", "eq", json!(action))]})
    };
    json!({"steps": [step("page_view"), step("signup"), step("purchase")]})
}

pub fn query_set() -> Vec<BenchQuery> {
    use ResultShape::{Extraction, Funnel, Groups, IntervalGroups, Intervals, List, Multi, Scalar};
    // January in Berlin (UTC+1) and in New York (UTC-5).
    let berlin_january =
        json!({"start": "2023-12-31T23:00:00.000Z", "end": "2024-01-31T23:00:00.000Z"});
    let berlin_where =
        "ts >= TIMESTAMPTZ '2023-12-31 23:00:00+00' AND ts < TIMESTAMPTZ '2024-01-31 23:00:00+00'";
    let berlin_where_chdb = "ts >= '2023-12-31 23:00:00' AND ts < '2024-01-31 23:00:00'";
    let new_york_january =
        json!({"start": "2024-01-01T05:00:00.000Z", "end": "2024-02-01T05:00:00.000Z"});
    let tenant = BENCH_TENANT;
    let extraction_user = "u5-17";
    vec![
        query("count", "count", json!({}), Scalar, "SELECT count(*) FROM events"),
        query(
            "count, filter action = purchase",
            "count",
            json!({"filters": [filter("action", "eq", json!("purchase"))]}),
            Scalar,
            "SELECT count(*) FROM events WHERE action = 'purchase'",
        ),
        query(
            "count_unique user.id",
            "count_unique",
            json!({"target_property": "user.id"}),
            Scalar,
            "SELECT count(DISTINCT \"user\".id) FROM events",
        ),
        query(
            "sum amount",
            "sum",
            json!({"target_property": "amount"}),
            Scalar,
            "SELECT sum(amount) FROM events",
        ),
        query(
            "average duration_ms",
            "average",
            json!({"target_property": "duration_ms"}),
            Scalar,
            "SELECT avg(duration_ms) FROM events",
        ),
        query(
            "minimum amount",
            "minimum",
            json!({"target_property": "amount"}),
            Scalar,
            "SELECT min(amount) FROM events",
        ),
        query(
            "maximum duration_ms, filter action in",
            "maximum",
            json!({"target_property": "duration_ms",
                   "filters": [filter("action", "in", json!(["click", "signup"]))]}),
            Scalar,
            "SELECT max(duration_ms) FROM events WHERE action IN ('click', 'signup')",
        ),
        query(
            "median duration_ms",
            "median",
            json!({"target_property": "duration_ms"}),
            Scalar,
            "SELECT median(duration_ms) FROM events",
        )
        .chdb("SELECT quantileExactInclusive(0.5)(duration_ms) FROM events"),
        query(
            "percentile 90 amount",
            "percentile",
            json!({"target_property": "amount", "percentile": 90}),
            Scalar,
            "SELECT quantile_cont(amount, 0.9) FROM events",
        )
        .chdb("SELECT quantileExactInclusive(0.9)(amount) FROM events"),
        query(
            "standard_deviation amount",
            "standard_deviation",
            json!({"target_property": "amount"}),
            Scalar,
            "SELECT stddev_pop(amount) FROM events",
        )
        .chdb("SELECT stddevPop(amount) FROM events"),
        query(
            "select_unique action",
            "select_unique",
            json!({"target_property": "action"}),
            List,
            "SELECT DISTINCT action FROM events",
        ),
        query(
            "count, group_by action",
            "count",
            json!({"group_by": "action"}),
            Groups("action"),
            "SELECT action, count(*) FROM events GROUP BY 1",
        ),
        query(
            "sum amount, filter amount > 50, group_by user.plan",
            "sum",
            json!({"target_property": "amount", "group_by": "user.plan",
                   "filters": [filter("amount", "gt", json!(50))]}),
            Groups("user.plan"),
            "SELECT \"user\".plan, sum(amount) FROM events WHERE amount > 50 GROUP BY 1",
        ),
        query(
            "count_unique user.id, group_by tenant_id",
            "count_unique",
            json!({"target_property": "user.id", "group_by": "tenant_id"}),
            Groups("tenant_id"),
            "SELECT tenant_id, count(DISTINCT \"user\".id) FROM events GROUP BY 1",
        ),
        query(
            "count, daily in Europe/Berlin",
            "count",
            json!({"timeframe": berlin_january, "interval": "daily", "timezone": "Europe/Berlin"}),
            Intervals,
            &format!(
                "SET TimeZone = 'Europe/Berlin'; SELECT date_trunc('day', ts), count(*) FROM events \
                 WHERE {berlin_where} GROUP BY 1"
            ),
        )
        .chdb(&format!(
            "SELECT {}, count(*) FROM events WHERE {berlin_where_chdb} GROUP BY 1",
            chdb_day("Europe/Berlin")
        )),
        query(
            "sum amount, daily in America/New_York, group_by user.plan",
            "sum",
            json!({"target_property": "amount", "timeframe": new_york_january, "interval": "daily",
                   "timezone": "America/New_York", "group_by": "user.plan"}),
            IntervalGroups("user.plan"),
            "SET TimeZone = 'America/New_York'; SELECT date_trunc('day', ts), \"user\".plan, sum(amount) \
             FROM events WHERE ts >= TIMESTAMPTZ '2024-01-01 05:00:00+00' AND ts < TIMESTAMPTZ '2024-02-01 05:00:00+00' \
             GROUP BY 1, 2",
        )
        .chdb(&format!(
            "SELECT {}, \"user\".plan, sum(amount) FROM events \
             WHERE ts >= '2024-01-01 05:00:00' AND ts < '2024-02-01 05:00:00' GROUP BY 1, 2",
            chdb_day("America/New_York")
        )),
        query(
            "funnel page_view → signup → purchase",
            "funnel",
            funnel_body(),
            Funnel,
            &funnel_sql(""),
        ),
        query(
            "multi_analysis count + sum + count_unique, filter purchase",
            "multi_analysis",
            json!({"analyses": {
                      "purchases": {"analysis_type": "count"},
                      "revenue": {"analysis_type": "sum", "target_property": "amount"},
                      "buyers": {"analysis_type": "count_unique", "target_property": "user.id"}},
                   "filters": [filter("action", "eq", json!("purchase"))]}),
            Multi(&["purchases", "revenue", "buyers"]),
            "SELECT count(*), sum(amount), count(DISTINCT \"user\".id) FROM events WHERE action = 'purchase'",
        ),
        query(
            "extraction, filter user.id",
            "extraction",
            json!({"filters": [filter("user.id", "eq", json!(extraction_user))],
                   "property_names": ["user.id", "action", "amount", "duration_ms"]}),
            Extraction(&["user.id", "action", "amount", "duration_ms"]),
            &format!(
                "SELECT \"user\".id, action, amount, duration_ms FROM events WHERE \"user\".id = '{extraction_user}'"
            ),
        ),
        query(
            "tenant key: count",
            "count",
            json!({}),
            Scalar,
            &format!("SELECT count(*) FROM events WHERE tenant_id = '{tenant}'"),
        )
        .tenant(),
        query(
            "tenant key: sum amount, group_by action",
            "sum",
            json!({"target_property": "amount", "group_by": "action"}),
            Groups("action"),
            &format!(
                "SELECT action, sum(amount) FROM events WHERE tenant_id = '{tenant}' GROUP BY 1"
            ),
        )
        .tenant(),
        query(
            "tenant key: count_unique user.id, daily in Europe/Berlin",
            "count_unique",
            json!({"target_property": "user.id", "timeframe": berlin_january, "interval": "daily",
                   "timezone": "Europe/Berlin"}),
            Intervals,
            &format!(
                "SET TimeZone = 'Europe/Berlin'; SELECT date_trunc('day', ts), count(DISTINCT \"user\".id) \
                 FROM events WHERE tenant_id = '{tenant}' AND {berlin_where} GROUP BY 1"
            ),
        )
        .chdb(&format!(
            "SELECT {}, count(DISTINCT \"user\".id) FROM events \
             WHERE tenant_id = '{tenant}' AND {berlin_where_chdb} GROUP BY 1",
            chdb_day("Europe/Berlin")
        ))
        .tenant(),
        query(
            "tenant key: funnel page_view → signup → purchase",
            "funnel",
            funnel_body(),
            Funnel,
            &funnel_sql(&format!(" AND tenant_id = '{tenant}'")),
        )
        .tenant(),
    ]
    .into_iter()
    .chain(dataset_reads())
    .collect()
}

/// Each dataset query live, then read from its dataset.
fn dataset_reads() -> Vec<BenchQuery> {
    let (count, unique) = dataset_queries();
    let count_read = dataset_queries()
        .0
        .read_from_dataset(DATASET_90_DAYS, "dataset key: count, daily, 90 days");
    let unique_read = dataset_queries().1.read_from_dataset(
        DATASET_30_DAYS,
        "dataset key: count_unique user.id, daily, 30 days",
    );
    vec![count, count_read, unique, unique_read]
}

/// The body sent to Keyhole: the query's own fields plus its collection (funnels name theirs per step).
pub fn keen_body(query: &BenchQuery) -> Value {
    let mut body = query.body.clone();
    if query.analysis != "funnel" {
        body["event_collection"] = json!(COLLECTION);
    }
    body
}
