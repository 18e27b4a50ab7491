//! Turning one client-sent JSON event into what Keyhole stores, following Keen's write rules: the
//! event is an object, property names and values obey Keen's limits, the reserved `keen` namespace is
//! checked, `${keen.ip}`/`${keen.user_agent}` placeholders are filled, the writing key's autofill is stamped
//! and the add-ons run, and `keen.timestamp`, `keen.created_at` and `keen.id` are set. The result carries
//! both the event's flattened form (what the columnar buffers take) and its JSON text (what the WAL keeps).
//!
//! Design: the event's text is parsed straight into its flattened form (`event_parse`), with no tree of
//! JSON values in between, and every later step — stamp, add-ons, the JSON text — works on that form
//! (`flat_edit`). A request holds its body and its prepared events, nothing proportional to a tree.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::flat::{
    CREATED_AT_COLUMN, FlatEvent, FlatValue, ID_COLUMN, TIMESTAMP_COLUMN, flatten_at,
    flatten_properties,
};
use crate::names::property_name_problem;
use crate::timestamp::{EpochMillis, format_timestamp, parse_timestamp};

/// Largest serialized event Keen accepts (bytes).
pub const MAX_EVENT_BYTES: usize = 900_000;
/// String values must be shorter than this many characters.
pub(crate) const MAX_STRING_CHARS: usize = 10_000;
/// Longest `keen.uniqueness_token`.
pub(crate) const MAX_UNIQUENESS_TOKEN_CHARS: usize = 64;

const IP_PLACEHOLDER: &str = "${keen.ip}";
const USER_AGENT_PLACEHOLDER: &str = "${keen.user_agent}";

/// Why an event was refused. The server maps each kind to Keen's `error_code` and HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body or an event is not what an event must be (`InvalidEventError`).
    #[error("{0}")]
    InvalidEvent(String),
    /// An event or a string is too large.
    #[error("{0}")]
    EventTooLarge(String),
    /// The `keen` namespace is not an object.
    #[error("{0}")]
    NamespaceType(String),
    /// A `keen` property that is not one a client may set, or an invalid one.
    #[error("{0}")]
    InvalidKeenNamespaceProperty(String),
    /// A list holding objects or lists.
    #[error("{0}")]
    ListsOfNonPrimitivesNotAllowed(String),
    /// A property name Keen (or safe storage) refuses.
    #[error("{0}")]
    InvalidPropertyName(String),
    /// A property value Keen refuses.
    #[error("{0}")]
    InvalidPropertyValue(String),
    /// A collection name Keen refuses.
    #[error("{0}")]
    InvalidCollectionName(String),
}

/// The hidden property recording which writer scope a `keen.uniqueness_token` belongs to (see
/// [`uniqueness_key`]). Clients cannot set it (it is not a `keen.*` property they may send); the schema
/// endpoints and extraction leave it out.
pub const UNIQUENESS_SCOPE_PATH: &str = "keen.uniqueness_scope";

/// What the write path knows about the request an event arrived in.
#[derive(Clone, Debug)]
pub struct EventContext {
    /// When the server received the event (its `keen.timestamp` when the client sets none).
    pub received_at: DateTime<Utc>,
    /// The client's IP address, for `${keen.ip}`.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`, for `${keen.user_agent}`.
    pub user_agent: Option<String>,
    /// The writer's deduplication scope: set for keys that autofill events (a tenant's key), so that one
    /// tenant's `keen.uniqueness_token` can never suppress another scope's event. `None` for keys that
    /// write unscoped (master, write, access keys without autofill), which share one scope.
    pub uniqueness_scope: Option<String>,
    /// The writing key's autofill: stamped onto the event, its add-ons run after the event's own, and
    /// nothing else may touch what it fills (see `autofill`).
    pub autofill: Option<std::sync::Arc<crate::autofill::Autofill>>,
}

impl EventContext {
    /// What a placeholder string stands for: `Some(value)` for `${keen.ip}` and `${keen.user_agent}`
    /// (`None` inside when the request has no such fact), `None` for any other string.
    pub fn placeholder(&self, text: &str) -> Option<Option<String>> {
        match text {
            IP_PLACEHOLDER => Some(self.client_ip.clone()),
            USER_AGENT_PLACEHOLDER => Some(self.user_agent.clone()),
            _ => None,
        }
    }
}

