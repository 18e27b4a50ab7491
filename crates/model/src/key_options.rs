//! An access key's `options` as typed rules: parsed once, from JSON, by one function
//! ([`KeyOptions::parse`]) that both key creation and key loading call, so a stored key is enforced by
//! exactly the rules it was accepted under, and a stored key that no longer passes them is not a key.
//!
//! Keen's groups are `writes` (`autofill`), `queries` (`filters`), `saved_queries`, `cached_queries` and
//! `datasets`. Keyhole adds, as documented extensions: `writes.collections` (the collections a key may write
//! to), `queries.max_lookback` (how far back any read of the key may look), the `limits` group (request
//! rates and daily quotas, enforced by the server) and `origins` (the web origins it may be used from).
//!
//! Design: unknown groups and fields are refused rather than ignored, so a typo cannot silently drop a
//! tenant's filter; every field has one type and a wrong type is an error, never a default.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::query::Filter;

/// Why a key definition (or a stored key) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyDefinitionError(pub String);

pub(crate) fn invalid(message: impl Into<String>) -> KeyDefinitionError {
    KeyDefinitionError(message.into())
}

/// The option groups a key definition may hold, in the order Keyhole shows them.
pub(crate) const OPTION_GROUPS: [&str; 7] = [
    "writes",
    "queries",
    "saved_queries",
    "cached_queries",
    "datasets",
    "limits",
    "origins",
];

/// Longest look-back window a key may declare (100 years).
pub(crate) const MAX_LOOKBACK_MILLIS: i64 = 36_500 * DAY_MILLIS;
const DAY_MILLIS: i64 = 86_400_000;

/// A key's options, typed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyOptions {
    /// `options.writes`: autofill, collections, webhook rule.
    pub writes: WriteRules,
    /// `options.queries`: the forced filters and look-back.
    pub queries: QueryRules,
    /// `options.saved_queries`: allowed and blocked names, filters.
    pub saved_queries: StoredQueryRules,
    /// `options.cached_queries`: allowed and blocked names.
    pub cached_queries: StoredQueryRules,
    /// `options.datasets`: operations, allowed and blocked names, index pins.
    pub datasets: DatasetRules,
    /// `options.limits`: rates and daily quotas.
    pub limits: KeyLimits,
    /// The web origins the key may be used from; `None` for any (see `origins`).
    pub origins: Option<Vec<crate::origins::OriginPattern>>,
}

/// `options.writes`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteRules {
    /// Stamped onto every event the key writes, the key's values winning (see `autofill`).
    pub autofill: Option<std::sync::Arc<crate::autofill::Autofill>>,
    /// The only collections the key may write to; `None` for any.
    pub collections: Option<Vec<String>>,
    /// Deliveries must be signed by the provider (see `webhook`).
    pub webhook: Option<crate::webhook::WebhookRule>,
}

/// `options.queries`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryRules {
    /// AND-ed into every read the key makes.
    pub filters: Vec<Filter>,
    /// Reads see only events at most this old (milliseconds before the request).
    pub max_lookback_millis: Option<i64>,
}

/// `options.saved_queries` / `options.cached_queries`: which stored queries the key may run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredQueryRules {
    /// Only these names, when set.
    pub allowed: Option<Vec<String>>,
    /// Never these names (wins over `allowed`).
    pub blocked: Vec<String>,
    /// Forced on saved-query results, on top of `queries.filters` (saved queries only).
    pub filters: Vec<Filter>,
}

/// What a key may do with a dataset (`options.datasets.operations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetOperation {
    /// Read results.
    Read,
    /// List definitions.
    List,
    /// Retrieve one definition.
    Retrieve,
}

impl DatasetOperation {
    fn parse(name: &str) -> Option<DatasetOperation> {
        match name {
            "read" => Some(DatasetOperation::Read),
            "list" => Some(DatasetOperation::List),
            "retrieve" => Some(DatasetOperation::Retrieve),
            _ => None,
        }
    }
}

/// `options.datasets`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetRules {
    /// The dataset operations allowed (`read`, `list`, `retrieve`), when listed.
    pub operations: Option<Vec<DatasetOperation>>,
    /// Dataset name → restriction, when the key is limited to named datasets.
    pub allowed: Option<BTreeMap<String, DatasetRestriction>>,
    /// Datasets the key may not use.
    pub blocked: Vec<String>,
}

