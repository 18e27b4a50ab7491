//! The running engine behind every `Storage` handle: its configuration, the in-memory state, the writer
//! thread's queue, the object store, the journal, and the maintenance lock. `Engine::start` starts the
//! writer thread over a recovered state; the procedures (`maintenance`, `deletes`) work on an `Engine`;
//! `storage` is the public face that opens one and forwards to them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use keyhole_model::memory_budget::MemoryConsumer;
use tokio::sync::{Notify, mpsc};

use crate::buffer_limit;
use crate::commands::Command;
use crate::config::{Result, StorageConfig, StorageError};
use crate::dir_lock::DataDirLock;
use crate::journal::{EngineParts, Journal, Lease, Recovered};
use crate::metrics::StorageMetrics;
use crate::objects::ObjectFiles;
use crate::state::{BufferedSize, State};
use crate::writer::Writer;

/// The engine's parts (see the module documentation).
pub(crate) struct Engine {
    pub config: StorageConfig,
    pub state: Arc<Mutex<State>>,
    pub commands: mpsc::Sender<Command>,
    pub objects: ObjectFiles,
    pub journal: Arc<dyn Journal>,
    /// Serializes flushes, compactions and deletes on this node: everything that rewrites the manifest.
    pub maintenance_lock: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the flusher before its interval (the buffer reached its flush size).
    pub flush_wanted: Arc<Notify>,
    pub writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Per project, the properties rows are ordered by in new Parquet files (see `flush`).
    pub clustering: RwLock<HashMap<String, Vec<String>>>,
    /// Released by `close` or when the engine is dropped (see `dir_lock`).
    pub data_dir_lock: Mutex<Option<DataDirLock>>,
    pub metrics: StorageMetrics,
}

/// Held while this node flushes, compacts or rewrites files: the local lock and, with a shared log, the
/// lease (released when dropped, before the local lock).
pub(crate) struct MaintenanceGuard {
    _lease: Option<Box<dyn Send + Sync>>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Engine {
    /// Starts the writer thread over a recovered state.
    pub(crate) fn start(
        config: StorageConfig,
        objects: ObjectFiles,
        metrics: StorageMetrics,
        journal: Arc<dyn Journal>,
        recovered: Recovered,
        data_dir_lock: DataDirLock,
    ) -> Arc<Engine> {
        let Recovered {
            mut state, tokens, ..
        } = recovered;
        let buffered = state.memory_size();
        metrics.buffered_rows.set(buffered.rows as i64);
        config
            .memory_budget
            .set_used(MemoryConsumer::EventBuffer, buffered.bytes as u64);
        let state = Arc::new(Mutex::new(state));
        let (commands, receiver) = mpsc::channel(1024);
        let flush_wanted = Arc::new(Notify::new());
        let runtime = tokio::runtime::Handle::current();
        Arc::new_cyclic(|weak: &Weak<Engine>| {
            let flush_rows = config.flush_rows;
            let budget = config.memory_budget.clone();
            let flush_bytes = buffer_limit::flush_at_bytes(&budget);
            // With a shared log, a node flushes rows only other nodes took once they let them grow well
            // past the flush point (they stopped, or cannot flush).
            let others_rows_only = journal.is_shared();
            let takeover_rows = flush_rows.saturating_add(flush_rows / 2);
            let takeover_bytes = buffer_limit::takeover_at_bytes(&budget);
            let weak_for_prefetch = weak.clone();
            let wanted = flush_wanted.clone();
            let writer = Writer {
                metrics: metrics.clone(),
                journal: journal.clone(),
                max_columns_per_collection: config.max_columns_per_collection,
                tokens,
                staged_tokens: std::collections::HashMap::new(),
                state: state.clone(),
                broken: false,
                on_files_added: Box::new(move |files| {
                    let weak = weak_for_prefetch.clone();
                    runtime.spawn(async move {
                        for file in files {
                            let Some(engine) = weak.upgrade() else { return };
                            // Into the file cache if there is room (a file this node wrote already is).
                            if let Err(error) = engine.objects.get(&file.path).await {
                                tracing::debug!(path = file.path, %error, "cannot prefetch a data file");
                            }
                        }
                    });
                }),
                on_applied: Box::new(move |buffered: BufferedSize| {
                    budget.set_used(MemoryConsumer::EventBuffer, buffered.bytes as u64);
                    let full =
                        buffered.rows >= flush_rows || (buffered.bytes as u64) >= flush_bytes;
                    let this_nodes_to_flush = !others_rows_only
                        || buffered.own_rows > 0
                        || buffered.rows >= takeover_rows
                        || (buffered.bytes as u64) >= takeover_bytes;
                    if full && this_nodes_to_flush {
                        wanted.notify_one();
                    }
                }),
            };
            let thread = std::thread::Builder::new()
                .name("keyhole-wal".into())
                .spawn(move || writer.run(receiver))
                .expect("spawn wal writer thread");
            journal.follow_others(commands.downgrade());
            Engine {
                config,
                state,
                commands,
                objects,
                journal,
                maintenance_lock: Arc::default(),
                flush_wanted,
                writer_thread: Mutex::new(Some(thread)),
                clustering: RwLock::default(),
                data_dir_lock: Mutex::new(Some(data_dir_lock)),
                metrics,
            }
        })
    }

    /// What the journal reaches of the engine.
    pub(crate) fn parts(&self) -> EngineParts<'_> {
        EngineParts {
            state: &self.state,
            objects: &self.objects,
            commands: &self.commands,
        }
    }

    /// Queues a command for the writer thread.
    pub(crate) async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| StorageError::Closed)
    }

    /// Takes the maintenance lock (and the journal's lease, if it has one). `wait`: wait for another
    /// node's maintenance to end rather than answer `None` at once.
    pub(crate) async fn maintenance(&self, wait: bool) -> Result<Option<MaintenanceGuard>> {
        let local = self.maintenance_lock.clone().lock_owned().await;
        let lease = match self.journal.lease(wait, self.parts()).await? {
            Lease::Busy => return Ok(None),
            Lease::NotNeeded => None,
            Lease::Held(lease) => Some(lease),
        };
        Ok(Some(MaintenanceGuard {
            _lease: lease,
            _local: local,
        }))
    }

    /// Stores the state as the journal's recovery point (the manifest, or the shared log's checkpoint).
    pub(crate) async fn store_state(&self) -> Result<()> {
        self.journal.store_state(self.parts()).await
    }

    /// The properties `project`'s new Parquet files are ordered by.
    pub(crate) fn clustering_of(&self, project: &str) -> Vec<String> {
        self.clustering
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(project)
            .cloned()
            .unwrap_or_default()
    }
}
