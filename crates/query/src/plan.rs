//! Building DataFusion plans: the scoped, filtered frame of one collection, and the keyed aggregate that
//! computes every metric of a query (one metric for a plain analysis, several for multi_analysis).
//!
//! Plans are built with DataFusion's `DataFrame`/`Expr` API, never SQL text: property names and values
//! come from users.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManager, DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::functions_aggregate::expr_fn::{
    array_agg, avg, count, count_distinct, max, median, min, stddev_pop, sum,
};
use datafusion::logical_expr::ExprFunctionExt;
use datafusion::prelude::*;
use datafusion::scalar::ScalarValue;
use keyhole_model::ValueKind;
use keyhole_model::flat::TIMESTAMP_COLUMN;
use keyhole_model::query::{AnalysisType, Filter, GroupBy, Query, TimeRange};
use keyhole_storage::{CollectionId, CollectionSnapshot, DataFile, Storage};

use crate::bucket::bucket_of;
use crate::columns::{PropertyColumns, column};
use crate::files_table::SnapshotFiles;
use crate::filters::conjunction;
use crate::scope::Scope;
use crate::{QueryLimits, Result};

/// The rows of a collection a query may see, with the key's and the caller's filters applied.
pub(crate) struct FilteredFrame {
    pub frame: DataFrame,
    pub schema: SchemaRef,
    /// What this read scanned, for `execution_metadata`.
    pub scanned: Scanned,
}

/// The reads a query made, for its `execution_metadata` (see `execution_metadata`). Without forced
/// filters a read's size is every event it looked at (known when the read is planned). With forced filters
/// it is only the events inside the scope and time range, counted when the metadata is asked for: the
/// collection's total would tell a tenant how much data the other tenants have, and whether a collection
/// holding only their events exists.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) reads: Vec<ScannedRead>,
}

/// One read of one collection.
#[derive(Clone, Debug)]
pub(crate) struct ScannedRead {
    pub(crate) collection: String,
    pub(crate) range: Option<TimeRange>,
    /// The events read, when known without counting in the scope (an unrestricted read).
    pub(crate) known_rows: Option<usize>,
}

impl Scanned {
    /// A read of every event of a collection whose number the metadata gave (no data was read).
    pub(crate) fn of_rows(collection: &str, rows: usize) -> Scanned {
        Scanned {
            reads: vec![ScannedRead {
                collection: collection.to_string(),
                range: None,
                known_rows: Some(rows),
            }],
        }
    }

    pub(crate) fn add(&mut self, other: Scanned) {
        self.reads.extend(other.reads);
    }
}

/// The URL under which the storage's object store is registered in the queries' shared runtime.
const OBJECTS_URL: &str = "keyhole://objects";

