//! Keen filters as typed values: `{"property_name", "operator", "property_value"}`, AND-ed in a list, and
//! `or` groups (`{"operator": "or", "operands": [...]}` or with the operands in `property_value`).

use serde_json::Value;

use super::QueryError;

/// A filter's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Equal (on a list: holds the value).
    Eq,
    /// Not equal (matches events lacking the property).
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// The property is present (or, with `false`, absent).
    Exists,
    /// One of a list of values.
    In,
    /// A string containing the value (a list holding it).
    Contains,
    /// The negation of `contains`.
    NotContains,
    /// Within a radius of a point (`keen.location.coordinates`).
    Within,
    /// Matches a regular expression.
    Regex,
}

impl Operator {
    const NAMES: [(Operator, &'static str); 12] = [
        (Operator::Eq, "eq"),
        (Operator::Ne, "ne"),
        (Operator::Lt, "lt"),
        (Operator::Lte, "lte"),
        (Operator::Gt, "gt"),
        (Operator::Gte, "gte"),
        (Operator::Exists, "exists"),
        (Operator::In, "in"),
        (Operator::Contains, "contains"),
        (Operator::NotContains, "not_contains"),
        (Operator::Within, "within"),
        (Operator::Regex, "regex"),
    ];

    /// Keen's names of every operator, in a fixed order.
    pub fn keen_names() -> impl Iterator<Item = &'static str> {
        Operator::NAMES.iter().map(|(_, name)| *name)
    }

    /// Keen's name for the operator.
    pub fn keen_name(self) -> &'static str {
        Operator::NAMES
            .iter()
            .find(|(operator, _)| *operator == self)
            .map_or("eq", |(_, name)| name)
    }

    fn parse(text: &str) -> Option<Operator> {
        Operator::NAMES
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(operator, _)| *operator)
    }
}

/// A geo radius for `within`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoRadius {
    /// The center's longitude.
    pub longitude: f64,
    /// The center's latitude.
    pub latitude: f64,
    /// The radius, in miles.
    pub max_distance_miles: f64,
}

/// One filter, or an `or` of filters.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// A property compared with a value.
    Condition {
        /// The property path.
        property: String,
        /// The comparison.
        operator: Operator,
        /// The value compared with.
        value: Value,
    },
    /// A geo radius.
    Within {
        /// The property path (always `keen.location.coordinates`).
        property: String,
        /// The radius.
        radius: GeoRadius,
    },
    /// Any of the operands.
    Or(Vec<Filter>),
}

/// The only property the geo filter accepts (Keen's rule).
pub(crate) const GEO_PROPERTY: &str = "keen.location.coordinates";

/// Most conditions one filter list may hold, counting every operand of `or` groups. A query's lists
/// together (root and funnel steps) share one such budget, see `Query::parse`.
pub(crate) const MAX_FILTER_CONDITIONS: usize = 1_000;
/// Most values one `in` filter may list.
pub(crate) const MAX_IN_VALUES: usize = 10_000;
/// Deepest nesting of `or` groups (a plain list of filters is depth 1).
pub(crate) const MAX_FILTER_DEPTH: usize = 8;
/// Longest `regex` pattern, in bytes.
pub(crate) const MAX_REGEX_BYTES: usize = 1_000;
/// Largest compiled `regex` program, in bytes (the `regex` crate's own default is 10 MiB).
pub(crate) const MAX_COMPILED_REGEX_BYTES: usize = 1 << 20;

impl Filter {
    /// Parses a `filters` parameter: a list of filter objects (AND-ed). The limits above are checked
    /// here, before anything is planned, so no filter list can make planning recurse without bound.
    pub fn parse_list(value: &Value) -> Result<Vec<Filter>, QueryError> {
        let filters = match value {
            Value::Null => Vec::new(),
            Value::Array(items) => {
                if items.len() > MAX_FILTER_CONDITIONS {
                    return Err(too_many_conditions());
                }
                items
                    .iter()
                    .map(|item| Filter::parse_at_depth(item, 1))
                    .collect::<Result<_, _>>()?
            }
            Value::Object(_) => vec![Filter::parse_at_depth(value, 1)?],
            _ => {
                return Err(QueryError::InvalidFilter(
                    "filters must be a list of filter objects.".into(),
                ));
            }
        };
        if count_conditions(&filters) > MAX_FILTER_CONDITIONS {
            return Err(too_many_conditions());
        }
        Ok(filters)
    }

