//! Keen filters → DataFusion predicates over the type-drift columns.
//!
//! A filter on a path tests each typed column of the path that can match the filter value's JSON type:
//! `eq 5` looks at `path#num` (and inside `path#list_num`), `eq "5"` at `path#str` (and `path#list_str`).
//! Every predicate is null-safe (a missing property makes it false, never null), so `ne`, `not_contains`
//! and `exists: false` are plain negations and match events that lack the property.
//!
//! Design: on list properties `eq`/`in` test membership, `contains` tests membership of the value,
//! on strings `contains` is a substring test. `eq null` matches an explicit null or a missing property.
//! Ordering operators compare numbers with numbers and strings lexically with strings; on
//! `keen.timestamp`/`keen.created_at` they compare instants. `regex` uses Rust regex syntax.

use datafusion::prelude::*;
use datafusion::scalar::ScalarValue;
use keyhole_model::ValueKind;
use keyhole_model::query::{Filter, GeoRadius, Operator, QueryError};
use keyhole_model::timestamp::parse_timestamp;
use serde_json::Value;

use crate::columns::PropertyColumns;

const EARTH_RADIUS_MILES: f64 = 3958.8;

/// The AND of `filters` over a collection with `schema`, as a row filter (a row is kept only where it is
/// true); `None` when there are none.
pub(crate) fn conjunction(
    filters: &[Filter],
    schema: &arrow::datatypes::Schema,
) -> Result<Option<Expr>, QueryError> {
    let mut predicates = Vec::with_capacity(filters.len());
    for filter in filters {
        predicates.push(without_null_guards(predicate(filter, schema)?));
    }
    Ok(balanced(predicates, Expr::and))
}

/// Combines expressions pairwise into a balanced tree, so a long AND or OR is only log2(n) deep: the
/// optimizer and the evaluator recurse into expressions, and a chain of a thousand conditions built
/// left-deep would overflow their stacks.
pub(crate) fn balanced(
    mut expressions: Vec<Expr>,
    combine: fn(Expr, Expr) -> Expr,
) -> Option<Expr> {
    while expressions.len() > 1 {
        let mut combined = Vec::with_capacity(expressions.len().div_ceil(2));
        let mut remaining = expressions.into_iter();
        while let Some(left) = remaining.next() {
            match remaining.next() {
                Some(right) => combined.push(combine(left, right)),
                None => combined.push(left),
            }
        }
        expressions = combined;
    }
    expressions.pop()
}

/// Removes the `coalesce(p, false)` guards that are not needed where the predicate is used as a row filter:
/// under AND and OR a row filter keeps a row exactly where `p` is true, whether the guard is there or not
/// (`null OR true` is true, `null OR false` and `null AND x` are not). Guards under NOT stay. Without the
/// guards, DataFusion can use Parquet statistics and page indexes to skip data (`tenant_id#str = 't020'`
/// prunes; `coalesce(tenant_id#str = 't020', false)` does not).
fn without_null_guards(predicate: Expr) -> Expr {
    use datafusion::logical_expr::{BinaryExpr, Operator as BinaryOperator};
    match predicate {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, BinaryOperator::And | BinaryOperator::Or) =>
        {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(without_null_guards(*left)),
                op,
                Box::new(without_null_guards(*right)),
            ))
        }
        Expr::ScalarFunction(function)
            if function.name() == "coalesce"
                && function.args.len() == 2
                && function.args[1] == lit(false) =>
        {
            let mut args = function.args;
            without_null_guards(args.swap_remove(0))
        }
        other => other,
    }
}

fn null_safe(expr: Expr) -> Expr {
    coalesce(vec![expr, lit(false)])
}

fn any_of(predicates: Vec<Expr>) -> Expr {
    balanced(predicates.into_iter().map(null_safe).collect(), Expr::or).unwrap_or(lit(false))
}

