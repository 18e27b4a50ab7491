//! One event's JSON text parsed straight into its flattened properties — the form storage keeps — without
//! a tree of JSON values first: a list of 440,000 numbers costs 8 bytes an element, not a 32-byte value
//! each plus the list's growth. Keen's rules are checked while parsing, before anything is kept: property
//! names, string lengths, lists holding only primitives, and nesting within `MAX_EVENT_DEPTH`;
//! `${keen.ip}`/`${keen.user_agent}` are filled in as they are met. The reserved `keen` member is kept as a
//! JSON value (it is small, and `event::KeenFields` checks it).
//!
//! Design: serde's visitors carry a mutable builder down the event; the first rule an event breaks is
//! stashed there and the parse stops, so the caller answers with that rule's error rather than serde's. A
//! member repeated in one object is not resolved here: it shows as two properties at one path (or one under
//! the other), which `event::prepare_event_text` refuses once the properties are sorted.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::event::{EventContext, EventError, MAX_EVENT_DEPTH, validate_string};
use crate::flat::{FlatValue, JsonTexts, NumberList};
use crate::names::property_name_problem;

/// Longest `keen` member an event may carry.
pub(crate) const MAX_KEEN_BYTES: usize = 64 * 1024;

/// An event as parsed: its properties flattened (the `keen` member left out) and its `keen` member.
pub(crate) struct ParsedEvent {
    pub properties: Vec<(String, FlatValue)>,
    pub keen: Option<Value>,
}

struct Builder<'c> {
    properties: Vec<(String, FlatValue)>,
    keen: Option<Value>,
    refused: Option<EventError>,
    context: &'c EventContext,
}

impl Builder<'_> {
    fn refuse<E: serde::de::Error>(&mut self, error: EventError) -> E {
        self.refused = Some(error);
        E::custom("the event breaks a rule")
    }

    /// A string value with its placeholder, if it is one, filled in; `None` for a placeholder of a fact
    /// the request does not have (stored as `null`).
    fn fill_placeholder(&self, text: String) -> Option<String> {
        match self.context.placeholder(&text) {
            Some(filled) => filled,
            None => Some(text),
        }
    }
}

