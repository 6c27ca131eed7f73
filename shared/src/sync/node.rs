//! The gateway side of a sync session.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::digest::Cell;
use super::{DeltaSource, SyncError, kind};
use crate::codec::v1::{self, Ack, Delta, DigestEntry, Hello, MAX_MESSAGE, Message, Resume};
use crate::ids::NodeId;

/// Limits of a node's sending side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Largest encoded `Delta` message, in bytes (capped at [`MAX_MESSAGE`]).
    pub max_batch_bytes: usize,
    /// Most entries in one `Delta` (bounds the work of cutting a batch).
    pub max_batch_entries: usize,
    /// Most unacknowledged batches in flight (at least 1).
    pub window: usize,
    /// A `Hello` or batch unanswered for this long is sent again, in ms.
    pub retransmit_after_ms: u64,
    /// Anti-entropy cells per `Hello` ([`digest`](super::digest)); also
    /// the most cells repaired per `Resume`. 0 turns the digest off. Keep
    /// it at most the hub's `max_digest_cells`: cells past that bound are
    /// not compared.
    pub digest_cells: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_batch_bytes: 64 * 1024,
            max_batch_entries: 1_500,
            window: 4,
            retransmit_after_ms: 5_000,
            digest_cells: 32,
        }
    }
}

impl NodeConfig {
    fn byte_limit(&self) -> usize {
        // Below ~128 bytes not even one entry fits; a config that small is
        // a mistake, and making progress matters more than honouring it.
        self.max_batch_bytes.clamp(128, MAX_MESSAGE)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    Disconnected,
    AwaitingResume { hello_sent_ms: u64 },
    Streaming,
}

/// A batch sent and not yet covered by an `Ack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    from: u64,
    to: u64,
    sent_ms: u64,
}

/// The protocol state of one gateway: its acknowledged watermark, the
/// batches in flight and the connection state. The entries themselves stay
/// in the node's [`DeltaSource`], passed to every event that may send.
///
/// Events: [`on_connect`](Self::on_connect) after the transport connects,
/// [`on_message`](Self::on_message) for each `Resume`/`Ack`,
/// [`on_tick`](Self::on_tick) periodically and after local writes,
/// [`on_disconnect`](Self::on_disconnect) when the transport drops. Each
/// returns the messages to publish. The shell persists
/// [`acked`](Self::acked) when it grows and passes it back to
/// [`new`](Self::new) after a restart.
#[derive(Clone, Debug)]
pub struct NodeSync {
    node: NodeId,
    cfg: NodeConfig,
    acked: u64,
    conn: Conn,
    /// The `to` of the last batch sent in this session: the next batch's `from`.
    cursor: u64,
    in_flight: VecDeque<InFlight>,
    /// Bytes the hub still allows before its next `Ack`; `None`: no limit.
    credit: Option<u64>,
    /// Where the anti-entropy walk goes on: the last cell offered (`None`:
    /// from the newest). Not persisted: a restart walks from the newest.
    digest_after: Option<Cell>,
    /// Cells the hub asked to repair, for the shell to re-stamp.
    repairs: Vec<Cell>,
}

impl NodeSync {
    /// The state of node `node` whose hub has acknowledged everything up to
    /// `acked` (0 for a new node).
    pub fn new(node: NodeId, cfg: NodeConfig, acked: u64) -> Self {
        NodeSync {
            node,
            cfg,
            acked,
            conn: Conn::Disconnected,
            cursor: acked,
            in_flight: VecDeque::new(),
            credit: None,
            digest_after: None,
            repairs: Vec::new(),
        }
    }

