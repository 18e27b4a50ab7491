//! Keen queries over Keyhole's storage: a typed query (from `keyhole_model::query`) and a [`Scope`]
//! become DataFusion plans over a collection's rows (Parquet and not-yet-flushed memory alike, so an
//! acknowledged event counts in the very next query), and the results become Keen-shaped JSON.
//!
//! Every entry point takes a `&Scope`; all reads go through `plan::filtered_frame`, which AND-s the
//! scope's forced filters above the scan. See `scope.rs`.

#![warn(missing_docs, unreachable_pub)]

mod bucket;
mod columns;
mod deletion;
mod execution_metadata;
mod extraction;
mod files_table;
mod filters;
mod funnel;
mod governor;
pub mod interval_join;
mod metadata_answers;
mod metrics;
mod plan;
mod render;
mod results;
mod scope;
mod visibility;

use std::sync::Arc;
use std::time::Instant;

use keyhole_model::query::{AnalysisType, Query, QueryError};

pub use deletion::MatchedEvents;
use keyhole_storage::{Storage, StorageError};
use serde_json::{Value, json};

pub use governor::QueryLimits;
pub use metrics::QueryMetrics;
pub use scope::Scope;
pub use visibility::Visibility;

/// Most interval buckets one query may ask for.
pub const MAX_BUCKETS: usize = 10_000;

/// Why a query could not be answered; `server` maps each to a Keen error.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The query itself is invalid (parameters, timeframe, filters).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The storage engine failed to read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// DataFusion failed (a bug or an internal error: never the caller's fault).
    #[error("query engine failed: {0}")]
    Engine(datafusion::error::DataFusionError),
    /// Every query slot stayed taken for the whole queue wait.
    #[error("too many queries are running; retry shortly")]
    Busy,
    /// The query ran longer than its time limit.
    #[error("the query took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// The query's operators needed more memory than its budget (bytes).
    #[error("the query needs more than its memory budget of {0} bytes")]
    MemoryBudget(usize),
    /// The server's memory for queries (all queries together, the budget's `Queries` share) was spent
    /// by other queries: retrying shortly helps.
    #[error("the server's memory for queries is in use")]
    MemoryBusy,
    /// Any other failure of ours, with what happened.
    #[error("{0}")]
    Internal(String),
}

/// How object_store's errors show in the messages of the errors that wrap them.
const OBJECT_STORE_ERROR: &str = "Object Store error";

impl From<datafusion::error::DataFusionError> for ExecError {
    fn from(error: datafusion::error::DataFusionError) -> ExecError {
        use datafusion::error::DataFusionError;
        match error.find_root() {
            DataFusionError::ResourcesExhausted(message)
                if message.contains(metrics::SERVER_QUERY_MEMORY_SPENT) =>
            {
                ExecError::MemoryBusy
            }
            DataFusionError::ResourcesExhausted(message) => {
                tracing::debug!(%message, "query over its memory budget");
                ExecError::MemoryBudget(0)
            }
            // The object store could not be read (unreachable, refusing): the storage's failure, which
            // the caller answers 503, not a fault of the engine.
            DataFusionError::ObjectStore(store_error) => ExecError::Storage(StorageError::Io(
                std::io::Error::other(store_error.to_string()),
            )),
            // The Parquet reader reports a failed fetch as its own error with the store's message in
            // it ("…: Object Store error: …"), not as a source to walk to.
            root if root.to_string().contains(OBJECT_STORE_ERROR) => {
                ExecError::Storage(StorageError::Io(std::io::Error::other(root.to_string())))
            }
            _ => ExecError::Engine(error),
        }
    }
}

/// A query layer result.
pub type Result<T> = std::result::Result<T, ExecError>;

/// Runs Keen queries against a storage, each under the [`QueryLimits`] (see `governor`).
#[derive(Clone)]
pub struct QueryEngine {
    source: plan::EventSource,
    governor: Arc<governor::Governor>,
    metrics: QueryMetrics,
}

impl QueryEngine {
    /// Fails only if the query runtime's threads cannot be started.
    pub fn new(storage: Storage, limits: QueryLimits) -> std::io::Result<QueryEngine> {
        Ok(QueryEngine {
            source: plan::EventSource::new(storage, limits.clone()),
            governor: Arc::new(governor::Governor::new(limits)?),
            metrics: QueryMetrics::default(),
        })
    }

