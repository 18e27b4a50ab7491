//! What a reader gets of a collection: a time range ([`TimeRange`]), a snapshot of its files and
//! in-memory rows ([`CollectionSnapshot`]), or all its rows materialized ([`CollectionScan`]).

use arrow::array::{BooleanArray, TimestampMillisecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use keyhole_model::flat::TIMESTAMP_COLUMN;

use crate::manifest::DataFile;

/// Half-open event-time range `[start, end)` in epoch milliseconds; `None` is unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// The first millisecond in the range.
    pub start_millis: Option<i64>,
    /// The first millisecond past the range.
    pub end_millis: Option<i64>,
}

impl TimeRange {
    /// Every event time.
    pub const ALL: TimeRange = TimeRange {
        start_millis: None,
        end_millis: None,
    };

    /// Whether every row of `file` is inside the range (by the file's recorded time bounds, which hold
    /// every row it has: a rewrite that removes rows keeps bounds that still enclose the rest).
    pub fn contains_file(&self, file: &DataFile) -> bool {
        self.start_millis
            .is_none_or(|start| file.min_timestamp_millis >= start)
            && self
                .end_millis
                .is_none_or(|end| file.max_timestamp_millis < end)
    }

    pub(crate) fn overlaps_file(&self, file: &DataFile) -> bool {
        self.start_millis
            .is_none_or(|start| file.max_timestamp_millis >= start)
            && self
                .end_millis
                .is_none_or(|end| file.min_timestamp_millis < end)
    }

    pub(crate) fn contains(&self, millis: i64) -> bool {
        self.start_millis.is_none_or(|start| millis >= start)
            && self.end_millis.is_none_or(|end| millis < end)
    }
}

/// A collection's rows in a time range, every batch shaped to `schema`.
#[derive(Clone, Debug)]
pub struct CollectionScan {
    /// The collection's schema, which every batch has.
    pub schema: SchemaRef,
    /// The rows, from files and memory.
    pub batches: Vec<RecordBatch>,
}

impl CollectionScan {
    /// How many rows the scan holds.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// See [`Storage::snapshot`].
#[derive(Clone, Debug)]
pub struct CollectionSnapshot {
    /// The collection's schema; the memory batches are shaped to it.
    pub schema: SchemaRef,
    /// The Parquet files that may hold events of the range.
    pub files: Vec<DataFile>,
    /// The in-memory rows in the range.
    pub memory: Vec<RecordBatch>,
}

impl CollectionSnapshot {
    /// Every row the snapshot holds: the files' row counts from the manifest plus the rows in memory.
    pub fn rows(&self) -> usize {
        self.files.iter().map(|file| file.rows).sum::<usize>()
            + self.memory.iter().map(RecordBatch::num_rows).sum::<usize>()
    }
}

/// Adds the rows of `batch` whose `keen.timestamp` is in `range`.
pub(crate) fn push_in_range(batches: &mut Vec<RecordBatch>, batch: RecordBatch, range: TimeRange) {
    if range == TimeRange::ALL {
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
        return;
    }
    let times = batch
        .column_by_name(TIMESTAMP_COLUMN)
        .and_then(|column| column.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("keen.timestamp column");
    let keep: BooleanArray = times
        .iter()
        .map(|time| Some(time.is_some_and(|t| range.contains(t))))
        .collect();
    let filtered = filter_record_batch(&batch, &keep).expect("filter by a mask of equal length");
    if filtered.num_rows() > 0 {
        batches.push(filtered);
    }
}
