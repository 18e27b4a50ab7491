//! Who is calling: the key or embed token is read from the raw `Authorization` header (Keen's form, no
//! `Bearer`) or else the `api_key` query parameter, resolved by the metadata store into a typed `Grant`,
//! and checked against what the route needs — project, activity, expiry, operation, then the key's rate
//! limits and quotas. Every refusal goes to the project's audit log with its reason.
//!
//! The need is part of the handler's type: a handler taking `Authorized<Writes>` cannot run unless the
//! key may write to the project in the path, as Meilisearch's `GuardedData<ActionPolicy<..>>` does. The
//! route table (`routes.rs`) names the same requirement for each route, and a test walks it. Routes whose
//! requirement depends on the request (`GET /events/{c}`: pixel write or schema; `GET /3.0/projects`: any
//! project's master key) have extractors of their own; no handler authorizes by hand.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use keyhole_meta::{Refusal, Resolution};
use keyhole_model::origins::OriginRefusal;
use keyhole_model::{Grant, KeyKind, Operation};

use super::{EventDeleter, EventEngines, EventWriter, ReadPurpose, ScopedReader};
use crate::AppState;
use crate::errors::{ApiError, ErrorCode};
use crate::limits::{Refused, RequestClass};

/// What a route requires of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// No key.
    Public,
    /// The organization key.
    Organization,
    /// The project's master key.
    Master,
    /// The project's master key or the organization key (`access::administrator`).
    MasterOrOrganization,
    /// A project key permitting this operation (the master key permits all).
    Operation(Operation),
    /// A project key permitting any of these operations (the handler narrows it by what it reads).
    AnyOperation(&'static [Operation]),
    /// Any key or token of the project (`GET /keys/self`).
    AnyKey,
    /// `GET /events/{collection}`: with `?data=` it records an event (writes), without it reads the
    /// collection's schema (schema).
    WritesWithDataElseSchema,
}

/// A requirement fixed at compile time, used as `Authorized<P>`'s type parameter.
pub trait Policy: Send + Sync + 'static {
    /// What a route under this policy requires of its caller.
    const REQUIREMENT: Requirement;
}

macro_rules! policies {
    ($($name:ident => $requirement:expr,)*) => {
        $(
            #[doc = concat!("The policy `", stringify!($name), "`: ", stringify!($requirement), ".")]
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
    SavedOrCachedQueries => Requirement::AnyOperation(&[Operation::SavedQueries, Operation::CachedQueries]),
    ViewsDashboards => Requirement::AnyOperation(&[Operation::Queries, Operation::SavedQueries, Operation::CachedQueries]),
    Datasets => Requirement::Operation(Operation::Datasets),
    Deletes => Requirement::Operation(Operation::Deletes),
    AnyKeyOfProject => Requirement::AnyKey,
}

/// Policies whose routes read events: [`Authorized::reader`].
pub(crate) trait ReadsEvents: Policy {}
/// Policies whose routes delete events: [`Authorized::deleter`].
pub(crate) trait DeletesEvents: Policy {}

impl ReadsEvents for Schema {}
impl ReadsEvents for Queries {}
impl ReadsEvents for SavedOrCachedQueries {}
impl ReadsEvents for Datasets {}
impl ReadsEvents for Deletes {}
impl ReadsEvents for MasterOnly {}
impl DeletesEvents for Deletes {}
impl DeletesEvents for MasterOnly {}

/// A caller allowed by policy `P` on the project named in the path.
pub(crate) struct Authorized<P: Policy> {
    pub project_id: String,
    pub grant: Arc<Grant>,
    engines: EventEngines,
    _policy: PhantomData<P>,
}

impl<P: ReadsEvents> Authorized<P> {
    /// The caller's reads of the project's events, in the scope of its grant.
    pub(crate) fn reader(&self) -> ScopedReader {
        ScopedReader::new(self.grant.clone(), ReadPurpose::Queries, &self.engines)
    }
}

impl<P: DeletesEvents> Authorized<P> {
    /// The caller's deletes in the project, selecting in the scope of its grant.
    pub(crate) fn deleter(&self) -> EventDeleter {
        EventDeleter::new(self.grant.clone(), &self.engines)
    }
}

impl Authorized<Writes> {
    /// The caller's writes into the project.
    pub(crate) fn writer(&self) -> EventWriter {
        EventWriter::new(self.grant.clone(), &self.engines)
    }
}

/// The key a request carries: the `Authorization` header, else `api_key` in the query string.
pub(crate) fn presented_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
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
pub(crate) fn invalid_api_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidApiKey,
        "The API key is missing, invalid, or revoked, or not valid for this project.",
    )
}

