//! Keen's cached datasets under `/3.0/projects/{project_id}/datasets`: create or replace (`PUT`, master
//! key, `201`/`200`), delete (`204`), list (paged by `limit` and `after_name`) and retrieve definitions,
//! and `GET …/{name}/results?index_by=…&timeframe=…`. Reading needs the `datasets` operation and, for an
//! access key, `options.datasets`: `operations` (`list`, `retrieve`, `read`), `allowed`/`blocked` names
//! and per-dataset `index_by` restrictions — a key pinned to `{"vendor_id": "acme"}` reads only acme's
//! index value, whatever it asks. A key's forced `eq` filters on index properties pin it the same way, so a
//! tenant key reads its own index value with no `options.datasets` at all (`admitted_index`).
//!
//! Design: results are computed in the reading key's scope (`dataset_results`), so its forced filters
//! and look-back apply on top of the index value. Keen lists 10 definitions a page by default (at most
//! 100); the same here. Definitions report `milliseconds_behind: 0` and the current time as
//! `latest_subtimeframe_available`, because results are never behind ingestion.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_meta::{Dataset, MAX_DATASET_PAGE};
use keyhole_model::dataset::{DatasetDefinition, IndexValue, parse_index_values};
use keyhole_model::key_options::DatasetOperation;
use keyhole_model::query::{Filter, Operator, Timeframe, now_millis};
use keyhole_model::timestamp::format_timestamp;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Authorized, Datasets, MasterOnly, form_urlencoded_pairs};
use crate::dataset_results::ResultsRequest;
use crate::errors::{ApiError, ErrorCode};

/// Definitions a list page holds unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 10;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message)
}

fn forbidden(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RequestForbidden,
        format!("This key may not do that with the dataset '{name}'."),
    )
}

fn dataset_json(state: &AppState, project_id: &str, dataset: &Dataset) -> Value {
    let definition = &dataset.definition;
    let mut query = Value::Object(definition.query_json.clone());
    query["project_id"] = json!(project_id);
    json!({
        "project_id": project_id,
        "organization_id": &*state.organization_id,
        "dataset_name": definition.name,
        "display_name": definition.display_name,
        "query": query,
        "index_by": definition.index_by,
        "last_scheduled_date": dataset.last_modified_date,
        "latest_subtimeframe_available": format_timestamp(now_millis()),
        "milliseconds_behind": 0,
    })
}

/// `PUT /3.0/projects/{project_id}/datasets/{name}`.
pub(crate) async fn put_dataset(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes =
        crate::http::read_body(body, 1_000_000, || invalid("The dataset is too large.")).await?;
    let value = keyhole_model::strict_json::parse(&bytes).map_err(|error| {
        invalid(format!(
            "The dataset must be a JSON object without repeated keys: {error}."
        ))
    })?;
    let definition =
        DatasetDefinition::parse(&name, &value).map_err(|error| invalid(error.to_string()))?;
    let (created, dataset) = state
        .meta
        .put_dataset(&auth.project_id, &definition)
        .await?;
    state.dataset_results.forget(&auth.project_id, &name);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(dataset_json(&state, &auth.project_id, &dataset)),
    )
        .into_response())
}