    /// Parses one filter object.
    pub fn parse(value: &Value) -> Result<Filter, QueryError> {
        let filter = Filter::parse_at_depth(value, 1)?;
        if count_conditions(std::slice::from_ref(&filter)) > MAX_FILTER_CONDITIONS {
            return Err(too_many_conditions());
        }
        Ok(filter)
    }

    /// The filter as Keen JSON (what [`Filter::parse`] reads back to the same filter).
    pub fn to_json(&self) -> Value {
        match self {
            Filter::Condition {
                property,
                operator,
                value,
            } => {
                serde_json::json!({"property_name": property, "operator": operator.keen_name(), "property_value": value})
            }
            Filter::Within { property, radius } => serde_json::json!({
                "property_name": property, "operator": "within",
                "property_value": {"coordinates": [radius.longitude, radius.latitude], "max_distance_miles": radius.max_distance_miles},
            }),
            Filter::Or(operands) => serde_json::json!({
                "operator": "or",
                "operands": operands.iter().map(Filter::to_json).collect::<Vec<_>>(),
            }),
        }
    }

    /// The conditions this filter holds (an `or` group counts its operands).
    pub fn conditions(&self) -> usize {
        match self {
            Filter::Or(operands) => count_conditions(operands),
            _ => 1,
        }
    }

    fn parse_at_depth(value: &Value, depth: usize) -> Result<Filter, QueryError> {
        let invalid = |why: &str| {
            QueryError::InvalidFilter(format!("Invalid filter {}: {why}", abbreviated(value)))
        };
        let object = value
            .as_object()
            .ok_or_else(|| invalid("a filter must be an object."))?;
        let operator = object
            .get("operator")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("it needs an operator."))?;
        if operator == "or" {
            let operands = object
                .get("operands")
                .or_else(|| object.get("property_value"))
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("an 'or' filter needs a list of operands."))?;
            if operands.is_empty() {
                return Err(invalid("an 'or' filter needs at least one operand."));
            }
            if depth >= MAX_FILTER_DEPTH {
                return Err(QueryError::InvalidFilter(format!(
                    "'or' filters may be nested at most {MAX_FILTER_DEPTH} levels deep."
                )));
            }
            if operands.len() > MAX_FILTER_CONDITIONS {
                return Err(too_many_conditions());
            }
            return Ok(Filter::Or(
                operands
                    .iter()
                    .map(|operand| Filter::parse_at_depth(operand, depth + 1))
                    .collect::<Result<_, _>>()?,
            ));
        }
        let operator = Operator::parse(operator).ok_or_else(|| invalid("unknown operator."))?;
        let property = object
            .get("property_name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| invalid("it needs a property_name."))?
            .to_string();
        // A missing value is refused, not read as `null`: `{"operator": "eq"}` meaning "is null" would turn
        // a forgotten value in a key's filter into a different filter than the one intended.
        let value = object
            .get("property_value")
            .cloned()
            .ok_or_else(|| invalid("it needs a property_value."))?;
        match operator {
            Operator::Within => Ok(Filter::Within {
                property: property.clone(),
                radius: parse_radius(&property, &value)?,
            }),
            Operator::Exists if !value.is_boolean() => Err(invalid("exists takes true or false.")),
            Operator::In if !value.is_array() => Err(invalid("in takes a list of values.")),
            Operator::In
                if value
                    .as_array()
                    .is_some_and(|values| values.len() > MAX_IN_VALUES) =>
            {
                Err(QueryError::InvalidFilter(format!(
                    "An 'in' filter may list at most {MAX_IN_VALUES} values."
                )))
            }
            Operator::Regex | Operator::Contains | Operator::NotContains
                if !value.is_string() && !value.is_number() && !value.is_boolean() =>
            {
                Err(invalid("this operator takes a string."))
            }
            Operator::Regex => {
                let pattern = value
                    .as_str()
                    .ok_or_else(|| invalid("regex takes a string."))?;
                if pattern.len() > MAX_REGEX_BYTES {
                    return Err(invalid("the regular expression is too long."));
                }
                // The query engine evaluates patterns with the same `regex` crate, so a pattern accepted
                // here compiles there; the size limit bounds the compiled program, not only the text.
                regex::RegexBuilder::new(pattern)
                    .size_limit(MAX_COMPILED_REGEX_BYTES)
                    .build()
                    .map_err(|error| {
                        invalid(&format!("the regular expression does not compile: {error}"))
                    })?;
                Ok(Filter::Condition {
                    property,
                    operator,
                    value,
                })
            }
            Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte
                if !(value.is_number() || value.is_string()) =>
            {
                Err(invalid("ordering operators take a number or a string."))
            }
            _ => Ok(Filter::Condition {
                property,
                operator,
                value,
            }),
        }
    }
}

