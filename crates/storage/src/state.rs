//! What the engine holds in memory, behind one mutex: for each collection its schema, the rows not yet
//! sealed into a batch, sealed batches, batches being flushed, and its Parquet files. Everything a query
//! may see is here, so moving rows from memory to files is a swap under this lock and no reader can see
//! a row twice or miss one.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use keyhole_model::{FlatEvent, ValueKind};

use crate::columns::RowBuffer;
use crate::manifest::{CollectionId, CollectionManifest, CollectionSchema, DataFile, Manifest};

/// Sealed in-memory batches are merged once there are more than this many.
const MAX_SEALED_BATCHES: usize = 16;
/// The row buffer is sealed into a batch once its values take about this many bytes: its column builders
/// grow by doubling, so what one large write costs beyond its rows stays a few MiB.
const SEAL_BYTES: usize = 8 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct CollectionState {
    /// Distinguishes a collection from a later one of the same name after a delete.
    pub incarnation: u64,
    /// Read through [`CollectionState::schema`]; changed only by this type's methods, which keep
    /// `latest_kinds` true of it.
    schema: CollectionSchema,
    /// Each path's latest kind in `schema`, hashed: the writer checks every property of every event against
    /// it and touches `schema` only when something changes (a walk down the schema's ordered map compared
    /// long shared path prefixes at each step and was the writer thread's largest cost). Entries are added
    /// only after `schema` records them and leave with them ([`CollectionState::retain_properties`]), so an
    /// entry is always true of `schema`; a path missing here is simply checked against `schema`.
    latest_kinds: hashbrown::HashMap<String, ValueKind>,
    pub buffer: RowBuffer,
    pub sealed: Vec<RecordBatch>,
    pub flushing: Vec<RecordBatch>,
    pub files: Vec<DataFile>,
    /// Event times changed, by change version (see `changes`).
    pub changes: crate::changes::ChangeLog,
    /// The bytes of `sealed` and `flushing`, computed when first asked after they changed
    /// ([`CollectionState::batches_changed`]).
    batch_bytes: Option<usize>,
    /// How many batches under [`SEAL_BYTES`] end `sealed`, when known (see [`CollectionState::push_sealed`]).
    small_tail: Option<usize>,
}

/// What the unflushed rows of the engine hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferedSize {
    /// Rows buffered.
    pub rows: usize,
    /// Arrow buffers of sealed and flushing batches plus the row builders' estimate.
    pub bytes: usize,
    /// Rows this node's own writes added since the last rotate.
    pub own_rows: usize,
}

impl CollectionState {
    pub(crate) fn append(&mut self, event: &FlatEvent) {
        for (path, value) in &event.properties {
            let kind = value.kind();
            if self.latest_kinds.get(path.as_str()) == Some(&kind) {
                continue;
            }
            self.schema.record(path, kind);
            match self.latest_kinds.get_mut(path.as_str()) {
                Some(latest) => *latest = kind,
                None => {
                    self.latest_kinds.insert(path.clone(), kind);
                }
            }
        }
        self.buffer.append(event);
        if self.buffer.bytes() >= SEAL_BYTES {
            self.seal();
        }
    }

    /// The collection's schema: every property path and the kinds it has held.
    pub(crate) fn schema(&self) -> &CollectionSchema {
        &self.schema
    }

    /// Keeps the schema's properties whose path `keep` accepts (a deleted property's columns are gone).
    pub(crate) fn retain_properties(&mut self, keep: impl Fn(&str) -> bool) {
        self.schema.properties.retain(|path, _| keep(path));
        self.latest_kinds.retain(|path, _| keep(path));
    }

    /// Whether `schema` already has a `kind` column at `path` (the column cap's check).
    pub(crate) fn has_column(&self, path: &str, kind: ValueKind) -> bool {
        if self.latest_kinds.get(path) == Some(&kind) {
            return true;
        }
        self.schema
            .properties
            .get(path)
            .is_some_and(|property| property.kinds.contains(&kind))
    }

    /// Marks `sealed` or `flushing` as changed, so their bytes are counted again.
    pub(crate) fn batches_changed(&mut self) {
        self.batch_bytes = None;
        self.small_tail = None;
    }

    /// The bytes the collection's unflushed rows hold.
    pub(crate) fn memory_bytes(&mut self) -> usize {
        let batch_bytes = *self.batch_bytes.get_or_insert_with(|| {
            self.sealed
                .iter()
                .chain(&self.flushing)
                .map(crate::row_batches::batch_memory_bytes)
                .sum()
        });
        batch_bytes + self.buffer.bytes()
    }

    /// Adds a batch of encoded rows (`row_batches`) as it is: the columns it holds join the schema, each
    /// path's latest kind being that of its last row, as [`CollectionState::append`] would leave it.
    pub(crate) fn append_batch(&mut self, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        for (path, kind) in crate::row_batches::kinds_in_row_order(&batch) {
            if self.latest_kinds.get(path.as_str()) == Some(&kind) {
                continue;
            }
            self.schema.record(&path, kind);
            self.latest_kinds.insert(path, kind);
        }
        // Rows buffered before this batch stay before it.
        self.seal();
        self.push_sealed(batch);
    }

    /// Seals the row buffer so its rows are readable as a batch.
    pub(crate) fn seal(&mut self) {
        let Some(batch) = self.buffer.take_batch() else {
            return;
        };
        self.push_sealed(batch);
    }

