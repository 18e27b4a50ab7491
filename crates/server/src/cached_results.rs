//! Stored results of cached queries (saved queries with a `refresh_rate`), per reading scope.
//!
//! Keen computes a cached query once and serves everyone the stored answer. Keyhole's answers depend on
//! the reading key's scope, so a result is stored per (project, query name, definition version, scope
//! digest): the digest covers the project, every filter the scope forces and its look-back, so a result
//! computed for one tenant is never served to another. A stored result is served while it is younger
//! than the refresh rate — and than the caller's `max_age`, if given (Keyhole is fresh to the second, so a
//! caller may ask for no older than N seconds and get a live answer otherwise). A background task
//! recomputes, every [`REFRESH_TICK`], the results that are due and were read within two refresh periods;
//! others are dropped. Results live in memory: a restart recomputes on first read. They may take at most
//! [`MAX_BYTES`] (each charged its approximate heap size, `footprint::value_bytes`); past it the least
//! recently read are dropped, and a result larger than a sixteenth of it is not kept.

use std::sync::{Mutex, MutexGuard, Weak};

use crate::access::ScopedReader;
use std::time::Duration;

use keyhole_model::Grant;
use keyhole_model::query::Query;
use keyhole_model::timestamp::EpochMillis;
use serde_json::Value;

use crate::byte_bounded::{ByteBoundedMap, Charged};

/// How often due results are looked for.
pub(crate) const REFRESH_TICK: Duration = Duration::from_secs(30);
/// The bytes stored results may take.
pub(crate) const MAX_BYTES: usize = 64 * 1024 * 1024;

/// What a stored result is for.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct ResultKey {
    pub project_id: String,
    pub name: String,
    /// The definition's `last_modified_date`: replacing the query invalidates its results.
    pub version: String,
    pub scope_digest: String,
}

impl ResultKey {
    pub(crate) fn new(project_id: &str, name: &str, version: &str, grant: &Grant) -> ResultKey {
        ResultKey {
            project_id: project_id.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            scope_digest: scope_digest(grant, &grant.stored_query_filters()),
        }
    }
}

/// The SHA-256 of a reading scope — the grant's project, the filters it forces on this kind of read and
/// its look-back — as canonical JSON (serde_json orders object keys). Equal digests read the same events.
pub(crate) fn scope_digest(
    grant: &Grant,
    forced_filters: &[keyhole_model::query::Filter],
) -> String {
    let filters: Vec<Value> = forced_filters
        .iter()
        .map(keyhole_model::query::Filter::to_json)
        .collect();
    let scope = serde_json::json!({
        "project": grant.project_id(),
        "filters": filters,
        "lookback": grant.max_lookback_millis(),
    });
    keyhole_model::KeyHash::of_secret(&scope.to_string()).to_hex()
}

struct Entry<Reader> {
    result: Value,
    computed_at: EpochMillis,
    last_read: EpochMillis,
    refresh_millis: i64,
    query: Query,
    /// The reads of the request that stored the result (its grant, as saved queries read).
    reader: Reader,
}

impl<Reader> Charged for Entry<Reader> {
    /// The result's heap and the entry's fixed part (the grant is shared with the request that made it).
    fn charged_bytes(&self) -> usize {
        std::mem::size_of::<Entry<Reader>>() + keyhole_model::footprint::value_bytes(&self.result)
    }
    fn last_read(&self) -> EpochMillis {
        self.last_read
    }
}

/// A stored result and when it was computed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub result: Value,
    pub computed_at: EpochMillis,
}

/// Work for the refresher: recompute `query` as `reader` sees it and store it under `key`.
pub(crate) struct Due<Reader> {
    pub key: ResultKey,
    pub query: Query,
    pub reader: Reader,
}

/// Results of cached queries, per scope (see the module docs). `Reader` is what recomputes a result: the [`ScopedReader`] of the request that stored it (a generic
/// parameter only so the cache's own tests need no engines).
pub(crate) struct CachedResults<Reader = ScopedReader> {
    entries: Mutex<ByteBoundedMap<ResultKey, Entry<Reader>>>,
}

impl<Reader> Default for CachedResults<Reader> {
    fn default() -> CachedResults<Reader> {
        CachedResults {
            entries: Mutex::new(ByteBoundedMap::new(MAX_BYTES)),
        }
    }
}

