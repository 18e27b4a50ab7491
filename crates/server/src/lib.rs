//! Keyhole's HTTP layer: the Keen v3 routes (built from one route table), key extractors that carry
//! each route's required permission in their type, and the one place domain errors become Keen error
//! bodies. [`app`] builds the whole router so tests can drive it in-process or behind a real socket.

#![warn(missing_docs, unreachable_pub)]

mod access;
mod byte_bounded;
mod cached_results;
mod console;
mod dashboards;
mod dataset_results;
mod datasets;
mod deletes;
mod discovery;
pub mod email_extraction;
mod embed;
pub mod enrichment;
mod errors;
pub mod http;
mod idempotency;
mod inspect;
mod keys;
mod limits;
mod metrics;
mod preflight;
mod projects;
mod query;
pub mod routes;
mod saved_queries;
pub mod shared_log;
mod tenant_erasure;
mod tenant_usage;
mod tenants;
pub mod third_party;
mod webhook_bodies;
mod write;
pub mod write_pool;
mod write_prepare;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use keyhole_meta::MetaStore;
use keyhole_model::memory_budget::{MemoryBudget, MemoryConsumer};
use keyhole_storage::Storage;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::trace::TraceLayer;

pub use access::auth;
pub use http::{HttpLimits, serve};
pub use projects::created_project_json;

/// What every handler can reach: one shared [`SharedState`], so the clones axum makes for each request
/// (the router's state, each extractor) are one reference count, not one per part (cloning and dropping
/// the parts one by one was 9% of a single-event write's CPU).
#[derive(Clone)]
pub struct AppState {
    shared: Arc<SharedState>,
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.shared
    }
}

/// The server's parts, shared by every request through [`AppState`].
#[derive(Clone)]
pub struct SharedState {
    pub(crate) meta: MetaStore,
    /// Events are reached only through the handles `access` hands out; see that module.
    pub(crate) events: access::EventEngines,
    pub(crate) meter: limits::KeyMeter,
    pub(crate) metrics: metrics::ServerMetrics,
    cached_results: Arc<cached_results::CachedResults>,
    dataset_results: Arc<dataset_results::DatasetResults>,
    /// The data of the enrichment add-ons (see `enrichment`).
    pub(crate) enrichment: enrichment::Enrichment,
    /// Where the CPU side of every write runs (see `write_pool`).
    pub(crate) write_pool: write_pool::WritePool,
    /// The server's memory budget (`keyhole_model::memory_budget`), shared with storage and queries.
    pub(crate) memory: MemoryBudget,
    pub(crate) organization_id: Arc<str>,
    /// The mail server of e-mailed extractions (`--smtp-url`), if any.
    pub(crate) mailer: Option<email_extraction::Mailer>,
}

impl AppState {
    /// Orders every project's future Parquet files by the properties its usable access keys filter on
    /// (`model::grant::clustering_properties`), so that a key's scoped reads skip other tenants' data.
    /// Called at start; after that the metadata store's key-change hook keeps it current. A failure only
    /// costs speed, so it is logged, not returned.
    pub async fn refresh_all_clustering(&self) {
        let projects = match self.meta.projects().await {
            Ok(projects) => projects,
            Err(error) => {
                tracing::warn!(%error, "cannot list projects for clustering");
                return;
            }
        };
        for project in projects {
            match self.meta.usable_access_key_grants(&project.id).await {
                Ok(grants) => self.events.set_clustering(&project.id, &grants),
                Err(error) => {
                    tracing::warn!(project_id = %project.id, %error, "cannot read access keys for clustering");
                }
            }
        }
    }

    /// Fails only if the query runtime's threads cannot be started. Must be called on a tokio runtime
    /// (the key meter's flush task starts on it).
    pub fn new(
        meta: MetaStore,
        storage: Storage,
        organization_id: impl Into<Arc<str>>,
        query_limits: keyhole_query::QueryLimits,
    ) -> std::io::Result<AppState> {
        let queries = keyhole_query::QueryEngine::new(storage.clone(), query_limits)?;
        let events = access::EventEngines::new(storage.clone(), queries.clone());
        let clustered = events.clone();
        meta.on_key_change(Box::new(move |project_id, grants| {
            clustered.set_clustering(project_id, grants);
        }));
        let meter = limits::KeyMeter::start(meta.clone());
        let metrics = metrics::ServerMetrics::new(storage.metrics(), queries.metrics());
        // One budget for the whole server: storage's (it sizes the event buffer and the file cache).
        let memory = storage.memory_budget().clone();
        let share = |consumer| memory.share(consumer) as usize;
        meta.set_grant_cache_bytes(share(MemoryConsumer::GrantCache));
        let cached_results = Arc::new(cached_results::CachedResults::with_max_bytes(share(
            MemoryConsumer::ResultCache,
        )));
        cached_results::start_refresher(Arc::downgrade(&cached_results));
        let dataset_results = Arc::new(dataset_results::DatasetResults::with_max_bytes(share(
            MemoryConsumer::DatasetCache,
        )));
        let enrichment = enrichment::Enrichment::new(None).map_err(std::io::Error::other)?;
        enrichment.set_user_agent_cache_bytes(share(MemoryConsumer::UserAgentCache));
        enrichment.count_geo_skips_in(metrics.ip_to_geo_skipped());
        let write_pool = write_pool::WritePool::start(write_pool::WriteLimits::default())?;
        let shared = SharedState {
            write_pool,
            cached_results,
            dataset_results,
            memory,
            enrichment,
            meta,
            events,
            meter,
            metrics,
            organization_id: organization_id.into(),
            mailer: None,
        };
        Ok(AppState {
            shared: Arc::new(shared),
        })
    }

