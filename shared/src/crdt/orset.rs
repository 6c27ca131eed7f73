//! Add-wins observed-remove set, in the "dots and causal context" form
//! (Bieniusa et al., *An optimized conflict-free replicated set*, 2012;
//! the AWSet of Almeida et al., *Delta state replicated data types*, 2018).
//!
//! Every add is an event with a unique [`Dot`] `(node, n)`: the `n`-th add
//! made by `node`. A replica's state is
//! - for each element present, its **live dots**: the adds keeping it in;
//! - the **causal context**, a [`VersionVector`]: per node, the highest dot
//!   this replica has seen. Replicas exchange whole states and a node numbers
//!   its adds 1, 2, 3…, so the dots seen from a node are always a prefix and
//!   one counter per node describes them exactly.
//!
//! [`add`](OrSet::add) gives the element one fresh dot (dropping the dots it
//! had: the add observed them). [`remove`](OrSet::remove) drops the element's
//! dots and records nothing else: the context still covers them, and a dot
//! that is covered but not live is one this replica removed. So the join
//! keeps a dot that both sides hold, or that one side holds and the other
//! has never seen; a dot one side holds and the other has seen but dropped
//! was removed. A remove therefore only removes the adds it observed, and
//! a concurrent add, whose dot the remover had not seen, wins.
//!
//! # What grows, and compaction
//!
//! There is no set of tombstones: the context *is* every tombstone,
//! compacted. Removes cost nothing, and an old state replayed later (an
//! MQTT redelivery, a restored backup) cannot resurrect a removed element,
//! because our context covers its dots. What does grow:
//!
//! - **The context**: one counter per node that ever added, kept for the
//!   life of the set. It grows with fleet churn, not with operations, and it
//!   cannot be trimmed: forgetting a node's counter would let a stale state
//!   carrying that node's removed dots resurrect them.
//! - **The dots of live elements**: at most one per node per element (an add
//!   replaces the dots it saw, and a join never keeps two dots of one node
//!   for one element). An element added concurrently by many nodes keeps one
//!   dot per adder for as long as it stays in the set.
//!
//! [`OrSet::compact`] bounds the second to one dot per element: given a
//! version vector `stable`, it replaces each element's dots covered by
//! `stable` with the greatest of them. That is sound once **this replica has
//! joined, from every replica of the fleet, a state whose context covers
//! `stable`** (a context learned from an ack or digest, without joining the
//! state it came with, does not count), and **a replica added to the fleet
//! later starts from a copy of an existing replica's current state**. Then
//! every remove made before those states is reflected here, and every add or
//! remove of the element made after them observed all its dots under
//! `stable`: those dots are live or dead together on every replica, so one
//! of them can stand for all. The usual way to get `stable` is the
//! [`meet`](VersionVector::meet) of the contexts of the latest state joined
//! from each replica. A `stable` beyond that bound can make a later join drop
//! an element that should stay. Compacted and uncompacted replicas still
//! converge: joining a compacted state into an uncompacted one compacts it.
//!
//! The set ships whole states. Shipping deltas would leave gaps in contexts
//! and need a dot cloud beside the version vector (Almeida et al.).
//!
//! ```
//! use tributary_core::crdt::Join;
//! use tributary_core::crdt::orset::OrSet;
//! use tributary_core::ids::NodeId;
//!
//! let (a, b) = (NodeId(1), NodeId(2));
//! let mut on_a = OrSet::new();
//! on_a.add(a, "pump")?;
//! let mut on_b = on_a.clone();
//!
//! // Concurrently: b removes the pump it saw, a adds it again.
//! assert!(on_b.remove("pump"));
//! on_a.add(a, "pump")?;
//! on_b.add(b, "valve")?;
//!
//! on_a.join(&on_b);
//! on_b.join(&on_a);
//! assert_eq!(on_a, on_b);
//! assert_eq!(on_a.elements().copied().collect::<Vec<_>>(), ["pump", "valve"]);
//!
//! // Every replica's state has been joined here: compact what all have seen.
//! let stable = on_a.context().meet(on_b.context());
//! on_a.compact(&stable);
//! assert!(on_a.contains("pump"));
//! # Ok::<(), tributary_core::crdt::orset::DotsExhausted>(())
//! ```

