//! The edge ↔ hub sync protocol as I/O-free state machines
//! (docs/protocol.md, "A session").
//!
//! [`NodeSync`] runs on a gateway and [`HubSync`] on the hub. Neither owns a
//! socket, a clock or an RNG: the shell (the MQTT `SyncAgent` actor, or the
//! deterministic simulation in `shared/tests/sim.rs`) feeds them events with
//! the current time as `now_ms`, sends the [`Message`]s they return, and
//! persists what they say is durable. This is rumqttc's split of protocol
//! state (`rumqttc/src/state.rs`) from the event loop that moves bytes.
//!
//! The session: the node sends `Hello`, the hub answers `Resume{watermark}`
//! (everything of the node up to it is merged), the node streams `Delta`
//! batches covering `(from, to]` above it, and the hub answers each with
//! `Ack{upto}`, its *contiguous* watermark. Delivery is at least once: lost
//! batches are re-sent after a timeout, and duplicates are harmless because
//! the join keeps the higher version per (key, node).
//!
//! ```
//! use tributary_core::crdt::aggregate::AggregateState;
//! use tributary_core::ids::{NodeId, SensorId, Timestamp};
//! use tributary_core::sync::{HubConfig, HubSync, NodeConfig, NodeSync};
//!
//! let node = NodeId(1);
//! let mut edge = AggregateState::new();
//! for i in 0..10 {
//!     edge.record_all_resolutions(node, SensorId(7), Timestamp(i * 1_000), 20.0).unwrap();
//! }
//! let (mut n, mut h) = (NodeSync::new(node, NodeConfig::default(), 0), HubSync::new(HubConfig::default()));
//! let mut hub = AggregateState::new();
//!
//! let mut to_hub = n.on_connect(0, &edge);
//! while !to_hub.is_empty() {
//!     let mut to_node = Vec::new();
//!     for m in to_hub.drain(..) {
//!         to_node.extend(h.on_message(node, m, 0, &mut hub).unwrap());
//!     }
//!     for m in to_node {
//!         to_hub.extend(n.on_message(m, 0, &edge).unwrap());
//!     }
//! }
//! assert_eq!(hub, edge);
//! assert_eq!(n.acked(), 40);
//! ```

pub mod digest;
mod hub;
pub mod link;
mod node;

pub use hub::{HubConfig, HubSync, MergeSink};
pub use node::{NodeConfig, NodeSync};

use alloc::vec::Vec;

use crate::crdt::aggregate::{AggregateState, Entry, Key};
use crate::ids::NodeId;
use digest::{Cell, CellHash, DIGEST_RESOLUTIONS};

#[cfg(doc)]
use crate::codec::v1::Message;

/// Where a node's unsent entries come from: its own aggregate state, or an
/// outbox table in the gateway's store.
pub trait DeltaSource {
    /// The highest version `node` has written (0 if none).
    fn version_high(&self, node: NodeId) -> u64;

    /// At most `max_entries` of `node`'s current entries with a version
    /// above `after`, sorted by ascending version. Versions are unique per
    /// node, so a prefix of this list ending at version `v` holds *every*
    /// entry in `(after, v]`.
    ///
    /// Fallible because an empty answer is meaningful: "nothing left up to
    /// `version_high`" lets the node send a delta that moves the hub's
    /// watermark to it. A source that could not be read (a database error)
    /// must say so rather than answer empty, or the hub would skip entries
    /// it never got.
    fn entries_since(
        &self,
        node: NodeId,
        after: u64,
        max_entries: usize,
    ) -> Result<Vec<(Key, Entry)>, SourceUnavailable>;

    /// Anti-entropy ([`digest`]): the next `max_cells` cells of `node` in
    /// [`Cell`] order (newest day first) strictly after `after` (from the
    /// newest if `None`), each with the hash of its hour and day entries.
    /// Fewer than `max_cells` means the walk reached the oldest cell the
    /// source still holds completely. The default offers no digest.
    fn digest_cells(
        &self,
        node: NodeId,
        after: Option<Cell>,
        max_cells: usize,
    ) -> Result<Vec<(Cell, CellHash)>, SourceUnavailable> {
        let _ = (node, after, max_cells);
        Ok(Vec::new())
    }
}

