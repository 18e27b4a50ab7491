//! Key changes across nodes. Every committed change to a project's keys sends a PostgreSQL notification
//! on [`CHANNEL`] (inside the changing transaction, so it is delivered exactly when the change commits);
//! every node listens, and on a change made by another node clears its grant cache and calls the change
//! hooks, as the changing node did. On SQLite (one node) there is no one else to tell.
//!
//! Design: a notification can be missed only while the listening connection is down. The listener notices
//! a lost connection at once (sqlx's eager reconnect is off: it would reconnect inside `try_recv`, for as
//! long as PostgreSQL is away, with the cache still on); from then on the grant cache is bypassed (every
//! request reads the database), and once a connection listens again the cache is cleared before it is
//! used, so a change is never hidden longer than a notification's delivery (measured in
//! `docs/scale-out.md`), however the connection fares. A connection whose packets are lost fails nothing
//! and delivers nothing: every node sends a heartbeat notification every [`HEARTBEAT_INTERVAL`], and while
//! a listener hears nothing for [`SILENCE_LIMIT`] the cache is off — so a silent link costs at most that
//! long of trusting the cache. The connection is kept (a slow one delivers what it queued, so no change is
//! missed and the change hooks still run); only an error ends it.

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::database::Backend;
use crate::{MetaStore, Result};

/// The notification channel; the payload is `{node id} {project id}`.
pub(crate) const CHANNEL: &str = "keyhole_key_changes";

/// The payload of a heartbeat (no space: not a key change).
const HEARTBEAT: &str = "heartbeat";
/// How often each node sends a heartbeat on the channel.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(300);
/// While a listener hears nothing (not even a heartbeat) for this long, the grant cache is off.
const SILENCE_LIMIT: Duration = Duration::from_millis(1500);

/// Pause before listening again after the connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Sends the key-change notification inside `transaction` (nothing on SQLite).
pub(crate) async fn notify_key_change(
    store: &MetaStore,
    transaction: &mut sqlx::AnyConnection,
    project_id: &str,
) -> Result<()> {
    if store.database.backend != Backend::Postgres {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{} {project_id}", store.node_id))
        .execute(transaction)
        .await?;
    Ok(())
}

impl MetaStore {
    /// Commits `transaction`, which changed keys of `project_id`: the other nodes are told inside it (so
    /// exactly when it commits), this node's grant cache and change hooks right after.
    pub(crate) async fn commit_key_change(
        &self,
        mut transaction: sqlx::Transaction<'static, sqlx::Any>,
        project_id: &str,
    ) -> Result<()> {
        notify_key_change(self, &mut transaction, project_id).await?;
        transaction.commit().await?;
        self.key_changed(project_id).await;
        Ok(())
    }
}

/// Listens for other nodes' key changes for as long as the runtime runs (PostgreSQL only).
pub(crate) fn start_listening(store: MetaStore, url: String) {
    let heartbeat_store = store.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(HEARTBEAT)
                .execute(&heartbeat_store.database.pool);
            if let Err(error) = sent.await {
                tracing::debug!(%error, "cannot send the key-change heartbeat");
            }
        }
    });
    tokio::spawn(async move {
        loop {
            store.resolved_keys.set_enabled(false);
            let outcome = listen(&store, &url).await;
            // Not one request more from the cache once the connection is gone.
            store.resolved_keys.set_enabled(false);
            match outcome {
                Ok(()) => tracing::warn!("key change notifications stopped; listening again"),
                Err(error) => tracing::warn!(%error, "cannot listen for key changes; retrying"),
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    });
}

/// One listening connection: returns when it is lost.
async fn listen(store: &MetaStore, url: &str) -> Result<()> {
    let mut listener = PgListener::connect(url).await?;
    // A lost connection ends `try_recv` at once (`Ok(None)`), instead of being re-established inside it
    // while the cache keeps serving: reconnecting is this loop's, with the cache off.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    // Whatever changed while nobody listened is forgotten before the cache is trusted again.
    store.resolved_keys.invalidate();
    store.resolved_keys.set_enabled(true);
    let hearing = std::sync::Arc::new(std::sync::Mutex::new(Hearing {
        last_heard: tokio::time::Instant::now(),
        silent: false,
    }));
    let _watchdog = AbortOnDrop(tokio::spawn(watch_for_silence(
        store.clone(),
        hearing.clone(),
    )));
    while let Some(notification) = listener.try_recv().await? {
        heard(store, &hearing);
        let Some((node_id, project_id)) = notification.payload().split_once(' ') else {
            continue;
        };
        if node_id == &*store.node_id {
            continue;
        }
        tracing::debug!(project_id, "key change from another node");
        store.key_changed(project_id).await;
    }
    Ok(())
}

/// When the listener last heard anything, and whether the watchdog found it silent.
struct Hearing {
    last_heard: tokio::time::Instant,
    silent: bool,
}

/// Aborts the task when dropped (the watchdog ends with its listener).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The listener heard something: a silent connection speaks again. It delivers what it queued meanwhile,
/// so nothing was missed; the cache is trusted again.
fn heard(store: &MetaStore, hearing: &std::sync::Mutex<Hearing>) {
    let mut hearing = hearing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    hearing.last_heard = tokio::time::Instant::now();
    if hearing.silent {
        hearing.silent = false;
        store.resolved_keys.invalidate();
        store.resolved_keys.set_enabled(true);
        tracing::info!("the key change listener hears again; the grant cache is used again");
    }
}

/// Turns the grant cache off while the listener hears nothing for [`SILENCE_LIMIT`]: the connection may be
/// losing packets (a change would not arrive) or only slow (it would, late). The connection is kept: once
/// it speaks again it delivers what it queued, so no change is missed either way.
async fn watch_for_silence(store: MetaStore, hearing: std::sync::Arc<std::sync::Mutex<Hearing>>) {
    loop {
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
        let mut hearing = hearing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !hearing.silent && hearing.last_heard.elapsed() > SILENCE_LIMIT {
            hearing.silent = true;
            store.resolved_keys.set_enabled(false);
            tracing::warn!(
                silent_ms = SILENCE_LIMIT.as_millis() as u64,
                "the key change listener heard nothing, not even a heartbeat; the grant cache is off until it does"
            );
        }
    }
}
