//! Access-key definitions as Keen's key API carries them — `{name, is_active, permitted, options}` —
//! validated, and the two options that act on every request: `queries.filters` (forced into every read)
//! and `writes.autofill` (deep-merged into every write, the key's values winning).
//!
//! Design: option groups Keyhole does not know are refused rather than ignored, so a typo cannot silently
//! drop a tenant's filter. Unset groups read back as `null`, as Keen shows them.

use serde_json::{Map, Value, json};

use crate::keys::Operation;
use crate::names::property_name_problem;
use crate::query::Filter;

/// Why a key definition was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyDefinitionError(pub String);

const OPTION_GROUPS: [&str; 5] = [
    "writes",
    "queries",
    "saved_queries",
    "cached_queries",
    "datasets",
];
const DATASET_OPERATIONS: [&str; 3] = ["read", "list", "retrieve"];

/// A validated access-key definition.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessKeyDefinition {
    pub name: String,
    pub is_active: bool,
    pub permitted: Vec<Operation>,
    /// The options object with every group present (`null` when unset).
    pub options: Value,
}

fn invalid(message: impl Into<String>) -> KeyDefinitionError {
    KeyDefinitionError(message.into())
}

fn string_list(value: &Value, what: &str) -> Result<(), KeyDefinitionError> {
    match value {
        Value::Null => Ok(()),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
        _ => Err(invalid(format!("{what} must be a list of names."))),
    }
}

fn check_group(group: &str, value: &Value) -> Result<(), KeyDefinitionError> {
    if value.is_null() {
        return Ok(());
    }
    let object = value
        .as_object()
        .ok_or_else(|| invalid(format!("options.{group} must be an object or null.")))?;
    let allowed_fields: &[&str] = match group {
        "writes" => &["autofill", "collections"],
        "queries" => &["filters"],
        "saved_queries" => &["allowed", "blocked", "filters"],
        "cached_queries" => &["allowed", "blocked"],
        _ => &["operations", "allowed", "blocked"],
    };
    if let Some(unknown) = object
        .keys()
        .find(|field| !allowed_fields.contains(&field.as_str()))
    {
        return Err(invalid(format!(
            "options.{group}.{unknown} is not an option Keyhole knows."
        )));
    }
    if let Some(filters) = object.get("filters") {
        Filter::parse_list(filters)
            .map_err(|error| invalid(format!("options.{group}.filters: {error}")))?;
    }
    if let Some(collections) = object.get("collections") {
        string_list(collections, &format!("options.{group}.collections"))?;
    }
    for field in ["allowed", "blocked"] {
        let Some(list) = object.get(field) else {
            continue;
        };
        if group == "datasets" && field == "allowed" {
            if !(list.is_null() || list.is_object()) {
                return Err(invalid(
                    "options.datasets.allowed must map dataset names to restrictions.",
                ));
            }
            continue;
        }
        string_list(list, &format!("options.{group}.{field}"))?;
    }
    if let Some(operations) = object.get("operations") {
        let valid = operations.as_array().is_some_and(|items| {
            items.iter().all(|item| {
                item.as_str()
                    .is_some_and(|op| DATASET_OPERATIONS.contains(&op))
            })
        });
        if !valid {
            return Err(invalid(
                "options.datasets.operations must be a subset of [\"read\", \"list\", \"retrieve\"].",
            ));
        }
    }
    if let Some(autofill) = object.get("autofill") {
        let autofill = autofill
            .as_object()
            .ok_or_else(|| invalid("options.writes.autofill must be an object."))?;
        check_autofill(autofill, "")?;
    }
    Ok(())
}

fn check_autofill(object: &Map<String, Value>, prefix: &str) -> Result<(), KeyDefinitionError> {
    for (name, value) in object {
        if prefix.is_empty() && name == "keen" {
            return Err(invalid(
                "options.writes.autofill cannot set keen.* properties.",
            ));
        }
        if let Some(problem) = property_name_problem(name) {
            return Err(invalid(format!("options.writes.autofill: {problem}")));
        }
        if let Value::Object(nested) = value {
            check_autofill(nested, name)?;
        }
    }
    Ok(())
}