    /// The limits every query runs under.
    pub fn limits(&self) -> &QueryLimits {
        &self.governor.limits
    }

    /// What of `collection`'s schema `scope` may learn about (for the schema endpoints).
    pub async fn visible_columns(&self, scope: &Scope, collection: &str) -> Result<Visibility> {
        let (scope, collection) = (scope.clone(), collection.to_string());
        self.governed(move |source| {
            let (scope, collection) = (scope.clone(), collection.clone());
            async move { visibility::visible_columns(&source, &scope, &collection).await }
        })
        .await
    }

    /// Runs `query` as seen through `scope`, with relative timeframes evaluated at `now_millis`.
    /// Returns the whole response body (`{"result": …}` plus what the analysis adds).
    pub async fn run(&self, query: &Query, scope: &Scope, now_millis: i64) -> Result<Value> {
        let (query, scope) = (query.clone(), scope.clone());
        self.governed(move |source| {
            let (query, scope) = (query.clone(), scope.clone());
            async move { run_governed(&source, &query, &scope, now_millis).await }
        })
        .await
    }

    /// Up to `limit` events of `query`'s collection, timeframe and filters as `scope` sees them (for
    /// deletes; see `deletion`).
    pub async fn matching_events(
        &self,
        query: &Query,
        scope: &Scope,
        now_millis: i64,
        limit: usize,
    ) -> Result<MatchedEvents> {
        let (query, scope) = (query.clone(), scope.clone());
        self.governed(move |source| {
            let (query, scope) = (query.clone(), scope.clone());
            async move {
                deletion::matching_events(&source, &query, &scope, now_millis, limit).await
            }
        })
        .await
    }

    /// Runs `work` under the governor without spilling; a run refused for the query's own memory budget
    /// is run once more with spilling to disk (`plan::Spilling`).
    async fn governed<T, F, Work>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(plan::EventSource) -> Work,
        Work: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let (source, pool) = self.source.for_one_query(plan::Spilling::Off);
        let first = self.measured(pool, work(source)).await;
        if !matches!(first, Err(ExecError::MemoryBudget(_))) {
            return first;
        }
        tracing::debug!("query over its memory budget; running it again with spilling");
        let (source, pool) = self.source.for_one_query(plan::Spilling::On);
        self.measured(pool, work(source)).await
    }

    /// The query layer's metrics, for the server to register and serve.
    pub fn metrics(&self) -> &QueryMetrics {
        &self.metrics
    }

    /// Runs `work` under the governor, recording its duration, outcome and peak memory.
    async fn measured<T: Send + 'static>(
        &self,
        pool: Arc<metrics::PeakMemoryPool>,
        work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let started = Instant::now();
        self.metrics.running.inc();
        let result = self
            .governor
            .run(work)
            .await
            .map_err(with_budget(self.limits()));
        self.metrics.running.dec();
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.peak_memory_bytes.observe(pool.peak() as f64);
        self.metrics.record(&result);
        result
    }
}

/// Fills in the budget a [`ExecError::MemoryBudget`] reports.
fn with_budget(limits: &QueryLimits) -> impl Fn(ExecError) -> ExecError + '_ {
    |error| match error {
        ExecError::MemoryBudget(_) => ExecError::MemoryBudget(limits.memory_bytes),
        other => other,
    }
}

async fn run_governed(
    source: &plan::EventSource,
    query: &Query,
    scope: &Scope,
    now_millis: i64,
) -> Result<Value> {
    let started = Instant::now();
    let (mut body, scanned) = match query.analysis {
        AnalysisType::Funnel => funnel::run(source, query, scope, now_millis).await?,
        AnalysisType::Extraction => extraction::run(source, query, scope, now_millis).await?,
        _ => results::run_metrics(source, query, scope, now_millis).await?,
    };
    if query.include_metadata {
        let counted = execution_metadata::count(source, scope, &scanned).await?;
        body["execution_metadata"] = json!({
            "events_scanned": counted.events_scanned,
            "properties_per_event": counted.properties_per_event(),
            "total_properties_scanned": counted.total_properties_scanned,
            "total_processing_time": started.elapsed().as_secs_f64(),
        });
    }
    Ok(body)
}