/// The web origin a request comes from: its `Origin` header, else the origin of its `Referer` (`<img>`
/// tags, no-cors fetches and links send no `Origin`), else `None`. An opaque origin reads as `null`.
pub(crate) fn request_origin(headers: &HeaderMap) -> Option<String> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    if let Some(origin) = header(axum::http::header::ORIGIN) {
        return Some(origin.to_string());
    }
    let referer = header(axum::http::header::REFERER)?;
    Some(match url::Url::parse(referer) {
        Ok(page) => page.origin().ascii_serialization(),
        Err(_) => "null".to_string(),
    })
}

/// Whether the request comes from one of Keyhole's own pages: its origin (from `Origin` or `Referer`) has
/// the request's own `Host`. Keyhole's pages (the console, the embed page) run only its own scripts (their
/// policy allows no other), so such a request is the embed page's query: an origin-bound key accepts it,
/// since the key's origins already decided who may frame that page (`embed`).
fn from_own_page(headers: &HeaderMap, origin: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return false;
    };
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
    else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// The answer to a browser request from an origin the key is not bound to.
pub fn origin_not_allowed(origin: Option<&str>) -> ApiError {
    let origin: String = origin.unwrap_or_default().chars().take(200).collect();
    ApiError::new(
        ErrorCode::OriginNotAllowed,
        format!(
            "This API key may not be used from the origin '{origin}'; the key's options.origins lists where it may."
        ),
    )
}

/// The answer to a request of an origin-bound key that names no origin.
fn origin_required() -> ApiError {
    ApiError::new(
        ErrorCode::OriginRequired,
        "This API key is bound to web origins (options.origins), and this request names none: it has neither an Origin nor a Referer header. Send it from a page of an allowed origin, with a referrer policy that sends at least the origin.",
    )
}

/// The answer to a key or embed token of a suspended tenant: its holder learns why, since unsuspending the
/// tenant restores the same credential.
fn tenant_suspended() -> ApiError {
    ApiError::new(
        ErrorCode::TenantSuspended,
        "This API key or embed token belongs to a suspended tenant.",
    )
}

fn expired_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidApiKey,
        "The API key or embed token has expired.",
    )
}

/// The request line as the audit log records it (key secrets in paths cut to their prefix).
fn request_line(parts: &Parts) -> String {
    format!(
        "{} {}",
        parts.method,
        crate::loggable_path(parts.uri.path())
    )
}

/// What a route needs of a grant that resolved: refused with the audit reason and the answer.
fn check_grant(
    grant: &Grant,
    project_id: &str,
    requirement: Requirement,
    now: keyhole_model::timestamp::EpochMillis,
    origin: Option<&str>,
    own_page: bool,
) -> Result<(), (Refusal, ApiError)> {
    // One answer for an unknown, revoked or other project's key: a different message for a key that
    // exists elsewhere would tell a caller which strings are live keys. Expiry is told apart, since the
    // holder of an expired key or token needs to know to fetch a new one.
    if grant.project_id() != project_id {
        return Err((Refusal::OtherProject, invalid_api_key()));
    }
    if !grant.is_active() {
        return Err((Refusal::RevokedKey, invalid_api_key()));
    }
    if !grant.is_usable_at(now) {
        let refusal = match grant.token_id() {
            Some(_) => Refusal::ExpiredToken,
            None => Refusal::ExpiredKey,
        };
        return Err((refusal, expired_key()));
    }
    match grant.check_origin(origin) {
        _ if own_page => {}
        Ok(()) => {}
        Err(OriginRefusal::Missing) => return Err((Refusal::OriginMissing, origin_required())),
        Err(OriginRefusal::NotListed) => {
            return Err((Refusal::OriginNotAllowed, origin_not_allowed(origin)));
        }
    }
    let allowed = match requirement {
        Requirement::Public => true,
        Requirement::Organization => false,
        Requirement::Master | Requirement::MasterOrOrganization => {
            grant.kind() == KeyKind::Master && grant.token_id().is_none()
        }
        Requirement::Operation(operation) => grant.permits(operation),
        Requirement::AnyOperation(operations) => operations.iter().any(|op| grant.permits(*op)),
        Requirement::AnyKey => true,
        // A route-table annotation: its extractor resolves it to `Writes` or `Schema`.
        Requirement::WritesWithDataElseSchema => false,
    };
    if allowed {
        return Ok(());
    }
    // Deletes are the master key's in Keen: its write and read keys hear so. (Access keys may be
    // granted `deletes`, a Keyhole extension; without it they are refused like any other operation.)
    let keen_master_only = requirement == Requirement::Operation(Operation::Deletes)
        && matches!(grant.kind(), KeyKind::Write | KeyKind::Read);
    if matches!(
        requirement,
        Requirement::Master | Requirement::MasterOrOrganization
    ) || keen_master_only
    {
        return Err((
            Refusal::MasterKeyRequired,
            ApiError::new(
                ErrorCode::AdminOnlyEndpoint,
                "This endpoint requires the project's master key.",
            ),
        ));
    }
    Err((
        Refusal::OperationNotPermitted,
        ApiError::new(
            ErrorCode::RequestForbidden,
            "You're not allowed to run this request. Check your API key's permissions.",
        ),
    ))
}

