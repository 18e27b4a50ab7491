//! Tenants as objects (a Keyhole extension; `keyhole_model::tenant` says what a tenant is), with the
//! project's master key or the organization key (`access::administrator`):
//! - `PUT /3.0/projects/{project_id}/tenancy` `{"property": "customer.id"}` sets the tenancy property
//!   (`409` while tenants exist and it would change); `GET` answers it (`404` when unset);
//! - `POST /3.0/projects/{project_id}/tenants` `{"id", "name"?, "options"?}` creates a tenant and its read
//!   and write keys, answering `201` with the tenant and both secrets, shown only here (`409` when the id is
//!   taken or the project has no tenancy yet);
//! - `GET /3.0/projects/{project_id}/tenants?limit=&after=` pages tenants by id, each with its usage
//!   (`tenant_usage`); `GET …/tenants/{id}` answers one, with its usage and its keys' metadata (never a
//!   secret);
//! - `PATCH …/tenants/{id}` `{"name"?, "options"?, "suspended"?}` renames it, makes both keys again from
//!   new options (secrets kept), or suspends its keys and their embed tokens (`403 TenantSuspendedError`
//!   from the next request on, on every node) and resumes them unchanged;
//! - `POST …/tenants/{id}/rotate-keys` `{"grace_seconds"?}` answers two new keys (shown once) and sets the
//!   current ones to expire after the grace period (at once without one);
//! - deleting and erasing a tenant: `tenant_erasure`.
//!
//! Design: the tenant's keys are ordinary access keys tied to it in the metadata store, so every rule of a
//! key (filters AND-ed into every read, autofill winning over the event, limits, origins, expiry, audit)
//! applies to them unchanged; nothing here enforces a tenant's scope by itself.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use keyhole_meta::{AccessKey, CreatedTenant, MAX_TENANT_PAGE, MetaError, Tenant};
use keyhole_model::tenant::{
    Tenancy, TenantChange, TenantDefinition, TenantDefinitionError, parse_rotation_grace_seconds,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::access::administrator::ProjectAdministrator;
use crate::auth::form_urlencoded_pairs;
use crate::errors::{ApiError, ErrorCode};

/// Tenants on a page when `limit` is not given.
const DEFAULT_TENANT_PAGE: usize = 50;
/// The largest tenancy or tenant body read.
const MAX_TENANT_BODY_BYTES: usize = 64 * 1024;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidTenantDefinition, message)
}

fn from_definition_error(error: TenantDefinitionError) -> ApiError {
    invalid(error.0)
}

/// Store errors of tenant calls: a definition the key rules refuse is the tenant's fault (`400`).
fn from_meta_error(error: MetaError) -> ApiError {
    match error {
        MetaError::InvalidDefinition(message) => invalid(message),
        other => ApiError::from(other),
    }
}

async fn read_tenant_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    crate::http::read_body(body, MAX_TENANT_BODY_BYTES, || {
        invalid("The body is too large.")
    })
    .await
}

fn key_metadata_json(key: &AccessKey) -> Value {
    json!({
        "key_prefix": key.key_prefix,
        "name": key.name,
        "is_active": key.is_active,
        "permitted": key.permitted.iter().map(|operation| operation.keen_name()).collect::<Vec<_>>(),
        "created_at": key.created_at,
        "expires_at": key.expires_at,
    })
}

fn tenant_json(tenant: &Tenant) -> Value {
    json!({
        "id": tenant.id,
        "name": tenant.name,
        "options": tenant.options,
        "suspended": tenant.suspended,
        "created_at": tenant.created_at,
        "modified_at": tenant.modified_at,
    })
}

/// A tenant with its two new keys' secrets (shown only in this answer) and metadata.
fn created_keys_json(created: &CreatedTenant) -> Value {
    let (read_key, read_secret) = &created.read_key;
    let (write_key, write_secret) = &created.write_key;
    let mut answer = tenant_json(&created.tenant);
    answer["read_key"] = json!(read_secret);
    answer["write_key"] = json!(write_secret);
    answer["keys"] = json!([key_metadata_json(read_key), key_metadata_json(write_key)]);
    answer
}

/// A tenant with its keys' metadata, as retrieving and changing it answer.
async fn tenant_with_keys_json(
    state: &AppState,
    project_id: &str,
    tenant: &Tenant,
) -> Result<Value, ApiError> {
    let keys = state.meta.tenant_keys(project_id, &tenant.id).await?;
    let mut answer = tenant_json(tenant);
    answer["keys"] = Value::Array(keys.iter().map(key_metadata_json).collect());
    Ok(answer)
}

/// `PUT /3.0/projects/{project_id}/tenancy`.
pub(crate) async fn put_tenancy(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_tenant_body(body).await?;
    let tenancy = Tenancy::parse_bytes(&bytes).map_err(from_definition_error)?;
    state
        .meta
        .set_tenancy(&admin.project_id, &tenancy)
        .await
        .map_err(from_meta_error)?;
    tracing::info!(project_id = %admin.project_id, property = %tenancy.property, "tenancy set");
    Ok(Json(json!({"property": tenancy.property})))
}

