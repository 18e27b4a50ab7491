//! Cached dataset definitions as Keen's API carries them (`PUT /datasets/{name}`: `{"display_name",
//! "query": {…}, "index_by": "prop" | ["a", "b"]}`) and the index values a results request names
//! (`GET /datasets/{name}/results?index_by=…`), validated once at the edge.
//!
//! Design: a dataset's query is an interval query (Keen computes one value per interval bucket), so it
//! must have `interval` and `timeframe` and be an analysis that takes an interval (not `funnel` or
//! `extraction`). Names use the saved-query charset. An index value selects the events whose index
//! properties equal it; a value sent raw in the query string that reads as a JSON number or boolean
//! (`index_by=42`) is ambiguous — keen-analysis sends strings raw and other values JSON-encoded — so it
//! matches the property holding either the string or the typed value.

use serde_json::{Map, Value};

use crate::key_options::{KeyDefinitionError, invalid};
use crate::query::{AnalysisType, Filter, Operator, Query};
use crate::saved_query::{is_saved_query_name, parse_saved_query};

/// Most `index_by` properties one dataset may have.
pub(crate) const MAX_INDEX_PROPERTIES: usize = 10;

/// A validated dataset definition.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetDefinition {
    /// The dataset's name, unique in its project.
    pub name: String,
    /// The name shown to people.
    pub display_name: String,
    /// The query object as given, with `analysis_type`.
    pub query_json: Map<String, Value>,
    /// The properties results are indexed by.
    pub index_by: Vec<String>,
}

impl DatasetDefinition {
    /// Parses a `PUT /datasets/{name}` body.
    pub fn parse(name: &str, body: &Value) -> Result<DatasetDefinition, KeyDefinitionError> {
        if !is_saved_query_name(name) {
            return Err(invalid(
                "A dataset name is 1 to 256 characters of A-Z, a-z, 0-9, _ and -.",
            ));
        }
        let object = body
            .as_object()
            .ok_or_else(|| invalid("A dataset must be a JSON object."))?;
        const FIELDS: [&str; 10] = [
            "display_name",
            "query",
            "index_by",
            "dataset_name",
            "project_id",
            "organization_id",
            "last_scheduled_date",
            "latest_subtimeframe_available",
            "milliseconds_behind",
            "created_date",
        ];
        if let Some(unknown) = object
            .keys()
            .find(|field| !FIELDS.contains(&field.as_str()))
        {
            return Err(invalid(format!("{unknown} is not a field of a dataset.")));
        }
        if let Some(other) = object.get("dataset_name").and_then(Value::as_str)
            && other != name
        {
            return Err(invalid(
                "dataset_name must match the name in the path (datasets cannot be renamed).",
            ));
        }
        let display_name = match object.get("display_name") {
            None | Some(Value::Null) => name.to_string(),
            Some(Value::String(display)) if display.chars().count() <= 1_000 => display.clone(),
            Some(_) => {
                return Err(invalid(
                    "display_name must be a string of at most 1000 characters.",
                ));
            }
        };
        let mut query_json = object
            .get("query")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| invalid("query must be an object with the query's parameters."))?;
        // Keen echoes the project in the stored query; it is not a query parameter.
        query_json.remove("project_id");
        let query = parse_saved_query(&query_json)?;
        if matches!(
            query.analysis,
            AnalysisType::Funnel | AnalysisType::Extraction
        ) {
            return Err(invalid(
                "A dataset's query must be an analysis that takes an interval (not funnel or extraction).",
            ));
        }
        if query.interval.is_none() || query.timeframe.is_none() {
            return Err(invalid(
                "A dataset's query needs an interval and a timeframe.",
            ));
        }
        let index_by = match object.get("index_by") {
            Some(Value::String(property)) => vec![property.clone()],
            Some(Value::Array(properties)) => properties
                .iter()
                .map(|property| property.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| invalid("index_by must be a property name or a list of them."))?,
            _ => {
                return Err(invalid(
                    "index_by must be a property name or a list of them.",
                ));
            }
        };
        if index_by.is_empty() || index_by.len() > MAX_INDEX_PROPERTIES {
            return Err(invalid(format!(
                "index_by must name 1 to {MAX_INDEX_PROPERTIES} properties."
            )));
        }
        if index_by.iter().any(std::string::String::is_empty) {
            return Err(invalid("index_by property names must not be empty."));
        }
        let mut unique = index_by.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != index_by.len() {
            return Err(invalid("index_by names a property twice."));
        }
        Ok(DatasetDefinition {
            name: name.to_string(),
            display_name,
            query_json,
            index_by,
        })
    }

    /// The definition's query, parsed (stored definitions were validated when saved).
    pub fn query(&self) -> Result<Query, KeyDefinitionError> {
        parse_saved_query(&self.query_json)
    }
}