/// A validated event with Keen's server-side fields set.
#[derive(Clone, Debug)]
pub struct PreparedEvent {
    /// The final event as JSON text (shared, not copied, by the WAL record that carries it).
    pub json: bytes::Bytes,
    /// The event flattened into property paths, as storage keeps it.
    pub flat: FlatEvent,
    /// The deduplication key of its `keen.uniqueness_token`, within its writer's scope.
    pub uniqueness_token: Option<String>,
}

/// The key under which a uniqueness token deduplicates: the token within its writer's scope. Events
/// deduplicate only against events of the same collection written in the same scope.
pub fn uniqueness_key(scope: Option<&str>, token: &str) -> String {
    match scope {
        Some(scope) => format!("{scope}\u{1f}{token}"),
        None => token.to_string(),
    }
}

/// Rebuilds the flattened form of an event Keyhole stored earlier (WAL replay), with the deduplication
/// key of its uniqueness token. `None` when the text is not an event Keyhole wrote.
pub fn reload_event(json: &[u8]) -> Option<(FlatEvent, Option<String>)> {
    let Value::Object(event) = serde_json::from_slice::<Value>(json).ok()? else {
        return None;
    };
    let keen = event.get("keen")?.as_object()?;
    let timestamp_millis = parse_timestamp(keen.get("timestamp")?.as_str()?)?;
    let created_at_millis = parse_timestamp(keen.get("created_at")?.as_str()?)?;
    let id = keen.get("id")?.as_str()?.to_string();
    let scope = keen.get("uniqueness_scope").and_then(Value::as_str);
    let token = keen
        .get("uniqueness_token")
        .and_then(Value::as_str)
        .map(|token| uniqueness_key(scope, token));
    let properties = flatten_properties(event);
    Some((
        FlatEvent {
            timestamp_millis,
            created_at_millis,
            id,
            properties,
        },
        token,
    ))
}

/// Validates and completes one event; see the module docs. Add-ons that need data (geo, user agents, the
/// referrer list) are refused: [`prepare_event_enriched`] takes the data.
pub fn prepare_event(event: Value, context: &EventContext) -> Result<PreparedEvent, EventError> {
    prepare_event_enriched(event, context, &crate::addons::WithoutData)
}

/// [`prepare_event`], applying the event's `keen.addons` (and the writing key's) with `enricher`.
pub fn prepare_event_enriched(
    event: Value,
    context: &EventContext,
    enricher: &dyn crate::addons::Enricher,
) -> Result<PreparedEvent, EventError> {
    let text = serde_json::to_vec(&event).expect("a JSON value always serializes");
    prepare_event_text(&text, context, enricher)
}