impl AccessKeyDefinition {
    /// Parses a create or full-update body.
    pub fn parse(body: &Value) -> Result<AccessKeyDefinition, KeyDefinitionError> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("An access key definition must be a JSON object."))?;
        let name = match object.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() && name.chars().count() <= 256 => {
                name.clone()
            }
            _ => {
                return Err(invalid(
                    "An access key needs a non-empty name of at most 256 characters.",
                ));
            }
        };
        let is_active = match object.get("is_active") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(invalid("is_active must be true or false.")),
        };
        let permitted = match object.get("permitted") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(Operation::from_keen_name)
                        .ok_or_else(|| invalid(format!("{item} is not a permission; use writes, queries, saved_queries, cached_queries, datasets, schema.")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(invalid("permitted must be a list of permissions.")),
        };
        let mut options = Map::new();
        match object.get("options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => {
                if let Some(unknown) = given
                    .keys()
                    .find(|group| !OPTION_GROUPS.contains(&group.as_str()))
                {
                    return Err(invalid(format!(
                        "options.{unknown} is not an option group Keyhole knows."
                    )));
                }
                for (group, value) in given {
                    check_group(group, value)?;
                    options.insert(group.clone(), value.clone());
                }
            }
            Some(_) => return Err(invalid("options must be an object.")),
        }
        for group in OPTION_GROUPS {
            options.entry(group.to_string()).or_insert(Value::Null);
        }
        let mut permitted_unique = Vec::new();
        for operation in permitted {
            if !permitted_unique.contains(&operation) {
                permitted_unique.push(operation);
            }
        }
        Ok(AccessKeyDefinition {
            name,
            is_active,
            permitted: permitted_unique,
            options: Value::Object(options),
        })
    }

    pub fn permitted_names(&self) -> Value {
        json!(
            self.permitted
                .iter()
                .map(|operation| operation.keen_name())
                .collect::<Vec<_>>()
        )
    }
}

/// The filters a key forces on every query (`options.queries.filters`). A stored filter that no longer
/// parses (say, one over a limit added after the key was made) is an error, never an empty list: dropping a
/// tenant's filter would show it every tenant's events.
pub fn forced_query_filters(options: &Value) -> Result<Vec<Filter>, KeyDefinitionError> {
    Filter::parse_list(&options["queries"]["filters"])
        .map_err(|error| invalid(format!("options.queries.filters: {error}")))
}

/// The properties a project's data should be ordered by, from the option objects of its active access keys:
/// the properties that their forced query filters test with `eq` (at the top level, where every read of
/// the key must satisfy them), most used first (ties by name), at most two. A SaaS that scopes each
/// customer's key by `tenant_id` gets `["tenant_id"]`, so one customer's rows are stored together.
pub fn clustering_properties<'a>(key_options: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut uses: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for options in key_options {
        let mut seen = std::collections::BTreeSet::new();
        // A key whose filters do not parse is refused on every request, so it reads nothing to cluster.
        for filter in forced_query_filters(options).unwrap_or_default() {
            if let Filter::Condition {
                property,
                operator: crate::query::Operator::Eq,
                ..
            } = filter
                && seen.insert(property.clone())
            {
                *uses.entry(property).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(String, usize)> = uses.into_iter().collect();
    ranked.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(&right.0)));
    ranked
        .into_iter()
        .take(2)
        .map(|(property, _)| property)
        .collect()
}

/// Whether a key may write to `collection`. `options.writes.collections` — a Keyhole extension, since Keen
/// documents restricting keys to streams but no option name for it — lists the collections a key may write
/// to; without it, any.
pub fn allows_write_to(options: &Value, collection: &str) -> bool {
    match &options["writes"]["collections"] {
        Value::Array(_) => names_in(&options["writes"]["collections"]).contains(&collection),
        _ => true,
    }
}

/// The deduplication scope of a key's writes (see `event::uniqueness_key`): a digest of its
/// `options.writes.autofill`, so every key that stamps the same tenant properties shares one scope and keys
/// of different tenants never share one. Keys without autofill write unscoped (`None`): they may write any
/// event, another tenant's included, so a shared scope among them adds nothing an attacker lacks.
pub fn uniqueness_scope(options: &Value) -> Option<String> {
    use sha2::{Digest, Sha256};
    let autofill = options["writes"]["autofill"].as_object()?;
    if autofill.is_empty() {
        return None;
    }
    // serde_json's maps are ordered by key, so equal objects serialize alike.
    let canonical = serde_json::to_vec(autofill).ok()?;
    let digest = Sha256::digest(&canonical);
    Some(hex::encode(&digest[..16]))
}

