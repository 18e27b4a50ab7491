//! Keen's saved queries under `/3.0/projects/{project_id}/queries/saved`: list, get, create or replace
//! (`PUT`, `201`/`200`), delete (`204`) with the master key, and `GET …/{name}/result`, which answers the
//! saved query object plus its `result`: a saved query (`refresh_rate` 0) needs `saved_queries` and the key's
//! `options.saved_queries` lists; a cached one (`refresh_rate` > 0) needs `cached_queries` and
//! `options.cached_queries`, or `saved_queries` and its lists.
//!
//! Design: results are computed in the reading key's scope — its forced filters, its
//! `options.saved_queries.filters` and look-back — so a saved query defined once serves every tenant its
//! own numbers, never another's. A saved query (`refresh_rate` 0) is computed live at every read. A cached
//! one is stored per scope and served while younger than its refresh rate and the caller's `max_age`
//! (`cached_results`), with `run_information` saying when it ran and whether it came from the store.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
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
use crate::cached_results::ResultKey;
use crate::errors::{ApiError, ErrorCode};

fn saved_query_json(saved: &SavedQuery) -> Value {
    let mut object = serde_json::to_value(saved).unwrap_or_default();
    object["run_information"] = Value::Null;
    object
}

/// `GET /3.0/projects/{project_id}/queries/saved`.
pub(crate) async fn list_saved_queries(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let saved = state.meta.saved_queries(&auth.project_id).await?;
    Ok(Json(Value::Array(
        saved.iter().map(saved_query_json).collect(),
    )))
}

/// `GET /3.0/projects/{project_id}/queries/saved/{name}`.
pub(crate) async fn get_saved_query(
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
pub(crate) async fn put_saved_query(
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
pub(crate) async fn delete_saved_query(
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
    state.cached_results.forget(&auth.project_id, &name);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /3.0/projects/{project_id}/queries/saved/{name}/result`.
pub(crate) async fn saved_query_result(
    auth: Authorized<SavedOrCachedQueries>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    RawQuery(query_string): RawQuery,
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
    let mut object = saved_query_json(&saved);
    let reader = auth.reader().for_saved_queries();
    if saved.refresh_rate == 0 {
        object["result"] = result_of(&reader.run(&query, now).await?);
        return Ok(Json(object));
    }
    let key = ResultKey::new(
        &auth.project_id,
        &name,
        &saved.last_modified_date,
        &auth.grant,
    );
    let max_age = max_age_millis(query_string.as_deref())?;
    let (result, computed_at, from_cache) =
        if let Some(stored) = state.cached_results.fresh(&key, now, max_age) {
            (stored.result, stored.computed_at, true)
        } else {
            let result = result_of(&reader.run(&query, now).await?);
            state
                .cached_results
                .store(key, result.clone(), now, saved.refresh_rate, query, reader);
            (result, now, false)
        };
    object["result"] = result;
    object["run_information"] = json!({
        "last_run_date": keyhole_model::timestamp::format_timestamp(computed_at),
        "age_seconds": (now - computed_at) / 1000,
        "served_from_cache": from_cache,
    });
    Ok(Json(object))
}

/// The `result` a saved query's answer carries: for funnels `{result, steps, actors}`, as Keen's clients
/// expect; otherwise the analysis' own `result`.
pub(crate) fn result_of(answer: &Value) -> Value {
    match (answer.get("steps"), answer.get("actors")) {
        (Some(_), _) | (_, Some(_)) => {
            json!({"result": answer["result"], "steps": answer.get("steps"), "actors": answer.get("actors")})
        }
        _ => answer["result"].clone(),
    }
}

/// `max_age` (seconds, a whole number from 0 to 31 days) from the query string, as milliseconds. `0` asks
/// for a result computed now: never a stored one.
fn max_age_millis(query: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(value) = crate::auth::form_urlencoded_pairs(query.unwrap_or_default())
        .find(|(name, _)| name == "max_age")
        .map(|(_, value)| value)
    else {
        return Ok(None);
    };
    value
        .parse::<i64>()
        .ok()
        .filter(|seconds| *seconds >= 0 && *seconds <= 31 * 86_400)
        .map(|seconds| Some(seconds * 1000))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "max_age must be a whole number of seconds between 0 and 2678400.",
            )
        })
}
