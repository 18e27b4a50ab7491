//! The in-process cache of grants, so a request does not read SQLite (or verify a token's signature) to
//! find what its credential may do.
//!
//! Entries are keyed by the SHA-256 hex of the presented key or token (for keys, the same value the SQL
//! lookup uses; no secret is kept) and hold the grant built after the constant-time hash comparison or the
//! signature check. Expiry is not cached: the server checks it against the clock on every request. Unknown
//! secrets are not cached, so a flood of made-up keys cannot grow it; nor is a credential whose request
//! was then refused (another project, origin, permission, rate limit): resolving hands back a
//! [`CacheTicket`] and the server stores the grant with it only once the request passed every check. The
//! cache is bounded in bytes ([`DEFAULT_MAX_BYTES`], each grant charged `Grant::approximate_bytes`): past
//! it the oldest entries are dropped, and a grant larger than a sixteenth of the bound is not kept. Every change to a key (update, revoke, unrevoke,
//! delete, token revocation) clears the cache *after* the change is committed and bumps a generation number; a lookup that
//! read SQLite before the bump does not store its (possibly stale) answer. So any request that starts after
//! a key-changing API call has returned sees the change, as without the cache.
//!
//! With several nodes on PostgreSQL, a change made on another node arrives as a notification that clears
//! the cache the same way (`key_changes`); while notifications cannot be received the cache is disabled
//! ([`KeyCache::set_enabled`]), so it never answers from before a change it was not told about.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use std::sync::Arc;

use keyhole_model::Grant;

/// The bytes the cached grants may take by default.
pub(crate) const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// A grant resolved from the metadata store that may be cached once its request has passed every check
/// (`MetaStore::cache_grant`).
#[derive(Debug)]
pub struct CacheTicket {
    pub(crate) key_hash_hex: String,
    pub(crate) generation: u64,
}

pub(crate) struct KeyCache {
    inner: RwLock<CacheState>,
    /// Set from the server's memory budget (`MetaStore::set_grant_cache_bytes`).
    max_bytes: std::sync::atomic::AtomicUsize,
}

impl Default for KeyCache {
    fn default() -> KeyCache {
        KeyCache::with_max_bytes(DEFAULT_MAX_BYTES)
    }
}

#[derive(Default)]
struct CacheState {
    /// True while changes made elsewhere might go unnoticed: nothing is answered or stored.
    disabled: bool,
    generation: u64,
    keys: HashMap<String, (Arc<Grant>, usize)>,
    /// Cached hashes, oldest first (the order entries are dropped in).
    order: VecDeque<String>,
    bytes: usize,
}

impl CacheState {
    fn clear(&mut self) {
        self.keys.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

impl KeyCache {
    pub(crate) fn with_max_bytes(max_bytes: usize) -> KeyCache {
        KeyCache {
            inner: RwLock::default(),
            max_bytes: max_bytes.into(),
        }
    }

    /// Bounds the cache to `max_bytes` from the next store on (entries past it go then).
    pub(crate) fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes
            .store(max_bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn max_bytes(&self) -> usize {
        self.max_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bytes the cached grants are charged, and how many there are.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (state.bytes, state.keys.len())
    }

    /// The cached key for a secret's hash, and the generation to pass to [`KeyCache::store`] on a miss.
    pub(crate) fn lookup(&self, key_hash_hex: &str) -> (Option<Arc<Grant>>, u64) {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.disabled {
            return (None, state.generation);
        }
        (
            state.keys.get(key_hash_hex).map(|(grant, _)| grant.clone()),
            state.generation,
        )
    }

    /// Stores what the metadata store answered, unless a key changed since the ticket's generation was
    /// read; the oldest entries make room.
    pub(crate) fn store(&self, ticket: CacheTicket, key: Arc<Grant>) {
        let bytes = ticket.key_hash_hex.len() + key.approximate_bytes();
        if bytes > self.max_bytes() / 16 {
            return;
        }
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.disabled
            || state.generation != ticket.generation
            || state.keys.contains_key(&ticket.key_hash_hex)
        {
            return;
        }
        while state.bytes + bytes > self.max_bytes() {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some((_, freed)) = state.keys.remove(&oldest) {
                state.bytes -= freed;
            }
        }
        state.bytes += bytes;
        state.order.push_back(ticket.key_hash_hex.clone());
        state.keys.insert(ticket.key_hash_hex, (key, bytes));
    }

    /// Turns the cache on or off (off: every lookup misses and nothing is stored).
    pub(crate) fn set_enabled(&self, enabled: bool) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.disabled = !enabled;
        state.generation += 1;
        state.clear();
    }

    /// Called after every committed change to a key.
    pub(crate) fn invalidate(&self) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.generation += 1;
        state.clear();
    }
}
