//! The single writer: one OS thread owns the WAL. Request handlers send it commands; it takes everything
//! queued, appends it to the WAL, fsyncs once for the whole group (group commit), applies the group to the
//! in-memory state so the next query sees it, and only then answers each sender. It also drops events
//! whose `keen.uniqueness_token` was already stored in the same collection within Keen's 31-day window.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};

use keyhole_model::PreparedEvent;
use tokio::sync::{mpsc, oneshot};

use crate::commands::{Command, WriteOutcome};
use crate::journal::{Followed, Journal};
use crate::manifest::{CollectionId, DataFile};
use crate::records::Applied;
use crate::row_edit::RowEdit;
use crate::state::State;
use crate::tokens::{TokenIndex, UNIQUENESS_WINDOW_MILLIS};
use crate::wal::WalEntry;

/// Most commands taken into one group commit.
const MAX_GROUP_COMMANDS: usize = 4096;

pub(crate) struct Writer {
    pub metrics: crate::metrics::StorageMetrics,
    pub journal: Arc<dyn Journal>,
    /// Most `{path}#{kind}` columns a collection may have; an event adding columns past it is refused.
    pub max_columns_per_collection: usize,
    /// Uniqueness tokens of the events applied (in the shared log, by every node alike).
    pub tokens: TokenIndex,
    /// Tokens of this node's staged groups not yet applied: a duplicate within them is refused at once;
    /// whether they are duplicates of another node's events is decided when the group is applied.
    pub staged_tokens: HashMap<CollectionId, HashSet<String>>,
    pub state: Arc<Mutex<State>>,
    /// Called after each group is applied, with what is now buffered in memory.
    pub on_applied: Box<dyn Fn(crate::state::BufferedSize) + Send>,
    /// Shared log: called with the files that records from the log added (to fetch them ahead of reads).
    pub on_files_added: Box<dyn Fn(Vec<DataFile>) + Send>,
    /// Set when a failed commit could not be undone (`Wal::is_consistent`): what follows in the segment
    /// is unknown, so nothing more is acknowledged until a restart replays the log.
    pub broken: bool,
}

/// The events of a staged write, in the form the journal stages them.
enum StagedRows {
    /// Appended to memory row by row when applied (a local WAL, which holds the events' JSON).
    Events(Vec<PreparedEvent>),
    /// The write's encoded rows, as the shared log carries them: added to memory as they are.
    Rows {
        rows: arrow::record_batch::RecordBatch,
        tokens: Vec<(u32, String)>,
        json_bytes: u64,
    },
}

/// A command whose WAL record is written but not yet committed.
enum Staged {
    Write {
        collection: CollectionId,
        stored: StagedRows,
        outcomes: Vec<WriteOutcome>,
        new_tokens: Vec<(String, i64)>,
        reply: oneshot::Sender<io::Result<Vec<WriteOutcome>>>,
    },
    Delete {
        collection: CollectionId,
        reply: oneshot::Sender<io::Result<Vec<DataFile>>>,
    },
    Edit {
        collection: CollectionId,
        edit: RowEdit,
        reply: oneshot::Sender<io::Result<usize>>,
    },
}

