//! Dashboard definitions (`keyhole_model::dashboard`, a Keyhole extension) under
//! `/3.0/projects/{project_id}/dashboards`: list, get, create or replace (`PUT`, `201`/`200`) and delete
//! (`204`) with the master key, and `GET …/dashboards/{name}/view`, which answers the definition to any key
//! or embed token that may run queries or saved queries — what the embed page and the
//! `<keyhole-dashboard>` component fetch before running each tile with the same credential (`embed`).
//!
//! Design: the view is only the definition; it holds no data. Every number a viewer sees comes from the
//! tile's own query, run by the viewer's credential through the ordinary query routes, so a tile shows only
//! what that credential may read, and a tile it may not run fails on its own.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_meta::Dashboard;
use keyhole_model::dashboard::{DashboardDefinition, is_dashboard_name};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Authorized, MasterOnly, ViewsDashboards};
use crate::errors::{ApiError, ErrorCode};

/// The largest definition read.
const MAX_DASHBOARD_BODY_BYTES: usize = 64 * 1024;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidDashboardDefinition, message)
}

fn dashboard_json(dashboard: &Dashboard) -> Value {
    let mut answer = dashboard.definition.clone();
    answer["name"] = json!(dashboard.name);
    answer["created_at"] = json!(dashboard.created_at);
    answer["modified_at"] = json!(dashboard.modified_at);
    answer
}

/// `GET /3.0/projects/{project_id}/dashboards`.
pub(crate) async fn list_dashboards(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let dashboards = state.meta.dashboards(&auth.project_id).await?;
    Ok(Json(json!({
        "dashboards": dashboards.iter().map(dashboard_json).collect::<Vec<_>>(),
    })))
}

/// The project's dashboard `name`, or `404`.
async fn stored_dashboard(
    state: &AppState,
    project_id: &str,
    name: &str,
) -> Result<Dashboard, ApiError> {
    state
        .meta
        .dashboard(project_id, name)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `GET /3.0/projects/{project_id}/dashboards/{name}`.
pub(crate) async fn get_dashboard(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let dashboard = stored_dashboard(&state, &auth.project_id, &name).await?;
    Ok(Json(dashboard_json(&dashboard)))
}

/// `PUT /3.0/projects/{project_id}/dashboards/{name}`: create (`201`) or replace (`200`).
pub(crate) async fn put_dashboard(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_dashboard_name(&name) {
        return Err(invalid(
            "A dashboard's name is 1 to 256 characters of A-Z, a-z, 0-9, _ and -.",
        ));
    }
    let bytes = crate::http::read_body(body, MAX_DASHBOARD_BODY_BYTES, || {
        invalid("The dashboard definition is too large.")
    })
    .await?;
    let value = keyhole_model::strict_json::parse(&bytes).map_err(|error| {
        invalid(format!(
            "The dashboard must be a JSON object without repeated keys: {error}."
        ))
    })?;
    let definition = DashboardDefinition::parse(&value).map_err(|error| invalid(error.0))?;
    for saved_query in &definition.saved_queries {
        if state
            .meta
            .saved_query(&auth.project_id, saved_query)
            .await?
            .is_none()
        {
            return Err(invalid(format!(
                "A tile names the saved query {saved_query:?}, which the project does not have."
            )));
        }
    }
    let (created, dashboard) = state
        .meta
        .put_dashboard(&auth.project_id, &name, &definition.json)
        .await?;
    tracing::info!(project_id = %auth.project_id, dashboard = %name, created, "dashboard stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(dashboard_json(&dashboard))).into_response())
}

/// `DELETE /3.0/projects/{project_id}/dashboards/{name}`.
pub(crate) async fn delete_dashboard(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state.meta.delete_dashboard(&auth.project_id, &name).await? {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /3.0/projects/{project_id}/dashboards/{name}/view`: the definition, for any credential that may
/// run queries or saved or cached queries.
pub(crate) async fn view_dashboard(
    auth: Authorized<ViewsDashboards>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let dashboard = stored_dashboard(&state, &auth.project_id, &name).await?;
    let definition = &dashboard.definition;
    Ok(Json(json!({
        "name": dashboard.name,
        "title": definition["title"],
        "tiles": definition["tiles"],
        "controls": definition["controls"],
        "theme": definition["theme"],
    })))
}
