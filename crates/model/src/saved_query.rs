//! Saved query definitions as Keen's API carries them (`PUT /queries/saved/{name}`): `{"query": {…},
//! "metadata": {…}, "refresh_rate": N, "query_name": "…"}`, validated once at the edge. The query is
//! checked by the same parser ad-hoc queries go through, so a saved query that was accepted runs.
//!
//! Design: names use the characters Keen's clients produce (`[A-Za-z0-9_-]`, as PHP's helper cleans
//! them), at most 256. `refresh_rate` is 0 (a plain saved query) or, for a cached query, 4 h to 48 h in
//! seconds — Keen's bounds (the Java SDK's 24 h and the Explorer's 48 h, the wider kept).

use serde_json::{Map, Value};

use crate::key_options::{KeyDefinitionError, invalid};
use crate::query::{AnalysisType, Query};

/// Shortest and longest refresh of a cached query, seconds.
pub(crate) const MIN_REFRESH_SECONDS: u64 = 4 * 3600;
pub(crate) const MAX_REFRESH_SECONDS: u64 = 48 * 3600;
/// Longest saved query name.
pub(crate) const MAX_NAME_CHARS: usize = 256;

/// A validated saved query.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedQueryDefinition {
    /// The name it is stored under (`query_name` in the body renames it).
    pub name: String,
    /// The query object as given, with `analysis_type`.
    pub query_json: Map<String, Value>,
    /// The caller's metadata, kept as given.
    pub metadata: Value,
    /// Seconds between refreshes of the cached result (0: computed live).
    pub refresh_rate: u64,
}

/// Whether `name` can name a saved query.
pub(crate) fn is_saved_query_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Parses a stored or posted query object into a runnable query.
pub fn parse_saved_query(query_json: &Map<String, Value>) -> Result<Query, KeyDefinitionError> {
    let analysis = query_json
        .get("analysis_type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("query.analysis_type is required."))?;
    let analysis = AnalysisType::parse(analysis).map_err(|error| invalid(error.to_string()))?;
    let mut params = query_json.clone();
    params.remove("analysis_type");
    Query::parse(analysis, &params).map_err(|error| invalid(format!("query: {error}")))
}

impl SavedQueryDefinition {
    /// Parses a `PUT /queries/saved/{name}` body.
    pub fn parse(
        name_in_path: &str,
        body: &Value,
    ) -> Result<SavedQueryDefinition, KeyDefinitionError> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("A saved query must be a JSON object."))?;
        const FIELDS: [&str; 8] = [
            "query",
            "metadata",
            "refresh_rate",
            "query_name",
            "created_date",
            "last_modified_date",
            "user_last_modified_date",
            "run_information",
        ];
        if let Some(unknown) = object
            .keys()
            .find(|field| !FIELDS.contains(&field.as_str()))
        {
            return Err(invalid(format!(
                "{unknown} is not a field of a saved query."
            )));
        }
        let name = match object.get("query_name") {
            None | Some(Value::Null) => name_in_path.to_string(),
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(invalid("query_name must be a string.")),
        };
        if !is_saved_query_name(&name) {
            return Err(invalid(
                "A saved query name is 1 to 256 characters of A-Z, a-z, 0-9, _ and -.",
            ));
        }
        let query_json = object
            .get("query")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| invalid("query must be an object with the query's parameters."))?;
        parse_saved_query(&query_json)?;
        let refresh_rate = match object.get("refresh_rate") {
            None | Some(Value::Null) => 0,
            Some(value) => value
                .as_u64()
                .filter(|rate| {
                    *rate == 0 || (MIN_REFRESH_SECONDS..=MAX_REFRESH_SECONDS).contains(rate)
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "refresh_rate must be 0 or between {MIN_REFRESH_SECONDS} and {MAX_REFRESH_SECONDS} seconds."
                    ))
                })?,
        };
        let metadata = match object.get("metadata") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(metadata)) => Value::Object(metadata.clone()),
            Some(_) => return Err(invalid("metadata must be an object.")),
        };
        Ok(SavedQueryDefinition {
            name,
            query_json,
            metadata,
            refresh_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_keen_saved_query_bodies() {
        let definition = SavedQueryDefinition::parse(
            "daily-signups",
            &json!({"refresh_rate": 0, "query": {"analysis_type": "count", "event_collection": "signups", "timeframe": "this_7_days", "interval": "daily"},
                    "metadata": {"display_name": "Daily signups", "visualization": {"chart_type": "line"}}}),
        )
        .unwrap();
        assert_eq!(definition.name, "daily-signups");
        assert_eq!(definition.refresh_rate, 0);
        let renamed = SavedQueryDefinition::parse(
            "old",
            &json!({"query_name": "new-name", "query": {"analysis_type": "count", "event_collection": "c"}}),
        )
        .unwrap();
        assert_eq!(renamed.name, "new-name");
        assert_eq!(renamed.metadata, json!({}));
    }

    #[test]
    fn refuses_what_would_not_run() {
        for (name, body) in [
            ("q", json!({"query": {"event_collection": "c"}})),
            (
                "q",
                json!({"query": {"analysis_type": "counting", "event_collection": "c"}}),
            ),
            (
                "q",
                json!({"query": {"analysis_type": "sum", "event_collection": "c"}}),
            ),
            (
                "q",
                json!({"query": {"analysis_type": "count", "event_collection": "c"}, "refresh_rate": 60}),
            ),
            (
                "q",
                json!({"query": {"analysis_type": "count", "event_collection": "c"}, "colour": 1}),
            ),
            (
                "bad name",
                json!({"query": {"analysis_type": "count", "event_collection": "c"}}),
            ),
            ("q", json!({"query": "count"})),
        ] {
            assert!(
                SavedQueryDefinition::parse(name, &body).is_err(),
                "{name} {body}"
            );
        }
    }
}