/// `GET /3.0/projects/{project_id}/tenancy`.
pub(crate) async fn get_tenancy(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let tenancy = state
        .meta
        .tenancy(&admin.project_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({"property": tenancy.property})))
}

/// `POST /3.0/projects/{project_id}/tenants`.
pub(crate) async fn create_tenant(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_tenant_body(body).await?;
    let definition = TenantDefinition::parse_bytes(&bytes).map_err(from_definition_error)?;
    let created = state
        .meta
        .create_tenant(&admin.project_id, &definition, &admin.actor)
        .await
        .map_err(from_meta_error)?;
    tracing::info!(project_id = %admin.project_id, tenant = %created.tenant.id, "tenant created");
    Ok((StatusCode::CREATED, Json(created_keys_json(&created))))
}

/// `GET /3.0/projects/{project_id}/tenants?limit=&after=`.
pub(crate) async fn list_tenants(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    RawQuery(query_string): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut limit = DEFAULT_TENANT_PAGE;
    let mut after = String::new();
    for (parameter, value) in form_urlencoded_pairs(query_string.as_deref().unwrap_or_default()) {
        match parameter.as_str() {
            "limit" => {
                limit = crate::http::parse_page_limit(&value, MAX_TENANT_PAGE)
                    .map_err(|message| ApiError::new(ErrorCode::InvalidParameter, message))?;
            }
            "after" => after = value,
            "api_key" => {}
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "'{}' is not a parameter of this request.",
                        other.chars().take(100).collect::<String>()
                    ),
                ));
            }
        }
    }
    // One more than the page tells whether another page follows.
    let mut tenants = state
        .meta
        .tenants_page(&admin.project_id, &after, limit + 1)
        .await?;
    let more = tenants.len() > limit;
    tenants.truncate(limit);
    let mut usage = crate::tenant_usage::usage_of_tenants(&state, &admin, &tenants).await?;
    let next_page_url = match (more, tenants.last()) {
        (true, Some(last)) => json!(format!(
            "/3.0/projects/{}/tenants?limit={limit}&after={}",
            admin.project_id,
            url::form_urlencoded::byte_serialize(last.id.as_bytes()).collect::<String>()
        )),
        _ => Value::Null,
    };
    Ok(Json(json!({
        "tenants": tenants
            .iter()
            .map(|tenant| {
                let mut answer = tenant_json(tenant);
                answer["usage"] = usage.remove(&tenant.id).unwrap_or(Value::Null);
                answer
            })
            .collect::<Vec<_>>(),
        "next_page_url": next_page_url,
    })))
}

/// `GET /3.0/projects/{project_id}/tenants/{tenant_id}`.
pub(crate) async fn get_tenant(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    Path((_, tenant_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let tenant = state
        .meta
        .tenant(&admin.project_id, &tenant_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut answer = tenant_with_keys_json(&state, &admin.project_id, &tenant).await?;
    let mut usage =
        crate::tenant_usage::usage_of_tenants(&state, &admin, std::slice::from_ref(&tenant))
            .await?;
    answer["usage"] = usage.remove(&tenant.id).unwrap_or(Value::Null);
    Ok(Json(answer))
}

/// `PATCH /3.0/projects/{project_id}/tenants/{tenant_id}`.
pub(crate) async fn update_tenant(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    Path((_, tenant_id)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_tenant_body(body).await?;
    let change = TenantChange::parse_bytes(&bytes).map_err(from_definition_error)?;
    let tenant = state
        .meta
        .update_tenant(&admin.project_id, &tenant_id, &change, &admin.actor)
        .await
        .map_err(from_meta_error)?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(
        project_id = %admin.project_id,
        tenant = %tenant.id,
        suspended = tenant.suspended,
        "tenant changed"
    );
    Ok(Json(
        tenant_with_keys_json(&state, &admin.project_id, &tenant).await?,
    ))
}

/// `POST /3.0/projects/{project_id}/tenants/{tenant_id}/rotate-keys`.
pub(crate) async fn rotate_tenant_keys(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    Path((_, tenant_id)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_tenant_body(body).await?;
    let grace_seconds = parse_rotation_grace_seconds(&bytes).map_err(from_definition_error)?;
    let grace_millis = i64::try_from(grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let rotated = state
        .meta
        .rotate_tenant_keys(&admin.project_id, &tenant_id, grace_millis, &admin.actor)
        .await
        .map_err(from_meta_error)?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(
        project_id = %admin.project_id,
        tenant = %rotated.tenant.id,
        grace_seconds,
        "tenant keys rotated"
    );
    Ok(Json(created_keys_json(&rotated)))
}
