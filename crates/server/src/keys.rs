//! Keen's access-key API under `/3.0/projects/{project_id}/keys`, all with the master key: create
//! (`201`), list, get, full update (`POST /keys/{key}`), revoke, unrevoke (`200` with the key object, as
//! SDKs parse the body), delete (`204`). A key is addressed by its secret, as in Keen.
//!
//! Design: only a hash of each secret is stored, so `key` holds the secret in the answers to create and
//! to the calls that name the key in their path (the caller has it), and is `null` in listings, where
//! `key_prefix` (the first 8 characters) identifies it.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyhole_meta::AccessKey;
use keyhole_model::access::AccessKeyDefinition;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Authorized, MasterOnly};
use crate::errors::{ApiError, ErrorCode};

fn key_json(key: &AccessKey, secret: Option<&str>) -> Value {
    json!({
        "key": secret,
        "key_prefix": key.key_prefix,
        "name": key.name,
        "project_id": key.project_id,
        "is_active": key.is_active,
        "permitted": key.permitted.iter().map(|operation| operation.keen_name()).collect::<Vec<_>>(),
        "options": key.options,
        "created_at": key.created_at,
    })
}

async fn definition_from(body: Body) -> Result<AccessKeyDefinition, ApiError> {
    let bytes = crate::http::read_body(body, 256 * 1024, || {
        ApiError::new(
            ErrorCode::InvalidKeyDefinition,
            "The key definition is too large.",
        )
    })
    .await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidKeyDefinition,
            "The key definition must be a JSON object.",
        )
    })?;
    AccessKeyDefinition::parse(&value)
        .map_err(|error| ApiError::new(ErrorCode::InvalidKeyDefinition, error.to_string()))
}

/// `POST /3.0/projects/{project_id}/keys`.
pub async fn create_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let definition = definition_from(body).await?;
    let (key, secret) = state
        .meta
        .create_access_key(&auth.project_id, &definition)
        .await?;
    tracing::info!(project_id = %auth.project_id, key_prefix = %key.key_prefix, "access key created");
    state.refresh_clustering(&auth.project_id).await;
    Ok((StatusCode::CREATED, Json(key_json(&key, Some(&secret)))))
}

/// `GET /3.0/projects/{project_id}/keys`.
pub async fn list_keys(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let keys = state.meta.access_keys(&auth.project_id).await?;
    Ok(Json(Value::Array(
        keys.iter().map(|key| key_json(key, None)).collect(),
    )))
}

/// `GET /3.0/projects/{project_id}/keys/{key}`.
pub async fn get_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = state
        .meta
        .access_key(&auth.project_id, &secret)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(key_json(&key, Some(&secret))))
}

/// `POST /3.0/projects/{project_id}/keys/{key}`: replaces the definition.
pub async fn update_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let definition = definition_from(body).await?;
    let key = state
        .meta
        .update_access_key(&auth.project_id, &secret, &definition)
        .await?
        .ok_or_else(ApiError::not_found)?;
    state.refresh_clustering(&auth.project_id).await;
    Ok(Json(key_json(&key, Some(&secret))))
}

async fn set_active(
    state: &AppState,
    project_id: &str,
    secret: &str,
    is_active: bool,
) -> Result<Json<Value>, ApiError> {
    let key = state
        .meta
        .set_access_key_active(project_id, secret, is_active)
        .await?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(project_id, key_prefix = %key.key_prefix, is_active, "access key activity changed");
    state.refresh_clustering(project_id).await;
    Ok(Json(key_json(&key, Some(secret))))
}

/// `POST /3.0/projects/{project_id}/keys/{key}/revoke`.
pub async fn revoke_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(&state, &auth.project_id, &secret, false).await
}

/// `POST /3.0/projects/{project_id}/keys/{key}/unrevoke`.
pub async fn unrevoke_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(&state, &auth.project_id, &secret, true).await
}

/// `DELETE /3.0/projects/{project_id}/keys/{key}`.
pub async fn delete_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state
        .meta
        .delete_access_key(&auth.project_id, &secret)
        .await?
    {
        return Err(ApiError::not_found());
    }
    state.refresh_clustering(&auth.project_id).await;
    Ok(StatusCode::NO_CONTENT)
}