/// The [`DeltaSource`] could not be read just now. The node sends nothing
/// for the affected batch and tries again on its next tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the delta source could not be read")]
pub struct SourceUnavailable;

impl DeltaSource for AggregateState {
    fn version_high(&self, node: NodeId) -> u64 {
        self.version_of(node)
    }

    fn entries_since(
        &self,
        node: NodeId,
        after: u64,
        max_entries: usize,
    ) -> Result<Vec<(Key, Entry)>, SourceUnavailable> {
        let mut out = self.node_entries_since(node, after);
        out.truncate(max_entries);
        Ok(out)
    }

    fn digest_cells(
        &self,
        node: NodeId,
        after: Option<Cell>,
        max_cells: usize,
    ) -> Result<Vec<(Cell, CellHash)>, SourceUnavailable> {
        // A full scan: this implementation serves tests and the simulation.
        let mut cells = alloc::collections::BTreeMap::<Cell, CellHash>::new();
        for (key, n, e) in self.iter_entries() {
            if n != node {
                continue;
            }
            if let Some(c) = digest::Cell::of(&key).filter(|c| after.is_none_or(|a| *c > a)) {
                cells.entry(c).or_default().add(node, &key, e.version);
            }
        }
        Ok(cells.into_iter().take(max_cells).collect())
    }
}

/// The hash the hub holds for `cell` of `node` in `state`.
pub(crate) fn state_cell_hash(state: &AggregateState, node: NodeId, cell: Cell) -> u64 {
    let mut h = CellHash::default();
    for r in DIGEST_RESOLUTIONS {
        let (lo, hi) = cell.buckets(r);
        let mut b = lo;
        while b <= hi {
            let key = Key::new(cell.sensor, r, b);
            if let Some((_, e)) = state.entries(&key).find(|(n, _)| *n == node) {
                h.add(node, &key, e.version);
            }
            b = crate::ids::Bucket(b.0 + 1);
        }
    }
    h.hash()
}

/// Why a state machine refused a message. Counting and logging are the
/// caller's job (`reason()` is the metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The message names a node other than the one it came from (hub side:
    /// the authenticated sender; node side: this node).
    #[error("message for node {got:?} on the session of node {expected:?}")]
    WrongNode {
        /// The node of the session.
        expected: NodeId,
        /// The node the message names.
        got: NodeId,
    },
    /// A `Delta` failed [`Delta::validate`](crate::codec::v1::Delta::validate).
    #[error("invalid delta: {0}")]
    InvalidDelta(&'static str),
    /// A message this side never receives (e.g. an `Ack` at the hub).
    #[error("unexpected {0} message")]
    UnexpectedMessage(&'static str),
    /// The hub claims a watermark above anything this node has written: the
    /// node lost its version counter and would reuse versions. Needs an
    /// operator; nothing is sent.
    #[error("hub watermark {watermark} is above the node's version_high {version_high}")]
    ResumeAhead {
        /// The hub's watermark.
        watermark: u64,
        /// The node's highest version.
        version_high: u64,
    },
}

impl SyncError {
    /// A stable label for metrics (`tributary_sync_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::WrongNode { .. } => "wrong_node",
            SyncError::InvalidDelta(_) => "invalid_delta",
            SyncError::UnexpectedMessage(_) => "unexpected_message",
            SyncError::ResumeAhead { .. } => "resume_ahead",
        }
    }
}

fn kind(msg: &crate::codec::v1::Message) -> &'static str {
    use crate::codec::v1::Message as M;
    match msg {
        M::Hello(_) => "hello",
        M::Resume(_) => "resume",
        M::Delta(_) => "delta",
        M::Ack(_) => "ack",
        M::Alert(_) => "alert",
        M::Config(_) => "config",
    }
}
