//! What the query layer measures for operators (`/metrics`): queries running, their durations and
//! outcomes (answered, refused as busy, timed out, over their memory budget, failed), and the peak memory
//! each query reserved, read from a memory pool that wraps DataFusion's per-query `GreedyMemoryPool`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result as DataFusionResult};
use datafusion::execution::memory_pool::{
    FairSpillPool, GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use keyhole_model::memory_budget::{MemoryBudget, MemoryConsumer as BudgetConsumer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::ExecError;

/// How a query ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// The query layer's metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct QueryMetrics {
    pub(crate) running: Gauge,
    pub(crate) seconds: Histogram,
    pub(crate) peak_memory_bytes: Histogram,
    pub(crate) outcomes: Family<OutcomeLabel, Counter>,
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
    /// Registers the query metrics in `registry` (served at `/metrics`).
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
            "Queries by outcome: ok, busy, timeout, memory_budget, memory_busy, error",
            self.outcomes.clone(),
        );
    }

    pub(crate) fn record<T>(&self, result: &Result<T, ExecError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(ExecError::Busy) => "busy",
            Err(ExecError::Timeout(_)) => "timeout",
            Err(ExecError::MemoryBudget(_)) => "memory_budget",
            Err(ExecError::MemoryBusy) => "memory_busy",
            Err(_) => "error",
        };
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// Marks the refusal of memory the query's own budget allowed but the server's share for queries did
/// not (answered 503, not 413).
pub(crate) const SERVER_QUERY_MEMORY_SPENT: &str = "the server's memory for queries is in use";

/// A query's memory pool: DataFusion's greedy pool with the query's limit, remembering the most it held,
/// drawing every byte from the server's memory budget too (its `Queries` share, which all running
/// queries share), so that many queries at once cannot together exceed it.
#[derive(Debug)]
pub(crate) struct PeakMemoryPool {
    /// Greedy when the query may not spill; fair between spilling operators when it may (a greedy pool
    /// lets the first operators take everything, and a later one cannot even start to spill).
    inner: Box<dyn MemoryPool>,
    peak: AtomicUsize,
    budget: MemoryBudget,
}

impl PeakMemoryPool {
    pub(crate) fn new(
        limit_bytes: usize,
        budget: MemoryBudget,
        spilling: bool,
    ) -> Arc<PeakMemoryPool> {
        let inner: Box<dyn MemoryPool> = if spilling {
            Box::new(FairSpillPool::new(limit_bytes))
        } else {
            Box::new(GreedyMemoryPool::new(limit_bytes))
        };
        Arc::new(PeakMemoryPool {
            inner,
            peak: AtomicUsize::new(0),
            budget,
        })
    }

    pub(crate) fn peak(&self) -> usize {
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
    fn name(&self) -> &'static str {
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
        self.budget
            .force_grow(BudgetConsumer::Queries, additional as u64);
        self.note();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.budget.release(BudgetConsumer::Queries, shrink as u64);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DataFusionResult<()> {
        self.inner.try_grow(reservation, additional)?;
        if !self
            .budget
            .try_grow(BudgetConsumer::Queries, additional as u64)
        {
            self.inner.shrink(reservation, additional);
            self.budget.record_refusal(BudgetConsumer::Queries);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{SERVER_QUERY_MEMORY_SPENT}: {additional} more bytes do not fit"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_draw_from_one_share_and_a_spent_share_is_a_busy_server() {
        let budget = MemoryBudget::new(1000 * 1024 * 1024);
        let share = budget.share(BudgetConsumer::Queries) as usize;
        // Each query may hold three quarters of the share: two cannot both do so.
        let first_pool: Arc<dyn MemoryPool> =
            PeakMemoryPool::new(share / 4 * 3, budget.clone(), false);
        let second_pool: Arc<dyn MemoryPool> =
            PeakMemoryPool::new(share / 4 * 3, budget.clone(), false);
        let first = MemoryConsumer::new("first").register(&first_pool);
        let second = MemoryConsumer::new("second").register(&second_pool);
        first.try_grow(share / 2).unwrap();
        assert_eq!(budget.used(BudgetConsumer::Queries), (share / 2) as u64);

        let refused = second.try_grow(share / 4 * 3).unwrap_err();
        assert!(matches!(ExecError::from(refused), ExecError::MemoryBusy));
        assert_eq!(second_pool.reserved(), 0, "the refused bytes are not kept");
        // Past the query's own budget is the query's fault: 413, not 503.
        let too_large = first.try_grow(share / 2).unwrap_err();
        assert!(matches!(
            ExecError::from(too_large),
            ExecError::MemoryBudget(_)
        ));

        second.try_grow(share / 4).unwrap();
        drop(first);
        drop(second);
        assert_eq!(budget.used(BudgetConsumer::Queries), 0);
    }
}
