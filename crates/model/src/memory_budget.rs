//! One memory budget in bytes for the whole server, from which every large consumer draws: the unflushed
//! event buffer (with what a flush copies), compaction and file rewrites, query execution, write requests
//! being read and prepared, and every cache (data files, grants, cached query results, dataset buckets,
//! user-agent answers). Each consumer is accounted in bytes, never in entries.
//!
//! Design: the limit (`keyhole serve --memory-limit`) is split into fixed shares, one per consumer
//! ([`MemoryConsumer::share_per_mille`]); together they are three quarters of the limit, and the last
//! quarter is left for what no consumer accounts (the runtime's stacks and buffers, the user-agent
//! regexes, metadata, the allocator's own slack). Fixed shares rather than one first-come pool: a flood of
//! one kind of work (writes, say) then cannot starve another (queries), and each consumer's bound is
//! known in advance, so ARCHITECTURE.md can say who holds how much. Consumers use it in one of two ways:
//! - work that can be refused reserves before it starts ([`MemoryBudget::try_reserve`]) and holds a
//!   [`MemoryReservation`] that gives the bytes back when dropped; past its share it waits briefly and is
//!   then refused (the caller's choice of answer: 503 with `Retry-After` for writes and queries);
//! - a cache or buffer that bounds itself reports what it holds ([`MemoryBudget::set_used`]) and sizes
//!   itself from [`MemoryBudget::share`].
//!
//! Pure bookkeeping (atomics): no I/O, no runtime, so every layer can hold a handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who draws from the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryConsumer {
    /// Acknowledged events not yet in Parquet, with the copies a flush makes of them.
    EventBuffer,
    /// Merging a day's files, and rewriting files for deletes.
    Compaction,
    /// Query operators (DataFusion's memory pool, all queries together).
    Queries,
    /// Write request bodies being read, split and prepared, until acknowledged.
    RequestBodies,
    /// Whole Parquet files kept for queries.
    FileCache,
    /// Resolved grants of keys and embed tokens.
    GrantCache,
    /// Cached query results.
    ResultCache,
    /// Dataset buckets.
    DatasetCache,
    /// Parsed user agents (the `keen:ua_parser` add-on).
    UserAgentCache,
}

impl MemoryConsumer {
    /// Every consumer.
    pub const ALL: [MemoryConsumer; 9] = [
        MemoryConsumer::EventBuffer,
        MemoryConsumer::Compaction,
        MemoryConsumer::Queries,
        MemoryConsumer::RequestBodies,
        MemoryConsumer::FileCache,
        MemoryConsumer::GrantCache,
        MemoryConsumer::ResultCache,
        MemoryConsumer::DatasetCache,
        MemoryConsumer::UserAgentCache,
    ];

