//! Where the engine makes each change durable before it is acknowledged, and where it finds them again:
//! the [`Journal`] trait. The writer thread hands it each group commit; the maintenance procedures
//! (`maintenance`, `deletes`) hand it each flush and file swap; opening the engine recovers the state
//! from it. Two journals implement it:
//!
//! - `LocalJournal` (`local_journal`): one node's WAL and manifest in its data directory (`wal`, `manifest`). A flush
//!   stores the manifest and drops the WAL segments it covers.
//! - `LogJournal` (`log_journal`): a shared, ordered log that several nodes append to and apply in sequence order
//!   (see `shared`): the PostgreSQL log in production, the in-memory log in tests. A flush or swap is a
//!   record every node applies; the maintenance lease fences who may append one.
//!
//! Design: the engine's code has no "if shared" — each place where one node and many differ is a method
//! here, and the storage suite (`tests.rs`) runs over every journal. The trait is object-safe (async
//! methods return [`BoxFuture`]) so the engine holds one `Arc<dyn Journal>` chosen at open.

use std::io;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::commands::Command;
use crate::config::Result;
use crate::manifest::{CollectionId, DataFile};
use crate::objects::ObjectFiles;
use crate::records::Applied;
use crate::row_edit::RowEdit;
use crate::shared::BoxFuture;
use crate::state::State;
use crate::tokens::TokenIndex;
use crate::wal::WalEntry;

/// The state a journal recovered at open, and what the engine must finish before it serves.
pub(crate) struct Recovered {
    pub state: State,
    pub tokens: TokenIndex,
    /// Deletes replayed into memory whose files must be rewritten before the engine serves.
    pub edits: Vec<(CollectionId, RowEdit)>,
}

/// What applying journal records on the writer thread did that the writer must act on.
#[derive(Default)]
pub(crate) struct Followed {
    /// What applying the record a call was about did (a rotate or maintenance record).
    pub last: Option<Applied>,
    /// Files the applied records added to the state (to fetch ahead of the reads).
    pub added_files: Vec<DataFile>,
    /// Whether any record was applied (the buffered rows changed).
    pub applied_any: bool,
}

/// The outcome of asking for the right to flush, compact or rewrite files.
pub(crate) enum Lease {
    /// This journal has one writer: the engine's local lock suffices.
    NotNeeded,
    /// Held until the value is dropped.
    Held(Box<dyn Send + Sync>),
    /// Another node holds it (only when not asked to wait).
    Busy,
}

/// What a journal reaches of the engine for its maintenance steps.
#[derive(Clone, Copy)]
pub(crate) struct EngineParts<'a> {
    pub state: &'a Mutex<State>,
    pub objects: &'a ObjectFiles,
    /// The writer thread's queue (a shared log's maintenance records are appended and applied there).
    pub commands: &'a mpsc::Sender<Command>,
}

/// One flush's new files per collection, with the collection's incarnation when its rows were read.
pub(crate) type WrittenFiles = Vec<(CollectionId, u64, Vec<DataFile>)>;

/// Where changes are made durable (see the module documentation).
pub(crate) trait Journal: Send + Sync + 'static {
    /// Starts applying, in the background, what other writers append (until `commands` closes).
    fn follow_others(&self, commands: mpsc::WeakSender<Command>);

    /// Whether other nodes share this journal (a shared log): then the nodes that took the buffered events
    /// flush them, and another node only takes over when they let them wait (see `maintenance`).
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether writes are staged as encoded rows (`WalEntry::Rows`, for other nodes to take as they are)
    /// rather than as their events' JSON (what a local WAL replays).
    fn carries_rows(&self) -> bool {
        false
    }

    /// Stages an entry of the writer's current group.
    fn append(&self, entry: &WalEntry);
    /// Makes the staged entries durable as one group; with a shared log, the group's sequence (`None`
    /// when nothing was staged or the journal does not number groups).
    fn commit(&self) -> io::Result<Option<u64>>;
    /// Drops the staged entries (their writes are refused).
    fn discard_pending(&self);
    /// Whether later commits may be trusted after a failed one (see `Wal::is_consistent`).
    fn is_consistent(&self) -> bool;
    /// Applies records other writers appended, through `through` (writer thread).
    fn apply_through(
        &self,
        through: u64,
        state: &Mutex<State>,
        tokens: &mut TokenIndex,
    ) -> io::Result<Followed>;
    /// Starts a flush: every buffered row moves to "flushing"; the sequence those rows came through.
    fn rotate(&self, state: &Mutex<State>, tokens: &mut TokenIndex) -> io::Result<(u64, Followed)>;
    /// Appends a maintenance record (fenced by the lease) and applies the log through it.
    fn append_maintenance(
        &self,
        kind: &'static str,
        payload: Vec<u8>,
        state: &Mutex<State>,
        tokens: &mut TokenIndex,
    ) -> io::Result<Followed>;

    /// Takes the right to flush, compact or rewrite files. `wait`: wait for another node's maintenance to
    /// end (up to a minute) rather than answer [`Lease::Busy`].
    fn lease<'a>(&'a self, wait: bool, parts: EngineParts<'a>) -> BoxFuture<'a, Result<Lease>>;
    /// Waits for background work a previous lease left (its release), so the process may exit.
    fn settle(&self) -> BoxFuture<'_, ()>;
    /// Records a finished flush: `written` replaces the rows rotated through `through`.
    fn commit_flush<'a>(
        &'a self,
        parts: EngineParts<'a>,
        through: u64,
        written: WrittenFiles,
    ) -> BoxFuture<'a, Result<()>>;
    /// Swaps each old file of `collection` for its replacement (none: its rows are gone) if the
    /// collection is still `incarnation` and lists every old file; whether it swapped. Replacements not
    /// swapped in are deleted; the old files after the grace period.
    fn commit_swap<'a>(
        &'a self,
        parts: EngineParts<'a>,
        collection: &'a CollectionId,
        incarnation: u64,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> BoxFuture<'a, Result<bool>>;
    /// Stores the state as the point recovery starts from (the manifest, or the log's checkpoint).
    fn store_state<'a>(&'a self, parts: EngineParts<'a>) -> BoxFuture<'a, Result<()>>;
    /// Deletes the files a collection delete removed from the state (at once, or after the grace period
    /// when other nodes may still be reading them).
    fn retire_files<'a>(
        &'a self,
        parts: EngineParts<'a>,
        files: Vec<DataFile>,
    ) -> BoxFuture<'a, ()>;
}
