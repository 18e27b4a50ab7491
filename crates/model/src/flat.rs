//! The typed, flattened form of an event that storage keeps in columns.
//!
//! Design: nested objects become dotted paths (`user.address.city`), which is reversible because Keen
//! forbids `.` inside property names. Each (path, JSON kind) pair is its own column, so a property that is
//! a number in one event and a string in the next keeps both values with their own types (type drift,
//! see ARCHITECTURE.md). Lists of primitives stay lists; their element kind picks the list column, and a
//! list mixing kinds keeps each element as JSON text. An explicit `null` and an empty object `{}` are
//! recorded too, so nothing a client sent is lost.

use serde_json::{Map, Value};

/// The JSON kind of one flattened value; also the suffix of its physical column (`price#num`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueKind {
    /// A number (`#num`).
    Num,
    /// A string (`#str`).
    Str,
    /// A boolean (`#bool`).
    Bool,
    /// JSON `null` (`#null`).
    Null,
    /// A list of numbers (`#list_num`).
    NumList,
    /// A list of strings (`#list_str`).
    StrList,
    /// A list of booleans (`#list_bool`).
    BoolList,
    /// A list mixing kinds, each element as JSON text (`#list_json`).
    MixedList,
    /// An empty object (`#object`).
    EmptyObject,
}

impl ValueKind {
    /// Every kind.
    pub const ALL: [ValueKind; 9] = [
        ValueKind::Num,
        ValueKind::Str,
        ValueKind::Bool,
        ValueKind::Null,
        ValueKind::NumList,
        ValueKind::StrList,
        ValueKind::BoolList,
        ValueKind::MixedList,
        ValueKind::EmptyObject,
    ];

    /// Suffix used in physical column names: `{path}#{suffix}`.
    pub fn suffix(self) -> &'static str {
        match self {
            ValueKind::Num => "num",
            ValueKind::Str => "str",
            ValueKind::Bool => "bool",
            ValueKind::Null => "null",
            ValueKind::NumList => "list_num",
            ValueKind::StrList => "list_str",
            ValueKind::BoolList => "list_bool",
            ValueKind::MixedList => "list_json",
            ValueKind::EmptyObject => "object",
        }
    }

    /// The kind a column suffix names (`num` for `price#num`).
    pub fn from_suffix(suffix: &str) -> Option<ValueKind> {
        ValueKind::ALL
            .into_iter()
            .find(|kind| kind.suffix() == suffix)
    }
}

/// Persisted (in the storage manifest) as its column suffix; an unknown suffix is an error, so data
/// written by a later version with kinds this one lacks is refused, never misread.
impl serde::Serialize for ValueKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.suffix())
    }
}

impl<'de> serde::Deserialize<'de> for ValueKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ValueKind, D::Error> {
        let suffix = String::deserialize(deserializer)?;
        ValueKind::from_suffix(&suffix)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown value kind {suffix:?}")))
    }
}

impl ValueKind {
    /// The type name Keen's schema endpoints report (`string`, `num`, `bool`, `list`, `null`, ...).
    pub fn keen_type_name(self) -> &'static str {
        match self {
            ValueKind::Num => "num",
            ValueKind::Str => "string",
            ValueKind::Bool => "bool",
            ValueKind::Null => "null",
            ValueKind::NumList
            | ValueKind::StrList
            | ValueKind::BoolList
            | ValueKind::MixedList => "list",
            ValueKind::EmptyObject => "object",
        }
    }

    /// Physical column name for a property path of this kind.
    pub fn column_name(self, path: &str) -> String {
        format!("{path}#{}", self.suffix())
    }

    /// Splits a physical column name back into (path, kind); `None` for the fixed `keen.*` columns.
    pub fn split_column_name(column: &str) -> Option<(&str, ValueKind)> {
        let (path, suffix) = column.rsplit_once('#')?;
        Some((path, ValueKind::from_suffix(suffix)?))
    }
}

/// One flattened value.
#[derive(Clone, Debug, PartialEq)]
pub enum FlatValue {
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// JSON `null`.
    Null,
    /// A list of numbers (and nulls).
    NumList(NumberList),
    /// A list of strings (and nulls).
    StrList(Vec<Option<String>>),
    /// A list of booleans (and nulls).
    BoolList(Vec<Option<bool>>),
    /// Elements of a list that mixes kinds, each as JSON text.
    MixedList(JsonTexts),
    /// An empty object (`{}`), kept so extraction returns it.
    EmptyObject,
}

