//! The aggregate CRDT: exactly-once sensor aggregates over an at-least-once
//! network.
//!
//! For every key `(sensor, resolution, bucket)` the state holds a map
//! `NodeId → Entry {version, summary}`. Each node is the only writer of its
//! own entries and stamps every write with the next value of its own
//! monotonic version counter. The join keeps, per (key, node), the entry with
//! the higher version. Because a node's entry *replaces* its older entry
//! rather than adding to it, receiving a delta twice, late, or out of order
//! changes nothing: re-delivery cannot double count.
//!
//! The value a user sees for a key is the monoid sum of the node entries,
//! combined in ascending [`NodeId`] order. Floating-point addition is not
//! associative, so a fixed order is what makes the merged value
//! bit-identical on every replica regardless of arrival order.
//!
//! **Versions and deltas.** Every write takes a fresh version (versions are
//! unique per node), so "everything node `n` wrote after version `w`" is
//! exactly the entries of `n` whose version is above `w`.
//! [`AggregateState::delta_since`] returns those entries for every node of a
//! [`VersionVector`]; joined into a replica that holds all of `n`'s writes up
//! to `w` (the sync protocol acknowledges watermarks only contiguously), it
//! gives the same state as the full join.
//!
//! ```
//! use tributary_core::crdt::{aggregate::{AggregateState, Key}, Join};
//! use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
//!
//! let key = Key::new(SensorId(1), Resolution::Minute, Bucket::new(0));
//! let (a, b) = (NodeId(1), NodeId(2));
//! let mut edge_a = AggregateState::new();
//! edge_a.record(a, key, Timestamp(1_000), 20.0).unwrap();
//! let mut edge_b = AggregateState::new();
//! edge_b.record(b, key, Timestamp(2_000), 24.0).unwrap();
//!
//! let mut hub = AggregateState::new();
//! let delta = edge_a.delta_since(&hub.versions());
//! hub.join(&delta);
//! hub.join(&edge_b);
//! hub.join(&delta); // re-delivered: no double count
//! assert_eq!(hub.merged(&key).count, 2);
//! assert_eq!(hub.merged(&key).mean(), Some(22.0));
//! ```

use alloc::collections::{BTreeMap, btree_map};

use alloc::vec::Vec;
use smallvec::{SmallVec, smallvec};

use super::Join;
pub use super::version_vector::VersionVector;
use crate::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use crate::summary::{NonFinite, Summary};

/// What an aggregate is about: one sensor, one bucket width, one time slot.
/// Ordered by sensor, then resolution, then bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The sensor.
    pub sensor: SensorId,
    /// The bucket width.
    pub resolution: Resolution,
    /// The time slot at that width.
    pub bucket: Bucket,
}

impl Key {
    /// A key.
    pub const fn new(sensor: SensorId, resolution: Resolution, bucket: Bucket) -> Self {
        Key {
            sensor,
            resolution,
            bucket,
        }
    }

    /// The key of `resolution` whose bucket contains `t`.
    pub const fn containing(sensor: SensorId, resolution: Resolution, t: Timestamp) -> Self {
        Key::new(sensor, resolution, Bucket::containing(t, resolution))
    }
}

/// One node's contribution to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The writer's version counter when it last changed this entry.
    pub version: u64,
    /// The writer's readings in this bucket.
    pub summary: Summary,
}

impl Entry {
    /// Whether `self` should replace `other` in a join: higher version wins.
    /// Equal versions with different summaries can only come from a node
    /// that reused a version (lost its counter); a fixed total order over
    /// the summary bits still picks the same winner on every replica, so
    /// the join stays commutative and replicas converge.
    fn supersedes(&self, other: &Entry) -> bool {
        (self.version, summary_order_key(&self.summary))
            > (other.version, summary_order_key(&other.summary))
    }
}

