//! Tenants: a project's customers as objects. A project names one property as its tenancy property
//! (`customer.id`, say); a tenant is a value of that property with a display name and options, and owns two
//! access keys made from it: a read key (`queries`, `saved_queries`, `cached_queries`, `datasets`, every
//! read filtered by `property eq id`) and a write key (`writes`, every event stamped with `property = id`).
//!
//! This module parses the two request bodies (`PUT …/tenancy`, `POST …/tenants`) once, at the edge, and
//! builds the two key definitions from a parsed tenant. The definitions go through
//! [`AccessKeyDefinition::parse`], the one parser every key passes, so a tenant's keys are held to exactly
//! the rules of any other key.
//!
//! Design: a tenant's `options` are the subset of key options that make sense on both of its keys, in
//! one flat object: `filters` (extra read filters, AND-ed with the tenant filter; read key only),
//! `max_lookback`, `limits`, `origins` and `expires_at` (both keys). Unknown fields are refused, never
//! ignored, as in key options: a misspelt `filters` must not silently widen what a tenant's key reads.

use serde_json::{Map, Value, json};

use crate::access::AccessKeyDefinition;
use crate::key_options::KeyDefinitionError;
use crate::names::path_problem;

/// The longest tenant id, in characters.
pub const MAX_TENANT_ID_CHARS: usize = 128;
/// The longest tenant name, in characters.
pub const MAX_TENANT_NAME_CHARS: usize = 256;

/// The fields of a tenant's `options`.
const TENANT_OPTION_FIELDS: [&str; 5] =
    ["filters", "max_lookback", "limits", "origins", "expires_at"];

/// Why a tenancy or tenant body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TenantDefinitionError(pub String);

fn invalid(message: impl Into<String>) -> TenantDefinitionError {
    TenantDefinitionError(message.into())
}

impl From<KeyDefinitionError> for TenantDefinitionError {
    fn from(error: KeyDefinitionError) -> TenantDefinitionError {
        TenantDefinitionError(error.0)
    }
}

fn parse_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, TenantDefinitionError> {
    let value = crate::strict_json::parse(bytes).map_err(|error| {
        invalid(format!(
            "{what} must be a JSON object without repeated keys: {error}."
        ))
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(invalid(format!("{what} must be a JSON object."))),
    }
}

fn refuse_unknown_fields(
    object: &Map<String, Value>,
    known: &[&str],
    what: &str,
) -> Result<(), TenantDefinitionError> {
    match object.keys().find(|field| !known.contains(&field.as_str())) {
        Some(unknown) => Err(invalid(format!("{unknown} is not a field of {what}."))),
        None => Ok(()),
    }
}

/// A project's tenancy: the property whose value names an event's tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenancy {
    /// A dotted property path (`customer.id`).
    pub property: String,
}

impl Tenancy {
    /// Parses a `PUT …/tenancy` body: `{"property": "customer.id"}`.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Tenancy, TenantDefinitionError> {
        let object = parse_object(bytes, "The tenancy")?;
        refuse_unknown_fields(&object, &["property"], "the tenancy")?;
        let Some(Value::String(property)) = object.get("property") else {
            return Err(invalid(
                "The tenancy needs a property: the property path naming each event's tenant, such as \"customer.id\".",
            ));
        };
        Tenancy::new(property)
    }

    /// A tenancy on `property`, checked like any property path; `keen.*` properties are Keen's own.
    pub fn new(property: &str) -> Result<Tenancy, TenantDefinitionError> {
        if let Some(problem) = path_problem(property) {
            return Err(invalid(format!(
                "The tenancy property is not a valid property path: {problem}"
            )));
        }
        if property == "keen" || property.starts_with("keen.") {
            return Err(invalid(
                "The tenancy property cannot be one of Keen's own (keen.*) properties.",
            ));
        }
        Ok(Tenancy {
            property: property.to_string(),
        })
    }
}