    /// The label `/metrics` shows.
    pub fn name(self) -> &'static str {
        match self {
            MemoryConsumer::EventBuffer => "event_buffer",
            MemoryConsumer::Compaction => "compaction",
            MemoryConsumer::Queries => "queries",
            MemoryConsumer::RequestBodies => "request_bodies",
            MemoryConsumer::FileCache => "file_cache",
            MemoryConsumer::GrantCache => "grant_cache",
            MemoryConsumer::ResultCache => "result_cache",
            MemoryConsumer::DatasetCache => "dataset_cache",
            MemoryConsumer::UserAgentCache => "user_agent_cache",
        }
    }

    /// Thousandths of the limit this consumer may hold. They add up to 750: a quarter of the limit is
    /// left for what nothing accounts (see the module docs).
    pub(crate) fn share_per_mille(self) -> u64 {
        match self {
            MemoryConsumer::EventBuffer => 200,
            MemoryConsumer::Compaction => 80,
            MemoryConsumer::Queries => 200,
            MemoryConsumer::RequestBodies => 80,
            MemoryConsumer::FileCache => 120,
            MemoryConsumer::GrantCache => 20,
            MemoryConsumer::ResultCache => 20,
            MemoryConsumer::DatasetCache => 20,
            MemoryConsumer::UserAgentCache => 10,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The smallest limit accepted: below it the shares are too small for one event at the size limits.
pub const MIN_MEMORY_LIMIT_BYTES: u64 = 128 * 1024 * 1024;

#[derive(Debug, Default)]
struct Account {
    used: AtomicU64,
    peak: AtomicU64,
    refusals: AtomicU64,
}

#[derive(Debug)]
struct BudgetInner {
    limit_bytes: u64,
    accounts: [Account; MemoryConsumer::ALL.len()],
}

/// The server's memory budget; cheap to clone (every clone is the same budget).
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

/// What one consumer holds now, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerUsage {
    /// Which consumer.
    pub consumer: MemoryConsumer,
    /// Its share of the limit.
    pub share_bytes: u64,
    /// What it holds now.
    pub used_bytes: u64,
    /// The most it has held.
    pub peak_bytes: u64,
    /// How often it was refused for lack of room.
    pub refusals: u64,
}

impl MemoryBudget {
    /// A budget of `limit_bytes` (at least [`MIN_MEMORY_LIMIT_BYTES`]).
    pub fn new(limit_bytes: u64) -> MemoryBudget {
        MemoryBudget {
            inner: Arc::new(BudgetInner {
                limit_bytes: limit_bytes.max(MIN_MEMORY_LIMIT_BYTES),
                accounts: Default::default(),
            }),
        }
    }

    /// The whole limit.
    pub fn limit_bytes(&self) -> u64 {
        self.inner.limit_bytes
    }

    /// The bytes `consumer` may hold.
    pub fn share(&self, consumer: MemoryConsumer) -> u64 {
        self.inner.limit_bytes / 1000 * consumer.share_per_mille()
    }

    /// What `consumer` holds now.
    pub fn used(&self, consumer: MemoryConsumer) -> u64 {
        self.account(consumer).used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` for `consumer` if they fit in its share; `None` (and a refusal counted by the
    /// caller with [`MemoryBudget::record_refusal`] once it gives up) otherwise.
    pub fn try_reserve(&self, consumer: MemoryConsumer, bytes: u64) -> Option<MemoryReservation> {
        if !self.try_grow(consumer, bytes) {
            return None;
        }
        Some(MemoryReservation {
            budget: self.clone(),
            consumer,
            bytes,
        })
    }

    /// Adds `bytes` to `consumer` if they fit in its share (for pools that track their own reservations,
    /// as DataFusion's do; give them back with [`MemoryBudget::release`]).
    pub fn try_grow(&self, consumer: MemoryConsumer, bytes: u64) -> bool {
        let share = self.share(consumer);
        let account = self.account(consumer);
        let grown = account
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= share)
            });
        match grown {
            Ok(before) => {
                account.peak.fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Adds `bytes` to `consumer` whether or not they fit (memory already taken, as DataFusion's
    /// infallible `grow` reports it).
    pub fn force_grow(&self, consumer: MemoryConsumer, bytes: u64) {
        let account = self.account(consumer);
        let before = account.used.fetch_add(bytes, Ordering::AcqRel);
        account.peak.fetch_max(before + bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` of `consumer`'s.
    pub fn release(&self, consumer: MemoryConsumer, bytes: u64) {
        let account = self.account(consumer);
        let _ = account
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Sets what a self-bounding consumer (a cache, the event buffer) holds now.
    pub fn set_used(&self, consumer: MemoryConsumer, bytes: u64) {
        let account = self.account(consumer);
        account.used.store(bytes, Ordering::Release);
        account.peak.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Counts one piece of work refused because `consumer`'s share was spent.
    pub fn record_refusal(&self, consumer: MemoryConsumer) {
        self.account(consumer)
            .refusals
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Every consumer's share, use, peak and refusals.
    pub fn usage(&self) -> Vec<ConsumerUsage> {
        MemoryConsumer::ALL
            .iter()
            .map(|&consumer| {
                let account = self.account(consumer);
                ConsumerUsage {
                    consumer,
                    share_bytes: self.share(consumer),
                    used_bytes: account.used.load(Ordering::Relaxed),
                    peak_bytes: account.peak.load(Ordering::Relaxed),
                    refusals: account.refusals.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn account(&self, consumer: MemoryConsumer) -> &Account {
        &self.inner.accounts[consumer.index()]
    }
}

impl Default for MemoryBudget {
    /// A budget for tests and tools: 1 GiB.
    fn default() -> MemoryBudget {
        MemoryBudget::new(1024 * 1024 * 1024)
    }
}

/// Bytes held from the budget; given back when dropped.
#[derive(Debug)]
pub struct MemoryReservation {
    budget: MemoryBudget,
    consumer: MemoryConsumer,
    bytes: u64,
}

impl MemoryReservation {
    /// The bytes the reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows the reservation by `bytes` if they fit in the consumer's share.
    pub fn try_grow(&mut self, bytes: u64) -> bool {
        if !self.budget.try_grow(self.consumer, bytes) {
            return false;
        }
        self.bytes += bytes;
        true
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        self.budget.release(self.consumer, self.bytes);
    }
}

/// Parses a size as `keyhole serve --memory-limit` takes it: bytes (`1073741824`), or a number with a
/// binary unit `KiB`, `MiB`, `GiB`, `TiB` (also `K`, `M`, `G`, `T`, and `KB`/`MB`/`GB`/`TB`, read as
/// binary units too), case-insensitive, optionally with a space before the unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|character: char| !character.is_ascii_digit() && character != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: give bytes or a number with KiB, MiB, GiB or TiB (e.g. 2GiB, 512MiB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: give bytes or a number with KiB, MiB, GiB or TiB (e.g. 2GiB, 512MiB)"))?;
    let bytes = value * unit_bytes as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is not a usable size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512 mb"), Ok(512 << 20));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn shares_leave_a_quarter_unaccounted() {
        let total: u64 = MemoryConsumer::ALL
            .iter()
            .map(|consumer| consumer.share_per_mille())
            .sum();
        assert_eq!(total, 750);
    }

    #[test]
    fn reservations_stay_within_their_share_and_give_back_on_drop() {
        let budget = MemoryBudget::new(1000 * 1024 * 1024);
        let share = budget.share(MemoryConsumer::RequestBodies);
        let first = budget
            .try_reserve(MemoryConsumer::RequestBodies, share - 10)
            .expect("fits");
        assert!(
            budget
                .try_reserve(MemoryConsumer::RequestBodies, 11)
                .is_none()
        );
        let mut second = budget
            .try_reserve(MemoryConsumer::RequestBodies, 10)
            .expect("fits exactly");
        assert!(!second.try_grow(1));
        drop(first);
        assert!(second.try_grow(1));
        assert_eq!(budget.used(MemoryConsumer::RequestBodies), 11);
        drop(second);
        assert_eq!(budget.used(MemoryConsumer::RequestBodies), 0);
        let usage = budget.usage();
        let bodies = usage
            .iter()
            .find(|usage| usage.consumer == MemoryConsumer::RequestBodies)
            .expect("listed");
        assert_eq!(bodies.peak_bytes, share);
        // Other consumers' shares are untouched by this one's use.
        assert!(
            budget
                .try_reserve(MemoryConsumer::Compaction, 1024)
                .is_some()
        );
    }
}
