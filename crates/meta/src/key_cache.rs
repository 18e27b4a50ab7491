//! The in-process cache of grants, so a request does not read SQLite (or verify a token's signature) to
//! find what its credential may do.
//!
//! Entries are keyed by the SHA-256 hex of the presented key or token (for keys, the same value the SQL
//! lookup uses; no secret is kept) and hold the grant built after the constant-time hash comparison or the
//! signature check. Expiry is not cached: the server checks it against the clock on every request. Unknown secrets are not
//! cached, so a flood of made-up keys cannot grow it. Every change to a key (update, revoke, unrevoke,
//! delete, token revocation) clears the cache *after* the change is committed and bumps a generation number; a lookup that
//! read SQLite before the bump does not store its (possibly stale) answer. So any request that starts after
//! a key-changing API call has returned sees the change, as without the cache.
//!
//! With several nodes on PostgreSQL, a change made on another node arrives as a notification that clears
//! the cache the same way (`key_changes`); while notifications cannot be received the cache is disabled
//! ([`KeyCache::set_enabled`]), so it never answers from before a change it was not told about.

use std::collections::HashMap;
use std::sync::RwLock;

use std::sync::Arc;

use keyhole_model::Grant;

/// Most cached credentials; past it the cache starts over (embed tokens are minted freely, so a client
/// could otherwise grow it without bound).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct KeyCache {
    inner: RwLock<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// True while changes made elsewhere might go unnoticed: nothing is answered or stored.
    disabled: bool,
    generation: u64,
    keys: HashMap<String, Arc<Grant>>,
}

impl KeyCache {
    /// The cached key for a secret's hash, and the generation to pass to [`KeyCache::store`] on a miss.
    pub fn lookup(&self, key_hash_hex: &str) -> (Option<Arc<Grant>>, u64) {
        let state = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.disabled {
            return (None, state.generation);
        }
        (state.keys.get(key_hash_hex).cloned(), state.generation)
    }

    /// Stores what SQLite answered, unless a key changed since `generation` was read.
    pub fn store(&self, key_hash_hex: String, key: Arc<Grant>, generation: u64) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.disabled && state.generation == generation {
            if state.keys.len() >= MAX_ENTRIES {
                state.keys.clear();
            }
            state.keys.insert(key_hash_hex, key);
        }
    }

    /// Turns the cache on or off (off: every lookup misses and nothing is stored).
    pub fn set_enabled(&self, enabled: bool) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.disabled = !enabled;
        state.generation += 1;
        state.keys.clear();
    }

    /// Called after every committed change to a key.
    pub fn invalidate(&self) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.generation += 1;
        state.keys.clear();
    }
}
