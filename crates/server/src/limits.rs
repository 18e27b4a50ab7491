//! Per-key rate limits, daily quotas and usage counters (`options.limits`, a Keyhole extension).
//!
//! Rates are token buckets per key and kind of request (reads, writes): `*_per_second` refills, `*_burst`
//! is the bucket's size. Quotas count per UTC day: events written (`events_per_day`) and queries run
//! (`queries_per_day`). A request past either is refused with `429` and `Retry-After` (the wait for the
//! next token, or the seconds to UTC midnight). An embed token counts against its parent key.
//!
//! Every key's usage is counted (reads, writes, events, queries, refusals) whether or not it has limits,
//! in memory, and added to the metadata store every [`FLUSH_INTERVAL`]; the first request of a key on a
//! day loads what is stored for it, so quotas hold across restarts up to the counts of the last interval.
//!
//! Design: a quota is checked before the work and counted after it, so concurrent requests of one key can
//! overshoot a quota by the requests in flight (at most a batch each), never by more. One mutex guards the
//! map of keys and one per key guards its counts: a request takes each once, briefly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use keyhole_meta::{KeyUsage, MetaStore};
use keyhole_model::key_options::RateLimit;
use keyhole_model::{Grant, KeyHash};

/// How often counts are added to the metadata store.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What a request is, for limits and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestClass {
    Read,
    /// A read that runs a query (counts against `queries_per_day`).
    Query,
    Write,
}

/// Why the meter refused a request, and when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    RateLimited { retry_after_secs: u64 },
    QuotaExceeded { retry_after_secs: u64 },
}

#[derive(Clone)]
pub(crate) struct KeyMeter {
    inner: Arc<MeterState>,
}

struct MeterState {
    meta: MetaStore,
    keys: Mutex<HashMap<(KeyHash, DayNumber), Arc<DayCounts>>>,
    buckets: Mutex<HashMap<(KeyHash, bool), Bucket>>,
}

/// One key's counts for one UTC day.
struct DayCounts {
    /// Set once what the metadata store holds for the day has been added to `counts.stored`.
    loaded: tokio::sync::OnceCell<()>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// In the metadata store (loaded, or flushed since).
    stored: KeyUsage,
    /// Not yet in the metadata store.
    unflushed: KeyUsage,
}

impl Counts {
    fn total(&self) -> KeyUsage {
        let mut total = self.stored;
        total.add(&self.unflushed);
        total
    }
}

struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Days since the Unix epoch (UTC): the counters' key, cheaper per request than a date string.
type DayNumber = i64;

const DAY_MILLIS: i64 = 86_400_000;

fn today() -> DayNumber {
    chrono::Utc::now().timestamp_millis().div_euclid(DAY_MILLIS)
}

/// Today (UTC) as usage is counted and shown: `2026-11-29`.
pub(crate) fn usage_day() -> String {
    day_text(today())
}

/// `2026-11-29` for a day number, as the metadata store keys usage.
fn day_text(day: DayNumber) -> String {
    keyhole_model::timestamp::utc_day(day.saturating_mul(DAY_MILLIS))
}

fn seconds_to_utc_midnight() -> u64 {
    let now = chrono::Utc::now().timestamp();
    (86_400 - now.rem_euclid(86_400)).max(1) as u64
}

impl KeyMeter {
    /// A meter writing its counts to `meta`, flushed by a task on the current runtime that ends when
    /// the meter is dropped.
    pub(crate) fn start(meta: MetaStore) -> KeyMeter {
        let inner = Arc::new(MeterState {
            meta,
            keys: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        });
        tokio::spawn(flush_periodically(Arc::downgrade(&inner)));
        KeyMeter { inner }
    }

    async fn day_counts(&self, key: KeyHash) -> Result<Arc<DayCounts>, keyhole_meta::MetaError> {
        let day = today();
        let counts = lock(&self.inner.keys)
            .entry((key, day))
            .or_insert_with(|| {
                Arc::new(DayCounts {
                    loaded: tokio::sync::OnceCell::new(),
                    counts: Mutex::new(Counts::default()),
                })
            })
            .clone();
        counts
            .loaded
            .get_or_try_init(|| async {
                let stored = self.inner.meta.key_usage(&key, &day_text(day)).await?;
                lock(&counts.counts).stored.add(&stored);
                Ok::<(), keyhole_meta::MetaError>(())
            })
            .await?;
        Ok(counts)
    }

