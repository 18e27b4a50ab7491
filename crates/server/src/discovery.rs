//! Keen's resource listings, which people open by hand to find their way: `GET /` (the API versions, and
//! the console for a browser), `GET /3.0` (where the projects are), `GET /3.0/projects/{project_id}/queries`
//! (one URL per analysis) and `GET /3.0/projects/{project_id}/organization-usage` (what the project holds
//! and its keys did, as Keen's Explorer reads it before offering to cache a query).
//!
//! Design: Keen asks for a master key on `/` and `/3.0`; they name nothing but fixed paths, so Keyhole
//! answers them to anyone, and `/` sends a browser (one that accepts HTML) to the console. Keyhole has no
//! plans, so no usage is `limited` and every `limit` is null. The usage is the calling project's own: Keen
//! showed a project's key its organization's, but a Keyhole organization's projects may be different
//! customers, and one project's master key must learn nothing of the others.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use keyhole_model::query::AnalysisType;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::{Authorized, MasterOnly, Queries};
use crate::console::CONSOLE_PATH;
use crate::errors::ApiError;

/// `GET /`: Keen's list of API versions (each naming the console too), or a redirect to the console for
/// a browser.
pub(crate) async fn api_root(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        return Redirect::to(CONSOLE_PATH).into_response();
    }
    Json(json!([{
        "is_public": true,
        "url": "/3.0",
        "version": "3.0",
        "console_url": CONSOLE_PATH,
    }]))
    .into_response()
}

/// `GET /3.0`.
pub(crate) async fn api_version() -> Json<Value> {
    Json(json!({"projects_resource_url": "/3.0/projects"}))
}

/// `GET /3.0/projects/{project_id}/queries`: `{"count_url": …, …}` for every analysis, and the saved
/// queries' URL.
pub(crate) async fn query_resources(auth: Authorized<Queries>) -> Json<Value> {
    let base = format!("/3.0/projects/{}/queries", auth.project_id);
    let mut resources = Map::new();
    for analysis in AnalysisType::ALL {
        let name = analysis.keen_name();
        resources.insert(format!("{name}_url"), json!(format!("{base}/{name}")));
    }
    resources.insert("saved_url".into(), json!(format!("{base}/saved")));
    Json(Value::Object(resources))
}

/// `GET /3.0/projects/{project_id}/organization-usage`: Keen's `{"cached_queries": {"limited", "limit",
/// "current_usage"}, …}` for cached queries, datasets and saved queries, plus what the project's keys did
/// this month (UTC). A project's master key sees its own project only, never the organization's others.
pub(crate) async fn organization_usage(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let month_start = chrono::Utc::now().format("%Y-%m-01").to_string();
    let usage = state
        .meta
        .project_usage(&auth.project_id, &month_start)
        .await?;
    let unlimited =
        |current: u64| json!({"limited": false, "limit": null, "current_usage": current});
    Ok(Json(json!({
        "cached_queries": unlimited(usage.cached_queries),
        "cached_datasets": unlimited(usage.datasets),
        "saved_queries": unlimited(usage.saved_queries),
        "this_month": {
            "since": month_start,
            "events_written": usage.since.events,
            "queries_run": usage.since.queries,
            "read_requests": usage.since.reads,
            "write_requests": usage.since.writes,
            "refused_requests": usage.since.refused,
        },
    })))
}