/// THE choke point: the only way to read a collection. The scope's forced filters and look-back window and
/// the caller's filters and range are AND-ed directly above the scan, before anything else in the plan.
///
/// The scan is the union of the collection's Parquet files (read by DataFusion from the storage's object
/// store, so row groups whose `keen.timestamp` or filtered columns' statistics rule them out are skipped)
/// and its not-yet-flushed rows in memory.
pub(crate) async fn filtered_frame(
    source: &EventSource,
    scope: &Scope,
    collection: &str,
    range: Option<TimeRange>,
    filters: &[Filter],
) -> Result<FilteredFrame> {
    let id = CollectionId {
        project: scope.project_id().to_string(),
        collection: collection.to_string(),
    };
    // The scope's look-back window clips the caller's range, so storage skips older files too.
    let earliest = scope.earliest_millis();
    let storage_range = keyhole_storage::TimeRange {
        start_millis: match (range.map(|range| range.start), earliest) {
            (Some(start), Some(earliest)) => Some(start.max(earliest)),
            (start, earliest) => start.or(earliest),
        },
        end_millis: range.map(|range| range.end),
    };
    // Refused while this node is behind the shared log (it would answer short).
    let snapshot = source.storage.snapshot(&id, storage_range)?;
    let schema = scan_schema(&snapshot.schema);
    let scanned = Scanned {
        reads: vec![ScannedRead {
            collection: collection.to_string(),
            range,
            known_rows: (!scope.is_restricted()).then(|| snapshot.rows()),
        }],
    };

    // Filters are evaluated inside the Parquet scan (cheapest first), so the other columns are decoded only
    // for matching rows: a tenant key's reads decode little beyond the tenant's own rows.
    let mut config = SessionConfig::new()
        .with_collect_statistics(false)
        .with_parquet_pruning(true);
    config.options_mut().execution.parquet.pushdown_filters = true;
    config.options_mut().execution.parquet.reorder_filters = true;
    // A sort that spills keeps this much for merging its runs (DataFusion's default, 10 MiB, would not
    // fit a small query budget): an eighth of the query's budget.
    config.options_mut().execution.sort_spill_reservation_bytes =
        (source.limits.memory_bytes / 8).min(10 * 1024 * 1024);
    let context = SessionContext::new_with_config_rt(config, source.runtime.clone());
    let in_range = range.map(|range| {
        let timestamp = column(TIMESTAMP_COLUMN);
        let at = |millis: i64| {
            lit(ScalarValue::TimestampMillisecond(
                Some(millis),
                Some("UTC".into()),
            ))
        };
        timestamp
            .clone()
            .gt_eq(at(range.start))
            .and(timestamp.lt(at(range.end)))
    });
    let in_window = earliest.map(|earliest| {
        column(TIMESTAMP_COLUMN).gt_eq(lit(ScalarValue::TimestampMillisecond(
            Some(earliest),
            Some("UTC".into()),
        )))
    });
    let in_time = [in_window, in_range]
        .into_iter()
        .flatten()
        .reduce(Expr::and);
    let forced = conjunction(scope.forced_filters(), &schema)?;
    let requested = conjunction(filters, &schema)?;
    let property_filters = [forced, requested].into_iter().flatten().reduce(Expr::and);
    let every_filter = [in_time, property_filters.clone()]
        .into_iter()
        .flatten()
        .reduce(Expr::and);
    let filtered = |frame: DataFrame, predicate: &Option<Expr>| match predicate {
        Some(predicate) => frame.filter(predicate.clone()),
        None => Ok(frame),
    };

    // Files whose recorded time bounds lie inside the range and window need no time comparison per row
    // (with filters pushed into the scan, that comparison decodes `keen.timestamp` for every row and costs
    // more than the rest of a simple aggregate). Files straddling a bound, and the rows in memory, get it.
    let (inside, straddling): (Vec<DataFile>, Vec<DataFile>) = snapshot
        .files
        .iter()
        .cloned()
        .partition(|file| storage_range.contains_file(file));
    let memory = memory_frame(&context, source, snapshot, &schema)?;
    let mut frame = filtered(memory, &every_filter)?;
    for (files, predicate) in [(straddling, &every_filter), (inside, &property_filters)] {
        if files.is_empty() {
            continue;
        }
        let files = filtered(files_frame(&context, files, &schema)?, predicate)?;
        frame = files.union(frame)?;
    }
    Ok(FilteredFrame {
        frame,
        schema,
        scanned,
    })
}

/// The rows of `files` (Parquet in the storage's object store) as a frame with the scan schema.
fn files_frame(
    context: &SessionContext,
    files: Vec<DataFile>,
    schema: &SchemaRef,
) -> Result<DataFrame> {
    let table = SnapshotFiles {
        objects_url: ObjectStoreUrl::parse(OBJECTS_URL)?,
        schema: schema.clone(),
        files,
    };
    Ok(context.read_table(Arc::new(table))?)
}

/// The schema queries see: the storage schema with scalar string property columns (`{path}#str`) as
/// `Utf8View`. Parquet's dictionary-encoded strings then decode into views of the dictionary instead of being
/// copied row by row into one buffer, and DataFusion's grouping and comparisons have fast paths for views
/// (without them, at 10M events group-by and filters on a string column spend most of their time copying
/// strings).
fn scan_schema(storage_schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::FieldRef> = storage_schema
        .fields()
        .iter()
        .map(|field| {
            let is_scalar_string = field.data_type() == &arrow::datatypes::DataType::Utf8
                && ValueKind::split_column_name(field.name())
                    .is_some_and(|(_, kind)| kind == ValueKind::Str);
            if is_scalar_string {
                Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(arrow::datatypes::DataType::Utf8View),
                )
            } else {
                field.clone()
            }
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        storage_schema.metadata().clone(),
    ))
}