/// `DELETE /3.0/projects/{project_id}/datasets/{name}`.
pub(crate) async fn delete_dataset(
    auth: Authorized<MasterOnly>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state.meta.delete_dataset(&auth.project_id, &name).await? {
        return Err(ApiError::not_found());
    }
    state.dataset_results.forget(&auth.project_id, &name);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /3.0/projects/{project_id}/datasets?limit=&after_name=`.
pub(crate) async fn list_datasets(
    auth: Authorized<Datasets>,
    State(state): State<AppState>,
    RawQuery(query_string): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if !auth.grant.allows_dataset(DatasetOperation::List, None) {
        return Err(ApiError::new(
            ErrorCode::RequestForbidden,
            "This key may not list datasets.",
        ));
    }
    let mut limit = DEFAULT_PAGE;
    let mut after_name = String::new();
    for (parameter, value) in form_urlencoded_pairs(query_string.as_deref().unwrap_or_default()) {
        match parameter.as_str() {
            "limit" => {
                limit = crate::http::parse_page_limit(&value, MAX_DATASET_PAGE).map_err(invalid)?;
            }
            "after_name" => after_name = value,
            "api_key" => {}
            other => return Err(unknown_parameter(other)),
        }
    }
    // An access key limited to named datasets sees those only; pages are taken until full.
    let mut listed = Vec::new();
    let mut cursor = after_name;
    let mut more = false;
    loop {
        let page = state
            .meta
            .datasets_page(&auth.project_id, &cursor, MAX_DATASET_PAGE)
            .await?;
        let exhausted = page.len() < MAX_DATASET_PAGE;
        for dataset in page {
            cursor.clone_from(&dataset.definition.name);
            if !auth
                .grant
                .allows_dataset(DatasetOperation::List, Some(&dataset.definition.name))
            {
                continue;
            }
            if listed.len() == limit {
                more = true;
                break;
            }
            listed.push(dataset);
        }
        if more || exhausted {
            break;
        }
    }
    let next_page_url = match (more, listed.last()) {
        (true, Some(last)) => json!(format!(
            "/3.0/projects/{}/datasets?limit={limit}&after_name={}",
            auth.project_id, last.definition.name
        )),
        _ => Value::Null,
    };
    Ok(Json(json!({
        "datasets": listed.iter().map(|dataset| dataset_json(&state, &auth.project_id, dataset)).collect::<Vec<_>>(),
        "next_page_url": next_page_url,
    })))
}

fn unknown_parameter(name: &str) -> ApiError {
    invalid(format!(
        "'{}' is not a parameter of this request.",
        name.chars().take(100).collect::<String>()
    ))
}

/// `GET /3.0/projects/{project_id}/datasets/{name}`.
pub(crate) async fn get_dataset(
    auth: Authorized<Datasets>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !auth
        .grant
        .allows_dataset(DatasetOperation::Retrieve, Some(&name))
    {
        return Err(forbidden(&name));
    }
    let dataset = state
        .meta
        .dataset(&auth.project_id, &name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(dataset_json(&state, &auth.project_id, &dataset)))
}

/// `GET /3.0/projects/{project_id}/datasets/{name}/results?index_by=…&timeframe=…`.
pub(crate) async fn dataset_results(
    auth: Authorized<Datasets>,
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    RawQuery(query_string): RawQuery,
) -> Result<Response, ApiError> {
    if !auth
        .grant
        .allows_dataset(DatasetOperation::Read, Some(&name))
    {
        return Err(forbidden(&name));
    }
    let mut index_by = None;
    let mut timeframe = None;
    for (parameter, value) in form_urlencoded_pairs(query_string.as_deref().unwrap_or_default()) {
        match parameter.as_str() {
            "index_by" => index_by = Some(value),
            "timeframe" => timeframe = Some(value),
            "api_key" | "dataset_name" => {}
            other => return Err(unknown_parameter(other)),
        }
    }
    let dataset = state
        .meta
        .dataset(&auth.project_id, &name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let definition = &dataset.definition;
    let index_by = index_by.ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingParameter,
            "index_by is required: the index value whose results to read.",
        )
    })?;
    let requested = parse_index_values(&definition.index_by, &index_by)
        .map_err(|error| invalid(error.to_string()))?;
    let index = admitted_index(&auth.grant, &name, requested).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RequestForbidden,
            format!("This key may not read that index value of the dataset '{name}'."),
        )
    })?;
    // Stored definitions were validated when saved; one that no longer parses is an error, not a guess.
    let query = definition
        .query()
        .map_err(|error| ApiError::internal(format!("dataset {name} no longer parses: {error}")))?;
    let timeframe = match timeframe {
        Some(text) => parse_timeframe_parameter(&text)?,
        None => query
            .timeframe
            .clone()
            .ok_or_else(|| ApiError::internal(format!("dataset {name} has no timeframe")))?,
    };
    let (result, stored_buckets) = state
        .dataset_results
        .results(
            ResultsRequest {
                reader: &auth.reader(),
                dataset: &name,
                version: &dataset.last_modified_date,
                query,
                index,
                timeframe,
            },
            now_millis(),
        )
        .await?;
    // How many buckets came from stored results: for operators and tests, not part of Keen's API.
    Ok((
        [("keyhole-stored-buckets", stored_buckets.to_string())],
        Json(json!({ "result": result })),
    )
        .into_response())
}

/// The requested index values as `grant` may read them, or `None` when it may not. Two things pin the
/// values a key reads: its `options.datasets.allowed[name].index_by`, and its forced filters that test an
/// index property with `eq` (a tenant key filtered to `vendor_id eq acme` reads `acme` only — every other
/// value's results would be empty in its scope anyway, so they are refused rather than shown as zeros).
/// An ambiguous bare value (`2`: the text or the number) is narrowed to the readings the pins list.
fn admitted_index(
    grant: &keyhole_model::Grant,
    name: &str,
    requested: Vec<IndexValue>,
) -> Option<Vec<IndexValue>> {
    let mut index = requested;
    // A key's own restriction must name index properties of the dataset.
    if let Some(restriction) = grant.dataset_index_restriction(name) {
        for (property, allowed) in restriction {
            let position = index.iter().position(|value| &value.property == property)?;
            index[position] = index[position].narrowed_to(allowed)?;
        }
    }
    // A forced filter on a property the dataset is not indexed by says nothing about its index values.
    for filter in grant.forced_query_filters() {
        let Filter::Condition {
            property,
            operator: Operator::Eq,
            value,
        } = filter
        else {
            continue;
        };
        if let Some(position) = index
            .iter()
            .position(|indexed| &indexed.property == property)
        {
            index[position] = index[position].narrowed_to(value)?;
        }
    }
    Some(index)
}

/// A `timeframe` query parameter: relative (`this_7_days`, raw or JSON-quoted) or a JSON object.
fn parse_timeframe_parameter(text: &str) -> Result<Timeframe, ApiError> {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value @ (Value::String(_) | Value::Object(_))) => value,
        _ => Value::String(text.to_string()),
    };
    Ok(Timeframe::parse(&value)?)
}
