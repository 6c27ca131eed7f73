//! State-based CRDTs (join-semilattices).
//!
//! Every type here has a `join` that is commutative, associative and
//! idempotent, so replicas that exchange state in any order, any number of
//! times, converge. The property tests in each module check exactly those
//! laws, plus "a delta joined into a state equals the full join" where the
//! type ships deltas.
//!
//! - [`aggregate`]: the purpose-built CRDT for sensor aggregates, keyed by
//!   (sensor, resolution, bucket), one single-writer entry per node.
//! - [`gcounter`], [`pncounter`]: grow-only and up/down counters.
//! - [`lww`]: last-writer-wins register ordered by [`Stamp`](crate::hlc::Stamp).
//! - [`orset`]: add-wins observed-remove set.
//! - [`version_vector`]: what a replica has seen of each node's history.

#[cfg(feature = "alloc")]
pub mod aggregate;
#[cfg(feature = "alloc")]
pub mod gcounter;
#[cfg(test)]
pub(crate) mod laws;
pub mod lww;
#[cfg(feature = "alloc")]
pub mod orset;
#[cfg(feature = "alloc")]
pub mod pncounter;
#[cfg(feature = "alloc")]
pub mod version_vector;

/// A join-semilattice: the state-based CRDT interface.
pub trait Join {
    /// Moves `self` to the least upper bound of `self` and `other`.
    fn join(&mut self, other: &Self);

    /// The least upper bound of `self` and `other`, leaving both unchanged.
    fn joined(&self, other: &Self) -> Self
    where
        Self: Clone,
    {
        let mut out = self.clone();
        out.join(other);
        out
    }
}
