//! Turning a Keen result into plain rows, and comparing rows from two engines.
//!
//! Each benchmark query declares the shape of its Keen result ([`ResultShape`]); its rows are then laid out
//! like the SQL's `SELECT` list, so Keyhole's answer and DuckDB's (or chDB's) can be compared as multisets of
//! rows. Numbers compare with a relative tolerance of 1e-9 (sums of floats add up in different orders);
//! everything else exactly. Interval buckets and groups whose value is 0 are dropped from Keen's side,
//! because SQL's `GROUP BY` has no row for an empty bucket.

use serde_json::Value;

use crate::query_set::ResultShape;

pub type Rows = Vec<Vec<Value>>;

fn is_zero(value: &Value) -> bool {
    value.as_f64() == Some(0.0)
}

fn group_value(row: &Value, property: &str) -> Value {
    row.get(property).cloned().unwrap_or(Value::Null)
}

fn path_value(event: &Value, path: &str) -> Value {
    path.split('.')
        .try_fold(event, |value, part| value.get(part))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A Keen result as rows in the order of the equivalent SQL's columns.
pub fn keen_rows(shape: &ResultShape, result: &Value) -> Rows {
    let items = || result.as_array().cloned().unwrap_or_default();
    match shape {
        ResultShape::Scalar => vec![vec![result.clone()]],
        ResultShape::Groups(property) => items()
            .iter()
            .map(|row| vec![group_value(row, property), row["result"].clone()])
            .collect(),
        ResultShape::Intervals => items()
            .iter()
            .filter(|bucket| !is_zero(&bucket["value"]))
            .map(|bucket| {
                vec![
                    bucket["timeframe"]["start"].clone(),
                    bucket["value"].clone(),
                ]
            })
            .collect(),
        ResultShape::IntervalGroups(property) => items()
            .iter()
            .flat_map(|bucket| {
                let start = bucket["timeframe"]["start"].clone();
                let groups = bucket["value"].as_array().cloned().unwrap_or_default();
                groups
                    .into_iter()
                    .filter(|group| !is_zero(&group["result"]))
                    .map(move |group| {
                        vec![
                            start.clone(),
                            group_value(&group, property),
                            group["result"].clone(),
                        ]
                    })
            })
            .collect(),
        ResultShape::List => items().into_iter().map(|value| vec![value]).collect(),
        ResultShape::Funnel => vec![items()],
        ResultShape::Multi(labels) => vec![
            labels
                .iter()
                .map(|label| result.get(*label).cloned().unwrap_or(Value::Null))
                .collect(),
        ],
        ResultShape::Extraction(paths) => items()
            .iter()
            .map(|event| paths.iter().map(|path| path_value(event, path)).collect())
            .collect(),
    }
}

fn same_value(left: &Value, right: &Value) -> bool {
    match (left.as_f64(), right.as_f64()) {
        (Some(left), Some(right)) => {
            (left - right).abs() <= 1e-9 * left.abs().max(right.abs()).max(1.0)
        }
        _ => left == right,
    }
}

/// Orders rows by their non-numeric cells, then by their numbers.
fn row_order(left: &[Value], right: &[Value]) -> std::cmp::Ordering {
    let strings = |row: &[Value]| -> Vec<String> {
        row.iter()
            .filter(|value| !value.is_number())
            .map(Value::to_string)
            .collect()
    };
    let numbers = |row: &[Value]| -> Vec<f64> { row.iter().filter_map(Value::as_f64).collect() };
    strings(left).cmp(&strings(right)).then_with(|| {
        numbers(left)
            .iter()
            .zip(numbers(right).iter())
            .map(|(a, b)| a.total_cmp(b))
            .find(|ordering| ordering.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

fn sorted(rows: &[Vec<Value>]) -> Rows {
    let mut rows = rows.to_vec();
    rows.sort_by(|left, right| row_order(left, right));
    rows
}

/// Whether two row sets hold the same rows, in any order. Rows are ordered by their non-numeric cells
/// (group, bucket start), then by their numbers (an extraction's events differ only there); aggregate rows
/// are told apart by their non-numeric cells alone, so float noise in a sum cannot reorder them.
pub fn same_rows(left: &[Vec<Value>], right: &[Vec<Value>]) -> bool {
    let (left, right) = (sorted(left), sorted(right));
    left.len() == right.len()
        && left
            .iter()
            .zip(&right)
            .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn groups_compare_in_any_order_within_tolerance() {
        let keen =
            json!([{"action": "click", "result": 3}, {"action": "view", "result": 0.1 + 0.2}]);
        let rows = keen_rows(&ResultShape::Groups("action"), &keen);
        assert!(same_rows(
            &rows,
            &[
                vec![json!("view"), json!(0.3)],
                vec![json!("click"), json!(3)]
            ]
        ));
        assert!(!same_rows(
            &rows,
            &[
                vec![json!("view"), json!(0.3)],
                vec![json!("click"), json!(4)]
            ]
        ));
        assert!(!same_rows(&rows, &[vec![json!("click"), json!(3)]]));
    }

    #[test]
    fn rows_that_differ_only_in_numbers_compare_in_any_order() {
        let one = vec![json!("u1"), json!("view"), json!(2.5), json!(10)];
        let two = vec![json!("u1"), json!("view"), json!(1.5), json!(20)];
        assert!(same_rows(
            &[one.clone(), two.clone()],
            &[two.clone(), one.clone()]
        ));
        assert!(!same_rows(&[one.clone(), one.clone()], &[two, one]));
    }

    #[test]
    fn empty_interval_buckets_are_dropped_and_extraction_follows_paths() {
        let keen = json!([
            {"timeframe": {"start": "a", "end": "b"}, "value": 0},
            {"timeframe": {"start": "b", "end": "c"}, "value": 2}
        ]);
        assert_eq!(
            keen_rows(&ResultShape::Intervals, &keen),
            vec![vec![json!("b"), json!(2)]]
        );
        let events = json!([{"user": {"id": "u1"}, "amount": 1.5}]);
        assert_eq!(
            keen_rows(
                &ResultShape::Extraction(&["user.id", "amount", "missing"]),
                &events
            ),
            vec![vec![json!("u1"), json!(1.5), Value::Null]]
        );
    }
}
