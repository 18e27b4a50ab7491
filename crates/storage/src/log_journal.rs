//! The journal of several nodes sharing one store: a [`SharedLog`] (PostgreSQL's `storage_log` in
//! production, `memory_log` in tests) that every node appends its group commits to and applies, in
//! sequence order, to its own state. Opening loads the checkpoint and applies every record after its
//! flushed point; a background follower applies what other nodes append every [`FOLLOW_INTERVAL`].
//! Flushes and swaps are records too (`rotate`, `flushed`, `swapped`, see `records`), appended only by
//! the node holding the maintenance lease, so every node's state takes them in the same order.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::commands::Command;
use crate::config::{Result, StorageError};
use crate::manifest::{CollectionId, DataFile, Manifest};
use crate::metrics::StorageMetrics;
use crate::objects::ObjectFiles;
use crate::recovery;
use crate::shared::{BoxFuture, SharedLog, SharedRecord};
use crate::state::State;
use crate::tokens::{TokenIndex, load_tokens_from_files};
use crate::wal::{WalEntry, encode_entries};

use crate::journal::{EngineParts, Followed, Journal, Lease, Recovered, WrittenFiles};
use crate::records::{
    Applied, Flushed, KIND_FLUSHED, KIND_ROTATE, KIND_ROWS, KIND_SWAPPED, Swapped, apply_record,
    payload_of,
};

/// How often a node applies what other nodes appended (the bound on cross-node freshness, with the time
/// to read and apply it).
pub(crate) const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);
/// How long the maintenance lease lasts without renewal; a node that dies holding it blocks flushes and
/// compactions for at most this long.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How long a flush or a delete waits for another node's maintenance to finish.
const LEASE_WAIT: Duration = Duration::from_secs(60);
/// Records kept below the flushed point when the log is truncated, so a node that lags behind by less
/// than this still finds every record it has not applied.
const TRUNCATION_MARGIN: u64 = 100_000;
/// Most records read from the log at a time.
const READ_BATCH: usize = 1_000;
/// How long the writer thread waits on one call to the log's database. A connection whose packets are
/// lost never answers nor fails; past this the call is an error, so the group is refused at once (503)
/// instead of every write behind it hanging until TCP gives up.
const LOG_CALL_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a node whose log calls found the database unreachable probes it. Meanwhile the calls fail at
/// once (`keyhole_model::reachability`): the writer thread does not spend a timeout on every group and
/// catch-up while the database is away, so only the write that found it away waits one timeout.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// One node's journal in a shared log.
pub(crate) struct LogJournal {
    log: Arc<dyn SharedLog>,
    /// The runtime the writer thread blocks on for the log's database calls.
    runtime: tokio::runtime::Handle,
    /// The group being staged, in the WAL's record encoding.
    pending: Mutex<Vec<u8>>,
    /// Records read at a time: halved after a read that timed out (a slow link still makes progress),
    /// doubled back after each one that did not.
    read_batch: std::sync::atomic::AtomicUsize,
    /// Set while the log's database is known unreachable (see [`PROBE_INTERVAL`]).
    reachability: keyhole_model::reachability::Reachability,
    delete_grace: Duration,
    /// The release of this node's last maintenance lease, awaited before the next is taken.
    lease_release: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// The maintenance lease while this node holds it: renewed in the background, released when dropped.
struct HeldLease {
    log: Arc<dyn SharedLog>,
    renewal: tokio::task::JoinHandle<()>,
    /// Where the release is left for this node's next maintenance to wait on.
    release: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
        let log = self.log.clone();
        let release = tokio::spawn(async move {
            if let Err(error) = log.release_lease().await {
                tracing::warn!(%error, "cannot release the maintenance lease; it expires by itself");
            }
        });
        // Stored before the engine's maintenance lock is released (the guard drops the lease first), so
        // the next maintenance on this node waits for the release instead of renewing a lease the release
        // then deletes.
        *self
            .release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(release);
    }
}

