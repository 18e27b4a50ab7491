//! Results of cached datasets (`GET /datasets/{name}/results`): the dataset's interval query, restricted
//! to one index value and a sub-timeframe, read in the caller's scope — equal, bucket for bucket, to
//! running that query live with the index value as an extra filter.
//!
//! Design: Keen precomputes datasets and lags ingestion; Keyhole answers to the second. Buckets that end
//! in the future are always computed live. Closed buckets (ending at or before now) are kept once
//! computed, per (project, dataset, definition version, scope digest, index value), together with the
//! storage's change version at which they were computed; a kept bucket is served only while no write,
//! delete or property removal since that version touched an event time before the bucket's end
//! (`ScopedReader::earliest_change_since`). A read takes the longest run of valid kept buckets from the start
//! of its timeframe and computes the rest in one live query, so reading 90 daily buckets usually
//! computes one. Scopes with a look-back window (`max_lookback`) move with the clock, so their buckets are
//! always computed live. Everything is in memory (a restart recomputes on first read), bounded by
//! [`MAX_BYTES`] (each kept bucket charged its approximate heap size, `footprint::value_bytes`), the least
//! recently read index entries dropped first.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use keyhole_model::dataset::IndexValue;
use keyhole_model::query::{Query, TimeRange, Timeframe};
use keyhole_model::timestamp::EpochMillis;
use serde_json::Value;

use crate::access::ScopedReader;
use crate::byte_bounded::{ByteBoundedMap, Charged};
use crate::errors::ApiError;

/// The bytes kept buckets may take.
pub(crate) const MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct IndexKey {
    project_id: String,
    dataset: String,
    version: String,
    scope_digest: String,
    index: String,
}

struct KeptBucket {
    /// The result array's element: `{"timeframe": {…}, "value": …}`.
    element: Value,
    change_version: u64,
}

struct KeptIndex {
    buckets: BTreeMap<(EpochMillis, EpochMillis), KeptBucket>,
    last_read: EpochMillis,
}

impl Charged for KeptIndex {
    fn charged_bytes(&self) -> usize {
        let per_bucket = std::mem::size_of::<((EpochMillis, EpochMillis), KeptBucket)>();
        std::mem::size_of::<KeptIndex>()
            + self
                .buckets
                .values()
                .map(|bucket| per_bucket + keyhole_model::footprint::value_bytes(&bucket.element))
                .sum::<usize>()
    }
    fn last_read(&self) -> EpochMillis {
        self.last_read
    }
}

/// Kept closed buckets of dataset results (see the module docs).
pub(crate) struct DatasetResults {
    entries: Mutex<ByteBoundedMap<IndexKey, KeptIndex>>,
}

impl Default for DatasetResults {
    fn default() -> DatasetResults {
        DatasetResults {
            entries: Mutex::new(ByteBoundedMap::new(MAX_BYTES)),
        }
    }
}

impl DatasetResults {
    /// A store bounded to `max_bytes` (the server's memory budget share for it).
    pub(crate) fn with_max_bytes(max_bytes: usize) -> DatasetResults {
        DatasetResults {
            entries: Mutex::new(ByteBoundedMap::new(max_bytes)),
        }
    }
}