/// One index property's value in a results request: the values an event's property may hold to match.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexValue {
    /// The index property.
    pub property: String,
    /// One value, or two for a raw value that reads as a number or boolean (the text and the typed value).
    pub matches: Vec<Value>,
}

impl IndexValue {
    /// The filter selecting this value's events.
    pub fn filter(&self) -> Filter {
        let (operator, value) = match self.matches.as_slice() {
            [single] => (Operator::Eq, single.clone()),
            several => (Operator::In, Value::Array(several.to_vec())),
        };
        Filter::Condition {
            property: self.property.clone(),
            operator,
            value,
        }
    }

    /// This value as a key restricted to `allowed` (a value or a list of values) may read it: only the
    /// readings the key lists, `None` when it lists none. An ambiguous bare `42` (the text and the number)
    /// read by a key pinned to the number `42` reads the number only.
    pub fn narrowed_to(&self, allowed: &Value) -> Option<IndexValue> {
        let allowed: &[Value] = match allowed {
            Value::Array(values) => values,
            single => std::slice::from_ref(single),
        };
        let matches: Vec<Value> = self
            .matches
            .iter()
            .filter(|value| allowed.contains(value))
            .cloned()
            .collect();
        if matches.is_empty() {
            return None;
        }
        Some(IndexValue {
            property: self.property.clone(),
            matches,
        })
    }

    /// The canonical text of a full index (for cache keys), in `index_by` order.
    pub fn canonical(values: &[IndexValue]) -> String {
        Value::Array(
            values
                .iter()
                .map(|value| Value::Array(value.matches.clone()))
                .collect(),
        )
        .to_string()
    }
}

/// Parses the `index_by` parameter of a results request for a dataset indexed by `index_by`. One
/// property: the value raw (`acme`), JSON-encoded (`"acme"`, `42`), or as `{"prop": value}`; several: a
/// JSON object naming every index property.
pub fn parse_index_values(
    index_by: &[String],
    raw: &str,
) -> Result<Vec<IndexValue>, KeyDefinitionError> {
    let parsed: Option<Value> = serde_json::from_str(raw).ok();
    if let Some(Value::Object(object)) = &parsed {
        if object.len() != index_by.len() || index_by.iter().any(|p| !object.contains_key(p)) {
            return Err(invalid(format!(
                "index_by must give a value for exactly the dataset's index properties: {}.",
                index_by.join(", ")
            )));
        }
        return index_by
            .iter()
            .map(|property| typed_value(property, &object[property]))
            .collect();
    }
    let [property] = index_by else {
        return Err(invalid(format!(
            "This dataset is indexed by several properties; index_by must be a JSON object with {}.",
            index_by.join(", ")
        )));
    };
    let matches = match parsed {
        Some(Value::String(text)) => vec![Value::String(text)],
        Some(typed @ (Value::Number(_) | Value::Bool(_))) => {
            vec![Value::String(raw.to_string()), typed]
        }
        Some(Value::Null | Value::Array(_) | Value::Object(_)) => {
            return Err(invalid("index_by must be a string, a number or a boolean."));
        }
        None => vec![Value::String(raw.to_string())],
    };
    Ok(vec![IndexValue {
        property: property.clone(),
        matches,
    }])
}

