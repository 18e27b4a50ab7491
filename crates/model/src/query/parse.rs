//! Parsing query parameters into a [`Query`].
//!
//! GET and POST carry the same parameters: a POST body is a JSON object; a GET query string is turned into
//! one by [`params_from_query_string`] (values that look like JSON are parsed, Explorer's bracket form
//! `timeframe[start]=…` becomes an object). Numbers may arrive as numeric strings (the Python SDK sends
//! `percentile`, `limit`, `latest`, `timezone` as decimal text). Unknown keys (`api_key`,
//! `analysis_type`, `property_type`, …) are ignored.

use serde_json::{Map, Value};

use super::filter::{MAX_FILTER_CONDITIONS, count_conditions};
use super::{
    AnalysisType, EmailDelivery, Filter, FunnelStep, GroupBy, Interval, OrderBy, Query, QueryError,
    SubAnalysis, Timeframe, Timezone,
};

/// Most entries a query may name in `group_by`, `order_by`, `steps` or `analyses`.
pub(crate) const MAX_LIST_ENTRIES: usize = 100;
/// Most `ranges` one group_by entry may list, and most `property_names` an extraction may keep.
pub(crate) const MAX_RANGES_OR_NAMES: usize = 1_000;

/// Turns a GET query string into the JSON object a POST body would be.
///
/// - A value that looks like JSON (`[…]`, `{…}`) is parsed; a JSON-quoted string (`"UTC"`, as
///   keen-analysis sends `timezone` and `timeframe` on a delete) is unquoted.
/// - PHP's bracket form (`http_build_query`): `filters[0][property_name]=n&filters[0][operator]=eq` becomes
///   `{"filters": [{"property_name": "n", "operator": "eq"}]}` — keys made of digits are array positions,
///   in index order — and Explorer's `timeframe[start]=…` an object. PHP can only send text, so a
///   bracketed `property_value` that reads as a number, `true`, `false` or `null` takes that JSON value
///   (`[property_value]=1` matches the number 1); other bracketed values stay strings. A name given both
///   plainly and bracketed is refused.
pub fn params_from_query_string(query: &str) -> Result<Map<String, Value>, QueryError> {
    let mut params = Map::new();
    let mut bracketed: Map<String, Value> = Map::new();
    for (name, raw) in crate::query_string::pairs(query) {
        if let Some((base, path)) = bracket_path(&name)? {
            insert_at_path(
                bracketed
                    .entry(base)
                    .or_insert_with(|| Value::Object(Map::new())),
                &path,
                raw,
            )?;
            continue;
        }
        params.insert(name, plain_value(raw));
    }
    for (base, value) in bracketed {
        if params.contains_key(&base) {
            let message =
                format!("You sent in an invalid definition for the {base}: multiple values.");
            return Err(if base == "timeframe" {
                QueryError::InvalidTimeframe(message)
            } else {
                QueryError::InvalidParameter(message)
            });
        }
        params.insert(base, positions_as_arrays(value));
    }
    Ok(params)
}

/// Most bracketed segments one parameter name may have (`filters[0][property_value]` has two).
const MAX_BRACKET_DEPTH: usize = 8;

fn plain_value(raw: String) -> Value {
    let trimmed = raw.trim();
    let looks_like_json = trimmed.starts_with('[')
        || trimmed.starts_with('{')
        || (trimmed.len() >= 2 && trimmed.starts_with('"') && trimmed.ends_with('"'));
    if looks_like_json {
        return serde_json::from_str(trimmed).unwrap_or(Value::String(raw));
    }
    Value::String(raw)
}

/// `filters[0][operator]` → `("filters", ["0", "operator"])`; `None` for a plain name.
fn bracket_path(name: &str) -> Result<Option<(String, Vec<String>)>, QueryError> {
    let Some(open) = name.find('[') else {
        return Ok(None);
    };
    let malformed = || {
        QueryError::InvalidParameter(format!(
            "The parameter name '{}' is not of the form name[key][key]….",
            name.chars().take(100).collect::<String>()
        ))
    };
    let (base, mut rest) = name.split_at(open);
    if base.is_empty() {
        return Err(malformed());
    }
    let mut path = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(malformed)?;
        let close = inner.find(']').ok_or_else(malformed)?;
        path.push(inner[..close].to_string());
        rest = &inner[close + 1..];
        if path.len() > MAX_BRACKET_DEPTH {
            return Err(malformed());
        }
    }
    Ok(Some((base.to_string(), path)))
}

