//! Plain, interval, group_by and interval + group_by results of the metric analyses (count …
//! select_unique, and multi_analysis), shaped as Keen returns them:
//!
//! - plain: `{"result": 42}`; multi_analysis: `{"result": {"label": 42, …}}`
//! - group_by: `{"result": [{"prop": "a", "result": 3}, …]}` (multi: the labels instead of `result`)
//! - interval: `{"result": [{"timeframe": {"start", "end"}, "value": 3}, …]}`, every bucket present
//! - interval + group_by: each bucket's `value` is the group_by list.
//!
//! Design: empty buckets and absent groups read 0 for `count`, `count_unique` and `sum`, `[]` for
//! `select_unique`, and null for the others. With interval + group_by every bucket lists every group seen
//! in the timeframe. Groups are ordered by their values (null, booleans, numbers, strings, lists) unless
//! `order_by` says otherwise; `limit` then keeps the first rows (per bucket).

use std::collections::{BTreeMap, HashMap};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use keyhole_model::ValueKind;
use keyhole_model::query::{AnalysisType, GroupBy, OrderBy, Query, QueryError, format_instant};
use serde_json::{Map, Value, json};

use crate::plan::{
    BUCKET_ALIAS, EventSource, Metric, Scanned, aggregate, group_alias, metric_alias, query_frame,
};
use crate::render::{cell, compare, number};
use crate::{MAX_BUCKETS, Result, Scope};

pub(crate) fn metrics_of(query: &Query) -> Vec<Metric> {
    if query.analysis == AnalysisType::MultiAnalysis {
        return query
            .analyses
            .iter()
            .map(|sub| Metric {
                label: Some(sub.label.clone()),
                analysis: sub.analysis,
                target_property: sub.target_property.clone(),
                percentile: sub.percentile,
            })
            .collect();
    }
    vec![Metric {
        label: None,
        analysis: query.analysis,
        target_property: query.target_property.clone(),
        percentile: query.percentile,
    }]
}

/// What an analysis reads over no events.
pub(crate) fn empty_value(analysis: AnalysisType) -> Value {
    match analysis {
        AnalysisType::Count | AnalysisType::CountUnique | AnalysisType::Sum => json!(0),
        AnalysisType::SelectUnique => json!([]),
        _ => Value::Null,
    }
}

/// One aggregated row: bucket, rendered group values, and each metric's value.
struct Row {
    bucket: Option<usize>,
    groups: Vec<Value>,
    values: Vec<Value>,
}

fn metric_value(batch: &RecordBatch, row: usize, index: usize, metric: &Metric) -> Value {
    let part = |name: &str| batch.column_by_name(&metric_alias(index, name));
    match metric.analysis {
        AnalysisType::Count => part("count")
            .map(|column| cell(column.as_ref(), row, None))
            .unwrap_or(json!(0)),
        AnalysisType::CountUnique => {
            let total: i64 = ValueKind::ALL
                .into_iter()
                .filter_map(|kind| part(kind.suffix()))
                .map(|column| cell(column.as_ref(), row, None).as_i64().unwrap_or(0))
                .sum();
            json!(total)
        }
        AnalysisType::SelectUnique => {
            let mut values = Vec::new();
            for kind in ValueKind::ALL {
                let Some(column) = part(kind.suffix()) else {
                    continue;
                };
                if let Value::Array(items) = cell(column.as_ref(), row, Some(kind)) {
                    values.extend(items.into_iter().filter(|item| !item.is_null()));
                }
            }
            values.sort_by(compare);
            Value::Array(values)
        }
        AnalysisType::Percentile => {
            let mut numbers = part("value")
                .map(|column| collected_numbers(column.as_ref(), row))
                .unwrap_or_default();
            exact_percentile(&mut numbers, metric.percentile.unwrap_or(50.0))
                .map_or(Value::Null, number)
        }
        analysis => match part("value").map(|column| cell(column.as_ref(), row, None)) {
            Some(Value::Null) | None => empty_value(analysis),
            Some(value) => value.as_f64().map(number).unwrap_or(value),
        },
    }
}

