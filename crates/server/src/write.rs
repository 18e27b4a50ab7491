//! The Keen write API: one event (`POST /events/{collection}`), a batch over several collections
//! (`POST /events`), and the pixel/beacon form (`GET /events/{collection}?data=<base64>`).
//!
//! Bodies are parsed as JSON whatever their `Content-Type` (browsers' `sendBeacon` posts `text/plain`),
//! except on the single-collection route, which also takes the shapes webhooks send
//! (`webhook_bodies`): a form-encoded body is one event, an NDJSON body a batch. Invalid events in a batch
//! are answered per event while the valid ones are stored. A JSON array posted to the single-collection
//! route (webhooks such as SendGrid's) is stored as a batch for that collection and answered with one
//! result per event.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use keyhole_model::Grant;
use keyhole_model::access::apply_autofill;
use keyhole_model::names::collection_name_problem;
use keyhole_model::{EventContext, EventError, prepare_event_enriched};
use keyhole_storage::{CollectionId, WriteOutcome};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::{Authorized, PixelOrSchema, Writes, limit_error};
use crate::errors::{ApiError, ErrorCode};
use crate::inspect;
use crate::webhook_bodies::{BodyShape, form_event, ndjson_events};

/// Largest request body Keen accepts (a batch payload), in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 10_000_000;

/// A 1×1 transparent GIF, the answer to a pixel write.
const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The request facts placeholders need: client address and User-Agent.
pub struct ClientInfo(EventContext);

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

async fn read_body(body: Body, too_large: ErrorCode) -> Result<Bytes, ApiError> {
    crate::http::read_body(body, MAX_PAYLOAD_BYTES, || {
        ApiError::new(
            too_large,
            format!("The request body must be at most {MAX_PAYLOAD_BYTES} bytes."),
        )
    })
    .await
}

fn parse_json(bytes: &[u8], code: ErrorCode) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            code,
            format!("The request body is not valid JSON: {error}."),
        )
    })
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

/// A key with `options.writes.webhook` accepts only deliveries signed as it says (`model::webhook`); a
/// refused delivery is answered 401 and written to the key's log of refused deliveries (the audit log).
fn check_webhook_signature(
    state: &AppState,
    grant: &Grant,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    collection: &str,
) -> Result<(), ApiError> {
    let Some(rule) = grant.webhook_rule() else {
        return Ok(());
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let Err(refusal) = rule.verify(&header, body, chrono::Utc::now().timestamp()) else {
        return Ok(());
    };
    use keyhole_model::webhook::DeliveryRefusal;
    let reason = match refusal {
        DeliveryRefusal::Unsigned => keyhole_meta::Refusal::WebhookUnsigned,
        DeliveryRefusal::BadSignature => keyhole_meta::Refusal::WebhookBadSignature,
        DeliveryRefusal::Stale => keyhole_meta::Refusal::WebhookStale,
        DeliveryRefusal::SecretUnavailable => keyhole_meta::Refusal::WebhookSecretUnavailable,
    };
    record_write_refusal(state, grant, reason, collection);
    Err(ApiError::new(
        ErrorCode::InvalidWebhookSignature,
        refusal.message(),
    ))
}

/// The request's context as seen by the writing key: its deduplication scope set.
fn context_of(grant: &Grant, context: EventContext) -> EventContext {
    EventContext {
        uniqueness_scope: grant.uniqueness_scope().map(str::to_string),
        ..context
    }
}

/// The key's `options.writes.autofill`, merged into every event it writes (the key's values win).
fn autofill(grant: &Grant, event: Value) -> Value {
    match (event, grant.autofill()) {
        (Value::Object(mut event), Some(autofill)) => {
            apply_autofill(&mut event, autofill);
            Value::Object(event)
        }
        (event, _) => event,
    }
}

/// Validates and stores events of one collection; answers per event, in order.
async fn store_events(
    state: &AppState,
    grant: &Grant,
    collection: &str,
    events: Vec<Value>,
    context: &EventContext,
) -> Result<Vec<EventResult>, ApiError> {
    let project_id = grant.project_id();
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
        match prepare_event_enriched(autofill(grant, event), context, &state.enrichment) {
            Ok(event) => {
                prepared_positions.push(results.len());
                prepared.push(event);
                results.push(EventResult::Stored);
            }
            Err(error) => results.push(EventResult::Refused(error.into())),
        }
    }
    if !prepared.is_empty() {
        let id = CollectionId {
            project: project_id.to_string(),
            collection: collection.to_string(),
        };
        let outcomes = state.storage.append(id, prepared).await?;
        let stored = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, WriteOutcome::Stored))
            .count();
        state.meter.count_events(grant, stored).await;
        for (position, outcome) in prepared_positions.into_iter().zip(outcomes) {
            if let Err(error) = outcome_result(state, collection, outcome) {
                results[position] = EventResult::Refused(error);
            }
        }
    }
    Ok(results)
}

