//! Who is calling: the key is read from the raw `Authorization` header (Keen's form, no `Bearer`) or
//! else the `api_key` query parameter, resolved by its hash, and checked against what the route needs.
//!
//! The need is part of the handler's type: a handler taking `Authorized<Writes>` cannot run unless the
//! key may write to the project in the path, as Meilisearch's `GuardedData<ActionPolicy<..>>` does. The
//! route table (`routes.rs`) names the same requirement for each route, and a test walks it.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use keyhole_meta::{KeyKind, ResolvedKey};
use keyhole_model::Operation;

use crate::AppState;
use crate::errors::{ApiError, ErrorCode};

/// What a route requires of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// No key.
    Public,
    /// The organization key.
    Organization,
    /// The project's master key.
    Master,
    /// A project key permitting this operation (the master key permits all).
    Operation(Operation),
    /// `GET /events/{collection}`: with `?data=` it records an event (writes), without it reads the
    /// collection's schema (schema).
    WritesWithDataElseSchema,
}

/// A requirement fixed at compile time, used as `Authorized<P>`'s type parameter.
pub trait Policy: Send + Sync + 'static {
    const REQUIREMENT: Requirement;
}

macro_rules! policies {
    ($($name:ident => $requirement:expr,)*) => {
        $(
            pub struct $name;
            impl Policy for $name {
                const REQUIREMENT: Requirement = $requirement;
            }
        )*
    };
}

policies! {
    MasterOnly => Requirement::Master,
    Writes => Requirement::Operation(Operation::Writes),
    Schema => Requirement::Operation(Operation::Schema),
    Queries => Requirement::Operation(Operation::Queries),
}

/// The scope a key reads in: its project, and the filters its options force on every read. The metadata
/// store refuses keys whose stored filters do not parse when it loads them; should one reach here anyway,
/// it is refused (and logged), never given a wider scope.
pub fn scope_of_key(project_id: &str, key: &ResolvedKey) -> Result<keyhole_query::Scope, ApiError> {
    let filters = keyhole_model::access::forced_query_filters(&key.options).map_err(|error| {
        tracing::error!(project_id, %error, "stored access key options do not parse; key refused");
        invalid_api_key()
    })?;
    Ok(keyhole_query::Scope::new(project_id, filters))
}

/// A caller allowed by policy `P` on the project named in the path.
pub struct Authorized<P: Policy> {
    pub project_id: String,
    pub key: ResolvedKey,
    _policy: PhantomData<P>,
}

/// The key a request carries: the `Authorization` header, else `api_key` in the query string.
pub fn presented_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header_key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|header| header.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    if let Some(key) = header_key {
        return Some(key.to_string());
    }
    form_urlencoded_pairs(query?)
        .find(|(name, _)| name == "api_key")
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

pub use keyhole_model::query_string::pairs as form_urlencoded_pairs;

/// The answer to any key that does not open the project: the same whatever the reason.
pub fn invalid_api_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidApiKey,
        "The API key is missing, invalid, or revoked, or not valid for this project.",
    )
}

/// Checks a resolved key against a requirement on a project.
pub fn check_project_access(
    key: Option<ResolvedKey>,
    project_id: &str,
    requirement: Requirement,
) -> Result<ResolvedKey, ApiError> {
    // One answer for a missing, unknown, revoked or other project's key: a different message for a key
    // that exists elsewhere would tell a caller which strings are live keys.
    let key = key
        .filter(|key| key.is_active && key.project_id == project_id)
        .ok_or_else(invalid_api_key)?;
    let allowed = match requirement {
        Requirement::Public => true,
        Requirement::Organization => false,
        Requirement::Master => key.kind == KeyKind::Master,
        Requirement::Operation(operation) => key.permitted.contains(&operation),
        // A route-table annotation: its handler checks `Writes` or `Schema` itself. Reaching here is a
        // programming error; refuse rather than guess.
        Requirement::WritesWithDataElseSchema => {
            return Err(ApiError::internal(
                "a per-request requirement was checked without resolving it",
            ));
        }
    };
    if allowed {
        return Ok(key);
    }
    if requirement == Requirement::Master {
        return Err(ApiError::new(
            ErrorCode::AdminOnlyEndpoint,
            "This endpoint requires the project's master key.",
        ));
    }
    Err(ApiError::new(
        ErrorCode::RequestForbidden,
        "You're not allowed to run this request. Check your API key's permissions.",
    ))
}

/// Resolves the request's key and checks it; used by [`Authorized`] and by handlers whose requirement
/// depends on the request.
pub async fn authorize(
    headers: &HeaderMap,
    query: Option<&str>,
    state: &AppState,
    project_id: &str,
    requirement: Requirement,
) -> Result<ResolvedKey, ApiError> {
    let resolved = match presented_key(headers, query) {
        Some(secret) => state.meta.resolve_key(&secret).await?,
        None => None,
    };
    check_project_access(resolved, project_id, requirement)
}

/// The value of a path parameter of the matched route.
pub async fn path_parameter(parts: &mut Parts, name: &str) -> Result<Option<String>, ApiError> {
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::not_found())?;
    Ok(params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.to_string()))
}

impl<P: Policy> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let project_id = path_parameter(parts, "project_id").await?.ok_or_else(|| {
            ApiError::internal("a project policy on a route without {project_id}")
        })?;
        let key = authorize(
            &parts.headers,
            parts.uri.query(),
            state,
            &project_id,
            P::REQUIREMENT,
        )
        .await?;
        Ok(Authorized {
            project_id,
            key,
            _policy: PhantomData,
        })
    }
}

/// A caller holding the organization key, on a route whose `{org_id}` names this organization.
pub struct OrganizationAccess;

impl FromRequestParts<AppState> for OrganizationAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::new(
                ErrorCode::InvalidApiKey,
                "The organization key is missing or invalid.",
            )
        };
        let secret = presented_key(&parts.headers, parts.uri.query()).ok_or_else(invalid)?;
        if !state.meta.is_organization_key(&secret).await? {
            return Err(invalid());
        }
        match path_parameter(parts, "org_id").await? {
            Some(id) if id == "default" || *id == *state.organization_id => Ok(OrganizationAccess),
            _ => Err(ApiError::not_found()),
        }
    }
}