/// The non-null numbers an `array_agg` collected for one row, read straight from the Arrow list (no JSON
/// value per number: at 10M events that was most of a percentile's time).
fn collected_numbers(column: &dyn Array, row: usize) -> Vec<f64> {
    use arrow::array::AsArray;
    let Some(lists) = column.as_list_opt::<i32>() else {
        return Vec::new();
    };
    if lists.is_null(row) {
        return Vec::new();
    }
    let items = lists.value(row);
    let Some(numbers) = items.as_primitive_opt::<arrow::datatypes::Float64Type>() else {
        return Vec::new();
    };
    numbers.iter().flatten().collect()
}

/// The exact percentile with linear interpolation between closest ranks (as SQL's `percentile_cont`),
/// by selection (expected linear time) rather than a full sort.
fn exact_percentile(values: &mut [f64], percentile: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = percentile / 100.0 * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let (_, lower_value, above) = values.select_nth_unstable_by(lower, f64::total_cmp);
    let lower_value = *lower_value;
    if rank == lower as f64 || above.is_empty() {
        return Some(lower_value);
    }
    let upper_value = above
        .iter()
        .copied()
        .min_by(f64::total_cmp)
        .unwrap_or(lower_value);
    Some(lower_value + (upper_value - lower_value) * (rank - lower as f64))
}

/// The rendered group value; a `ranges` group shows its range as `{"from", "to"}`.
fn group_value(batch: &RecordBatch, row: usize, group_index: usize, group: &GroupBy) -> Value {
    if let GroupBy::Ranges { ranges, .. } = group {
        let column = batch.column_by_name(&group_alias(group_index, ValueKind::Num));
        let index = column.and_then(|column| cell(column.as_ref(), row, None).as_u64());
        return match index.and_then(|index| ranges.get(index as usize)) {
            Some((from, to)) => json!({"from": from.map(number), "to": to.map(number)}),
            None => Value::Null,
        };
    }
    for kind in ValueKind::ALL {
        let Some(column) = batch.column_by_name(&group_alias(group_index, kind)) else {
            continue;
        };
        if column.is_valid(row) {
            return cell(column.as_ref(), row, Some(kind));
        }
    }
    Value::Null
}

fn rows_of(batches: &[RecordBatch], group_by: &[GroupBy], metrics: &[Metric]) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let bucket = batch
                .column_by_name(BUCKET_ALIAS)
                .and_then(|column| cell(column.as_ref(), row, None).as_u64())
                .map(|b| b as usize);
            rows.push(Row {
                bucket,
                groups: group_by
                    .iter()
                    .enumerate()
                    .map(|(index, group)| group_value(batch, row, index, group))
                    .collect(),
                values: metrics
                    .iter()
                    .enumerate()
                    .map(|(index, metric)| metric_value(batch, row, index, metric))
                    .collect(),
            });
        }
    }
    rows
}

/// The JSON a row's metrics take: the single value, or an object of labelled values.
fn metrics_json(metrics: &[Metric], values: &[Value]) -> Value {
    match metrics {
        [Metric { label: None, .. }] => values.first().cloned().unwrap_or(Value::Null),
        _ => Value::Object(
            metrics
                .iter()
                .zip(values)
                .map(|(metric, value)| (metric.label.clone().unwrap_or_default(), value.clone()))
                .collect(),
        ),
    }
}

/// A group_by row: the group properties (flat dotted keys), then `result` or the labels.
pub(crate) fn group_row(
    group_by: &[GroupBy],
    groups: &[Value],
    metrics: &[Metric],
    values: &[Value],
) -> Value {
    let mut row = Map::new();
    for (group, value) in group_by.iter().zip(groups) {
        row.insert(group.property().to_string(), value.clone());
    }
    match metrics_json(metrics, values) {
        Value::Object(labelled) if metrics.iter().any(|metric| metric.label.is_some()) => {
            row.extend(labelled);
        }
        single => {
            row.insert("result".into(), single);
        }
    }
    Value::Object(row)
}

