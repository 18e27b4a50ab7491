//! `GET` and `POST /3.0/projects/{project_id}/queries/{analysis_type}`: the Keen query API. GET takes the
//! parameters in the query string as the Python SDK encodes them; POST takes a JSON body as keen-analysis
//! sends it (`analysis_type` in the body is ignored; the path names the analysis). Each query runs in the
//! scope resolved from the caller's key. An extraction with `email` is sent by mail (`email_extraction`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use keyhole_model::query::{AnalysisType, Query, now_millis, params_from_query_string};
use serde_json::{Map, Value};

use crate::AppState;
use crate::auth::{Authorized, Queries};
use crate::email_extraction;
use crate::errors::{ApiError, ErrorCode};

/// Largest query body accepted.
const MAX_QUERY_BODY_BYTES: usize = 1_000_000;

async fn run(
    auth: &Authorized<Queries>,
    state: &AppState,
    analysis: &str,
    params: Map<String, Value>,
) -> Result<Json<Value>, ApiError> {
    let analysis = AnalysisType::parse(analysis)?;
    let mut query = Query::parse(analysis, &params)?;
    let Some(asked) = query.email.take() else {
        return Ok(Json(auth.reader().run(&query, now_millis()).await?));
    };
    let delivery = email_extraction::Delivery::check(state, &asked)?;
    let answer = auth.reader().run(&query, now_millis()).await?;
    let collection = query.collection.clone().unwrap_or_default();
    Ok(Json(delivery.send(state, collection, answer).await?))
}

/// `GET /3.0/projects/{project_id}/queries/{analysis_type}?…`.
pub(crate) async fn run_query_get(
    auth: Authorized<Queries>,
    State(state): State<AppState>,
    Path((_, analysis)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = params_from_query_string(query.as_deref().unwrap_or_default())?;
    run(&auth, &state, &analysis, params).await
}

/// `POST /3.0/projects/{project_id}/queries/{analysis_type}` with a JSON body.
pub(crate) async fn run_query_post(
    auth: Authorized<Queries>,
    State(state): State<AppState>,
    Path((_, analysis)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = crate::http::read_body(body, MAX_QUERY_BODY_BYTES, || {
        ApiError::new(ErrorCode::InvalidParameter, "The query body is too large.")
    })
    .await?;
    let params = if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(params)) => params,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    "The query body must be a JSON object.",
                ));
            }
        }
    };
    run(&auth, &state, &analysis, params).await
}