pub(crate) fn predicate(
    filter: &Filter,
    schema: &arrow::datatypes::Schema,
) -> Result<Expr, QueryError> {
    match filter {
        Filter::Or(operands) => {
            let mut predicates = Vec::with_capacity(operands.len());
            for operand in operands {
                predicates.push(predicate(operand, schema)?);
            }
            Ok(any_of(predicates))
        }
        Filter::Within { property, radius } => {
            Ok(within(&PropertyColumns::of(schema, property), radius))
        }
        Filter::Condition {
            property,
            operator,
            value,
        } => {
            let columns = PropertyColumns::of(schema, property);
            condition(&columns, *operator, value)
        }
    }
}

fn time_literal(millis: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(millis),
        Some("UTC".into()),
    ))
}

/// The typed column and literal a scalar JSON value is compared with, list column for membership.
fn scalar_targets(columns: &PropertyColumns, value: &Value) -> Vec<(Expr, Option<Expr>, Expr)> {
    let mut targets = Vec::new();
    match (columns, value) {
        (PropertyColumns::Time(name), Value::String(text)) => {
            if let Some(millis) = parse_timestamp(text) {
                targets.push((crate::columns::column(name), None, time_literal(millis)));
            }
        }
        (_, Value::Number(number)) => {
            let literal = lit(number.as_f64().unwrap_or(f64::NAN));
            if let Some(scalar) = columns.typed(ValueKind::Num) {
                targets.push((scalar, columns.typed(ValueKind::NumList), literal));
            } else if let Some(list) = columns.typed(ValueKind::NumList) {
                targets.push((lit(ScalarValue::Float64(None)), Some(list), literal));
            }
        }
        (_, Value::String(text)) => {
            let scalar = columns
                .typed(ValueKind::Str)
                .unwrap_or(lit(ScalarValue::Utf8(None)));
            targets.push((scalar, columns.typed(ValueKind::StrList), lit(text.clone())));
        }
        (_, Value::Bool(flag)) => {
            let scalar = columns
                .typed(ValueKind::Bool)
                .unwrap_or(lit(ScalarValue::Boolean(None)));
            targets.push((scalar, columns.typed(ValueKind::BoolList), lit(*flag)));
        }
        _ => {}
    }
    targets
}

fn exists(columns: &PropertyColumns) -> Expr {
    match columns {
        PropertyColumns::Time(_) | PropertyColumns::Id => lit(true),
        PropertyColumns::Typed(_) => any_of(
            columns
                .all()
                .into_iter()
                .map(|(_, column)| column.is_not_null())
                .collect(),
        ),
    }
}

fn is_null_or_missing(columns: &PropertyColumns) -> Expr {
    match columns {
        PropertyColumns::Time(_) | PropertyColumns::Id => lit(false),
        PropertyColumns::Typed(_) => {
            let explicit_null = columns
                .typed(ValueKind::Null)
                .map_or(lit(false), |column| null_safe(column.is_true()));
            explicit_null.or(exists(columns).not())
        }
    }
}

fn equals(columns: &PropertyColumns, value: &Value) -> Expr {
    if value.is_null() {
        return is_null_or_missing(columns);
    }
    let mut predicates = Vec::new();
    for (scalar, list, literal) in scalar_targets(columns, value) {
        predicates.push(scalar.eq(literal.clone()));
        if let Some(list) = list {
            predicates.push(array_has(list, literal));
        }
    }
    any_of(predicates)
}

fn condition(
    columns: &PropertyColumns,
    operator: Operator,
    value: &Value,
) -> Result<Expr, QueryError> {
    Ok(match operator {
        Operator::Eq => equals(columns, value),
        Operator::Ne => equals(columns, value).not(),
        Operator::In => is_in(
            columns,
            value.as_array().map(Vec::as_slice).unwrap_or_default(),
        ),
        Operator::Exists => {
            if value.as_bool() == Some(false) {
                exists(columns).not()
            } else {
                exists(columns)
            }
        }
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
            let compare = |left: Expr, right: Expr| match operator {
                Operator::Lt => left.lt(right),
                Operator::Lte => left.lt_eq(right),
                Operator::Gt => left.gt(right),
                _ => left.gt_eq(right),
            };
            any_of(
                scalar_targets(columns, value)
                    .into_iter()
                    .map(|(scalar, _, literal)| compare(scalar, literal))
                    .collect(),
            )
        }
        Operator::Contains => contains(columns, value),
        Operator::NotContains => contains(columns, value).not(),
        Operator::Regex => {
            let pattern = value.as_str().unwrap_or_default();
            regex::Regex::new(pattern).map_err(|error| {
                QueryError::InvalidFilter(format!("Invalid regular expression: {error}"))
            })?;
            match columns.typed(ValueKind::Str) {
                Some(column) => null_safe(regexp_like(column, lit(pattern.to_string()), None)),
                None => lit(false),
            }
        }
        Operator::Within => lit(false),
    })
}