fn insert_at_path(target: &mut Value, path: &[String], raw: String) -> Result<(), QueryError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    let Value::Object(object) = target else {
        return Err(QueryError::InvalidParameter(format!(
            "The bracketed parameter [{first}] is given both a value and keys."
        )));
    };
    if rest.is_empty() {
        if object.get(first).is_some_and(Value::is_object) {
            return Err(QueryError::InvalidParameter(format!(
                "The bracketed parameter [{first}] is given both a value and keys."
            )));
        }
        let value = if first == "property_value" {
            php_scalar(raw)
        } else {
            Value::String(raw)
        };
        object.insert(first.clone(), value);
        return Ok(());
    }
    let next = object
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    insert_at_path(next, rest, raw)
}

/// A number, `true`, `false` or `null` as that JSON value; any other text as a string.
fn php_scalar(raw: String) -> Value {
    match serde_json::from_str::<Value>(raw.trim()) {
        Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => value,
        _ => Value::String(raw),
    }
}

/// Objects whose keys are all digits become arrays, in index order (PHP's arrays).
fn positions_as_arrays(value: Value) -> Value {
    let Value::Object(object) = value else {
        return value;
    };
    let all_positions = !object.is_empty()
        && object.keys().all(|key| {
            !key.is_empty() && key.len() <= 9 && key.bytes().all(|byte| byte.is_ascii_digit())
        });
    if !all_positions {
        return Value::Object(
            object
                .into_iter()
                .map(|(key, value)| (key, positions_as_arrays(value)))
                .collect(),
        );
    }
    let mut entries: Vec<(u64, Value)> = object
        .into_iter()
        .map(|(key, value)| (key.parse().unwrap_or(u64::MAX), positions_as_arrays(value)))
        .collect();
    entries.sort_by_key(|(position, _)| *position);
    Value::Array(entries.into_iter().map(|(_, value)| value).collect())
}

fn non_empty<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    params
        .get(name)
        .filter(|value| !value.is_null() && value.as_str() != Some(""))
}

fn string_param(params: &Map<String, Value>, name: &str) -> Result<Option<String>, QueryError> {
    match non_empty(params, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(QueryError::InvalidParameter(format!(
            "{name} must be a string, got {other}."
        ))),
    }
}

/// Longest e-mail address accepted (RFC 5321's path limit).
const MAX_EMAIL_ADDRESS_CHARS: usize = 254;

fn parse_email_delivery(params: &Map<String, Value>) -> Result<Option<EmailDelivery>, QueryError> {
    let Some(to) = string_param(params, "email")? else {
        return Ok(None);
    };
    let to = to.trim().to_string();
    let plausible = to.chars().count() <= MAX_EMAIL_ADDRESS_CHARS
        && to.split('@').count() == 2
        && !to.starts_with('@')
        && !to.ends_with('@')
        && !to
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>'));
    if !plausible {
        return Err(QueryError::InvalidParameter(
            "email must be one e-mail address (name@example.com).".into(),
        ));
    }
    let json = match string_param(params, "content_type")?.as_deref() {
        None | Some("text/csv") => false,
        Some("application/json") => true,
        Some(_) => {
            return Err(QueryError::InvalidParameter(
                "content_type must be text/csv or application/json.".into(),
            ));
        }
    };
    let gzip = match string_param(params, "content_encoding")?.as_deref() {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(_) => {
            return Err(QueryError::InvalidParameter(
                "content_encoding must be gzip (or absent).".into(),
            ));
        }
    };
    Ok(Some(EmailDelivery { to, json, gzip }))
}

fn number_param(params: &Map<String, Value>, name: &str) -> Result<Option<f64>, QueryError> {
    match non_empty(params, name) {
        None => Ok(None),
        Some(Value::Number(number)) => Ok(number.as_f64()),
        Some(Value::String(text)) => text.trim().parse::<f64>().map(Some).map_err(|_| {
            QueryError::InvalidParameter(format!("{name} must be a number, got '{text}'."))
        }),
        Some(other) => Err(QueryError::InvalidParameter(format!(
            "{name} must be a number, got {other}."
        ))),
    }
}

