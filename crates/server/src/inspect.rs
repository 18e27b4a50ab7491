//! Keen's inspection endpoints: every collection with its properties (`GET /events`), one collection
//! (`GET /events/{c}`), its properties (`/properties[/{name}]`), and deleting a whole collection.
//!
//! Design: a property that has held several kinds is reported with the kind of its most recently
//! written value, since Keen's schema shows one type per property; the storage keeps all kinds.
//! `keen.timestamp` and `keen.created_at` are `datetime`, `keen.location.coordinates` is `geo`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_model::ValueKind;
use keyhole_storage::{CollectionId, CollectionSchema};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Authorized, MasterOnly, Schema, form_urlencoded_pairs, scope_of};
use crate::errors::{ApiError, ErrorCode};
use keyhole_model::Grant;
use keyhole_query::Visibility;

fn collection_url(project_id: &str, collection: &str) -> String {
    format!(
        "/3.0/projects/{project_id}/events/{}",
        encode_path_segment(collection)
    )
}

/// Percent-encodes everything but unreserved characters, as `encodeURIComponent` does.
pub fn encode_path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Property path → Keen type name, including the fixed `keen.*` properties.
fn property_types(schema: &CollectionSchema) -> BTreeMap<String, &'static str> {
    let mut types = BTreeMap::from([
        ("keen.timestamp".to_string(), "datetime"),
        ("keen.created_at".to_string(), "datetime"),
        ("keen.id".to_string(), "string"),
    ]);
    for (path, property) in &schema.properties {
        if path == keyhole_model::event::UNIQUENESS_SCOPE_PATH {
            continue;
        }
        let kind = property.latest;
        let type_name = match (path.as_str(), kind) {
            ("keen.location.coordinates", ValueKind::NumList) => "geo",
            _ => kind.keen_type_name(),
        };
        types.insert(path.clone(), type_name);
    }
    types
}

fn collection_json(project_id: &str, name: &str, schema: &CollectionSchema) -> Value {
    json!({"name": name, "properties": property_types(schema), "url": collection_url(project_id, name)})
}

/// `GET /3.0/projects/{project_id}/events`.
pub async fn list_collections(
    auth: Authorized<Schema>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let mut listed = Vec::new();
    for (name, _) in state.storage.collections(&auth.project_id) {
        if let Some(schema) = scoped_schema(&state, &auth.grant, &auth.project_id, &name).await? {
            listed.push(collection_json(&auth.project_id, &name, &schema));
        }
    }
    Ok(Json(Value::Array(listed)))
}

/// A collection's schema as the key may see it: in a restricted scope, only the properties that events
/// visible to the key carry (`None` when it sees none of the collection's events, or there are none).
async fn scoped_schema(
    state: &AppState,
    grant: &Grant,
    project_id: &str,
    collection: &str,
) -> Result<Option<CollectionSchema>, ApiError> {
    let id = CollectionId {
        project: project_id.to_string(),
        collection: collection.to_string(),
    };
    let Some(mut schema) = state.storage.collection_schema(&id) else {
        return Ok(None);
    };
    let scope = scope_of(grant);
    let visible = match state.queries.visible_columns(&scope, collection).await? {
        Visibility::Everything => return Ok(Some(schema)),
        Visibility::Nothing => return Ok(None),
        Visibility::Columns(columns) => columns,
    };
    schema.properties.retain(|path, property| {
        property
            .kinds
            .retain(|kind| visible.contains(&kind.column_name(path)));
        let Some(first_visible) = property.kinds.iter().next().copied() else {
            return false;
        };
        if !property.kinds.contains(&property.latest) {
            property.latest = first_visible;
        }
        true
    });
    Ok(Some(schema))
}

async fn find_schema(
    state: &AppState,
    grant: &Grant,
    project_id: &str,
    collection: &str,
) -> Result<CollectionSchema, ApiError> {
    scoped_schema(state, grant, project_id, collection)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// The body of `GET /events/{collection}` (called once the key is checked).
pub async fn collection_schema_response(
    state: &AppState,
    grant: &Grant,
    project_id: &str,
    collection: &str,
) -> Result<Response, ApiError> {
    let schema = find_schema(state, grant, project_id, collection).await?;
    Ok(Json(collection_json(project_id, collection, &schema)).into_response())
}

fn property_json(project_id: &str, collection: &str, name: &str, type_name: &str) -> Value {
    json!({
        "property_name": name,
        "type": type_name,
        "url": format!("{}/properties/{}", collection_url(project_id, collection), encode_path_segment(name)),
    })
}

/// `GET /3.0/projects/{project_id}/events/{collection}/properties`.
pub async fn list_properties(
    auth: Authorized<Schema>,
    State(state): State<AppState>,
    Path((_, collection)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let schema = find_schema(&state, &auth.grant, &auth.project_id, &collection).await?;
    let properties = property_types(&schema)
        .iter()
        .map(|(name, type_name)| property_json(&auth.project_id, &collection, name, type_name))
        .collect();
    Ok(Json(Value::Array(properties)))
}

/// `GET /3.0/projects/{project_id}/events/{collection}/properties/{property}`.
pub async fn get_property(
    auth: Authorized<Schema>,
    State(state): State<AppState>,
    Path((_, collection, property)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let schema = find_schema(&state, &auth.grant, &auth.project_id, &collection).await?;
    let types = property_types(&schema);
    let type_name = types.get(&property).ok_or_else(ApiError::not_found)?;
    Ok(Json(property_json(
        &auth.project_id,
        &collection,
        &property,
        type_name,
    )))
}

/// `DELETE /3.0/projects/{project_id}/events/{collection}`: deletes the whole collection (204).
///
/// Only a request that says nothing but "this collection" deletes it. Deleting the events matching
/// `filters`/`timeframe`/`timezone` (in any spelling: `filters=…` or the bracket form
/// `filters[0][property_name]=…` that PHP's SDK sends) is answered 501 until it exists; any other
/// parameter, or a request body, is refused with 400. A delete is never widened to the whole collection
/// because a parameter was not recognized.
pub async fn delete_collection(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, collection)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    check_delete_is_whole_collection(query.as_deref())?;
    let body = crate::http::read_body(body, 1024, delete_body_refused).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        return Err(delete_body_refused());
    }
    let id = CollectionId {
        project: auth.project_id,
        collection,
    };
    state
        .storage
        .collection_schema(&id)
        .ok_or_else(ApiError::not_found)?;
    state.storage.delete_collection(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn delete_body_refused() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameter,
        "A collection delete takes no request body; nothing was deleted.",
    )
}

/// Refuses a delete that carries anything but the key.
fn check_delete_is_whole_collection(query: Option<&str>) -> Result<(), ApiError> {
    let mut selective = false;
    for (name, _) in form_urlencoded_pairs(query.unwrap_or_default()) {
        let base = name.split('[').next().unwrap_or_default();
        match base {
            "api_key" if name == "api_key" => {}
            "filters" | "timeframe" | "timezone" => selective = true,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "A collection delete does not take the parameter '{}'; nothing was deleted.",
                        name.chars().take(100).collect::<String>()
                    ),
                ));
            }
        }
    }
    if selective {
        return Err(ApiError::new(
            ErrorCode::NotImplemented,
            "Deleting events by filters, timeframe or timezone is not supported yet; nothing was deleted. Omit them to delete the whole collection.",
        ));
    }
    Ok(())
}