/// Parses one event (see the module docs).
pub(crate) fn parse_event(text: &[u8], context: &EventContext) -> Result<ParsedEvent, EventError> {
    let mut builder = Builder {
        properties: Vec::new(),
        keen: None,
        refused: None,
        context,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let parsed = EventSeed(&mut builder)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    if let Some(refused) = builder.refused {
        return Err(refused);
    }
    parsed.map_err(|error| {
        EventError::InvalidEvent(format!("The event is not valid JSON: {error}."))
    })?;
    Ok(ParsedEvent {
        properties: builder.properties,
        keen: builder.keen,
    })
}

/// The event object.
struct EventSeed<'b, 'c>(&'b mut Builder<'c>);

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, members: A) -> Result<(), A::Error> {
        visit_members(self.0, None, 1, members)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(not_an_object(self.0))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(not_an_object(self.0))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(not_an_object(self.0))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(not_an_object(self.0))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(not_an_object(self.0))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(not_an_object(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(not_an_object(self.0))
    }
}

fn not_an_object<E: serde::de::Error>(builder: &mut Builder<'_>) -> E {
    builder.refuse(EventError::InvalidEvent(
        "An event must be a JSON object.".to_string(),
    ))
}

/// The members of an object at nesting `level` (the event itself is level 1), under `prefix`.
fn visit_members<'de, A: MapAccess<'de>>(
    builder: &mut Builder<'_>,
    prefix: Option<&str>,
    level: usize,
    mut members: A,
) -> Result<(), A::Error> {
    while let Some(name) = members.next_key::<String>()? {
        if prefix.is_none() && name == "keen" {
            // The `keen` member becomes a JSON value (`event::KeenFields` checks it), so its size is
            // bounded first: what a client may set there (timestamp, uniqueness token, location, 16
            // add-on specs) is a few KB.
            let text: &'de serde_json::value::RawValue = members.next_value()?;
            if text.get().len() > MAX_KEEN_BYTES {
                return Err(
                    builder.refuse(EventError::InvalidKeenNamespaceProperty(format!(
                        "The keen object may be at most {MAX_KEEN_BYTES} bytes."
                    ))),
                );
            }
            if builder.keen.is_some() {
                return Err(builder.refuse(EventError::InvalidEvent(
                    "The event names 'keen' twice; each member may appear once.".to_string(),
                )));
            }
            let keen = serde_json::from_str(text.get()).map_err(A::Error::custom)?;
            builder.keen = Some(keen);
            continue;
        }
        if let Some(problem) = property_name_problem(&name) {
            return Err(builder.refuse(EventError::InvalidPropertyName(problem)));
        }
        let path = match prefix {
            None => name,
            Some(prefix) => format!("{prefix}.{name}"),
        };
        members.next_value_seed(ValueSeed {
            builder: &mut *builder,
            path,
            level,
        })?;
    }
    Ok(())
}

/// One member's value, held by an object at `level`.
struct ValueSeed<'b, 'c> {
    builder: &'b mut Builder<'c>,
    path: String,
    level: usize,
}

/// The last segment of a dotted path: the name messages show.
fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

impl ValueSeed<'_, '_> {
    fn push(self, value: FlatValue) {
        self.builder.properties.push((self.path, value));
    }

    fn too_deep<E: serde::de::Error>(&mut self) -> Option<E> {
        (self.level >= MAX_EVENT_DEPTH).then(|| {
            self.builder.refuse(EventError::InvalidEvent(format!(
                "Property '{}' is nested too deeply: an event may nest objects and lists at most {MAX_EVENT_DEPTH} levels deep.",
                last_segment(&self.path)
            )))
        })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a property value")
    }

    fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<(), E> {
        self.push(FlatValue::Bool(flag));
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<(), E> {
        self.push(FlatValue::Num(number as f64));
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<(), E> {
        self.push(FlatValue::Num(number as f64));
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<(), E> {
        self.push(FlatValue::Num(number));
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(FlatValue::Null);
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        self.visit_string(text.to_string())
    }
    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<(), E> {
        if let Err(error) = validate_string(last_segment(&self.path), &text) {
            return Err(self.builder.refuse(error));
        }
        let value = match self.builder.fill_placeholder(text) {
            Some(text) => FlatValue::Str(text),
            None => FlatValue::Null,
        };
        self.push(value);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, members: A) -> Result<(), A::Error> {
        if let Some(error) = self.too_deep() {
            return Err(error);
        }
        let before = self.builder.properties.len();
        visit_members(self.builder, Some(&self.path), self.level + 1, members)?;
        if self.builder.properties.len() == before {
            self.push(FlatValue::EmptyObject);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        if let Some(error) = self.too_deep() {
            return Err(error);
        }
        let mut list = ListBuilder::default();
        while let Some(element) = items.next_element_seed(ElementSeed {
            builder: &mut *self.builder,
            name: last_segment(&self.path),
        })? {
            list.push(element);
        }
        self.push(list.finish());
        Ok(())
    }
}

/// One element of a list: a primitive, with the JSON text a list mixing kinds keeps it as.
enum Element {
    Null,
    Bool(bool),
    Number(f64, serde_json::Number),
    Str(String),
}

struct ElementSeed<'b, 'c> {
    builder: &'b mut Builder<'c>,
    name: &'b str,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_> {
    type Value = Element;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Element, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ElementSeed<'_, '_> {
    fn not_primitive<E: serde::de::Error>(self) -> E {
        self.builder.refuse(EventError::ListsOfNonPrimitivesNotAllowed(format!(
            "Property '{}' is a list containing objects or lists; lists may hold only strings, numbers, booleans and nulls.",
            self.name
        )))
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_, '_> {
    type Value = Element;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a string, number, boolean or null")
    }

    fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<Element, E> {
        Ok(Element::Bool(flag))
    }
    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Element, E> {
        Ok(Element::Number(number as f64, number.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Element, E> {
        Ok(Element::Number(number as f64, number.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Element, E> {
        let json = serde_json::Number::from_f64(number).ok_or_else(|| E::custom("not finite"))?;
        Ok(Element::Number(number, json))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Element, E> {
        Ok(Element::Null)
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Element, E> {
        self.visit_string(text.to_string())
    }
    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Element, E> {
        if let Err(error) = validate_string(self.name, &text) {
            return Err(self.builder.refuse(error));
        }
        Ok(match self.builder.fill_placeholder(text) {
            Some(text) => Element::Str(text),
            None => Element::Null,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Element, A::Error> {
        Err(self.not_primitive())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Element, A::Error> {
        Err(self.not_primitive())
    }
}

/// A list's flattened form as its elements arrive, as `flat::flatten_list` makes it from a JSON list:
/// numbers, strings or booleans (nulls allowed among them; an empty or all-null list is a list of
/// strings), else each element's JSON text. A list of numbers is kept as 8 bytes an element (and a byte
/// saying whether it was written as an integer, for the text should a later element mix kinds).
#[derive(Default)]
enum ListBuilder {
    #[default]
    Empty,
    Nulls(usize),
    Numbers(Numbers),
    Strings(Vec<Option<String>>),
    Bools(Vec<Option<bool>>),
    Mixed(JsonTexts),
}

/// The numbers of a list so far: each as 8 bytes, whether it was written as an integer, and the exact
/// value of an integer an f64 cannot hold (rare: kept apart so the list's text stays exact).
#[derive(Default)]
struct Numbers {
    values: Vec<f64>,
    integers: Vec<bool>,
    exact: Vec<(usize, serde_json::Number)>,
}

impl Numbers {
    fn push(&mut self, number: Option<(f64, serde_json::Number)>) {
        const EXACT: f64 = 9_007_199_254_740_992.0;
        let Some((number, json)) = number else {
            self.values.push(f64::NAN);
            self.integers.push(false);
            return;
        };
        let integer = !json.is_f64();
        if integer && number.abs() >= EXACT {
            self.exact.push((self.values.len(), json));
        }
        self.values.push(number);
        self.integers.push(integer);
    }

    fn texts(self) -> JsonTexts {
        let mut exact = self.exact.into_iter().peekable();
        self.values
            .into_iter()
            .zip(self.integers)
            .enumerate()
            .map(
                |(index, (number, integer))| match exact.next_if(|(at, _)| *at == index) {
                    Some((_, json)) => json.to_string(),
                    None => number_text(number, integer),
                },
            )
            .collect()
    }
}

/// An element's text in a list that mixes kinds, as a JSON value of it prints.
fn element_text(element: &Element) -> String {
    match element {
        Element::Null => "null".to_string(),
        Element::Bool(flag) => flag.to_string(),
        Element::Number(_, json) => json.to_string(),
        Element::Str(text) => Value::String(text.clone()).to_string(),
    }
}

fn number_text(number: f64, integer: bool) -> String {
    if !number.is_finite() {
        return "null".to_string();
    }
    if integer {
        return format!("{}", number as i128);
    }
    serde_json::Number::from_f64(number).map_or_else(|| "null".to_string(), |json| json.to_string())
}

impl ListBuilder {
    fn push(&mut self, element: Element) {
        match (&mut *self, element) {
            (ListBuilder::Empty, Element::Null) => *self = ListBuilder::Nulls(1),
            (ListBuilder::Nulls(count), Element::Null) => *count += 1,
            (ListBuilder::Numbers(numbers), Element::Null) => numbers.push(None),
            (ListBuilder::Strings(texts), Element::Null) => texts.push(None),
            (ListBuilder::Bools(flags), Element::Null) => flags.push(None),
            (ListBuilder::Numbers(numbers), Element::Number(number, json)) => {
                numbers.push(Some((number, json)));
            }
            (ListBuilder::Strings(texts), Element::Str(text)) => texts.push(Some(text)),
            (ListBuilder::Bools(flags), Element::Bool(flag)) => flags.push(Some(flag)),
            (ListBuilder::Mixed(texts), element) => texts.push(&element_text(&element)),
            (ListBuilder::Empty | ListBuilder::Nulls(_), element) => {
                let nulls = match self {
                    ListBuilder::Nulls(count) => *count,
                    _ => 0,
                };
                *self = match element {
                    Element::Number(number, json) => {
                        let mut numbers = Numbers::default();
                        for _ in 0..nulls {
                            numbers.push(None);
                        }
                        numbers.push(Some((number, json)));
                        ListBuilder::Numbers(numbers)
                    }
                    Element::Str(text) => {
                        let mut texts = vec![None; nulls];
                        texts.push(Some(text));
                        ListBuilder::Strings(texts)
                    }
                    Element::Bool(flag) => {
                        let mut flags = vec![None; nulls];
                        flags.push(Some(flag));
                        ListBuilder::Bools(flags)
                    }
                    Element::Null => ListBuilder::Nulls(nulls + 1),
                };
            }
            (_, element) => {
                let mut texts = self.texts();
                texts.push(&element_text(&element));
                *self = ListBuilder::Mixed(texts);
            }
        }
    }

    /// The elements so far as the texts of a list that mixes kinds.
    fn texts(&mut self) -> JsonTexts {
        match std::mem::take(self) {
            ListBuilder::Empty => JsonTexts::default(),
            ListBuilder::Nulls(count) => std::iter::repeat_n("null", count).collect(),
            ListBuilder::Numbers(numbers) => numbers.texts(),
            ListBuilder::Strings(texts) => texts
                .into_iter()
                .map(|text| {
                    text.map_or_else(
                        || "null".to_string(),
                        |text| Value::String(text).to_string(),
                    )
                })
                .collect(),
            ListBuilder::Bools(flags) => flags
                .into_iter()
                .map(|flag| flag.map_or_else(|| "null".to_string(), |flag| flag.to_string()))
                .collect(),
            ListBuilder::Mixed(texts) => texts,
        }
    }

    fn finish(self) -> FlatValue {
        match self {
            ListBuilder::Empty => FlatValue::StrList(Vec::new()),
            ListBuilder::Nulls(count) => FlatValue::StrList(vec![None; count]),
            ListBuilder::Numbers(mut numbers) => {
                numbers.values.shrink_to_fit();
                FlatValue::NumList(NumberList::from_raw(numbers.values))
            }
            ListBuilder::Strings(texts) => FlatValue::StrList(texts),
            ListBuilder::Bools(flags) => FlatValue::BoolList(flags),
            ListBuilder::Mixed(mut texts) => {
                texts.shrink_to_fit();
                FlatValue::MixedList(texts)
            }
        }
    }
}