fn too_many_conditions() -> QueryError {
    QueryError::InvalidFilter(format!(
        "A query may hold at most {MAX_FILTER_CONDITIONS} filter conditions (counting each operand of an 'or')."
    ))
}

/// The conditions in a list of filters.
pub(crate) fn count_conditions(filters: &[Filter]) -> usize {
    filters.iter().map(Filter::conditions).sum()
}

/// A filter's JSON for an error message, cut short: a refused filter may be megabytes long.
fn abbreviated(value: &Value) -> String {
    const MAX_CHARS: usize = 200;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut}…")
}

fn parse_radius(property: &str, value: &Value) -> Result<GeoRadius, QueryError> {
    if property != GEO_PROPERTY {
        return Err(QueryError::InvalidGeoFilterProperty(format!(
            "A geo filter works only on {GEO_PROPERTY}, not on '{property}'."
        )));
    }
    let invalid = || {
        QueryError::InvalidFilter(format!(
            "Invalid within filter value {value}: it needs coordinates [longitude, latitude] and max_distance_miles."
        ))
    };
    let coordinates = value
        .get("coordinates")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?;
    let (Some(longitude), Some(latitude)) = (
        coordinates.first().and_then(Value::as_f64),
        coordinates.get(1).and_then(Value::as_f64),
    ) else {
        return Err(invalid());
    };
    let max_distance_miles = value
        .get("max_distance_miles")
        .and_then(Value::as_f64)
        .filter(|d| *d >= 0.0)
        .ok_or_else(invalid)?;
    Ok(GeoRadius {
        longitude,
        latitude,
        max_distance_miles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_operator_and_or_groups() {
        for operator in [
            "eq",
            "ne",
            "lt",
            "lte",
            "gt",
            "gte",
            "contains",
            "not_contains",
            "regex",
        ] {
            let filter = Filter::parse(
                &json!({"property_name": "a", "operator": operator, "property_value": "x"}),
            )
            .unwrap();
            assert!(matches!(filter, Filter::Condition { .. }), "{operator}");
        }
        Filter::parse(&json!({"property_name": "a", "operator": "exists", "property_value": true}))
            .unwrap();
        Filter::parse(&json!({"property_name": "a", "operator": "in", "property_value": [1, "b"]}))
            .unwrap();
        let within = Filter::parse(&json!({"property_name": GEO_PROPERTY, "operator": "within", "property_value": {"coordinates": [13.4, 52.5], "max_distance_miles": 10}})).unwrap();
        assert!(matches!(within, Filter::Within { .. }));
        let or = json!({"operator": "or", "operands": [{"property_name": "a", "operator": "eq", "property_value": 1}]});
        assert!(
            matches!(Filter::parse(&or).unwrap(), Filter::Or(ref operands) if operands.len() == 1)
        );
        let or_in_value = json!({"operator": "or", "property_value": [{"property_name": "a", "operator": "eq", "property_value": 1}]});
        assert!(matches!(
            Filter::parse(&or_in_value).unwrap(),
            Filter::Or(_)
        ));
    }

    #[test]
    fn refuses_malformed_filters() {
        for bad in [
            json!({"property_name": "a", "operator": "like", "property_value": "x"}),
            json!({"operator": "eq", "property_value": "x"}),
            json!({"property_name": "a", "operator": "exists", "property_value": "yes"}),
            json!({"property_name": "a", "operator": "in", "property_value": 1}),
            json!({"operator": "or", "operands": []}),
            json!({"property_name": GEO_PROPERTY, "operator": "within", "property_value": {"coordinates": [1]}}),
            json!("eq"),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
        let wrong_geo = json!({"property_name": "loc", "operator": "within", "property_value": {"coordinates": [1, 2], "max_distance_miles": 1}});
        assert!(matches!(
            Filter::parse(&wrong_geo),
            Err(QueryError::InvalidGeoFilterProperty(_))
        ));
    }
}