/// `options.datasets.allowed[name]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetRestriction {
    /// The `index_by` values the key may read, per index property.
    pub index_by: Option<Map<String, Value>>,
}

/// `options.limits`: request rates (token buckets) and daily quotas (UTC days), per key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyLimits {
    /// The rate of reads, if limited.
    pub reads: Option<RateLimit>,
    /// The rate of writes, if limited.
    pub writes: Option<RateLimit>,
    /// Events the key may write per UTC day.
    pub events_per_day: Option<u64>,
    /// Queries the key may run per UTC day.
    pub queries_per_day: Option<u64>,
}

impl KeyLimits {
    /// The limits as the key definition writes them (unset ones left out).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (kind, rate) in [("reads", self.reads), ("writes", self.writes)] {
            if let Some(rate) = rate {
                object.insert(format!("{kind}_per_second"), rate.per_second.into());
                object.insert(format!("{kind}_burst"), rate.burst.into());
            }
        }
        if let Some(events) = self.events_per_day {
            object.insert("events_per_day".into(), events.into());
        }
        if let Some(queries) = self.queries_per_day {
            object.insert("queries_per_day".into(), queries.into());
        }
        Value::Object(object)
    }
}

/// A sustained rate with a burst allowance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once above the rate.
    pub burst: u32,
}

fn object_fields<'a>(
    value: &'a Value,
    what: &str,
    known: &[&str],
) -> Result<Option<&'a Map<String, Value>>, KeyDefinitionError> {
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        _ => return Err(invalid(format!("{what} must be an object or null."))),
    };
    if let Some(unknown) = object.keys().find(|field| !known.contains(&field.as_str())) {
        return Err(invalid(format!(
            "{what}.{unknown} is not an option Keyhole knows."
        )));
    }
    Ok(Some(object))
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> &'a Value {
    object.get(name).unwrap_or(&Value::Null)
}

fn names(value: &Value, what: &str) -> Result<Option<Vec<String>>, KeyDefinitionError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{what} must be a list of names.")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(invalid(format!("{what} must be a list of names."))),
    }
}

fn filters(value: &Value, what: &str) -> Result<Vec<Filter>, KeyDefinitionError> {
    Filter::parse_list(value).map_err(|error| invalid(format!("{what}: {error}")))
}

impl KeyOptions {
    /// Parses a key's `options` (`null` for none).
    pub fn parse(value: &Value) -> Result<KeyOptions, KeyDefinitionError> {
        let Some(groups) = object_fields(value, "options", &OPTION_GROUPS)? else {
            return Ok(KeyOptions::default());
        };
        Ok(KeyOptions {
            writes: parse_writes(field(groups, "writes"))?,
            queries: parse_queries(field(groups, "queries"))?,
            saved_queries: parse_stored_queries(field(groups, "saved_queries"), "saved_queries")?,
            cached_queries: parse_stored_queries(
                field(groups, "cached_queries"),
                "cached_queries",
            )?,
            datasets: parse_datasets(field(groups, "datasets"))?,
            limits: parse_limits(field(groups, "limits"))?,
            origins: crate::origins::parse_origins(field(groups, "origins"))?,
        })
    }
}

fn parse_writes(value: &Value) -> Result<WriteRules, KeyDefinitionError> {
    let Some(object) = object_fields(
        value,
        "options.writes",
        &["autofill", "collections", "webhook"],
    )?
    else {
        return Ok(WriteRules::default());
    };
    let autofill = match field(object, "autofill") {
        Value::Null => None,
        autofill => Some(std::sync::Arc::new(crate::autofill::Autofill::parse(
            autofill,
        )?)),
    };
    Ok(WriteRules {
        autofill,
        collections: names(field(object, "collections"), "options.writes.collections")?,
        webhook: crate::webhook::parse_webhook(field(object, "webhook"))?,
    })
}

fn parse_queries(value: &Value) -> Result<QueryRules, KeyDefinitionError> {
    let Some(object) = object_fields(value, "options.queries", &["filters", "max_lookback"])?
    else {
        return Ok(QueryRules::default());
    };
    let max_lookback_millis = match field(object, "max_lookback") {
        Value::Null => None,
        Value::String(text) => Some(parse_lookback(text).ok_or_else(|| {
            invalid(format!(
                "options.queries.max_lookback must be a duration such as \"90 days\" (minutes, hours, days or weeks, at most 100 years), not {text:?}."
            ))
        })?),
        _ => {
            return Err(invalid(
                "options.queries.max_lookback must be a duration such as \"90 days\".",
            ));
        }
    };
    Ok(QueryRules {
        filters: filters(field(object, "filters"), "options.queries.filters")?,
        max_lookback_millis,
    })
}

