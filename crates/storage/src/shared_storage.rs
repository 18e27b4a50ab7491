//! The engine's shared mode (see `shared`): opening from the checkpoint and the log, following what
//! other nodes append, the maintenance lease, and storing checkpoints.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::journal::{Journal, SharedJournal};
use crate::manifest::Manifest;
use crate::metrics::StorageMetrics;
use crate::objects::ObjectFiles;
use crate::shared::{SharedLog, SharedLogHandle, apply_record};
use crate::state::State;
use crate::writer::Command;
use crate::{
    DataDirLock, Inner, Result, Storage, StorageConfig, StorageError, load_tokens_from_files,
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

/// Held while this node flushes, compacts or rewrites files: the local lock and, shared, the lease
/// (renewed in the background, released when dropped).
pub(crate) struct MaintenanceGuard {
    _local: tokio::sync::OwnedMutexGuard<()>,
    lease: Option<HeldLease>,
}

struct HeldLease {
    log: Arc<dyn SharedLog>,
    renewal: tokio::task::JoinHandle<()>,
    /// Where the release is left for this node's next maintenance to wait on.
    release: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Drop for MaintenanceGuard {
    fn drop(&mut self) {
        let Some(held) = self.lease.take() else {
            return;
        };
        held.renewal.abort();
        let log = held.log;
        let release = tokio::spawn(async move {
            if let Err(error) = log.release_lease().await {
                tracing::warn!(%error, "cannot release the maintenance lease; it expires by itself");
            }
        });
        // Stored before the local lock is released (fields drop after this), so the next maintenance on
        // this node waits for the release instead of renewing a lease the release then deletes.
        *held
            .release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(release);
    }
}

impl Storage {
    /// Opens a node of a shared store: the checkpoint's state, then every record after its flushed point.
    pub(crate) async fn open_shared(
        config: StorageConfig,
        shared: SharedLogHandle,
        objects: ObjectFiles,
        metrics: StorageMetrics,
        data_dir_lock: DataDirLock,
    ) -> Result<Storage> {
        let log = shared.0;
        let (reflected_through, manifest) = match log.checkpoint().await? {
            Some((applied_through, json)) => {
                (applied_through, Manifest::from_json(json.as_bytes())?)
            }
            None => (0, Manifest::default()),
        };
        let mut state = State::from_manifest(manifest);
        let (mut tokens, unreadable) = load_tokens_from_files(&objects, &state).await?;
        crate::recovery::set_aside_unreadable(&objects, &mut state, unreadable, &metrics, false)
            .await;
        state.applied_sequence = state.flushed_sequence;
        let mut records = 0usize;
        loop {
            let after = state.applied_sequence;
            let batch = log.read_after(after, 10_000).await?;
            if batch.is_empty() {
                break;
            }
            for record in batch {
                apply_record(&mut state, &mut tokens, &record, reflected_through, false)?;
                records += 1;
            }
        }
        metrics.buffered_rows.set(state.memory_rows() as i64);
        tracing::info!(
            replayed_records = records,
            applied_sequence = state.applied_sequence,
            "storage opened on the shared log"
        );
        let journal = Journal::Shared(SharedJournal::new(log, tokio::runtime::Handle::current()));
        let storage = Storage::start(
            config,
            objects,
            metrics,
            state,
            tokens,
            journal,
            data_dir_lock,
        );
        spawn_follower(Arc::downgrade(&storage.inner));
        Ok(storage)
    }

    pub(crate) fn shared_log(&self) -> Option<Arc<dyn SharedLog>> {
        self.inner
            .config
            .shared_log
            .as_ref()
            .map(|handle| handle.0.clone())
    }

    /// Takes the maintenance lock (and, shared, the lease). `wait`: wait for another node's maintenance
    /// to end (up to a minute) rather than answer `None` at once.
    pub(crate) async fn maintenance(&self, wait: bool) -> Result<Option<MaintenanceGuard>> {
        let local = self.inner.maintenance.clone().lock_owned().await;
        self.lease_released().await;
        let Some(log) = self.shared_log() else {
            return Ok(Some(MaintenanceGuard {
                _local: local,
                lease: None,
            }));
        };
        let ttl_millis = LEASE_TTL.as_millis() as i64;
        let started = std::time::Instant::now();
        while !log.try_lease(ttl_millis).await? {
            if !wait {
                return Ok(None);
            }
            if started.elapsed() > LEASE_WAIT {
                return Err(StorageError::Io(std::io::Error::other(
                    "another node has held the maintenance lease for over a minute",
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Catch up before deciding anything: the previous holder's records must be applied here first.
        self.send(Command::CatchUp).await?;
        let renewing = log.clone();
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL / 3).await;
                if let Err(error) = renewing.try_lease(ttl_millis).await {
                    tracing::warn!(%error, "cannot renew the maintenance lease");
                }
            }
        });
        Ok(Some(MaintenanceGuard {
            _local: local,
            lease: Some(HeldLease {
                log,
                renewal,
                release: self.inner.lease_release.clone(),
            }),
        }))
    }

    /// Waits until the release of this node's last maintenance lease (if any) is done.
    pub(crate) async fn lease_released(&self) {
        let pending_release = self
            .inner
            .lease_release
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(pending_release) = pending_release {
            let _ = pending_release.await;
        }
    }

    /// Stores the state's checkpoint and drops log records well below its flushed point.
    pub(crate) async fn store_checkpoint(&self, log: &Arc<dyn SharedLog>) -> Result<()> {
        let (manifest, applied_through) = {
            let state = self.inner.state.lock().expect("state lock");
            (state.to_manifest(), state.applied_sequence)
        };
        let flushed = manifest.flushed_sequence;
        log.store_checkpoint(applied_through, manifest.to_json())
            .await?;
        if flushed > TRUNCATION_MARGIN {
            log.truncate_through(flushed - TRUNCATION_MARGIN).await?;
        }
        Ok(())
    }
}

/// Applies other nodes' records every [`FOLLOW_INTERVAL`] while the engine lives.
fn spawn_follower(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(FOLLOW_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            // A full queue means the writer is busy; it catches up with its next group anyway.
            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                inner.commands.try_send(Command::CatchUp)
            {
                return;
            }
        }
    });
}
