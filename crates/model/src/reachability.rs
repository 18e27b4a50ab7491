//! Whether a remote service (the metadata database, the shared log's database) is known to be unreachable.
//! A call that times out or cannot connect marks it so and starts one probe; while it is marked, callers
//! fail at once instead of each waiting out its own timeout; the probe clears the mark when the service
//! answers again. The probe itself is the caller's (it knows the service): this type only holds the state,
//! shared by every clone.
//!
//! Design: a link that loses packets fails nothing, so each call would otherwise wait its whole timeout —
//! requests queued behind one writer thread, or each request's key lookup, would each take that long to be
//! refused. With the mark, the first call pays the timeout and every later one is answered at once until
//! the probe sees the service back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The shared mark; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Reachability {
    unreachable: Arc<AtomicBool>,
    probing: Arc<AtomicBool>,
}

impl Reachability {
    /// Whether calls should fail at once.
    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::SeqCst)
    }

    /// Marks the service unreachable; true when the caller must start the probe (none is running).
    pub fn mark_unreachable(&self) -> bool {
        self.unreachable.store(true, Ordering::SeqCst);
        !self.probing.swap(true, Ordering::SeqCst)
    }

    /// The probe found the service answering: calls go through again.
    pub fn mark_reachable(&self) {
        self.unreachable.store(false, Ordering::SeqCst);
        self.probing.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_runs_until_the_service_answers() {
        let reachability = Reachability::default();
        assert!(!reachability.is_unreachable());
        assert!(
            reachability.mark_unreachable(),
            "the first failure starts a probe"
        );
        let clone = reachability.clone();
        assert!(!clone.mark_unreachable(), "one probe at a time");
        assert!(clone.is_unreachable());
        reachability.mark_reachable();
        assert!(!clone.is_unreachable());
        assert!(
            clone.mark_unreachable(),
            "a later outage starts a new probe"
        );
    }
}