/// One results request, parsed and authorized.
pub(crate) struct ResultsRequest<'a> {
    /// The caller's reads (its grant's scope).
    pub reader: &'a ScopedReader,
    pub dataset: &'a str,
    /// The definition's `last_modified_date`: replacing the dataset invalidates what was kept.
    pub version: &'a str,
    pub query: Query,
    pub index: Vec<IndexValue>,
    pub timeframe: Timeframe,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DatasetResults {
    /// The `result` array for `request` at `now`, and how many of its buckets came from the store.
    pub(crate) async fn results(
        &self,
        request: ResultsRequest<'_>,
        now: EpochMillis,
    ) -> Result<(Value, usize), ApiError> {
        let ResultsRequest {
            reader,
            dataset,
            version,
            mut query,
            index,
            timeframe,
        } = request;
        let (project_id, grant) = (reader.project_id(), reader.grant());
        let timezone = query.timezone;
        let interval = query
            .interval
            .ok_or_else(|| ApiError::internal(format!("dataset {dataset} has no interval")))?;
        let dataset_range = match &query.timeframe {
            Some(dataset_timeframe) => dataset_timeframe.resolve(now, timezone)?,
            None => {
                return Err(ApiError::internal(format!(
                    "dataset {dataset} has no timeframe"
                )));
            }
        };
        let asked = timeframe.resolve(now, timezone)?;
        // The results cover the asked timeframe within the dataset's.
        let range = TimeRange {
            start: asked.start.max(dataset_range.start),
            end: asked.end.min(dataset_range.end),
        };
        if range.start >= range.end {
            return Ok((Value::Array(Vec::new()), 0));
        }
        let boundaries = interval.boundaries(range, timezone, keyhole_query::MAX_BUCKETS)?;
        let buckets: Vec<(EpochMillis, EpochMillis)> = boundaries
            .windows(2)
            .map(|pair| (pair[0], pair[1]))
            .collect();
        query.filters.extend(index.iter().map(IndexValue::filter));
        let collection = query.collection.clone().unwrap_or_default();
        let key = IndexKey {
            project_id: project_id.to_string(),
            dataset: dataset.to_string(),
            version: version.to_string(),
            scope_digest: crate::cached_results::scope_digest(grant, grant.forced_query_filters()),
            index: IndexValue::canonical(&index),
        };
        let keeps =
            reader.window_start(now).is_none() && keyhole_query::interval_join::is_joinable(&query);
        // Read before the live query's snapshot: whatever that query misses is a later change.
        let change_version = reader.change_version();
        let mut elements = if keeps {
            self.valid_prefix(reader, &collection, &key, &buckets, now)
        } else {
            Vec::new()
        };
        let Some(&(live_start, _)) = buckets.get(elements.len()) else {
            let stored = elements.len();
            keyhole_query::interval_join::align_interval_groups(&query, &mut elements);
            return Ok((Value::Array(elements), stored));
        };
        query.timeframe = Some(Timeframe::Absolute {
            start: live_start,
            end: range.end,
        });
        let answer = reader.run(&query, now).await?;
        let live = match answer.get("result") {
            Some(Value::Array(live)) => live.clone(),
            _ => {
                return Err(ApiError::internal(
                    "a dataset query answered no interval result",
                ));
            }
        };
        if keeps {
            let kept_from = dataset_range.start;
            self.keep(
                key,
                &buckets[elements.len()..],
                &live,
                change_version,
                now,
                kept_from,
            );
        }
        let stored = elements.len();
        elements.extend(live);
        if stored > 0 {
            keyhole_query::interval_join::align_interval_groups(&query, &mut elements);
        }
        Ok((Value::Array(elements), stored))
    }

    /// The kept elements of the longest run of closed buckets from the first that are still valid.
    fn valid_prefix(
        &self,
        reader: &ScopedReader,
        collection: &str,
        key: &IndexKey,
        buckets: &[(EpochMillis, EpochMillis)],
        now: EpochMillis,
    ) -> Vec<Value> {
        let mut entries = lock(&self.entries);
        let Some(kept) = entries.get_mut(key) else {
            return Vec::new();
        };
        kept.last_read = now;
        let mut elements = Vec::new();
        for bucket in buckets {
            if bucket.1 > now {
                break;
            }
            let Some(stored) = kept.buckets.get(bucket) else {
                break;
            };
            let changed = reader.earliest_change_since(collection, stored.change_version);
            if changed.is_some_and(|earliest| earliest < bucket.1) {
                break;
            }
            elements.push(stored.element.clone());
        }
        elements
    }

    /// Keeps the closed buckets of a live answer (`buckets` are the ones it covered, in order).
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &self,
        key: IndexKey,
        buckets: &[(EpochMillis, EpochMillis)],
        live: &[Value],
        change_version: u64,
        now: EpochMillis,
        kept_from: EpochMillis,
    ) {
        if buckets.len() != live.len() {
            tracing::warn!(
                buckets = buckets.len(),
                answered = live.len(),
                "dataset answer does not match its buckets; nothing kept"
            );
            return;
        }
        let closed: Vec<_> = buckets
            .iter()
            .zip(live)
            .filter(|(bucket, _)| bucket.1 <= now)
            .collect();
        if closed.is_empty() {
            return;
        }
        let mut entries = lock(&self.entries);
        let mut kept = entries.remove(&key).unwrap_or_else(|| KeptIndex {
            buckets: BTreeMap::new(),
            last_read: now,
        });
        // Buckets the dataset's moving timeframe has left behind are dropped.
        kept.buckets.retain(|bucket, _| bucket.1 > kept_from);
        for (bucket, element) in closed {
            kept.buckets.insert(
                *bucket,
                KeptBucket {
                    element: element.clone(),
                    change_version,
                },
            );
        }
        entries.insert(key, kept);
    }

    /// The bytes kept buckets are charged, and how many index entries there are.
    pub(crate) fn usage(&self) -> (usize, usize) {
        lock(&self.entries).usage()
    }

    /// Forgets everything kept for a dataset (replaced or deleted).
    pub(crate) fn forget(&self, project_id: &str, dataset: &str) {
        lock(&self.entries)
            .retain(|key, _| !(key.project_id == project_id && key.dataset == dataset));
    }
}
