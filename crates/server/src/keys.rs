//! Keen's access-key API under `/3.0/projects/{project_id}/keys`, all with the master key: create
//! (`201`), list, get, full update (`POST /keys/{key}`), revoke, unrevoke (`200` with the key object, as
//! SDKs parse the body), delete (`204`). A key is addressed by its secret, as in Keen.
//!
//! Keyhole extensions beside them: `GET /keys/self` (any key or embed token: its effective grant and
//! today's usage, never a secret), `GET /keys/audit` (the project's audit log, paged),
//! `GET /keys/{key}/usage` and `POST /keys/{key}/tokens/{token_id}/revoke` (master key).
//!
//! Design: only a hash of each secret is stored, so `key` holds the secret in the answers to create and
//! to the calls that name the key in their path (the caller has it), and is `null` in listings, where
//! `key_prefix` (the first 8 characters) identifies it. Storage clustering and the grant cache follow key
//! changes through the metadata store's change hook, not through calls here.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use keyhole_meta::AccessKey;
use keyhole_model::access::AccessKeyDefinition;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{AnyKeyOfProject, Authorized, MasterOnly};
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
        "expires_at": key.expires_at,
        "embed_key_id": key.embed_key_id,
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
    AccessKeyDefinition::parse_bytes(&bytes)
        .map_err(|error| ApiError::new(ErrorCode::InvalidKeyDefinition, error.to_string()))
}

/// `POST /3.0/projects/{project_id}/keys`.
pub(crate) async fn create_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let definition = definition_from(body).await?;
    let (key, secret) = state
        .meta
        .create_access_key(&auth.project_id, &definition, auth.grant.key_prefix())
        .await?;
    tracing::info!(project_id = %auth.project_id, key_prefix = %key.key_prefix, "access key created");
    Ok((StatusCode::CREATED, Json(key_json(&key, Some(&secret)))))
}

/// `GET /3.0/projects/{project_id}/keys`.
pub(crate) async fn list_keys(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let keys = state.meta.access_keys(&auth.project_id).await?;
    Ok(Json(Value::Array(
        keys.iter().map(|key| key_json(key, None)).collect(),
    )))
}

/// The project's access key with this secret, or `404`.
async fn access_key_or_not_found(
    state: &AppState,
    project_id: &str,
    secret: &str,
) -> Result<AccessKey, ApiError> {
    state
        .meta
        .access_key(project_id, secret)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `GET /3.0/projects/{project_id}/keys/{key}`.
pub(crate) async fn get_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = access_key_or_not_found(&state, &auth.project_id, &secret).await?;
    Ok(Json(key_json(&key, Some(&secret))))
}

/// `POST /3.0/projects/{project_id}/keys/{key}`: replaces the definition.
pub(crate) async fn update_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let definition = definition_from(body).await?;
    let key = state
        .meta
        .update_access_key(
            &auth.project_id,
            &secret,
            &definition,
            auth.grant.key_prefix(),
        )
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(key_json(&key, Some(&secret))))
}

async fn set_active(
    state: &AppState,
    auth: &Authorized<MasterOnly>,
    secret: &str,
    is_active: bool,
) -> Result<Json<Value>, ApiError> {
    let project_id = auth.project_id.as_str();
    let key = state
        .meta
        .set_access_key_active(project_id, secret, is_active, auth.grant.key_prefix())
        .await?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(project_id, key_prefix = %key.key_prefix, is_active, "access key activity changed");
    Ok(Json(key_json(&key, Some(secret))))
}

/// `POST /3.0/projects/{project_id}/keys/{key}/revoke`.
pub(crate) async fn revoke_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(&state, &auth, &secret, false).await
}

/// `POST /3.0/projects/{project_id}/keys/{key}/unrevoke`.
pub(crate) async fn unrevoke_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_active(&state, &auth, &secret, true).await
}

