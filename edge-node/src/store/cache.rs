//! A bounded in-memory copy of hot aggregate rows, so a batch updating the
//! current minute/hour/day buckets does not SELECT them again.
//!
//! Two generations instead of a true LRU: lookups hit `hot` then `cold`
//! (promoting), and when `hot` reaches half the capacity it becomes `cold`
//! and the old `cold` is dropped. At most `capacity` entries, O(1) per
//! operation, and a key used in every batch never leaves.

use std::collections::HashMap;

use tributary_core::crdt::aggregate::Key;
use tributary_core::summary::Summary;

/// Key → (version, summary) of rows known to be in the database.
#[derive(Debug)]
pub(crate) struct BucketCache {
    half: usize,
    hot: HashMap<Key, (u64, Summary)>,
    cold: HashMap<Key, (u64, Summary)>,
}

impl BucketCache {
    /// A cache of at most `capacity` keys (0 disables it).
    pub(crate) fn new(capacity: usize) -> BucketCache {
        BucketCache {
            half: capacity / 2,
            hot: HashMap::new(),
            cold: HashMap::new(),
        }
    }

    /// The cached row, if any.
    pub(crate) fn get(&mut self, key: &Key) -> Option<(u64, Summary)> {
        if let Some(v) = self.hot.get(key) {
            return Some(*v);
        }
        let v = self.cold.remove(key)?;
        self.put(*key, v);
        Some(v)
    }

    /// Records the row as now stored.
    pub(crate) fn put(&mut self, key: Key, v: (u64, Summary)) {
        if self.half == 0 {
            return;
        }
        if self.hot.len() >= self.half && !self.hot.contains_key(&key) {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(key, v);
    }

    /// Forgets everything (after a failed transaction or an eviction).
    pub(crate) fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::ids::{Bucket, Resolution, SensorId};

    fn key(i: u64) -> Key {
        Key::new(SensorId(1), Resolution::Second, Bucket(i))
    }

    #[test]
    fn bounded_and_keeps_hot_keys() {
        let mut c = BucketCache::new(8);
        for i in 0..100 {
            c.put(key(i), (i, Summary::EMPTY));
            c.put(key(1000), (i, Summary::EMPTY));
            assert!(c.len() <= 8);
            assert!(c.get(&key(1000)).is_some());
        }
        assert_eq!(c.get(&key(99)).map(|v| v.0), Some(99));
        assert_eq!(c.get(&key(0)), None);
        let mut off = BucketCache::new(0);
        off.put(key(1), (1, Summary::EMPTY));
        assert_eq!(off.get(&key(1)), None);
    }
}
