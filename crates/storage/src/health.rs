//! Counters of what went wrong in storage — corrupt WAL segments found at start-up, data files set aside
//! as unreadable — kept for the lifetime of the engine so operators see them (logs say each one when it
//! happens; these say how many).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wal::CorruptSegment;

#[derive(Debug, Default)]
pub struct StorageHealth {
    corrupt_wal_segments: AtomicU64,
    unreadable_wal_bytes: AtomicU64,
    quarantined_data_files: AtomicU64,
}

/// A snapshot of [`StorageHealth`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// WAL segments in which corruption was followed by intact records (set aside, rewritten).
    pub corrupt_wal_segments: u64,
    /// Bytes of those segments that held no intact record.
    pub unreadable_wal_bytes: u64,
    /// Data files listed in the manifest that were missing or unreadable, set aside and unlisted.
    pub quarantined_data_files: u64,
}

impl StorageHealth {
    pub fn record_corrupt_wal(&self, segments: &[CorruptSegment]) {
        for segment in segments {
            self.corrupt_wal_segments.fetch_add(1, Ordering::Relaxed);
            self.unreadable_wal_bytes
                .fetch_add(segment.unreadable_bytes as u64, Ordering::Relaxed);
        }
    }

    pub fn record_quarantined_files(&self, count: usize) {
        self.quarantined_data_files
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn counts(&self) -> HealthCounts {
        HealthCounts {
            corrupt_wal_segments: self.corrupt_wal_segments.load(Ordering::Relaxed),
            unreadable_wal_bytes: self.unreadable_wal_bytes.load(Ordering::Relaxed),
            quarantined_data_files: self.quarantined_data_files.load(Ordering::Relaxed),
        }
    }
}
