//! What a delete removes ([`RowEdit`]): events by `keen.id` or one property. It is journaled as a WAL
//! entry, applied to the in-memory rows and to each Parquet batch read back from a file being rewritten;
//! `deletes` runs the procedure.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use keyhole_model::flat::ID_COLUMN;

use crate::manifest::{CollectionId, DataFile};
use crate::state::CollectionState;
use crate::wal::WalEntry;

/// What a delete removes.
#[derive(Clone, Debug)]
pub(crate) enum RowEdit {
    /// Events by `keen.id`, all with `keen.timestamp` in `[earliest, latest]`.
    Events {
        ids: Arc<HashSet<String>>,
        earliest: i64,
        latest: i64,
    },
    /// A property and every property nested under it.
    Property { property: String },
}

impl RowEdit {
    /// Whether a physical column `{path}#{kind}` belongs to the deleted property.
    fn drops_column(&self, column: &str) -> bool {
        let RowEdit::Property { property } = self else {
            return false;
        };
        let path = column.rsplit_once('#').map_or(column, |(path, _)| path);
        path == property
            || path
                .strip_prefix(property.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Whether a data file may hold what this edit removes.
    pub(crate) fn may_touch(&self, file: &DataFile) -> bool {
        match self {
            RowEdit::Events {
                earliest, latest, ..
            } => file.max_timestamp_millis >= *earliest && file.min_timestamp_millis <= *latest,
            RowEdit::Property { .. } => true,
        }
    }

    /// The batch without the removed rows or columns, and how many rows (or cells) went.
    pub(crate) fn apply(&self, batch: &RecordBatch) -> (RecordBatch, usize) {
        match self {
            RowEdit::Events { ids, .. } => {
                let Some(column) = batch
                    .column_by_name(ID_COLUMN)
                    .and_then(|column| column.as_any().downcast_ref::<StringArray>())
                else {
                    return (batch.clone(), 0);
                };
                let keep: BooleanArray = column
                    .iter()
                    .map(|id| Some(!id.is_some_and(|id| ids.contains(id))))
                    .collect();
                let removed = keep.false_count();
                if removed == 0 {
                    return (batch.clone(), 0);
                }
                let kept = filter_record_batch(batch, &keep).expect("mask of equal length");
                (kept, removed)
            }
            RowEdit::Property { .. } => {
                let schema = batch.schema();
                let keep: Vec<usize> = (0..schema.fields().len())
                    .filter(|index| !self.drops_column(schema.field(*index).name()))
                    .collect();
                if keep.len() == schema.fields().len() {
                    return (batch.clone(), 0);
                }
                let dropped_cells: usize = (0..schema.fields().len())
                    .filter(|index| !keep.contains(index))
                    .map(|index| batch.num_rows() - batch.column(index).null_count())
                    .sum();
                let kept = batch
                    .project(&keep)
                    .expect("indices of the batch's own columns");
                (kept, dropped_cells.max(1))
            }
        }
    }

    /// The WAL record of this edit on `collection`.
    pub(crate) fn wal_entry(&self, collection: &CollectionId) -> WalEntry {
        let (project, collection) = (collection.project.clone(), collection.collection.clone());
        match self {
            RowEdit::Events {
                ids,
                earliest,
                latest,
            } => {
                let mut ids: Vec<String> = ids.iter().cloned().collect();
                ids.sort();
                WalEntry::DeleteEvents {
                    project,
                    collection,
                    ids,
                    earliest: *earliest,
                    latest: *latest,
                }
            }
            RowEdit::Property { property } => WalEntry::DeleteProperty {
                project,
                collection,
                property: property.clone(),
            },
        }
    }

    /// The edit a replayed WAL record describes, with its collection; `None` for other records.
    pub(crate) fn from_wal_entry(entry: WalEntry) -> Option<(CollectionId, RowEdit)> {
        match entry {
            WalEntry::DeleteEvents {
                project,
                collection,
                ids,
                earliest,
                latest,
            } => Some((
                CollectionId {
                    project,
                    collection,
                },
                RowEdit::Events {
                    ids: Arc::new(ids.into_iter().collect()),
                    earliest,
                    latest,
                },
            )),
            WalEntry::DeleteProperty {
                project,
                collection,
                property,
            } => Some((
                CollectionId {
                    project,
                    collection,
                },
                RowEdit::Property { property },
            )),
            _ => None,
        }
    }

    /// The earliest event time the edit changes (for the change log).
    pub(crate) fn earliest_time(&self) -> i64 {
        match self {
            RowEdit::Events { earliest, .. } => *earliest,
            RowEdit::Property { .. } => i64::MIN,
        }
    }

    /// Applies the edit to a collection's in-memory rows and schema; returns the rows (or cells) removed.
    pub(crate) fn apply_to_memory(&self, collection: &mut CollectionState) -> usize {
        collection.seal();
        let mut removed = 0;
        for batches in [&mut collection.sealed, &mut collection.flushing] {
            for batch in batches.iter_mut() {
                let (kept, gone) = self.apply(batch);
                removed += gone;
                *batch = kept;
            }
            batches.retain(|batch| batch.num_rows() > 0);
        }
        collection.batches_changed();
        if let RowEdit::Property { .. } = self {
            collection.retain_properties(|path| !self.drops_column(path));
        }
        removed
    }
}