/// Deep-merges `autofill` into `event`; where both hold a value, the key's wins (a customer cannot write as
/// another customer). Objects merge recursively.
pub fn apply_autofill(event: &mut Map<String, Value>, autofill: &Map<String, Value>) {
    for (name, value) in autofill {
        match (event.get_mut(name), value) {
            (Some(Value::Object(existing)), Value::Object(nested)) => {
                apply_autofill(existing, nested)
            }
            _ => {
                event.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Kinds of stored query a key may be limited to (`options.saved_queries` / `options.cached_queries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredQueryKind {
    Saved,
    Cached,
}

fn names_in(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a key's options let it run the saved or cached query `name`: not on the group's `blocked`
/// list, and on its `allowed` list when there is one. Blocked wins when a name is on both. The endpoints
/// that run stored queries must call this (and AND [`stored_query_filters`] into them).
pub fn allows_stored_query(options: &Value, kind: StoredQueryKind, name: &str) -> bool {
    let group = match kind {
        StoredQueryKind::Saved => &options["saved_queries"],
        StoredQueryKind::Cached => &options["cached_queries"],
    };
    if names_in(&group["blocked"]).contains(&name) {
        return false;
    }
    match &group["allowed"] {
        Value::Array(_) => names_in(&group["allowed"]).contains(&name),
        _ => true,
    }
}

/// Filters forced on saved-query results: `options.saved_queries.filters` on top of
/// `options.queries.filters`.
pub fn stored_query_filters(options: &Value) -> Result<Vec<Filter>, KeyDefinitionError> {
    let mut filters = forced_query_filters(options)?;
    filters.extend(
        Filter::parse_list(&options["saved_queries"]["filters"])
            .map_err(|error| invalid(format!("options.saved_queries.filters: {error}")))?,
    );
    Ok(filters)
}

/// What a key may do with a dataset (`options.datasets.operations`: `read` results, `list` definitions,
/// `retrieve` one definition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetOperation {
    Read,
    List,
    Retrieve,
}

/// Whether a key's options allow `operation` on dataset `name` (`None` for listing). Unset options allow
/// everything; `blocked` wins over `allowed`.
pub fn allows_dataset(options: &Value, operation: DatasetOperation, name: Option<&str>) -> bool {
    let group = &options["datasets"];
    let operation_name = match operation {
        DatasetOperation::Read => "read",
        DatasetOperation::List => "list",
        DatasetOperation::Retrieve => "retrieve",
    };
    if group["operations"].is_array() && !names_in(&group["operations"]).contains(&operation_name) {
        return false;
    }
    let Some(name) = name else { return true };
    if names_in(&group["blocked"]).contains(&name) {
        return false;
    }
    match &group["allowed"] {
        Value::Object(allowed) => allowed.contains_key(name),
        _ => true,
    }
}

/// The `index_by` values a key may read of dataset `name` (`options.datasets.allowed[name].index_by`);
/// `None` when unrestricted.
pub fn dataset_index_restriction<'a>(
    options: &'a Value,
    name: &str,
) -> Option<&'a Map<String, Value>> {
    options["datasets"]["allowed"][name]["index_by"].as_object()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes_definitions() {
        let definition = AccessKeyDefinition::parse(&json!({
            "name": "acme", "permitted": ["queries", "writes", "queries"],
            "options": {"queries": {"filters": [{"property_name": "vendor_id", "operator": "eq", "property_value": "acme"}]},
                        "writes": {"autofill": {"vendor_id": "acme", "vendor": {"tier": "gold"}}}}
        }))
        .unwrap();
        assert!(definition.is_active);
        assert_eq!(
            definition.permitted,
            [Operation::Queries, Operation::Writes]
        );
        assert_eq!(definition.options["datasets"], Value::Null);
        assert_eq!(forced_query_filters(&definition.options).unwrap().len(), 1);
    }

    #[test]
    fn refuses_malformed_definitions() {
        for bad in [
            json!({"permitted": []}),
            json!({"name": "k", "permitted": ["reads"]}),
            json!({"name": "k", "options": {"querys": {"filters": []}}}),
            json!({"name": "k", "options": {"queries": {"filter": []}}}),
            json!({"name": "k", "options": {"queries": {"filters": [{"operator": "eq"}]}}}),
            json!({"name": "k", "options": {"writes": {"autofill": {"keen": {"timestamp": "x"}}}}}),
            json!({"name": "k", "options": {"writes": {"autofill": {"a.b": 1}}}}),
            json!({"name": "k", "options": {"datasets": {"operations": ["delete"]}}}),
            json!({"name": "k", "is_active": "yes"}),
        ] {
            assert!(AccessKeyDefinition::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn write_collections_restrict_writes() {
        let options = AccessKeyDefinition::parse(
            &json!({"name": "k", "options": {"writes": {"collections": ["orders"]}}}),
        )
        .unwrap()
        .options;
        assert!(allows_write_to(&options, "orders"));
        assert!(!allows_write_to(&options, "payments"));
        assert!(allows_write_to(
            &AccessKeyDefinition::parse(&json!({"name": "k"}))
                .unwrap()
                .options,
            "payments"
        ));
        assert!(
            AccessKeyDefinition::parse(
                &json!({"name": "k", "options": {"writes": {"collections": "orders"}}})
            )
            .is_err()
        );
    }

    #[test]
    fn stored_query_and_dataset_lists() {
        let options = AccessKeyDefinition::parse(&json!({"name": "k", "options": {
            "saved_queries": {"allowed": ["q1", "q2"], "blocked": ["q2"], "filters": [{"property_name": "a", "operator": "eq", "property_value": 1}]},
            "cached_queries": {"blocked": ["c9"]},
            "queries": {"filters": [{"property_name": "vendor", "operator": "eq", "property_value": "acme"}]},
            "datasets": {"operations": ["read"], "allowed": {"ds1": {"index_by": {"customer.id": ["acme"]}}, "ds2": {}}, "blocked": ["ds2"]},
        }}))
        .unwrap()
        .options;
        assert!(allows_stored_query(&options, StoredQueryKind::Saved, "q1"));
        assert!(
            !allows_stored_query(&options, StoredQueryKind::Saved, "q2"),
            "blocked wins"
        );
        assert!(
            !allows_stored_query(&options, StoredQueryKind::Saved, "q3"),
            "not on the allowed list"
        );
        assert!(allows_stored_query(&options, StoredQueryKind::Cached, "c1"));
        assert!(!allows_stored_query(
            &options,
            StoredQueryKind::Cached,
            "c9"
        ));
        assert_eq!(stored_query_filters(&options).unwrap().len(), 2);
        assert!(allows_dataset(
            &options,
            DatasetOperation::Read,
            Some("ds1")
        ));
        assert!(!allows_dataset(
            &options,
            DatasetOperation::Read,
            Some("ds2")
        ));
        assert!(!allows_dataset(
            &options,
            DatasetOperation::Read,
            Some("ds3")
        ));
        assert!(!allows_dataset(&options, DatasetOperation::List, None));
        assert_eq!(
            dataset_index_restriction(&options, "ds1").unwrap()["customer.id"],
            json!(["acme"])
        );
        let unrestricted = AccessKeyDefinition::parse(&json!({"name": "k"}))
            .unwrap()
            .options;
        assert!(allows_stored_query(
            &unrestricted,
            StoredQueryKind::Saved,
            "anything"
        ));
        assert!(allows_dataset(&unrestricted, DatasetOperation::List, None));
    }

    #[test]
    fn autofill_deep_merges_and_the_key_wins() {
        let mut event =
            json!({"vendor_id": "evil", "vendor": {"tier": "free", "seats": 3}, "other": 1})
                .as_object()
                .unwrap()
                .clone();
        let autofill = json!({"vendor_id": "acme", "vendor": {"tier": "gold"}})
            .as_object()
            .unwrap()
            .clone();
        apply_autofill(&mut event, &autofill);
        assert_eq!(
            Value::Object(event),
            json!({"vendor_id": "acme", "vendor": {"tier": "gold", "seats": 3}, "other": 1})
        );
        let mut flat = json!({"vendor": "evil"}).as_object().unwrap().clone();
        apply_autofill(&mut flat, &autofill);
        assert_eq!(flat["vendor"], json!({"tier": "gold"}));
    }

    #[test]
    fn clustering_follows_the_most_used_eq_filters_of_keys() {
        let tenant = |value: &str| {
            json!({"queries": {"filters": [
                {"property_name": "tenant_id", "operator": "eq", "property_value": value},
                {"property_name": "amount", "operator": "gt", "property_value": 5}]}})
        };
        let region = json!({"queries": {"filters": [
            {"property_name": "region", "operator": "eq", "property_value": "eu"},
            {"property_name": "region", "operator": "eq", "property_value": "eu"}]}});
        let keys = [
            tenant("a"),
            tenant("b"),
            region,
            json!({}),
            json!({"queries": null}),
        ];
        assert_eq!(clustering_properties(&keys), vec!["tenant_id", "region"]);
        assert!(clustering_properties(&[json!({})]).is_empty());
    }
}
