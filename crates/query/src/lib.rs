//! Keen queries over Keyhole's storage: a typed query (from `keyhole_model::query`) and a [`Scope`]
//! become DataFusion plans over a collection's rows (Parquet and not-yet-flushed memory alike, so an
//! acknowledged event counts in the very next query), and the results become Keen-shaped JSON.
//!
//! Every entry point takes a `&Scope`; all reads go through `plan::filtered_frame`, which AND-s the
//! scope's forced filters above the scan. See `scope.rs`.

mod bucket;
mod columns;
mod extraction;
mod filters;
mod funnel;
mod plan;
mod render;
mod results;
pub mod scope;
mod visibility;

use std::time::Instant;

use keyhole_model::query::{AnalysisType, Query, QueryError};

pub use extraction::MAX_EXTRACTED_EVENTS;
use keyhole_storage::{Storage, StorageError};
use serde_json::{Value, json};

pub use scope::Scope;
pub use visibility::Visibility;

/// Most interval buckets one query may ask for.
pub const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("query engine failed: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
}

pub type Result<T> = std::result::Result<T, ExecError>;

/// Runs Keen queries against a storage.
#[derive(Clone)]
pub struct QueryEngine {
    source: plan::EventSource,
}

impl QueryEngine {
    pub fn new(storage: Storage) -> QueryEngine {
        QueryEngine {
            source: plan::EventSource::new(storage),
        }
    }

    /// What of `collection`'s schema `scope` may learn about (for the schema endpoints).
    pub async fn visible_columns(&self, scope: &Scope, collection: &str) -> Result<Visibility> {
        visibility::visible_columns(&self.source, scope, collection).await
    }

    /// Runs `query` as seen through `scope`, with relative timeframes evaluated at `now_millis`.
    /// Returns the whole response body (`{"result": …}` plus what the analysis adds).
    pub async fn run(&self, query: &Query, scope: &Scope, now_millis: i64) -> Result<Value> {
        let started = Instant::now();
        let (mut body, events_scanned) = match query.analysis {
            AnalysisType::Funnel => funnel::run(&self.source, query, scope, now_millis).await?,
            AnalysisType::Extraction => {
                extraction::run(&self.source, query, scope, now_millis).await?
            }
            _ => results::run_metrics(&self.source, query, scope, now_millis).await?,
        };
        if query.include_metadata {
            body["execution_metadata"] = json!({
                "events_scanned": events_scanned,
                "total_processing_time": started.elapsed().as_secs_f64(),
            });
        }
        Ok(body)
    }
}