impl FlatValue {
    /// The value's kind.
    pub fn kind(&self) -> ValueKind {
        match self {
            FlatValue::Num(_) => ValueKind::Num,
            FlatValue::Str(_) => ValueKind::Str,
            FlatValue::Bool(_) => ValueKind::Bool,
            FlatValue::Null => ValueKind::Null,
            FlatValue::NumList(_) => ValueKind::NumList,
            FlatValue::StrList(_) => ValueKind::StrList,
            FlatValue::BoolList(_) => ValueKind::BoolList,
            FlatValue::MixedList(_) => ValueKind::MixedList,
            FlatValue::EmptyObject => ValueKind::EmptyObject,
        }
    }
}

/// A list of numbers, `null` elements included. A `null` is kept as NaN, which no JSON number can be, so
/// an element takes 8 bytes instead of an `Option<f64>`'s 16: a list of small numbers is the densest
/// thing a request body can hold (two bytes an element), and a request holds all its prepared events.
#[derive(Clone, Debug, Default)]
pub struct NumberList(Vec<f64>);

impl NumberList {
    pub(crate) fn from_elements(elements: impl IntoIterator<Item = Option<f64>>) -> NumberList {
        NumberList(
            elements
                .into_iter()
                .map(|element| element.unwrap_or(f64::NAN))
                .collect(),
        )
    }

    /// A list from its numbers with NaN for each `null`.
    pub fn from_raw(numbers: Vec<f64>) -> NumberList {
        NumberList(numbers)
    }

    /// The elements, `None` for a `null`.
    pub fn elements(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        self.0
            .iter()
            .map(|number| (!number.is_nan()).then_some(*number))
    }

    /// How many numbers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Lists are equal when their elements are, `null`s included (NaN is not equal to itself).
impl PartialEq for NumberList {
    fn eq(&self, other: &NumberList) -> bool {
        self.len() == other.len() && self.elements().eq(other.elements())
    }
}

/// The elements of a list that mixes kinds, each as its JSON text: one string holding them all and where
/// each ends, 4 bytes an element beside its text (a `String` each would take 24 and an allocation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonTexts {
    joined: String,
    ends: Vec<u32>,
}

impl JsonTexts {
    /// Appends one JSON text.
    pub fn push(&mut self, text: &str) {
        self.joined.push_str(text);
        self.ends
            .push(u32::try_from(self.joined.len()).unwrap_or(u32::MAX));
    }

    /// The texts, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|end| *end as usize));
        starts
            .zip(self.ends.iter())
            .map(|(start, end)| &self.joined[start..*end as usize])
    }

    /// How many texts.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of all the texts.
    pub fn text_len(&self) -> usize {
        self.joined.len()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.joined.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

impl<S: AsRef<str>> FromIterator<S> for JsonTexts {
    fn from_iter<I: IntoIterator<Item = S>>(texts: I) -> JsonTexts {
        let mut joined = JsonTexts::default();
        for text in texts {
            joined.push(text.as_ref());
        }
        joined
    }
}

/// An event ready for columnar storage: the three fixed `keen.*` columns plus every other property.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatEvent {
    /// `keen.timestamp`, epoch milliseconds.
    pub timestamp_millis: i64,
    /// `keen.created_at`, epoch milliseconds.
    pub created_at_millis: i64,
    /// `keen.id`.
    pub id: String,
    /// (dotted path, value), in the order the event's JSON lists them.
    pub properties: Vec<(String, FlatValue)>,
}

/// Paths stored in fixed columns rather than `{path}#{kind}` columns.
pub const TIMESTAMP_COLUMN: &str = "keen.timestamp";
/// The fixed column of `keen.created_at`.
pub const CREATED_AT_COLUMN: &str = "keen.created_at";
/// The fixed column of `keen.id`.
pub const ID_COLUMN: &str = "keen.id";

/// Flattens a validated event object (see [`crate::event::prepare_event`]); the fixed `keen.*`
/// properties are taken from the arguments, not from the object.
///
/// Takes the event by value so names and strings move into the result instead of being copied (this runs
/// for every ingested event).
pub(crate) fn flatten_properties(event: Map<String, Value>) -> Vec<(String, FlatValue)> {
    let mut properties = Vec::new();
    flatten_into("", event, &mut properties);
    properties
}

