//! Last-writer-wins register ordered by [`Stamp`].
//!
//! A write carries the writer's hybrid clock reading and node id; the
//! register keeps the write with the greatest [`Stamp`] (clock first, node
//! id as the tie-break). Stamps form a total order, so two replicas holding
//! different writes always agree on which one wins: there is no "equal
//! timestamps, keep mine" case, which would make each keep its own value
//! and diverge.
//!
//! Two writes can carry the *identical* stamp only through a bug or a forged
//! or replayed write with a different value (a node never issues one clock
//! reading twice, see [`HlcClock`](crate::hlc::HlcClock)). Even then the join
//! must commute, so the register keeps the greatest `(stamp, value)` pair:
//! on a stamp tie the greater value by `T`'s [`Ord`] wins, on every replica
//! alike. That is why writes and joins require `T: Ord`; a type without a
//! total order (such as `f32`) can be stored as its bit pattern.
//!
//! The register always holds a value and needs no allocator, so it runs on
//! the firmware. For a register that starts empty, store an `Option<T>` and
//! start from `(Stamp::default(), None)`: every real write has a greater
//! stamp.
//!
//! ```
//! use tributary_core::crdt::Join;
//! use tributary_core::crdt::lww::LwwRegister;
//! use tributary_core::hlc::{HlcClock, Stamp};
//! use tributary_core::ids::NodeId;
//!
//! let (a, b) = (NodeId(1), NodeId(2));
//! let mut clock_a = HlcClock::new(5_000);
//! let mut clock_b = HlcClock::new(5_000);
//! let mut on_a = LwwRegister::new(Stamp::default(), None);
//! let mut on_b = on_a.clone();
//!
//! // Both write in the same millisecond: the clocks tie, the node id decides.
//! on_a.set(Stamp { hlc: clock_a.tick(1_000).unwrap(), node: a }, Some("open"));
//! on_b.set(Stamp { hlc: clock_b.tick(1_000).unwrap(), node: b }, Some("closed"));
//! assert_eq!(on_a.joined(&on_b), on_b.joined(&on_a));
//! on_a.join(&on_b);
//! assert_eq!(on_a.value(), &Some("closed"));
//!
//! // A later write wins whoever made it.
//! let later = clock_a.tick(1_001).unwrap();
//! assert!(on_a.set(Stamp { hlc: later, node: a }, Some("open")));
//! assert_eq!(on_a.value(), &Some("open"));
//! ```

use super::Join;
use crate::hlc::Stamp;

/// A register holding the value of its latest write, as ordered by
/// [`Stamp`] and, for identical stamps only, by the value itself.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    minicbor::Encode,
    minicbor::Decode,
    minicbor::CborLen
)]
pub struct LwwRegister<T> {
    /// The stamp of the write that produced `value`.
    #[n(0)]
    stamp: Stamp,
    /// The value written.
    #[n(1)]
    value: T,
}

impl<T> LwwRegister<T> {
    /// A register holding `value`, written at `stamp`.
    pub const fn new(stamp: Stamp, value: T) -> Self {
        LwwRegister { stamp, value }
    }

    /// The stamp of the current value's write.
    pub const fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The current value.
    pub const fn value(&self) -> &T {
        &self.value
    }

    /// The stamp and value, consuming the register.
    pub fn into_parts(self) -> (Stamp, T) {
        (self.stamp, self.value)
    }
}

impl<T: Ord> LwwRegister<T> {
    /// Writes `value` at `stamp` if that write wins over the current one
    /// (a greater stamp, or the identical stamp and a greater value), and
    /// returns whether it did. A write that loses is dropped, exactly as if
    /// it had been made first and then overwritten.
    pub fn set(&mut self, stamp: Stamp, value: T) -> bool {
        let wins = (stamp, &value) > (self.stamp, &self.value);
        if wins {
            self.stamp = stamp;
            self.value = value;
        }
        wins
    }
}