impl Writer {
    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP_COMMANDS {
                let Ok(next) = commands.try_recv() else { break };
                group.push(next);
            }
            if !self.process_group(group) {
                break;
            }
        }
        tracing::debug!("wal writer stopped");
    }

    /// Returns false once told to stop.
    fn process_group(&mut self, group: Vec<Command>) -> bool {
        let mut staged = Vec::new();
        let mut admissions = self.admit_columns(&group).into_iter();
        for command in group {
            match command {
                Command::Write {
                    collection,
                    events,
                    reply,
                } => {
                    let admitted = admissions.next().unwrap_or_default();
                    staged.push(self.stage_write(collection, events, admitted, reply));
                }
                Command::DeleteCollection { collection, reply } => {
                    self.journal.append(&WalEntry::DeleteCollection {
                        project: collection.project.clone(),
                        collection: collection.collection.clone(),
                    });
                    staged.push(Staged::Delete { collection, reply });
                }
                Command::Edit {
                    collection,
                    edit,
                    reply,
                } => {
                    self.journal.append(&edit.wal_entry(&collection));
                    staged.push(Staged::Edit {
                        collection,
                        edit,
                        reply,
                    });
                }
                Command::Rotate { reply } => {
                    self.commit_and_apply(std::mem::take(&mut staged));
                    let _ = reply.send(self.rotate());
                    let dropped = crate::tokens::prune_tokens(
                        &mut self.tokens,
                        chrono::Utc::now().timestamp_millis(),
                    );
                    if dropped > 0 {
                        tracing::debug!(dropped, "uniqueness tokens past the window dropped");
                    }
                }
                Command::Maintenance {
                    kind,
                    payload,
                    reply,
                } => {
                    self.commit_and_apply(std::mem::take(&mut staged));
                    let _ = reply.send(self.append_maintenance(kind, payload));
                }
                Command::CatchUp => {
                    self.commit_and_apply(std::mem::take(&mut staged));
                    self.catch_up_with_others();
                }
                Command::Stop => {
                    self.commit_and_apply(staged);
                    return false;
                }
            }
        }
        self.commit_and_apply(staged);
        true
    }

    /// For each write of the group, which of its events fit under the column cap (`column_cap`).
    fn admit_columns(&self, group: &[Command]) -> Vec<Vec<bool>> {
        let writes: Vec<(&CollectionId, &[PreparedEvent])> = group
            .iter()
            .filter_map(|command| match command {
                Command::Write {
                    collection, events, ..
                } => Some((collection, events.as_slice())),
                _ => None,
            })
            .collect();
        if writes.is_empty() {
            return Vec::new();
        }
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::column_cap::admit_group(&state, &writes, self.max_columns_per_collection)
    }

    fn stage_write(
        &mut self,
        collection: CollectionId,
        events: Vec<PreparedEvent>,
        admitted: Vec<bool>,
        reply: oneshot::Sender<io::Result<Vec<WriteOutcome>>>,
    ) -> Staged {
        let mut outcomes = Vec::with_capacity(events.len());
        let mut stored_events = Vec::with_capacity(events.len());
        let mut new_tokens: Vec<(String, i64)> = Vec::new();
        let mut tokens_in_this_write = HashSet::new();
        let known_tokens = self.tokens.get(&collection);
        let staged_tokens = self.staged_tokens.get(&collection);
        for (event, admitted) in events.into_iter().zip(admitted) {
            if !admitted {
                outcomes.push(WriteOutcome::TooManyColumns);
                continue;
            }
            if let Some(token) = &event.uniqueness_token {
                let created_at = event.flat.created_at_millis;
                let seen_before = known_tokens
                    .and_then(|tokens| tokens.get(token))
                    .is_some_and(|first_seen| created_at - first_seen < UNIQUENESS_WINDOW_MILLIS)
                    || staged_tokens.is_some_and(|staged| staged.contains(token));
                if seen_before || !tokens_in_this_write.insert(token.clone()) {
                    outcomes.push(WriteOutcome::Duplicate);
                    continue;
                }
                new_tokens.push((token.clone(), created_at));
            }
            outcomes.push(WriteOutcome::Stored);
            stored_events.push(event);
        }
        // Staged tokens count as seen at once, so a duplicate later in the same group is caught too; they
        // are taken back if the commit fails, and become applied tokens when the group is applied.
        if !new_tokens.is_empty() {
            let staged = self.staged_tokens.entry(collection.clone()).or_default();
            for (token, _) in &new_tokens {
                staged.insert(token.clone());
            }
        }
        let stored = self.stage_events(&collection, stored_events);
        Staged::Write {
            collection,
            stored,
            outcomes,
            new_tokens,
            reply,
        }
    }

    /// Appends a write's stored events to the journal's group, as encoded rows when the journal carries
    /// them (built once here; every node adds the same batch) or as their JSON.
    fn stage_events(
        &mut self,
        collection: &CollectionId,
        stored_events: Vec<PreparedEvent>,
    ) -> StagedRows {
        if stored_events.is_empty() {
            return StagedRows::Events(stored_events);
        }
        if !self.journal.carries_rows() {
            self.journal.append(&WalEntry::Events {
                project: collection.project.clone(),
                collection: collection.collection.clone(),
                events: stored_events
                    .iter()
                    .map(|event| event.json.clone()) // a reference count, not a copy
                    .collect(),
            });
            return StagedRows::Events(stored_events);
        }
        let mut buffer = crate::columns::RowBuffer::default();
        let mut tokens = Vec::new();
        let mut json_bytes = 0u64;
        for (row, event) in stored_events.into_iter().enumerate() {
            buffer.append(&event.flat);
            json_bytes += event.json.len() as u64;
            if let Some(token) = event.uniqueness_token {
                tokens.push((row as u32, token));
            }
        }
        let rows = buffer
            .take_batch()
            .expect("at least one event was appended");
        self.journal.append(&WalEntry::Rows {
            project: collection.project.clone(),
            collection: collection.collection.clone(),
            rows: rows.clone(),
            tokens: tokens.clone(),
        });
        StagedRows::Rows {
            rows,
            tokens,
            json_bytes,
        }
    }

    fn commit_and_apply(&mut self, staged: Vec<Staged>) {
        if staged.is_empty() {
            return;
        }
        if self.broken {
            self.journal.discard_pending();
            self.refuse(
                staged,
                &io::Error::other("the write-ahead log failed earlier; restart keyhole"),
            );
            return;
        }
        let started = std::time::Instant::now();
        let committed = self.journal.commit();
        self.metrics
            .wal_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let group_sequence = match committed {
            Ok(sequence) => sequence,
            Err(error) => {
                // The WAL undid the failed write; writes resume as soon as one commits (space freed).
                // Only a failure it could not undo stops writes until a restart.
                self.broken = !self.journal.is_consistent();
                tracing::warn!(%error, broken = self.broken, "wal commit failed; this group's writes are refused");
                self.refuse(staged, &error);
                return;
            }
        };
        // With a shared log, what other nodes committed before this group is applied first, so every
        // node applies the same records in the same order.
        // If they cannot be read now (the log's database is unreachable), this group, committed to the log,
        // is refused here and not applied: the next catch-up applies it from the log with everything
        // before it, as any record, and until then this node refuses reads instead of answering short.
        if let Some(sequence) = group_sequence
            && let Err(error) = self.apply_others_through(sequence - 1)
        {
            self.state.lock().expect("state lock").behind_log = true;
            tracing::warn!(%error, "cannot apply the shared log before this node's group; the group is refused here and applied from the log at the next catch-up");
            let refusal = io::Error::new(
                error.kind(),
                format!(
                    "this node cannot read the shared log ({error}); the write may still be stored, so retry it with the same Idempotency-Key or uniqueness token"
                ),
            );
            self.refuse(staged, &refusal);
            return;
        }
        let mut replies = Vec::with_capacity(staged.len());
        let state_handle = self.state.clone();
        let buffered_rows = {
            let mut state = state_handle.lock().expect("state lock");
            for item in staged {
                match item {
                    Staged::Write {
                        collection,
                        stored,
                        outcomes,
                        new_tokens,
                        reply,
                    } => {
                        if !new_tokens.is_empty()
                            && let Some(staged) = self.staged_tokens.get_mut(&collection)
                        {
                            for (token, _) in &new_tokens {
                                staged.remove(token);
                            }
                        }
                        match stored {
                            StagedRows::Events(events) => {
                                self.apply_own_events(&mut state, &collection, events, &new_tokens);
                            }
                            StagedRows::Rows {
                                rows,
                                tokens,
                                json_bytes,
                            } => {
                                self.metrics.ingested_events.inc_by(rows.num_rows() as u64);
                                self.metrics.ingested_bytes.inc_by(json_bytes);
                                crate::records::apply_rows(
                                    &mut state,
                                    &mut self.tokens,
                                    &collection,
                                    rows,
                                    &tokens,
                                    crate::records::RowsOrigin::OwnWrite,
                                    true,
                                );
                            }
                        }
                        replies.push(Reply::Write(reply, outcomes));
                    }
                    Staged::Delete { collection, reply } => {
                        self.tokens.remove(&collection);
                        replies.push(Reply::Delete(reply, state.remove_collection(&collection)));
                    }
                    Staged::Edit {
                        collection,
                        edit,
                        reply,
                    } => {
                        let removed = state
                            .collections
                            .get_mut(&collection)
                            .map_or(0, |target| edit.apply_to_memory(target));
                        state.record_change(&collection, edit.earliest_time());
                        replies.push(Reply::Edit(reply, removed));
                    }
                }
            }
            if let Some(sequence) = group_sequence {
                state.applied_sequence = sequence;
                // Everything before this group was just applied, earlier refused groups included.
                state.behind_log = false;
            }
            state.memory_size()
        };
        // The memory budget counts the group before anyone hears it was stored: a write that follows an
        // acknowledged one is admitted (or held back) knowing what that one added.
        self.metrics.buffered_rows.set(buffered_rows.rows as i64);
        (self.on_applied)(buffered_rows);
        for reply in replies {
            match reply {
                Reply::Write(sender, outcomes) => drop(sender.send(Ok(outcomes))),
                Reply::Delete(sender, files) => drop(sender.send(Ok(files))),
                Reply::Edit(sender, removed) => drop(sender.send(Ok(removed))),
            }
        }
    }

    /// Appends this node's committed events to memory row by row (a local WAL's group).
    fn apply_own_events(
        &mut self,
        state: &mut State,
        collection: &CollectionId,
        stored_events: Vec<PreparedEvent>,
        new_tokens: &[(String, i64)],
    ) {
        if stored_events.is_empty() {
            return;
        }
        // The applied-token index is touched only for a group that carries tokens.
        let mut index =
            (!new_tokens.is_empty()).then(|| self.tokens.entry(collection.clone()).or_default());
        let target = state.collection_mut(collection);
        let mut earliest = i64::MAX;
        let (count, mut bytes) = (stored_events.len() as u64, 0);
        // Each event is dropped once buffered, so a large write's prepared form shrinks as its buffered
        // form grows instead of both being held at once.
        for event in stored_events {
            // Another node's event with the same token, applied just before this group (in log order,
            // as every node applies them), is the one kept.
            if let (Some(token), Some(index)) = (&event.uniqueness_token, index.as_deref_mut()) {
                let created_at = event.flat.created_at_millis;
                let duplicate = index
                    .get(token)
                    .is_some_and(|first_seen| created_at - first_seen < UNIQUENESS_WINDOW_MILLIS);
                if duplicate {
                    continue;
                }
                index.insert(token.clone(), created_at);
            }
            target.append(&event.flat);
            earliest = earliest.min(event.flat.timestamp_millis);
            bytes += event.json.len() as u64;
        }
        state.rows_added(count as usize);
        state.record_change(collection, earliest);
        self.metrics.ingested_events.inc_by(count);
        self.metrics.ingested_bytes.inc_by(bytes);
    }

    fn refuse(&mut self, staged: Vec<Staged>, error: &io::Error) {
        let failure = || io::Error::new(error.kind(), error.to_string());
        for item in staged {
            match item {
                Staged::Write {
                    collection,
                    new_tokens,
                    reply,
                    ..
                } => {
                    if let Some(staged) = self.staged_tokens.get_mut(&collection) {
                        for (token, _) in new_tokens {
                            staged.remove(&token);
                        }
                    }
                    let _ = reply.send(Err(failure()));
                }
                Staged::Delete { reply, .. } => drop(reply.send(Err(failure()))),
                Staged::Edit { reply, .. } => drop(reply.send(Err(failure()))),
            }
        }
    }

    fn rotate(&mut self) -> io::Result<u64> {
        let (through, followed) = self.journal.rotate(&self.state, &mut self.tokens)?;
        self.after_following(followed);
        Ok(through)
    }

    /// Applies the journal through `through` (what other nodes appended before it).
    fn apply_others_through(&mut self, through: u64) -> io::Result<()> {
        let followed = self
            .journal
            .apply_through(through, &self.state, &mut self.tokens)?;
        self.after_following(followed);
        Ok(())
    }

    /// Applies everything other nodes appended so far (a failure is retried at the next call).
    fn catch_up_with_others(&mut self) {
        if self.broken {
            return;
        }
        match self.apply_others_through(u64::MAX) {
            Ok(()) => {
                let mut state = self.state.lock().expect("state lock");
                if state.behind_log {
                    state.behind_log = false;
                    tracing::info!(
                        applied_sequence = state.applied_sequence,
                        "caught up with the shared log; reads are answered again"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "cannot apply the shared log; retrying"),
        }
    }

    /// Appends a maintenance record and applies the journal through it; what applying it did.
    fn append_maintenance(&mut self, kind: &'static str, payload: Vec<u8>) -> io::Result<Applied> {
        let mut followed =
            self.journal
                .append_maintenance(kind, payload, &self.state, &mut self.tokens)?;
        let applied = followed.last.take().unwrap_or_default();
        self.after_following(followed);
        Ok(applied)
    }

    /// Fetches the files applied records added and reports the buffered rows they changed.
    fn after_following(&mut self, followed: Followed) {
        if !followed.added_files.is_empty() {
            (self.on_files_added)(followed.added_files);
        }
        if followed.applied_any {
            let buffered = self.state.lock().expect("state lock").memory_size();
            self.metrics.buffered_rows.set(buffered.rows as i64);
            (self.on_applied)(buffered);
        }
    }
}

enum Reply {
    Write(
        oneshot::Sender<io::Result<Vec<WriteOutcome>>>,
        Vec<WriteOutcome>,
    ),
    Delete(oneshot::Sender<io::Result<Vec<DataFile>>>, Vec<DataFile>),
    Edit(oneshot::Sender<io::Result<usize>>, usize),
}
