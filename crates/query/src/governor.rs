//! Governing query execution, so that no query — a tenant's browser holds a key that may send any — can
//! crash, exhaust or stall the server:
//!
//! - every query is planned and executed on a dedicated runtime whose threads have large stacks (a plan
//!   is a tree the optimizer recurses into) and a lower CPU priority than the request workers and the WAL
//!   writer, so a burst of queries slows queries, not ingest;
//! - at most [`QueryLimits::max_concurrent`] queries run at once; a query that cannot start within
//!   [`QueryLimits::queue_wait`] is refused ([`ExecError::Busy`], answered `503` with `Retry-After`);
//! - each query has a wall-clock limit ([`ExecError::Timeout`]) and a memory budget: its DataFusion
//!   session gets its own memory pool of [`QueryLimits::memory_bytes`] with spilling disabled, so a
//!   hash aggregate or sort that outgrows it fails ([`ExecError::MemoryBudget`]) instead of growing;
//! - results are capped at [`QueryLimits::max_result_cells`] values (buckets × groups × analyses, plus
//!   the values of select_unique lists), checked before the JSON answer is built.
//!
//! Parse-time limits (filter counts, list lengths, nesting) live with the query model
//! (`keyhole_model::query`), so they are checked before anything here runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::{ExecError, Result};

/// The limits every query runs under. See the module docs; ARCHITECTURE.md lists the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Bytes one query's operators (aggregations, sorts, joins) may hold.
    pub memory_bytes: usize,
    /// Wall-clock time one query may take, planning included.
    pub timeout: Duration,
    /// Queries executing at once; more wait in line.
    pub max_concurrent: usize,
    /// How long a query waits in line before it is refused.
    pub queue_wait: Duration,
    /// Values one answer may hold.
    pub max_result_cells: usize,
    /// Threads of the query runtime.
    pub threads: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        let cores = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .max(1);
        QueryLimits {
            memory_bytes: 512 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            max_concurrent: (cores * 2).max(2),
            queue_wait: Duration::from_secs(10),
            max_result_cells: 1_000_000,
            threads: cores,
        }
    }
}

/// Stack of each query thread: deep enough for any plan the parse-time limits allow, with a wide margin.
const QUERY_THREAD_STACK_BYTES: usize = 32 * 1024 * 1024;
/// The nice value query threads run at (request workers and the WAL writer keep 0).
const QUERY_THREAD_NICENESS: i32 = 5;

/// The runtime, permits and limits queries run under.
pub(crate) struct Governor {
    runtime: QueryRuntime,
    permits: Arc<Semaphore>,
    pub(crate) limits: QueryLimits,
}

impl Governor {
    pub(crate) fn new(limits: QueryLimits) -> std::io::Result<Governor> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .max_blocking_threads(limits.threads.max(1) * 4)
            .thread_name("keyhole-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .on_thread_start(lower_thread_priority)
            .enable_all()
            .build()?;
        Ok(Governor {
            runtime: QueryRuntime(Some(runtime)),
            permits: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
        })
    }

    /// Runs `work` on the query runtime once a permit is free, within the timeout. Dropping the returned
    /// future (the client went away) cancels the work.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let permit =
            tokio::time::timeout(self.limits.queue_wait, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| ExecError::Busy)?
                .map_err(|_| ExecError::Busy)?;
        let timeout = self.limits.timeout;
        let handle = self.runtime.handle().spawn(async move {
            let _permit = permit;
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| ExecError::Timeout(timeout))?;
            // A query that finished within one poll is not interrupted by the timer; past its time it is
            // still refused, so the limit holds however the work was scheduled.
            if started.elapsed() > timeout {
                return Err(ExecError::Timeout(timeout));
            }
            result
        });
        let mut task = AbortOnDrop(handle);
        match (&mut task.0).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => Err(ExecError::Internal(format!(
                "a query panicked: {}",
                panic_message(error.into_panic())
            ))),
            Err(_) => Err(ExecError::Internal("a query was cancelled".into())),
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(std::string::ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Lowers the calling thread's CPU priority (on Linux the nice value is per thread). Best effort: a
/// failure leaves the thread at normal priority.
fn lower_thread_priority() {
    // `None` is `who = 0`: on Linux, the calling thread.
    let _ = rustix::process::setpriority_process(None, QUERY_THREAD_NICENESS);
}

/// Aborts the task when the waiting future is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The query runtime, shut down without blocking when dropped: the last handle may go away inside
/// another runtime's task, where a blocking shutdown would panic.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .expect("present until dropped")
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