fn count_param(params: &Map<String, Value>, name: &str) -> Result<Option<usize>, QueryError> {
    match number_param(params, name)? {
        None => Ok(None),
        Some(number) if number >= 1.0 && number.fract() == 0.0 => Ok(Some(number as usize)),
        Some(number) => Err(QueryError::InvalidParameter(format!(
            "{name} must be a positive integer, got {number}."
        ))),
    }
}

fn bool_param(params: &Map<String, Value>, name: &str) -> Result<bool, QueryError> {
    match non_empty(params, name) {
        None => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(Value::String(text)) if text == "true" || text == "1" => Ok(true),
        Some(Value::String(text)) if text == "false" || text == "0" => Ok(false),
        Some(other) => Err(QueryError::InvalidParameter(format!(
            "{name} must be true or false, got {other}."
        ))),
    }
}

/// A value that may arrive JSON-encoded inside a string (GET) or as JSON (POST).
fn json_param(params: &Map<String, Value>, name: &str) -> Option<Value> {
    let value = non_empty(params, name)?;
    if let Value::String(text) = value {
        let trimmed = text.trim();
        let looks_like_json =
            trimmed.starts_with('[') || trimmed.starts_with('{') || trimmed.starts_with('"');
        if let Some(parsed) = looks_like_json
            .then(|| serde_json::from_str(trimmed).ok())
            .flatten()
        {
            return Some(parsed);
        }
    }
    Some(value.clone())
}

fn parse_percentile(value: Option<f64>) -> Result<Option<f64>, QueryError> {
    match value {
        Some(percentile) if !(0.0..=100.0).contains(&percentile) => {
            Err(QueryError::InvalidParameter(format!(
                "percentile must be between 0 and 100, got {percentile}."
            )))
        }
        other => Ok(other),
    }
}

fn parse_group_by(value: Option<Value>) -> Result<Vec<GroupBy>, QueryError> {
    let entries = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(single) => vec![single],
    };
    if entries.len() > MAX_LIST_ENTRIES {
        return Err(QueryError::InvalidParameter(
            "group_by names too many properties.".into(),
        ));
    }
    entries.iter().map(parse_group_by_entry).collect()
}

fn parse_group_by_entry(entry: &Value) -> Result<GroupBy, QueryError> {
    let invalid = || QueryError::InvalidParameter(format!("Invalid group_by entry {entry}."));
    if let Some(property) = entry.as_str().filter(|property| !property.is_empty()) {
        return Ok(GroupBy::Property(property.to_string()));
    }
    let object = entry.as_object().ok_or_else(invalid)?;
    let property = object
        .get("property_name")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(invalid)?
        .to_string();
    if let Some(buckets) = object.get("buckets") {
        let size = buckets
            .get("size")
            .and_then(Value::as_f64)
            .filter(|size| *size > 0.0)
            .ok_or_else(invalid)?;
        let offset = buckets.get("offset").and_then(Value::as_f64).unwrap_or(0.0);
        return Ok(GroupBy::Buckets {
            property,
            size,
            offset,
        });
    }
    if let Some(ranges) = object.get("ranges").and_then(Value::as_array) {
        if ranges.len() > MAX_RANGES_OR_NAMES {
            return Err(QueryError::InvalidParameter(format!(
                "A group_by entry may list at most {MAX_RANGES_OR_NAMES} ranges."
            )));
        }
        let ranges = ranges
            .iter()
            .map(|range| {
                let from = range.get("from").and_then(Value::as_f64);
                let to = range.get("to").and_then(Value::as_f64);
                if from.is_none() && to.is_none() {
                    return Err(invalid());
                }
                Ok((from, to))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(GroupBy::Ranges { property, ranges });
    }
    Ok(GroupBy::Property(property))
}

fn parse_order_by(value: Option<Value>) -> Result<Vec<OrderBy>, QueryError> {
    let entries = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(single) => vec![single],
    };
    if entries.len() > MAX_LIST_ENTRIES {
        return Err(QueryError::InvalidParameter(
            "order_by names too many properties.".into(),
        ));
    }
    entries
        .iter()
        .map(|entry| {
            let invalid =
                || QueryError::InvalidParameter(format!("Invalid order_by entry {entry}."));
            if let Some(property) = entry.as_str() {
                return Ok(OrderBy {
                    property: property.to_string(),
                    descending: false,
                });
            }
            let property = entry
                .get("property_name")
                .and_then(Value::as_str)
                .ok_or_else(invalid)?
                .to_string();
            let descending = match entry
                .get("direction")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                None | Some("ASC") => false,
                Some("DESC") => true,
                Some(_) => return Err(invalid()),
            };
            Ok(OrderBy {
                property,
                descending,
            })
        })
        .collect()
}

