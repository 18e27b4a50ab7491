//! The Keen write API: one event (`POST /events/{collection}`), a batch over several collections
//! (`POST /events`), and the pixel/beacon form (`GET /events/{collection}?data=<base64>`).
//!
//! Bodies are parsed as JSON whatever their `Content-Type` (browsers' `sendBeacon` posts `text/plain`),
//! except on the single-collection route, which also takes the shapes webhooks send
//! (`webhook_bodies`): a form-encoded body is one event, an NDJSON body a batch. Invalid events in a batch
//! are answered per event while the valid ones are stored. A JSON array posted to the single-collection
//! route (webhooks such as SendGrid's) is stored as a batch for that collection and answered with one
//! result per event.
//!
//! A handler reads the body, hands everything CPU-heavy to the write pool (`write_prepare` on
//! `write_pool`: signature, parsing, add-ons) and, with the prepared events back, checks the key's event
//! quota, stores them and answers.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use keyhole_model::Grant;
use keyhole_model::memory_budget::{MemoryConsumer, MemoryReservation};
use keyhole_model::names::collection_name_problem;
use keyhole_model::webhook::DeliveryRefusal;
use keyhole_model::{EventContext, EventError, PreparedEvent};
use keyhole_storage::WriteOutcome;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::access::EventWriter;
use crate::auth::{Authorized, PixelOrSchema, Writes, limit_error};
use crate::errors::{ApiError, ErrorCode};
use crate::inspect;
use crate::webhook_bodies::BodyShape;
use crate::write_prepare::{self, PreparedBody, Refused, WriteBody, WriteJob};

/// Largest request body Keen accepts (a batch payload), in bytes.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 10_000_000;

/// A 1×1 transparent GIF, the answer to a pixel write.
const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The request facts placeholders need: client address and User-Agent.
pub(crate) struct ClientInfo(EventContext);

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let client_ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        Ok(ClientInfo(EventContext {
            received_at: chrono::Utc::now(),
            client_ip,
            user_agent,
            uniqueness_scope: None,
            autofill: None,
        }))
    }
}

/// One event's answer in a batch.
enum EventResult {
    Stored,
    Refused(ApiError),
}

impl EventResult {
    fn to_json(&self) -> Value {
        match self {
            EventResult::Stored => json!({"success": true}),
            EventResult::Refused(error) => json!({
                "success": false,
                "error": {"name": error.code.keen_code(), "description": error.message},
            }),
        }
    }
}