/// `DELETE /3.0/projects/{project_id}/keys/{key}`.
pub(crate) async fn delete_key(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state
        .meta
        .delete_access_key(&auth.project_id, &secret, auth.grant.key_prefix())
        .await?
    {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /3.0/projects/{project_id}/keys/{key}/tokens/{token_id}/revoke`: one embed token of the key
/// stops working at the next request. Answers the key object.
pub(crate) async fn revoke_token(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret, token_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !keyhole_model::embed_token::is_token_id(&token_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "A token id (jti) is 1 to 64 characters of A-Z, a-z, 0-9, _ and -.",
        ));
    }
    let key = state
        .meta
        .revoke_token(
            &auth.project_id,
            &secret,
            &token_id,
            auth.grant.key_prefix(),
        )
        .await?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(project_id = %auth.project_id, key_prefix = %key.key_prefix, token_id, "embed token revoked");
    Ok(Json(key_json(&key, Some(&secret))))
}

/// `GET /3.0/projects/{project_id}/keys/{key}/usage`: the key's counts today (UTC) and its limits.
pub(crate) async fn key_usage(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = access_key_or_not_found(&state, &auth.project_id, &secret).await?;
    let usage = state
        .meter
        .usage_today(keyhole_model::KeyHash::of_secret(&secret))
        .await?;
    Ok(Json(json!({
        "key_prefix": key.key_prefix,
        "day": today(),
        "usage": usage,
        "limits": key.options["limits"],
    })))
}

fn today() -> String {
    crate::limits::usage_day()
}

/// `GET /3.0/projects/{project_id}/keys/self`: what the presenting key or embed token may do — its
/// effective grant (a token's narrowing applied), expiry, limits and today's usage. Never a secret.
pub(crate) async fn key_self(
    auth: Authorized<AnyKeyOfProject>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let grant = &auth.grant;
    let usage = state.meter.usage_today(grant.key_hash()).await?;
    Ok(Json(json!({
        "project_id": grant.project_id(),
        "kind": grant.kind(),
        "credential": if grant.token_id().is_some() { "embed_token" } else { "key" },
        "token_id": grant.token_id(),
        "key_prefix": grant.key_prefix(),
        "name": grant.name(),
        "is_active": grant.is_active(),
        "expires_at": grant.expires_at().map(keyhole_model::timestamp::format_timestamp),
        "permitted": grant.operations().iter().map(|operation| operation.keen_name()).collect::<Vec<_>>(),
        "filters": grant.forced_query_filters().iter().map(keyhole_model::query::Filter::to_json).collect::<Vec<_>>(),
        "max_lookback_seconds": grant.max_lookback_millis().map(|millis| millis / 1000),
        "autofill": grant.autofill().map(|autofill| autofill.source()),
        "writable_collections": grant.writable_collections(),
        "limits": grant.limits().to_json(),
        "usage": {"day": today(), "counts": usage},
    })))
}

/// `GET /3.0/projects/{project_id}/keys/audit?limit=&before=`: the project's audit log, newest first.
pub(crate) async fn audit_log(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (limit, before) = page_parameters(query.as_deref())?;
    let page = state
        .meta
        .audit_log(&auth.project_id, limit, before.as_deref())
        .await?;
    Ok(Json(
        serde_json::to_value(page).map_err(ApiError::internal)?,
    ))
}

/// `GET /3.0/projects/{project_id}/keys/{key}/deliveries` (master key): the webhook deliveries refused for
/// the key (unsigned, bad signature, stale), newest first, paged like the audit log.
pub(crate) async fn refused_deliveries(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, secret)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let key = access_key_or_not_found(&state, &auth.project_id, &secret).await?;
    let (limit, before) = page_parameters(query.as_deref())?;
    let page = state
        .meta
        .refused_deliveries(&auth.project_id, &key.key_prefix, limit, before.as_deref())
        .await?;
    Ok(Json(
        serde_json::to_value(page).map_err(ApiError::internal)?,
    ))
}

/// `limit` and `before` of a paged audit read.
fn page_parameters(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = 100;
    let mut before = None;
    for (name, value) in crate::auth::form_urlencoded_pairs(query.unwrap_or_default()) {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=keyhole_meta::MAX_AUDIT_PAGE).contains(limit))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidParameter,
                            format!(
                                "limit must be between 1 and {}.",
                                keyhole_meta::MAX_AUDIT_PAGE
                            ),
                        )
                    })?;
            }
            "before" => before = Some(value),
            "api_key" => {}
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("{other} is not a parameter here (limit, before)."),
                ));
            }
        }
    }
    Ok((limit, before))
}
