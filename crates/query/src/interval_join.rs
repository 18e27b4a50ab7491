//! Joining interval results computed over adjacent parts of one timeframe (stored closed buckets of a
//! dataset, then a live query for the rest) into the answer one query over the whole timeframe gives.
//!
//! Without `group_by` the buckets are independent and simply concatenate. With `group_by` every bucket of
//! a whole-timeframe answer lists every group seen anywhere in the timeframe (absent ones with the empty
//! value, see `results`), so the parts' groups are united and each bucket refilled and reordered. With
//! `group_by` and `limit` a bucket's rows depend on groups it may have dropped, so such queries are not
//! joinable ([`is_joinable`]) and are always computed whole.

use std::collections::{BTreeMap, HashMap};

use keyhole_model::query::Query;
use serde_json::Value;

use crate::render::compare;
use crate::results::{empty_value, group_key, group_row, metrics_of, sort_and_limit};

/// Whether interval answers of this query over adjacent parts can be joined.
pub fn is_joinable(query: &Query) -> bool {
    query.group_by.is_empty() || query.limit.is_none()
}

/// Refills the joined buckets (`[{"timeframe", "value"}, …]`) so every bucket lists every group.
pub fn align_interval_groups(query: &Query, buckets: &mut [Value]) {
    if query.group_by.is_empty() {
        return;
    }
    let metrics = metrics_of(query);
    let empty: Vec<Value> = metrics
        .iter()
        .map(|metric| empty_value(metric.analysis))
        .collect();
    let groups_of = |row: &Value| -> Vec<Value> {
        query
            .group_by
            .iter()
            .map(|group| row.get(group.property()).cloned().unwrap_or(Value::Null))
            .collect()
    };
    let mut all_groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for bucket in buckets.iter() {
        for row in bucket["value"].as_array().into_iter().flatten() {
            let groups = groups_of(row);
            all_groups.insert(group_key(&groups), groups);
        }
    }
    let mut ordered: Vec<Vec<Value>> = all_groups.into_values().collect();
    ordered
        .sort_by(|left, right| compare(&Value::Array(left.clone()), &Value::Array(right.clone())));
    for bucket in buckets.iter_mut() {
        let mut present: HashMap<String, Value> = bucket["value"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| (group_key(&groups_of(row)), row.clone()))
            .collect();
        let mut rows: Vec<Value> = ordered
            .iter()
            .map(|groups| {
                present
                    .remove(&group_key(groups))
                    .unwrap_or_else(|| group_row(&query.group_by, groups, &metrics, &empty))
            })
            .collect();
        sort_and_limit(&mut rows, &query.order_by, query.limit);
        bucket["value"] = Value::Array(rows);
    }
}