/// What a write request is charged from the memory budget's `RequestBodies` share, per byte of its body,
/// from before its body is read until it is answered: the body, the events' JSON text and their flat
/// form (an estimate: the flat form of many tiny properties takes several times their text).
const CHARGED_BYTES_PER_BODY_BYTE: u64 = 4;
/// How long a write waits for its charge to fit before it is refused.
const BODY_MEMORY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reserves the request's charge (a body of unknown length is charged as the largest allowed), then
/// reads the body. While the share is spent, waits up to [`BODY_MEMORY_WAIT`], then refuses with 503
/// and `Retry-After`, nothing read or stored.
async fn read_body(
    state: &AppState,
    body: Body,
    too_large: ErrorCode,
) -> Result<(Bytes, MemoryReservation), ApiError> {
    use axum::body::HttpBody;
    let announced = body
        .size_hint()
        .exact()
        .unwrap_or(MAX_PAYLOAD_BYTES as u64)
        .min(MAX_PAYLOAD_BYTES as u64);
    let share = state.memory.share(MemoryConsumer::RequestBodies);
    let charge = (announced.max(1024) * CHARGED_BYTES_PER_BODY_BYTE).min(share);
    let deadline = tokio::time::Instant::now() + BODY_MEMORY_WAIT;
    let reservation = loop {
        if let Some(reservation) = state
            .memory
            .try_reserve(MemoryConsumer::RequestBodies, charge)
        {
            break reservation;
        }
        if tokio::time::Instant::now() >= deadline {
            state.memory.record_refusal(MemoryConsumer::RequestBodies);
            return Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The server is at its memory limit for writes being received; nothing of this request was stored. Retry shortly.",
            )
            .with_retry_after(1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let bytes = crate::http::read_body(body, MAX_PAYLOAD_BYTES, || {
        ApiError::new(
            too_large,
            format!("The request body must be at most {MAX_PAYLOAD_BYTES} bytes."),
        )
    })
    .await?;
    Ok((bytes, reservation))
}

/// The collection name is valid and the key may write to it (`options.writes.collections`).
/// A refusal for the collection's writability is written to the audit log like any refused request.
fn check_collection(state: &AppState, grant: &Grant, collection: &str) -> Result<(), ApiError> {
    if let Some(problem) = collection_name_problem(collection) {
        return Err(ApiError::from(EventError::InvalidCollectionName(problem)));
    }
    if !grant.may_write_to(collection) {
        record_write_refusal(
            state,
            grant,
            keyhole_meta::Refusal::CollectionNotWritable,
            collection,
        );
        return Err(ApiError::new(
            ErrorCode::RequestForbidden,
            format!("This key may not write to the collection '{collection}'."),
        ));
    }
    Ok(())
}

/// Counts a refused write and writes it to the project's audit log (the request line names the
/// collection, never the key).
fn record_write_refusal(
    state: &AppState,
    grant: &Grant,
    reason: keyhole_meta::Refusal,
    collection: &str,
) {
    state.metrics.refused(reason.as_str());
    state.meta.record_refusal(
        grant.project_id(),
        reason,
        Some(grant.key_prefix()),
        grant.token_id(),
        format!(
            "write to /3.0/projects/{}/events/{}",
            grant.project_id(),
            crate::inspect::encode_path_segment(collection)
        ),
    );
}

/// Audits and answers a webhook delivery whose signature was refused (`model::webhook`): 401, and the
/// refusal is written to the key's log of refused deliveries (the audit log).
fn refused_delivery(
    state: &AppState,
    grant: &Grant,
    refusal: DeliveryRefusal,
    collection: &str,
) -> ApiError {
    let reason = match refusal {
        DeliveryRefusal::Unsigned => keyhole_meta::Refusal::WebhookUnsigned,
        DeliveryRefusal::BadSignature | DeliveryRefusal::MalformedSignature => {
            keyhole_meta::Refusal::WebhookBadSignature
        }
        DeliveryRefusal::Stale => keyhole_meta::Refusal::WebhookStale,
        DeliveryRefusal::SecretUnavailable => keyhole_meta::Refusal::WebhookSecretUnavailable,
    };
    record_write_refusal(state, grant, reason, collection);
    ApiError::new(ErrorCode::InvalidWebhookSignature, refusal.message())
}

/// The request's context as seen by the writing key: its deduplication scope and its autofill set.
fn context_of(grant: &Grant, context: EventContext) -> EventContext {
    EventContext {
        uniqueness_scope: grant.uniqueness_scope().map(str::to_string),
        autofill: grant.autofill().cloned(),
        ..context
    }
}

/// Prepares a write's events on the write pool (`write_prepare`): the webhook signature, the split into
/// events and each event's preparation, within the request's CPU budget. A small body without add-ons is
/// prepared inline (`WriteJob::is_small_and_plain`).
async fn prepare_on_pool(
    state: &AppState,
    grant: &Grant,
    collection: &str,
    body: WriteBody,
    signature_header: Option<String>,
    context: EventContext,
    idempotency_key: Option<String>,
) -> Result<PreparedBody, ApiError> {
    let signature = grant
        .webhook_rule()
        .map(|rule| (rule.clone(), signature_header));
    let job = WriteJob {
        body,
        context: context_of(grant, context),
        enrichment: state.enrichment.clone(),
        signature,
        max_events: state.write_pool.limits().max_events_per_request,
        idempotency: idempotency_key.map(|key| (key, collection.to_string())),
    };
    let prepared = if job.is_small_and_plain() {
        state
            .write_pool
            .run_inline(|budget| write_prepare::prepare(job, budget))
    } else {
        state
            .write_pool
            .run(move |budget| write_prepare::prepare(job, budget))
            .await?
    };
    match prepared {
        Ok(prepared) => Ok(prepared),
        Err(Refused::Signature(refusal)) => {
            Err(refused_delivery(state, grant, refusal, collection))
        }
        Err(Refused::Request(error)) => Err(error),
    }
}

/// Stores the prepared events of one collection; answers per event, in order.
async fn store_events(
    state: &AppState,
    writer: &EventWriter,
    collection: &str,
    events: Vec<Result<PreparedEvent, EventError>>,
) -> Result<Vec<EventResult>, ApiError> {
    let grant = writer.grant();
    if let Err(error) = check_collection(state, grant, collection) {
        return Ok(events
            .iter()
            .map(|_| EventResult::Refused(ApiError::new(error.code, error.message.clone())))
            .collect());
    }
    let mut results = Vec::with_capacity(events.len());
    let mut prepared = Vec::with_capacity(events.len());
    let mut prepared_positions = Vec::with_capacity(events.len());
    for event in events {
        match event {
            Ok(event) => {
                prepared_positions.push(results.len());
                prepared.push(event);
                results.push(EventResult::Stored);
            }
            Err(error) => results.push(EventResult::Refused(error.into())),
        }
    }
    if !prepared.is_empty() {
        let outcomes = writer.append(collection, prepared).await?;
        let stored = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, WriteOutcome::Stored))
            .count();
        state.meter.count_events(grant, stored).await;
        for (position, outcome) in prepared_positions.into_iter().zip(outcomes) {
            if let Err(error) = outcome_result(writer, collection, outcome) {
                results[position] = EventResult::Refused(error);
            }
        }
    }
    Ok(results)
}