use alloc::collections::BTreeMap;
use core::borrow::Borrow;

use super::Join;
pub use super::version_vector::{Dot, VersionVector};
use crate::ids::NodeId;

/// An element's live dots, as node → counter: a join never keeps two dots
/// of one node for one element, so a map is enough.
type Dots = BTreeMap<NodeId, u64>;

/// `node` cannot add: its dot counter is at `u64::MAX`. A real node cannot
/// make 2⁶⁴ adds, so this means a peer sent a context forged to claim them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node {0} cannot add: its dot counter is exhausted")]
pub struct DotsExhausted(pub NodeId);

impl DotsExhausted {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        "dots_exhausted"
    }
}

/// An add-wins observed-remove set of `T`: the state is the live dots of
/// each element plus the causal context (see the [module doc](self)).
///
/// Only `node`'s own replica may [`add`](OrSet::add) as `node`: two
/// replicas adding as one node would issue the same dot for different adds.
///
/// Decoding checks the invariants every operation keeps (each element has at
/// least one dot, every dot is covered by the context) and rejects a state
/// that breaks them as malformed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, minicbor::Encode, minicbor::CborLen)]
pub struct OrSet<T> {
    /// Every dot this replica has seen, live or removed.
    #[n(0)]
    context: VersionVector,
    /// The elements present and the adds keeping each one in.
    #[n(1)]
    #[cbor(encode_bound = "T: minicbor::Encode<Ctx> + Ord")]
    #[cbor(cbor_len_bound = "T: minicbor::CborLen<Ctx> + minicbor::Encode<Ctx> + Ord")]
    entries: BTreeMap<T, Dots>,
}

impl<T> Default for OrSet<T> {
    fn default() -> Self {
        OrSet {
            context: VersionVector::new(),
            entries: BTreeMap::new(),
        }
    }
}

impl<T: Ord> OrSet<T> {
    /// The empty set.
    pub const fn new() -> Self {
        OrSet {
            context: VersionVector::new(),
            entries: BTreeMap::new(),
        }
    }

    /// Adds `elem` on behalf of `node` (this replica's own id) and returns
    /// the add's dot. The element's previous dots are dropped: this add has
    /// seen them, so a remove that saw them need not win over it. Fails,
    /// leaving the set unchanged, only if `node`'s counter is exhausted.
    pub fn add(&mut self, node: NodeId, elem: T) -> Result<Dot, DotsExhausted> {
        let counter = self
            .context
            .get(node)
            .checked_add(1)
            .ok_or(DotsExhausted(node))?;
        self.context.observe(node, counter);
        self.entries.insert(elem, BTreeMap::from([(node, counter)]));
        Ok(Dot { node, counter })
    }

    /// Removes `elem` and returns whether it was present. Only the adds this
    /// replica has seen are removed: a concurrent add elsewhere keeps the
    /// element in once the states are joined.
    pub fn remove<Q>(&mut self, elem: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.remove(elem).is_some()
    }

    /// Whether `elem` is in the set.
    pub fn contains<Q>(&self, elem: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.contains_key(elem)
    }

    /// The elements, in ascending order.
    pub fn elements(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + '_ {
        self.entries.keys()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set has no elements.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The adds keeping `elem` in the set (none if it is absent).
    pub fn dots<Q>(&self, elem: &Q) -> impl Iterator<Item = Dot> + '_
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries
            .get(elem)
            .into_iter()
            .flatten()
            .map(|(&node, &counter)| Dot { node, counter })
    }

