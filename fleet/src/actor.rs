//! The actor both daemons run around their [`Replica`]: the only owner of
//! the document, on its own arbiter thread (a first sync of a large fleet
//! takes most of a second, which must not stall the thread of the HTTP API
//! or of the MQTT client).
//!
//! - In: sync messages from peers ([`Receive`]), batches of edits
//!   ([`Edit`]), and "this peer just (re)connected" ([`Connected`]).
//! - Out: every sync message to send, as `(peer, bytes)` on a bounded
//!   channel the daemon's MQTT task drains. A message that does not fit is
//!   dropped and counted: the protocol recovers (the peer that waits for
//!   it is reset after [`FleetActorConfig::stall_after`]).
//! - Readers get the document's typed contents from a `watch` channel
//!   ([`FleetView`]), refreshed after every change, so an API or a detector
//!   never waits for the actor.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::{mpsc, watch};
use tributary_core::ids::NodeId;

use crate::{Changed, FleetConfig, FleetError, FleetSnapshot, Replica, ReplicaError};

/// What readers see: the document's contents and its size in the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetView {
    /// Everything the document says.
    pub snapshot: FleetSnapshot,
    /// Bytes of the document in its file.
    pub stored_bytes: usize,
    /// Changes applied since start (local edits and received), so a reader
    /// can tell a new view from an old one.
    pub generation: u64,
}

/// Callbacks into the daemon's metrics (the two daemons have different
/// registries).
pub struct FleetHooks {
    /// A message or edit was refused: `(reason, peer)` (`None`: a local
    /// edit).
    pub rejected: Box<dyn Fn(&'static str, Option<NodeId>) + Send>,
    /// A sync message was received (`true`) or queued to send (`false`).
    pub message: Box<dyn Fn(bool) + Send>,
    /// An outgoing message was dropped: the channel to the MQTT task was
    /// full or closed.
    pub dropped: Box<dyn Fn() + Send>,
}

impl std::fmt::Debug for FleetHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetHooks")
    }
}

impl FleetHooks {
    /// Hooks that count nothing (tests).
    pub fn none() -> FleetHooks {
        FleetHooks {
            rejected: Box::new(|_, _| {}),
            message: Box::new(|_| {}),
            dropped: Box::new(|| {}),
        }
    }
}

/// Timing of the actor.
#[derive(Clone, Copy, Debug)]
pub struct FleetActorConfig {
    /// A peer that has not answered a message for this long is reset and
    /// sent a new one (its answer, or our message, was lost).
    pub stall_after: Duration,
    /// How often stalled peers are looked for.
    pub check_every: Duration,
    /// Only peers heard from within this long are retried (see
    /// [`Replica::stalled`]).
    pub retry_heard_within: Duration,
}

impl Default for FleetActorConfig {
    fn default() -> Self {
        FleetActorConfig {
            stall_after: Duration::from_secs(30),
            check_every: Duration::from_secs(5),
            retry_heard_within: Duration::from_secs(300),
        }
    }
}

/// The queue of a replica's outgoing sync messages: `(peer, bytes)`.
pub type Outbox = mpsc::Receiver<(NodeId, Vec<u8>)>;

/// What a daemon's MQTT task needs of the document: the actor (received
/// messages and "connected" go there) and its [`Outbox`].
#[derive(Debug)]
pub struct FleetLink {
    /// The actor.
    pub actor: Addr<FleetActor>,
    /// What it sends.
    pub out: Outbox,
}