/// The in-memory rows as a frame with the scan schema: the storage-typed `MemTable` under a projection that
/// casts string columns to views. The casts are expressions, so the optimizer drops those of columns the
/// query does not use and only the used columns of the in-memory rows are converted.
fn memory_frame(
    context: &SessionContext,
    source: &EventSource,
    snapshot: CollectionSnapshot,
    scan_schema: &SchemaRef,
) -> Result<DataFrame> {
    let table = MemTable::try_new(
        snapshot.schema.clone(),
        split_for_cores(snapshot.memory, source.cores),
    )?;
    let projection: Vec<Expr> = snapshot
        .schema
        .fields()
        .iter()
        .zip(scan_schema.fields())
        .map(|(stored, scanned)| {
            let value = column(stored.name());
            if stored.data_type() == scanned.data_type() {
                value
            } else {
                cast(value, scanned.data_type().clone()).alias(stored.name())
            }
        })
        .collect();
    Ok(context.read_table(Arc::new(table))?.select(projection)?)
}

/// The events queries read: the storage, and one DataFusion runtime shared by every query on it. Sharing
/// the runtime is what lets DataFusion's file-metadata cache keep each Parquet footer (and page index)
/// after the first query reads it: a file is written once under a unique name and never changed, so a
/// cached footer cannot go stale. The list-files cache is disabled because the snapshot names every file.
#[derive(Clone)]
pub(crate) struct EventSource {
    pub(crate) storage: Storage,
    runtime: Arc<RuntimeEnv>,
    /// Partitions for the in-memory rows (read once: on Linux it reads cgroup files).
    cores: usize,
    pub limits: Arc<QueryLimits>,
    /// The disk manager of a query re-run with spilling (see [`Spilling`]); `None` when its directory
    /// could not be made.
    spilling_disk: Option<Arc<DiskManager>>,
}

/// Whether a query's sorts and aggregations may spill to disk. A query first runs without: DataFusion's
/// operators run measurably slower when spilling is possible (about a fifth, on the isolation suite's
/// small queries), and nearly every query fits its memory. Only a query refused for its memory budget is
/// run again with spilling (`QueryEngine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spilling {
    Off,
    On,
}

impl EventSource {
    pub(crate) fn new(storage: Storage, limits: QueryLimits) -> EventSource {
        // Only the cache sizes and the disabled spilling differ from DataFusion's defaults, which build
        // without fail (its own `RuntimeEnv::default()` unwraps the same builder).
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .expect("the default DataFusion runtime builds");
        // Queries re-run with spilling spill under the data directory's `tmp/` (emptied at start).
        let query_spill_dir = storage.spill_dir().join("queries");
        let spilling_disk = std::fs::create_dir_all(&query_spill_dir)
            .map_err(datafusion::error::DataFusionError::from)
            .and_then(|()| {
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![query_spill_dir.clone()]))
                    .build()
            })
            .map(Arc::new)
            .inspect_err(|error| {
                tracing::warn!(%error, path = %query_spill_dir.display(), "queries cannot spill to disk");
            })
            .ok();
        let objects_url = ObjectStoreUrl::parse(OBJECTS_URL).expect("a constant, valid URL");
        runtime.register_object_store(objects_url.as_ref(), storage.object_store());
        let cores = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .max(1);
        EventSource {
            storage,
            runtime,
            cores,
            limits: Arc::new(limits),
            spilling_disk,
        }
    }

    /// This source with a memory pool of its own, holding one query's budget: every session the query
    /// opens (one per collection it reads) draws on the same pool. The caches and the object store stay
    /// shared.
    pub(crate) fn for_one_query(
        &self,
        spilling: Spilling,
    ) -> (EventSource, Arc<crate::metrics::PeakMemoryPool>) {
        let shared = &self.runtime;
        let disk_manager = match (spilling, &self.spilling_disk) {
            (Spilling::On, Some(disk)) => disk.clone(),
            _ => shared.disk_manager.clone(),
        };
        let pool = crate::metrics::PeakMemoryPool::new(
            self.limits.memory_bytes,
            self.storage.memory_budget().clone(),
            spilling == Spilling::On,
        );
        let runtime = RuntimeEnv {
            memory_pool: pool.clone(),
            disk_manager,
            cache_manager: shared.cache_manager.clone(),
            object_store_registry: shared.object_store_registry.clone(),
        };
        let source = EventSource {
            runtime: Arc::new(runtime),
            ..self.clone()
        };
        (source, pool)
    }
}

