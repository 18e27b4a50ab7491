//! The CPU side of a write, run on the write pool (`write_pool`): check the webhook signature, split the
//! body into events, prepare each (autofill, add-ons, validation: `model::event`), within the request's
//! CPU budget. The handlers in `write` do the rest on the async workers: quotas, storage, the answer.
//!
//! Design: a body is never turned into one tree of JSON values. It is split into its events as slices of
//! the body itself (serde_json's `RawValue`, a pointer and a length per event), counting them as it goes:
//! past [`WriteLimits::max_events_per_request`] the split stops and the request is refused with 413 before
//! any event is parsed. An event longer than `MAX_EVENT_BYTES` is refused without being parsed. Each event
//! is then parsed straight from its text into its flattened form (`model::event::prepare_event_text`, no
//! tree of JSON values), so a request holds its body and its prepared events.
//!
//! [`WriteLimits::max_events_per_request`]: crate::write_pool::WriteLimits

use std::borrow::Cow;
use std::cell::Cell;

use bytes::Bytes;
use keyhole_model::event::MAX_EVENT_BYTES;
use keyhole_model::event::prepare_event_text;
use keyhole_model::webhook::{DeliveryRefusal, WebhookRule};
use keyhole_model::{EventContext, EventError, PreparedEvent, prepare_event_enriched};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::enrichment::Enrichment;
use crate::errors::{ApiError, ErrorCode};
use crate::webhook_bodies::{BodyShape, first_byte, form_event};
use crate::write_pool::{CpuBudget, budget_exceeded};

/// What a write route received.
pub(crate) enum WriteBody {
    /// `POST /events/{collection}`: JSON (an object is one event, an array a batch), a form (one event)
    /// or NDJSON (a batch).
    Collection { shape: BodyShape, bytes: Bytes },
    /// `POST /events`: `{"collection": [events], …}`.
    Batch { bytes: Bytes },
    /// `GET /events/{collection}?data=`: the decoded event.
    Pixel { bytes: Vec<u8> },
}

/// Bodies up to this size that cannot name an add-on are prepared on the async worker that received them.
///
/// Design: preparing one small event without add-ons (parsing a few hundred bytes, the autofill stamp,
/// validation) takes microseconds, less than handing it to a pool thread and back (two context switches,
/// which were most of a single-event write's CPU). Add-ons stay on the pool whatever the size: the
/// user-agent parser is built on first use and that takes seconds. So a body is prepared inline only when
/// it is JSON whose text holds neither `addons` nor a `\u` escape (through which a name can be spelled
/// without its letters), and the key's autofill has no add-ons. A body this small also bounds the inline
/// work: a few kilobytes of JSON and, for a signed webhook, one HMAC over them.
const INLINE_PREPARE_MAX_BYTES: usize = 2048;

impl WriteJob {
    /// Whether the body is small enough and certainly free of add-ons to prepare inline (see
    /// [`INLINE_PREPARE_MAX_BYTES`]).
    pub(crate) fn is_small_and_plain(&self) -> bool {
        let bytes: &[u8] = match &self.body {
            WriteBody::Collection {
                shape: BodyShape::Json | BodyShape::NdJson,
                bytes,
            }
            | WriteBody::Batch { bytes } => bytes,
            WriteBody::Pixel { bytes } => bytes,
            // A form's names may be percent-encoded.
            WriteBody::Collection {
                shape: BodyShape::Form,
                ..
            } => return false,
        };
        let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
        let autofill_has_addons = self
            .context
            .autofill
            .as_ref()
            .is_some_and(|autofill| !autofill.addons().is_empty());
        bytes.len() <= INLINE_PREPARE_MAX_BYTES
            && !autofill_has_addons
            && !holds(b"addons")
            && !holds(b"\\u")
    }
}