/// Why a text is not a tenant id, or `None` when it is one: 1–128 characters of `A-Z a-z 0-9 . _ -`.
pub fn tenant_id_problem(id: &str) -> Option<String> {
    let length = id.chars().count();
    if length == 0 || length > MAX_TENANT_ID_CHARS {
        return Some(format!(
            "A tenant id has 1 to {MAX_TENANT_ID_CHARS} characters."
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !id.chars().all(allowed) {
        return Some(format!(
            "A tenant id holds only letters A-Z and a-z, digits, '.', '_' and '-': {:?} does not.",
            id.escape_debug().to_string()
        ));
    }
    // `.` and `..` do not survive in a URL path; `erasures` names the receipts' route.
    if matches!(id, "." | ".." | "erasures") {
        return Some(format!(
            "{id:?} cannot be a tenant id: it would not address the tenant in a URL."
        ));
    }
    None
}

/// A parsed `POST …/tenants` body.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantDefinition {
    /// Unique in the project; the value of the tenancy property on the tenant's events.
    pub id: String,
    /// For people; the id when not given.
    pub name: String,
    /// The tenant's options as given (an object, `{}` when not given), checked by building both keys.
    pub options: Map<String, Value>,
}

impl TenantDefinition {
    /// Parses `{"id", "name"?, "options"?}`.
    pub fn parse_bytes(bytes: &[u8]) -> Result<TenantDefinition, TenantDefinitionError> {
        let object = parse_object(bytes, "A tenant")?;
        refuse_unknown_fields(&object, &["id", "name", "options"], "a tenant")?;
        let id = match object.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => return Err(invalid("A tenant needs an id (a string).")),
        };
        if let Some(problem) = tenant_id_problem(&id) {
            return Err(invalid(problem));
        }
        let name = match object.get("name") {
            None | Some(Value::Null) => id.clone(),
            Some(Value::String(name))
                if !name.trim().is_empty() && name.chars().count() <= MAX_TENANT_NAME_CHARS =>
            {
                name.clone()
            }
            Some(_) => {
                return Err(invalid(format!(
                    "A tenant's name is a non-empty string of at most {MAX_TENANT_NAME_CHARS} characters."
                )));
            }
        };
        let options = parse_tenant_options(object.get("options"))?;
        Ok(TenantDefinition { id, name, options })
    }
}

/// A parsed `PATCH …/tenants/{id}` body: what to change (`None`: keep).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantChange {
    /// A new name.
    pub name: Option<String>,
    /// Suspend (`true`) or resume (`false`) the tenant's keys and embed tokens.
    pub suspended: Option<bool>,
    /// New options (a whole replacement, as at creation): both keys are made again from them.
    pub options: Option<Map<String, Value>>,
}

impl TenantChange {
    /// Parses `{"name"?, "suspended"?, "options"?}`; at least one must be given.
    pub fn parse_bytes(bytes: &[u8]) -> Result<TenantChange, TenantDefinitionError> {
        let object = parse_object(bytes, "A tenant change")?;
        refuse_unknown_fields(
            &object,
            &["name", "suspended", "options"],
            "a tenant change",
        )?;
        let name = match object.get("name") {
            None => None,
            Some(Value::String(name))
                if !name.trim().is_empty() && name.chars().count() <= MAX_TENANT_NAME_CHARS =>
            {
                Some(name.clone())
            }
            Some(_) => {
                return Err(invalid(format!(
                    "A tenant's name is a non-empty string of at most {MAX_TENANT_NAME_CHARS} characters."
                )));
            }
        };
        let suspended = match object.get("suspended") {
            None => None,
            Some(Value::Bool(suspended)) => Some(*suspended),
            Some(_) => return Err(invalid("suspended must be true or false.")),
        };
        let options = match object.get("options") {
            None => None,
            Some(value) => Some(parse_tenant_options(Some(value))?),
        };
        if name.is_none() && suspended.is_none() && options.is_none() {
            return Err(invalid(
                "A tenant change names a new name, options, suspended, or several of them.",
            ));
        }
        Ok(TenantChange {
            name,
            suspended,
            options,
        })
    }
}

/// The longest grace period of a key rotation: 30 days.
pub const MAX_ROTATION_GRACE_SECONDS: u64 = 30 * 86_400;

/// Parses a `POST …/tenants/{id}/rotate-keys` body: empty, or `{"grace_seconds": N}` with N a whole number
/// from 0 to 30 days; answers N (0 when not given: the old keys stop at once).
pub fn parse_rotation_grace_seconds(bytes: &[u8]) -> Result<u64, TenantDefinitionError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let object = parse_object(bytes, "A key rotation")?;
    refuse_unknown_fields(&object, &["grace_seconds"], "a key rotation")?;
    match object.get("grace_seconds") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(number)) => number
            .as_u64()
            .filter(|seconds| *seconds <= MAX_ROTATION_GRACE_SECONDS)
            .ok_or_else(|| {
                invalid(format!(
                    "grace_seconds must be a whole number from 0 to {MAX_ROTATION_GRACE_SECONDS} (30 days)."
                ))
            }),
        Some(_) => Err(invalid("grace_seconds must be a number of seconds.")),
    }
}

