//! Deletes: `DELETE /3.0/projects/{project_id}/events/{collection}` — the whole collection (master key,
//! no parameters), or the events matching `filters`, `timeframe` and `timezone` — and
//! `DELETE …/events/{collection}/properties/{name}` (master key), each answered `204` once durable.
//!
//! Design: Keen lets only the master key delete. Keyhole adds a `deletes` operation for access keys
//! (documented in docs/keys.md): such a key's deletes run in its read scope, so they remove only events
//! its forced filters (and look-back) let it see — a customer's key can erase that customer's events and
//! nothing else; without parameters it deletes everything in its scope, never the collection. The
//! matching events are found by the query layer (the same scope choke point as every read) and removed by
//! id in rounds of at most [`DELETE_ROUND_EVENTS`] (each round one WAL record, see storage's `deletes`).
//! `filters` may come as JSON or in PHP's bracket form (`filters[0][property_name]=…`); keen-analysis'
//! `client.del` sends JSON-quoted `timezone`/`timeframe` and a `{}` body, both read as meant. A request
//! carrying any other parameter, a body with content, a present-but-empty `filters` or a `timezone`
//! without `filters` or `timeframe` is refused before anything is deleted: a delete is never widened
//! because a parameter was not understood (only the bare form deletes everything, as in Keen).

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use keyhole_model::KeyKind;
use keyhole_model::query::{AnalysisType, Query, now_millis, params_from_query_string};
use serde_json::Value;

use crate::access::EventDeleter;
use crate::auth::{Authorized, Deletes, MasterOnly, form_urlencoded_pairs};
use crate::errors::{ApiError, ErrorCode};

/// Most events one round of a delete removes.
pub(crate) const DELETE_ROUND_EVENTS: usize = 500_000;
/// Most rounds one request runs (events written while a delete runs can keep matching).
const MAX_DELETE_ROUNDS: usize = 1_000;

/// `DELETE /3.0/projects/{project_id}/events/{collection}`.
pub(crate) async fn delete_events(
    auth: Authorized<Deletes>,
    Path((_, collection)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let query = query.unwrap_or_default();
    check_delete_parameter_names(&query)?;
    let body = crate::http::read_body(body, 1024, delete_body_refused).await?;
    if !is_empty_body(&body) {
        return Err(delete_body_refused());
    }
    let mut params = params_from_query_string(&query)?;
    params.remove("api_key");
    let selective = selects_events(&params)?;
    let deleter = auth.deleter();
    let is_master = auth.grant.kind() == KeyKind::Master;
    // Only the master key learns that a collection does not exist; a scoped key's delete of an unknown
    // collection matches nothing, as a delete in another tenant's collection does.
    if is_master && deleter.reader().schema(&collection).await?.is_none() {
        return Err(ApiError::not_found());
    }
    if is_master && !selective && deleter.delete_collection(&collection).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    params.insert("event_collection".into(), Value::String(collection.clone()));
    let selection = Query::parse(AnalysisType::Extraction, &params)?;
    let deleted = delete_matching(&deleter, &collection, &selection).await?;
    tracing::info!(project_id = %auth.project_id, %collection, deleted, "events deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every event of `collection` that `selection` matches in the deleter's scope, in rounds of at
/// most [`DELETE_ROUND_EVENTS`]; the number deleted. Durable when it returns.
pub(crate) async fn delete_matching(
    deleter: &EventDeleter,
    collection: &str,
    selection: &Query,
) -> Result<usize, ApiError> {
    let mut deleted = 0usize;
    for _ in 0..MAX_DELETE_ROUNDS {
        let matched = deleter
            .reader()
            .matching_events(selection, now_millis(), DELETE_ROUND_EVENTS)
            .await?;
        let found = matched.ids.len();
        if found == 0 {
            break;
        }
        let removed = deleter.delete_events(collection, matched).await?;
        deleted += removed;
        if found < DELETE_ROUND_EVENTS || removed == 0 {
            break;
        }
    }
    Ok(deleted)
}

/// `DELETE /3.0/projects/{project_id}/events/{collection}/properties/{property}`.
pub(crate) async fn delete_property(
    auth: Authorized<MasterOnly>,
    Path((_, collection, property)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let deleter = auth.deleter();
    let schema = deleter
        .reader()
        .schema(&collection)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let nested = format!("{property}.");
    let held = schema
        .properties
        .keys()
        .any(|path| path == &property || path.starts_with(&nested));
    if !held || property.starts_with("keen.") {
        return Err(if property.starts_with("keen.") {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "Properties under keen. cannot be deleted.",
            )
        } else {
            ApiError::not_found()
        });
    }
    if !deleter.delete_property(&collection, property).await? {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn delete_body_refused() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameter,
        "A delete takes no request body; nothing was deleted.",
    )
}

/// Nothing, whitespace, or the empty JSON object keen-analysis sends.
fn is_empty_body(body: &[u8]) -> bool {
    let text = body.iter().filter(|byte| !byte.is_ascii_whitespace());
    let compact: Vec<u8> = text.copied().collect();
    compact.is_empty() || compact == b"{}"
}

/// Refuses parameters a delete does not take (`filters`, `timeframe`, `timezone`, plain or bracketed).
fn check_delete_parameter_names(query: &str) -> Result<(), ApiError> {
    for (name, _) in form_urlencoded_pairs(query) {
        let known = match name.split_once('[') {
            Some((base, _)) => matches!(base, "filters" | "timeframe"),
            None => matches!(
                name.as_str(),
                "api_key" | "filters" | "timeframe" | "timezone"
            ),
        };
        if !known {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "A delete does not take the parameter '{}'; nothing was deleted.",
                    name.chars().take(100).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether the delete selects events (`filters` or `timeframe`) rather than naming the whole collection.
/// A present-but-empty `filters`, or a `timezone` with neither, selects nothing definite: refused.
fn selects_events(params: &serde_json::Map<String, Value>) -> Result<bool, ApiError> {
    let refused = |message: &str| Err(ApiError::new(ErrorCode::InvalidParameter, message));
    let filters = params.get("filters");
    let empty_filters = match filters {
        Some(Value::Array(list)) => list.is_empty(),
        Some(Value::String(text)) => text.trim().is_empty(),
        Some(Value::Null) => true,
        _ => false,
    };
    if empty_filters {
        return refused(
            "filters is present but empty; nothing was deleted. Send filters that select events, or no parameter at all to delete the whole collection.",
        );
    }
    let selective = filters.is_some() || params.contains_key("timeframe");
    if !selective && params.contains_key("timezone") {
        return refused(
            "timezone alone selects no events; nothing was deleted. Send filters or a timeframe with it, or no parameter at all to delete the whole collection.",
        );
    }
    Ok(selective)
}