/// The filtered frame of a query's own collection over its resolved timeframe (all time without one).
pub(crate) async fn query_frame(
    source: &EventSource,
    scope: &Scope,
    query: &Query,
    now: i64,
) -> Result<(FilteredFrame, Option<TimeRange>)> {
    let range = query
        .timeframe
        .as_ref()
        .map(|timeframe| timeframe.resolve(now, query.timezone))
        .transpose()?;
    let collection = query.collection.as_deref().unwrap_or_default();
    let filtered = filtered_frame(source, scope, collection, range, &query.filters).await?;
    Ok((filtered, range))
}

fn split_for_cores(batches: Vec<RecordBatch>, cores: usize) -> Vec<Vec<RecordBatch>> {
    let mut partitions = vec![Vec::new(); cores];
    for (index, batch) in batches.into_iter().enumerate() {
        partitions[index % cores].push(batch);
    }
    partitions
}

/// One metric a query computes: the analysis of a plain query, or one labelled entry of a multi_analysis.
#[derive(Clone, Debug)]
pub(crate) struct Metric {
    pub label: Option<String>,
    pub analysis: AnalysisType,
    pub target_property: Option<String>,
    pub percentile: Option<f64>,
}

/// Columns of a group_by property used as keys: every typed column but `#null`/`#object` (which render
/// as null, like a missing property, so they must not split a group).
pub(crate) fn group_key_columns(
    schema: &arrow::datatypes::Schema,
    group: &GroupBy,
) -> Vec<(ValueKind, Expr)> {
    let columns = PropertyColumns::of(schema, group.property());
    match group {
        GroupBy::Property(_) => columns
            .all()
            .into_iter()
            .filter(|(kind, _)| !matches!(kind, ValueKind::Null | ValueKind::EmptyObject))
            .collect(),
        GroupBy::Buckets { size, offset, .. } => columns
            .typed(ValueKind::Num)
            .map(|value| {
                vec![(
                    ValueKind::Num,
                    floor((value - lit(*offset)) / lit(*size)) * lit(*size) + lit(*offset),
                )]
            })
            .unwrap_or_default(),
        GroupBy::Ranges { ranges, .. } => {
            let Some(value) = columns.typed(ValueKind::Num) else {
                return Vec::new();
            };
            let mut case = when(lit(false), lit(ScalarValue::Int32(None)));
            for (index, (from, to)) in ranges.iter().enumerate() {
                let mut condition = lit(true);
                if let Some(from) = from {
                    condition = condition.and(value.clone().gt_eq(lit(*from)));
                }
                if let Some(to) = to {
                    condition = condition.and(value.clone().lt(lit(*to)));
                }
                case = case.when(condition, lit(index as i32));
            }
            vec![(
                ValueKind::Num,
                case.end().unwrap_or(lit(ScalarValue::Int32(None))),
            )]
        }
    }
}

/// Key column aliases: `__bucket`, `__g{group}_{kind}`.
pub(crate) const BUCKET_ALIAS: &str = "__bucket";

pub(crate) fn group_alias(group_index: usize, kind: ValueKind) -> String {
    format!("__g{group_index}_{}", kind.suffix())
}

pub(crate) fn metric_alias(metric_index: usize, part: &str) -> String {
    format!("__m{metric_index}_{part}")
}