pub(crate) fn sort_and_limit(rows: &mut Vec<Value>, order_by: &[OrderBy], limit: Option<usize>) {
    if !order_by.is_empty() {
        rows.sort_by(|left, right| {
            for order in order_by {
                let ordering = compare(&left[&order.property], &right[&order.property]);
                let ordering = if order.descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering.is_ne() {
                    return ordering;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    if let Some(limit) = limit {
        rows.truncate(limit);
    }
}

fn check_order_by(query: &Query, metrics: &[Metric]) -> Result<()> {
    for order in &query.order_by {
        let known = order.property == "result"
            || query
                .group_by
                .iter()
                .any(|group| group.property() == order.property)
            || metrics
                .iter()
                .any(|metric| metric.label.as_deref() == Some(order.property.as_str()));
        if !known {
            return Err(QueryError::InvalidParameter(format!(
                "order_by '{}' is neither 'result' nor a group_by property.",
                order.property
            ))
            .into());
        }
    }
    Ok(())
}

/// Runs a metric analysis (or multi_analysis); returns the body and what it scanned.
pub(crate) async fn run_metrics(
    source: &EventSource,
    query: &Query,
    scope: &Scope,
    now: i64,
) -> Result<(Value, Scanned)> {
    if let Some(answered) = crate::metadata_answers::answer(source, query, scope).await? {
        return Ok(answered);
    }
    let metrics = metrics_of(query);
    check_order_by(query, &metrics)?;
    // Planning is lazy: nothing is read before the aggregate below runs.
    let (filtered, range) = query_frame(source, scope, query, now).await?;
    let boundaries = match (&query.interval, range) {
        (Some(interval), Some(range)) => {
            Some(interval.boundaries(range, query.timezone, MAX_BUCKETS)?)
        }
        _ => None,
    };
    let scanned = filtered.scanned.clone();
    let max_cells = source.limits.max_result_cells;
    let buckets = boundaries
        .as_ref()
        .map_or(1, |b| b.len().saturating_sub(1).max(1));
    check_cells(buckets.saturating_mul(metrics.len()), max_cells)?;
    let batches = aggregate(filtered, boundaries.clone(), &query.group_by, &metrics).await?;
    // The values collected into lists (select_unique, percentile) are counted before any is rendered.
    check_cells(listed_values(&batches, &metrics), max_cells)?;
    let rows = rows_of(&batches, &query.group_by, &metrics);
    check_cells(result_cells(&rows, buckets, metrics.len()), max_cells)?;
    let empty: Vec<Value> = metrics
        .iter()
        .map(|metric| empty_value(metric.analysis))
        .collect();

    let result = match (&boundaries, query.group_by.is_empty()) {
        (None, true) => rows.first().map_or_else(
            || metrics_json(&metrics, &empty),
            |row| metrics_json(&metrics, &row.values),
        ),
        (None, false) => {
            let mut grouped: Vec<Value> = ordered_groups(&rows)
                .iter()
                .map(|(groups, values)| group_row(&query.group_by, groups, &metrics, values))
                .collect();
            sort_and_limit(&mut grouped, &query.order_by, query.limit);
            Value::Array(grouped)
        }
        (Some(boundaries), grouped) => {
            let all_groups: Vec<Vec<Value>> = ordered_groups(&rows)
                .into_iter()
                .map(|(groups, _)| groups)
                .collect();
            // One lookup per (bucket, group): the aggregate gives at most one row for each.
            let by_bucket_and_group: HashMap<(usize, String), &Row> = rows
                .iter()
                .filter_map(|row| Some(((row.bucket?, group_key(&row.groups)), row)))
                .collect();
            let values_at = |bucket: usize, groups: &[Value]| {
                by_bucket_and_group
                    .get(&(bucket, group_key(groups)))
                    .map_or_else(|| empty.clone(), |row| row.values.clone())
            };
            let buckets = boundaries.windows(2).enumerate().map(|(bucket, window)| {
                let timeframe =
                    json!({"start": format_instant(window[0]), "end": format_instant(window[1])});
                let value = if grouped {
                    metrics_json(&metrics, &values_at(bucket, &[]))
                } else {
                    let mut group_rows: Vec<Value> = all_groups
                        .iter()
                        .map(|groups| {
                            group_row(
                                &query.group_by,
                                groups,
                                &metrics,
                                &values_at(bucket, groups),
                            )
                        })
                        .collect();
                    sort_and_limit(&mut group_rows, &query.order_by, query.limit);
                    Value::Array(group_rows)
                };
                json!({"value": value, "timeframe": timeframe})
            });
            Value::Array(buckets.collect())
        }
    };
    Ok((json!({ "result": result }), scanned))
}

/// The values the select_unique lists of the aggregate hold, counted in Arrow before any is rendered.
/// (Percentile samples are collected too, but only one number per cell is rendered; their memory is
/// the query's memory budget's concern.)
fn listed_values(batches: &[RecordBatch], metrics: &[Metric]) -> usize {
    use arrow::array::AsArray;
    let mut listed = 0usize;
    for (index, metric) in metrics.iter().enumerate() {
        if metric.analysis != AnalysisType::SelectUnique {
            continue;
        }
        for kind in ValueKind::ALL {
            let name = metric_alias(index, kind.suffix());
            for batch in batches {
                let lists = batch
                    .column_by_name(&name)
                    .and_then(|column| column.as_list_opt::<i32>());
                listed += lists.map_or(0, |lists| lists.values().len());
            }
        }
    }
    listed
}

/// The values an answer built from `rows` holds: every (bucket, group, metric) cell — with an interval and
/// group_by every group appears in every bucket — plus the values of select_unique lists.
fn result_cells(rows: &[Row], buckets: usize, metrics: usize) -> usize {
    let groups = rows
        .iter()
        .map(|row| group_key(&row.groups))
        .collect::<std::collections::HashSet<_>>()
        .len()
        .max(1);
    let listed: usize = rows
        .iter()
        .flat_map(|row| &row.values)
        .map(|value| value.as_array().map_or(0, Vec::len))
        .sum();
    buckets
        .saturating_mul(groups)
        .saturating_mul(metrics)
        .saturating_add(listed)
}

fn check_cells(cells: usize, max_cells: usize) -> Result<()> {
    if cells <= max_cells {
        return Ok(());
    }
    Err(QueryError::LimitExceeded(format!(
        "This query's answer would hold {cells} values, more than the {max_cells} one answer may hold; narrow it with a timeframe, filters, a longer interval or fewer group_by properties."
    ))
    .into())
}

/// A group's identity: its values as JSON text (so `5` and `"5"` stay distinct).
pub(crate) fn group_key(groups: &[Value]) -> String {
    serde_json::to_string(groups).unwrap_or_default()
}

/// Distinct group value lists in their default order, each with its values when not bucketed.
fn ordered_groups(rows: &[Row]) -> Vec<(Vec<Value>, Vec<Value>)> {
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for row in rows {
        let key = group_key(&row.groups);
        groups
            .entry(key)
            .or_insert_with(|| (row.groups.clone(), row.values.clone()));
    }
    let mut ordered: Vec<(Vec<Value>, Vec<Value>)> = groups.into_values().collect();
    ordered.sort_by(|(left, _), (right, _)| {
        compare(&Value::Array(left.clone()), &Value::Array(right.clone()))
    });
    ordered
}

#[cfg(test)]
mod tests {
    use super::exact_percentile;

    fn by_sorting(values: &[f64], percentile: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = percentile / 100.0 * (sorted.len() - 1) as f64;
        let (lower, upper) = (rank.floor() as usize, rank.ceil() as usize);
        sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - lower as f64)
    }

    #[test]
    fn selection_gives_the_same_percentile_as_sorting() {
        let mut seed = 17u64;
        for length in [1usize, 2, 3, 10, 101, 1000] {
            let values: Vec<f64> = (0..length)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((seed >> 33) % 500) as f64 / 4.0
                })
                .collect();
            for percentile in [0.0, 1.0, 25.0, 50.0, 90.0, 99.9, 100.0] {
                let mut work = values.clone();
                assert_eq!(
                    exact_percentile(&mut work, percentile),
                    Some(by_sorting(&values, percentile)),
                    "{length} values, p{percentile}"
                );
            }
        }
        assert_eq!(exact_percentile(&mut [], 50.0), None);
    }
}
