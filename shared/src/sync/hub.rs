//! The hub side of a sync session.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::digest::Cell;
use super::{SyncError, kind};
use crate::codec::v1::{Ack, Delta, DigestEntry, Hello, Message, Resume};
use crate::crdt::aggregate::AggregateState;
use crate::hlc::Hlc;
use crate::ids::NodeId;

/// Where the hub joins the entries of a valid `Delta`: the core's
/// in-memory [`AggregateState`], or a shell that collects them for one
/// durable transaction (the hub's SQLite/PostgreSQL merge store).
pub trait MergeSink {
    /// Joins every entry of `delta`, written by `node`.
    fn join_delta(&mut self, node: NodeId, delta: &Delta);

    /// The hub's hash of `node`'s `cell` ([`digest`](super::digest)), to
    /// compare with a `Hello`'s digest; `None` if it cannot be told (the
    /// cell is then not compared). The default compares nothing.
    fn cell_hash(&self, node: NodeId, cell: Cell) -> Option<u64> {
        let _ = (node, cell);
        None
    }
}

impl MergeSink for AggregateState {
    fn join_delta(&mut self, node: NodeId, delta: &Delta) {
        for (key, entry) in delta.entries() {
            self.join_entry(key, node, entry);
        }
    }

    fn cell_hash(&self, node: NodeId, cell: Cell) -> Option<u64> {
        Some(super::state_cell_hash(self, node, cell))
    }
}

/// Limits of the hub side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Bytes a node may send before the next `Ack` (in `Resume` and every
    /// `Ack`); `None`: no limit beyond the node's batch size.
    pub credit: Option<u32>,
    /// Most out-of-order ranges remembered per node above its watermark.
    /// Past it the oldest record is dropped: its batch is still unacked,
    /// so the node re-sends it.
    pub max_ranges: usize,
    /// Most digest cells compared per `Hello` (bounds the hub's reads);
    /// cells past it are ignored, and the node offers them again on a
    /// later round.
    pub max_digest_cells: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            credit: None,
            max_ranges: 16,
            max_digest_cells: 256,
        }
    }
}

/// What the hub knows of one node's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Progress {
    /// Every entry of the node with a version up to here is merged.
    watermark: u64,
    /// Ranges `(from, to]` merged above the watermark, oldest first.
    ranges: VecDeque<(u64, u64)>,
    last_seen_ms: u64,
}

impl Progress {
    fn absorb(&mut self, from: u64, to: u64, max_ranges: usize) {
        if from > self.watermark {
            if !self.ranges.iter().any(|&(f, t)| f <= from && to <= t) {
                if self.ranges.len() >= max_ranges.max(1) {
                    self.ranges.pop_front();
                }
                self.ranges.push_back((from, to));
            }
            return;
        }
        self.watermark = self.watermark.max(to);
        // The gap may have been the last one below later ranges: jump over
        // every range that now touches the watermark, and forget those below.
        while let Some(i) = self.ranges.iter().position(|&(f, _)| f <= self.watermark) {
            if let Some((_, t)) = self.ranges.remove(i) {
                self.watermark = self.watermark.max(t);
            }
        }
    }
}

/// The protocol state of the hub: per node, the contiguous watermark and
/// the out-of-order ranges above it. The merged entries live in the
/// caller's [`AggregateState`], passed to [`on_message`](Self::on_message).
///
/// Durability is the shell's: after joining a `Delta` it commits the state
/// and [`watermarks`](Self::watermarks) *before* publishing the returned
/// `Ack`, and after a restart rebuilds with [`restore`](Self::restore).
#[derive(Clone, Debug, Default)]
pub struct HubSync {
    cfg: HubConfig,
    nodes: BTreeMap<NodeId, Progress>,
}

impl HubSync {
    /// A hub that has merged nothing yet.
    pub fn new(cfg: HubConfig) -> Self {
        HubSync {
            cfg,
            nodes: BTreeMap::new(),
        }
    }

    /// A hub restarted from its durable watermarks (the out-of-order
    /// ranges are not durable; their batches are re-sent).
    pub fn restore(cfg: HubConfig, watermarks: impl IntoIterator<Item = (NodeId, u64)>) -> Self {
        let nodes = watermarks
            .into_iter()
            .map(|(n, watermark)| {
                (
                    n,
                    Progress {
                        watermark,
                        ..Progress::default()
                    },
                )
            })
            .collect();
        HubSync { cfg, nodes }
    }

