//! An independent reference evaluator for Keen queries over raw JSON events, used to check Keyhole's
//! answers. It shares no code with the engine: it walks the JSON, applies the documented filter semantics
//! directly, and computes day boundaries with chrono-tz itself.

use std::cmp::Ordering;

use chrono::{Duration, NaiveDate, TimeZone};
use serde_json::{Value, json};

/// The value at a dotted path; `None` when missing.
pub fn get<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = event;
    for part in path.split('.') {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn same(left: &Value, right: &Value) -> bool {
    match (left.as_f64(), right.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => left == right,
    }
}

fn time_of(value: &Value) -> Option<i64> {
    keyhole_model::timestamp::parse_timestamp(value.as_str()?)
}

fn equals(value: Option<&Value>, wanted: &Value) -> bool {
    match (value, wanted) {
        (None | Some(Value::Null), Value::Null) => true,
        (None, _) | (_, Value::Null) => false,
        (Some(Value::Array(items)), _) => items.iter().any(|item| same(item, wanted)),
        (Some(value), _) => same(value, wanted),
    }
}

fn ordered(
    value: Option<&Value>,
    wanted: &Value,
    path: &str,
    accept: fn(Ordering) -> bool,
) -> bool {
    let Some(value) = value else { return false };
    if path == "keen.timestamp" {
        return match (time_of(value), time_of(wanted)) {
            (Some(a), Some(b)) => accept(a.cmp(&b)),
            _ => false,
        };
    }
    match (value, wanted) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .unwrap()
            .partial_cmp(&b.as_f64().unwrap())
            .is_some_and(accept),
        (Value::String(a), Value::String(b)) => accept(a.as_str().cmp(b.as_str())),
        _ => false,
    }
}

fn contains(value: Option<&Value>, wanted: &Value) -> bool {
    match (value, wanted) {
        (Some(Value::String(text)), Value::String(part)) => text.contains(part.as_str()),
        (Some(Value::Array(items)), _) => items.iter().any(|item| same(item, wanted)),
        _ => false,
    }
}

/// Whether `event` passes `filter` (Keyhole's documented semantics).
pub fn passes(event: &Value, filter: &Value) -> bool {
    let operator = filter["operator"].as_str().unwrap();
    if operator == "or" {
        return filter["operands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|operand| passes(event, operand));
    }
    let path = filter["property_name"].as_str().unwrap();
    let value = get(event, path);
    let wanted = &filter["property_value"];
    match operator {
        "eq" => equals(value, wanted),
        "ne" => !equals(value, wanted),
        "lt" => ordered(value, wanted, path, Ordering::is_lt),
        "lte" => ordered(value, wanted, path, Ordering::is_le),
        "gt" => ordered(value, wanted, path, Ordering::is_gt),
        "gte" => ordered(value, wanted, path, Ordering::is_ge),
        "exists" => value.is_some() == wanted.as_bool().unwrap(),
        "in" => wanted
            .as_array()
            .unwrap()
            .iter()
            .any(|candidate| equals(value, candidate)),
        "contains" => contains(value, wanted),
        "not_contains" => !contains(value, wanted),
        "regex" => match value {
            Some(Value::String(text)) => regex_lite_match(text, wanted.as_str().unwrap()),
            _ => false,
        },
        "within" => {
            let Some(Value::Array(point)) = value else {
                return false;
            };
            let (longitude, latitude) = (
                point[0].as_f64().unwrap().to_radians(),
                point[1].as_f64().unwrap().to_radians(),
            );
            let center = wanted["coordinates"].as_array().unwrap();
            let (center_longitude, center_latitude) = (
                center[0].as_f64().unwrap().to_radians(),
                center[1].as_f64().unwrap().to_radians(),
            );
            let a = ((latitude - center_latitude) / 2.0).sin().powi(2)
                + latitude.cos()
                    * center_latitude.cos()
                    * ((longitude - center_longitude) / 2.0).sin().powi(2);
            2.0 * 3958.8 * a.sqrt().asin() <= wanted["max_distance_miles"].as_f64().unwrap()
        }
        other => panic!("reference evaluator does not know {other}"),
    }
}

/// The regexes the suite uses are anchored prefixes `^abc` or plain substrings.
fn regex_lite_match(text: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('^') {
        Some(prefix) => text.starts_with(prefix),
        None => text.contains(pattern),
    }
}

fn numbers(events: &[&Value], target: &str) -> Vec<f64> {
    events
        .iter()
        .filter_map(|event| get(event, target))
        .filter_map(Value::as_f64)
        .collect()
}

fn distinct_values(events: &[&Value], target: &str) -> Vec<Value> {
    let mut values: Vec<Value> = Vec::new();
    for event in events {
        let Some(value) = get(event, target) else {
            continue;
        };
        if value.is_null() || value.is_object() {
            continue;
        }
        if !values
            .iter()
            .any(|known| known == value || (value.is_number() && same(known, value)))
        {
            values.push(value.clone());
        }
    }
    values.sort_by(json_order);
    values
}

pub fn json_order(left: &Value, right: &Value) -> Ordering {
    let rank = |value: &Value| match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    };
    match (left, right) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => a.as_f64().unwrap().total_cmp(&b.as_f64().unwrap()),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .map(|(x, y)| json_order(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(a.len().cmp(&b.len())),
        _ => rank(left).cmp(&rank(right)),
    }
}

/// One analysis over a set of events, as Keyhole documents each.
pub fn analyse(analysis: &str, events: &[&Value], target: &str, percentile: f64) -> Value {
    let values = numbers(events, target);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let quantile = |fraction: f64| {
        if sorted.is_empty() {
            return Value::Null;
        }
        let rank = fraction * (sorted.len() - 1) as f64;
        let (lower, upper) = (rank.floor() as usize, rank.ceil() as usize);
        json!(sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - lower as f64))
    };
    match analysis {
        "count" => json!(events.len()),
        "count_unique" => json!(distinct_values(events, target).len()),
        "select_unique" => Value::Array(distinct_values(events, target)),
        "sum" => json!(values.iter().sum::<f64>()),
        _ if values.is_empty() => Value::Null,
        "minimum" => json!(sorted[0]),
        "maximum" => json!(sorted[sorted.len() - 1]),
        "average" => json!(mean),
        "median" => quantile(0.5),
        "percentile" => quantile(percentile / 100.0),
        "standard_deviation" => {
            json!((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count).sqrt())
        }
        other => panic!("unknown analysis {other}"),
    }
}

/// The group value of an event for a group_by path: scalars and lists as they are; missing, null and
/// objects as null.
pub fn group_value(event: &Value, path: &str) -> Value {
    match get(event, path) {
        None | Some(Value::Object(_)) => Value::Null,
        Some(value) => value.clone(),
    }
}

/// Local-midnight boundaries of every day from `first` to `last` (inclusive) in `zone`, as UTC millis.
pub fn day_boundaries(zone: chrono_tz::Tz, first: NaiveDate, days: i64) -> Vec<i64> {
    (0..=days)
        .map(|offset| {
            let date = first + Duration::days(offset);
            zone.with_ymd_and_hms(
                date.year_ce().1 as i32,
                date.month0() + 1,
                date.day0() + 1,
                0,
                0,
                0,
            )
            .single()
            .expect("midnight exists in the zones used")
            .timestamp_millis()
        })
        .collect()
}

use chrono::Datelike;