/// Everything the preparation needs, owned, so it can move to a pool thread.
pub(crate) struct WriteJob {
    pub body: WriteBody,
    pub context: EventContext,
    pub enrichment: Enrichment,
    /// The key's webhook rule and the request's signature header, checked before anything else.
    pub signature: Option<(WebhookRule, Option<String>)>,
    pub max_events: usize,
    /// The request's `Idempotency-Key` (`idempotency`), and the route's collection (empty for the batch
    /// route, whose body names them).
    pub idempotency: Option<(String, String)>,
}

/// The prepared events, shaped as the route answers them.
pub(crate) enum PreparedBody {
    /// One event (a JSON object, a form, a pixel): `201` or the event's error.
    One(Result<PreparedEvent, EventError>),
    /// A batch for the route's collection (a JSON array, NDJSON): one answer per event.
    List(Vec<Result<PreparedEvent, EventError>>),
    /// The batch route: per collection, in the body's order.
    Collections(Vec<(String, Vec<Result<PreparedEvent, EventError>>)>),
}

/// Why nothing of a request was prepared.
pub(crate) enum Refused {
    /// The webhook delivery's signature was refused (audited by the caller).
    Signature(DeliveryRefusal),
    Request(ApiError),
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused::Request(error)
    }
}

/// Prepares a write's events (see the module docs).
pub(crate) fn prepare(job: WriteJob, budget: &CpuBudget) -> Result<PreparedBody, Refused> {
    if let Some((rule, signature)) = &job.signature {
        let body: &[u8] = match &job.body {
            WriteBody::Collection { bytes, .. } | WriteBody::Batch { bytes } => bytes,
            // A pixel carries no body to sign: a signed-webhook key cannot write this way.
            WriteBody::Pixel { .. } => b"",
        };
        rule.verify(signature.as_deref(), body, chrono::Utc::now().timestamp())
            .map_err(Refused::Signature)?;
    }
    let (idempotency_key, route_collection) = match &job.idempotency {
        Some((key, collection)) => (Some(key.as_str()), collection.as_str()),
        None => (None, ""),
    };
    let preparer = Preparer {
        context: &job.context,
        enrichment: &job.enrichment,
        budget,
        idempotency_key,
    };
    match &job.body {
        WriteBody::Pixel { bytes } => Ok(PreparedBody::One(
            preparer.one_text(bytes, route_collection)?,
        )),
        WriteBody::Collection {
            shape: BodyShape::Form,
            bytes,
        } => {
            if bytes.len() > MAX_EVENT_BYTES {
                return Err(event_too_large().into());
            }
            let event = form_event(bytes)
                .map_err(|message| ApiError::new(ErrorCode::InvalidEvent, message))?;
            Ok(PreparedBody::One(preparer.one(event, route_collection)))
        }
        WriteBody::Collection {
            shape: BodyShape::NdJson,
            bytes,
        } => {
            let events = ndjson_events(bytes, job.max_events)?;
            Ok(PreparedBody::List(preparer.all(&events, route_collection)?))
        }
        WriteBody::Collection {
            shape: BodyShape::Json,
            bytes,
        } => {
            if first_byte(bytes) != Some(b'[') {
                return Ok(PreparedBody::One(
                    preparer.one_text(bytes, route_collection)?,
                ));
            }
            let events = event_list(bytes, job.max_events, ErrorCode::InvalidEvent)?;
            Ok(PreparedBody::List(preparer.all(&events, route_collection)?))
        }
        WriteBody::Batch { bytes } => {
            let collections = batch_collections(bytes, job.max_events)?;
            let mut prepared = Vec::with_capacity(collections.len());
            for (collection, events) in collections {
                let events = preparer.all(&events, &collection)?;
                prepared.push((collection, events));
            }
            Ok(PreparedBody::Collections(prepared))
        }
    }
}

struct Preparer<'a> {
    context: &'a EventContext,
    enrichment: &'a Enrichment,
    budget: &'a CpuBudget,
    /// The request's `Idempotency-Key`: events without a uniqueness token get one derived from it.
    idempotency_key: Option<&'a str>,
}