impl<Reader> CachedResults<Reader> {
    /// A store bounded to `max_bytes` (the server's memory budget share for it).
    pub(crate) fn with_max_bytes(max_bytes: usize) -> CachedResults<Reader> {
        CachedResults {
            entries: Mutex::new(ByteBoundedMap::new(max_bytes)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<Reader: Clone> CachedResults<Reader> {
    /// The stored result, if younger than its refresh rate and than `max_age_millis` (`Some(0)`: never).
    pub(crate) fn fresh(
        &self,
        key: &ResultKey,
        now: EpochMillis,
        max_age_millis: Option<i64>,
    ) -> Option<Stored> {
        let mut entries = lock(&self.entries);
        let entry = entries.get_mut(key)?;
        let age = now - entry.computed_at;
        let too_old = |max_age: i64| max_age == 0 || age > max_age;
        if age >= entry.refresh_millis || max_age_millis.is_some_and(too_old) {
            return None;
        }
        entry.last_read = now;
        Some(Stored {
            result: entry.result.clone(),
            computed_at: entry.computed_at,
        })
    }

    /// Stores a result just computed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &self,
        key: ResultKey,
        result: Value,
        now: EpochMillis,
        refresh_seconds: u64,
        query: Query,
        reader: Reader,
    ) {
        lock(&self.entries).insert(
            key,
            Entry {
                result,
                computed_at: now,
                last_read: now,
                refresh_millis: i64::try_from(refresh_seconds)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000),
                query,
                reader,
            },
        );
    }

    /// The bytes stored results are charged, and how many there are.
    pub(crate) fn usage(&self) -> (usize, usize) {
        lock(&self.entries).usage()
    }

    /// Results due for recomputation (older than their refresh rate and read within two periods);
    /// results not read for two periods are dropped.
    pub(crate) fn due(&self, now: EpochMillis) -> Vec<Due<Reader>> {
        let mut entries = lock(&self.entries);
        entries.retain(|_, entry| now - entry.last_read < 2 * entry.refresh_millis);
        entries
            .iter()
            .filter(|(_, entry)| now - entry.computed_at >= entry.refresh_millis)
            .map(|(key, entry)| Due {
                key: key.clone(),
                query: entry.query.clone(),
                reader: entry.reader.clone(),
            })
            .collect()
    }

    /// Replaces a result the refresher recomputed (keeping when it was last read).
    pub(crate) fn refreshed(&self, key: &ResultKey, result: Value, now: EpochMillis) {
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.result = result;
        entry.computed_at = now;
        entries.recharge(key);
    }

    /// Forgets every result of a saved query (replaced or deleted).
    pub(crate) fn forget(&self, project_id: &str, name: &str) {
        lock(&self.entries).retain(|key, _| !(key.project_id == project_id && key.name == name));
    }
}

/// Recomputes due results one at a time (queries go through the governor like any other). The task
/// ends at the first tick after the results store is dropped.
pub(crate) fn start_refresher(results: Weak<CachedResults>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH_TICK).await;
            let Some(results) = results.upgrade() else {
                return;
            };
            let now = keyhole_model::query::now_millis();
            for due in results.due(now) {
                // A revoked or expired key's results are dropped rather than refreshed.
                if !due.reader.grant().is_usable_at(now) {
                    results.forget(&due.key.project_id, &due.key.name);
                    continue;
                }
                match due.reader.run(&due.query, now).await {
                    Ok(answer) => {
                        results.refreshed(&due.key, crate::saved_queries::result_of(&answer), now);
                    }
                    Err(error) => {
                        tracing::warn!(name = %due.key.name, %error, "cached query refresh failed");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: &str) -> ResultKey {
        ResultKey {
            project_id: "p".into(),
            name: "q".into(),
            version: "v1".into(),
            scope_digest: scope.into(),
        }
    }

    fn query() -> Query {
        Query::parse(
            keyhole_model::query::AnalysisType::Count,
            serde_json::json!({"event_collection": "c"})
                .as_object()
                .unwrap(),
        )
        .unwrap()
    }

    fn grant() -> std::sync::Arc<Grant> {
        std::sync::Arc::new(Grant::for_project_key(
            "p",
            keyhole_model::KeyKind::Read,
            keyhole_model::KeyHash::of_secret("k"),
            "k",
            true,
        ))
    }

    #[test]
    fn results_are_served_per_scope_until_due_then_refreshed_or_dropped() {
        let cache: CachedResults<std::sync::Arc<Grant>> = CachedResults::default();
        cache.store(key("a"), serde_json::json!(1), 0, 10, query(), grant());
        assert_eq!(cache.fresh(&key("a"), 5_000, None).unwrap().result, 1);
        assert!(
            cache.fresh(&key("b"), 5_000, None).is_none(),
            "another scope"
        );
        assert!(
            cache.fresh(&key("a"), 5_000, Some(4_000)).is_none(),
            "older than max_age"
        );
        assert!(cache.fresh(&key("a"), 10_000, None).is_none(), "due");
        let due = cache.due(10_000);
        assert_eq!(due.len(), 1);
        cache.refreshed(&due[0].key, serde_json::json!(2), 10_000);
        assert_eq!(cache.fresh(&key("a"), 11_000, None).unwrap().result, 2);
        // Not read for two periods: dropped, not refreshed.
        assert!(cache.due(31_001).is_empty());
        assert!(cache.fresh(&key("a"), 31_001, None).is_none());
        cache.store(key("a"), serde_json::json!(3), 0, 10, query(), grant());
        cache.forget("p", "q");
        assert!(cache.fresh(&key("a"), 1, None).is_none());
    }
}
