//! What the engine's handles ask of its writer thread (`writer`), and what a write answers per event.
//! The writer takes these from one queue and answers each through its own channel.

use std::io;

use keyhole_model::PreparedEvent;
use tokio::sync::oneshot;

use crate::manifest::{CollectionId, DataFile};
use crate::records::Applied;
use crate::row_edit::RowEdit;

/// Whether one event of a write was stored, dropped as a duplicate of an earlier uniqueness token, or
/// refused because it would give its collection more property columns than the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored: durable and visible.
    Stored,
    /// Already stored (its `keen.uniqueness_token` was seen): not stored again.
    Duplicate,
    /// Refused: it would give its collection more property columns than its cap.
    TooManyColumns,
}

pub(crate) enum Command {
    Write {
        collection: CollectionId,
        events: Vec<PreparedEvent>,
        reply: oneshot::Sender<io::Result<Vec<WriteOutcome>>>,
    },
    DeleteCollection {
        collection: CollectionId,
        reply: oneshot::Sender<io::Result<Vec<DataFile>>>,
    },
    /// Delete events or a property (see `deletes`); answers the rows (or cells) removed from memory.
    Edit {
        collection: CollectionId,
        edit: RowEdit,
        reply: oneshot::Sender<io::Result<usize>>,
    },
    /// Start a new WAL segment and move every buffered row to "flushing"; answers the last sequence
    /// number those rows came from. With a shared log, a `rotate` record (fenced by the maintenance
    /// lease) does it on every node.
    Rotate {
        reply: oneshot::Sender<io::Result<u64>>,
    },
    /// Shared log only: append a maintenance record (fenced by the lease) and apply the log through it;
    /// answers what applying it did.
    Maintenance {
        kind: &'static str,
        payload: Vec<u8>,
        reply: oneshot::Sender<io::Result<Applied>>,
    },
    /// Shared log only: apply what other nodes appended.
    CatchUp,
    Stop,
}