impl LogJournal {
    /// Recovers a node's state from the log: the checkpoint's state, then every record after its flushed
    /// point.
    pub(crate) async fn open(
        log: Arc<dyn SharedLog>,
        delete_grace: Duration,
        objects: &ObjectFiles,
        metrics: &StorageMetrics,
    ) -> Result<(LogJournal, Recovered)> {
        let (reflected_through, manifest) = match log.checkpoint().await? {
            Some((applied_through, json)) => {
                (applied_through, Manifest::from_json(json.as_bytes())?)
            }
            None => (0, Manifest::default()),
        };
        let mut state = State::from_manifest(manifest);
        let (mut tokens, unreadable) = load_tokens_from_files(objects, &state).await?;
        recovery::set_aside_unreadable(objects, &mut state, unreadable, metrics, false).await;
        state.applied_sequence = state.flushed_sequence;
        let mut records = 0usize;
        loop {
            let batch = log.read_after(state.applied_sequence, 10_000).await?;
            if batch.is_empty() {
                break;
            }
            for record in batch {
                apply_record(&mut state, &mut tokens, &record, reflected_through, false)?;
                records += 1;
            }
        }
        tracing::info!(
            replayed_records = records,
            applied_sequence = state.applied_sequence,
            "storage opened on the shared log"
        );
        let journal = LogJournal {
            log,
            runtime: tokio::runtime::Handle::current(),
            pending: Mutex::default(),
            read_batch: std::sync::atomic::AtomicUsize::new(READ_BATCH),
            reachability: keyhole_model::reachability::Reachability::default(),
            delete_grace,
            lease_release: Arc::default(),
        };
        let recovered = Recovered {
            state,
            tokens,
            edits: Vec::new(),
        };
        Ok((journal, recovered))
    }