/// `"90 days"`, `"12 hours"`, `"1 week"`, `"30_minutes"` → milliseconds.
pub(crate) fn parse_lookback(text: &str) -> Option<i64> {
    let normalized = text.trim().replace('_', " ");
    let mut parts = normalized.split_whitespace();
    let count: i64 = parts.next()?.parse().ok()?;
    let unit = parts.next()?;
    if parts.next().is_some() || count <= 0 {
        return None;
    }
    let unit_millis = match unit.trim_end_matches('s') {
        "minute" => 60_000,
        "hour" => 3_600_000,
        "day" => DAY_MILLIS,
        "week" => 7 * DAY_MILLIS,
        _ => return None,
    };
    count
        .checked_mul(unit_millis)
        .filter(|millis| *millis <= MAX_LOOKBACK_MILLIS)
}

fn parse_stored_queries(
    value: &Value,
    group: &str,
) -> Result<StoredQueryRules, KeyDefinitionError> {
    let known: &[&str] = if group == "saved_queries" {
        &["allowed", "blocked", "filters"]
    } else {
        &["allowed", "blocked"]
    };
    let what = format!("options.{group}");
    let Some(object) = object_fields(value, &what, known)? else {
        return Ok(StoredQueryRules::default());
    };
    Ok(StoredQueryRules {
        allowed: names(field(object, "allowed"), &format!("{what}.allowed"))?,
        blocked: names(field(object, "blocked"), &format!("{what}.blocked"))?.unwrap_or_default(),
        filters: filters(field(object, "filters"), &format!("{what}.filters"))?,
    })
}

fn parse_datasets(value: &Value) -> Result<DatasetRules, KeyDefinitionError> {
    let Some(object) = object_fields(
        value,
        "options.datasets",
        &["operations", "allowed", "blocked"],
    )?
    else {
        return Ok(DatasetRules::default());
    };
    let operations = match field(object, "operations") {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|item| item.as_str().and_then(DatasetOperation::parse))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    invalid("options.datasets.operations must be a subset of [\"read\", \"list\", \"retrieve\"].")
                })?,
        ),
        _ => {
            return Err(invalid(
                "options.datasets.operations must be a subset of [\"read\", \"list\", \"retrieve\"].",
            ));
        }
    };
    let allowed = match field(object, "allowed") {
        Value::Null => None,
        Value::Object(entries) => Some(
            entries
                .iter()
                .map(|(name, restriction)| {
                    let what = format!("options.datasets.allowed.{name}");
                    let restriction = object_fields(restriction, &what, &["index_by"])?;
                    let index_by = match restriction.map(|object| field(object, "index_by")) {
                        None | Some(Value::Null) => None,
                        Some(Value::Object(index_by)) => Some(index_by.clone()),
                        Some(_) => {
                            return Err(invalid(format!("{what}.index_by must be an object.")));
                        }
                    };
                    Ok((name.clone(), DatasetRestriction { index_by }))
                })
                .collect::<Result<BTreeMap<_, _>, KeyDefinitionError>>()?,
        ),
        _ => {
            return Err(invalid(
                "options.datasets.allowed must map dataset names to restrictions.",
            ));
        }
    };
    Ok(DatasetRules {
        operations,
        allowed,
        blocked: names(field(object, "blocked"), "options.datasets.blocked")?.unwrap_or_default(),
    })
}

