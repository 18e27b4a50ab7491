//! What the query layer measures for operators (`/metrics`): queries running, their durations and
//! outcomes (answered, refused as busy, timed out, over their memory budget, failed), and the peak memory
//! each query reserved, read from a memory pool that wraps DataFusion's per-query `GreedyMemoryPool`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::Result as DataFusionResult;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::ExecError;

/// How a query ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// The query layer's metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct QueryMetrics {
    pub running: Gauge,
    pub seconds: Histogram,
    pub peak_memory_bytes: Histogram,
    pub outcomes: Family<OutcomeLabel, Counter>,
}

impl Default for QueryMetrics {
    fn default() -> QueryMetrics {
        QueryMetrics {
            running: Gauge::default(),
            // 0.5 ms … ~130 s.
            seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 19)),
            // 64 KiB … 64 GiB.
            peak_memory_bytes: Histogram::new(exponential_buckets(65_536.0, 4.0, 11)),
            outcomes: Family::default(),
        }
    }
}

impl QueryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "queries_running",
            "Queries executing now",
            self.running.clone(),
        );
        registry.register_with_unit(
            "query_duration",
            "Wall-clock time of queries, queueing included",
            Unit::Seconds,
            self.seconds.clone(),
        );
        registry.register_with_unit(
            "query_peak_memory",
            "Most memory one query reserved from its budget",
            Unit::Bytes,
            self.peak_memory_bytes.clone(),
        );
        registry.register(
            "queries",
            "Queries by outcome: ok, busy, timeout, memory_budget, error",
            self.outcomes.clone(),
        );
    }

    pub(crate) fn record<T>(&self, result: &Result<T, ExecError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(ExecError::Busy) => "busy",
            Err(ExecError::Timeout(_)) => "timeout",
            Err(ExecError::MemoryBudget(_)) => "memory_budget",
            Err(_) => "error",
        };
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// A query's memory pool: DataFusion's greedy pool with a limit, remembering the most it held.
#[derive(Debug)]
pub struct PeakMemoryPool {
    inner: GreedyMemoryPool,
    peak: AtomicUsize,
}

impl PeakMemoryPool {
    pub fn new(limit_bytes: usize) -> Arc<PeakMemoryPool> {
        Arc::new(PeakMemoryPool {
            inner: GreedyMemoryPool::new(limit_bytes),
            peak: AtomicUsize::new(0),
        })
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn note(&self) {
        self.peak
            .fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

impl std::fmt::Display for PeakMemoryPool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "PeakMemoryPool(peak {} bytes, {})",
            self.peak(),
            self.inner
        )
    }
}

impl MemoryPool for PeakMemoryPool {
    fn name(&self) -> &str {
        "keyhole_peak"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.note();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DataFusionResult<()> {
        self.inner.try_grow(reservation, additional)?;
        self.note();
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}