/// The actor that owns a daemon's [`Replica`]: edits, received sync messages,
/// stall checks; readers see its [`FleetView`] (docs/fleet-config.md).
#[derive(Debug)]
pub struct FleetActor {
    replica: Replica,
    out: mpsc::Sender<(NodeId, Vec<u8>)>,
    view: watch::Sender<Arc<FleetView>>,
    hooks: FleetHooks,
    config: FleetActorConfig,
    generation: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl FleetActor {
    /// What a daemon does at start: opens the replica at `path` for `node`
    /// in a new session, starts the actor, and returns the handle the API
    /// and detectors use and the queue (`queue` messages) its sync messages
    /// come out of.
    pub fn open_and_start(
        path: &std::path::Path,
        node: NodeId,
        hooks: FleetHooks,
        queue: usize,
    ) -> Result<(crate::http::FleetHandle, Outbox), ReplicaError> {
        let replica = Replica::open(path, node, crate::random_session())?;
        tracing::info!(path = %path.display(), bytes = replica.stored_bytes(), "fleet configuration open");
        let (tx, rx) = mpsc::channel(queue);
        let (actor, view) = FleetActor::start(replica, tx, hooks, FleetActorConfig::default());
        Ok((crate::http::FleetHandle { actor, view }, rx))
    }

    /// Starts the actor on its own arbiter thread. Returns its address and
    /// the view's receiver; outgoing messages arrive on `out`.
    pub fn start(
        replica: Replica,
        out: mpsc::Sender<(NodeId, Vec<u8>)>,
        hooks: FleetHooks,
        config: FleetActorConfig,
    ) -> (Addr<FleetActor>, watch::Receiver<Arc<FleetView>>) {
        let first = Arc::new(FleetView {
            snapshot: replica.doc().snapshot(),
            stored_bytes: replica.stored_bytes(),
            generation: 0,
        });
        let (view, rx) = watch::channel(first);
        let actor = FleetActor {
            replica,
            out,
            view,
            hooks,
            config,
            generation: 0,
        };
        let arbiter = Arbiter::new();
        let addr = FleetActor::start_in_arbiter(&arbiter.handle(), |_| actor);
        (addr, rx)
    }

    fn send(&mut self, msgs: Vec<(NodeId, Vec<u8>)>) {
        for m in msgs {
            (self.hooks.message)(false);
            if self.out.try_send(m).is_err() {
                (self.hooks.dropped)();
            }
        }
    }

    fn changed(&mut self) {
        self.generation += 1;
        let view = FleetView {
            snapshot: self.replica.doc().snapshot(),
            stored_bytes: self.replica.stored_bytes(),
            generation: self.generation,
        };
        self.view.send_replace(Arc::new(view));
    }

    fn check_stalled(&mut self) {
        let now = now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let stalled = self.replica.stalled(
            now,
            ms(self.config.stall_after),
            ms(self.config.retry_heard_within),
        );
        for peer in stalled {
            tracing::debug!(%peer, "fleet sync peer silent: starting a new round");
            self.replica.reset_peer(peer);
            if let Some(m) = self.replica.generate(peer, now) {
                self.send(vec![(peer, m)]);
            }
        }
    }
}

impl Actor for FleetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders use `send().await` / `try_send`, never an unbounded queue.
        ctx.set_mailbox_capacity(64);
        ctx.run_interval(self.config.check_every, |a, _| a.check_stalled());
    }
}

/// A sync message from `from`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Changed, ReplicaError>")]
pub struct Receive {
    /// The peer (the gateway's node id at the hub; [`crate::HUB`] at a
    /// gateway).
    pub from: NodeId,
    /// Automerge's sync message.
    pub bytes: Vec<u8>,
}

impl Handler<Receive> for FleetActor {
    type Result = Result<Changed, ReplicaError>;

    fn handle(&mut self, msg: Receive, _: &mut Self::Context) -> Self::Result {
        (self.hooks.message)(true);
        let now = now_ms();
        let changed = match self.replica.receive(msg.from, &msg.bytes, now) {
            Ok(c) => c,
            Err(e) => {
                (self.hooks.rejected)(e.reason(), Some(msg.from));
                return Err(e);
            }
        };
        let mut out: Vec<_> = self
            .replica
            .generate(msg.from, now)
            .map(|m| (msg.from, m))
            .into_iter()
            .collect();
        if changed == Changed::Updated {
            // What one peer brought, the others need (the hub relays
            // between gateways).
            out.extend(self.replica.generate_for_peers(Some(msg.from), now));
            self.changed();
        }
        self.send(out);
        Ok(changed)
    }
}

/// A batch of edits to run on the document (see [`Edit`]).
pub type EditFn = Box<dyn FnOnce(&mut FleetConfig) -> Result<(), FleetError> + Send>;

/// A batch of local edits, applied as one change (all or nothing).
pub struct Edit(pub EditFn);

impl std::fmt::Debug for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Edit")
    }
}

impl Message for Edit {
    type Result = Result<Arc<FleetView>, ReplicaError>;
}

impl Handler<Edit> for FleetActor {
    type Result = Result<Arc<FleetView>, ReplicaError>;

    fn handle(&mut self, msg: Edit, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.replica.edit(msg.0) {
            (self.hooks.rejected)(e.reason(), None);
            return Err(e);
        }
        self.changed();
        let out = self.replica.generate_for_peers(None, now_ms());
        self.send(out);
        Ok(self.view.borrow().clone())
    }
}

/// `peer` has just (re)connected: whatever was in flight to it is gone, so
/// start a new round with it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Connected {
    /// The peer.
    pub peer: NodeId,
}

impl Handler<Connected> for FleetActor {
    type Result = ();

    fn handle(&mut self, msg: Connected, _: &mut Self::Context) {
        self.replica.reset_peer(msg.peer);
        if let Some(m) = self.replica.generate(msg.peer, now_ms()) {
            self.send(vec![(msg.peer, m)]);
        }
    }
}