    /// Runs one call to the log on the writer thread, bounded by [`LOG_CALL_TIMEOUT`]; while the log's
    /// database is known unreachable, fails at once.
    fn call_log<T>(&self, call: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
        if self.reachability.is_unreachable() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the shared log's database is unreachable",
            ));
        }
        let outcome = self.runtime.block_on(bounded_log_call(call));
        if let Err(error) = &outcome
            && matches!(
                error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::NotConnected
            )
            && self.reachability.mark_unreachable()
        {
            tracing::warn!(%error, "the shared log's database is unreachable; log calls fail at once until it answers");
            self.runtime
                .spawn(probe_log(self.log.clone(), self.reachability.clone()));
        }
        outcome
    }

    /// Reads records after `after`, as many as the current read size.
    fn read_records(&self, after: u64) -> io::Result<Vec<SharedRecord>> {
        use std::sync::atomic::Ordering;
        let limit = self.read_batch.load(Ordering::Relaxed);
        let read = self.call_log(self.log.read_after(after, limit));
        let next_limit = match &read {
            Err(error) if error.kind() == io::ErrorKind::TimedOut => (limit / 2).max(1),
            _ => (limit * 2).min(READ_BATCH),
        };
        self.read_batch.store(next_limit, Ordering::Relaxed);
        read
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the release of this node's last maintenance lease (if any) is done.
    async fn lease_released(&self) {
        let pending_release = self
            .lease_release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(pending_release) = pending_release {
            let _ = pending_release.await;
        }
    }

    async fn take_lease(&self, wait: bool, parts: EngineParts<'_>) -> Result<Lease> {
        self.lease_released().await;
        let ttl_millis = LEASE_TTL.as_millis() as i64;
        let started = std::time::Instant::now();
        while !self.log.try_lease(ttl_millis).await? {
            if !wait {
                return Ok(Lease::Busy);
            }
            if started.elapsed() > LEASE_WAIT {
                return Err(StorageError::Io(io::Error::other(
                    "another node has held the maintenance lease for over a minute",
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Catch up before deciding anything: the previous holder's records must be applied here first.
        parts
            .commands
            .send(Command::CatchUp)
            .await
            .map_err(|_| StorageError::Closed)?;
        let renewing = self.log.clone();
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 3).await;
                if let Err(error) = renewing.try_lease(ttl_millis).await {
                    tracing::warn!(%error, "cannot renew the maintenance lease");
                }
            }
        });
        Ok(Lease::Held(Box::new(HeldLease {
            log: self.log.clone(),
            renewal,
            release: self.lease_release.clone(),
        })))
    }

    /// Stores the state's checkpoint and drops log records well below its flushed point.
    async fn store_checkpoint(&self, state: &Mutex<State>) -> Result<()> {
        let (manifest, applied_through) = {
            let state = state.lock().expect("state lock");
            (state.to_manifest(), state.applied_sequence)
        };
        let flushed = manifest.flushed_sequence;
        self.log
            .store_checkpoint(applied_through, manifest.to_json())
            .await?;
        if flushed > TRUNCATION_MARGIN {
            self.log
                .truncate_through(flushed - TRUNCATION_MARGIN)
                .await?;
        }
        Ok(())
    }

    /// Records the flushed files in the log (every node swaps them for the flushing rows when it applies
    /// the record), deletes files the record could not place, and stores a checkpoint.
    async fn commit_flush_in_log(
        &self,
        parts: EngineParts<'_>,
        through: u64,
        written: WrittenFiles,
    ) -> Result<()> {
        let flushed = Flushed {
            through,
            files: written
                .into_iter()
                .map(|(id, _, files)| (id, files))
                .collect(),
        };
        let applied = append_through_writer(parts, KIND_FLUSHED, payload_of(&flushed)).await?;
        for file in applied.rejected_files {
            parts.objects.delete(&file.path).await;
        }
        self.store_checkpoint(parts.state).await?;
        tracing::debug!(through, "flushed to the shared store");
        Ok(())
    }

    /// Records a swap in the log; whether it applied (the old files were all still listed).
    async fn commit_swap_in_log(
        &self,
        parts: EngineParts<'_>,
        collection: &CollectionId,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> Result<bool> {
        let swapped = Swapped {
            collection: collection.clone(),
            replaced: replaced.clone(),
        };
        let applied = append_through_writer(parts, KIND_SWAPPED, payload_of(&swapped)).await?;
        for file in applied.rejected_files {
            parts.objects.delete(&file.path).await;
        }
        if !applied.swapped {
            return Ok(false);
        }
        self.store_checkpoint(parts.state).await?;
        parts.objects.delete_after(
            self.delete_grace,
            replaced.into_iter().map(|(old, _)| old).collect(),
        );
        Ok(true)
    }
}

/// A call to the log, bounded by [`LOG_CALL_TIMEOUT`] (a timeout is `TimedOut`).
async fn bounded_log_call<T>(
    call: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(LOG_CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the shared log's database did not answer within {} ms",
                    LOG_CALL_TIMEOUT.as_millis()
                ),
            ))
        })
}

/// Reads the log's tail every [`PROBE_INTERVAL`] until the database answers, then lets calls through.
async fn probe_log(
    log: Arc<dyn SharedLog>,
    reachability: keyhole_model::reachability::Reachability,
) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        if bounded_log_call(log.read_after(u64::MAX / 2, 1))
            .await
            .is_ok()
        {
            reachability.mark_reachable();
            tracing::info!("the shared log's database answers again");
            return;
        }
    }
}

/// Has the writer thread append a maintenance record and apply the log through it; what applying it did.
async fn append_through_writer(
    parts: EngineParts<'_>,
    kind: &'static str,
    payload: Vec<u8>,
) -> Result<Applied> {
    let (reply, answer) = oneshot::channel();
    parts
        .commands
        .send(Command::Maintenance {
            kind,
            payload,
            reply,
        })
        .await
        .map_err(|_| StorageError::Closed)?;
    Ok(answer.await.map_err(|_| StorageError::Closed)??)
}

