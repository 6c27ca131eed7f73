//! Version vectors and dots: per node, how much of its history a replica
//! has seen. The OR-Set tags adds with [`Dot`]s; the aggregate CRDT keeps a
//! [`VersionVector`] of entry versions so deltas can be cut against it.

use alloc::collections::BTreeMap;

use super::Join;
use crate::ids::NodeId;

/// One add event: the `counter`-th add made by `node` (counting from 1).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    minicbor::Encode,
    minicbor::Decode,
    minicbor::CborLen
)]
pub struct Dot {
    /// The node that made the add.
    #[n(0)]
    pub node: NodeId,
    /// How many adds `node` had made, this one included.
    #[n(1)]
    pub counter: u64,
}

/// Per node, the highest dot counter seen: the dots `(node, 1..=counter)`.
/// Nodes at zero are not stored, so equal vectors compare equal.
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
#[cbor(transparent)]
pub struct VersionVector(
    #[n(0)]
    #[cbor(decode_with = "decode_counters")]
    BTreeMap<NodeId, u64>,
);

impl VersionVector {
    /// The vector that has seen nothing.
    pub const fn new() -> Self {
        VersionVector(BTreeMap::new())
    }

    /// The highest counter seen from `node` (zero if none).
    pub fn get(&self, node: NodeId) -> u64 {
        self.0.get(&node).copied().unwrap_or(0)
    }

    /// Whether `dot` has been seen.
    pub fn covers(&self, dot: Dot) -> bool {
        dot.counter <= self.get(dot.node)
    }

    /// The pointwise minimum: the dots both have seen.
    pub fn meet(&self, other: &Self) -> Self {
        self.iter()
            .map(|(node, counter)| (node, counter.min(other.get(node))))
            .collect()
    }

    /// The nonzero counters, by ascending node id.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.0.iter().map(|(&node, &counter)| (node, counter))
    }

    /// Raises `node`'s counter to at least `counter`.
    pub fn observe(&mut self, node: NodeId, counter: u64) {
        if counter > 0 {
            let seen = self.0.entry(node).or_insert(0);
            *seen = (*seen).max(counter);
        }
    }

    /// Takes the next counter of `node` (its new value), saturating at
    /// `u64::MAX` rather than wrapping to a value that would lose.
    pub fn bump(&mut self, node: NodeId) -> u64 {
        let seen = self.0.entry(node).or_insert(0);
        *seen = seen.saturating_add(1);
        *seen
    }
}

impl FromIterator<(NodeId, u64)> for VersionVector {
    /// Collects counters, keeping the highest for a node listed twice.
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (node, counter) in iter {
            vv.observe(node, counter);
        }
        vv
    }
}

impl Join for VersionVector {
    fn join(&mut self, other: &Self) {
        for (node, counter) in other.iter() {
            self.observe(node, counter);
        }
    }
}

/// Decodes a counter map, dropping zero counters a peer may have sent: they
/// mean "nothing seen", like an absent node, and keeping them would make
/// equal vectors compare unequal.
fn decode_counters<Ctx>(
    d: &mut minicbor::Decoder<'_>,
    ctx: &mut Ctx,
) -> Result<BTreeMap<NodeId, u64>, minicbor::decode::Error> {
    let mut counters: BTreeMap<NodeId, u64> = minicbor::Decode::decode(d, ctx)?;
    counters.retain(|_, c| *c != 0);
    Ok(counters)
}
