//! Up/down counter: two grow-only counters, one of increments and one of
//! decrements.
//!
//! A single per-node signed count cannot be joined by maximum (a decrement
//! would lower it and the join would undo it), so increments and decrements
//! each grow monotonically in their own [`GCounter`] and the value is their
//! difference, computed at read time.
//!
//! ```
//! use tributary_core::crdt::Join;
//! use tributary_core::crdt::pncounter::PnCounter;
//! use tributary_core::ids::NodeId;
//!
//! let mut on_a = PnCounter::new();
//! on_a.increment(NodeId(1), 5);
//! let mut on_b = PnCounter::new();
//! on_b.decrement(NodeId(2), 8);
//!
//! on_a.join(&on_b);
//! on_a.join(&on_b); // a duplicate delivery changes nothing
//! assert_eq!(on_a.value(), -3);
//! ```

use super::Join;
use super::gcounter::GCounter;
use crate::ids::NodeId;

/// A counter that goes up and down: increments minus decrements, each kept
/// per node.
///
/// As with [`GCounter`], only `node`'s own replica may change `node`'s
/// entries.
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
pub struct PnCounter {
    /// Increments per node.
    #[n(0)]
    up: GCounter,
    /// Decrements per node, as positive amounts.
    #[n(1)]
    down: GCounter,
}

impl PnCounter {
    /// A counter at zero.
    pub const fn new() -> Self {
        PnCounter {
            up: GCounter::new(),
            down: GCounter::new(),
        }
    }

    /// Adds `by` on behalf of `node` (its running total of increments
    /// saturates at `u64::MAX`, see [`GCounter::increment`]).
    pub fn increment(&mut self, node: NodeId, by: u64) {
        self.up.increment(node, by);
    }

    /// Subtracts `by` on behalf of `node` (its running total of decrements
    /// saturates at `u64::MAX`, see [`GCounter::increment`]).
    pub fn decrement(&mut self, node: NodeId, by: u64) {
        self.down.increment(node, by);
    }

    /// Increments minus decrements over all nodes. Exact: each side is below
    /// 2¹²⁴ (see [`GCounter::value`]), so the conversion and subtraction only
    /// saturate on counts no memory can hold.
    pub fn value(&self) -> i128 {
        let up = i128::try_from(self.up.value()).unwrap_or(i128::MAX);
        let down = i128::try_from(self.down.value()).unwrap_or(i128::MAX);
        up.saturating_sub(down)
    }

    /// The increments, per node.
    pub fn increments(&self) -> &GCounter {
        &self.up
    }

    /// The decrements, per node, as positive amounts.
    pub fn decrements(&self) -> &GCounter {
        &self.down
    }
}

impl Join for PnCounter {
    fn join(&mut self, other: &Self) {
        self.up.join(&other.up);
        self.down.join(&other.down);
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
        Decrement { replica: usize, by: u64 },
        Sync { from: usize, to: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..REPLICAS, 0u64..1_000).prop_map(|(replica, by)| Op::Increment { replica, by }),
            (0..REPLICAS, 0u64..1_000).prop_map(|(replica, by)| Op::Decrement { replica, by }),
            (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
        ]
    }

    fn node(replica: usize) -> NodeId {
        NodeId(replica as u64 + 1)
    }

    /// Runs `ops` on `REPLICAS` replicas, each acting as its own node, and
    /// returns every state any replica passed through.
    fn history(ops: &[Op]) -> Vec<PnCounter> {
        let mut replicas = [PnCounter::new(), PnCounter::new(), PnCounter::new()];
        let mut seen: Vec<PnCounter> = replicas.to_vec();
        for op in ops {
            match *op {
                Op::Increment { replica, by } => replicas[replica].increment(node(replica), by),
                Op::Decrement { replica, by } => replicas[replica].decrement(node(replica), by),
                Op::Sync { from, to } => {
                    let state = replicas[from].clone();
                    replicas[to].join(&state);
                }
            }
            seen.extend(replicas.iter().cloned());
        }
        seen
    }

    fn states() -> impl Strategy<Value = Vec<PnCounter>> {
        proptest::collection::vec(op(), 0..40).prop_map(|ops| history(&ops))
    }

    #[test]
    fn decrement_lowers_the_value_below_zero() {
        let mut c = PnCounter::new();
        c.increment(NodeId(1), 2);
        c.decrement(NodeId(1), 5);
        assert_eq!(c.value(), -3);
        assert_eq!(c.increments().value(), 2);
        assert_eq!(c.decrements().value(), 5);
    }

    #[test]
    fn concurrent_increment_and_decrement_both_count() {
        let mut a = PnCounter::new();
        a.increment(NodeId(1), 10);
        let mut b = a.clone();
        a.decrement(NodeId(1), 4);
        b.increment(NodeId(2), 1);
        b.decrement(NodeId(2), 2);
        assert_eq!(a.joined(&b).value(), 5);
    }

    #[test]
    fn value_is_exact_beyond_the_u64_range() {
        let mut c = PnCounter::new();
        c.decrement(NodeId(1), u64::MAX);
        c.decrement(NodeId(2), u64::MAX);
        assert_eq!(c.value(), -2 * i128::from(u64::MAX));
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
            let (x, y) = laws::deliver_two_ways(PnCounter::new(), &sent, &keys);
            prop_assert_eq!(x.value(), y.value());
            prop_assert_eq!(x, y);
        }

        #[test]
        fn fully_synced_value_is_increments_minus_decrements(
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let total: i128 = ops
                .iter()
                .map(|op| match *op {
                    Op::Increment { by, .. } => i128::from(by),
                    Op::Decrement { by, .. } => -i128::from(by),
                    Op::Sync { .. } => 0,
                })
                .sum();
            let merged = laws::deliver(PnCounter::new(), history(&ops).iter());
            prop_assert_eq!(merged.value(), total);
        }

        #[test]
        fn cbor_round_trips([a] in laws::picks(states())) {
            let bytes = minicbor::to_vec(&a).unwrap();
            prop_assert_eq!(bytes.len(), minicbor::len(&a));
            let back: PnCounter = minicbor::decode(&bytes).unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