    /// The shared state, to change while the server is being assembled (copied if already shared).
    fn shared_mut(&mut self) -> &mut SharedState {
        Arc::make_mut(&mut self.shared)
    }
}

impl AppState {
    /// Writes what is counted in memory — key usage, coalesced audit entries — to the metadata store;
    /// called once the server stopped answering, before the process exits.
    pub async fn flush_before_exit(&self) {
        self.meter.flush().await;
        self.meta.flush_audit().await;
    }

    /// Copies what every cache holds into the metrics.
    pub(crate) fn record_cache_usage(&self) {
        let caches = [
            (
                "grants",
                MemoryConsumer::GrantCache,
                self.meta.grant_cache_usage(),
            ),
            (
                "query_results",
                MemoryConsumer::ResultCache,
                self.cached_results.usage(),
            ),
            (
                "dataset_buckets",
                MemoryConsumer::DatasetCache,
                self.dataset_results.usage(),
            ),
            (
                "user_agents",
                MemoryConsumer::UserAgentCache,
                self.enrichment.user_agent_cache_usage(),
            ),
        ];
        for (name, consumer, usage) in caches {
            self.metrics.cache_usage(name, usage);
            self.memory.set_used(consumer, usage.0 as u64);
        }
        self.metrics.memory_usage(&self.memory);
    }

    /// Runs writes under `limits` (a new write pool with as many threads as they say).
    pub fn with_write_limits(
        mut self,
        limits: write_pool::WriteLimits,
    ) -> std::io::Result<AppState> {
        self.shared_mut().write_pool = write_pool::WritePool::start(limits)?;
        Ok(self)
    }

    /// Sends e-mailed extractions through `mailer`.
    #[must_use]
    pub fn with_mailer(mut self, mailer: email_extraction::Mailer) -> AppState {
        self.shared_mut().mailer = Some(mailer);
        self
    }

    /// Uses `enrichment` (with a GeoIP database, say) for the add-ons of events written from now on.
    #[must_use]
    pub fn with_enrichment(mut self, enrichment: enrichment::Enrichment) -> AppState {
        enrichment
            .set_user_agent_cache_bytes(self.memory.share(MemoryConsumer::UserAgentCache) as usize);
        enrichment.count_geo_skips_in(self.metrics.ip_to_geo_skipped());
        self.shared_mut().enrichment = enrichment;
        self
    }
}

/// The full application: routes, Keen-style 404/405 answers, CORS, request tracing.
pub fn app(state: AppState) -> Router {
    let preflight_state = state.clone();
    // Browsers send `Authorization`, which a `*` allow-list does not cover, so requested headers are
    // mirrored back.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::HEAD,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(Duration::from_secs(86_400));
    // Spans carry the path only (query strings may hold `api_key`), with key secrets in key-management
    // paths cut to their display prefix.
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        tracing::info_span!("request", method = %request.method(), path = %loggable_path(request.uri().path()))
    });
    routes::routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::map_response(keen_error_bodies))
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            preflight_state,
            preflight::refuse_foreign_preflights,
        ))
        .layer(trace)
}

/// Gives every error answer a Keen-style body: extractor rejections (a path segment that is not valid
/// UTF-8 after decoding, say) come from axum as plain text.
async fn keen_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status.as_u16() {
        404 => errors::ErrorCode::ResourceNotFound,
        _ => errors::ErrorCode::InvalidRequest,
    };
    let message = match status.canonical_reason() {
        Some(reason) => format!("The request was refused: {reason}."),
        None => "The request was refused.".to_string(),
    };
    let mut answer = (status, Json(errors::ApiError::new(code, message).body())).into_response();
    if let Some(retry_after) = response.headers().get(axum::http::header::RETRY_AFTER) {
        answer
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, retry_after.clone());
    }
    answer
}

/// A handler that panicked: logged, answered like any internal error, the server goes on.
fn answer_panic(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(std::string::ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    errors::ApiError::internal(format!("a handler panicked: {detail}")).into_response()
}

/// The path with the secret in `/keys/{key}` replaced by its first characters.
pub(crate) fn loggable_path(path: &str) -> String {
    let Some((before, after)) = path.split_once("/keys/") else {
        return path.to_string();
    };
    let (secret, rest) = after
        .split_once('/')
        .map_or((after, ""), |(secret, rest)| (secret, rest));
    if matches!(secret, "self" | "audit") {
        return path.to_string();
    }
    let prefix = keyhole_model::keys::display_prefix(secret);
    if rest.is_empty() {
        return format!("{before}/keys/{prefix}…");
    }
    format!("{before}/keys/{prefix}…/{rest}")
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> impl IntoResponse {
    errors::ApiError::not_found()
}

async fn method_not_allowed() -> impl IntoResponse {
    let error = errors::ApiError::new(
        errors::ErrorCode::InvalidRequest,
        "This method is not allowed on this resource.",
    );
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        Json(error.body()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_secrets_never_reach_request_spans() {
        let secret = "a".repeat(20) + &"b".repeat(44);
        let path = format!("/3.0/projects/p1/keys/{secret}/revoke");
        let logged = super::loggable_path(&path);
        assert_eq!(logged, "/3.0/projects/p1/keys/aaaaaaaa…/revoke");
        assert!(!logged.contains(&secret[..9]));
        assert_eq!(
            super::loggable_path(&format!("/3.0/projects/p1/keys/{secret}")),
            "/3.0/projects/p1/keys/aaaaaaaa…"
        );
        assert_eq!(
            super::loggable_path("/3.0/projects/p1/events"),
            "/3.0/projects/p1/events"
        );
        assert_eq!(
            super::loggable_path("/3.0/projects/p1/keys/self"),
            "/3.0/projects/p1/keys/self"
        );
    }
}