/// What the client hears of one event's storage outcome. Duplicates by uniqueness token are answered as
/// successes: the event is already stored.
fn outcome_result(
    writer: &EventWriter,
    collection: &str,
    outcome: WriteOutcome,
) -> Result<(), ApiError> {
    match outcome {
        WriteOutcome::Stored | WriteOutcome::Duplicate => Ok(()),
        WriteOutcome::TooManyColumns => Err(ApiError::new(
            ErrorCode::TooManyProperties,
            format!(
                "The collection '{collection}' may hold at most {} property columns (a property counts once per JSON type it has held); this event adds new properties past that. Events using the collection's existing properties are still accepted.",
                writer.max_columns_per_collection()
            ),
        )),
    }
}

/// Refuses a write of `events` events past the key's daily quota.
async fn check_event_quota(state: &AppState, grant: &Grant, events: usize) -> Result<(), ApiError> {
    state
        .meter
        .check_events(grant, events)
        .await?
        .map_err(limit_error)
}

/// Stores one event and answers with its outcome.
async fn store_one(
    state: &AppState,
    writer: &EventWriter,
    collection: &str,
    prepared: Result<PreparedEvent, EventError>,
) -> Result<(), ApiError> {
    let prepared = prepared?;
    check_event_quota(state, writer.grant(), 1).await?;
    let outcomes = writer.append(collection, vec![prepared]).await?;
    if matches!(outcomes.first(), Some(WriteOutcome::Stored)) {
        state.meter.count_events(writer.grant(), 1).await;
    }
    for outcome in outcomes {
        outcome_result(writer, collection, outcome)?;
    }
    Ok(())
}

/// Stores a batch of one collection and answers one result per event.
async fn store_list(
    state: &AppState,
    writer: &EventWriter,
    collection: &str,
    events: Vec<Result<PreparedEvent, EventError>>,
) -> Result<Response, ApiError> {
    check_event_quota(state, writer.grant(), events.len()).await?;
    let results = store_events(state, writer, collection, events).await?;
    Ok(Json(Value::Array(
        results.iter().map(EventResult::to_json).collect(),
    ))
    .into_response())
}

/// Runs the rest of a write once its body is read as a task of its own, so a client that goes away
/// before the answer (a page sending a pageview as it closes) does not cancel it half-way: what was
/// received is prepared and stored either way.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|error| Err(ApiError::internal(format!("a write task failed: {error}"))))
}

/// The signature header the key's webhook rule reads, once the checks that need no body passed
/// (`WebhookRule::precheck`): an unsigned, malformed or stale delivery is refused before its body is
/// read. `None` for a key without a rule.
fn precheck_signature(
    state: &AppState,
    grant: &Grant,
    headers: &axum::http::HeaderMap,
    collection: &str,
) -> Result<Option<String>, ApiError> {
    let Some(rule) = grant.webhook_rule() else {
        return Ok(None);
    };
    let header = headers
        .get(rule.header_name())
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    rule.precheck(header.as_deref(), chrono::Utc::now().timestamp())
        .map_err(|refusal| refused_delivery(state, grant, refusal, collection))?;
    Ok(header)
}

/// `POST /3.0/projects/{project_id}/events/{collection}`: `201 {"created": true}`, or one result per
/// event for a batch.
pub(crate) async fn record_event(
    auth: Authorized<Writes>,
    State(state): State<AppState>,
    Path((_, collection)): Path<(String, String)>,
    ClientInfo(context): ClientInfo,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_collection(&state, &auth.grant, &collection)?;
    let signature = precheck_signature(&state, &auth.grant, &headers, &collection)?;
    let idempotency_key = crate::idempotency::key_of(&headers)?;
    let (bytes, memory) = read_body(&state, body, ErrorCode::EventTooLarge).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let body = WriteBody::Collection {
        shape: BodyShape::of(content_type, &bytes),
        bytes,
    };
    let writer = auth.writer();
    detached(async move {
        let _memory = memory;
        let prepared = prepare_on_pool(
            &state,
            writer.grant(),
            &collection,
            body,
            signature,
            context,
            idempotency_key,
        )
        .await?;
        match prepared {
            PreparedBody::One(prepared) => {
                store_one(&state, &writer, &collection, prepared).await?;
                Ok((StatusCode::CREATED, Json(json!({"created": true}))).into_response())
            }
            PreparedBody::List(events) => store_list(&state, &writer, &collection, events).await,
            PreparedBody::Collections(_) => Err(ApiError::internal(
                "a collection route's body prepared as a batch",
            )),
        }
    })
    .await
}