    /// Every dot this replica has seen, live or removed.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// Replaces, for every element, the dots covered by `stable` with the
    /// greatest of them; the elements and the context are unchanged.
    ///
    /// Precondition (see the [module doc](self)): this replica has joined,
    /// from every replica of the fleet, a state whose context covers
    /// `stable`. The [`meet`](VersionVector::meet) of the contexts of those
    /// states is the largest such `stable`.
    pub fn compact(&mut self, stable: &VersionVector) {
        for dots in self.entries.values_mut() {
            // A node has at most one dot here, so the last stable one in node
            // order is the greatest. Every replica that compacts picks the
            // same one, and a join of compacted states keeps it.
            let greatest = dots
                .iter()
                .rev()
                .map(|(&node, &counter)| Dot { node, counter })
                .find(|&dot| stable.covers(dot));
            if let Some(keep) = greatest {
                dots.retain(|&node, &mut counter| {
                    node == keep.node || !stable.covers(Dot { node, counter })
                });
            }
        }
    }

    /// Why a decoded state is malformed, if it is: a state no sequence of
    /// operations and joins can produce, on which the join laws need not hold.
    fn malformation(&self) -> Option<&'static str> {
        for dots in self.entries.values() {
            if dots.is_empty() {
                return Some("or-set element without dots");
            }
            for (&node, &counter) in dots {
                if counter == 0 || !self.context.covers(Dot { node, counter }) {
                    return Some("or-set dot outside its causal context");
                }
            }
        }
        None
    }
}

/// Merges one element's dots: keeps a dot both sides hold, or that one side
/// holds and the other has not seen.
fn join_dots(
    mine: &mut Dots,
    my_context: &VersionVector,
    theirs: &Dots,
    their_context: &VersionVector,
) {
    mine.retain(|&node, &mut counter| {
        theirs.get(&node) == Some(&counter) || !their_context.covers(Dot { node, counter })
    });
    for (&node, &counter) in theirs {
        if !my_context.covers(Dot { node, counter }) {
            // Two different dots of one node cannot both survive: the side
            // holding the greater has seen the lesser. `max` keeps the join
            // commutative even for states that break that invariant.
            let kept = mine.entry(node).or_insert(counter);
            *kept = (*kept).max(counter);
        }
    }
}

impl<T: Ord + Clone> Join for OrSet<T> {
    fn join(&mut self, other: &Self) {
        let OrSet { context, entries } = self;
        entries.retain(|elem, mine| {
            match other.entries.get(elem) {
                Some(theirs) => join_dots(mine, context, theirs, &other.context),
                // Absent there: the adds they have seen were removed there.
                None => {
                    mine.retain(|&node, &mut counter| !other.context.covers(Dot { node, counter }))
                }
            }
            !mine.is_empty()
        });
        for (elem, theirs) in &other.entries {
            // An element emptied above is absent here too, and rightly gets
            // nothing back: its dots we had not seen were kept above.
            if entries.contains_key(elem) {
                continue;
            }
            let unseen: Dots = theirs
                .iter()
                .filter(|&(&node, &counter)| !context.covers(Dot { node, counter }))
                .map(|(&node, &counter)| (node, counter))
                .collect();
            if !unseen.is_empty() {
                entries.insert(elem.clone(), unseen);
            }
        }
        context.join(&other.context);
    }
}

/// The wire form, decoded before [`OrSet`]'s invariants are checked.
#[derive(minicbor::Decode)]
struct WireOrSet<T> {
    #[n(0)]
    context: VersionVector,
    #[n(1)]
    #[cbor(decode_bound = "T: minicbor::Decode<'bytes, Ctx> + Ord")]
    entries: BTreeMap<T, Dots>,
}