impl Journal for LogJournal {
    fn follow_others(&self, commands: mpsc::WeakSender<Command>) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FOLLOW_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(commands) = commands.upgrade() else {
                    return;
                };
                // A full queue means the writer is busy; it catches up with its next group anyway.
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    commands.try_send(Command::CatchUp)
                {
                    return;
                }
            }
        });
    }

    fn is_shared(&self) -> bool {
        true
    }

    /// Other nodes take each write's rows as they are, never its JSON.
    fn carries_rows(&self) -> bool {
        true
    }

    fn append(&self, entry: &WalEntry) {
        self.pending()
            .extend(encode_entries(std::slice::from_ref(entry)));
    }

    fn commit(&self) -> io::Result<Option<u64>> {
        let payload = std::mem::take(&mut *self.pending());
        if payload.is_empty() {
            return Ok(None);
        }
        self.call_log(self.log.append(KIND_ROWS, payload, false))
    }

    fn discard_pending(&self) {
        self.pending().clear();
    }

    /// A failed append is a rolled-back transaction: later commits may always be trusted.
    fn is_consistent(&self) -> bool {
        true
    }

    fn apply_through(
        &self,
        through: u64,
        state: &Mutex<State>,
        tokens: &mut TokenIndex,
    ) -> io::Result<Followed> {
        let mut followed = Followed::default();
        loop {
            let after = state.lock().expect("state lock").applied_sequence;
            if after >= through {
                break;
            }
            let records = self.read_records(after)?;
            if records.is_empty() {
                break;
            }
            for record in records {
                if record.sequence > through {
                    break;
                }
                let applied = {
                    let mut state = state.lock().expect("state lock");
                    apply_record(&mut state, tokens, &record, 0, true)?
                };
                followed.applied_any = true;
                followed
                    .added_files
                    .extend(applied.added_files.iter().cloned());
                if record.sequence == through {
                    followed.last = Some(applied);
                }
            }
        }
        Ok(followed)
    }

    fn rotate(&self, state: &Mutex<State>, tokens: &mut TokenIndex) -> io::Result<(u64, Followed)> {
        let followed = self.append_maintenance(KIND_ROTATE, Vec::new(), state, tokens)?;
        let through = state.lock().expect("state lock").applied_sequence;
        Ok((through, followed))
    }

    fn append_maintenance(
        &self,
        kind: &'static str,
        payload: Vec<u8>,
        state: &Mutex<State>,
        tokens: &mut TokenIndex,
    ) -> io::Result<Followed> {
        let sequence = self
            .call_log(self.log.append(kind, payload, true))?
            .ok_or_else(|| io::Error::other("this node no longer holds the maintenance lease"))?;
        let followed = self.apply_through(sequence, state, tokens)?;
        if followed.last.is_none() {
            return Err(io::Error::other(
                "the maintenance record just appended was not applied",
            ));
        }
        Ok(followed)
    }

    fn lease<'a>(&'a self, wait: bool, parts: EngineParts<'a>) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.take_lease(wait, parts))
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.lease_released())
    }

    fn commit_flush<'a>(
        &'a self,
        parts: EngineParts<'a>,
        through: u64,
        written: WrittenFiles,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.commit_flush_in_log(parts, through, written))
    }

    /// The log checks the old files are all still listed, which also tells a collection deleted and
    /// made again (its new incarnation lists none of them).
    fn commit_swap<'a>(
        &'a self,
        parts: EngineParts<'a>,
        collection: &'a CollectionId,
        _incarnation: u64,
        replaced: Vec<(DataFile, Option<DataFile>)>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.commit_swap_in_log(parts, collection, replaced))
    }

    fn store_state<'a>(&'a self, parts: EngineParts<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.store_checkpoint(parts.state))
    }

    /// Other nodes may be reading them until they apply the delete.
    fn retire_files<'a>(
        &'a self,
        parts: EngineParts<'a>,
        files: Vec<DataFile>,
    ) -> BoxFuture<'a, ()> {
        parts.objects.delete_after(self.delete_grace, files);
        Box::pin(async {})
    }
}
