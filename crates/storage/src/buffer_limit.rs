//! The event buffer's part of the memory budget: when the unflushed rows start a flush, and when new
//! writes wait for one (then are refused with [`StorageError::BufferFull`], nothing stored). The rows are
//! measured after every group commit (`state::BufferedSize`) and reported to the budget's `EventBuffer`.

use std::time::Duration;

use keyhole_model::memory_budget::MemoryBudget;
use keyhole_model::memory_budget::MemoryConsumer;
use tokio::sync::Notify;

use crate::config::{Result, StorageError};

/// A flush starts once the unflushed rows hold this fraction (1/N) of the event buffer's share.
const FLUSH_AT_SHARE_DIVISOR: u64 = 4;
/// New writes wait while the unflushed rows (those being flushed included) hold this fraction (1/N) of
/// the share: a flush copies one day of what it flushes at a time (twice: in time order, then in
/// clustering order), so the other two thirds cover the flush's work with room to spare.
const ADMIT_BELOW_SHARE_DIVISOR: u64 = 3;

/// The unflushed bytes at which a flush starts.
pub(crate) fn flush_at_bytes(budget: &MemoryBudget) -> u64 {
    budget.share(MemoryConsumer::EventBuffer) / FLUSH_AT_SHARE_DIVISOR
}

/// With a shared log, the unflushed bytes at which a node that took none of them flushes anyway (the nodes
/// that took them are not flushing): halfway between starting a flush and holding back writes.
pub(crate) fn takeover_at_bytes(budget: &MemoryBudget) -> u64 {
    let admit_below = budget.share(MemoryConsumer::EventBuffer) / ADMIT_BELOW_SHARE_DIVISOR;
    (flush_at_bytes(budget) + admit_below) / 2
}

/// Whether the unflushed rows have reached the size that starts a flush.
pub(crate) fn wants_flush(budget: &MemoryBudget) -> bool {
    budget.used(MemoryConsumer::EventBuffer) >= flush_at_bytes(budget)
}

/// Returns at once while the buffer has room; otherwise asks for a flush (`flush_wanted`) and waits for
/// room up to `wait`, then refuses.
pub(crate) async fn wait_for_buffer_room(
    budget: &MemoryBudget,
    wait: Duration,
    flush_wanted: &Notify,
) -> Result<()> {
    let admit_below = budget.share(MemoryConsumer::EventBuffer) / ADMIT_BELOW_SHARE_DIVISOR;
    if budget.used(MemoryConsumer::EventBuffer) < admit_below {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + wait;
    while budget.used(MemoryConsumer::EventBuffer) >= admit_below {
        if tokio::time::Instant::now() >= deadline {
            budget.record_refusal(MemoryConsumer::EventBuffer);
            return Err(StorageError::BufferFull);
        }
        flush_wanted.notify_one();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
