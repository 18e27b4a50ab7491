//! Organization and project endpoints. The organization key manages projects through Keen's
//! organization API (`/3.0/organizations/{org_id}/projects`, `{org_id}` also accepted as `default`); a
//! project's master key reads its project (`/3.0/projects[/{project_id}]`).
//!
//! Design: key secrets exist only in the answer to project creation (`api_keys`). Other answers show
//! `api_key_prefixes` — the first 8 characters — since only hashes are stored.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyhole_meta::{Project, ProjectKeys};
use serde_json::{Value, json};

use crate::AppState;
use crate::access::ScopedReader;
use crate::auth::{AnyProjectMaster, Authorized, MasterOnly, OrganizationAccess};
use crate::errors::{ApiError, ErrorCode};
use crate::inspect::encode_path_segment;

fn organization_project_json(project: &Project) -> Value {
    json!({
        "id": project.id,
        "name": project.name,
        "created_at": project.created_at,
        "api_key_prefixes": project.key_prefixes,
    })
}

async fn project_name_from_body(body: Body) -> Result<String, ApiError> {
    let bytes = crate::http::read_body(body, 64 * 1024, || {
        ApiError::new(ErrorCode::InvalidRequest, "The request body is too large.")
    })
    .await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "The request body must be a JSON object.",
        )
    })?;
    match value.get("name").and_then(Value::as_str).map(str::trim) {
        Some(name) if !name.is_empty() && name.chars().count() <= 256 => Ok(name.to_string()),
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "A project needs a non-empty \"name\" of at most 256 characters.",
        )),
    }
}

/// The answer to project creation: the only time key secrets are shown.
pub fn created_project_json(project: &Project, keys: &ProjectKeys) -> Value {
    let mut answer = organization_project_json(project);
    answer["api_keys"] = json!({"master": keys.master, "write": keys.write, "read": keys.read});
    answer
}

/// `POST /3.0/organizations/{org_id}/projects`.
pub(crate) async fn create_project(
    _: OrganizationAccess,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = project_name_from_body(body).await?;
    let (project, keys) = state.meta.create_project(&name).await?;
    tracing::info!(project_id = %project.id, "project created");
    Ok((
        StatusCode::CREATED,
        Json(created_project_json(&project, &keys)),
    ))
}

/// `GET /3.0/organizations/{org_id}/projects`.
pub(crate) async fn list_organization_projects(
    _: OrganizationAccess,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let projects = state.meta.projects().await?;
    Ok(Json(Value::Array(
        projects.iter().map(organization_project_json).collect(),
    )))
}

/// `GET /3.0/organizations/{org_id}/projects/{project_id}`.
pub(crate) async fn get_organization_project(
    _: OrganizationAccess,
    State(state): State<AppState>,
    Path((_, project_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = state
        .meta
        .project(&project_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(organization_project_json(&project)))
}

/// `POST`/`PUT /3.0/organizations/{org_id}/projects/{project_id}`: renames the project.
pub(crate) async fn update_organization_project(
    _: OrganizationAccess,
    State(state): State<AppState>,
    Path((_, project_id)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let name = project_name_from_body(body).await?;
    let project = state
        .meta
        .rename_project(&project_id, &name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(organization_project_json(&project)))
}

/// The project as its master key sees it (`reader` is that key's).
fn project_json(reader: &ScopedReader, project: &Project) -> Value {
    let base = format!("/3.0/projects/{}", project.id);
    let events: Vec<Value> = reader
        .collection_names()
        .iter()
        .map(|name| json!({"name": name, "url": format!("{base}/events/{}", encode_path_segment(name))}))
        .collect();
    json!({
        "id": project.id,
        "name": project.name,
        "url": base,
        "events_url": format!("{base}/events"),
        "queries_url": format!("{base}/queries"),
        "events": events,
        "api_key_prefixes": project.key_prefixes,
    })
}

/// `GET /3.0/projects/{project_id}` with the project's master key.
pub(crate) async fn get_project(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let project = state
        .meta
        .project(&auth.project_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(project_json(&auth.reader(), &project)))
}

/// `GET /3.0/projects`: the projects the master key can see — its own.
pub(crate) async fn list_projects(
    access: AnyProjectMaster,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let project = state
        .meta
        .project(access.grant.project_id())
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(vec![project_json(
        &access.reader,
        &project,
    )])))
}