/// How a request counts against the key's limits: every read of events — a query, a saved or cached
/// query's result, a dataset's results, a delete — counts against `queries_per_day`; schema reads and key
/// introspection are plain reads.
fn request_class(requirement: Requirement) -> RequestClass {
    match requirement {
        Requirement::Operation(Operation::Writes) => RequestClass::Write,
        Requirement::Operation(Operation::Queries | Operation::Datasets | Operation::Deletes) => {
            RequestClass::Query
        }
        Requirement::AnyOperation(operations)
            if operations.iter().any(|operation| {
                matches!(
                    operation,
                    Operation::SavedQueries | Operation::CachedQueries
                )
            }) =>
        {
            RequestClass::Query
        }
        _ => RequestClass::Read,
    }
}

/// The answer to a request the key's limits refuse.
pub(crate) fn limit_error(refused: Refused) -> ApiError {
    match refused {
        Refused::RateLimited { retry_after_secs } => ApiError::new(
            ErrorCode::RateLimited,
            "This key has made too many requests; slow down and retry after the time in Retry-After.",
        )
        .with_retry_after(retry_after_secs),
        Refused::QuotaExceeded { retry_after_secs } => ApiError::new(
            ErrorCode::QuotaExceeded,
            "This key has used its daily quota; it renews at midnight UTC.",
        )
        .with_retry_after(retry_after_secs),
    }
}

/// Resolves the request's key or token and checks it against `requirement` on `project_id`, then
/// against the key's limits. Every refusal is written to the project's audit log with its reason. Used
/// by every extractor below; no handler authorizes by hand.
pub(crate) async fn authorize(
    parts: &Parts,
    state: &AppState,
    project_id: &str,
    requirement: Requirement,
) -> Result<Arc<Grant>, ApiError> {
    authorize_in(parts, state, Some(project_id), requirement).await
}

/// [`authorize`], where `None` for the project means the presented key's own (`GET /3.0/projects`);
/// refusals before the key is known are then not audited, as no project is named.
async fn authorize_in(
    parts: &Parts,
    state: &AppState,
    project_id: Option<&str>,
    requirement: Requirement,
) -> Result<Arc<Grant>, ApiError> {
    let refuse = |project_id: Option<&str>, reason: Refusal, grant: Option<&Grant>, error| {
        state.metrics.refused(reason.as_str());
        if let Some(project_id) = project_id {
            state.meta.record_refusal(
                project_id,
                reason,
                grant.map(Grant::key_prefix),
                grant.and_then(Grant::token_id),
                request_line(parts),
            );
        }
        error
    };
    let Some(presented) = presented_key(&parts.headers, parts.uri.query()) else {
        return Err(refuse(
            project_id,
            Refusal::MissingKey,
            None,
            invalid_api_key(),
        ));
    };
    let now = keyhole_model::query::now_millis();
    let resolved = state.meta.resolve_credential(&presented, now).await?;
    let grant = match resolved.resolution {
        Resolution::Granted(grant) => grant,
        Resolution::Refused(Refusal::ExpiredToken) => {
            return Err(refuse(
                project_id,
                Refusal::ExpiredToken,
                None,
                expired_key(),
            ));
        }
        Resolution::Refused(Refusal::TenantSuspended) => {
            return Err(refuse(
                project_id,
                Refusal::TenantSuspended,
                None,
                tenant_suspended(),
            ));
        }
        Resolution::Refused(reason) => {
            return Err(refuse(project_id, reason, None, invalid_api_key()));
        }
    };
    let project_id = project_id.unwrap_or(grant.project_id());
    let origin = request_origin(&parts.headers);
    let own_page = from_own_page(&parts.headers, origin.as_deref());
    if let Err((reason, error)) = check_grant(
        &grant,
        project_id,
        requirement,
        now,
        origin.as_deref(),
        own_page,
    ) {
        return Err(refuse(Some(project_id), reason, Some(&grant), error));
    }
    // A grant is cached only for a request that passed every check: a credential that is refused
    // (another project, origin, permission, rate limit) costs a lookup each time and no memory.
    let cache = |grant: &Arc<Grant>| {
        if let Some(ticket) = resolved.cache_ticket {
            state.meta.cache_grant(ticket, grant.clone());
        }
    };
    // Introspection (`/keys/self`) is exempt from the key's limits: a limited client must be able to
    // read its own usage and limits, and the answer costs no more than the check would.
    if requirement == Requirement::AnyKey {
        cache(&grant);
        return Ok(grant);
    }
    if let Err(refused) = state
        .meter
        .admit(&grant, request_class(requirement))
        .await?
    {
        let reason = match refused {
            Refused::RateLimited { .. } => Refusal::RateLimited,
            Refused::QuotaExceeded { .. } => Refusal::QuotaExceeded,
        };
        return Err(refuse(
            Some(project_id),
            reason,
            Some(&grant),
            limit_error(refused),
        ));
    }
    cache(&grant);
    Ok(grant)
}