impl<T: Ord + Clone> Join for LwwRegister<T> {
    /// Keeps the greater `(stamp, value)` pair: the maximum of a total order,
    /// hence commutative, associative and idempotent.
    fn join(&mut self, other: &Self) {
        if (other.stamp, &other.value) > (self.stamp, &self.value) {
            self.stamp = other.stamp;
            self.value = other.value.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws;
    use crate::hlc::{Hlc, HlcClock};
    use crate::ids::NodeId;
    use proptest::prelude::*;
    use std::vec::Vec;

    const REPLICAS: usize = 3;

    type Reg = LwwRegister<u8>;

    fn stamp(physical_ms: u64, logical: u16, node: u64) -> Stamp {
        Stamp {
            hlc: Hlc::new(physical_ms, logical).unwrap(),
            node: NodeId(node),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set {
            replica: usize,
            value: u8,
            wall_ms: u64,
        },
        Sync {
            from: usize,
            to: usize,
            wall_ms: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        // A narrow wall-clock range so that clocks often tie and the node id
        // has to break them; it also steps backwards, as real clocks do.
        prop_oneof![
            (0..REPLICAS, any::<u8>(), 1u64..20).prop_map(|(replica, value, wall_ms)| Op::Set {
                replica,
                value,
                wall_ms
            }),
            (0..REPLICAS, 0..REPLICAS, 1u64..20).prop_map(|(from, to, wall_ms)| Op::Sync {
                from,
                to,
                wall_ms
            }),
        ]
    }

    /// Runs `ops` on `REPLICAS` replicas, each writing as its own node with
    /// its own clock, and returns every state any replica passed through
    /// plus every write made (its stamp and value).
    fn history(ops: &[Op]) -> (Vec<Reg>, Vec<(Stamp, u8)>) {
        let start = Reg::new(Stamp::default(), 0);
        let mut replicas = [start; REPLICAS];
        let mut clocks = [HlcClock::new(1_000_000); REPLICAS];
        let mut seen: Vec<Reg> = replicas.to_vec();
        let mut writes = Vec::new();
        for op in ops {
            match *op {
                Op::Set {
                    replica,
                    value,
                    wall_ms,
                } => {
                    let hlc = clocks[replica].tick(wall_ms).unwrap();
                    let stamp = Stamp {
                        hlc,
                        node: NodeId(replica as u64 + 1),
                    };
                    replicas[replica].set(stamp, value);
                    writes.push((stamp, value));
                }
                Op::Sync { from, to, wall_ms } => {
                    let state = replicas[from];
                    clocks[to].observe(state.stamp().hlc, wall_ms).unwrap();
                    replicas[to].join(&state);
                }
            }
            seen.extend(replicas.iter().copied());
        }
        (seen, writes)
    }

    fn states() -> impl Strategy<Value = Vec<Reg>> {
        proptest::collection::vec(op(), 0..40).prop_map(|ops| history(&ops).0)
    }

    /// Registers from a tiny space of stamps and values, so that identical
    /// stamps with different values (a bug or a forged write) are common.
    fn colliding() -> impl Strategy<Value = Reg> {
        (0u64..3, 0u64..3, 0u8..3).prop_map(|(ms, node, value)| Reg::new(stamp(ms, 0, node), value))
    }

    #[test]
    fn later_clock_wins_whatever_the_node() {
        let mut r = Reg::new(stamp(10, 0, 9), 1);
        assert!(r.set(stamp(10, 1, 1), 2));
        assert_eq!((r.stamp(), *r.value()), (stamp(10, 1, 1), 2));
        assert!(!r.set(stamp(9, 7, 9), 3));
        assert_eq!(r.value(), &2);
    }

    #[test]
    fn equal_clocks_are_broken_by_node_id() {
        let a = Reg::new(stamp(10, 0, 1), 200);
        let b = Reg::new(stamp(10, 0, 2), 100);
        assert_eq!(a.joined(&b), b);
        assert_eq!(b.joined(&a), b);
    }

    #[test]
    fn identical_stamps_keep_the_greater_value_on_every_replica() {
        let a = Reg::new(stamp(10, 0, 1), 3);
        let b = Reg::new(stamp(10, 0, 1), 4);
        assert_eq!(a.joined(&b), b);
        assert_eq!(b.joined(&a), b);
        let mut c = a;
        assert!(c.set(stamp(10, 0, 1), 4));
        assert!(!c.set(stamp(10, 0, 1), 3));
        assert_eq!(c, b);
    }

    #[test]
    fn an_older_write_arriving_late_is_ignored() {
        let mut r = Reg::new(stamp(5, 0, 1), 1);
        r.set(stamp(7, 0, 1), 2);
        assert!(!r.set(stamp(6, 0, 2), 3));
        assert_eq!(r.into_parts(), (stamp(7, 0, 1), 2));
    }

    #[test]
    fn an_optional_register_starts_empty_and_any_write_beats_it() {
        let mut r: LwwRegister<Option<u8>> = LwwRegister::new(Stamp::default(), None);
        let first = HlcClock::new(0).tick(0).unwrap();
        assert!(r.set(
            Stamp {
                hlc: first,
                node: NodeId(0)
            },
            Some(0)
        ));
        assert_eq!(r.value(), &Some(0));
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
        fn join_laws_hold_even_for_identical_stamps(
            a in colliding(), b in colliding(), c in colliding(),
        ) {
            laws::commutative(&a, &b)?;
            laws::associative(&a, &b, &c)?;
            laws::idempotent(&a)?;
        }

        #[test]
        fn replicas_converge_whatever_the_delivery_order(
            (sent, keys) in laws::deliveries(states()),
        ) {
            // A register has no empty state: each replica starts from the
            // first state it receives.
            let shuffled = laws::shuffled_with_duplicates(&sent, &keys);
            let x = laws::deliver(sent[0], &sent);
            let y = laws::deliver(*shuffled[0], shuffled);
            prop_assert_eq!(x.value(), y.value());
            prop_assert_eq!(x, y);
        }

        #[test]
        fn fully_synced_register_holds_the_latest_write(
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let (seen, writes) = history(&ops);
            let merged = laws::deliver(Reg::new(Stamp::default(), 0), seen.iter());
            match writes.iter().max() {
                Some(&(stamp, value)) => {
                    prop_assert_eq!(merged.stamp(), stamp);
                    prop_assert_eq!(*merged.value(), value);
                }
                None => prop_assert_eq!(merged, Reg::new(Stamp::default(), 0)),
            }
        }

        #[test]
        fn cbor_round_trips([a] in laws::picks(states()), other in colliding()) {
            for r in [a, other] {
                let bytes = minicbor::to_vec(r).unwrap();
                prop_assert_eq!(bytes.len(), minicbor::len(r));
                let back: Reg = minicbor::decode(&bytes).unwrap();
                prop_assert_eq!(back, r);
            }
        }
    }
}
