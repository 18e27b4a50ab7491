//! The records of a shared log (see `shared`) and how a node applies them to its state: `entries` (one
//! group commit: events, deletes, in the WAL's record encoding), `rotate`, `flushed` and `swapped`. The
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

pub(crate) const KIND_ENTRIES: &str = "entries";
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
            }
            if record_changes {
                state.record_change(&id, earliest);
            }
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
    let is_maintenance = record.kind != KIND_ENTRIES;
    if is_maintenance && record.sequence <= maintenance_reflected_through {
        state.applied_sequence = state.applied_sequence.max(record.sequence);
        return Ok(applied);
    }
    match record.kind.as_str() {
        KIND_ENTRIES => {
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