    /// Adds a sealed batch. Once more than [`MAX_SEALED_BATCHES`] small ones (under [`SEAL_BYTES`]) follow
    /// the last large one, they are merged into one: queries do not walk thousands of small batches (one
    /// per group commit with a shared log), and rows are copied a few times at most before they sit in a
    /// large batch, instead of every batch being merged again each time.
    fn push_sealed(&mut self, batch: RecordBatch) {
        // Counted as it comes, not by walking every batch again: this runs for every group commit.
        let added_bytes = crate::row_batches::batch_memory_bytes(&batch);
        let small_tail = match self.small_tail {
            Some(known) => known,
            None => self
                .sealed
                .iter()
                .rev()
                .take_while(|batch| crate::row_batches::batch_memory_bytes(batch) < SEAL_BYTES)
                .count(),
        };
        let small_tail = if added_bytes < SEAL_BYTES {
            small_tail + 1
        } else {
            0
        };
        self.sealed.push(batch);
        self.batch_bytes = self.batch_bytes.map(|bytes| bytes + added_bytes);
        self.small_tail = Some(small_tail);
        if small_tail <= MAX_SEALED_BATCHES {
            return;
        }
        self.batches_changed();
        let schema = crate::columns::schema_with_columns(&self.schema.column_names());
        let first_small = self.sealed.len() - small_tail;
        let conformed: Vec<RecordBatch> = self.sealed[first_small..]
            .iter()
            .map(|batch| crate::columns::conform_batch(batch, &schema))
            .collect();
        let merged = arrow::compute::concat_batches(&schema, &conformed)
            .expect("batches conformed to one schema concatenate");
        self.sealed.truncate(first_small);
        self.sealed.push(merged);
    }

    pub(crate) fn memory_rows(&self) -> usize {
        self.buffer.len() + self.sealed.iter().map(RecordBatch::num_rows).sum::<usize>()
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub flushed_sequence: u64,
    /// With a shared log (`shared`): the sequence of the last record applied.
    pub applied_sequence: u64,
    /// Counts changes to any collection (see `changes`); not persisted.
    pub change_version: u64,
    /// With a shared log: records before one of this node's own groups could not be read, so that group
    /// was refused here and the state lacks records the log holds until the next catch-up applies them.
    /// Reads are refused meanwhile rather than answered short.
    pub behind_log: bool,
    /// Rows this node's own writes added since the last rotate: with a shared log, the node that takes
    /// events is the one that flushes them (see `maintenance`).
    pub own_unflushed_rows: usize,
    /// When the first row since the last rotate was added, from whichever node.
    pub unflushed_since: Option<std::time::Instant>,
    pub collections: BTreeMap<CollectionId, CollectionState>,
    next_incarnation: u64,
}

impl State {
    pub(crate) fn from_manifest(manifest: Manifest) -> State {
        let mut state = State {
            flushed_sequence: manifest.flushed_sequence,
            ..State::default()
        };
        for collection in manifest.collections {
            let entry = state.collection_mut(&collection.id);
            entry.schema = collection.schema;
            entry.files = collection.files;
        }
        state
    }

    pub(crate) fn collection_mut(&mut self, id: &CollectionId) -> &mut CollectionState {
        if !self.collections.contains_key(id) {
            self.next_incarnation += 1;
            let mut fresh = CollectionState {
                incarnation: self.next_incarnation,
                ..Default::default()
            };
            // A collection that did not exist before changed everywhere for any earlier reader.
            self.change_version += 1;
            fresh.changes.record(self.change_version, i64::MIN);
            self.collections.insert(id.clone(), fresh);
        }
        self.collections.get_mut(id).expect("inserted above")
    }

    /// Records that `id`'s events from `earliest` on changed (see `changes`).
    pub(crate) fn record_change(&mut self, id: &CollectionId, earliest: i64) {
        self.change_version += 1;
        let version = self.change_version;
        if let Some(collection) = self.collections.get_mut(id) {
            collection.changes.record(version, earliest);
        }
    }

    /// Forgets a collection; returns the files that held its events.
    pub(crate) fn remove_collection(&mut self, id: &CollectionId) -> Vec<DataFile> {
        self.change_version += 1;
        self.collections
            .remove(id)
            .map(|collection| collection.files)
            .unwrap_or_default()
    }

    /// Notes that rows were added, `own` of them by this node's writes.
    pub(crate) fn rows_added(&mut self, own: usize) {
        self.own_unflushed_rows += own;
        self.unflushed_since
            .get_or_insert_with(std::time::Instant::now);
    }

    /// Seals every collection's rows and moves every sealed batch to "flushing" (a rotate).
    pub(crate) fn start_flushing(&mut self) {
        self.own_unflushed_rows = 0;
        self.unflushed_since = None;
        for collection in self.collections.values_mut() {
            collection.seal();
            let sealed = std::mem::take(&mut collection.sealed);
            collection.flushing.extend(sealed);
            collection.batches_changed();
        }
    }

    pub(crate) fn memory_rows(&self) -> usize {
        self.collections
            .values()
            .map(CollectionState::memory_rows)
            .sum()
    }

    /// Rows and bytes of every collection's unflushed rows (those being flushed included).
    pub(crate) fn memory_size(&mut self) -> BufferedSize {
        let mut size = BufferedSize {
            own_rows: self.own_unflushed_rows,
            ..BufferedSize::default()
        };
        for collection in self.collections.values_mut() {
            size.rows += collection.memory_rows();
            size.bytes += collection.memory_bytes();
        }
        size
    }

    /// The manifest describing this state's files and schemas.
    pub(crate) fn to_manifest(&self) -> Manifest {
        Manifest {
            version: crate::manifest::MANIFEST_FORMAT,
            flushed_sequence: self.flushed_sequence,
            collections: self
                .collections
                .iter()
                .map(|(id, collection)| CollectionManifest {
                    id: id.clone(),
                    schema: collection.schema.clone(),
                    files: collection.files.clone(),
                })
                .collect(),
        }
    }
}
