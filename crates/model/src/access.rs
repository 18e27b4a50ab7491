//! Access-key definitions as Keen's key API carries them — `{name, is_active, permitted, options}`, plus
//! Keyhole's `expires_at` — validated once at the edge (the autofill a key stamps is `autofill`).
//!
//! Design: a definition body is parsed with duplicate keys refused (`strict_json`), and its options by
//! [`KeyOptions::parse`], the same function that turns a stored key into a `Grant`; so what is accepted
//! here is exactly what is enforced later. Unset groups read back as `null`, as Keen shows them.

use serde_json::{Value, json};

pub use crate::key_options::KeyDefinitionError;
use crate::key_options::{KeyOptions, OPTION_GROUPS, invalid};
use crate::keys::Operation;
use crate::timestamp::{EpochMillis, parse_timestamp};

/// A validated access-key definition.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessKeyDefinition {
    /// The key's name, unique in its project.
    pub name: String,
    /// Whether the key is active (not revoked).
    pub is_active: bool,
    /// The operations the key permits.
    pub permitted: Vec<Operation>,
    /// When the key stops working (Keyhole extension); `None` for never.
    pub expires_at: Option<EpochMillis>,
    /// The options as given, with every group present (`null` when unset): what the key object shows.
    pub options_json: Value,
    /// The same options, typed.
    pub options: KeyOptions,
}

impl AccessKeyDefinition {
    /// Parses a create or full-update body from its bytes, refusing duplicate keys at any depth.
    pub fn parse_bytes(bytes: &[u8]) -> Result<AccessKeyDefinition, KeyDefinitionError> {
        let value = crate::strict_json::parse(bytes).map_err(|error| {
            invalid(format!(
                "The key definition must be a JSON object without repeated keys: {error}."
            ))
        })?;
        AccessKeyDefinition::parse(&value)
    }

    /// Parses a create or full-update body.
    pub fn parse(body: &Value) -> Result<AccessKeyDefinition, KeyDefinitionError> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("An access key definition must be a JSON object."))?;
        const FIELDS: [&str; 5] = ["name", "is_active", "permitted", "options", "expires_at"];
        if let Some(unknown) = object
            .keys()
            .find(|field| !FIELDS.contains(&field.as_str()))
        {
            return Err(invalid(format!(
                "{unknown} is not a field of an access key definition."
            )));
        }
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
        let expires_at = match object.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(parse_timestamp(text).ok_or_else(|| {
                invalid("expires_at must be an ISO-8601 timestamp such as 2027-01-31T00:00:00Z.")
            })?),
            Some(_) => return Err(invalid("expires_at must be an ISO-8601 timestamp or null.")),
        };
        let mut permitted = Vec::new();
        match object.get("permitted") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let operation = item.as_str().and_then(Operation::from_keen_name).ok_or_else(|| {
                        invalid(format!("{item} is not a permission; use writes, queries, saved_queries, cached_queries, datasets, schema."))
                    })?;
                    if !permitted.contains(&operation) {
                        permitted.push(operation);
                    }
                }
            }
            Some(_) => return Err(invalid("permitted must be a list of permissions.")),
        }
        let given = object.get("options").unwrap_or(&Value::Null);
        let options = KeyOptions::parse(given)?;
        let mut options_json = given.as_object().cloned().unwrap_or_default();
        for group in OPTION_GROUPS {
            options_json.entry(group.to_string()).or_insert(Value::Null);
        }
        Ok(AccessKeyDefinition {
            name,
            is_active,
            permitted,
            expires_at,
            options_json: Value::Object(options_json),
            options,
        })
    }

    /// The permitted operations by their Keen names, as the API shows them.
    pub fn permitted_names(&self) -> Value {
        json!(
            self.permitted
                .iter()
                .map(|operation| operation.keen_name())
                .collect::<Vec<_>>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes_definitions() {
        let definition = AccessKeyDefinition::parse(&json!({
            "name": "acme", "permitted": ["queries", "writes", "queries"], "expires_at": "2030-01-01T00:00:00Z",
            "options": {"queries": {"filters": [{"property_name": "vendor_id", "operator": "eq", "property_value": "acme"}]},
                        "writes": {"autofill": {"vendor_id": "acme", "vendor": {"tier": "gold"}}}}
        }))
        .unwrap();
        assert!(definition.is_active);
        assert_eq!(
            definition.permitted,
            [Operation::Queries, Operation::Writes]
        );
        assert_eq!(definition.options_json["datasets"], Value::Null);
        assert_eq!(definition.options_json["limits"], Value::Null);
        assert_eq!(definition.options.queries.filters.len(), 1);
        assert_eq!(definition.expires_at, Some(1_893_456_000_000));
    }

    #[test]
    fn refuses_malformed_definitions() {
        for bad in [
            json!({"permitted": []}),
            json!({"name": "k", "permitted": ["reads"]}),
            json!({"name": "k", "options": {"querys": {"filters": []}}}),
            json!({"name": "k", "options": {"queries": {"filters": [{"operator": "eq"}]}}}),
            json!({"name": "k", "is_active": "yes"}),
            json!({"name": "k", "expires_at": "tomorrow"}),
            json!({"name": "k", "expires": "2030-01-01"}),
        ] {
            assert!(AccessKeyDefinition::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for body in [
            &br#"{"name": "k", "name": "j"}"#[..],
            br#"{"name": "k", "options": {"queries": {"filters": [{"property_name": "t", "operator": "eq", "property_value": "a"}], "filters": []}}}"#,
            br#"{"name": "k", "options": {"queries": {"filters": [{"property_name": "t", "property_name": "u", "operator": "eq", "property_value": "a"}]}}}"#,
        ] {
            let error = AccessKeyDefinition::parse_bytes(body).unwrap_err();
            assert!(error.0.contains("appears twice"), "{error}");
        }
        assert!(AccessKeyDefinition::parse_bytes(br#"{"name": "k"}"#).is_ok());
    }
}
