//! `GET /metrics`: Prometheus (OpenMetrics text) metrics for operators, behind the organization key
//! (`Authorization: <key>` or `Authorization: Bearer <key>`, as Prometheus' `authorization` setting sends
//! it). Requests by route template, method and status with their latencies, refused requests by reason,
//! and what the storage and query layers register (ingest, WAL commits, flushes, compactions, buffered
//! rows, file cache, recovery, queries and their memory). Labels are route templates and fixed reasons —
//! never key secrets, project ids or tenant values.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::AppState;
use crate::errors::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CacheLabel {
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConsumerLabel {
    pub consumer: &'static str,
}

/// The memory budget as `/metrics` shows it (`keyhole_model::memory_budget`).
#[derive(Clone, Default)]
struct MemoryFamilies {
    limit: Gauge,
    share: Family<ConsumerLabel, Gauge>,
    used: Family<ConsumerLabel, Gauge>,
    peak: Family<ConsumerLabel, Gauge>,
    refusals: Family<ConsumerLabel, Counter>,
}

impl MemoryFamilies {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "memory_limit",
            "The memory budget (--memory-limit)",
            Unit::Bytes,
            self.limit.clone(),
        );
        registry.register_with_unit(
            "memory_share",
            "The part of the memory budget each consumer may hold",
            Unit::Bytes,
            self.share.clone(),
        );
        registry.register_with_unit(
            "memory_used",
            "What each consumer of the memory budget holds now",
            Unit::Bytes,
            self.used.clone(),
        );
        registry.register_with_unit(
            "memory_peak",
            "The most each consumer of the memory budget has held",
            Unit::Bytes,
            self.peak.clone(),
        );
        registry.register(
            "memory_refusals",
            "Work refused (or deferred, for compaction) because a consumer's share was spent",
            self.refusals.clone(),
        );
    }

    fn record(&self, budget: &keyhole_model::memory_budget::MemoryBudget) {
        let gauge_value = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.limit.set(gauge_value(budget.limit_bytes()));
        for usage in budget.usage() {
            let label = ConsumerLabel {
                consumer: usage.consumer.name(),
            };
            self.share
                .get_or_create(&label)
                .set(gauge_value(usage.share_bytes));
            self.used
                .get_or_create(&label)
                .set(gauge_value(usage.used_bytes));
            self.peak
                .get_or_create(&label)
                .set(gauge_value(usage.peak_bytes));
            let refusals = self.refusals.get_or_create(&label);
            refusals.inc_by(usage.refusals.saturating_sub(refusals.get()));
        }
    }
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.1 ms … ~13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// The server's metrics and the registry that serves every layer's.
#[derive(Clone)]
pub(crate) struct ServerMetrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: LatencyFamily,
    refused: Family<ReasonLabel, Counter>,
    cache_bytes: Family<CacheLabel, Gauge>,
    cache_entries: Family<CacheLabel, Gauge>,
    memory: MemoryFamilies,
    ip_to_geo_skipped: Counter,
}

impl ServerMetrics {
    /// The registry: the server's metrics plus storage's and the query engine's, prefixed `keyhole_`.
    pub(crate) fn new(
        storage: &keyhole_storage::StorageMetrics,
        queries: &keyhole_query::QueryMetrics,
    ) -> ServerMetrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let refused = Family::<ReasonLabel, Counter>::default();
        let mut registry = Registry::with_prefix("keyhole");
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by route template and method",
            Unit::Seconds,
            request_seconds.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused by authorization or a key's limits, by reason",
            refused.clone(),
        );
        let cache_bytes = Family::<CacheLabel, Gauge>::default();
        let cache_entries = Family::<CacheLabel, Gauge>::default();
        registry.register_with_unit(
            "cache",
            "Bytes each in-memory cache is charged (grants, cached query results, dataset buckets, user agents)",
            Unit::Bytes,
            cache_bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "Entries of each in-memory cache",
            cache_entries.clone(),
        );
        let ip_to_geo_skipped = Counter::default();
        registry.register(
            "ip_to_geo_skipped",
            "Events stored without keen:ip_to_geo's output because no GeoIP database is configured (--geoip-db)",
            ip_to_geo_skipped.clone(),
        );
        let memory = MemoryFamilies::default();
        memory.register(&mut registry);
        storage.register(&mut registry);
        queries.register(&mut registry);
        ServerMetrics {
            registry: Arc::new(registry),
            requests,
            request_seconds,
            refused,
            cache_bytes,
            cache_entries,
            memory,
            ip_to_geo_skipped,
        }
    }

    /// The counter of events stored without `ip_to_geo`'s output (see `enrichment`).
    pub(crate) fn ip_to_geo_skipped(&self) -> Counter {
        self.ip_to_geo_skipped.clone()
    }

    /// Records the memory budget's limit, shares, use, peaks and refusals.
    pub(crate) fn memory_usage(&self, budget: &keyhole_model::memory_budget::MemoryBudget) {
        self.memory.record(budget);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Records what a cache holds, in bytes and entries.
    pub(crate) fn cache_usage(&self, cache: &'static str, (bytes, entries): (usize, usize)) {
        let label = CacheLabel { cache };
        self.cache_bytes
            .get_or_create(&label)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .get_or_create(&label)
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counts and times every request that matched a route (a route layer, so the template is known).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`.
pub(crate) async fn serve_metrics(
    _: crate::auth::OrganizationKey,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    state.record_cache_usage();
    let text = state.metrics.render().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
