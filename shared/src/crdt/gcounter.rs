//! Grow-only counter: one monotone count per node, summed at read time.
//!
//! Each node increments only its own entry, so an entry is single-writer and
//! the join is a per-node maximum: a replica that receives the same state
//! twice, or states in any order, never counts anything twice. The total is
//! computed when read ([`GCounter::value`]), never stored, for the same reason
//! the aggregate CRDT keeps summaries per node.
//!
//! ```
//! use tributary_core::crdt::Join;
//! use tributary_core::crdt::gcounter::GCounter;
//! use tributary_core::ids::NodeId;
//!
//! let (a, b) = (NodeId(1), NodeId(2));
//! let mut on_a = GCounter::new();
//! on_a.increment(a, 3);
//! let mut on_b = GCounter::new();
//! on_b.increment(b, 4);
//!
//! on_a.join(&on_b);
//! on_a.join(&on_b); // a duplicate delivery changes nothing
//! assert_eq!(on_a.value(), 7);
//! assert_eq!(on_a.get(b), 4);
//! ```

use super::Join;
use super::version_vector::VersionVector;
use crate::ids::NodeId;

/// A grow-only counter: per-node counts whose sum only increases.
///
/// Only `node`'s own replica may call [`increment`](GCounter::increment) with
/// `node`: two replicas incrementing one entry would each raise it to their
/// own count and the join would keep the larger, losing the other's
/// increments.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    minicbor::Encode,
    minicbor::Decode,
    minicbor::CborLen
)]
pub struct GCounter {
    /// Count per node: the same shape, join and wire form as a version
    /// vector (a per-node monotone counter). Zero counts are never stored
    /// (nor kept when decoded), so two counters with the same counts compare
    /// equal however they were built.
    #[n(0)]
    counts: VersionVector,
}

impl GCounter {
    /// A counter at zero.
    pub const fn new() -> Self {
        GCounter {
            counts: VersionVector::new(),
        }
    }

    /// Adds `by` to `node`'s count, saturating at `u64::MAX`: a count that
    /// wrapped would drop below what peers hold, and the per-node maximum
    /// would then silently discard every later increment. Adding zero does
    /// nothing.
    pub fn increment(&mut self, node: NodeId, by: u64) {
        // A zero `by` leaves the count as it is; `observe` never stores 0.
        self.counts
            .observe(node, self.counts.get(node).saturating_add(by));
    }

    /// The total over all nodes, exact: each count is below 2⁶⁴ and an entry
    /// takes at least 16 bytes, so a map in a 64-bit address space holds
    /// fewer than 2⁶⁰ of them and the sum stays below 2¹²⁴; the saturating
    /// addition is there only so that no input can make it panic.
    pub fn value(&self) -> u128 {
        self.counts
            .iter()
            .fold(0u128, |sum, (_, c)| sum.saturating_add(u128::from(c)))
    }

    /// `node`'s count (zero for a node that never incremented).
    pub fn get(&self, node: NodeId) -> u64 {
        self.counts.get(node)
    }

    /// The nonzero counts, by ascending node id.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.counts.iter()
    }
}

