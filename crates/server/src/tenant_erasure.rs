//! Offboarding a tenant: `DELETE /3.0/projects/{project_id}/tenants/{tenant_id}` revokes its keys (their
//! embed tokens with them) and removes the tenant, keeping its events (`204`);
//! `?erase=true` also deletes every event whose tenancy property equals the tenant's id, in every
//! collection, and answers the erase receipt `{"receipt_id", "tenant", "property", "collections":
//! {name: events_deleted}, "events_deleted", "keys_revoked", "completed_at"}`, kept in the audit log
//! (`erase`) and readable at `GET …/tenants/erasures/{receipt_id}`.
//!
//! Design: the events are deleted by the same machinery as `DELETE …/events/{collection}` with a filter
//! (`deletes::delete_matching`): found through the project's master scope, removed from memory and from
//! every Parquet file that held them (rewritten and swapped before the answer; the replaced files are
//! removed after the storage's delete grace, so queries already reading them finish), then the log is
//! flushed and retired up to now, so no write-ahead log segment keeps an erased event. The keys are revoked
//! first, so the tenant's own keys write nothing more while the erase runs. An erase of a tenant that was
//! already deleted (or whose first erase was interrupted) runs again by its id: erasing is idempotent,
//! and each run has its own receipt.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_model::query::{AnalysisType, Query};
use keyhole_model::tenant::{Tenancy, tenant_id_problem};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::access::administrator::ProjectAdministrator;
use crate::auth::form_urlencoded_pairs;
use crate::errors::{ApiError, ErrorCode};

/// Whether the delete erases: `erase=true` or `erase=false` (absent: false); any other parameter refused.
fn parse_erase(query: Option<&str>) -> Result<bool, ApiError> {
    let mut erase = false;
    for (parameter, value) in form_urlencoded_pairs(query.unwrap_or_default()) {
        match (parameter.as_str(), value.as_str()) {
            ("erase", "true") => erase = true,
            ("erase", "false") | ("api_key", _) => {}
            ("erase", _) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    "erase is true or false; nothing was deleted.",
                ));
            }
            (other, _) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "A tenant delete does not take the parameter '{}'; nothing was deleted.",
                        other.chars().take(100).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(erase)
}

/// Deletes every event of the project whose tenancy property equals `tenant_id`; events deleted by
/// collection (every collection of the project, `0` where it had none).
async fn erase_tenant_events(
    admin: &ProjectAdministrator,
    tenancy: &Tenancy,
    tenant_id: &str,
) -> Result<Map<String, Value>, ApiError> {
    let deleter = admin.deleter();
    let mut deleted = Map::new();
    for collection in deleter.reader().collection_names() {
        let mut params = Map::new();
        params.insert("event_collection".into(), json!(collection));
        params.insert(
            "filters".into(),
            json!([{"property_name": tenancy.property, "operator": "eq", "property_value": tenant_id}]),
        );
        let selection = Query::parse(AnalysisType::Extraction, &params)?;
        let count = crate::deletes::delete_matching(&deleter, &collection, &selection).await?;
        deleted.insert(collection, json!(count));
    }
    deleter.flush_retiring_log().await?;
    Ok(deleted)
}

/// `DELETE /3.0/projects/{project_id}/tenants/{tenant_id}[?erase=true]`.
pub(crate) async fn delete_tenant(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    Path((_, tenant_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let erase = parse_erase(query.as_deref())?;
    if !erase {
        let revoked = state
            .meta
            .delete_tenant(&admin.project_id, &tenant_id, &admin.actor)
            .await?
            .ok_or_else(ApiError::not_found)?;
        tracing::info!(project_id = %admin.project_id, tenant = %tenant_id, keys_revoked = revoked.len(), "tenant deleted");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if let Some(problem) = tenant_id_problem(&tenant_id) {
        return Err(ApiError::new(ErrorCode::InvalidTenantDefinition, problem));
    }
    let tenancy = state.meta.tenancy(&admin.project_id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Conflict,
            "The project has no tenancy property, so no event belongs to a tenant; nothing was deleted.",
        )
    })?;
    let revoked = state
        .meta
        .delete_tenant(&admin.project_id, &tenant_id, &admin.actor)
        .await?
        .unwrap_or_default();
    let collections = erase_tenant_events(&admin, &tenancy, &tenant_id).await?;
    let events_deleted: u64 = collections.values().filter_map(Value::as_u64).sum();
    let receipt = json!({
        "receipt_id": state.meta.new_erasure_receipt_id(),
        "tenant": tenant_id,
        "property": tenancy.property,
        "collections": collections,
        "events_deleted": events_deleted,
        "keys_revoked": revoked.iter().map(|key| key.key_prefix.clone()).collect::<Vec<_>>(),
        "completed_at": keyhole_model::timestamp::format_timestamp(keyhole_model::query::now_millis()),
    });
    state
        .meta
        .record_tenant_erasure(&admin.project_id, &receipt, &admin.actor)
        .await?;
    tracing::info!(
        project_id = %admin.project_id,
        tenant = %tenant_id,
        events_deleted,
        receipt_id = %receipt["receipt_id"].as_str().unwrap_or_default(),
        "tenant erased"
    );
    Ok(Json(receipt).into_response())
}

/// `GET /3.0/projects/{project_id}/tenants/erasures/{receipt_id}`.
pub(crate) async fn get_erasure(
    admin: ProjectAdministrator,
    State(state): State<AppState>,
    Path((_, receipt_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let receipt = state
        .meta
        .tenant_erasure(&admin.project_id, &receipt_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(receipt))
}
