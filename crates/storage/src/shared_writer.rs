//! The writer's side of the shared log (`shared`): applying what other nodes appended, in sequence
//! order, and appending this node's maintenance records. Only the writer thread changes the state from
//! the log, so a node's own groups and everyone else's are applied in one order.

use std::io;

use crate::shared::{Applied, SharedRecord, apply_record};
use crate::writer::Writer;

/// Records read from the log at a time.
const READ_BATCH: usize = 1_000;

impl Writer {
    /// Applies the log through `through` (records this node has not applied yet); the [`Applied`] of the
    /// record at `through` when this call applied it.
    pub(crate) fn apply_shared_through(&mut self, through: u64) -> io::Result<Option<Applied>> {
        let Some(shared) = self.journal.shared() else {
            return Ok(None);
        };
        let (log, runtime) = (shared.log.clone(), shared.runtime.clone());
        let mut last_applied = None;
        let mut applied_any = false;
        let mut added_files = Vec::new();
        loop {
            let after = self.state.lock().expect("state lock").applied_sequence;
            if after >= through {
                break;
            }
            let records: Vec<SharedRecord> = runtime.block_on(log.read_after(after, READ_BATCH))?;
            if records.is_empty() {
                break;
            }
            for record in records {
                if record.sequence > through {
                    break;
                }
                let applied = {
                    let mut state = self.state.lock().expect("state lock");
                    apply_record(&mut state, &mut self.tokens, &record, 0, true)?
                };
                applied_any = true;
                added_files.extend(applied.added_files.iter().cloned());
                if record.sequence == through {
                    last_applied = Some(applied);
                }
            }
        }
        if !added_files.is_empty() {
            (self.on_files_added)(added_files);
        }
        if applied_any {
            let buffered = self.state.lock().expect("state lock").memory_size();
            self.metrics.buffered_rows.set(buffered.rows as i64);
            (self.on_applied)(buffered);
        }
        Ok(last_applied)
    }

    /// Applies everything other nodes appended so far (a failure is retried at the next call).
    pub(crate) fn catch_up_with_others(&mut self) {
        if self.broken {
            return;
        }
        if let Err(error) = self.apply_shared_through(u64::MAX) {
            tracing::warn!(%error, "cannot apply the shared log; retrying");
        }
    }

    /// Appends a maintenance record, fenced by the maintenance lease, and applies the log through it.
    pub(crate) fn append_maintenance(
        &mut self,
        kind: &'static str,
        payload: Vec<u8>,
    ) -> io::Result<Applied> {
        let shared = self
            .journal
            .shared()
            .ok_or_else(|| io::Error::other("maintenance records need a shared log"))?;
        let (log, runtime) = (shared.log.clone(), shared.runtime.clone());
        let sequence = runtime
            .block_on(log.append(kind, payload, true))?
            .ok_or_else(|| io::Error::other("this node no longer holds the maintenance lease"))?;
        self.apply_shared_through(sequence)?
            .ok_or_else(|| io::Error::other("the maintenance record just appended was not applied"))
    }
}
