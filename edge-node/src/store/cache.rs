//! A bounded in-memory copy of hot aggregate rows, so a batch updating the
//! current minute/hour/day buckets does not SELECT them again.
//!
//! Two generations instead of a true LRU: lookups hit `hot` then `cold`
//! (promoting), and when `hot` reaches half the capacity it becomes `cold`
//! and the old `cold` is dropped. At most `capacity` entries, O(1) per
//! operation, and a key used in every batch never leaves.
//!
//! Throughput (see `benches/ingest.rs`): at 1 Hz every reading puts a new
//! 1 s key, so the cache sees ~1.3 puts and lookups per reading. With std's
//! SipHash and a fresh `hot` map per generation (re-grown from empty,
//! rehashing all the way up), hashing and rehashing were ~5 k instructions
//! per reading, a quarter of the whole ingest. Hence [`KeyHasher`] (one
//! multiply per word, keyed per process) and generations that swap maps,
//! keeping their allocations.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use tributary_core::crdt::aggregate::Key;
use tributary_core::summary::Summary;

/// A fast hasher for small fixed-size keys (sensor ids, [`Key`]s): each
/// word is mixed with one multiply, the result finalised (murmur3's
/// `fmix64`). Keys come from the network, so the state starts from a
/// per-process random seed ([`std::collections::hash_map::RandomState`]'s),
/// which an attacker cannot choose collisions against; the maps are bounded
/// anyway (`MAP_CAP`, the cache capacity).
#[derive(Clone, Debug)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Rare path (derived `Hash` of integers uses the typed writes).
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(chunk) {
                *d = *s;
            }
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }

    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`KeyHasher`]s from one random seed.
#[derive(Clone, Debug)]
pub(crate) struct KeyHasherBuilder(u64);

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        // std's RandomState is seeded from the OS RNG once per thread, then
        // incremented: hashing a constant through it yields a seed nobody
        // outside the process knows.
        KeyHasherBuilder(std::collections::hash_map::RandomState::new().hash_one(0x7472_6962u64))
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// A map keyed by small ids, hashed with [`KeyHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, KeyHasherBuilder>;
/// A set of small ids, hashed with [`KeyHasher`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, KeyHasherBuilder>;

/// Key → (version, summary) of rows known to be in the database.
#[derive(Debug)]
pub(crate) struct BucketCache {
    half: usize,
    hot: FastMap<Key, (u64, Summary)>,
    cold: FastMap<Key, (u64, Summary)>,
}

impl BucketCache {
    /// A cache of at most `capacity` keys (0 disables it).
    pub(crate) fn new(capacity: usize) -> BucketCache {
        BucketCache {
            half: capacity / 2,
            hot: FastMap::default(),
            cold: FastMap::default(),
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
            // Swap, then empty the new `hot`: both maps keep their
            // allocations, so no generation re-grows from zero.
            std::mem::swap(&mut self.cold, &mut self.hot);
            self.hot.clear();
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
