//! The body shapes third-party webhooks post to `POST /events/{collection}?api_key=…`, besides Keen's JSON
//! object (one event) and JSON array (a batch): `application/x-www-form-urlencoded` (Twilio, Mailgun: one
//! event whose properties are the form fields) and NDJSON (`application/x-ndjson`, `application/jsonl`:
//! one event per line, stored as a batch).
//!
//! Design: form values stay strings, as the provider sent them (no guessing of numbers); a field repeated
//! becomes a list of its values. A field name that cannot be a Keen property name because of its dots
//! (`Event.Type`) has them turned into underscores; one that still cannot is refused with the event. An
//! NDJSON body whose line does not parse is refused whole, naming the line, and nothing is stored (the
//! lines are split in `write_prepare`).
//!
//! A body without a `Content-Type` is JSON. A body declared as a form that opens with `{` or `[` is read as
//! JSON too: that is `curl -d '{…}'` (curl declares every `-d` body a form), and read as a form it would be
//! one event whose only property name is the JSON text — never what the sender meant.

use serde_json::{Map, Value};

/// How a request body is to be read, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyShape {
    /// Keen's JSON (also `text/plain`, as `sendBeacon` posts).
    Json,
    Form,
    NdJson,
}

impl BodyShape {
    /// The shape of `body`, sent with `content_type`.
    pub(crate) fn of(content_type: Option<&str>, body: &[u8]) -> BodyShape {
        let media_type = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match media_type.as_str() {
            "application/x-www-form-urlencoded"
                if !matches!(first_byte(body), Some(b'{' | b'[')) =>
            {
                BodyShape::Form
            }
            "application/x-ndjson"
            | "application/jsonl"
            | "application/json-lines"
            | "application/jsonlines" => BodyShape::NdJson,
            _ => BodyShape::Json,
        }
    }
}

/// The first byte of `body` that is not ASCII whitespace: what a JSON body opens with.
pub(crate) fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|byte| !byte.is_ascii_whitespace())
}

/// One event from a form-encoded body.
pub(crate) fn form_event(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The form body is not UTF-8.".to_string())?;
    let mut event = Map::new();
    for (name, value) in keyhole_model::query_string::pairs(text) {
        let name = property_name_of(&name)?;
        match event.get_mut(&name) {
            None => {
                event.insert(name, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => {
                let first = first.take();
                event.insert(name, Value::Array(vec![first, Value::String(value)]));
            }
        }
    }
    Ok(Value::Object(event))
}

fn property_name_of(field: &str) -> Result<String, String> {
    if keyhole_model::names::property_name_problem(field).is_none() {
        return Ok(field.to_string());
    }
    let undotted = field.replace('.', "_");
    match keyhole_model::names::property_name_problem(&undotted) {
        None => Ok(undotted),
        Some(problem) => Err(format!(
            "The form field '{}' cannot be a property name: {problem}",
            field.chars().take(100).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn shapes_come_from_the_content_type() {
        assert_eq!(
            BodyShape::of(
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                b"a=1"
            ),
            BodyShape::Form
        );
        assert_eq!(
            BodyShape::of(Some("application/x-www-form-urlencoded"), b" {\"a\": 1}"),
            BodyShape::Json
        );
        assert_eq!(
            BodyShape::of(Some("application/x-www-form-urlencoded"), b"[{}]"),
            BodyShape::Json
        );
        assert_eq!(
            BodyShape::of(Some("application/x-ndjson"), b"{}"),
            BodyShape::NdJson
        );
        assert_eq!(
            BodyShape::of(Some("text/plain;charset=UTF-8"), b"{}"),
            BodyShape::Json
        );
        assert_eq!(BodyShape::of(None, b"a=1"), BodyShape::Json);
    }

    #[test]
    fn form_fields_become_string_properties() {
        let event = form_event(
            b"MessageSid=SM1&MessageStatus=delivered&To=%2B15558675310&tag=a&tag=b&Event.Type=x",
        )
        .unwrap();
        assert_eq!(
            event,
            json!({"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15558675310", "tag": ["a", "b"], "Event_Type": "x"})
        );
        assert!(form_event(b"%24bad=1").is_err());
    }
}