    /// Admits one request of `grant` or says why not; counts it either way.
    pub(crate) async fn admit(
        &self,
        grant: &Grant,
        class: RequestClass,
    ) -> Result<Result<(), Refused>, keyhole_meta::MetaError> {
        let counts = self.day_counts(grant.key_hash()).await?;
        let limits = grant.limits();
        let rate = match class {
            RequestClass::Write => limits.writes,
            RequestClass::Read | RequestClass::Query => limits.reads,
        };
        let verdict = match rate {
            Some(rate) => self.take_token(grant.key_hash(), class == RequestClass::Write, rate),
            None => Ok(()),
        };
        let mut counts = lock(&counts.counts);
        let used = counts.total();
        let unflushed = &mut counts.unflushed;
        let verdict = verdict.and_then(|()| match (class, limits.queries_per_day) {
            (RequestClass::Query, Some(quota)) if used.queries >= quota => {
                Err(Refused::QuotaExceeded {
                    retry_after_secs: seconds_to_utc_midnight(),
                })
            }
            _ => Ok(()),
        });
        match (verdict, class) {
            (Err(_), _) => unflushed.refused += 1,
            (Ok(()), RequestClass::Write) => unflushed.writes += 1,
            (Ok(()), RequestClass::Read) => unflushed.reads += 1,
            (Ok(()), RequestClass::Query) => {
                unflushed.reads += 1;
                unflushed.queries += 1;
            }
        }
        Ok(verdict)
    }

    fn take_token(&self, key: KeyHash, write: bool, limit: RateLimit) -> Result<(), Refused> {
        let now = Instant::now();
        let mut buckets = lock(&self.inner.buckets);
        let bucket = buckets.entry((key, write)).or_insert(Bucket {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
        });
        if bucket.limit != limit {
            // The key's limits changed: start its bucket over under the new ones.
            *bucket = Bucket {
                limit,
                tokens: f64::from(limit.burst),
                refilled_at: now,
            };
        }
        let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / limit.per_second;
        Err(Refused::RateLimited {
            retry_after_secs: wait.ceil().max(1.0) as u64,
        })
    }

    /// Whether `grant` may write `events` more events today.
    pub(crate) async fn check_events(
        &self,
        grant: &Grant,
        events: usize,
    ) -> Result<Result<(), Refused>, keyhole_meta::MetaError> {
        let Some(quota) = grant.limits().events_per_day else {
            return Ok(Ok(()));
        };
        let counts = self.day_counts(grant.key_hash()).await?;
        let mut counts = lock(&counts.counts);
        if counts.total().events + events as u64 > quota {
            counts.unflushed.refused += 1;
            return Ok(Err(Refused::QuotaExceeded {
                retry_after_secs: seconds_to_utc_midnight(),
            }));
        }
        Ok(Ok(()))
    }

    /// Counts events `grant` wrote.
    pub(crate) async fn count_events(&self, grant: &Grant, events: usize) {
        if events == 0 {
            return;
        }
        match self.day_counts(grant.key_hash()).await {
            Ok(counts) => lock(&counts.counts).unflushed.events += events as u64,
            Err(error) => tracing::warn!(%error, "cannot count a key's events"),
        }
    }

    /// A key's usage today: what is stored plus what is not yet.
    pub(crate) async fn usage_today(
        &self,
        key: KeyHash,
    ) -> Result<KeyUsage, keyhole_meta::MetaError> {
        let counts = self.day_counts(key).await?;
        let usage = lock(&counts.counts).total();
        Ok(usage)
    }

    /// Adds every unflushed count to the metadata store.
    pub(crate) async fn flush(&self) {
        flush(&self.inner).await;
    }
}

async fn flush(state: &MeterState) {
    let day = today();
    let mut pending = Vec::new();
    {
        let mut keys = lock(&state.keys);
        for ((key, key_day), counts) in keys.iter() {
            let usage = std::mem::take(&mut lock(&counts.counts).unflushed);
            if !usage.is_zero() {
                pending.push((*key, *key_day, usage, counts.clone()));
            }
        }
        // Past days are done once flushed; their quotas no longer apply.
        keys.retain(|(_, key_day), _| *key_day == day);
    }
    if pending.is_empty() {
        return;
    }
    let rows: Vec<(KeyHash, String, KeyUsage)> = pending
        .iter()
        .map(|(key, key_day, usage, _)| (*key, day_text(*key_day), *usage))
        .collect();
    let stored = state.meta.add_key_usage(&rows).await;
    if let Err(error) = &stored {
        tracing::warn!(%error, keys = rows.len(), "cannot store key usage; counts kept for the next try");
    }
    for (_, _, usage, counts) in pending {
        let mut counts = lock(&counts.counts);
        match stored {
            Ok(()) => counts.stored.add(&usage),
            Err(_) => counts.unflushed.add(&usage),
        }
    }
}

async fn flush_periodically(state: Weak<MeterState>) {
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        let Some(state) = state.upgrade() else { return };
        flush(&state).await;
    }
}