/// What the client hears of one event's storage outcome. Duplicates by uniqueness token are answered as
/// successes: the event is already stored.
fn outcome_result(
    state: &AppState,
    collection: &str,
    outcome: WriteOutcome,
) -> Result<(), ApiError> {
    match outcome {
        WriteOutcome::Stored | WriteOutcome::Duplicate => Ok(()),
        WriteOutcome::TooManyColumns => Err(ApiError::new(
            ErrorCode::TooManyProperties,
            format!(
                "The collection '{collection}' may hold at most {} property columns (a property counts once per JSON type it has held); this event adds new properties past that. Events using the collection's existing properties are still accepted.",
                state.storage.max_columns_per_collection()
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
    grant: &Grant,
    id: CollectionId,
    prepared: keyhole_model::PreparedEvent,
) -> Result<(), ApiError> {
    let collection = id.collection.clone();
    let outcomes = state.storage.append(id, vec![prepared]).await?;
    if matches!(outcomes.first(), Some(WriteOutcome::Stored)) {
        state.meter.count_events(grant, 1).await;
    }
    for outcome in outcomes {
        outcome_result(state, &collection, outcome)?;
    }
    Ok(())
}

/// `POST /3.0/projects/{project_id}/events/{collection}`: `201 {"created": true}`.
pub async fn record_event(
    auth: Authorized<Writes>,
    State(state): State<AppState>,
    Path((_, collection)): Path<(String, String)>,
    ClientInfo(context): ClientInfo,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_collection(&state, &auth.grant, &collection)?;
    let context = context_of(&auth.grant, context);
    let bytes = read_body(body, ErrorCode::EventTooLarge).await?;
    check_webhook_signature(&state, &auth.grant, &headers, &bytes, &collection)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidEvent, message);
    let parsed = match BodyShape::of(content_type) {
        BodyShape::Json => parse_json(&bytes, ErrorCode::InvalidEvent)?,
        BodyShape::Form => form_event(&bytes).map_err(invalid)?,
        BodyShape::NdJson => Value::Array(ndjson_events(&bytes).map_err(invalid)?),
    };
    match parsed {
        Value::Array(events) => {
            check_event_quota(&state, &auth.grant, events.len()).await?;
            let results = store_events(&state, &auth.grant, &collection, events, &context).await?;
            Ok(Json(Value::Array(
                results.iter().map(EventResult::to_json).collect(),
            ))
            .into_response())
        }
        event => {
            check_event_quota(&state, &auth.grant, 1).await?;
            let prepared =
                prepare_event_enriched(autofill(&auth.grant, event), &context, &state.enrichment)?;
            let id = CollectionId {
                project: auth.project_id,
                collection,
            };
            store_one(&state, &auth.grant, id, prepared).await?;
            Ok((StatusCode::CREATED, Json(json!({"created": true}))).into_response())
        }
    }
}

/// `POST /3.0/projects/{project_id}/events`: `{"collection": [events]}` → per-event results.
pub async fn record_events(
    auth: Authorized<Writes>,
    State(state): State<AppState>,
    ClientInfo(context): ClientInfo,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let context = context_of(&auth.grant, context);
    let bytes = read_body(body, ErrorCode::BatchTooLarge).await?;
    check_webhook_signature(&state, &auth.grant, &headers, &bytes, "")?;
    let Value::Object(batch) = parse_json(&bytes, ErrorCode::InvalidBatch)? else {
        return Err(ApiError::new(
            ErrorCode::InvalidBatch,
            "A batch must be a JSON object mapping collection names to lists of events.",
        ));
    };
    let mut collections = Vec::with_capacity(batch.len());
    for (collection, events) in batch {
        let Value::Array(events) = events else {
            return Err(ApiError::new(
                ErrorCode::InvalidBatch,
                format!("The value for collection '{collection}' must be a list of events."),
            ));
        };
        collections.push((collection, events));
    }
    let events: usize = collections.iter().map(|(_, events)| events.len()).sum();
    check_event_quota(&state, &auth.grant, events).await?;
    let stores = collections.into_iter().map(|(collection, events)| {
        let (state, context, key) = (&state, &context, &auth.grant);
        async move {
            let results = store_events(state, key, &collection, events, context).await?;
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
}

/// `GET /3.0/projects/{project_id}/events/{collection}`: with `data=` a pixel write (needs `writes`),
/// otherwise the collection's schema (needs `schema`).
pub async fn get_collection(
    access: PixelOrSchema,
    State(state): State<AppState>,
    Path((_, collection)): Path<(String, String)>,
    ClientInfo(context): ClientInfo,
) -> Result<Response, ApiError> {
    let (project_id, grant, data, redirect) = match access {
        PixelOrSchema::Schema { project_id, grant } => {
            return inspect::collection_schema_response(&state, &grant, &project_id, &collection)
                .await;
        }
        PixelOrSchema::Pixel {
            project_id,
            grant,
            data,
            redirect,
        } => (project_id, grant, data, redirect),
    };
    check_collection(&state, &grant, &collection)?;
    // A pixel carries no body to sign: a signed-webhook key cannot write this way.
    check_webhook_signature(
        &state,
        &grant,
        &axum::http::HeaderMap::new(),
        b"",
        &collection,
    )?;
    let context = context_of(&grant, context);
    let redirect = redirect.map(|target| check_redirect(&target)).transpose()?;
    let event = parse_json(&decode_base64(&data)?, ErrorCode::InvalidEvent)?;
    check_event_quota(&state, &grant, 1).await?;
    let prepared = prepare_event_enriched(autofill(&grant, event), &context, &state.enrichment)?;
    let id = CollectionId {
        project: project_id,
        collection,
    };
    store_one(&state, &grant, id, prepared).await?;
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