impl Join for GCounter {
    fn join(&mut self, other: &Self) {
        self.counts.join(&other.counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const REPLICAS: usize = 3;

    #[derive(Debug, Clone)]
    enum Op {
        Increment { replica: usize, by: u64 },
        Sync { from: usize, to: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..REPLICAS, 0u64..1_000).prop_map(|(replica, by)| Op::Increment { replica, by }),
            (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
        ]
    }

    fn node(replica: usize) -> NodeId {
        NodeId(replica as u64 + 1)
    }

    /// Runs `ops` on `REPLICAS` replicas, each incrementing as its own node,
    /// and returns every state any replica passed through (stale ones too,
    /// as a redelivered old message would carry).
    fn history(ops: &[Op]) -> Vec<GCounter> {
        let mut replicas = [GCounter::new(), GCounter::new(), GCounter::new()];
        let mut seen: Vec<GCounter> = replicas.to_vec();
        for op in ops {
            match *op {
                Op::Increment { replica, by } => replicas[replica].increment(node(replica), by),
                Op::Sync { from, to } => {
                    let state = replicas[from].clone();
                    replicas[to].join(&state);
                }
            }
            seen.extend(replicas.iter().cloned());
        }
        seen
    }

    fn states() -> impl Strategy<Value = Vec<GCounter>> {
        proptest::collection::vec(op(), 0..40).prop_map(|ops| history(&ops))
    }

    #[test]
    fn value_is_the_sum_of_per_node_increments() {
        let mut c = GCounter::new();
        c.increment(NodeId(1), 2);
        c.increment(NodeId(2), 5);
        c.increment(NodeId(1), 3);
        assert_eq!(c.value(), 10);
        assert_eq!(c.get(NodeId(1)), 5);
        assert_eq!(c.get(NodeId(9)), 0);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [(NodeId(1), 5), (NodeId(2), 5)]
        );
    }

    #[test]
    fn join_keeps_the_larger_count_per_node() {
        let mut a = GCounter::new();
        a.increment(NodeId(1), 7);
        let mut b = GCounter::new();
        b.increment(NodeId(1), 4);
        b.increment(NodeId(2), 1);
        a.join(&b);
        assert_eq!(a.get(NodeId(1)), 7);
        assert_eq!(a.value(), 8);
    }

    #[test]
    fn increment_saturates_instead_of_wrapping() {
        let mut c = GCounter::new();
        c.increment(NodeId(1), u64::MAX - 1);
        c.increment(NodeId(1), 5);
        assert_eq!(c.get(NodeId(1)), u64::MAX);
        c.increment(NodeId(2), u64::MAX);
        assert_eq!(c.value(), 2 * u128::from(u64::MAX));
    }

    #[test]
    fn adding_zero_leaves_the_counter_equal_to_new() {
        let mut c = GCounter::new();
        c.increment(NodeId(1), 0);
        assert_eq!(c, GCounter::new());
    }

    #[test]
    fn decoding_drops_zero_counts() {
        // A peer's counter with a zero entry, which no operation here can
        // build: the same derive shape as `GCounter`, over a plain map.
        #[derive(minicbor::Encode)]
        struct Peer {
            #[n(0)]
            counts: alloc::collections::BTreeMap<NodeId, u64>,
        }
        let sent = Peer {
            counts: [(NodeId(1), 0), (NodeId(2), 3)].into(),
        };
        let received: GCounter = minicbor::decode(&minicbor::to_vec(&sent).unwrap()).unwrap();
        let mut expected = GCounter::new();
        expected.increment(NodeId(2), 3);
        assert_eq!(received, expected);
    }

    proptest! {
        #[test]
        fn join_is_commutative([a, b] in laws::picks(states())) {
            laws::commutative(&a, &b)?;
        }

        #[test]
        fn join_is_associative([a, b, c] in laws::picks(states())) {
            laws::associative(&a, &b, &c)?;
        }

        #[test]
        fn join_is_idempotent([a] in laws::picks(states())) {
            laws::idempotent(&a)?;
        }

        #[test]
        fn replicas_converge_whatever_the_delivery_order(
            (sent, keys) in laws::deliveries(states()),
        ) {
            let (x, y) = laws::deliver_two_ways(GCounter::new(), &sent, &keys);
            prop_assert_eq!(x.value(), y.value());
            prop_assert_eq!(x, y);
        }

        #[test]
        fn fully_synced_value_counts_every_increment_once(
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let total: u128 = ops
                .iter()
                .map(|op| match *op {
                    Op::Increment { by, .. } => u128::from(by),
                    Op::Sync { .. } => 0,
                })
                .sum();
            let merged = laws::deliver(GCounter::new(), history(&ops).iter());
            prop_assert_eq!(merged.value(), total);
        }

        #[test]
        fn cbor_round_trips([a] in laws::picks(states())) {
            let bytes = minicbor::to_vec(&a).unwrap();
            prop_assert_eq!(bytes.len(), minicbor::len(&a));
            let back: GCounter = minicbor::decode(&bytes).unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
