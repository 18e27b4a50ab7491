//! Several nodes sharing one event store. The durable record of every change is a log kept in the
//! metadata database ([`SharedLog`], `storage_log` in PostgreSQL); Parquet files live in a shared object
//! store. Every node applies the log, in sequence order, to its own in-memory [`State`], so every node
//! holds every acknowledged event: what was flushed as files (listed by the log), the rest as rows.
//!
//! Records: `entries` (a group commit of one node: events, deletes, in the WAL's record encoding),
//! `rotate` (rows written so far start being flushed), `flushed` (the files holding the rows of the last
//! rotate; they replace those rows), `swapped` (files replaced by a compaction or a delete's rewrite).
//! The last three are maintenance records, appended only by the node holding the maintenance lease (and
//! fenced by it), so rotate → flushed pairs never interleave.
//!
//! A checkpoint — the manifest of a node's state and the sequence through which it reflects the log — is
//! stored after each maintenance step. A node starting up loads it and applies the records after the
//! checkpoint's `flushed_sequence`: `entries` records are applied again (their rows were not in files
//! yet; deletes re-apply harmlessly), maintenance records only past the checkpoint's sequence.
//!
//! Design: this is the group-commit WAL of one node moved into a shared, ordered table, so an
//! acknowledged event is on the database's disk (PostgreSQL's fsync) before its 2xx and survives the
//! loss of the node that took it; the same state machine runs on every node, so flushing and compaction
//! are decisions recorded in the log rather than coordinated by messages.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use keyhole_model::reload_event;
use serde::{Deserialize, Serialize};

use crate::deletes::RowEdit;
use crate::manifest::{CollectionId, DataFile};
use crate::state::State;
use crate::wal::WalEntry;
use crate::writer::TokenIndex;

/// A boxed future, as the shared log's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The lease a node holds while it flushes, compacts or rewrites files.
pub const MAINTENANCE_LEASE: &str = "maintenance";

/// One record of the shared log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRecord {
    /// The record's place in the log.
    pub sequence: u64,
    /// What the record is (`entries`, `rotate`, `flushed`, `swapped`).
    pub kind: String,
    /// The record's bytes.
    pub payload: Vec<u8>,
}

/// The shared, ordered log and its checkpoint (implemented over the metadata database).
pub trait SharedLog: Send + Sync + 'static {
    /// Appends a record; its sequence. `fenced`: only while this node holds [`MAINTENANCE_LEASE`]
    /// (`None` when it does not).
    fn append<'a>(
        &'a self,
        kind: &'a str,
        payload: Vec<u8>,
        fenced: bool,
    ) -> BoxFuture<'a, io::Result<Option<u64>>>;
    /// Up to `limit` records after `after`, oldest first.
    fn read_after(&self, after: u64, limit: usize) -> BoxFuture<'_, io::Result<Vec<SharedRecord>>>;
    /// The stored checkpoint: the sequence it reflects and the manifest JSON.
    fn checkpoint(&self) -> BoxFuture<'_, io::Result<Option<(u64, String)>>>;
    /// Stores a checkpoint unless a newer one is stored.
    fn store_checkpoint(
        &self,
        applied_through: u64,
        manifest: String,
    ) -> BoxFuture<'_, io::Result<()>>;
    /// Deletes records through `sequence` (the newest is always kept).
    fn truncate_through(&self, sequence: u64) -> BoxFuture<'_, io::Result<()>>;
    /// Takes or renews the maintenance lease for `ttl_millis`; whether this node holds it.
    fn try_lease(&self, ttl_millis: i64) -> BoxFuture<'_, io::Result<bool>>;
    /// Gives the maintenance lease up.
    fn release_lease(&self) -> BoxFuture<'_, io::Result<()>>;
}

/// A shared log in a configuration (which must be `Debug` and `Clone`).
#[derive(Clone)]
pub struct SharedLogHandle(pub Arc<dyn SharedLog>);

impl std::fmt::Debug for SharedLogHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SharedLog")
    }
}

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
                    tokens
                        .entry(id.clone())
                        .or_default()
                        .insert(token, event.created_at_millis);
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
                apply_entry(state, tokens, entry, record_changes, &mut applied);
            }
        }
        KIND_ROTATE => {
            for collection in state.collections.values_mut() {
                collection.seal();
                let sealed = std::mem::take(&mut collection.sealed);
                collection.flushing.extend(sealed);
                collection.batches_changed();
            }
        }
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
