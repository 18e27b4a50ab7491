//! Keen's saved queries under `/3.0/projects/{project_id}/queries/saved`: list, get, create or replace
//! (`PUT`, `201`/`200`), delete (`204`) with the master key, and `GET …/{name}/result`, which answers the
//! saved query object plus its `result`: a saved query (`refresh_rate` 0) needs `saved_queries` and the key's
//! `options.saved_queries` lists; a cached one (`refresh_rate` > 0) needs `cached_queries` and
//! `options.cached_queries`, or `saved_queries` and its lists.
//!
//! Design: results are computed live at every read, in the reading key's scope — its forced filters, its
//! `options.saved_queries.filters` and look-back — so a saved query defined once serves every tenant its
//! own numbers, never another's. The key's `options.saved_queries.allowed/blocked` lists decide which names
//! it may run. A `refresh_rate` (Keen's cached queries) is stored and shown; results are not cached yet, so
//! a cached query answers as fresh as a saved one.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_meta::{SavedQuery, SavedQueryWrite};
use keyhole_model::Operation;
use keyhole_model::grant::StoredQueryKind;
use keyhole_model::query::now_millis;
use keyhole_model::saved_query::{SavedQueryDefinition, parse_saved_query};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Authorized, MasterOnly, SavedOrCachedQueries};
use crate::errors::{ApiError, ErrorCode};

fn saved_query_json(saved: &SavedQuery) -> Value {
    let mut object = serde_json::to_value(saved).unwrap_or_default();
    object["run_information"] = Value::Null;
    object
}

/// `GET /3.0/projects/{project_id}/queries/saved`.
pub async fn list_saved_queries(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let saved = state.meta.saved_queries(&auth.project_id).await?;
    Ok(Json(Value::Array(
        saved.iter().map(saved_query_json).collect(),
    )))
}

/// `GET /3.0/projects/{project_id}/queries/saved/{name}`.
pub async fn get_saved_query(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let saved = state
        .meta
        .saved_query(&auth.project_id, &name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(saved_query_json(&saved)))
}

/// `PUT /3.0/projects/{project_id}/queries/saved/{name}`: create (`201`) or replace (`200`).
pub async fn put_saved_query(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = crate::http::read_body(body, 1_000_000, || {
        ApiError::new(ErrorCode::InvalidParameter, "The saved query is too large.")
    })
    .await?;
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidParameter, message);
    let value = keyhole_model::strict_json::parse(&bytes).map_err(|error| {
        invalid(format!(
            "The saved query must be a JSON object without repeated keys: {error}."
        ))
    })?;
    let definition =
        SavedQueryDefinition::parse(&name, &value).map_err(|error| invalid(error.to_string()))?;
    let (write, saved) = state
        .meta
        .put_saved_query(&auth.project_id, &name, &definition)
        .await?;
    let status = match write {
        SavedQueryWrite::Created => StatusCode::CREATED,
        SavedQueryWrite::Replaced => StatusCode::OK,
        SavedQueryWrite::NameTaken => {
            return Err(invalid(format!(
                "A saved query named '{}' already exists.",
                definition.name
            )));
        }
    };
    let saved =
        saved.ok_or_else(|| ApiError::internal("a saved query vanished after its write"))?;
    Ok((status, Json(saved_query_json(&saved))).into_response())
}

/// `DELETE /3.0/projects/{project_id}/queries/saved/{name}`.
pub async fn delete_saved_query(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state
        .meta
        .delete_saved_query(&auth.project_id, &name)
        .await?
    {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /3.0/projects/{project_id}/queries/saved/{name}/result`.
pub async fn saved_query_result(
    auth: Authorized<SavedOrCachedQueries>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let saved = state
        .meta
        .saved_query(&auth.project_id, &name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let grant = &auth.grant;
    let may = |operation, kind| grant.permits(operation) && grant.allows_stored_query(kind, &name);
    let allowed = may(Operation::SavedQueries, StoredQueryKind::Saved)
        || (saved.refresh_rate > 0 && may(Operation::CachedQueries, StoredQueryKind::Cached));
    if !allowed {
        return Err(ApiError::new(
            ErrorCode::RequestForbidden,
            format!("This key may not run the saved query '{name}'."),
        ));
    }
    let query_json = saved.query.as_object().cloned().unwrap_or_default();
    // Stored definitions were validated when saved; one that no longer parses is an error, not a guess.
    let query = parse_saved_query(&query_json).map_err(|error| {
        ApiError::internal(format!("saved query {name} no longer parses: {error}"))
    })?;
    let now = now_millis();
    let scope = keyhole_query::Scope::for_saved_query(&auth.grant, now);
    let answer = state.queries.run(&query, &scope, now).await?;
    let result = match (answer.get("steps"), answer.get("actors")) {
        (Some(_), _) | (_, Some(_)) => {
            json!({"result": answer["result"], "steps": answer.get("steps"), "actors": answer.get("actors")})
        }
        _ => answer["result"].clone(),
    };
    let mut object = saved_query_json(&saved);
    object["result"] = result;
    Ok(Json(object))
}
