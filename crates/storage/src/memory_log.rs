//! An in-memory [`SharedLog`] for tests: the shared log's contract — sequence numbers, fencing by the
//! maintenance lease, checkpoints that only move forward, truncation that keeps the newest record —
//! without a database, so the engine's whole suite runs over shared mode (`tests.rs`, `storage_test_suite!`).
//! A handle names the node it belongs to (leases are held per node).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::shared::{BoxFuture, SharedLog, SharedRecord};

#[derive(Default)]
struct LogState {
    records: Vec<SharedRecord>,
    next_sequence: u64,
    checkpoint: Option<(u64, String)>,
    /// The node holding the maintenance lease, and until when.
    lease: Option<(String, Instant)>,
    /// Every record's kind and the node that appended it, in order (truncation keeps them).
    history: Vec<(String, String)>,
}

/// One node's handle on an in-memory shared log.
#[derive(Clone)]
pub(crate) struct MemoryLog {
    state: Arc<Mutex<LogState>>,
    node: String,
    /// While set, this handle's reads fail, as when the log's database is unreachable for a moment.
    failing_reads: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryLog {
    /// A new, empty log, and the first node's handle on it.
    pub(crate) fn new() -> MemoryLog {
        MemoryLog {
            state: Arc::new(Mutex::new(LogState {
                next_sequence: 1,
                ..LogState::default()
            })),
            node: "node-0".to_string(),
            failing_reads: Arc::default(),
        }
    }

    /// Another node's handle on the same log.
    pub(crate) fn for_node(&self, node: &str) -> MemoryLog {
        MemoryLog {
            state: self.state.clone(),
            node: node.to_string(),
            failing_reads: Arc::default(),
        }
    }

    /// Makes this handle's reads fail (`true`) or succeed again.
    pub(crate) fn fail_reads(&self, failing: bool) {
        self.failing_reads
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every record's kind and the node that appended it, in order (truncation does not remove them).
    pub(crate) fn history(&self) -> Vec<(String, String)> {
        self.state().history.clone()
    }

    /// How many records were ever appended (truncation does not lower it).
    pub(crate) fn appended(&self) -> u64 {
        self.state().next_sequence - 1
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn holds_lease(&self, state: &LogState) -> bool {
        state
            .lease
            .as_ref()
            .is_some_and(|(holder, until)| *holder == self.node && *until > Instant::now())
    }
}

impl SharedLog for MemoryLog {
    fn append<'a>(
        &'a self,
        kind: &'a str,
        payload: Vec<u8>,
        fenced: bool,
    ) -> BoxFuture<'a, io::Result<Option<u64>>> {
        Box::pin(async move {
            let mut state = self.state();
            if fenced && !self.holds_lease(&state) {
                return Ok(None);
            }
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            state.history.push((kind.to_string(), self.node.clone()));
            state.records.push(SharedRecord {
                sequence,
                kind: kind.to_string(),
                payload,
            });
            Ok(Some(sequence))
        })
    }

    fn read_after(&self, after: u64, limit: usize) -> BoxFuture<'_, io::Result<Vec<SharedRecord>>> {
        Box::pin(async move {
            if self.failing_reads.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "the log cannot be read (test)",
                ));
            }
            let state = self.state();
            Ok(state
                .records
                .iter()
                .filter(|record| record.sequence > after)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn checkpoint(&self) -> BoxFuture<'_, io::Result<Option<(u64, String)>>> {
        Box::pin(async move { Ok(self.state().checkpoint.clone()) })
    }

    fn store_checkpoint(
        &self,
        applied_through: u64,
        manifest: String,
    ) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let mut state = self.state();
            let newer_stored = state
                .checkpoint
                .as_ref()
                .is_some_and(|(stored, _)| *stored > applied_through);
            if !newer_stored {
                state.checkpoint = Some((applied_through, manifest));
            }
            Ok(())
        })
    }

    fn truncate_through(&self, sequence: u64) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let mut state = self.state();
            let newest = state.records.last().map(|record| record.sequence);
            state
                .records
                .retain(|record| record.sequence > sequence || Some(record.sequence) == newest);
            Ok(())
        })
    }

    fn try_lease(&self, ttl_millis: i64) -> BoxFuture<'_, io::Result<bool>> {
        Box::pin(async move {
            let mut state = self.state();
            let free = state
                .lease
                .as_ref()
                .is_none_or(|(holder, until)| *holder == self.node || *until <= Instant::now());
            if !free {
                return Ok(false);
            }
            let ttl = Duration::from_millis(u64::try_from(ttl_millis).unwrap_or(0));
            state.lease = Some((self.node.clone(), Instant::now() + ttl));
            Ok(true)
        })
    }

    fn release_lease(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let mut state = self.state();
            if state
                .lease
                .as_ref()
                .is_some_and(|(holder, _)| *holder == self.node)
            {
                state.lease = None;
            }
            Ok(())
        })
    }
}