/// Prepares one event from its JSON text: the write path.
///
/// The order is what keeps a tenant's stamp intact: the key's autofill is stamped first (its values win
/// over the event's), every add-on is checked against it before any runs (`Autofill::check_addon`), the
/// add-ons run, and then what they wrote is held to the same rules as what the client sent.
pub fn prepare_event_text(
    text: &[u8],
    context: &EventContext,
    enricher: &dyn crate::addons::Enricher,
) -> Result<PreparedEvent, EventError> {
    let parsed = crate::event_parse::parse_event(text, context)?;
    let mut properties = parsed.properties;
    let mut keen_in = match parsed.keen {
        None => Map::new(),
        Some(Value::Object(keen)) => keen,
        Some(_) => {
            return Err(EventError::NamespaceType(
                "The 'keen' property must be a JSON object.".to_string(),
            ));
        }
    };
    replace_placeholders(&mut keen_in, context);
    let event_addons = keen_in
        .remove("addons")
        .map(|specs| crate::addons::parse_addons_cached(&specs))
        .transpose()?;
    let autofill = context.autofill.as_deref();
    if let Some(autofill) = autofill {
        autofill.stamp(&mut properties, context);
    }
    let key_addons = autofill.map(super::autofill::Autofill::addons);
    let addons = event_addons
        .iter()
        .chain(key_addons)
        .flat_map(|specs| specs.iter());
    if let Some(autofill) = autofill {
        for spec in addons.clone() {
            autofill.check_addon(spec)?;
        }
    }
    let keen_fields = KeenFields::from_client(keen_in, context)?;
    let created_at = context.received_at.timestamp_millis();
    let id = new_event_id(created_at);
    let uniqueness_scope = context.uniqueness_scope.as_deref();
    // The event's `keen.*` properties: the fixed three (kept in columns of their own, written to the JSON
    // text) and those the client may set.
    let mut keen = vec![
        (
            TIMESTAMP_COLUMN.to_string(),
            FlatValue::Str(format_timestamp(keen_fields.timestamp)),
        ),
        (
            CREATED_AT_COLUMN.to_string(),
            FlatValue::Str(format_timestamp(created_at)),
        ),
        (ID_COLUMN.to_string(), FlatValue::Str(id.clone())),
    ];
    for (name, value) in keen_fields.passthrough {
        flatten_at(format!("keen.{name}"), value, &mut keen);
    }
    if let (Some(scope), Some(_)) = (uniqueness_scope, &keen_fields.uniqueness_token) {
        keen.push((
            UNIQUENESS_SCOPE_PATH.to_string(),
            FlatValue::Str(scope.to_string()),
        ));
    }
    let mut ran_addons = false;
    for spec in addons {
        crate::addons::apply_addon(&mut properties, &keen, spec, enricher)?;
        ran_addons = true;
    }
    if ran_addons {
        validate_flat(&properties)?;
    }
    check_nesting(&properties)?;

    // The fixed three are columns of their own; the JSON text holds them too.
    let fixed = keen.drain(..3).collect::<Vec<_>>();
    properties.append(&mut keen);
    // In the order the JSON text lists them, which is the order a replay reads them back in; sorted, a
    // member an object names twice shows as neighbours.
    properties.sort_by(|left, right| crate::flat_edit::path_order(&left.0, &right.0));
    refuse_repeated_members(&properties)?;
    let leaves = properties
        .iter()
        .chain(&fixed)
        .map(|(path, value)| (path.as_str(), value))
        .collect();
    // About the text as sent plus the fields Keyhole sets: one allocation, trimmed below.
    let mut json = crate::flat_edit::write_json(leaves, text.len() + 160);
    // A request holds all its prepared events at once: no spare capacity is kept.
    json.shrink_to_fit();
    if json.len() > MAX_EVENT_BYTES {
        return Err(EventError::EventTooLarge(format!(
            "An event must be at most {MAX_EVENT_BYTES} bytes; this one is {} bytes.",
            json.len()
        )));
    }
    properties.shrink_to_fit();
    Ok(PreparedEvent {
        json: json.into(),
        flat: FlatEvent {
            timestamp_millis: keen_fields.timestamp,
            created_at_millis: created_at,
            id,
            properties,
        },
        uniqueness_token: keen_fields
            .uniqueness_token
            .map(|token| uniqueness_key(uniqueness_scope, &token)),
    })
}