impl<'b, Ctx, T> minicbor::Decode<'b, Ctx> for OrSet<T>
where
    T: minicbor::Decode<'b, Ctx> + Ord,
{
    fn decode(
        d: &mut minicbor::Decoder<'b>,
        ctx: &mut Ctx,
    ) -> Result<Self, minicbor::decode::Error> {
        let start = d.position();
        let WireOrSet { context, entries } = WireOrSet::decode(d, ctx)?;
        let set = OrSet { context, entries };
        match set.malformation() {
            None => Ok(set),
            Some(reason) => Err(minicbor::decode::Error::message(reason).at(start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const REPLICAS: usize = 3;
    /// Few distinct elements, so that replicas often add and remove the same.
    const ELEMENTS: u8 = 4;

    type Set = OrSet<u8>;

    fn node(replica: usize) -> NodeId {
        NodeId(replica as u64 + 1)
    }

    fn elements(s: &Set) -> Vec<u8> {
        s.elements().copied().collect()
    }

    fn dot(node: NodeId, counter: u64) -> Dot {
        Dot { node, counter }
    }

    /// A state built field by field, bypassing the operations: how a peer
    /// could forge one.
    fn forged(context: &[(u64, u64)], elem: u8, dots: &[(u64, u64)]) -> Set {
        let dots: Dots = dots.iter().map(|&(n, c)| (NodeId(n), c)).collect();
        Set {
            context: context.iter().map(|&(n, c)| (NodeId(n), c)).collect(),
            entries: BTreeMap::from([(elem, dots)]),
        }
    }

    fn round_trip(s: &Set) -> Result<Set, minicbor::decode::Error> {
        minicbor::decode(&minicbor::to_vec(s).unwrap())
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add {
            replica: usize,
            elem: u8,
        },
        Remove {
            replica: usize,
            elem: u8,
        },
        Sync {
            from: usize,
            to: usize,
        },
        /// Every replica joins every other's current state, as a round
        /// through the hub would do.
        Gossip,
        /// `to` joins an old state of `from`: a redelivered message.
        Replay {
            from: usize,
            to: usize,
            age: Index,
        },
        Compact {
            replica: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let r = || 0..REPLICAS;
        prop_oneof![
            3 => (r(), 0..ELEMENTS).prop_map(|(replica, elem)| Op::Add { replica, elem }),
            2 => (r(), 0..ELEMENTS).prop_map(|(replica, elem)| Op::Remove { replica, elem }),
            3 => (r(), r()).prop_map(|(from, to)| Op::Sync { from, to }),
            1 => Just(Op::Gossip),
            1 => (r(), r(), any::<Index>()).prop_map(|(from, to, age)| Op::Replay { from, to, age }),
            1 => r().prop_map(|replica| Op::Compact { replica }),
        ]
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(op(), 0..60)
    }

    /// Operations weighted so that replicas often add the same element
    /// concurrently and then hear from every other replica: the case where
    /// compaction has dots to collapse.
    fn compaction_ops() -> impl Strategy<Value = Vec<Op>> {
        let r = || 0..REPLICAS;
        let op = prop_oneof![
            3 => (r(), 0..2u8).prop_map(|(replica, elem)| Op::Add { replica, elem }),
            1 => (r(), 0..2u8).prop_map(|(replica, elem)| Op::Remove { replica, elem }),
            4 => (r(), r()).prop_map(|(from, to)| Op::Sync { from, to }),
            1 => Just(Op::Gossip),
            1 => (r(), r(), any::<Index>()).prop_map(|(from, to, age)| Op::Replay { from, to, age }),
            3 => r().prop_map(|replica| Op::Compact { replica }),
        ];
        proptest::collection::vec(op, 0..80)
    }

    /// Runs `ops`, each replica adding as its own node, and returns every
    /// state any replica passed through. Compaction is skipped here: it
    /// needs bookkeeping of its own, done in its own test below.
    fn history(ops: &[Op]) -> Vec<Set> {
        let mut replicas = [Set::new(), Set::new(), Set::new()];
        let mut seen: Vec<Set> = replicas.to_vec();
        for op in ops {
            match *op {
                Op::Add { replica, elem } => {
                    replicas[replica].add(node(replica), elem).unwrap();
                }
                Op::Remove { replica, elem } => {
                    replicas[replica].remove(&elem);
                }
                Op::Sync { from, to } => {
                    let state = replicas[from].clone();
                    replicas[to].join(&state);
                }
                Op::Gossip => {
                    let states = replicas.clone();
                    for r in &mut replicas {
                        *r = laws::deliver(r.clone(), &states);
                    }
                }
                Op::Replay { from, to, age } => {
                    let old: Vec<&Set> = seen.iter().skip(from).step_by(REPLICAS).collect();
                    let old = (*age.get(&old)).clone();
                    replicas[to].join(&old);
                }
                Op::Compact { .. } => {}
            }
            seen.extend(replicas.iter().cloned());
        }
        seen
    }

    fn states() -> impl Strategy<Value = Vec<Set>> {
        ops().prop_map(|ops| history(&ops))
    }

    #[test]
    fn concurrent_add_and_remove_add_wins() {
        let a = NodeId(1);
        let mut on_a = Set::new();
        on_a.add(a, 7).unwrap();
        let mut on_b = on_a.clone();
        assert!(on_b.remove(&7));
        on_a.add(a, 7).unwrap(); // re-add, concurrent with b's remove
        assert!(on_a.joined(&on_b).contains(&7));
        assert!(on_b.joined(&on_a).contains(&7));

        // The same when the concurrent add comes from another node.
        let mut on_c = on_b.clone();
        on_c.add(NodeId(3), 7).unwrap();
        let mut on_a = on_a.joined(&on_b);
        assert!(on_a.remove(&7));
        assert!(on_a.joined(&on_c).contains(&7));
    }

    #[test]
    fn removing_an_unobserved_element_does_not_remove_a_concurrent_add() {
        let (a, b) = (NodeId(1), NodeId(2));
        let mut on_a = Set::new();
        on_a.add(a, 1).unwrap();
        let mut on_b = Set::new();
        assert!(!on_b.remove(&1));
        assert!(on_b.joined(&on_a).contains(&1));

        // b's own add is removed, a's concurrent one is not.
        on_b.add(b, 1).unwrap();
        assert!(on_b.remove(&1));
        let joined = on_b.joined(&on_a);
        assert!(joined.contains(&1));
        assert_eq!(joined.dots(&1).collect::<Vec<_>>(), [dot(a, 1)]);
    }

    #[test]
    fn observed_remove_removes_on_every_replica() {
        let (a, b) = (NodeId(1), NodeId(2));
        let mut on_a = Set::new();
        on_a.add(a, 1).unwrap();
        on_a.add(a, 2).unwrap();
        let mut on_b = on_a.clone();
        on_b.remove(&1);
        on_b.add(b, 3).unwrap();
        on_a.join(&on_b);
        assert_eq!(elements(&on_a), [2, 3]);
    }

    #[test]
    fn re_adding_after_a_remove_works() {
        let (a, b) = (NodeId(1), NodeId(2));
        let mut on_a = Set::new();
        on_a.add(a, 5).unwrap();
        assert!(on_a.remove(&5));
        assert!(!on_a.contains(&5));
        on_a.add(a, 5).unwrap();
        assert!(on_a.contains(&5));

        // Across replicas: b removes, a learns of it, then a adds again.
        let mut on_b = on_a.clone();
        on_b.remove(&5);
        on_a.join(&on_b);
        assert!(!on_a.contains(&5));
        on_a.add(a, 5).unwrap();
        on_b.join(&on_a);
        assert!(on_b.contains(&5));
        assert_eq!(on_a.add(b, 6), Ok(dot(b, 1)));
    }

    #[test]
    fn a_replayed_stale_state_does_not_resurrect_a_removed_element() {
        let mut s = Set::new();
        s.add(NodeId(1), 9).unwrap();
        let stale = s.clone();
        s.remove(&9);
        s.join(&stale);
        assert!(!s.contains(&9));
        assert!(s.is_empty());
    }

    #[test]
    fn compaction_collapses_stable_dots_to_one() {
        let mut replicas: Vec<Set> = (0..REPLICAS)
            .map(|r| {
                let mut s = Set::new();
                s.add(node(r), 1).unwrap();
                s
            })
            .collect();
        let all = laws::deliver(Set::new(), replicas.iter());
        for r in &mut replicas {
            r.join(&all);
        }
        assert_eq!(replicas[0].dots(&1).count(), REPLICAS);
        let stable = replicas
            .iter()
            .fold(all.context().clone(), |vv, r| vv.meet(r.context()));
        let mut compacted = replicas[0].clone();
        compacted.compact(&stable);
        assert_eq!(compacted.dots(&1).collect::<Vec<_>>(), [dot(node(2), 1)]);
        assert_eq!(elements(&compacted), [1]);
        assert_eq!(compacted.context(), replicas[0].context());

        // An uncompacted replica joining it becomes compacted too, and a
        // remove on any replica still removes the element everywhere.
        assert_eq!(replicas[1].joined(&compacted), compacted);
        replicas[2].remove(&1);
        assert!(!compacted.joined(&replicas[2]).contains(&1));
    }

    #[test]
    fn add_fails_cleanly_when_a_forged_context_exhausts_the_counter() {
        let mut s = round_trip(&forged(&[(1, u64::MAX)], 0, &[(1, 1)])).unwrap();
        let before = s.clone();
        assert_eq!(s.add(NodeId(1), 3), Err(DotsExhausted(NodeId(1))));
        assert_eq!(s, before);
    }

    #[test]
    fn decoding_rejects_states_no_replica_can_reach() {
        let ok = forged(&[(1, 2)], 5, &[(1, 2)]);
        assert_eq!(round_trip(&ok).unwrap(), ok);
        for bad in [
            forged(&[(1, 2)], 5, &[(1, 3)]),
            forged(&[(1, 2)], 5, &[(2, 1)]),
            forged(&[(1, 2)], 5, &[(1, 0)]),
            forged(&[(1, 2)], 5, &[]),
        ] {
            assert!(round_trip(&bad).is_err(), "{bad:?}");
        }
    }

    /// A replica in the compaction test: its real state, which compacts,
    /// and a shadow that never does; plus, per replica, the join of the
    /// contexts of that replica's states it has joined.
    #[derive(Clone)]
    struct Replica {
        real: Set,
        shadow: Set,
        joined_from: [VersionVector; REPLICAS],
    }

    /// Replica `to` joins `state`, a state (real and shadow) of `from`.
    fn receive(replicas: &mut [Replica; REPLICAS], from: usize, to: usize, state: (Set, Set)) {
        let r = &mut replicas[to];
        r.joined_from[from].join(state.0.context());
        r.real.join(&state.0);
        r.shadow.join(&state.1);
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
            let (x, y) = laws::deliver_two_ways(Set::new(), &sent, &keys);
            prop_assert_eq!(elements(&x), elements(&y));
            prop_assert_eq!(x, y);
        }

        /// The fully joined set holds exactly the elements with an add that
        /// no remove or later add on the same replica observed.
        #[test]
        fn fully_synced_set_follows_the_add_wins_specification(ops in ops()) {
            let mut replicas = [Set::new(), Set::new(), Set::new()];
            let mut added: Vec<(u8, Dot)> = Vec::new();
            let mut observed: BTreeSet<Dot> = BTreeSet::new();
            for op in &ops {
                match *op {
                    Op::Add { replica, elem } => {
                        observed.extend(replicas[replica].dots(&elem));
                        added.push((elem, replicas[replica].add(node(replica), elem).unwrap()));
                    }
                    Op::Remove { replica, elem } => {
                        observed.extend(replicas[replica].dots(&elem));
                        replicas[replica].remove(&elem);
                    }
                    Op::Sync { from, to } => {
                        let state = replicas[from].clone();
                        replicas[to].join(&state);
                    }
                    Op::Gossip => {
                        let states = replicas.clone();
                        for r in &mut replicas {
                            *r = laws::deliver(r.clone(), &states);
                        }
                    }
                    Op::Replay { .. } | Op::Compact { .. } => {}
                }
            }
            let merged = laws::deliver(Set::new(), replicas.iter());
            for elem in 0..ELEMENTS {
                let expected = added.iter().any(|(e, dot)| *e == elem && !observed.contains(dot));
                prop_assert_eq!(merged.contains(&elem), expected, "element {}", elem);
            }
        }

        /// Replicas compact at the meet of the contexts of the states they
        /// have joined from every replica, while adding, removing, syncing
        /// and replaying stale states. After every step each replica holds
        /// the same elements and context as an uncompacted shadow of itself,
        /// and the compacted states obey the join laws.
        #[test]
        fn compaction_preserves_elements_and_join_laws(ops in compaction_ops()) {
            let fresh = Replica {
                real: Set::new(),
                shadow: Set::new(),
                joined_from: [VersionVector::new(), VersionVector::new(), VersionVector::new()],
            };
            let mut replicas = [fresh.clone(), fresh.clone(), fresh];
            let mut past: [Vec<(Set, Set)>; REPLICAS] = Default::default();
            for (p, r) in past.iter_mut().zip(&replicas) {
                p.push((r.real.clone(), r.shadow.clone()));
            }
            for op in &ops {
                match *op {
                    Op::Add { replica, elem } => {
                        let r = &mut replicas[replica];
                        let dot = r.real.add(node(replica), elem).unwrap();
                        prop_assert_eq!(r.shadow.add(node(replica), elem).unwrap(), dot);
                    }
                    Op::Remove { replica, elem } => {
                        let r = &mut replicas[replica];
                        prop_assert_eq!(r.real.remove(&elem), r.shadow.remove(&elem));
                    }
                    Op::Sync { from, to } => {
                        let state = (replicas[from].real.clone(), replicas[from].shadow.clone());
                        receive(&mut replicas, from, to, state);
                    }
                    Op::Gossip => {
                        let states: Vec<(Set, Set)> =
                            replicas.iter().map(|r| (r.real.clone(), r.shadow.clone())).collect();
                        for to in 0..REPLICAS {
                            for (from, state) in states.iter().enumerate() {
                                receive(&mut replicas, from, to, state.clone());
                            }
                        }
                    }
                    Op::Replay { from, to, age } => {
                        let state = age.get(&past[from]).clone();
                        receive(&mut replicas, from, to, state);
                    }
                    Op::Compact { replica } => {
                        let r = &mut replicas[replica];
                        let others = r.joined_from.iter().enumerate().filter(|&(i, _)| i != replica);
                        let stable = others.fold(r.real.context().clone(), |vv, (_, seen)| vv.meet(seen));
                        let before = elements(&r.real);
                        r.real.compact(&stable);
                        prop_assert_eq!(elements(&r.real), before);
                    }
                }
                for (p, r) in past.iter_mut().zip(&replicas) {
                    prop_assert_eq!(elements(&r.real), elements(&r.shadow));
                    prop_assert_eq!(r.real.context(), r.shadow.context());
                    for elem in 0..ELEMENTS {
                        let shadow_dots: BTreeSet<Dot> = r.shadow.dots(&elem).collect();
                        prop_assert!(r.real.dots(&elem).all(|d| shadow_dots.contains(&d)));
                    }
                    p.push((r.real.clone(), r.shadow.clone()));
                }
            }
            let [a, b, c] = &replicas;
            let (a, b, c) = (&a.real, &b.real, &c.real);
            laws::commutative(a, b)?;
            laws::associative(a, b, c)?;
            laws::idempotent(a)?;
            let all_real = laws::deliver(Set::new(), [a, b, c]);
            let all_shadow = laws::deliver(Set::new(), replicas.iter().map(|r| &r.shadow));
            prop_assert_eq!(elements(&all_real), elements(&all_shadow));
        }

        #[test]
        fn cbor_round_trips([a] in laws::picks(states())) {
            let bytes = minicbor::to_vec(&a).unwrap();
            prop_assert_eq!(bytes.len(), minicbor::len(&a));
            let back: Set = minicbor::decode(&bytes).unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