fn parse_property_names(value: Option<Value>) -> Result<Option<Vec<String>>, QueryError> {
    match value {
        None => Ok(None),
        Some(Value::String(name)) => Ok(Some(vec![name])),
        Some(Value::Array(names)) if names.len() > MAX_RANGES_OR_NAMES => {
            Err(QueryError::InvalidParameter(format!(
                "property_names may list at most {MAX_RANGES_OR_NAMES} names."
            )))
        }
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| {
                name.as_str().map(str::to_string).ok_or_else(|| {
                    QueryError::InvalidParameter("property_names must be strings.".into())
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(QueryError::InvalidParameter(format!(
            "property_names must be a list of strings, got {other}."
        ))),
    }
}

fn parse_analyses(value: Option<Value>) -> Result<Vec<SubAnalysis>, QueryError> {
    let Some(Value::Object(object)) = value else {
        return Err(QueryError::MissingParameter(
            "multi_analysis needs an analyses object: {label: {analysis_type, …}}.".into(),
        ));
    };
    if object.is_empty() || object.len() > MAX_LIST_ENTRIES {
        return Err(QueryError::InvalidParameter(
            "analyses must name between 1 and 100 analyses.".into(),
        ));
    }
    object
        .iter()
        .map(|(label, definition)| {
            let definition = definition.as_object().ok_or_else(|| {
                QueryError::InvalidParameter(format!("analysis '{label}' must be an object."))
            })?;
            let analysis_name = string_param(definition, "analysis_type")?.ok_or_else(|| {
                QueryError::MissingParameter(format!("analysis '{label}' needs an analysis_type."))
            })?;
            let analysis = AnalysisType::parse(&analysis_name)?;
            if matches!(
                analysis,
                AnalysisType::Extraction | AnalysisType::Funnel | AnalysisType::MultiAnalysis
            ) {
                return Err(QueryError::InvalidParameter(format!(
                    "analysis '{label}' cannot be a {analysis_name} inside multi_analysis."
                )));
            }
            let target_property = string_param(definition, "target_property")?;
            if analysis.needs_target_property() && target_property.is_none() {
                return Err(QueryError::MissingParameter(format!(
                    "analysis '{label}' ({analysis_name}) needs a target_property."
                )));
            }
            let percentile = parse_percentile(number_param(definition, "percentile")?)?;
            if analysis == AnalysisType::Percentile && percentile.is_none() {
                return Err(QueryError::MissingParameter(format!(
                    "analysis '{label}' needs a percentile."
                )));
            }
            Ok(SubAnalysis {
                label: label.clone(),
                analysis,
                target_property,
                percentile,
            })
        })
        .collect()
}

/// Funnel steps. Keen requires a timeframe per step unless the root has one; Keyhole reads a step without
/// either as all time, like any query without a timeframe.
fn parse_steps(value: Option<Value>) -> Result<Vec<FunnelStep>, QueryError> {
    let steps = match value {
        Some(Value::Array(steps)) if !steps.is_empty() => steps,
        _ => {
            return Err(QueryError::MissingParameter(
                "A funnel needs a non-empty list of steps.".into(),
            ));
        }
    };
    if steps.len() > MAX_LIST_ENTRIES {
        return Err(QueryError::InvalidParameter(
            "A funnel may have at most 100 steps.".into(),
        ));
    }
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let object = step.as_object().ok_or_else(|| {
                QueryError::InvalidParameter(format!("funnel step {index} must be an object."))
            })?;
            let collection = string_param(object, "event_collection")?.ok_or_else(|| {
                QueryError::MissingParameter(format!(
                    "funnel step {index} needs an event_collection."
                ))
            })?;
            let actor_property = string_param(object, "actor_property")?.ok_or_else(|| {
                QueryError::MissingParameter(format!(
                    "funnel step {index} needs an actor_property."
                ))
            })?;
            let timeframe = json_param(object, "timeframe")
                .map(|value| Timeframe::parse(&value))
                .transpose()?;
            let timezone = non_empty(object, "timezone")
                .map(Timezone::parse)
                .transpose()?;
            let filters = json_param(object, "filters")
                .map(|value| Filter::parse_list(&value))
                .transpose()?
                .unwrap_or_default();
            let (optional, inverted, with_actors) = (
                bool_param(object, "optional")?,
                bool_param(object, "inverted")?,
                bool_param(object, "with_actors")?,
            );
            if index == 0 && (optional || inverted) {
                return Err(QueryError::InvalidParameter(
                    "The first funnel step cannot be optional or inverted.".into(),
                ));
            }
            let mut echo = object.clone();
            for (name, default) in [
                ("optional", optional),
                ("inverted", inverted),
                ("with_actors", with_actors),
            ] {
                echo.insert(name.into(), Value::Bool(default));
            }
            Ok(FunnelStep {
                collection,
                actor_property,
                timeframe,
                timezone,
                filters,
                optional,
                inverted,
                with_actors,
                echo: Value::Object(echo),
            })
        })
        .collect()
}

impl Query {
    /// Parses the parameters of a `/queries/{analysis}` request.
    pub fn parse(analysis: AnalysisType, params: &Map<String, Value>) -> Result<Query, QueryError> {
        let timeframe = json_param(params, "timeframe")
            .map(|value| Timeframe::parse(&value))
            .transpose()?;
        let timezone = non_empty(params, "timezone")
            .map(Timezone::parse)
            .transpose()?
            .unwrap_or_default();
        let collection = string_param(params, "event_collection")?;
        if analysis != AnalysisType::Funnel && collection.is_none() {
            return Err(QueryError::MissingParameter(
                "event_collection is required.".into(),
            ));
        }
        let target_property = string_param(params, "target_property")?;
        if analysis.needs_target_property() && target_property.is_none() {
            return Err(QueryError::MissingParameter(format!(
                "{} needs a target_property.",
                analysis.keen_name()
            )));
        }
        let percentile = parse_percentile(number_param(params, "percentile")?)?;
        if analysis == AnalysisType::Percentile && percentile.is_none() {
            return Err(QueryError::MissingParameter(
                "percentile needs a percentile between 0 and 100.".into(),
            ));
        }
        let interval = non_empty(params, "interval")
            .map(Interval::parse)
            .transpose()?;
        let group_by = parse_group_by(json_param(params, "group_by"))?;
        let order_by = parse_order_by(json_param(params, "order_by"))?;
        let limit = count_param(params, "limit")?;
        if matches!(analysis, AnalysisType::Extraction | AnalysisType::Funnel)
            && (interval.is_some() || !group_by.is_empty())
        {
            return Err(QueryError::InvalidParameter(format!(
                "{} takes neither interval nor group_by.",
                analysis.keen_name()
            )));
        }
        if !order_by.is_empty() && group_by.is_empty() {
            return Err(QueryError::InvalidParameter(
                "order_by needs a group_by.".into(),
            ));
        }
        if interval.is_some() && timeframe.is_none() {
            return Err(QueryError::InvalidTimeframe(
                "An interval needs a timeframe.".into(),
            ));
        }
        let steps = if analysis == AnalysisType::Funnel {
            parse_steps(json_param(params, "steps"))?
        } else {
            Vec::new()
        };
        let analyses = if analysis == AnalysisType::MultiAnalysis {
            parse_analyses(json_param(params, "analyses"))?
        } else {
            Vec::new()
        };
        let filters = json_param(params, "filters")
            .map(|value| Filter::parse_list(&value))
            .transpose()?
            .unwrap_or_default();
        let conditions = count_conditions(&filters)
            + steps
                .iter()
                .map(|step| count_conditions(&step.filters))
                .sum::<usize>();
        if conditions > MAX_FILTER_CONDITIONS {
            return Err(QueryError::InvalidFilter(format!(
                "A query may hold at most {MAX_FILTER_CONDITIONS} filter conditions in all; this one has {conditions}."
            )));
        }
        Ok(Query {
            analysis,
            collection,
            target_property,
            percentile,
            timeframe,
            timezone,
            interval,
            filters,
            group_by,
            order_by,
            limit,
            include_metadata: bool_param(params, "include_metadata")?,
            latest: count_param(params, "latest")?,
            property_names: parse_property_names(json_param(params, "property_names"))?,
            email: if analysis == AnalysisType::Extraction {
                parse_email_delivery(params)?
            } else {
                None
            },
            steps,
            analyses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(analysis: &str, params: Value) -> Result<Query, QueryError> {
        Query::parse(AnalysisType::parse(analysis)?, params.as_object().unwrap())
    }

    #[test]
    fn email_extractions_name_one_address_and_a_known_format() {
        let delivery = |params: Value| parse("extraction", params).map(|query| query.email);
        let base = json!({"event_collection": "c", "timeframe": "this_1_days"});
        assert_eq!(delivery(base.clone()).unwrap(), None);
        let mut with = base.clone();
        with["email"] = json!(" ops@example.com ");
        assert_eq!(
            delivery(with.clone()).unwrap(),
            Some(EmailDelivery {
                to: "ops@example.com".into(),
                json: false,
                gzip: false
            })
        );
        with["content_type"] = json!("application/json");
        with["content_encoding"] = json!("gzip");
        let parsed = delivery(with.clone()).unwrap().unwrap();
        assert!(parsed.json && parsed.gzip);
        with["content_type"] = json!("text/html");
        assert!(delivery(with).is_err());
        for refused in [
            "nobody",
            "a@b@c",
            "a@b.com\r\nBcc: x@y.z",
            "a@b.com, c@d.com",
            "@b.com",
        ] {
            let mut with = base.clone();
            with["email"] = json!(refused);
            assert!(delivery(with).is_err(), "{refused}");
        }
    }

    #[test]
    fn python_sdk_get_parameters() {
        // As keen 0.7.0 encodes them: JSON strings for structured values, decimal text for numbers.
        let query = "event_collection=purchases&target_property=price&percentile=99.5&timezone=-28800&timeframe=this_7_days\
            &filters=%5B%7B%22property_name%22%3A%22a%22%2C%22operator%22%3A%22eq%22%2C%22property_value%22%3A1%7D%5D\
            &group_by=%5B%22item.id%22%5D&order_by=%5B%7B%22property_name%22%3A%22result%22%2C%22direction%22%3A%22DESC%22%7D%5D&limit=5&api_key=k&";
        let params = params_from_query_string(query).unwrap();
        let parsed = Query::parse(AnalysisType::Percentile, &params).unwrap();
        assert_eq!(parsed.percentile, Some(99.5));
        assert_eq!(parsed.filters.len(), 1);
        assert_eq!(parsed.group_by, [GroupBy::Property("item.id".into())]);
        assert_eq!(
            parsed.order_by,
            [OrderBy {
                property: "result".into(),
                descending: true
            }]
        );
        assert_eq!(parsed.limit, Some(5));
        assert!(matches!(parsed.timezone, Timezone::Fixed(_)));
    }

    #[test]
    fn php_brackets_and_json_quoted_strings() {
        let params = params_from_query_string(
            "filters[1][property_name]=b&filters[0][property_name]=a&filters[0][operator]=eq&filters[0][property_value]=1&filters[1][operator]=exists&filters[1][property_value]=true&timezone=%22UTC%22&timeframe=%22this_7_days%22",
        )
        .unwrap();
        assert_eq!(
            params["filters"],
            json!([{"property_name": "a", "operator": "eq", "property_value": 1},
                   {"property_name": "b", "operator": "exists", "property_value": true}])
        );
        assert_eq!(params["timezone"], "UTC");
        assert_eq!(params["timeframe"], "this_7_days");
        let group_by = params_from_query_string("group_by[0]=x&group_by[1]=y").unwrap();
        assert_eq!(group_by["group_by"], json!(["x", "y"]));
        for refused in [
            "filters=[]&filters[0][operator]=eq",
            "[0]=x",
            "filters[0=x",
            "filters[0][a]=x&filters[0]=y",
            "a[1][2][3][4][5][6][7][8][9]=x",
        ] {
            assert!(params_from_query_string(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn bracket_timeframes_and_conflicts() {
        let params = params_from_query_string("event_collection=c&timeframe[start]=2024-01-01T00:00:00Z&timeframe[end]=2024-02-01T00:00:00Z").unwrap();
        assert!(matches!(
            Query::parse(AnalysisType::Count, &params)
                .unwrap()
                .timeframe,
            Some(Timeframe::Absolute { .. })
        ));
        let conflict = params_from_query_string("timeframe=this_day&timeframe[start]=2024-01-01");
        assert!(
            matches!(conflict, Err(QueryError::InvalidTimeframe(message)) if message.contains("multiple"))
        );
    }

    #[test]
    fn keen_analysis_post_body() {
        let body = json!({"analysis_type": "count", "event_collection": "c", "timezone": -25200, "include_metadata": true,
            "timeframe": {"start": "2024-01-01T00:00:00.000Z", "end": "2024-01-02T00:00:00.000Z"}, "interval": "hourly",
            "group_by": "country"});
        let query = parse("count", body).unwrap();
        assert!(query.include_metadata);
        assert_eq!(query.group_by, [GroupBy::Property("country".into())]);
        assert_eq!(
            query.interval,
            Some(Interval {
                count: 1,
                unit: super::super::Unit::Hour
            })
        );
    }

    #[test]
    fn required_parameters() {
        assert!(matches!(
            parse("count", json!({})),
            Err(QueryError::MissingParameter(_))
        ));
        assert!(matches!(
            parse("sum", json!({"event_collection": "c"})),
            Err(QueryError::MissingParameter(_))
        ));
        assert!(matches!(
            parse(
                "percentile",
                json!({"event_collection": "c", "target_property": "p"})
            ),
            Err(QueryError::MissingParameter(_))
        ));
        assert!(matches!(
            parse(
                "percentile",
                json!({"event_collection": "c", "target_property": "p", "percentile": 101})
            ),
            Err(QueryError::InvalidParameter(_))
        ));
        assert!(matches!(
            parse(
                "count",
                json!({"event_collection": "c", "interval": "daily"})
            ),
            Err(QueryError::InvalidTimeframe(_))
        ));
        assert!(matches!(
            parse("count", json!({"event_collection": "c", "order_by": "x"})),
            Err(QueryError::InvalidParameter(_))
        ));
        assert!(matches!(
            parse("funnel", json!({"steps": []})),
            Err(QueryError::MissingParameter(_))
        ));
        assert!(matches!(
            parse("multi_analysis", json!({"event_collection": "c"})),
            Err(QueryError::MissingParameter(_))
        ));
        assert!(matches!(
            parse("nope", json!({})),
            Err(QueryError::UnknownAnalysis(_))
        ));
        assert!(matches!(
            parse(
                "extraction",
                json!({"event_collection": "c", "group_by": "x"})
            ),
            Err(QueryError::InvalidParameter(_))
        ));
    }

    #[test]
    fn funnels_and_multi_analyses() {
        let funnel = parse("funnel", json!({"timeframe": "this_7_days", "steps": [
            {"event_collection": "signups", "actor_property": "user.id"},
            {"event_collection": "purchases", "actor_property": "user.id", "optional": true, "filters": [{"property_name": "a", "operator": "exists", "property_value": true}]},
        ]}))
        .unwrap();
        assert_eq!(funnel.steps.len(), 2);
        assert!(funnel.steps[1].optional && !funnel.steps[1].inverted);
        assert_eq!(funnel.steps[0].echo["with_actors"], false);
        assert!(parse("funnel", json!({"steps": [{"event_collection": "a", "actor_property": "u", "inverted": true}]})).is_err());
        let multi = parse("multi_analysis", json!({"event_collection": "c", "analyses": {"total": {"analysis_type": "sum", "target_property": "price"}, "n": {"analysis_type": "count"}}})).unwrap();
        assert_eq!(multi.analyses.len(), 2);
        assert!(
            parse(
                "multi_analysis",
                json!({"event_collection": "c", "analyses": {"x": {"analysis_type": "sum"}}})
            )
            .is_err()
        );
    }
}