fn flatten_into(prefix: &str, object: Map<String, Value>, out: &mut Vec<(String, FlatValue)>) {
    for (name, value) in object {
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        if matches!(
            path.as_str(),
            TIMESTAMP_COLUMN | CREATED_AT_COLUMN | ID_COLUMN
        ) {
            continue;
        }
        flatten_at(path, value, out);
    }
}

/// Flattens `value` as the property at `path` (an object becomes the properties under it).
pub(crate) fn flatten_at(path: String, value: Value, out: &mut Vec<(String, FlatValue)>) {
    match value {
        Value::Object(nested) if nested.is_empty() => out.push((path, FlatValue::EmptyObject)),
        Value::Object(nested) => flatten_into(&path, nested, out),
        Value::Array(items) => out.push((path, flatten_list(&items))),
        Value::Null => out.push((path, FlatValue::Null)),
        Value::Bool(flag) => out.push((path, FlatValue::Bool(flag))),
        Value::Number(number) => {
            out.push((path, FlatValue::Num(number.as_f64().unwrap_or(f64::NAN))));
        }
        Value::String(text) => out.push((path, FlatValue::Str(text))),
    }
}

fn flatten_list(items: &[Value]) -> FlatValue {
    let mut kinds = items
        .iter()
        .filter(|item| !item.is_null())
        .map(|item| match item {
            Value::Number(_) => 0u8,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            _ => 3,
        });
    let first_kind = kinds.next();
    let homogeneous = kinds.all(|kind| Some(kind) == first_kind);
    match (first_kind, homogeneous) {
        (Some(0), true) => {
            FlatValue::NumList(NumberList::from_elements(items.iter().map(Value::as_f64)))
        }
        (Some(2), true) => FlatValue::BoolList(items.iter().map(Value::as_bool).collect()),
        (None, _) | (Some(1), true) => FlatValue::StrList(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect(),
        ),
        _ => FlatValue::MixedList(items.iter().map(Value::to_string).collect()),
    }
}

/// Writes `value` at a dotted `path` of a JSON object, creating (or replacing non-object) parents: the
/// inverse of flattening, used to rebuild events (extraction) and to place add-on results.
pub fn set_path(event: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut current = event;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        current = entry.as_object_mut().expect("made an object above");
    }
    current.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flat(value: Value) -> Vec<(String, FlatValue)> {
        flatten_properties(value.as_object().unwrap().clone())
    }

    #[test]
    fn flattens_nested_objects_and_lists() {
        let properties = flat(json!({
            "price": 2.5, "user": {"id": "u1", "address": {"zip": 12345}}, "tags": ["a", null],
            "nums": [1, 2], "flags": [true], "mixed": [1, "a"], "empty": {}, "nothing": null,
            "keen": {"timestamp": "x", "id": "y", "uniqueness_token": "t"}
        }));
        let mut expected: Vec<(String, FlatValue)> = vec![
            ("price".into(), FlatValue::Num(2.5)),
            ("user.id".into(), FlatValue::Str("u1".into())),
            ("user.address.zip".into(), FlatValue::Num(12345.0)),
            (
                "tags".into(),
                FlatValue::StrList(vec![Some("a".into()), None]),
            ),
            (
                "nums".into(),
                FlatValue::NumList(NumberList::from_elements([Some(1.0), Some(2.0)])),
            ),
            ("flags".into(), FlatValue::BoolList(vec![Some(true)])),
            (
                "mixed".into(),
                FlatValue::MixedList(["1", "\"a\""].into_iter().collect()),
            ),
            ("empty".into(), FlatValue::EmptyObject),
            ("nothing".into(), FlatValue::Null),
            ("keen.uniqueness_token".into(), FlatValue::Str("t".into())),
        ];
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let mut properties = properties;
        properties.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(properties, expected);
    }

    #[test]
    fn column_names_round_trip_even_with_hash_in_the_name() {
        for kind in ValueKind::ALL {
            let column = kind.column_name("a#num");
            assert_eq!(ValueKind::split_column_name(&column), Some(("a#num", kind)));
        }
        assert_eq!(ValueKind::split_column_name(TIMESTAMP_COLUMN), None);
    }
}
