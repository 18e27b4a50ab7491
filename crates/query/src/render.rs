//! Turning Arrow values back into Keen JSON: numbers that are integral render as JSON integers (as Keen
//! does), type-drift columns render with their own JSON type, and a total order over JSON values gives
//! group_by rows and select_unique lists a stable order (null < false < true < numbers < strings < lists).

use std::cmp::Ordering;

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StringArray,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::DataType;
use keyhole_model::ValueKind;
use serde_json::Value;

/// A float as Keen shows it: integral values (within 2^53) as integers; NaN and infinities as null.
pub(crate) fn number(value: f64) -> Value {
    if !value.is_finite() {
        return Value::Null;
    }
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        return Value::from(value as i64);
    }
    Value::from(value)
}

/// One cell as JSON; `kind` says how a type-drift column's text is meant (`#list_json` holds JSON).
pub(crate) fn cell(array: &dyn Array, row: usize, kind: Option<ValueKind>) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Float64 => number(
            array
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .value(row),
        ),
        DataType::Int64 => Value::from(
            array
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64")
                .value(row),
        ),
        DataType::Int32 => Value::from(
            array
                .as_any()
                .downcast_ref::<Int32Array>()
                .expect("i32")
                .value(row),
        ),
        DataType::UInt64 => Value::from(
            array
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("u64")
                .value(row),
        ),
        DataType::Boolean => match kind {
            Some(ValueKind::Null) => Value::Null,
            Some(ValueKind::EmptyObject) => Value::Object(serde_json::Map::default()),
            _ => Value::Bool(
                array
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("bool")
                    .value(row),
            ),
        },
        DataType::Utf8 => {
            let text = array
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .value(row);
            if kind == Some(ValueKind::MixedList) {
                return serde_json::from_str(text).unwrap_or(Value::Null);
            }
            Value::String(text.to_string())
        }
        DataType::Utf8View => {
            let text = array.as_string_view().value(row);
            if kind == Some(ValueKind::MixedList) {
                return serde_json::from_str(text).unwrap_or(Value::Null);
            }
            Value::String(text.to_string())
        }
        DataType::Timestamp(_, _) => {
            let millis = array
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .expect("timestamp")
                .value(row);
            Value::String(keyhole_model::timestamp::format_timestamp(millis))
        }
        DataType::List(_) => {
            let lists = array.as_any().downcast_ref::<ListArray>().expect("list");
            let items = lists.value(row);
            let element_kind = if kind == Some(ValueKind::MixedList) {
                Some(ValueKind::MixedList)
            } else {
                None
            };
            Value::Array(
                (0..items.len())
                    .map(|index| cell(items.as_ref(), index, element_kind))
                    .collect(),
            )
        }
        DataType::LargeList(_) => {
            let items = array.as_list::<i64>().value(row);
            Value::Array(
                (0..items.len())
                    .map(|index| cell(items.as_ref(), index, kind))
                    .collect(),
            )
        }
        _ => Value::Null,
    }
}

fn rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A total order over JSON values for stable output.
pub(crate) fn compare(left: &Value, right: &Value) -> Ordering {
    match (left, right) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0)),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter().zip(b) {
                let ordering = compare(x, y);
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            a.len().cmp(&b.len())
        }
        _ => rank(left)
            .cmp(&rank(right))
            .then_with(|| left.to_string().cmp(&right.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_numbers_render_as_integers() {
        assert_eq!(number(3.0), json!(3));
        assert_eq!(number(3.5), json!(3.5));
        assert_eq!(number(f64::NAN), Value::Null);
        assert_eq!(number(1e300), json!(1e300));
    }

    #[test]
    fn json_order_is_total() {
        let mut values = vec![
            json!("b"),
            json!(2),
            json!(null),
            json!([1]),
            json!(true),
            json!(1.5),
            json!("a"),
            json!(false),
        ];
        values.sort_by(compare);
        assert_eq!(
            values,
            vec![
                json!(null),
                json!(false),
                json!(true),
                json!(1.5),
                json!(2),
                json!("a"),
                json!("b"),
                json!([1])
            ]
        );
    }
}