/// Checks a tenant's `options` object's fields (their values are checked when the keys are built).
fn parse_tenant_options(
    value: Option<&Value>,
) -> Result<Map<String, Value>, TenantDefinitionError> {
    let options = match value {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(options)) => options.clone(),
        Some(_) => return Err(invalid("A tenant's options must be a JSON object.")),
    };
    refuse_unknown_fields(&options, &TENANT_OPTION_FIELDS, "a tenant's options")?;
    Ok(options)
}

/// `value` at the dotted `path`, as nested objects (`customer.id` = `acme` → `{"customer": {"id": "acme"}}`).
fn nested(path: &str, value: Value) -> Value {
    path.rsplit('.').fold(value, |inner, segment| {
        let mut object = Map::new();
        object.insert(segment.to_string(), inner);
        Value::Object(object)
    })
}

fn option(options: &Map<String, Value>, field: &str) -> Value {
    options.get(field).cloned().unwrap_or(Value::Null)
}

/// The read key's definition: queries, saved and cached queries, datasets; every read filtered by
/// `tenancy.property eq id`, then by the options' own `filters`.
pub fn read_key_definition(
    tenancy: &Tenancy,
    id: &str,
    options: &Map<String, Value>,
) -> Result<AccessKeyDefinition, TenantDefinitionError> {
    let mut filters = vec![json!({
        "property_name": tenancy.property,
        "operator": "eq",
        "property_value": id,
    })];
    match options.get("filters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(extra)) => filters.extend(extra.iter().cloned()),
        Some(_) => {
            return Err(invalid(
                "A tenant's options.filters must be a list of filters.",
            ));
        }
    }
    let mut queries = Map::new();
    queries.insert("filters".to_string(), Value::Array(filters));
    if let Some(lookback) = options.get("max_lookback") {
        queries.insert("max_lookback".to_string(), lookback.clone());
    }
    key_definition(
        &format!("tenant {id} (read)"),
        &["queries", "saved_queries", "cached_queries", "datasets"],
        json!({
            "queries": queries,
            "limits": option(options, "limits"),
            "origins": option(options, "origins"),
        }),
        options,
    )
}

/// The write key's definition: writes; every event stamped with `tenancy.property = id`, whatever it says.
pub fn write_key_definition(
    tenancy: &Tenancy,
    id: &str,
    options: &Map<String, Value>,
) -> Result<AccessKeyDefinition, TenantDefinitionError> {
    key_definition(
        &format!("tenant {id} (write)"),
        &["writes"],
        json!({
            "writes": {"autofill": nested(&tenancy.property, Value::String(id.to_string()))},
            "limits": option(options, "limits"),
            "origins": option(options, "origins"),
        }),
        options,
    )
}