/// `in`: one `IN (…)` list per typed column and one `array_has_any` per list column, whatever the number of
/// values (an OR of one equality per value would be as deep as the list is long).
fn is_in(columns: &PropertyColumns, values: &[Value]) -> Expr {
    let mut predicates = Vec::new();
    let kinds: [fn(&Value) -> bool; 3] = [Value::is_number, Value::is_string, Value::is_boolean];
    for is_kind in kinds {
        let targets: Vec<(Expr, Option<Expr>, Expr)> = values
            .iter()
            .filter(|value| is_kind(value))
            .flat_map(|value| scalar_targets(columns, value))
            .collect();
        let Some((scalar, list, _)) = targets.first().cloned() else {
            continue;
        };
        let literals: Vec<Expr> = targets.into_iter().map(|(_, _, literal)| literal).collect();
        if let Some(list) = list {
            predicates.push(array_has_any(list, make_array(literals.clone())));
        }
        predicates.push(scalar.in_list(literals, false));
    }
    if values.iter().any(Value::is_null) {
        predicates.push(is_null_or_missing(columns));
    }
    any_of(predicates)
}

fn contains(columns: &PropertyColumns, value: &Value) -> Expr {
    let mut predicates = Vec::new();
    if let (Value::String(text), Some(column)) = (value, columns.typed(ValueKind::Str)) {
        predicates.push(strpos(column, lit(text.clone())).gt(lit(0i64)));
    }
    for (_, list, literal) in scalar_targets(columns, value) {
        if let Some(list) = list {
            predicates.push(array_has(list, literal));
        }
    }
    any_of(predicates)
}

/// Great-circle distance (haversine) from `[longitude, latitude]` to the radius's centre, in miles.
fn within(columns: &PropertyColumns, radius: &GeoRadius) -> Expr {
    let Some(coordinates) = columns.typed(ValueKind::NumList) else {
        return lit(false);
    };
    let longitude = radians(array_element(coordinates.clone(), lit(1i64)));
    let latitude = radians(array_element(coordinates, lit(2i64)));
    let (center_longitude, center_latitude) = (
        lit(radius.longitude.to_radians()),
        lit(radius.latitude.to_radians()),
    );
    let half_delta_latitude = (latitude.clone() - center_latitude.clone()) / lit(2.0);
    let half_delta_longitude = (longitude - center_longitude) / lit(2.0);
    let a = power(sin(half_delta_latitude), lit(2.0))
        + cos(latitude) * cos(center_latitude) * power(sin(half_delta_longitude), lit(2.0));
    let distance = lit(2.0 * EARTH_RADIUS_MILES) * asin(sqrt(a));
    null_safe(distance.lt_eq(lit(radius.max_distance_miles)))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;

    use super::*;

    fn filters(value: serde_json::Value) -> Vec<Filter> {
        Filter::parse_list(&value).unwrap()
    }

    #[test]
    fn row_filters_drop_null_guards_except_under_not() {
        let schema = Schema::new(vec![Field::new("tenant_id#str", DataType::Utf8, true)]);
        let eq = conjunction(
            &filters(
                json!([{"property_name": "tenant_id", "operator": "eq", "property_value": "t1"}]),
            ),
            &schema,
        )
        .unwrap()
        .unwrap();
        assert_eq!(eq, col("tenant_id#str").eq(lit("t1")));
        let ne = conjunction(
            &filters(
                json!([{"property_name": "tenant_id", "operator": "ne", "property_value": "t1"}]),
            ),
            &schema,
        )
        .unwrap()
        .unwrap();
        assert!(ne.to_string().contains("coalesce"), "{ne}");
    }
}