/// The value of a path parameter of the matched route.
pub(crate) async fn path_parameter(
    parts: &mut Parts,
    name: &str,
) -> Result<Option<String>, ApiError> {
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
        let grant = authorize(parts, state, &project_id, P::REQUIREMENT).await?;
        Ok(Authorized {
            project_id,
            grant,
            engines: state.events.clone(),
            _policy: PhantomData,
        })
    }
}

/// A caller holding the organization key, on a route whose `{org_id}` names this organization.
pub(crate) struct OrganizationAccess;

impl FromRequestParts<AppState> for OrganizationAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_organization_key(parts, state).await?;
        match path_parameter(parts, "org_id").await? {
            Some(id) if id == "default" || *id == *state.organization_id => Ok(OrganizationAccess),
            _ => Err(ApiError::not_found()),
        }
    }
}

/// A caller holding the organization key, on a route that names no organization (`GET /metrics`).
pub(crate) struct OrganizationKey;

impl FromRequestParts<AppState> for OrganizationKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_organization_key(parts, state).await?;
        Ok(OrganizationKey)
    }
}

/// The request presents the organization key: raw (Keen's form) or as `Bearer <key>`, as Prometheus'
/// `authorization` setting sends it.
pub(super) async fn check_organization_key(
    parts: &Parts,
    state: &AppState,
) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidApiKey,
            "The organization key is missing or invalid.",
        )
    };
    let presented = presented_key(&parts.headers, parts.uri.query()).ok_or_else(invalid)?;
    let secret = presented
        .strip_prefix("Bearer ")
        .map_or(presented.as_str(), str::trim);
    if !state.meta.is_organization_key(secret).await? {
        return Err(invalid());
    }
    Ok(())
}

/// `GET /3.0/projects`: a master key of any project, which sees its own project.
pub(crate) struct AnyProjectMaster {
    pub grant: Arc<Grant>,
    /// The master key's reads of its project.
    pub reader: ScopedReader,
}

impl FromRequestParts<AppState> for AnyProjectMaster {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The key's own project is the one it is checked against.
        let grant = authorize_in(parts, state, None, Requirement::Master).await?;
        let reader = ScopedReader::new(grant.clone(), ReadPurpose::Queries, &state.events);
        Ok(AnyProjectMaster { grant, reader })
    }
}

/// `GET /events/{collection}`: a pixel write when the query string carries `data=` (needs `writes`),
/// else the collection's schema (needs `schema`).
pub(crate) enum PixelOrSchema {
    Pixel {
        writer: EventWriter,
        data: String,
        redirect: Option<String>,
    },
    Schema {
        reader: ScopedReader,
    },
}

impl FromRequestParts<AppState> for PixelOrSchema {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let project_id = path_parameter(parts, "project_id").await?.ok_or_else(|| {
            ApiError::internal("a project policy on a route without {project_id}")
        })?;
        let parameter = |name: &str| {
            parts.uri.query().and_then(|query| {
                form_urlencoded_pairs(query)
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value)
            })
        };
        let Some(data) = parameter("data") else {
            let grant = authorize(
                parts,
                state,
                &project_id,
                Requirement::Operation(Operation::Schema),
            )
            .await?;
            let reader = ScopedReader::new(grant, ReadPurpose::Queries, &state.events);
            return Ok(PixelOrSchema::Schema { reader });
        };
        let redirect = parameter("redirect");
        let grant = authorize(
            parts,
            state,
            &project_id,
            Requirement::Operation(Operation::Writes),
        )
        .await?;
        Ok(PixelOrSchema::Pixel {
            writer: EventWriter::new(grant, &state.events),
            data,
            redirect,
        })
    }
}
