//! What storage measures for operators, as Prometheus metrics the server registers and serves at
//! `/metrics`: WAL group commits (latency), ingested events and bytes, flush and compaction durations,
//! rows buffered in memory, file-cache hits and misses, and what recovery found wrong (corrupt WAL
//! segments, unreadable bytes, data files set aside). Labels never carry tenant values.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::wal::CorruptSegment;

/// The metrics of one storage engine; cheap to clone (the metrics are shared).
#[derive(Clone, Debug)]
pub struct StorageMetrics {
    /// Seconds each WAL group commit took (write and fdatasync).
    pub wal_commit_seconds: Histogram,
    /// Events stored.
    pub ingested_events: Counter,
    /// Bytes of the events stored.
    pub ingested_bytes: Counter,
    /// Seconds each flush to Parquet took.
    pub flush_seconds: Histogram,
    /// Seconds each compaction took.
    pub compaction_seconds: Histogram,
    /// Sorted runs compaction spilled to disk (a day larger than its memory).
    pub compaction_spilled_runs: Counter,
    /// Rows acknowledged and not yet in Parquet.
    pub buffered_rows: Gauge,
    /// Reads the file cache answered.
    pub file_cache_hits: Counter,
    /// Reads the file cache passed to the object store.
    pub file_cache_misses: Counter,
    corrupt_wal_segments: Counter,
    unreadable_wal_bytes: Counter,
    quarantined_data_files: Counter,
}

/// What recovery found wrong since the engine opened (a snapshot of the counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// WAL segments in which corruption was followed by intact records (set aside, rewritten).
    pub corrupt_wal_segments: u64,
    /// Bytes of those segments that held no intact record.
    pub unreadable_wal_bytes: u64,
    /// Data files listed in the manifest that were missing or unreadable, set aside and unlisted.
    pub quarantined_data_files: u64,
}

impl Default for StorageMetrics {
    fn default() -> StorageMetrics {
        StorageMetrics {
            // 50 µs … ~1.6 s.
            wal_commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            ingested_events: Counter::default(),
            ingested_bytes: Counter::default(),
            // 1 ms … ~65 s.
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            compaction_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            compaction_spilled_runs: Counter::default(),
            buffered_rows: Gauge::default(),
            file_cache_hits: Counter::default(),
            file_cache_misses: Counter::default(),
            corrupt_wal_segments: Counter::default(),
            unreadable_wal_bytes: Counter::default(),
            quarantined_data_files: Counter::default(),
        }
    }
}

impl StorageMetrics {
    /// Adds every storage metric to `registry` (names prefixed `keyhole_` by the caller's registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "compaction_spilled_runs",
            "Sorted runs compaction spilled to disk because a day's files exceeded its memory",
            self.compaction_spilled_runs.clone(),
        );
        registry.register_with_unit(
            "wal_commit",
            "Group commits of the write-ahead log: write and fdatasync",
            Unit::Seconds,
            self.wal_commit_seconds.clone(),
        );
        registry.register(
            "ingested_events",
            "Events stored (acknowledged)",
            self.ingested_events.clone(),
        );
        registry.register_with_unit(
            "ingested",
            "JSON bytes of the events stored",
            Unit::Bytes,
            self.ingested_bytes.clone(),
        );
        registry.register_with_unit(
            "flush",
            "Flushes of buffered rows to Parquet",
            Unit::Seconds,
            self.flush_seconds.clone(),
        );
        registry.register_with_unit(
            "compaction",
            "Compactions of a day's files",
            Unit::Seconds,
            self.compaction_seconds.clone(),
        );
        registry.register(
            "buffered_rows",
            "Rows in memory, not yet in Parquet",
            self.buffered_rows.clone(),
        );
        registry.register(
            "file_cache_hits",
            "Data file reads answered from the in-memory file cache",
            self.file_cache_hits.clone(),
        );
        registry.register(
            "file_cache_misses",
            "Data file reads that went to the object store",
            self.file_cache_misses.clone(),
        );
        registry.register(
            "corrupt_wal_segments",
            "WAL segments found corrupt at start-up (set aside, intact records kept)",
            self.corrupt_wal_segments.clone(),
        );
        registry.register_with_unit(
            "unreadable_wal",
            "Bytes of corrupt WAL segments that held no intact record",
            Unit::Bytes,
            self.unreadable_wal_bytes.clone(),
        );
        registry.register(
            "quarantined_data_files",
            "Data files set aside at start-up as missing or unreadable",
            self.quarantined_data_files.clone(),
        );
    }

    pub(crate) fn record_corrupt_wal(&self, segments: &[CorruptSegment]) {
        for segment in segments {
            self.corrupt_wal_segments.inc();
            self.unreadable_wal_bytes
                .inc_by(segment.unreadable_bytes as u64);
        }
    }

    pub(crate) fn record_quarantined_files(&self, count: usize) {
        self.quarantined_data_files.inc_by(count as u64);
    }

    /// What recovery found wrong since the engine opened.
    pub fn health(&self) -> HealthCounts {
        HealthCounts {
            corrupt_wal_segments: self.corrupt_wal_segments.get(),
            unreadable_wal_bytes: self.unreadable_wal_bytes.get(),
            quarantined_data_files: self.quarantined_data_files.get(),
        }
    }
}