fn typed_value(property: &str, value: &Value) -> Result<IndexValue, KeyDefinitionError> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(IndexValue {
            property: property.to_string(),
            matches: vec![value.clone()],
        }),
        _ => Err(invalid(format!(
            "index_by.{property} must be a string, a number or a boolean."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition(body: Value) -> Result<DatasetDefinition, KeyDefinitionError> {
        DatasetDefinition::parse("ds", &body)
    }

    #[test]
    fn parses_keen_dataset_bodies() {
        let parsed = definition(json!({"display_name": "Signups", "index_by": "vendor.id",
            "query": {"analysis_type": "count", "event_collection": "signups", "timeframe": "this_30_days", "interval": "daily", "project_id": "p"}}))
        .unwrap();
        assert_eq!(parsed.index_by, vec!["vendor.id".to_string()]);
        assert!(!parsed.query_json.contains_key("project_id"));
        let several = definition(json!({"index_by": ["a", "b"],
            "query": {"analysis_type": "sum", "target_property": "x", "event_collection": "c", "timeframe": "this_2_days", "interval": "hourly"}}))
        .unwrap();
        assert_eq!(several.display_name, "ds");
    }

    #[test]
    fn refuses_what_cannot_be_a_dataset() {
        let query = json!({"analysis_type": "count", "event_collection": "c", "timeframe": "this_3_days", "interval": "daily"});
        for body in [
            json!({"index_by": "a"}),
            json!({"query": query}),
            json!({"query": query, "index_by": []}),
            json!({"query": query, "index_by": ["a", "a"]}),
            json!({"query": query, "index_by": 5}),
            json!({"query": query, "index_by": "a", "colour": 1}),
            json!({"query": {"analysis_type": "count", "event_collection": "c", "timeframe": "this_3_days"}, "index_by": "a"}),
            json!({"query": {"analysis_type": "count", "event_collection": "c", "interval": "daily"}, "index_by": "a"}),
            json!({"query": {"analysis_type": "extraction", "event_collection": "c", "timeframe": "this_3_days", "interval": "daily"}, "index_by": "a"}),
        ] {
            assert!(definition(body.clone()).is_err(), "{body}");
        }
    }

    #[test]
    fn index_values_read_raw_encoded_and_object_forms() {
        let one = vec!["vendor".to_string()];
        let value = |raw: &str| parse_index_values(&one, raw).unwrap()[0].matches.clone();
        assert_eq!(value("acme"), vec![json!("acme")]);
        assert_eq!(value("\"42\""), vec![json!("42")]);
        assert_eq!(value("42"), vec![json!("42"), json!(42)]);
        assert_eq!(value("{\"vendor\": 7}"), vec![json!(7)]);
        assert!(parse_index_values(&one, "[1]").is_err());
        let two = vec!["a".to_string(), "b".to_string()];
        assert!(parse_index_values(&two, "x").is_err());
        assert!(parse_index_values(&two, "{\"a\": 1}").is_err());
        let both = parse_index_values(&two, "{\"b\": \"y\", \"a\": 1}").unwrap();
        assert_eq!(both[0].filter().to_json()["property_name"], "a");
        let ambiguous = &parse_index_values(&one, "42").unwrap()[0];
        let narrowed = |allowed: Value| ambiguous.narrowed_to(&allowed).map(|value| value.matches);
        assert_eq!(narrowed(json!("42")), Some(vec![json!("42")]));
        assert_eq!(narrowed(json!([42])), Some(vec![json!(42)]));
        assert_eq!(
            narrowed(json!(["42", 42])),
            Some(vec![json!("42"), json!(42)])
        );
        assert_eq!(narrowed(json!(["acme", 7])), None);
        let acme = &parse_index_values(&one, "acme").unwrap()[0];
        assert!(acme.narrowed_to(&json!("acme")).is_some());
        assert!(acme.narrowed_to(&json!(["globex"])).is_none());
    }
}
