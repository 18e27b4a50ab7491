//! The bounded pool the CPU side of every write runs on: checking a webhook signature (one HMAC over the
//! body), splitting the body into events, parsing each and running its add-ons — and the server's other
//! request-sized CPU work outside queries (encoding an e-mailed extraction's attachment). None of it runs
//! on the async workers, so a flood of expensive writes slows writes, never `/health` or the other
//! requests. The one exception is a body of at most 2 KiB that cannot name an add-on
//! (`WriteJob::is_small_and_plain`): it is prepared where it arrived, as the hand-off would cost more.
//!
//! Design: [`WriteLimits::threads`] dedicated threads (one per core by default) at a slightly lower CPU
//! priority than the async workers and the WAL writer, fed through a channel. A request first takes one of
//! as many slots as there are threads, waiting at most [`WriteLimits::queue_wait`] (then 503 with
//! `Retry-After`), so the queue never holds more work than the threads can start. Each job gets a
//! [`CpuBudget`] of [`WriteLimits::cpu_budget`] of its thread's CPU time; the job checks it between
//! events and gives up past it, and the request is refused (400) rather than queued for later.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

use crate::errors::{ApiError, ErrorCode};

/// The limits every write runs under (ARCHITECTURE.md lists the defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// Threads of the write pool.
    pub threads: usize,
    /// CPU time one request's events may take to prepare (parsing, add-ons, signature).
    pub cpu_budget: Duration,
    /// How long a request waits for a free thread before it is refused with 503.
    pub queue_wait: Duration,
    /// Events one request may carry; more are refused with 413 before any is parsed.
    pub max_events_per_request: usize,
}

/// keen-tracking's largest batch (its queue's default capacity, flushed as one request).
pub(crate) const DEFAULT_MAX_EVENTS_PER_REQUEST: usize = 5_000;

impl Default for WriteLimits {
    fn default() -> WriteLimits {
        WriteLimits {
            threads: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .max(1),
            cpu_budget: Duration::from_secs(2),
            queue_wait: Duration::from_secs(10),
            max_events_per_request: DEFAULT_MAX_EVENTS_PER_REQUEST,
        }
    }
}

/// Niceness of the pool's threads: behind the async workers and the WAL writer (0), ahead of queries (5).
const WRITE_THREAD_NICENESS: i32 = 2;

type Job = Box<dyn FnOnce() + Send>;

/// The write pool; cheap to clone.
#[derive(Clone)]
pub(crate) struct WritePool {
    jobs: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    limits: WriteLimits,
}

/// A job's allowance of its thread's CPU time.
pub(crate) struct CpuBudget {
    started_wall: std::time::Instant,
    started_cpu: Duration,
    started_uncharged: Duration,
    allowed: Duration,
}

thread_local! {
    /// CPU time this thread spent on work no request is charged for (see [`uncharged`]).
    static UNCHARGED: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Runs `work` without charging its CPU time to the request the thread is preparing: for one-time
/// work of the server's own that a request only happens to trigger (building the user-agent parser on
/// first use costs seconds of CPU; the request that triggers it must not be refused for it).
pub(crate) fn uncharged<T>(work: impl FnOnce() -> T) -> T {
    let before = thread_cpu_time();
    let result = work();
    let spent = thread_cpu_time().saturating_sub(before);
    UNCHARGED.with(|uncharged| uncharged.set(uncharged.get() + spent));
    result
}

impl CpuBudget {
    fn start(allowed: Duration) -> CpuBudget {
        CpuBudget {
            started_wall: std::time::Instant::now(),
            started_cpu: thread_cpu_time(),
            started_uncharged: UNCHARGED.with(std::cell::Cell::get),
            allowed,
        }
    }

    /// Whether the job has used more CPU time than it was allowed. Cheap enough to ask after every
    /// event: the thread's CPU time (a system call) is read only once the wall-clock time, which is never
    /// less, has passed the allowance.
    pub(crate) fn exceeded(&self) -> bool {
        if self.started_wall.elapsed() <= self.allowed {
            return false;
        }
        let uncharged = UNCHARGED
            .with(std::cell::Cell::get)
            .saturating_sub(self.started_uncharged);
        thread_cpu_time()
            .saturating_sub(self.started_cpu)
            .saturating_sub(uncharged)
            > self.allowed
    }

    /// The allowance, for messages.
    pub(crate) fn allowed(&self) -> Duration {
        self.allowed
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let spec = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(spec.tv_sec).unwrap_or(0),
        u32::try_from(spec.tv_nsec).unwrap_or(0),
    )
}

impl WritePool {
    /// Starts the pool's threads; they end when the last handle is dropped.
    pub(crate) fn start(limits: WriteLimits) -> std::io::Result<WritePool> {
        let threads = limits.threads.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("keyhole-write-{index}"))
                .spawn(move || {
                    // `None` is `who = 0`: on Linux, the calling thread's niceness only.
                    let _ = rustix::process::setpriority_process(None, WRITE_THREAD_NICENESS);
                    loop {
                        let job = {
                            let receiver = receiver
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            receiver.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(WritePool {
            jobs,
            slots: Arc::new(Semaphore::new(threads)),
            limits,
        })
    }

    pub(crate) fn limits(&self) -> &WriteLimits {
        &self.limits
    }

    /// Runs `work` here, on the calling thread, with a CPU budget as [`WritePool::run`] gives a job: for
    /// work known to be small (`WriteJob::is_small_and_plain`), where the two thread hand-offs of the pool
    /// cost more than the work.
    pub(crate) fn run_inline<T>(&self, work: impl FnOnce(&CpuBudget) -> T) -> T {
        work(&CpuBudget::start(self.limits.cpu_budget))
    }

    /// Runs `work` on a pool thread with a CPU budget, once a slot is free (see the module docs).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&CpuBudget) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let busy = || {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The server is busy preparing other writes and mails; retry shortly.",
            )
            .with_retry_after(1)
        };
        let slot = tokio::time::timeout(self.limits.queue_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let (answer, answered) = oneshot::channel();
        let allowed = self.limits.cpu_budget;
        let job: Job = Box::new(move || {
            let budget = CpuBudget::start(allowed);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&budget)));
            drop(slot);
            let _ = answer.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::internal("the write pool has stopped"))?;
        match answered.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ApiError::internal("a write job panicked")),
            Err(_) => Err(ApiError::internal("a write job was dropped")),
        }
    }
}

/// The answer to a request whose preparation used up its CPU budget.
pub(crate) fn budget_exceeded(budget: &CpuBudget) -> ApiError {
    ApiError::new(
        ErrorCode::LimitExceeded,
        format!(
            "Preparing this request's events took more than the {} ms of CPU time a write may use (long add-on inputs, many add-ons or many events); nothing was stored. Send fewer events per request.",
            budget.allowed().as_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{CpuBudget, uncharged};

    fn burn(at_least: Duration) {
        let started = super::thread_cpu_time();
        let mut state = 1u64;
        while super::thread_cpu_time().saturating_sub(started) < at_least {
            for _ in 0..10_000 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
            }
            std::hint::black_box(state);
        }
    }

    /// One-time work run `uncharged` does not count against the request that triggered it; the
    /// request's own work does.
    #[test]
    fn uncharged_work_is_not_counted_against_the_budget() {
        let budget = CpuBudget::start(Duration::from_millis(30));
        uncharged(|| burn(Duration::from_millis(80)));
        assert!(!budget.exceeded(), "uncharged CPU time was counted");
        burn(Duration::from_millis(40));
        assert!(
            budget.exceeded(),
            "the request's own CPU time was not counted"
        );
    }
}
