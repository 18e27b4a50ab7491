//! Where the writer commits a group: the node's own WAL (one node), or the shared log (several nodes,
//! see `shared`). Both take entries, commit them as one durable group, and answer only once it is on
//! disk; the shared log also numbers the group, because every node applies groups in that order.

use std::io;
use std::sync::Arc;

use crate::shared::{KIND_ENTRIES, SharedLog};
use crate::wal::{Wal, WalEntry, encode_entries};

pub(crate) enum Journal {
    Local(Wal),
    Shared(SharedJournal),
}

pub(crate) struct SharedJournal {
    pub log: Arc<dyn SharedLog>,
    /// The runtime the writer thread blocks on for the log's database calls.
    pub runtime: tokio::runtime::Handle,
    pending: Vec<u8>,
}

impl SharedJournal {
    pub(crate) fn new(log: Arc<dyn SharedLog>, runtime: tokio::runtime::Handle) -> SharedJournal {
        SharedJournal {
            log,
            runtime,
            pending: Vec::new(),
        }
    }
}

impl Journal {
    pub(crate) fn append(&mut self, entry: &WalEntry) {
        match self {
            Journal::Local(wal) => {
                wal.append(entry);
            }
            Journal::Shared(shared) => shared
                .pending
                .extend(encode_entries(std::slice::from_ref(entry))),
        }
    }

    /// Makes the appended entries durable. With the shared log, the sequence of the group's record
    /// (`None` when nothing was appended).
    pub(crate) fn commit(&mut self) -> io::Result<Option<u64>> {
        match self {
            Journal::Local(wal) => wal.commit().map(|()| None),
            Journal::Shared(shared) => {
                if shared.pending.is_empty() {
                    return Ok(None);
                }
                let payload = std::mem::take(&mut shared.pending);
                let sequence =
                    shared
                        .runtime
                        .block_on(shared.log.append(KIND_ENTRIES, payload, false))?;
                Ok(sequence)
            }
        }
    }

    pub(crate) fn discard_pending(&mut self) {
        match self {
            Journal::Local(wal) => wal.discard_pending(),
            Journal::Shared(shared) => shared.pending.clear(),
        }
    }

    /// Whether later commits may be trusted (see [`Wal::is_consistent`]); a failed append to the shared
    /// log is a rolled-back transaction, so it always is.
    pub(crate) fn is_consistent(&self) -> bool {
        match self {
            Journal::Local(wal) => wal.is_consistent(),
            Journal::Shared(_) => true,
        }
    }

    pub(crate) fn shared(&self) -> Option<&SharedJournal> {
        match self {
            Journal::Local(_) => None,
            Journal::Shared(shared) => Some(shared),
        }
    }
}
