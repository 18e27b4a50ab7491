//! The records of a shared log (see `shared`) and how a node applies them to its state: `rows` (one group
//! commit: events as encoded rows, deletes, in the WAL's record encoding; `entries` is the same with the
//! events' JSON, which older nodes appended), `rotate`, `flushed` and `swapped`. The
//! local WAL's replay applies its entries with the same [`apply_entry`].

use std::io;

use keyhole_model::reload_event;
use serde::{Deserialize, Serialize};

use crate::manifest::{CollectionId, DataFile};
use crate::row_edit::RowEdit;
use crate::shared::SharedRecord;
use crate::state::State;
use crate::tokens::{TokenIndex, UNIQUENESS_WINDOW_MILLIS};
use crate::wal::WalEntry;

/// A group commit whose events are JSON text (what a node before encoded rows appended).
pub(crate) const KIND_ENTRIES: &str = "entries";
/// A group commit whose events are encoded rows (`WalEntry::Rows`): what nodes append now. A node
/// that does not know it stops applying the log with an error naming it, instead of misreading it.
pub(crate) const KIND_ROWS: &str = "rows";
pub(crate) const KIND_ROTATE: &str = "rotate";
pub(crate) const KIND_FLUSHED: &str = "flushed";
pub(crate) const KIND_SWAPPED: &str = "swapped";

/// The payload of a `flushed` record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Flushed {
    /// The sequence of the `rotate` whose rows the files hold.
    pub through: u64,
    pub files: Vec<(CollectionId, Vec<DataFile>)>,
}

/// The payload of a `swapped` record: each old file of a collection and its replacement, if any.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Swapped {
    pub collection: CollectionId,
    pub replaced: Vec<(DataFile, Option<DataFile>)>,
}

/// What applying a record did that its appender must act on.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// New files a maintenance record named that the state did not take (the collection was deleted or
    /// changed meanwhile): the appender deletes them.
    pub rejected_files: Vec<DataFile>,
    /// Files a collection delete dropped from the state.
    pub deleted_files: Vec<DataFile>,
    /// Deletes applied to memory (their files are rewritten by the node that took the delete).
    pub edits: Vec<(CollectionId, RowEdit)>,
    /// Whether a swap's old files were all present and were replaced.
    pub swapped: bool,
    /// Files a maintenance record added to the state (a node that did not write them fetches them into
    /// its file cache ahead of the queries that will read them).
    pub added_files: Vec<DataFile>,
}

/// Applies one entry of the log (a node's own after its commit, or another node's) to the state.
/// `record_changes`: note the change for cached results (not needed while starting up).
pub(crate) fn apply_entry(
    state: &mut State,
    tokens: &mut TokenIndex,
    entry: WalEntry,
    record_changes: bool,
    deduplicate: bool,
    applied: &mut Applied,
) {
    match entry {
        WalEntry::Events {
            project,
            collection,
            events,
        } => {
            let id = CollectionId {
                project,
                collection,
            };
            let target = state.collection_mut(&id);
            let mut earliest = i64::MAX;
            let mut added = 0usize;
            for json in events {
                let Some((event, token)) = reload_event(&json) else {
                    tracing::error!(collection = %id.collection, "unreadable event in the log; skipped");
                    continue;
                };
                if let Some(token) = token {
                    let index = tokens.entry(id.clone()).or_default();
                    // In the shared log, a token already applied within its window makes this event a
                    // duplicate on every node alike (they apply the same records in the same order).
                    let duplicate = index.get(&token).is_some_and(|first_seen| {
                        event.created_at_millis - first_seen < UNIQUENESS_WINDOW_MILLIS
                    });
                    if deduplicate && duplicate {
                        continue;
                    }
                    if !duplicate {
                        index.insert(token, event.created_at_millis);
                    }
                }
                earliest = earliest.min(event.timestamp_millis);
                target.append(&event);
                added += 1;
            }
            if added > 0 {
                state.rows_added(0);
            }
            if record_changes && added > 0 {
                state.record_change(&id, earliest);
            }
        }
        WalEntry::Rows {
            project,
            collection,
            rows,
            tokens: row_tokens,
        } => {
            let id = CollectionId {
                project,
                collection,
            };
            apply_rows(
                state,
                tokens,
                &id,
                rows,
                &row_tokens,
                RowsOrigin::Log { deduplicate },
                record_changes,
            );
        }
        WalEntry::DeleteCollection {
            project,
            collection,
        } => {
            let id = CollectionId {
                project,
                collection,
            };
            tokens.remove(&id);
            applied.deleted_files.extend(state.remove_collection(&id));
        }
        edit @ (WalEntry::DeleteEvents { .. } | WalEntry::DeleteProperty { .. }) => {
            let Some((id, edit)) = RowEdit::from_wal_entry(edit) else {
                return;
            };
            if let Some(target) = state.collections.get_mut(&id) {
                edit.apply_to_memory(target);
            }
            if record_changes {
                state.record_change(&id, edit.earliest_time());
            }
            applied.edits.push((id, edit));
        }
    }
}

/// Where a batch of rows being applied came from.
#[derive(Clone, Copy)]
pub(crate) enum RowsOrigin {
    /// This node's own write, just committed: its rows count as this node's to flush.
    OwnWrite,
    /// A record of the log; `deduplicate`: drop rows whose token was already applied (the local WAL's
    /// replay keeps them, as they were acknowledged).
    Log { deduplicate: bool },
}