    /// The contiguous watermark of `node` (0 if never heard of).
    pub fn watermark(&self, node: NodeId) -> u64 {
        self.nodes.get(&node).map_or(0, |p| p.watermark)
    }

    /// Every node's watermark, by node id: what to persist.
    pub fn watermarks(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.nodes.iter().map(|(n, p)| (*n, p.watermark))
    }

    /// Another replica sharing the store has durably merged everything of
    /// `node` up to `durable` (read back from the store): raise this hub's
    /// watermark to it, jumping over ranges it holds above. Never lowers
    /// it. Lets hubs that split one node's stream (MQTT shared
    /// subscriptions) acknowledge each other's work instead of waiting for
    /// retransmissions to land on the right replica.
    pub fn observe_durable(&mut self, node: NodeId, durable: u64) {
        let max_ranges = self.cfg.max_ranges;
        self.nodes
            .entry(node)
            .or_default()
            .absorb(0, durable, max_ranges);
    }

    /// When a message of `node` was last accepted, in the caller's ms.
    pub fn last_seen_ms(&self, node: NodeId) -> Option<u64> {
        self.nodes.get(&node).map(|p| p.last_seen_ms)
    }

    /// A message from the authenticated node `sender`: answers a `Hello`
    /// with `Resume`, joins a `Delta` into `state` and answers with `Ack`.
    /// `Alert`s are the shell's to store; it answers each with
    /// [`alert_ack`](Self::alert_ack) once stored.
    pub fn on_message(
        &mut self,
        sender: NodeId,
        msg: Message,
        now_ms: u64,
        state: &mut impl MergeSink,
    ) -> Result<Vec<Message>, SyncError> {
        if msg.node() != sender {
            // A node may only write its own entries (DESIGN.md §5).
            return Err(SyncError::WrongNode {
                expected: sender,
                got: msg.node(),
            });
        }
        match msg {
            Message::Hello(h) => {
                let repair = self.repairs(sender, &h, state);
                let p = self.nodes.entry(sender).or_default();
                p.last_seen_ms = now_ms;
                Ok(alloc::vec![Message::Resume(Resume {
                    node: sender,
                    watermark: p.watermark,
                    credit: self.cfg.credit,
                    repair,
                })])
            }
            Message::Delta(d) => self.on_delta(sender, &d, now_ms, state),
            other => Err(SyncError::UnexpectedMessage(kind(&other))),
        }
    }

    /// The cells of `hello`'s digest whose hash differs from the hub's
    /// copy, each with the hub's hash; `None` if all match.
    fn repairs(
        &self,
        sender: NodeId,
        hello: &Hello,
        state: &impl MergeSink,
    ) -> Option<Vec<DigestEntry>> {
        let digest = hello.digest.as_deref()?;
        let differ: Vec<DigestEntry> = digest
            .iter()
            .take(self.cfg.max_digest_cells)
            .filter_map(|d| {
                let hub = state.cell_hash(sender, Cell::from(d))?;
                (hub != d.hash).then_some(DigestEntry { hash: hub, ..*d })
            })
            .collect();
        (!differ.is_empty()).then_some(differ)
    }

    /// The answer to `sender`'s alert `hlc` once the shell has stored it
    /// durably: an `Ack` naming the alert and carrying the node's current
    /// watermark (which the node treats like any other `Ack`).
    pub fn alert_ack(&mut self, sender: NodeId, hlc: Hlc, now_ms: u64) -> Message {
        let p = self.nodes.entry(sender).or_default();
        p.last_seen_ms = now_ms;
        Message::Ack(Ack {
            node: sender,
            upto: p.watermark,
            credit: self.cfg.credit,
            alert: Some(hlc),
        })
    }