impl Preparer<'_> {
    /// A form's event, already a JSON value.
    fn one(&self, mut event: Value, collection: &str) -> Result<PreparedEvent, EventError> {
        if let Some(key) = self.idempotency_key {
            crate::idempotency::stamp_value(&mut event, key, collection, 0);
        }
        prepare_event_enriched(event, self.context, self.enrichment)
    }

    /// The event's text as prepared: with its derived uniqueness token under an `Idempotency-Key`.
    fn stamped<'t>(&self, text: &'t [u8], collection: &str, position: usize) -> Cow<'t, [u8]> {
        match self.idempotency_key {
            Some(key) => crate::idempotency::stamp_text(text, key, collection, position),
            None => Cow::Borrowed(text),
        }
    }

    /// One event from its JSON text: refused unparsed when longer than an event may be.
    fn one_text(
        &self,
        text: &[u8],
        collection: &str,
    ) -> Result<Result<PreparedEvent, EventError>, ApiError> {
        if text.len() > MAX_EVENT_BYTES {
            return Ok(Err(EventError::EventTooLarge(too_large_message(
                text.len(),
            ))));
        }
        let text = self.stamped(text, collection, 0);
        let prepared = prepare_event_text(&text, self.context, self.enrichment);
        if self.budget.exceeded() {
            return Err(budget_exceeded(self.budget));
        }
        Ok(prepared)
    }

    /// Every event of a list, each parsed and prepared in turn; refused whole past the CPU budget.
    fn all(
        &self,
        events: &[&RawValue],
        collection: &str,
    ) -> Result<Vec<Result<PreparedEvent, EventError>>, ApiError> {
        let mut prepared = Vec::with_capacity(events.len());
        for (position, raw) in events.iter().enumerate() {
            let text = raw.get();
            let result = if text.len() > MAX_EVENT_BYTES {
                Err(EventError::EventTooLarge(too_large_message(text.len())))
            } else {
                let text = self.stamped(text.as_bytes(), collection, position);
                prepare_event_text(&text, self.context, self.enrichment)
            };
            prepared.push(result);
            if self.budget.exceeded() {
                return Err(budget_exceeded(self.budget));
            }
        }
        Ok(prepared)
    }
}

fn too_large_message(bytes: usize) -> String {
    format!("An event must be at most {MAX_EVENT_BYTES} bytes; this one is {bytes} bytes.")
}

fn event_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::EventTooLarge,
        format!("An event must be at most {MAX_EVENT_BYTES} bytes."),
    )
}

fn too_many_events(max_events: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BatchTooLarge,
        format!(
            "A request may carry at most {max_events} events; split the batch into several requests."
        ),
    )
}

/// Counts the events of a request across its lists, refusing past the limit.
struct EventCounter {
    counted: Cell<usize>,
    max_events: usize,
    exceeded: Cell<bool>,
}

impl EventCounter {
    fn new(max_events: usize) -> EventCounter {
        EventCounter {
            counted: Cell::new(0),
            max_events,
            exceeded: Cell::new(false),
        }
    }

    fn count_one(&self) -> bool {
        let counted = self.counted.get() + 1;
        self.counted.set(counted);
        if counted > self.max_events {
            self.exceeded.set(true);
            return false;
        }
        true
    }
}

/// A JSON list of events, each kept as its slice of the body, counted as it is read.
struct EventList<'c>(&'c EventCounter);

impl<'de> DeserializeSeed<'de> for EventList<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventList<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a list of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        while let Some(event) = items.next_element::<&'de RawValue>()? {
            if !self.0.count_one() {
                return Err(A::Error::custom("too many events"));
            }
            events.push(event);
        }
        Ok(events)
    }
}