/// Adds a write's encoded rows to the state; how many were added. A row whose uniqueness token was
/// applied within its window before is a duplicate — the same on every node, which apply the same records
/// in the same order — and is dropped.
pub(crate) fn apply_rows(
    state: &mut State,
    tokens: &mut TokenIndex,
    id: &CollectionId,
    rows: arrow::record_batch::RecordBatch,
    row_tokens: &[(u32, String)],
    origin: RowsOrigin,
    record_changes: bool,
) -> usize {
    let deduplicate = match origin {
        RowsOrigin::OwnWrite => true,
        RowsOrigin::Log { deduplicate } => deduplicate,
    };
    let rows = if row_tokens.is_empty() {
        rows
    } else {
        let created_at = rows
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMillisecondArray>()
            .expect("the second fixed column is keen.created_at")
            .clone();
        let index = tokens.entry(id.clone()).or_default();
        let mut keep = vec![true; rows.num_rows()];
        for (row, token) in row_tokens {
            let row = *row as usize;
            let created_at_millis = created_at.value(row);
            let duplicate = index.get(token).is_some_and(|first_seen| {
                created_at_millis - first_seen < UNIQUENESS_WINDOW_MILLIS
            });
            if duplicate {
                keep[row] = !deduplicate;
            } else {
                index.insert(token.clone(), created_at_millis);
            }
        }
        if keep.iter().all(|kept| *kept) {
            rows
        } else {
            arrow::compute::filter_record_batch(&rows, &arrow::array::BooleanArray::from(keep))
                .expect("a mask as long as the batch filters it")
        }
    };
    let added = rows.num_rows();
    if added == 0 {
        return 0;
    }
    let earliest = arrow::compute::min(
        rows.column(0)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMillisecondArray>()
            .expect("the first fixed column is keen.timestamp"),
    )
    .unwrap_or(i64::MIN);
    state.collection_mut(id).append_batch(rows);
    state.rows_added(match origin {
        RowsOrigin::OwnWrite => added,
        RowsOrigin::Log { .. } => 0,
    });
    if record_changes {
        state.record_change(id, earliest);
    }
    added
}

/// Applies one shared record, which must be the one after the last applied (a gap means records this node
/// never applied were removed: an error, never skipped). `maintenance_reflected_through`: maintenance
/// records at or below it are already in the state (it was loaded from a checkpoint that far) and are
/// skipped.
pub(crate) fn apply_record(
    state: &mut State,
    tokens: &mut TokenIndex,
    record: &SharedRecord,
    maintenance_reflected_through: u64,
    record_changes: bool,
) -> io::Result<Applied> {
    if record.sequence != state.applied_sequence + 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the shared log has no record {} (the next is {}): records this node never applied were removed",
                state.applied_sequence + 1,
                record.sequence
            ),
        ));
    }
    let mut applied = Applied::default();
    let is_maintenance = record.kind != KIND_ENTRIES && record.kind != KIND_ROWS;
    if is_maintenance && record.sequence <= maintenance_reflected_through {
        state.applied_sequence = state.applied_sequence.max(record.sequence);
        return Ok(applied);
    }
    match record.kind.as_str() {
        KIND_ENTRIES | KIND_ROWS => {
            for entry in crate::wal::decode_entries(&record.payload)? {
                apply_entry(state, tokens, entry, record_changes, true, &mut applied);
            }
        }
        KIND_ROTATE => state.start_flushing(),
        KIND_FLUSHED => {
            let flushed: Flushed = parse_payload(record)?;
            for (id, files) in flushed.files {
                match state.collections.get_mut(&id) {
                    // Rows of this collection were being flushed: the files hold them.
                    Some(collection) if !collection.flushing.is_empty() => {
                        applied.added_files.extend(files.iter().cloned());
                        collection.files.extend(files);
                    }
                    // Deleted (and perhaps made again) since the rotate: the files must not come back.
                    _ => applied.rejected_files.extend(files),
                }
            }
            for collection in state.collections.values_mut() {
                collection.flushing.clear();
                collection.batches_changed();
            }
            state.flushed_sequence = flushed.through;
        }
        KIND_SWAPPED => {
            let swapped: Swapped = parse_payload(record)?;
            let present = state
                .collections
                .get(&swapped.collection)
                .is_some_and(|collection| {
                    swapped
                        .replaced
                        .iter()
                        .all(|(old, _)| collection.files.contains(old))
                });
            if present {
                let collection = state
                    .collections
                    .get_mut(&swapped.collection)
                    .expect("checked present");
                for (old, new) in &swapped.replaced {
                    collection.files.retain(|file| file != old);
                    collection.files.extend(new.clone());
                    applied.added_files.extend(new.clone());
                }
                applied.swapped = true;
            } else {
                applied
                    .rejected_files
                    .extend(swapped.replaced.into_iter().filter_map(|(_, new)| new));
            }
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the shared log holds a record of unknown kind {other:?}; a newer keyhole wrote it"
                ),
            ));
        }
    }
    state.applied_sequence = record.sequence;
    Ok(applied)
}

fn parse_payload<T: serde::de::DeserializeOwned>(record: &SharedRecord) -> io::Result<T> {
    serde_json::from_slice(&record.payload).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "shared log record {} does not parse: {error}",
                record.sequence
            ),
        )
    })
}

/// Serializes a maintenance payload.
pub(crate) fn payload_of<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("payloads serialize")
}