fn key_definition(
    name: &str,
    permitted: &[&str],
    mut key_options: Value,
    tenant_options: &Map<String, Value>,
) -> Result<AccessKeyDefinition, TenantDefinitionError> {
    if let Value::Object(groups) = &mut key_options {
        groups.retain(|_, value| !value.is_null());
    }
    let body = json!({
        "name": name,
        "permitted": permitted,
        "options": key_options,
        "expires_at": option(tenant_options, "expires_at"),
    });
    Ok(AccessKeyDefinition::parse(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operation;

    #[test]
    fn tenancy_takes_a_property_path_and_refuses_keen_properties_and_other_fields() {
        let tenancy = Tenancy::parse_bytes(br#"{"property": "customer.id"}"#).unwrap();
        assert_eq!(tenancy.property, "customer.id");
        for bad in [
            r#"{"property": "keen.id"}"#,
            r#"{"property": ""}"#,
            r#"{"property": "a..b"}"#,
            r#"{"property": 3}"#,
            "{}",
            r#"{"property": "x", "other": 1}"#,
            r#"{"property": "x", "property": "y"}"#,
            "[]",
        ] {
            assert!(Tenancy::parse_bytes(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_ids_are_short_and_plain() {
        assert_eq!(tenant_id_problem("acme-1.eu_2"), None);
        assert_eq!(tenant_id_problem(&"a".repeat(128)), None);
        for bad in ["", "has space", "ünicode", "a/b", "x\u{0}"] {
            assert!(tenant_id_problem(bad).is_some(), "{bad:?}");
        }
        assert!(tenant_id_problem(&"a".repeat(129)).is_some());
    }

    #[test]
    fn a_tenant_body_is_parsed_once_with_its_name_defaulting_to_its_id() {
        let tenant = TenantDefinition::parse_bytes(br#"{"id": "acme"}"#).unwrap();
        assert_eq!(tenant.name, "acme");
        assert!(tenant.options.is_empty());
        for bad in [
            r#"{"name": "no id"}"#,
            r#"{"id": "acme", "options": {"filter": []}}"#,
            r#"{"id": "acme", "options": []}"#,
            r#"{"id": "acme", "name": ""}"#,
            r#"{"id": "acme", "colour": "red"}"#,
        ] {
            assert!(
                TenantDefinition::parse_bytes(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_read_key_filters_by_the_tenant_then_by_the_extra_filters() {
        let tenancy = Tenancy::new("customer.id").unwrap();
        let tenant = TenantDefinition::parse_bytes(
            br#"{"id": "acme", "options": {"filters": [{"property_name": "plan", "operator": "eq", "property_value": "pro"}],
                 "max_lookback": "90 days", "expires_at": "2030-01-01T00:00:00Z",
                 "limits": {"queries_per_day": 1000}, "origins": ["https://acme.example"]}}"#,
        )
        .unwrap();
        let read = read_key_definition(&tenancy, &tenant.id, &tenant.options).unwrap();
        assert_eq!(
            read.permitted,
            [
                Operation::Queries,
                Operation::SavedQueries,
                Operation::CachedQueries,
                Operation::Datasets
            ]
        );
        let filters = &read.options_json["queries"]["filters"];
        assert_eq!(filters[0]["property_name"], "customer.id");
        assert_eq!(filters[0]["property_value"], "acme");
        assert_eq!(filters[1]["property_name"], "plan");
        assert_eq!(read.options.queries.filters.len(), 2);
        assert!(read.options.queries.max_lookback_millis.is_some());
        assert!(read.expires_at.is_some());
        assert_eq!(read.options.limits.queries_per_day, Some(1000));
        assert!(read.options.origins.is_some());

        let write = write_key_definition(&tenancy, &tenant.id, &tenant.options).unwrap();
        assert_eq!(write.permitted, [Operation::Writes]);
        assert_eq!(
            write.options_json["writes"]["autofill"],
            json!({"customer": {"id": "acme"}})
        );
        assert!(write.options.queries.filters.is_empty());
        assert!(write.expires_at.is_some());
        assert!(write.options.origins.is_some());
    }

    #[test]
    fn a_change_names_a_name_options_or_a_suspension_and_nothing_else() {
        assert_eq!(
            TenantChange::parse_bytes(br#"{"suspended": true}"#).unwrap(),
            TenantChange {
                name: None,
                suspended: Some(true),
                options: None,
            }
        );
        assert_eq!(
            TenantChange::parse_bytes(br#"{"options": {"max_lookback": "90 days"}}"#)
                .unwrap()
                .options,
            Some(
                json!({"max_lookback": "90 days"})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        assert_eq!(
            TenantChange::parse_bytes(br#"{"name": "Acme"}"#)
                .unwrap()
                .name
                .as_deref(),
            Some("Acme")
        );
        for bad in [
            "{}",
            r#"{"suspended": "yes"}"#,
            r#"{"name": ""}"#,
            r#"{"id": "other"}"#,
            r#"{"options": []}"#,
            r#"{"options": {"writes": {}}}"#,
        ] {
            assert!(TenantChange::parse_bytes(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rotation_grace_is_absent_or_a_bounded_whole_number_of_seconds() {
        assert_eq!(parse_rotation_grace_seconds(b""), Ok(0));
        assert_eq!(parse_rotation_grace_seconds(b"{}"), Ok(0));
        assert_eq!(
            parse_rotation_grace_seconds(br#"{"grace_seconds": 3600}"#),
            Ok(3600)
        );
        for bad in [
            r#"{"grace_seconds": -1}"#,
            r#"{"grace_seconds": 1.5}"#,
            r#"{"grace_seconds": "60"}"#,
            r#"{"grace_seconds": 2592001}"#,
            r#"{"grace": 60}"#,
            "[]",
        ] {
            assert!(
                parse_rotation_grace_seconds(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_option_values_are_refused_by_the_key_rules() {
        let tenancy = Tenancy::new("customer_id").unwrap();
        for options in [
            json!({"filters": "plan = pro"}),
            json!({"filters": [{"property_name": "plan"}]}),
            json!({"max_lookback": "forever"}),
            json!({"limits": {"per_day": 3}}),
            json!({"expires_at": "tomorrow"}),
        ] {
            let options = options.as_object().unwrap().clone();
            let read = read_key_definition(&tenancy, "acme", &options);
            let write = write_key_definition(&tenancy, "acme", &options);
            assert!(read.is_err() || write.is_err(), "{options:?}");
        }
    }
}