/// The events of a JSON list body.
fn event_list(
    bytes: &[u8],
    max_events: usize,
    code: ErrorCode,
) -> Result<Vec<&RawValue>, ApiError> {
    let counter = EventCounter::new(max_events);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let events = EventList(&counter)
        .deserialize(&mut deserializer)
        .and_then(|events| deserializer.end().map(|()| events));
    match events {
        Ok(events) => Ok(events),
        Err(_) if counter.exceeded.get() => Err(too_many_events(max_events)),
        Err(error) => Err(ApiError::new(
            code,
            format!("The request body is not valid JSON: {error}."),
        )),
    }
}

/// The collections of a batch body (`{"collection": [events]}`), each with its events as slices, in the
/// body's order; a collection named twice has its lists joined.
fn batch_collections(
    bytes: &[u8],
    max_events: usize,
) -> Result<Vec<(String, Vec<&RawValue>)>, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidBatch, message);
    let lists: Vec<(String, &RawValue)> = serde_json::from_slice::<BatchObject>(bytes)
        .map_err(|error| {
            invalid(format!(
                "A batch must be a JSON object mapping collection names to lists of events: {error}."
            ))
        })?
        .0;
    let counter = EventCounter::new(max_events);
    let mut collections: Vec<(String, Vec<&RawValue>)> = Vec::with_capacity(lists.len());
    for (collection, list) in lists {
        let mut deserializer = serde_json::Deserializer::from_str(list.get());
        let events = match EventList(&counter).deserialize(&mut deserializer) {
            Ok(events) => events,
            Err(_) if counter.exceeded.get() => return Err(too_many_events(max_events)),
            Err(_) => {
                return Err(invalid(format!(
                    "The value for collection '{}' must be a list of events.",
                    collection.chars().take(100).collect::<String>()
                )));
            }
        };
        match collections.iter_mut().find(|(name, _)| *name == collection) {
            Some((_, existing)) => existing.extend(events),
            None => collections.push((collection, events)),
        }
    }
    Ok(collections)
}

/// A batch's top-level object, its values kept as slices of the body.
struct BatchObject<'de>(Vec<(String, &'de RawValue)>);

