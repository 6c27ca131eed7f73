//! Automerge's sync protocol, one [`Peer`] per remote replica.
//!
//! The bytes produced here travel in the wire message
//! `ConfigSync { node, sync }` on `tributary/v1/{node}/config`; this module
//! only produces and consumes them.

use std::fmt;

use automerge::sync::{Message, State, SyncDoc};

use crate::{FleetConfig, FleetError};

/// What this replica knows of one remote replica's document (Automerge's
/// `sync::State`): their heads, what was sent and not yet acknowledged.
///
/// Keep one per remote for the life of a connection. Across reconnects,
/// persist it with [`encode`](Peer::encode) to skip re-discovering the
/// shared history; a fresh `Peer` is always correct, only slower.
#[derive(Clone, Default)]
pub struct Peer {
    state: State,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("shared_heads", &self.state.shared_heads.len())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer nothing is known about yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The durable part of the state (the heads both sides share).
    pub fn encode(&self) -> Vec<u8> {
        self.state.encode()
    }

    /// Restores [`encode`](Self::encode)d state; garbage is
    /// [`FleetError::MalformedPeerState`] (start with [`Peer::new`] then).
    pub fn decode(bytes: &[u8]) -> Result<Self, FleetError> {
        State::decode(bytes)
            .map(|state| Self { state })
            .map_err(|_| FleetError::MalformedPeerState)
    }
}

/// Whether a received sync message changed the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Changed {
    /// Nothing new: no need to persist or re-read.
    Unchanged,
    /// New changes were applied: persist (`save_incremental`) and re-read
    /// what depends on the document (e.g. detector thresholds).
    Updated,
}

impl FleetConfig {
    /// The next sync message for `peer`, or `None` when there is nothing to
    /// send (in sync, or waiting for the peer's answer to the last one).
    ///
    /// Call it after connecting, after every received message, and after
    /// local edits; send until it returns `None`. Commits pending edits.
    pub fn generate(&mut self, peer: &mut Peer) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(&mut peer.state)
            .map(Message::encode)
    }

    /// Applies a sync message from `peer`. Bytes that do not decode, or
    /// whose changes do not apply, are [`FleetError::MalformedSync`]
    /// (reason `malformed_sync`): drop the message and count it.
    pub fn receive(&mut self, peer: &mut Peer, bytes: &[u8]) -> Result<Changed, FleetError> {
        let message =
            Message::decode(bytes).map_err(|e| FleetError::MalformedSync(e.to_string()))?;
        let before = self.doc.get_heads();
        self.doc
            .sync()
            .receive_sync_message(&mut peer.state, message)
            .map_err(|e| FleetError::MalformedSync(e.to_string()))?;
        // Automerge never re-sends a change it sent in this session, so a
        // lost message would leave the peer asking for it forever while
        // both sides keep exchanging heads (a livelock the property test
        // found). A change the peer explicitly needs did not arrive: forget
        // that it was sent, so the next `generate` sends it again.
        if let Some(need) = &peer.state.their_need {
            for hash in need {
                peer.state.sent_hashes.remove(hash);
            }
        }
        Ok(if self.doc.get_heads() == before {
            Changed::Unchanged
        } else {
            Changed::Updated
        })
    }
}
