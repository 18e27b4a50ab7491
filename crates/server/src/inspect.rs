//! Keen's inspection endpoints: every collection with its properties (`GET /events`), one collection
//! (`GET /events/{c}`) and its properties (`/properties[/{name}]`).
//!
//! Design: a property that has held several kinds is reported with the kind of its most recently
//! written value, since Keen's schema shows one type per property; the storage keeps all kinds.
//! `keen.timestamp` and `keen.created_at` are `datetime`, `keen.location.coordinates` is `geo`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use keyhole_model::ValueKind;
use keyhole_storage::CollectionSchema;
use serde_json::{Value, json};

use crate::access::ScopedReader;
use crate::auth::{Authorized, Schema};
use crate::errors::ApiError;

fn collection_url(project_id: &str, collection: &str) -> String {
    format!(
        "/3.0/projects/{project_id}/events/{}",
        encode_path_segment(collection)
    )
}

/// Percent-encodes everything but unreserved characters, as `encodeURIComponent` does.
pub(crate) fn encode_path_segment(text: &str) -> String {
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
pub(crate) async fn list_collections(auth: Authorized<Schema>) -> Result<Json<Value>, ApiError> {
    let reader = auth.reader();
    let mut listed = Vec::new();
    for name in reader.collection_names() {
        if let Some(schema) = reader.schema(&name).await? {
            listed.push(collection_json(reader.project_id(), &name, &schema));
        }
    }
    Ok(Json(Value::Array(listed)))
}

/// A collection's schema as the reader's grant may see it (see `ScopedReader::schema`); not found when
/// it sees none of its events.
async fn find_schema(
    reader: &ScopedReader,
    collection: &str,
) -> Result<CollectionSchema, ApiError> {
    reader
        .schema(collection)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// The body of `GET /events/{collection}` (called once the key is checked).
pub(crate) async fn collection_schema_response(
    reader: &ScopedReader,
    collection: &str,
) -> Result<Response, ApiError> {
    let schema = find_schema(reader, collection).await?;
    Ok(Json(collection_json(reader.project_id(), collection, &schema)).into_response())
}

fn property_json(project_id: &str, collection: &str, name: &str, type_name: &str) -> Value {
    json!({
        "property_name": name,
        "type": type_name,
        "url": format!("{}/properties/{}", collection_url(project_id, collection), encode_path_segment(name)),
    })
}

/// `GET /3.0/projects/{project_id}/events/{collection}/properties`.
pub(crate) async fn list_properties(
    auth: Authorized<Schema>,
    Path((_, collection)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let schema = find_schema(&auth.reader(), &collection).await?;
    let properties = property_types(&schema)
        .iter()
        .map(|(name, type_name)| property_json(&auth.project_id, &collection, name, type_name))
        .collect();
    Ok(Json(Value::Array(properties)))
}

/// `GET /3.0/projects/{project_id}/events/{collection}/properties/{property}`.
pub(crate) async fn get_property(
    auth: Authorized<Schema>,
    Path((_, collection, property)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let schema = find_schema(&auth.reader(), &collection).await?;
    let types = property_types(&schema);
    let type_name = types.get(&property).ok_or_else(ApiError::not_found)?;
    Ok(Json(property_json(
        &auth.project_id,
        &collection,
        &property,
        type_name,
    )))
}