impl<'de> serde::Deserialize<'de> for BatchObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = BatchObject<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an object of collection names to lists of events")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = members.next_entry::<String, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(BatchObject(entries))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// The events of an NDJSON body (blank lines skipped); a line that is not JSON refuses the whole body,
/// naming the line.
fn ndjson_events(bytes: &[u8], max_events: usize) -> Result<Vec<&RawValue>, ApiError> {
    let counter = EventCounter::new(max_events);
    let mut events = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !counter.count_one() {
            return Err(too_many_events(max_events));
        }
        let event = serde_json::from_slice::<&RawValue>(line).map_err(|error| {
            ApiError::new(
                ErrorCode::InvalidEvent,
                format!(
                    "Line {} of the NDJSON body is not valid JSON: {error}.",
                    index + 1
                ),
            )
        })?;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: WriteBody, autofill: Option<serde_json::Value>) -> WriteJob {
        let autofill = autofill.map(|value| {
            std::sync::Arc::new(keyhole_model::autofill::Autofill::parse(&value).unwrap())
        });
        WriteJob {
            body,
            context: EventContext {
                received_at: chrono::Utc::now(),
                client_ip: None,
                user_agent: None,
                uniqueness_scope: None,
                autofill,
            },
            enrichment: Enrichment::new(None).unwrap(),
            signature: None,
            max_events: 10,
            idempotency: None,
        }
    }

    fn json(text: &str) -> WriteBody {
        WriteBody::Collection {
            shape: BodyShape::Json,
            bytes: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    #[test]
    fn only_small_bodies_that_cannot_name_an_add_on_are_prepared_inline() {
        let inline = |body: WriteBody, autofill: Option<serde_json::Value>| {
            job(body, autofill).is_small_and_plain()
        };
        assert!(inline(json(r#"{"a": 1}"#), None));
        assert!(inline(
            WriteBody::Batch {
                bytes: Bytes::from_static(br#"{"c": [{"a": 1}]}"#)
            },
            None
        ));
        assert!(inline(
            WriteBody::Pixel {
                bytes: br#"{"a": 1}"#.to_vec()
            },
            None
        ));
        assert!(inline(
            json(r#"{"a": 1}"#),
            Some(serde_json::json!({"tenant": "acme"}))
        ));
        // Add-ons, named or spelled with an escape, and forms (names may be percent-encoded) go to the pool.
        let ua = r#"{"ua": "x", "keen": {"addons": [{"name": "keen:ua_parser", "input": {"ua_string": "ua"}, "output": "tech"}]}}"#;
        assert!(!inline(json(ua), None));
        assert!(!inline(json(&ua.replace("addons", "\\u0061ddons")), None));
        assert!(!inline(
            WriteBody::Pixel {
                bytes: ua.as_bytes().to_vec()
            },
            None
        ));
        let form = WriteBody::Collection {
            shape: BodyShape::Form,
            bytes: Bytes::from_static(b"a=1"),
        };
        assert!(!inline(form, None));
        let autofill_addons = serde_json::json!({"ua": "x", "keen": {"addons": [
            {"name": "keen:ua_parser", "input": {"ua_string": "ua"}, "output": "tech"}]}});
        assert!(!inline(json(r#"{"a": 1}"#), Some(autofill_addons)));
        // Larger bodies go to the pool whatever they hold.
        let large = format!(r#"{{"text": "{}"}}"#, "x".repeat(INLINE_PREPARE_MAX_BYTES));
        assert!(!inline(json(&large), None));
    }

    #[test]
    fn bodies_split_into_event_slices_within_the_limit() {
        let events = event_list(
            br#" [{"a": 1}, {"b": [1, 2]} ] "#,
            2,
            ErrorCode::InvalidEvent,
        )
        .unwrap_or_else(|error| panic!("{}", error.message));
        assert_eq!(
            events.iter().map(|raw| raw.get()).collect::<Vec<_>>(),
            [r#"{"a": 1}"#, r#"{"b": [1, 2]}"#]
        );
        let refused = event_list(b"[{}, {}, {}]", 2, ErrorCode::InvalidEvent).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BatchTooLarge);
        assert_eq!(
            event_list(b"[{}, ", 2, ErrorCode::InvalidEvent)
                .unwrap_err()
                .code,
            ErrorCode::InvalidEvent
        );

        let batch = batch_collections(br#"{"a": [{"x": 1}], "b": [{}, {}], "a": [{}]}"#, 4)
            .unwrap_or_else(|error| panic!("{}", error.message));
        assert_eq!(
            batch
                .iter()
                .map(|(name, events)| (name.as_str(), events.len()))
                .collect::<Vec<_>>(),
            [("a", 2), ("b", 2)]
        );
        assert_eq!(
            batch_collections(br#"{"a": [{}, {}], "b": [{}, {}, {}]}"#, 4)
                .unwrap_err()
                .code,
            ErrorCode::BatchTooLarge
        );
        assert_eq!(
            batch_collections(br#"{"a": {}}"#, 4).unwrap_err().code,
            ErrorCode::InvalidBatch
        );
        assert_eq!(
            batch_collections(b"[]", 4).unwrap_err().code,
            ErrorCode::InvalidBatch
        );

        assert_eq!(
            ndjson_events(b"{\"a\":1}\n\n{\"a\":2}\r\n", 2)
                .map(|events| events.len())
                .ok(),
            Some(2)
        );
        assert_eq!(
            ndjson_events(b"{}\n{}\n{}\n", 2).unwrap_err().code,
            ErrorCode::BatchTooLarge
        );
        assert!(
            ndjson_events(b"{\"a\":1}\n{oops\n", 5)
                .unwrap_err()
                .message
                .contains("Line 2")
        );
    }
}