/// The aggregate expressions computing one metric, aliased by [`metric_alias`].
fn metric_aggregates(
    schema: &arrow::datatypes::Schema,
    index: usize,
    metric: &Metric,
) -> Vec<Expr> {
    let alias = |part: &str| metric_alias(index, part);
    if metric.analysis == AnalysisType::Count {
        return vec![count(lit(1i64)).alias(alias("count"))];
    }
    let target = PropertyColumns::of(
        schema,
        metric.target_property.as_deref().unwrap_or_default(),
    );
    let value_columns: Vec<(ValueKind, Expr)> = target
        .all()
        .into_iter()
        .filter(|(kind, _)| !matches!(kind, ValueKind::Null | ValueKind::EmptyObject))
        .collect();
    match metric.analysis {
        AnalysisType::CountUnique => value_columns
            .into_iter()
            .map(|(kind, value)| count_distinct(value).alias(alias(kind.suffix())))
            .collect(),
        AnalysisType::SelectUnique => value_columns
            .into_iter()
            .filter_map(|(kind, value)| {
                array_agg(value)
                    .distinct()
                    .build()
                    .ok()
                    .map(|agg| agg.alias(alias(kind.suffix())))
            })
            .collect(),
        _ => {
            let Some(number) = target.typed(ValueKind::Num) else {
                return Vec::new();
            };
            let aggregate = match metric.analysis {
                AnalysisType::Minimum => min(number),
                AnalysisType::Maximum => max(number),
                AnalysisType::Sum => sum(number),
                AnalysisType::Average => avg(number),
                AnalysisType::Median => median(number),
                AnalysisType::StandardDeviation => stddev_pop(number),
                // DataFusion's percentile_cont loses precision; the values are collected and the exact
                // percentile is computed in `results.rs`.
                AnalysisType::Percentile => array_agg(number),
                _ => return Vec::new(),
            };
            vec![aggregate.alias(alias("value"))]
        }
    }
}

/// Groups the filtered rows by bucket and group_by keys and computes every metric.
pub(crate) async fn aggregate(
    filtered: FilteredFrame,
    boundaries: Option<Vec<i64>>,
    group_by: &[GroupBy],
    metrics: &[Metric],
) -> Result<Vec<RecordBatch>> {
    let schema = filtered.schema.clone();
    let mut frame = filtered.frame;
    let mut keys = Vec::new();
    if let Some(boundaries) = boundaries {
        let bucket = bucket_of(boundaries, column(TIMESTAMP_COLUMN));
        frame = frame.filter(bucket.clone().is_not_null())?;
        keys.push(bucket.alias(BUCKET_ALIAS));
    }
    for (group_index, group) in group_by.iter().enumerate() {
        for (kind, key) in group_key_columns(&schema, group) {
            keys.push(key.alias(group_alias(group_index, kind)));
        }
    }
    if let [metric] = metrics
        && metric.analysis == AnalysisType::SelectUnique
    {
        return select_unique_by_grouping(frame, keys, &schema, metric).await;
    }
    let mut aggregates = vec![count(lit(1i64)).alias("__rows")];
    for (index, metric) in metrics.iter().enumerate() {
        aggregates.extend(metric_aggregates(&schema, index, metric));
    }
    Ok(frame.aggregate(keys, aggregates)?.collect().await?)
}

/// A lone `select_unique` as two group-bys: first by the keys and the target's typed columns (DataFusion's
/// hash grouping, fast on string views), then the few distinct rows per key collected with `array_agg`.
/// Same result as `array_agg(DISTINCT …)` (which keeps a set of scalar values and was ~10× slower than a
/// group-by at 10M events); the lists hold a null where a row's value is of another kind, which rendering
/// drops as it does for the one-phase plan.
async fn select_unique_by_grouping(
    frame: DataFrame,
    keys: Vec<Expr>,
    schema: &arrow::datatypes::Schema,
    metric: &Metric,
) -> Result<Vec<RecordBatch>> {
    let key_names: Vec<String> = keys
        .iter()
        .map(|key| key.schema_name().to_string())
        .collect();
    let values: Vec<(ValueKind, Expr)> = PropertyColumns::of(
        schema,
        metric.target_property.as_deref().unwrap_or_default(),
    )
    .all()
    .into_iter()
    .filter(|(kind, _)| !matches!(kind, ValueKind::Null | ValueKind::EmptyObject))
    .collect();
    let value_name = |kind: ValueKind| format!("__value_{}", kind.suffix());
    let mut first_keys = keys;
    first_keys.extend(
        values
            .iter()
            .map(|(kind, value)| value.clone().alias(value_name(*kind))),
    );
    let distinct_rows =
        frame.aggregate(first_keys, vec![count(lit(1i64)).alias("__rows_per_value")])?;
    let mut aggregates = vec![sum(col("__rows_per_value")).alias("__rows")];
    aggregates.extend(
        values.iter().map(|(kind, _)| {
            array_agg(col(value_name(*kind))).alias(metric_alias(0, kind.suffix()))
        }),
    );
    let second_keys = key_names.iter().map(|name| col(name.as_str())).collect();
    Ok(distinct_rows
        .aggregate(second_keys, aggregates)?
        .collect()
        .await?)
}