fn summary_order_key(s: &Summary) -> (u64, u64, u64, u64, u64, u64, u64) {
    (
        s.count,
        s.sum.to_bits(),
        s.min.to_bits(),
        s.max.to_bits(),
        s.sum_sq.to_bits(),
        s.first_ts.0,
        s.last_ts.0,
    )
}

/// One key's entries, sorted by node id. A key usually has one writer (a
/// sensor belongs to one gateway), so that entry lives inline in the map's
/// node: no allocation per key (see the `join` benchmark).
type PerNode = SmallVec<[(NodeId, Entry); 1]>;

/// The aggregate CRDT state: every key's per-node entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggregateState {
    keys: BTreeMap<Key, PerNode>,
    versions: VersionVector,
}

impl AggregateState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records reading `x` at `t` as node `node` into `key` (whose bucket
    /// should contain `t`: late readings go to their own, old bucket).
    /// Returns the new version. Only `node` itself may call this for its
    /// own id: it is the single writer of its entries.
    pub fn record(
        &mut self,
        node: NodeId,
        key: Key,
        t: Timestamp,
        x: f64,
    ) -> Result<u64, NonFinite> {
        let reading = Summary::of(t, x)?;
        Ok(self.add_summary(node, key, &reading))
    }

    /// Records one reading at every resolution (the ingest path of a
    /// gateway); returns the last version taken.
    pub fn record_all_resolutions(
        &mut self,
        node: NodeId,
        sensor: SensorId,
        t: Timestamp,
        x: f64,
    ) -> Result<u64, NonFinite> {
        let reading = Summary::of(t, x)?;
        let mut v = 0;
        for r in Resolution::ALL {
            v = self.add_summary(node, Key::containing(sensor, r, t), &reading);
        }
        Ok(v)
    }

    /// Folds a pre-aggregated window (e.g. a device's summary frame) into
    /// node `node`'s entry for `key`, taking a new version.
    pub fn add_summary(&mut self, node: NodeId, key: Key, s: &Summary) -> u64 {
        let version = self.next_version(node);
        let per_node = self.keys.entry(key).or_default();
        match per_node.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => {
                if let Some((_, entry)) = per_node.get_mut(i) {
                    entry.summary.combine(s);
                    entry.version = version;
                }
            }
            // The first write of this node to this key: the window itself
            // (the same bits as `Summary::EMPTY` combined with it).
            Err(i) => per_node.insert(
                i,
                (
                    node,
                    Entry {
                        version,
                        summary: *s,
                    },
                ),
            ),
        }
        version
    }

    /// Gives every entry of `node` whose key `select`s a fresh version,
    /// its summary unchanged; returns how many. Anti-entropy's repair
    /// (`sync::digest`): re-stamped entries are above every watermark, so
    /// they stream to the hub again through the ordinary, acknowledged
    /// path, and replace any stale or missing copy there (the join keeps
    /// the higher version of the same summary).
    pub fn restamp(&mut self, node: NodeId, mut select: impl FnMut(&Key) -> bool) -> usize {
        let mut n = 0;
        for (key, per_node) in self.keys.iter_mut() {
            if !select(key) {
                continue;
            }
            if let Ok(i) = per_node.binary_search_by_key(&node, |(x, _)| *x)
                && let Some((_, entry)) = per_node.get_mut(i)
            {
                entry.version = self.versions.bump(node);
                n += 1;
            }
        }
        n
    }

    fn next_version(&mut self, node: NodeId) -> u64 {
        // 2^64 writes is centuries at a billion per second; `bump`
        // saturates, so the counter never wraps to a version that loses.
        self.versions.bump(node)
    }

    /// Joins one remote entry; returns whether it changed the state.
    pub fn join_entry(&mut self, key: Key, node: NodeId, entry: Entry) -> bool {
        self.versions.observe(node, entry.version);
        let per_node = match self.keys.entry(key) {
            // Most keys have one writer: allocate exactly one slot.
            btree_map::Entry::Vacant(v) => {
                v.insert(smallvec![(node, entry)]);
                return true;
            }
            btree_map::Entry::Occupied(o) => o.into_mut(),
        };
        match per_node.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => match per_node.get_mut(i) {
                Some((_, mine)) if entry.supersedes(mine) => {
                    *mine = entry;
                    true
                }
                _ => false,
            },
            Err(i) => {
                per_node.insert(i, (node, entry));
                true
            }
        }
    }

    /// The highest version seen per node.
    pub fn versions(&self) -> VersionVector {
        self.versions.clone()
    }

    /// The highest version seen from `node` (0 if none).
    pub fn version_of(&self, node: NodeId) -> u64 {
        self.versions.get(node)
    }

    /// The entries a replica that has seen `seen` is missing: for every node,
    /// those with a version above `seen[node]` (all of them for a node not
    /// in `seen`). The result is itself a state, so it is joined like one.
    pub fn delta_since(&self, seen: &VersionVector) -> AggregateState {
        let mut out = AggregateState::new();
        for (key, per_node) in &self.keys {
            for (node, entry) in per_node {
                if entry.version > seen.get(*node) {
                    out.join_entry(*key, *node, *entry);
                }
            }
        }
        out
    }

    /// The entries of `node` with a version above `after`, in version order:
    /// what a gateway ships when the hub has acknowledged `after`.
    pub fn node_entries_since(&self, node: NodeId, after: u64) -> Vec<(Key, Entry)> {
        let mut out: Vec<(Key, Entry)> = self
            .keys
            .iter()
            .filter_map(|(k, per_node)| {
                per_node
                    .iter()
                    .find(|(n, _)| *n == node)
                    .map(|(_, e)| (*k, *e))
            })
            .filter(|(_, e)| e.version > after)
            .collect();
        out.sort_unstable_by_key(|(_, e)| e.version);
        out
    }

    /// The merged value of `key`: the per-node summaries combined in
    /// ascending node order (empty if no node wrote it).
    pub fn merged(&self, key: &Key) -> Summary {
        let mut acc = Summary::EMPTY;
        if let Some(per_node) = self.keys.get(key) {
            for (_, e) in per_node {
                acc.combine(&e.summary);
            }
        }
        acc
    }

    /// One key's per-node entries, in node order.
    pub fn entries(&self, key: &Key) -> impl Iterator<Item = (NodeId, Entry)> + '_ {
        self.keys
            .get(key)
            .into_iter()
            .flat_map(|m| m.iter().map(|(n, e)| (*n, *e)))
    }

    /// Every key with its merged value, in key order.
    pub fn iter_merged(&self) -> impl Iterator<Item = (Key, Summary)> + '_ {
        self.keys.keys().map(|k| (*k, self.merged(k)))
    }

    /// Every (key, node, entry), in key then node order.
    pub fn iter_entries(&self) -> impl Iterator<Item = (Key, NodeId, Entry)> + '_ {
        self.keys
            .iter()
            .flat_map(|(k, m)| m.iter().map(move |(n, e)| (*k, *n, *e)))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the state holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Join for AggregateState {
    fn join(&mut self, other: &Self) {
        for (key, per_node) in &other.keys {
            for (node, entry) in per_node {
                self.join_entry(*key, *node, *entry);
            }
        }
        // A state can know a node's counter without holding an entry at it
        // (a superseded write), so versions join as well.
        self.versions.join(&other.versions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::reading;
    use proptest::prelude::*;
    use std::vec;

    const NODES: u64 = 4;

    /// One write by one node: (node, sensor, resolution index, time, value).
    type Op = (u64, u32, usize, u64, f64);

    fn op() -> impl Strategy<Value = Op> {
        (0..NODES, 0u32..3, 0usize..4, 0u64..200_000, reading())
    }

    /// The model of how states arise in the system: each node writes its own
    /// history; replicas hold the join of snapshots of node histories (a
    /// gateway's own state, or whatever complete deltas a hub received).
    fn snapshot(ops: &[Op], node: u64, upto: usize) -> AggregateState {
        let mut s = AggregateState::new();
        for &(n, sensor, r, t, x) in ops.iter().filter(|o| o.0 == node).take(upto) {
            let res = Resolution::ALL[r];
            s.record(
                NodeId(n),
                Key::containing(SensorId(sensor), res, Timestamp(t)),
                Timestamp(t),
                x,
            )
            .unwrap();
        }
        s
    }

    /// A replica: for each node, a snapshot taken after some prefix of its
    /// writes (possibly none).
    fn replica(ops: &[Op], cuts: &[usize]) -> AggregateState {
        let mut s = AggregateState::new();
        for (node, &cut) in (0..NODES).zip(cuts) {
            s.join(&snapshot(ops, node, cut));
        }
        s
    }

    fn history_and_replicas() -> impl Strategy<Value = (Vec<Op>, [AggregateState; 3])> {
        proptest::collection::vec(op(), 0..60).prop_flat_map(|ops| {
            let cuts = proptest::collection::vec(0usize..40, NODES as usize);
            (Just(ops), cuts.clone(), cuts.clone(), cuts).prop_map(|(ops, a, b, c)| {
                let rs = [replica(&ops, &a), replica(&ops, &b), replica(&ops, &c)];
                (ops, rs)
            })
        })
    }

    #[test]
    fn redelivery_does_not_double_count() {
        let key = Key::new(SensorId(7), Resolution::Hour, Bucket::new(3));
        let mut edge = AggregateState::new();
        edge.record(NodeId(1), key, Timestamp(3 * 3_600_000), 5.0)
            .unwrap();
        let mut hub = AggregateState::new();
        for _ in 0..3 {
            hub.join(&edge);
        }
        assert_eq!(hub.merged(&key).count, 1);
        edge.record(NodeId(1), key, Timestamp(3 * 3_600_000 + 1), 7.0)
            .unwrap();
        let old = hub.clone();
        hub.join(&edge);
        hub.join(&old); // a stale, reordered delivery
        assert_eq!(hub.merged(&key).count, 2);
        assert_eq!(hub.merged(&key).sum, 12.0);
    }

    #[test]
    fn record_all_resolutions_touches_each_once() {
        let mut s = AggregateState::new();
        let t = Timestamp(90_061_000);
        let v = s
            .record_all_resolutions(NodeId(9), SensorId(1), t, 1.5)
            .unwrap();
        assert_eq!(v, 4);
        assert_eq!(s.len(), 4);
        for r in Resolution::ALL {
            let m = s.merged(&Key::containing(SensorId(1), r, t));
            assert_eq!((m.count, m.sum), (1, 1.5));
        }
        assert!(
            s.record_all_resolutions(NodeId(9), SensorId(1), t, f64::NAN)
                .is_err()
        );
        assert_eq!(s.version_of(NodeId(9)), 4);
    }

    #[test]
    fn node_entries_since_is_in_version_order_and_excludes_acked() {
        let mut s = AggregateState::new();
        let k1 = Key::new(SensorId(1), Resolution::Second, Bucket::new(0));
        let k2 = Key::new(SensorId(2), Resolution::Second, Bucket::new(0));
        s.record(NodeId(1), k1, Timestamp(0), 1.0).unwrap(); // v1
        s.record(NodeId(1), k2, Timestamp(0), 1.0).unwrap(); // v2
        s.record(NodeId(1), k1, Timestamp(1), 1.0).unwrap(); // v3 supersedes v1
        let since0: Vec<_> = s
            .node_entries_since(NodeId(1), 0)
            .iter()
            .map(|(k, e)| (*k, e.version))
            .collect();
        assert_eq!(since0, vec![(k2, 2), (k1, 3)]);
        let since2: Vec<_> = s
            .node_entries_since(NodeId(1), 2)
            .iter()
            .map(|(k, e)| (*k, e.version))
            .collect();
        assert_eq!(since2, vec![(k1, 3)]);
        assert!(s.node_entries_since(NodeId(2), 0).is_empty());
    }

    #[test]
    fn reused_version_resolves_the_same_everywhere() {
        let key = Key::new(SensorId(1), Resolution::Day, Bucket::new(0));
        let mut x = AggregateState::new();
        x.join_entry(
            key,
            NodeId(1),
            Entry {
                version: 5,
                summary: Summary::of(Timestamp(0), 1.0).unwrap(),
            },
        );
        let mut y = AggregateState::new();
        y.join_entry(
            key,
            NodeId(1),
            Entry {
                version: 5,
                summary: Summary::of(Timestamp(0), 2.0).unwrap(),
            },
        );
        assert_eq!(x.joined(&y), y.joined(&x));
    }

    proptest! {
        #[test]
        fn join_is_commutative((_ops, [a, b, _c]) in history_and_replicas()) {
            prop_assert_eq!(a.joined(&b), b.joined(&a));
        }

        #[test]
        fn join_is_associative((_ops, [a, b, c]) in history_and_replicas()) {
            prop_assert_eq!(a.joined(&b).joined(&c), a.joined(&b.joined(&c)));
        }

        #[test]
        fn join_is_idempotent((_ops, [a, b, _c]) in history_and_replicas()) {
            prop_assert_eq!(a.joined(&a), a.clone());
            let ab = a.joined(&b);
            prop_assert_eq!(ab.joined(&b), ab);
        }

        #[test]
        fn delta_joined_equals_full_join((_ops, [a, b, _c]) in history_and_replicas()) {
            let delta = b.delta_since(&a.versions());
            prop_assert_eq!(a.joined(&delta), a.joined(&b));
            // And the delta holds nothing `a` already has.
            for (k, n, e) in delta.iter_entries() {
                prop_assert!(e.version > a.version_of(n), "{k:?} {n:?}");
            }
        }

        /// Any sequence of deliveries of any deltas — duplicated, reordered,
        /// stale — converges to the same bit-identical merged values.
        #[test]
        fn any_delivery_order_converges(
            (ops, _rs) in history_and_replicas(),
            deliveries in proptest::collection::vec((0..NODES, 0usize..40, 0usize..40), 0..30),
            seed in any::<u64>(),
        ) {
            let finals: Vec<AggregateState> = (0..NODES).map(|n| snapshot(&ops, n, usize::MAX)).collect();
            let mut truth = AggregateState::new();
            for f in &finals { truth.join(f); }

            // Messages: partial snapshots (deltas from arbitrary past
            // watermarks) plus every final state so the run can converge.
            let mut msgs: Vec<AggregateState> = deliveries.iter().map(|&(n, lo, hi)| {
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                let old = snapshot(&ops, n, lo);
                snapshot(&ops, n, hi).delta_since(&old.versions())
            }).collect();
            msgs.extend(finals.iter().cloned());
            msgs.extend(finals.iter().take(2).cloned()); // duplicates

            let mut forward = AggregateState::new();
            for m in &msgs { forward.join(m); }
            let mut shuffled = msgs.clone();
            // Deterministic shuffle from the seed: no RNG reads in the core.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut backward = AggregateState::new();
            for m in &shuffled { backward.join(m); }

            prop_assert_eq!(&forward, &truth);
            prop_assert_eq!(&backward, &truth);
            let fm: Vec<_> = forward.iter_merged().collect();
            let bm: Vec<_> = backward.iter_merged().collect();
            prop_assert_eq!(fm, bm); // Summary equality is bitwise
        }

        #[test]
        fn merged_counts_every_recorded_reading_once(ops in proptest::collection::vec(op(), 0..60)) {
            let mut hub = AggregateState::new();
            for n in 0..NODES {
                let s = snapshot(&ops, n, usize::MAX);
                hub.join(&s);
                hub.join(&s);
            }
            let total: u64 = hub.iter_merged().map(|(_, s)| s.count).sum();
            prop_assert_eq!(total, ops.len() as u64);
        }
    }
}