    /// The node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The highest watermark the hub has acknowledged; it never decreases.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether the session is established (a `Resume` arrived since the
    /// last connect).
    pub fn is_streaming(&self) -> bool {
        self.conn == Conn::Streaming
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the hub has acknowledged everything in `src`.
    pub fn is_synced(&self, src: &impl DeltaSource) -> bool {
        self.acked >= src.version_high(self.node)
    }

    /// The transport connected: start a session with `Hello`.
    pub fn on_connect(&mut self, now_ms: u64, src: &impl DeltaSource) -> Vec<Message> {
        self.reset();
        self.conn = Conn::AwaitingResume {
            hello_sent_ms: now_ms,
        };
        alloc::vec![self.hello(src)]
    }

    /// Time for an anti-entropy round (the shell's timer): a `Hello` with
    /// the next cells of the digest walk. Only in an established session;
    /// the hub's `Resume` names the cells to repair.
    pub fn digest_hello(&mut self, src: &impl DeltaSource) -> Vec<Message> {
        if self.conn != Conn::Streaming || self.cfg.digest_cells == 0 {
            return Vec::new();
        }
        alloc::vec![self.hello(src)]
    }

    /// The cells the hub found damaged since the last call (see
    /// [`digest`](super::digest)). The shell gives every synced entry of
    /// each a fresh version, as if rewritten with the same value
    /// (`AggregateState::restamp` does this for the core's state), then
    /// calls [`on_tick`](Self::on_tick): the entries stream to the hub
    /// through the ordinary acknowledged path, so a lost message only
    /// delays the repair. If the shell cannot re-stamp (its store failed),
    /// dropping the list is safe: the next digest round asks again.
    pub fn take_repairs(&mut self) -> Vec<Cell> {
        core::mem::take(&mut self.repairs)
    }

    /// The transport dropped: forget the session (not the watermark).
    pub fn on_disconnect(&mut self) {
        self.reset();
        self.conn = Conn::Disconnected;
    }

    /// A message from the hub. Returns the batches it allows to be sent.
    pub fn on_message(
        &mut self,
        msg: Message,
        now_ms: u64,
        src: &impl DeltaSource,
    ) -> Result<Vec<Message>, SyncError> {
        if msg.node() != self.node {
            return Err(SyncError::WrongNode {
                expected: self.node,
                got: msg.node(),
            });
        }
        match msg {
            Message::Resume(r) => self.on_resume(r, now_ms, src),
            Message::Ack(a) => Ok(self.on_ack(a, now_ms, src)),
            other => Err(SyncError::UnexpectedMessage(kind(&other))),
        }
    }

    /// Time passed or local data changed: re-send what timed out, then send
    /// new batches the window and credit allow.
    pub fn on_tick(&mut self, now_ms: u64, src: &impl DeltaSource) -> Vec<Message> {
        let timeout = self.cfg.retransmit_after_ms;
        match self.conn {
            Conn::Disconnected => Vec::new(),
            Conn::AwaitingResume { hello_sent_ms } => {
                if now_ms.saturating_sub(hello_sent_ms) >= timeout {
                    self.conn = Conn::AwaitingResume {
                        hello_sent_ms: now_ms,
                    };
                    alloc::vec![self.hello(src)]
                } else {
                    Vec::new()
                }
            }
            Conn::Streaming => {
                let mut out = Vec::new();
                for b in self.in_flight.iter_mut() {
                    if now_ms.saturating_sub(b.sent_ms) >= timeout {
                        // Rebuilt from the source rather than stored: what is
                        // in (from, to] now is a subset of what was (entries
                        // only get superseded by higher versions), so it still
                        // fits, and covers every current entry of the range.
                        // An unreadable source leaves `sent_ms` as it was, so
                        // the next tick tries again.
                        let Ok(entries) =
                            src.entries_since(self.node, b.from, self.cfg.max_batch_entries.max(1))
                        else {
                            continue;
                        };
                        b.sent_ms = now_ms;
                        let entries = entries.into_iter().take_while(|(_, e)| e.version <= b.to);
                        let d = Delta::from_entries(self.node, b.from, b.to, entries);
                        // Re-sends are not charged to the credit: they
                        // replace bytes the hub never got.
                        out.push(Message::Delta(d));
                    }
                }
                self.fill(now_ms, src, &mut out);
                out
            }
        }
    }

    fn reset(&mut self) {
        self.in_flight.clear();
        self.cursor = self.acked;
        self.credit = None;
    }

    fn hello(&mut self, src: &impl DeltaSource) -> Message {
        Message::Hello(Hello {
            node: self.node,
            version_high: src.version_high(self.node),
            digest: self.next_digest(src),
        })
    }

    /// The next cells of the anti-entropy walk, only those whose every
    /// entry the hub has acknowledged (newer ones may be in flight).
    fn next_digest(&mut self, src: &impl DeltaSource) -> Option<Vec<DigestEntry>> {
        let max = self.cfg.digest_cells;
        if max == 0 {
            return None;
        }
        // Unreadable: no digest this time; the walk stays where it was.
        let cells = src.digest_cells(self.node, self.digest_after, max).ok()?;
        // A short page means the walk reached the oldest cell: start over.
        self.digest_after = if cells.len() < max {
            None
        } else {
            cells.last().map(|(c, _)| *c)
        };
        let digest: Vec<DigestEntry> = cells
            .into_iter()
            .filter(|(_, h)| h.entries() > 0 && h.max_version() <= self.acked)
            .map(|(c, h)| DigestEntry {
                sensor: c.sensor,
                day: c.day,
                hash: h.hash(),
            })
            .collect();
        (!digest.is_empty()).then_some(digest)
    }

    /// Queues the cells of a `Resume` for [`take_repairs`](Self::take_repairs),
    /// at most `digest_cells` (a hub cannot make a node rewrite more than
    /// it offered), each once.
    fn queue_repairs(&mut self, cells: Option<&[DigestEntry]>) {
        for d in cells.unwrap_or_default() {
            if self.repairs.len() >= self.cfg.digest_cells {
                break;
            }
            let cell = Cell::from(d);
            if !self.repairs.contains(&cell) {
                self.repairs.push(cell);
            }
        }
    }

    fn on_resume(
        &mut self,
        r: Resume,
        now_ms: u64,
        src: &impl DeltaSource,
    ) -> Result<Vec<Message>, SyncError> {
        if self.conn == Conn::Streaming && r.watermark < self.acked {
            // The hub is behind what it once acknowledged: it lost data
            // (restored from a backup) without this session breaking (an
            // external broker keeps the connection while the hub
            // restarts); its `Resume` answers a heartbeat `Hello`. Start
            // over from its watermark, as after a reconnect. A stale
            // duplicate `Resume` also lands here and costs a re-send of
            // data the hub has, which the join makes harmless.
            self.conn = Conn::AwaitingResume {
                hello_sent_ms: now_ms,
            };
            return self.on_resume(r, now_ms, src);
        }
        if !matches!(self.conn, Conn::AwaitingResume { .. }) {
            // A duplicate (or one from an earlier session) while streaming or
            // offline, or the answer to a digest round: its watermark is
            // still true, so it counts as an ack.
            let ack = Ack {
                node: r.node,
                upto: r.watermark,
                credit: None,
                alert: None,
            };
            return Ok(if self.conn == Conn::Streaming {
                self.queue_repairs(r.repair.as_deref());
                self.on_ack(ack, now_ms, src)
            } else {
                self.acked = self.acked.max(r.watermark.min(src.version_high(self.node)));
                Vec::new()
            });
        }
        let high = src.version_high(self.node);
        if r.watermark > high {
            return Err(SyncError::ResumeAhead {
                watermark: r.watermark,
                version_high: high,
            });
        }
        self.acked = self.acked.max(r.watermark);
        // From the hub's watermark, even below `acked`: a hub restored from
        // an old backup gets the lost range again.
        self.cursor = r.watermark;
        self.in_flight.clear();
        self.credit = r.credit.map(u64::from);
        self.conn = Conn::Streaming;
        self.queue_repairs(r.repair.as_deref());
        let mut out = Vec::new();
        self.fill(now_ms, src, &mut out);
        Ok(out)
    }

    fn on_ack(&mut self, a: Ack, now_ms: u64, src: &impl DeltaSource) -> Vec<Message> {
        if a.upto < self.acked || self.conn != Conn::Streaming {
            // Late or from an old session: the watermark only grows.
            if self.conn != Conn::Streaming {
                self.acked = self.acked.max(a.upto.min(src.version_high(self.node)));
            }
            return Vec::new();
        }
        // Clamped like a `Resume`: no version above `high` exists here.
        self.acked = a.upto.min(src.version_high(self.node)).max(self.acked);
        self.cursor = self.cursor.max(self.acked);
        while self.in_flight.front().is_some_and(|b| b.to <= a.upto) {
            self.in_flight.pop_front();
        }
        if let Some(c) = a.credit {
            self.credit = Some(u64::from(c));
        }
        let mut out = Vec::new();
        self.fill(now_ms, src, &mut out);
        out
    }

    /// Sends new batches above the cursor while the window and credit allow.
    fn fill(&mut self, now_ms: u64, src: &impl DeltaSource, out: &mut Vec<Message>) {
        while self.in_flight.len() < self.cfg.window.max(1) {
            let Some((msg, to, len)) = self.next_batch(src) else {
                return;
            };
            if let Some(c) = self.credit.as_mut() {
                *c = c.saturating_sub(len as u64);
            }
            self.in_flight.push_back(InFlight {
                from: self.cursor,
                to,
                sent_ms: now_ms,
            });
            self.cursor = to;
            out.push(msg);
        }
    }

    /// The next batch above the cursor as a `Delta` message, with its `to`
    /// and encoded size, cut to the byte limit and the credit; `None` if
    /// there is nothing to send or the credit does not allow it.
    fn next_batch(&self, src: &impl DeltaSource) -> Option<(Message, u64, usize)> {
        let from = self.cursor;
        let high = src.version_high(self.node);
        if from >= high {
            return None;
        }
        // Unreadable: send nothing now (never an empty delta up to `high`).
        let entries = src
            .entries_since(self.node, from, self.cfg.max_batch_entries.max(1))
            .ok()?;
        let complete = entries.len() < self.cfg.max_batch_entries.max(1);
        let byte_limit = self.cfg.byte_limit();
        let credit = self
            .credit
            .map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
        let limit = byte_limit.min(credit);
        let mut n = entries.len();
        loop {
            // A prefix ending at version v covers every entry in (from, v]
            // (sorted, unique versions); the whole remainder covers up to
            // `high` even if the highest versions were superseded.
            let to = match n.checked_sub(1).and_then(|i| entries.get(i)) {
                Some(_) if n == entries.len() && complete => high,
                Some((_, e)) => e.version,
                None => high,
            };
            let prefix = entries.get(..n).unwrap_or(&entries);
            let msg = Message::Delta(Delta::from_entries(
                self.node,
                from,
                to,
                prefix.iter().copied(),
            ));
            let len = v1::encoded_len(&msg);
            if len <= limit {
                return Some((msg, to, len));
            }
            if n <= 1 {
                // Nothing in flight means no `Ack` will come to raise the
                // credit: a credit smaller than one entry would deadlock, so
                // liveness wins and the overrun is at most one entry.
                let stalled = self.in_flight.is_empty() && len <= byte_limit;
                return stalled.then_some((msg, to, len));
            }
            // Shrink in proportion to the overshoot, by at least one entry.
            n = (n.saturating_mul(limit) / len).clamp(1, n - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::aggregate::AggregateState;
    use crate::ids::{SensorId, Timestamp};
    use std::vec;

    const N: NodeId = NodeId(3);

    fn edge(readings: u64) -> AggregateState {
        let mut s = AggregateState::new();
        for i in 0..readings {
            s.record_all_resolutions(N, SensorId((i % 5) as u32), Timestamp(i * 1_000), 1.5)
                .unwrap();
        }
        s
    }

    fn resume(watermark: u64) -> Message {
        Message::Resume(Resume {
            node: N,
            watermark,
            credit: None,
            repair: None,
        })
    }

    /// A source whose reads fail while `down` is set (a database error).
    struct Flaky<'a> {
        state: &'a AggregateState,
        down: bool,
    }

    impl DeltaSource for Flaky<'_> {
        fn version_high(&self, node: NodeId) -> u64 {
            self.state.version_high(node)
        }

        fn entries_since(
            &self,
            node: NodeId,
            after: u64,
            max: usize,
        ) -> Result<
            Vec<(crate::crdt::aggregate::Key, crate::crdt::aggregate::Entry)>,
            crate::sync::SourceUnavailable,
        > {
            if self.down {
                return Err(crate::sync::SourceUnavailable);
            }
            self.state.entries_since(node, after, max)
        }
    }

    #[test]
    fn an_unreadable_source_sends_nothing_rather_than_an_empty_delta() {
        let state = edge(20);
        let mut src = Flaky {
            state: &state,
            down: true,
        };
        let mut n = NodeSync::new(N, NodeConfig::default(), 0);
        let _hello = n.on_connect(0, &src);
        // The hub has nothing: a delta now would have to carry every entry.
        let out = n.on_message(resume(0), 0, &src).unwrap();
        assert!(out.is_empty(), "sent {out:?} while the source was down");
        assert!(n.on_tick(10, &src).is_empty());
        src.down = false;
        let out = n.on_tick(20, &src);
        let Some(Message::Delta(d)) = out.first() else {
            panic!("expected a delta once the source is back, got {out:?}");
        };
        assert_eq!(d.from, 0);
        assert_eq!(d.len(), state.node_entries_since(N, 0).len());
    }

    fn ack(upto: u64) -> Message {
        Message::Ack(Ack {
            node: N,
            upto,
            credit: None,
            alert: None,
        })
    }

    fn ranges(msgs: &[Message]) -> Vec<(u64, u64)> {
        msgs.iter()
            .map(|m| match m {
                Message::Delta(d) => (d.from, d.to),
                other => panic!("not a delta: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn resume_after_reconnect_sends_above_the_hub_watermark() {
        let src = edge(10); // versions 1..=40
        let mut n = NodeSync::new(N, NodeConfig::default(), 12);
        let hello = n.on_connect(0, &src);
        assert_eq!(
            hello,
            vec![Message::Hello(Hello {
                node: N,
                version_high: 40,
                digest: None
            })]
        );
        // One round trip later the data flows, from the hub's watermark.
        let out = n.on_message(resume(20), 1, &src).unwrap();
        assert_eq!(ranges(&out), vec![(20, 40)]);
        assert_eq!(n.acked(), 20);
        assert!(n.on_message(ack(40), 2, &src).unwrap().is_empty());
        assert!(n.is_synced(&src));
    }

    #[test]
    fn a_resume_below_the_acked_watermark_mid_session_rewinds_to_it() {
        let src = edge(10); // versions 1..=40
        let mut n = NodeSync::new(N, NodeConfig::default(), 0);
        n.on_connect(0, &src);
        n.on_message(resume(0), 1, &src).unwrap();
        n.on_message(ack(40), 2, &src).unwrap();
        assert!(n.is_synced(&src));
        // The hub restarts from an old backup behind a broker that kept the
        // node's connection; the heartbeat's Resume tells.
        let out = n.on_message(resume(15), 3, &src).unwrap();
        assert_eq!(ranges(&out), vec![(15, 40)]);
        assert!(n.is_streaming());
        // A Resume at or above the watermark is still just an ack.
        assert!(n.on_message(resume(40), 4, &src).unwrap().is_empty());
    }

    #[test]
    fn batches_respect_bytes_window_and_cover_contiguously() {
        let src = edge(200); // 800 versions
        let cfg = NodeConfig {
            max_batch_bytes: 1_000,
            window: 3,
            ..NodeConfig::default()
        };
        let mut n = NodeSync::new(N, cfg, 0);
        n.on_connect(0, &src);
        let out = n.on_message(resume(0), 0, &src).unwrap();
        assert_eq!(out.len(), 3);
        let mut prev = 0;
        for m in &out {
            assert!(v1::encode(m).len() <= 1_000);
            let Message::Delta(d) = m else { panic!() };
            assert_eq!(d.from, prev);
            // Every entry of the node in (from, to] is in the batch.
            let want = src
                .node_entries_since(N, d.from)
                .into_iter()
                .filter(|(_, e)| e.version <= d.to)
                .count();
            assert_eq!(d.len(), want);
            prev = d.to;
        }
        for m in &out {
            assert_eq!(v1::encoded_len(m), v1::encode(m).len());
        }
        let more = n.on_message(ack(prev), 1, &src).unwrap();
        assert_eq!(more.len(), 3, "an ack frees the whole window");
    }

    #[test]
    fn credit_limits_bytes_in_flight() {
        let src = edge(200);
        let mut n = NodeSync::new(N, NodeConfig::default(), 0);
        n.on_connect(0, &src);
        let out = n
            .on_message(
                Message::Resume(Resume {
                    node: N,
                    watermark: 0,
                    credit: Some(2_000),
                    repair: None,
                }),
                0,
                &src,
            )
            .unwrap();
        let sent: usize = out.iter().map(|m| v1::encode(m).len()).sum();
        assert!(!out.is_empty() && sent <= 2_000, "{sent}");
    }

    #[test]
    fn watermark_never_regresses_and_late_acks_are_ignored() {
        let src = edge(10);
        let mut n = NodeSync::new(N, NodeConfig::default(), 0);
        n.on_connect(0, &src);
        n.on_message(resume(0), 0, &src).unwrap();
        assert!(n.on_message(ack(40), 1, &src).unwrap().is_empty());
        assert!(n.on_message(ack(12), 2, &src).unwrap().is_empty());
        assert!(n.on_message(ack(40), 3, &src).unwrap().is_empty());
        assert_eq!(n.acked(), 40);
        // A hub that lost data resumes lower: the node re-sends, but its
        // acknowledged watermark stays.
        n.on_connect(4, &src);
        let out = n.on_message(resume(8), 5, &src).unwrap();
        assert_eq!(ranges(&out), vec![(8, 40)]);
        assert_eq!(n.acked(), 40);
    }

    #[test]
    fn lost_batch_and_lost_hello_are_resent_after_the_timeout() {
        let src = edge(10);
        let cfg = NodeConfig::default();
        let mut n = NodeSync::new(N, cfg, 0);
        n.on_connect(0, &src);
        assert!(n.on_tick(cfg.retransmit_after_ms - 1, &src).is_empty());
        let again = n.on_tick(cfg.retransmit_after_ms, &src);
        assert!(matches!(again.as_slice(), [Message::Hello(_)]));
        let t = cfg.retransmit_after_ms;
        let first = n.on_message(resume(0), t, &src).unwrap();
        assert!(n.on_tick(t + 1, &src).is_empty());
        assert_eq!(n.on_tick(t + cfg.retransmit_after_ms, &src), first);
    }

    #[test]
    fn messages_for_other_nodes_or_the_wrong_direction_are_refused() {
        let src = edge(1);
        let mut n = NodeSync::new(N, NodeConfig::default(), 0);
        let other = Message::Ack(Ack {
            node: NodeId(4),
            upto: 4,
            credit: None,
            alert: None,
        });
        assert_eq!(
            n.on_message(other, 0, &src).unwrap_err().reason(),
            "wrong_node"
        );
        let hello = Message::Hello(Hello {
            node: N,
            version_high: 0,
            digest: None,
        });
        assert_eq!(
            n.on_message(hello, 0, &src),
            Err(SyncError::UnexpectedMessage("hello"))
        );
        n.on_connect(0, &src);
        assert_eq!(
            n.on_message(resume(9), 0, &src),
            Err(SyncError::ResumeAhead {
                watermark: 9,
                version_high: 4
            })
        );
    }
}
