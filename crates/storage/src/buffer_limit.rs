//! The event buffer's part of the memory budget: when the unflushed rows start a flush, and when new
//! writes wait for one (then are refused with [`StorageError::BufferFull`], nothing stored). The rows are
//! measured after every group commit (`state::BufferedSize`) and reported to the budget's `EventBuffer`.

use std::time::Duration;

use keyhole_model::memory_budget::MemoryConsumer;

use crate::Storage;
use crate::config::{Result, StorageError};

/// A flush starts once the unflushed rows hold this fraction (1/N) of the event buffer's share.
pub(crate) const FLUSH_AT_SHARE_DIVISOR: u64 = 4;
/// New writes wait while the unflushed rows (those being flushed included) hold this fraction (1/N) of
/// the share: a flush holds up to two more copies of what it flushes (merged, then sorted), so three
/// thirds cover the rows and the flush's work.
const ADMIT_BELOW_SHARE_DIVISOR: u64 = 3;

impl Storage {
    /// Returns at once while the buffer has room; otherwise asks for a flush and waits for room up to
    /// `StorageConfig::buffer_wait`, then refuses.
    pub(crate) async fn wait_for_buffer_room(&self) -> Result<()> {
        let budget = &self.inner.config.memory_budget;
        let admit_below = budget.share(MemoryConsumer::EventBuffer) / ADMIT_BELOW_SHARE_DIVISOR;
        if budget.used(MemoryConsumer::EventBuffer) < admit_below {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.inner.config.buffer_wait;
        while budget.used(MemoryConsumer::EventBuffer) >= admit_below {
            if tokio::time::Instant::now() >= deadline {
                budget.record_refusal(MemoryConsumer::EventBuffer);
                return Err(StorageError::BufferFull);
            }
            self.inner.flush_wanted.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Flushes when the unflushed rows have reached the size that starts a flush; the caller holds the
    /// maintenance lock (a long merge calls this between pieces of its work).
    pub(crate) async fn flush_if_buffer_full_locked(&self) -> Result<()> {
        let budget = &self.inner.config.memory_budget;
        let flush_at = budget.share(MemoryConsumer::EventBuffer) / FLUSH_AT_SHARE_DIVISOR;
        if budget.used(MemoryConsumer::EventBuffer) < flush_at {
            return Ok(());
        }
        self.flush_locked().await
    }
}