    fn on_delta(
        &mut self,
        sender: NodeId,
        d: &Delta,
        now_ms: u64,
        state: &mut impl MergeSink,
    ) -> Result<Vec<Message>, SyncError> {
        // `decode` validates already; a shell that got the message another
        // way must not be able to skip it.
        d.validate().map_err(SyncError::InvalidDelta)?;
        // Joined at once, even out of order: no data waits, only the ack.
        state.join_delta(sender, d);
        let max_ranges = self.cfg.max_ranges;
        let p = self.nodes.entry(sender).or_default();
        p.last_seen_ms = now_ms;
        p.absorb(d.from, d.to, max_ranges);
        Ok(alloc::vec![Message::Ack(Ack {
            node: sender,
            upto: p.watermark,
            credit: self.cfg.credit,
            alert: None,
        })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::v1::Hello;
    use crate::crdt::aggregate::{Entry, Key};
    use crate::ids::{Bucket, Resolution, SensorId, Timestamp};
    use crate::summary::Summary;
    use std::vec;

    const N: NodeId = NodeId(3);

    /// A delta of `(from, to]` with one entry at version `to` (if `to > from`).
    fn delta(node: NodeId, from: u64, to: u64) -> Message {
        let key = Key::new(SensorId(1), Resolution::Second, Bucket::new(to));
        let e = Entry {
            version: to,
            summary: Summary::of(Timestamp(to * 1_000), 2.0).unwrap(),
        };
        let entries = (to > from).then_some((key, e));
        Message::Delta(Delta::from_entries(node, from, to, entries))
    }

    fn upto(out: &[Message]) -> u64 {
        match out {
            [Message::Ack(a)] => a.upto,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hello_is_answered_with_the_watermark() {
        let mut h = HubSync::new(HubConfig::default());
        let mut s = AggregateState::new();
        h.on_message(N, delta(N, 0, 5), 0, &mut s).unwrap();
        let hello = Message::Hello(Hello {
            node: N,
            version_high: 9,
            digest: None,
        });
        let out = h.on_message(N, hello, 7, &mut s).unwrap();
        assert_eq!(
            out,
            vec![Message::Resume(Resume {
                node: N,
                watermark: 5,
                credit: None,
                repair: None,
            })]
        );
        assert_eq!(h.last_seen_ms(N), Some(7));
    }

    #[test]
    fn gap_then_fill_advances_over_stored_ranges() {
        let mut h = HubSync::new(HubConfig::default());
        let mut s = AggregateState::new();
        assert_eq!(
            upto(&h.on_message(N, delta(N, 0, 2), 0, &mut s).unwrap()),
            2
        );
        // (2, 4] is lost; later batches are joined at once, acked at 2.
        assert_eq!(
            upto(&h.on_message(N, delta(N, 4, 6), 0, &mut s).unwrap()),
            2
        );
        assert_eq!(
            upto(&h.on_message(N, delta(N, 6, 9), 0, &mut s).unwrap()),
            2
        );
        assert_eq!(s.version_of(N), 9, "out-of-order data is merged at once");
        assert_eq!(
            upto(&h.on_message(N, delta(N, 2, 4), 0, &mut s).unwrap()),
            9
        );
        // A duplicate changes nothing.
        assert_eq!(
            upto(&h.on_message(N, delta(N, 4, 6), 0, &mut s).unwrap()),
            9
        );
        assert_eq!(h.watermark(N), 9);
    }

    #[test]
    fn range_records_are_bounded_and_the_oldest_goes_first() {
        let cfg = HubConfig {
            max_ranges: 2,
            ..HubConfig::default()
        };
        let mut h = HubSync::new(cfg);
        let mut s = AggregateState::new();
        for (f, t) in [(2, 3), (3, 4), (4, 5)] {
            assert_eq!(
                upto(&h.on_message(N, delta(N, f, t), 0, &mut s).unwrap()),
                0
            );
        }
        // The record of (2, 3] was dropped: the fill stops below it until
        // the node re-sends it.
        assert_eq!(
            upto(&h.on_message(N, delta(N, 0, 2), 0, &mut s).unwrap()),
            2
        );
        assert_eq!(
            upto(&h.on_message(N, delta(N, 2, 3), 0, &mut s).unwrap()),
            5
        );
    }

    #[test]
    fn watermark_never_regresses() {
        let mut h = HubSync::new(HubConfig::default());
        let mut s = AggregateState::new();
        h.on_message(N, delta(N, 0, 8), 0, &mut s).unwrap();
        assert_eq!(
            upto(&h.on_message(N, delta(N, 0, 3), 0, &mut s).unwrap()),
            8
        );
        assert_eq!(
            upto(&h.on_message(N, delta(N, 5, 5), 0, &mut s).unwrap()),
            8
        );
    }

    #[test]
    fn wrong_node_and_invalid_deltas_are_rejected_unmerged() {
        let mut h = HubSync::new(HubConfig::default());
        let mut s = AggregateState::new();
        let err = h
            .on_message(NodeId(4), delta(N, 0, 2), 0, &mut s)
            .unwrap_err();
        assert_eq!(
            err,
            SyncError::WrongNode {
                expected: NodeId(4),
                got: N
            }
        );
        assert_eq!(err.reason(), "wrong_node");
        let Message::Delta(mut bad) = delta(N, 0, 2) else {
            unreachable!()
        };
        bad.from = 2; // the entry's version 2 is no longer in (2, 2]
        let err = h.on_message(N, Message::Delta(bad), 0, &mut s).unwrap_err();
        assert_eq!(err, SyncError::InvalidDelta("delta_version_out_of_range"));
        let ack = Message::Ack(Ack {
            node: N,
            upto: 1,
            credit: None,
            alert: None,
        });
        assert_eq!(
            h.on_message(N, ack, 0, &mut s),
            Err(SyncError::UnexpectedMessage("ack"))
        );
        assert!(s.is_empty());
        assert_eq!(h.watermark(N), 0);
    }

    #[test]
    fn a_durable_watermark_from_another_replica_is_joined_with_held_ranges() {
        let mut h = HubSync::new(HubConfig::default());
        let mut s = AggregateState::new();
        // This replica got (0,2] and (5,7]; another merged (2,5].
        h.on_message(N, delta(N, 0, 2), 0, &mut s).unwrap();
        h.on_message(N, delta(N, 5, 7), 0, &mut s).unwrap();
        assert_eq!(h.watermark(N), 2);
        h.observe_durable(N, 5);
        assert_eq!(h.watermark(N), 7);
        // Never lowers.
        h.observe_durable(N, 3);
        assert_eq!(h.watermark(N), 7);
    }

    #[test]
    fn restore_keeps_watermarks_only() {
        let mut h = HubSync::new(HubConfig::default());
        let mut s = AggregateState::new();
        h.on_message(N, delta(N, 0, 2), 0, &mut s).unwrap();
        h.on_message(N, delta(N, 3, 4), 0, &mut s).unwrap();
        let r = HubSync::restore(HubConfig::default(), h.watermarks());
        assert_eq!(r.watermark(N), 2);
        assert_eq!(r.watermarks().collect::<Vec<_>>(), vec![(N, 2)]);
    }

    /// A shell's sink: collects deltas for one transaction instead of
    /// joining them in memory.
    #[derive(Default)]
    struct Collect(Vec<(NodeId, u64, u64, usize)>);

    impl MergeSink for Collect {
        fn join_delta(&mut self, node: NodeId, d: &Delta) {
            self.0.push((node, d.from, d.to, d.entries().count()));
        }
    }

    #[test]
    fn a_collecting_sink_sees_exactly_the_valid_deltas() {
        let mut h = HubSync::new(HubConfig::default());
        let mut sink = Collect::default();
        h.on_message(N, delta(N, 0, 2), 0, &mut sink).unwrap();
        assert!(
            h.on_message(NodeId(9), delta(N, 2, 3), 0, &mut sink)
                .is_err()
        );
        h.on_message(N, delta(N, 2, 2), 0, &mut sink).unwrap();
        assert_eq!(sink.0, vec![(N, 0, 2, 1), (N, 2, 2, 0)]);
        assert_eq!(h.watermark(N), 2);
    }

    #[test]
    fn alert_ack_names_the_alert_and_carries_the_watermark() {
        let mut h = HubSync::new(HubConfig {
            credit: Some(500),
            ..HubConfig::default()
        });
        let mut s = AggregateState::new();
        h.on_message(N, delta(N, 0, 2), 0, &mut s).unwrap();
        assert_eq!(
            h.alert_ack(N, Hlc::from_u64(77), 9),
            Message::Ack(Ack {
                node: N,
                upto: 2,
                credit: Some(500),
                alert: Some(Hlc::from_u64(77)),
            })
        );
        assert_eq!(h.last_seen_ms(N), Some(9));
    }
}