/// `POST /3.0/projects/{project_id}/events`: `{"collection": [events]}` → per-event results.
pub(crate) async fn record_events(
    auth: Authorized<Writes>,
    State(state): State<AppState>,
    ClientInfo(context): ClientInfo,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let signature = precheck_signature(&state, &auth.grant, &headers, "")?;
    let idempotency_key = crate::idempotency::key_of(&headers)?;
    let (bytes, memory) = read_body(&state, body, ErrorCode::BatchTooLarge).await?;
    let writer = auth.writer();
    detached(async move {
        let _memory = memory;
        let body = WriteBody::Batch { bytes };
        let PreparedBody::Collections(collections) = prepare_on_pool(
            &state,
            writer.grant(),
            "",
            body,
            signature,
            context,
            idempotency_key,
        )
        .await?
        else {
            return Err(ApiError::internal(
                "a batch prepared as a collection's body",
            ));
        };
        let events: usize = collections.iter().map(|(_, events)| events.len()).sum();
        check_event_quota(&state, writer.grant(), events).await?;
        let stores = collections.into_iter().map(|(collection, events)| {
            let (state, writer) = (&state, &writer);
            async move {
                let results = store_events(state, writer, &collection, events).await?;
                Ok::<_, ApiError>((collection, results))
            }
        });
        let mut answer = Map::new();
        for stored in futures::future::join_all(stores).await {
            let (collection, results) = stored?;
            answer.insert(
                collection,
                Value::Array(results.iter().map(EventResult::to_json).collect()),
            );
        }
        Ok(Json(Value::Object(answer)))
    })
    .await
}

/// `GET /3.0/projects/{project_id}/events/{collection}`: with `data=` a pixel write (needs `writes`),
/// otherwise the collection's schema (needs `schema`).
pub(crate) async fn get_collection(
    access: PixelOrSchema,
    State(state): State<AppState>,
    Path((_, collection)): Path<(String, String)>,
    ClientInfo(context): ClientInfo,
) -> Result<Response, ApiError> {
    let (writer, data, redirect) = match access {
        PixelOrSchema::Schema { reader } => {
            return inspect::collection_schema_response(&reader, &collection).await;
        }
        PixelOrSchema::Pixel {
            writer,
            data,
            redirect,
        } => (writer, data, redirect),
    };
    check_collection(&state, writer.grant(), &collection)?;
    let redirect = redirect.map(|target| check_redirect(&target)).transpose()?;
    let body = WriteBody::Pixel {
        bytes: decode_base64(&data)?,
    };
    detached(async move {
        // A pixel carries no signature header: a signed-webhook key's pixel is refused as unsigned.
        let PreparedBody::One(prepared) = prepare_on_pool(
            &state,
            writer.grant(),
            &collection,
            body,
            None,
            context,
            None,
        )
        .await?
        else {
            return Err(ApiError::internal("a pixel prepared as a batch"));
        };
        store_one(&state, &writer, &collection, prepared).await
    })
    .await?;
    if let Some(target) = redirect {
        return Ok((StatusCode::FOUND, [(header::LOCATION, target)]).into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        ],
        PIXEL_GIF.to_vec(),
    )
        .into_response())
}

/// Accepts the base64 variants SDKs send: standard or URL-safe alphabet, padded or not, with `+`
/// turned into a space by an unencoded query string.
fn decode_base64(data: &str) -> Result<Vec<u8>, ApiError> {
    let cleaned: String = data.trim().replace(' ', "+");
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(cleaned.as_bytes()) {
            return Ok(bytes);
        }
    }
    Err(ApiError::new(
        ErrorCode::InvalidEvent,
        "The data parameter is not valid base64.",
    ))
}

fn check_redirect(target: &str) -> Result<String, ApiError> {
    if target.starts_with("http://") || target.starts_with("https://") {
        return Ok(target.to_string());
    }
    Err(ApiError::new(
        ErrorCode::InvalidRequest,
        "The redirect parameter must be an http or https URL.",
    ))
}