/// Holds what add-ons wrote to the rules of what clients send: every segment a property name, strings
/// shorter than the limit.
fn validate_flat(properties: &[(String, FlatValue)]) -> Result<(), EventError> {
    for (path, value) in properties {
        if let Some(problem) = path.split('.').find_map(property_name_problem) {
            return Err(EventError::InvalidPropertyName(problem));
        }
        let name = path.rsplit('.').next().unwrap_or(path);
        match value {
            FlatValue::Str(text) => validate_string(name, text)?,
            FlatValue::StrList(texts) => {
                for text in texts.iter().flatten() {
                    validate_string(name, text)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses an event one of whose objects names a member twice: sorted, its properties hold two at one path,
/// or one under another (`{"a": {"x": 1}, "a": 2}`). A JSON object with a repeated name means different
/// things to different readers, and Keyhole stores one value per property.
fn refuse_repeated_members(sorted: &[(String, FlatValue)]) -> Result<(), EventError> {
    for pair in sorted.windows(2) {
        let (earlier, later) = (&pair[0].0, &pair[1].0);
        if crate::flat_edit::is_at_or_under(later, earlier) {
            return Err(EventError::InvalidEvent(format!(
                "The event names '{}' twice in one object; each member may appear once.",
                earlier.chars().take(200).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Refuses an event nested deeper than [`MAX_EVENT_DEPTH`] (see `flat_edit::nesting_of`).
fn check_nesting(properties: &[(String, FlatValue)]) -> Result<(), EventError> {
    match properties
        .iter()
        .find(|(path, value)| crate::flat_edit::nesting_of(path, value) > MAX_EVENT_DEPTH)
    {
        None => Ok(()),
        Some((path, _)) => Err(EventError::InvalidEvent(format!(
            "Property '{}' is nested too deeply: an event may nest objects and lists at most {MAX_EVENT_DEPTH} levels deep.",
            path.rsplit('.').next().unwrap_or(path)
        ))),
    }
}

/// The client's `keen` object, checked: what Keyhole keeps of it and the event time it names.
struct KeenFields {
    timestamp: EpochMillis,
    uniqueness_token: Option<String>,
    /// Client `keen.*` properties stored as sent (`location`, `uniqueness_token`).
    passthrough: Map<String, Value>,
}

impl KeenFields {
    fn from_client(keen: Map<String, Value>, context: &EventContext) -> Result<Self, EventError> {
        let mut fields = KeenFields {
            timestamp: context.received_at.timestamp_millis(),
            uniqueness_token: None,
            passthrough: Map::new(),
        };
        for (name, value) in keen {
            match name.as_str() {
                "timestamp" => fields.timestamp = parse_client_timestamp(&value)?,
                // Server-assigned; a client's value is replaced, as Keen does.
                "created_at" | "id" => {}
                "uniqueness_token" => {
                    let token = parse_uniqueness_token(&value)?;
                    fields.uniqueness_token = Some(token.clone());
                    fields.passthrough.insert(name, Value::String(token));
                }
                "location" => {
                    // The keen object is at level 2 of the event.
                    validate_value("keen.location", &value, 2)?;
                    fields.passthrough.insert(name, value);
                }
                _ => {
                    return Err(EventError::InvalidKeenNamespaceProperty(format!(
                        "'keen.{name}' is not a property you may set in the keen namespace."
                    )));
                }
            }
        }
        Ok(fields)
    }
}

fn parse_client_timestamp(value: &Value) -> Result<EpochMillis, EventError> {
    value.as_str().and_then(parse_timestamp).ok_or_else(|| {
        EventError::InvalidKeenNamespaceProperty(format!(
            "keen.timestamp must be an ISO-8601 date-time string, got {value}."
        ))
    })
}

fn parse_uniqueness_token(value: &Value) -> Result<String, EventError> {
    match value.as_str() {
        Some(token) if !token.is_empty() && token.chars().count() <= MAX_UNIQUENESS_TOKEN_CHARS => {
            Ok(token.to_string())
        }
        _ => Err(EventError::InvalidKeenNamespaceProperty(format!(
            "keen.uniqueness_token must be a non-empty string of at most {MAX_UNIQUENESS_TOKEN_CHARS} characters."
        ))),
    }
}

/// How deeply an event may nest: the event object is level 1, each object or list inside it one more
/// (`{"a": {"b": [1]}}` is 3 deep). Checked on the final event, after autofill and add-ons, so whatever is
/// acknowledged is below serde_json's recursion limit of 128 levels, which the WAL and the shared log
/// read events back with, even inside a batch's two levels of wrapping.
pub const MAX_EVENT_DEPTH: usize = 100;

/// Checks a JSON object as an event's properties (names, strings, lists of primitives, nesting within
/// [`MAX_EVENT_DEPTH`]): what a key's autofill must obey, since it is stamped onto events.
pub(crate) fn validate_event_object(object: &Map<String, Value>) -> Result<(), EventError> {
    validate_properties(object, 1)
}

/// Checks the members of an object that sits at nesting level `level`.
fn validate_properties(object: &Map<String, Value>, level: usize) -> Result<(), EventError> {
    for (name, value) in object {
        if let Some(problem) = property_name_problem(name) {
            return Err(EventError::InvalidPropertyName(problem));
        }
        validate_value(name, value, level)?;
    }
    Ok(())
}

/// Checks a value held by a container at nesting level `level` (so a nested object or list is at
/// `level + 1`); refuses past [`MAX_EVENT_DEPTH`] before looking inside.
fn validate_value(name: &str, value: &Value, level: usize) -> Result<(), EventError> {
    if matches!(value, Value::Object(_) | Value::Array(_)) && level >= MAX_EVENT_DEPTH {
        return Err(EventError::InvalidEvent(format!(
            "Property '{name}' is nested too deeply: an event may nest objects and lists at most {MAX_EVENT_DEPTH} levels deep."
        )));
    }
    match value {
        Value::String(text) => validate_string(name, text),
        Value::Object(nested) => validate_properties(nested, level + 1),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        return Err(EventError::ListsOfNonPrimitivesNotAllowed(format!(
                            "Property '{name}' is a list containing objects or lists; lists may hold only strings, numbers, booleans and nulls."
                        )));
                    }
                    Value::String(text) => validate_string(name, text)?,
                    _ => {}
                }
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

pub(crate) fn validate_string(name: &str, text: &str) -> Result<(), EventError> {
    if text.len() < MAX_STRING_CHARS || text.chars().count() < MAX_STRING_CHARS {
        return Ok(());
    }
    Err(EventError::InvalidPropertyValue(format!(
        "Property '{name}' holds a string of {} characters; strings must be shorter than {MAX_STRING_CHARS}.",
        text.chars().count()
    )))
}

fn replace_placeholders(object: &mut Map<String, Value>, context: &EventContext) {
    for value in object.values_mut() {
        replace_placeholder_value(value, context);
    }
}

fn replace_placeholder_value(value: &mut Value, context: &EventContext) {
    match value {
        Value::String(text) if text == IP_PLACEHOLDER => {
            *value = context.client_ip.clone().map_or(Value::Null, Value::String);
        }
        Value::String(text) if text == USER_AGENT_PLACEHOLDER => {
            *value = context
                .user_agent
                .clone()
                .map_or(Value::Null, Value::String);
        }
        Value::Object(nested) => replace_placeholders(nested, context),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_placeholder_value(item, context)),
        _ => {}
    }
}

/// A 24-hex-digit id shaped like Keen's (MongoDB ObjectId): 4 bytes of seconds, 8 random bytes.
fn new_event_id(created_at_millis: i64) -> String {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&((created_at_millis / 1000) as u32).to_be_bytes());
    rand::fill(&mut bytes[4..]);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> EventContext {
        EventContext {
            received_at: "2024-05-01T10:00:00Z".parse().unwrap(),
            client_ip: Some("10.1.2.3".into()),
            user_agent: Some("curl/8".into()),
            uniqueness_scope: None,
            autofill: None,
        }
    }

    fn stored(event: Value) -> Value {
        let prepared = prepare_event(event, &context()).unwrap();
        serde_json::from_slice(&prepared.json).unwrap()
    }

    #[test]
    fn sets_keen_fields_and_keeps_client_timestamp() {
        let event = stored(
            json!({"a": 1, "keen": {"timestamp": "2020-01-02T03:04:05.678901", "id": "mine", "created_at": "x"}}),
        );
        assert_eq!(event["keen"]["timestamp"], "2020-01-02T03:04:05.678Z");
        assert_eq!(event["keen"]["created_at"], "2024-05-01T10:00:00.000Z");
        assert_ne!(event["keen"]["id"], "mine");
        assert_eq!(event["keen"]["id"].as_str().unwrap().len(), 24);
        let event = stored(json!({"a": 1}));
        assert_eq!(event["keen"]["timestamp"], "2024-05-01T10:00:00.000Z");
    }

    #[test]
    fn reloads_what_it_prepared() {
        let prepared = prepare_event(
            json!({"a": {"b": [1, 2]}, "keen": {"uniqueness_token": "t1"}}),
            &context(),
        )
        .unwrap();
        let (flat, token) = reload_event(&prepared.json).unwrap();
        assert_eq!(flat, prepared.flat);
        assert_eq!(token.as_deref(), Some("t1"));
        assert!(reload_event(b"{}").is_none());
        let scoped_context = EventContext {
            uniqueness_scope: Some("acme".into()),
            ..context()
        };
        let scoped =
            prepare_event(json!({"keen": {"uniqueness_token": "t1"}}), &scoped_context).unwrap();
        assert_eq!(scoped.uniqueness_token.as_deref(), Some("acme\u{1f}t1"));
        let (_, reloaded_token) = reload_event(&scoped.json).unwrap();
        assert_eq!(reloaded_token, scoped.uniqueness_token);
        assert!(matches!(
            prepare_event(json!({"keen": {"uniqueness_scope": "acme"}}), &context()),
            Err(EventError::InvalidKeenNamespaceProperty(_))
        ));
    }

    #[test]
    fn replaces_placeholders_applies_addons_and_drops_them() {
        let event = stored(
            json!({"ip": "${keen.ip}", "ua": {"raw": "${keen.user_agent}"}, "page": "https://a.example/x?y=1",
                   "keen": {"addons": [{"name": "keen:url_parser", "input": {"url": "page"}, "output": "page_info"},
                                       {"name": "keen:date_time_parser", "input": {"date_time": "keen.timestamp"}, "output": "at"}]}}),
        );
        assert_eq!(event["ip"], "10.1.2.3");
        assert_eq!(event["ua"]["raw"], "curl/8");
        assert_eq!(event["page_info"]["domain"], "a.example");
        assert!(event["at"]["year"].is_number());
        assert!(event["keen"].get("addons").is_none());
        // Without a GeoIP database, ip_to_geo is refused rather than left empty.
        let geo = json!({"ip": "${keen.ip}", "keen": {"addons": [{"name": "keen:ip_to_geo", "input": {"ip": "ip"}, "output": "geo"}]}});
        let refused = prepare_event(geo, &context()).unwrap_err();
        assert!(
            refused.to_string().contains("no GeoIP database"),
            "{refused}"
        );
    }

    #[test]
    fn an_object_naming_a_member_twice_is_refused() {
        let prepare = |text: &str| {
            prepare_event_text(text.as_bytes(), &context(), &crate::addons::WithoutData)
        };
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"x": 1}, "a": 2}"#,
            r#"{"o": {"b": [1], "b": {"c": 1}}}"#,
        ] {
            let refused = prepare(text).unwrap_err();
            assert!(refused.to_string().contains("twice"), "{text}: {refused}");
        }
        assert!(prepare(r#"{"a": {"x": 1}, "b": {"x": 1}}"#).is_ok());
        assert!(prepare(r#"{"keen": {}, "keen": {}}"#).is_err());
        let bulky = format!(
            r#"{{"keen": {{"location": {{"coordinates": [{}0]}}}}}}"#,
            "0,".repeat(40_000)
        );
        let refused = prepare(&bulky).unwrap_err();
        assert!(
            refused.to_string().contains("at most 65536 bytes"),
            "{refused}"
        );
    }

    #[test]
    fn refuses_what_keen_refuses() {
        let refuse = |event: Value| prepare_event(event, &context()).unwrap_err();
        assert!(matches!(refuse(json!([1])), EventError::InvalidEvent(_)));
        assert!(matches!(
            refuse(json!({"keen": 5})),
            EventError::NamespaceType(_)
        ));
        assert!(matches!(
            refuse(json!({"keen": {"foo": 1}})),
            EventError::InvalidKeenNamespaceProperty(_)
        ));
        assert!(matches!(
            refuse(json!({"keen": {"timestamp": "soon"}})),
            EventError::InvalidKeenNamespaceProperty(_)
        ));
        assert!(matches!(
            refuse(json!({"keen": {"uniqueness_token": "x".repeat(65)}})),
            EventError::InvalidKeenNamespaceProperty(_)
        ));
        assert!(matches!(
            refuse(json!({"a.b": 1})),
            EventError::InvalidPropertyName(_)
        ));
        assert!(matches!(
            refuse(json!({"o": {"$x": 1}})),
            EventError::InvalidPropertyName(_)
        ));
        assert!(matches!(
            refuse(json!({"l": [{"a": 1}]})),
            EventError::ListsOfNonPrimitivesNotAllowed(_)
        ));
        assert!(matches!(
            refuse(json!({"l": [[1]]})),
            EventError::ListsOfNonPrimitivesNotAllowed(_)
        ));
        assert!(matches!(
            refuse(json!({"s": "x".repeat(10_000)})),
            EventError::InvalidPropertyValue(_)
        ));
        let big: Vec<String> = (0..100).map(|_| "y".repeat(9_999)).collect();
        assert!(matches!(
            refuse(json!({"big": big})),
            EventError::EventTooLarge(_)
        ));
    }
}