fn parse_limits(value: &Value) -> Result<KeyLimits, KeyDefinitionError> {
    const FIELDS: [&str; 6] = [
        "reads_per_second",
        "reads_burst",
        "writes_per_second",
        "writes_burst",
        "events_per_day",
        "queries_per_day",
    ];
    let Some(object) = object_fields(value, "options.limits", &FIELDS)? else {
        return Ok(KeyLimits::default());
    };
    let count = |name: &str| -> Result<Option<u64>, KeyDefinitionError> {
        match field(object, name) {
            Value::Null => Ok(None),
            value => value
                .as_u64()
                .filter(|count| *count > 0)
                .map(Some)
                .ok_or_else(|| {
                    invalid(format!(
                        "options.limits.{name} must be a positive whole number."
                    ))
                }),
        }
    };
    let rate = |kind: &str| -> Result<Option<RateLimit>, KeyDefinitionError> {
        let per_second = match field(object, &format!("{kind}_per_second")) {
            Value::Null => None,
            value => Some(
                value
                    .as_f64()
                    .filter(|rate| rate.is_finite() && *rate > 0.0 && *rate <= 1e9)
                    .ok_or_else(|| {
                        invalid(format!(
                            "options.limits.{kind}_per_second must be a positive number."
                        ))
                    })?,
            ),
        };
        let burst = count(&format!("{kind}_burst"))?;
        match (per_second, burst) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(invalid(format!(
                "options.limits.{kind}_burst needs options.limits.{kind}_per_second."
            ))),
            (Some(per_second), burst) => {
                let burst = burst.unwrap_or_else(|| per_second.ceil() as u64).max(1);
                let burst = u32::try_from(burst)
                    .map_err(|_| invalid(format!("options.limits.{kind}_burst is too large.")))?;
                Ok(Some(RateLimit { per_second, burst }))
            }
        }
    };
    Ok(KeyLimits {
        reads: rate("reads")?,
        writes: rate("writes")?,
        events_per_day: count("events_per_day")?,
        queries_per_day: count("queries_per_day")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_every_group() {
        let options = KeyOptions::parse(&json!({
            "writes": {"autofill": {"tenant": "a", "nested": {"x": 1}}, "collections": ["orders"]},
            "queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "a"}], "max_lookback": "90 days"},
            "saved_queries": {"allowed": ["q1"], "blocked": ["q2"], "filters": []},
            "cached_queries": {"blocked": ["c9"]},
            "datasets": {"operations": ["read"], "allowed": {"ds1": {"index_by": {"customer.id": ["a"]}}, "ds2": {}}},
            "limits": {"reads_per_second": 2.5, "writes_per_second": 100, "writes_burst": 300, "events_per_day": 1000},
        }))
        .unwrap();
        assert_eq!(options.queries.filters.len(), 1);
        assert_eq!(options.queries.max_lookback_millis, Some(90 * DAY_MILLIS));
        assert_eq!(options.writes.collections, Some(vec!["orders".to_string()]));
        assert_eq!(
            options.limits.reads,
            Some(RateLimit {
                per_second: 2.5,
                burst: 3
            })
        );
        assert_eq!(
            options.limits.writes,
            Some(RateLimit {
                per_second: 100.0,
                burst: 300
            })
        );
        assert_eq!(options.limits.events_per_day, Some(1000));
        assert_eq!(options.datasets.allowed.as_ref().unwrap().len(), 2);
        assert_eq!(
            KeyOptions::parse(&Value::Null).unwrap(),
            KeyOptions::default()
        );
    }

    #[test]
    fn refuses_what_it_does_not_know_or_cannot_read() {
        for bad in [
            json!({"querys": {}}),
            json!({"queries": {"filter": []}}),
            json!({"queries": {"filters": [{"property_name": "a", "operator": "eq"}]}}),
            json!({"queries": {"filters": [{"property_name": "a", "operator": "regex", "property_value": "("}]}}),
            json!({"queries": {"max_lookback": "3 months"}}),
            json!({"queries": {"max_lookback": "0 days"}}),
            json!({"queries": {"max_lookback": 90}}),
            json!({"writes": {"autofill": {"keen": {"timestamp": "x"}}}}),
            json!({"writes": {"autofill": {"a.b": 1}}}),
            json!({"writes": {"collections": "orders"}}),
            json!({"cached_queries": {"filters": []}}),
            json!({"datasets": {"operations": ["delete"]}}),
            json!({"datasets": {"allowed": {"ds": {"index": {}}}}}),
            json!({"limits": {"reads_per_second": 0}}),
            json!({"limits": {"reads_burst": 5}}),
            json!({"limits": {"events_per_day": -1}}),
            json!({"limits": {"queries_per_hour": 1}}),
            json!([]),
        ] {
            assert!(KeyOptions::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookback_durations() {
        assert_eq!(parse_lookback("1 week"), Some(7 * DAY_MILLIS));
        assert_eq!(parse_lookback("30_minutes"), Some(1_800_000));
        assert_eq!(parse_lookback("12 hours"), Some(12 * 3_600_000));
        assert_eq!(parse_lookback("36501 days"), None);
        assert_eq!(parse_lookback("days"), None);
        assert_eq!(parse_lookback("1 day ago"), None);
    }
}
