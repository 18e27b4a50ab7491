//! A map bounded in bytes, for the server's stores of computed results (cached query results, dataset
//! buckets): each entry says what it is charged and when it was last read; inserting past the bound drops
//! the least recently read entries first, and an entry over a sixteenth of the bound is not kept at all
//! (one answer must not empty the store for everyone else).

use std::collections::HashMap;
use std::hash::Hash;

use keyhole_model::timestamp::EpochMillis;

/// What an entry of a [`ByteBoundedMap`] reports about itself.
pub(crate) trait Charged {
    /// The bytes the entry is charged (an estimate that errs high, `model::footprint`).
    fn charged_bytes(&self) -> usize;
    fn last_read(&self) -> EpochMillis;
}

pub(crate) struct ByteBoundedMap<K, V> {
    entries: HashMap<K, (V, usize)>,
    bytes: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Charged> ByteBoundedMap<K, V> {
    pub(crate) fn new(max_bytes: usize) -> ByteBoundedMap<K, V> {
        ByteBoundedMap {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Bytes charged and entries held.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (self.bytes, self.entries.len())
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(value, _)| value)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, (value, _))| (key, value))
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (value, bytes) = self.entries.remove(key)?;
        self.bytes -= bytes;
        Some(value)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|key, (value, charged)| {
            let kept = keep(key, value);
            if !kept {
                *bytes -= *charged;
            }
            kept
        });
    }

    /// Stores `value` under `key` (replacing what was there), dropping the least recently read entries
    /// until it fits; a value over a sixteenth of the bound is not stored.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.remove(&key);
        let charged = value.charged_bytes();
        if charged > self.max_bytes / 16 {
            return;
        }
        while self.bytes + charged > self.max_bytes {
            let least_recent = self
                .entries
                .iter()
                .min_by_key(|(_, (value, _))| value.last_read())
                .map(|(key, _)| key.clone());
            let Some(least_recent) = least_recent else {
                break;
            };
            self.remove(&least_recent);
        }
        self.bytes += charged;
        self.entries.insert(key, (value, charged));
    }

    /// Re-charges the entry under `key` after it changed in place, dropping it if it no longer fits.
    pub(crate) fn recharge(&mut self, key: &K) {
        let Some((value, charged)) = self.entries.get_mut(key) else {
            return;
        };
        let now = value.charged_bytes();
        self.bytes = self.bytes - *charged + now;
        *charged = now;
        if self.bytes > self.max_bytes || now > self.max_bytes / 16 {
            self.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entry(usize, EpochMillis);

    impl Charged for Entry {
        fn charged_bytes(&self) -> usize {
            self.0
        }
        fn last_read(&self) -> EpochMillis {
            self.1
        }
    }

    #[test]
    fn the_least_recently_read_make_room_and_oversized_entries_are_not_kept() {
        let mut map = ByteBoundedMap::new(1_600);
        map.insert("a", Entry(60, 3));
        map.insert("b", Entry(60, 1));
        map.insert("c", Entry(60, 2));
        assert_eq!(map.usage(), (180, 3));
        map.insert("big", Entry(101, 9));
        assert_eq!(map.usage(), (180, 3), "over a sixteenth: not kept");
        for n in 0..25 {
            map.insert(
                Box::leak(format!("k{n}").into_boxed_str()),
                Entry(60, 10 + n),
            );
        }
        assert!(map.usage().0 <= 1_600);
        assert!(
            map.get_mut(&"b").is_none() && map.get_mut(&"c").is_none(),
            "the oldest went first"
        );
        map.retain(|_, entry| entry.1 > 20);
        assert_eq!(map.usage().0, 60 * map.usage().1);
    }
}
