//! The hub's sync shell: MQTT in, durable merge, `Resume`/`Ack` out
//! (docs/protocol.md, "A session"; DESIGN.md §5–6).
//!
//! Entry point: [`run`]. One task owns the hub's rumqttc client and event
//! loop. It subscribes to every node's `hello`, `delta` and `alert` topics
//! and feeds what arrives to the core's [`HubSync`], which decides the
//! answers; the merge itself goes to the store's writer actor.
//!
//! **Durability rule:** an answer (`Resume`, `Ack`) is published only after
//! everything it vouches for is committed. Deltas arriving within
//! `group_interval` of each other are merged in ONE transaction
//! ([`MergeGroup`]: one fsync for many nodes), each with the node's new
//! watermark and "last seen" in the same transaction; their answers wait
//! for that commit. While a commit runs, new arrivals form the next group.
//! If a commit fails, nothing it covered is acknowledged and the protocol
//! state is rebuilt from the durable watermarks: the nodes re-send after
//! their retransmission timeout, and the join makes the repeat harmless.
//!
//! **Input checks**, each counted in `tributary_hub_sync_rejected_total`
//! by reason and never merged: a topic that is not `tributary/v1/{node}/
//! {kind}`, an undecodable payload (the decoder's reason), a message whose
//! node differs from the topic's (`wrong_node`) or whose type does not
//! belong on the topic (`wrong_topic`), a delta that fails the store's
//! limits (the store's reason), an alert stamped more than 5 minutes ahead
//! of the hub's clock (`future_hlc`), and messages a hub never receives.
//!
//! Sessions are clean and nothing depends on the broker keeping state: a
//! hub that restarts rebuilds [`HubSync`] from the store's watermarks, and
//! nodes say `Hello` again when their session breaks.
//!
//! **Fleet configuration** (docs/fleet-config.md): `Config` messages on a
//! node's `config` topic go to the fleet document's actor
//! ([`FleetLink`]); what it answers is published as `Config` on the node's
//! `ack` topic, which the node already subscribes to, so neither side ever
//! receives its own publishes back (MQTT 3.1.1 has no "no local").

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::Addr;
use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use tokio::sync::watch;
use tributary_core::codec::v1::{self, Delta, Message};
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::ids::NodeId;
use tributary_core::sync::digest::Cell;
use tributary_core::sync::{HubConfig, HubSync, MergeSink};
use tributary_fleet::{FleetActor, FleetLink, Receive};

use crate::api::Health;
use crate::metrics::Metrics;
use crate::store::actor::{
    CellHashes, InsertAlerts, MergeGroup, NodeWatermark, OwnedBatch, Watermarks, Writer,
};
use crate::store::{MergeError, MergeOutcome, Progress, validate_batch};

/// Where the hub's MQTT client connects and how it merges.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (unique per hub replica).
    pub client_id: String,
    /// Optional credentials for the broker.
    pub credentials: Option<(String, String)>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Largest packet accepted from the broker, bytes.
    pub max_packet_bytes: usize,
    /// Deltas arriving within this long of the first one share a commit.
    pub group_interval: Duration,
    /// Most deltas in one commit.
    pub group_max_deltas: usize,
    /// Protocol limits (credit, out-of-order ranges remembered per node).
    pub hub: HubConfig,
    /// MQTT shared-subscription group (`$share/{group}/…`): several hub
    /// replicas sharing one store (PostgreSQL) split the nodes' messages
    /// between them. `None`: this hub gets every message.
    pub shared_group: Option<String>,
    /// Reconnect delays to the broker.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Connect over TLS with this configuration (an external broker's
    /// TLS listener); `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "tributary-hub".into(),
            credentials: None,
            keep_alive: Duration::from_secs(15),
            max_packet_bytes: 1024 * 1024,
            group_interval: Duration::from_millis(5),
            group_max_deltas: 256,
            hub: HubConfig::default(),
            shared_group: None,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// The kinds of topic a hub subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopicKind {
    Hello,
    Delta,
    Alert,
    Config,
}

/// `tributary/v1/{node}/{kind}` → (node, kind); `None` for anything else.
fn parse_topic(topic: &str) -> Option<(NodeId, TopicKind)> {
    let rest = topic.strip_prefix("tributary/v1/")?;
    let (node, kind) = rest.split_once('/')?;
    if node.len() != 16 {
        return None;
    }
    let node = NodeId(u64::from_str_radix(node, 16).ok()?);
    let kind = match kind {
        "hello" => TopicKind::Hello,
        "delta" => TopicKind::Delta,
        "alert" => TopicKind::Alert,
        "config" => TopicKind::Config,
        _ => return None,
    };
    Some((node, kind))
}

/// How far ahead of the hub's clock an alert's HLC may be (5 min, the
/// gateways' own tolerance for readings).
const MAX_ALERT_FUTURE_MS: u64 = 5 * 60_000;

/// The topic the hub answers `node` on.
pub fn ack_topic(node: NodeId) -> String {
    format!("tributary/v1/{node}/ack")
}

/// Collects the entries of the deltas `HubSync` accepts, for one commit,
/// and answers a `Hello`'s digest from hashes read from the store first.
#[derive(Default)]
struct Collect(Vec<(Key, Entry)>, HashMap<Cell, u64>);

impl MergeSink for Collect {
    fn join_delta(&mut self, _node: NodeId, d: &Delta) {
        self.0.extend(d.entries());
    }

    fn cell_hash(&self, _node: NodeId, cell: Cell) -> Option<u64> {
        self.1.get(&cell).copied()
    }
}

type Commit = Pin<Box<dyn Future<Output = Result<Vec<MergeOutcome>, MergeError>>>>;

/// A merge transaction being filled: batches and the answers that wait
/// for it.
#[derive(Default)]
struct Group {
    batches: Vec<OwnedBatch>,
    answers: Vec<Message>,
    deltas: usize,
    opened: Option<tokio::time::Instant>,
}

struct Shell {
    opts: SyncOptions,
    client: AsyncClient,
    writer: Addr<Writer>,
    metrics: Metrics,
    health: Arc<Health>,
    hub: HubSync,
    /// Arrivals since the last commit started.
    filling: Group,
    /// The answers of the commit in flight.
    committing: Option<(Vec<Message>, Commit)>,
    fleet: Option<Addr<FleetActor>>,
    /// Publishes the client's request queue had no room for.
    unsent: VecDeque<Message>,
    connected: bool,
}

/// Why the shell could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncShellError {
    /// The durable watermarks could not be read.
    #[error("cannot read the node watermarks: {0}")]
    Store(#[from] MergeError),
    /// The writer actor is gone.
    #[error("the store writer is not running")]
    Mailbox,
}

/// Runs the sync shell until `shutdown`; see the [module docs](self).
pub async fn run(
    opts: SyncOptions,
    writer: Addr<Writer>,
    metrics: Metrics,
    health: Arc<Health>,
    fleet: Option<FleetLink>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SyncShellError> {
    let watermarks = writer
        .send(Watermarks)
        .await
        .map_err(|_| SyncShellError::Mailbox)??;
    tracing::info!(nodes = watermarks.len(), "sync state restored");
    let hub = HubSync::restore(opts.hub, watermarks);
    let mut mqtt = rumqttc::MqttOptions::new(&opts.client_id, &opts.host, opts.port);
    mqtt.set_keep_alive(opts.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(opts.max_packet_bytes, opts.max_packet_bytes);
    if let Some((u, p)) = &opts.credentials {
        mqtt.set_credentials(u, p);
    }
    if let Some(tls) = &opts.tls {
        mqtt.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, 1024);
    let broker = format!("{}:{}", opts.host, opts.port);
    let (fleet, mut fleet_out) = match fleet {
        Some(FleetLink { actor, out }) => (Some(actor), Some(out)),
        None => (None, None),
    };
    let mut sh = Shell {
        fleet,
        opts,
        client,
        writer,
        metrics,
        health,
        hub,
        filling: Group::default(),
        committing: None,
        unsent: VecDeque::new(),
        connected: false,
    };
    let mut delay = sh.opts.reconnect_min;
    tracing::info!(broker = %broker, "hub sync connecting");
    loop {
        sh.flush_unsent();
        if sh.committing.is_none() && sh.group_due() {
            sh.start_commit();
        }
        // A group waits for its interval only while no commit runs (the
        // commit's end starts the next one).
        let group_deadline = sh
            .filling
            .opened
            .filter(|_| sh.committing.is_none())
            .map(|t| t + sh.opts.group_interval);
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            res = async {
                match sh.committing.as_mut() {
                    Some((_, fut)) => fut.await,
                    None => std::future::pending().await,
                }
            } => sh.committed(res).await,
            _ = async {
                match group_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            } => sh.start_commit(),
            Some((node, sync)) = async {
                match fleet_out.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                // Not connected: dropped like any answer of a dead
                // connection; the node starts a new round when it is back.
                sh.publish(Message::Config(v1::ConfigSync { node, sync: sync.into() }));
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    delay = sh.opts.reconnect_min;
                    let share = sh.opts.shared_group.as_ref().map_or(String::new(), |g| format!("$share/{g}/"));
                    let filters = ["hello", "delta", "alert", "config"]
                        .map(|k| SubscribeFilter::new(format!("{share}tributary/v1/+/{k}"), QoS::AtLeastOnce));
                    if let Err(e) = sh.client.try_subscribe_many(filters) {
                        tracing::error!(error = %e, "hub subscribe request failed");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        tracing::error!(broker = %broker, "broker refused the hub's subscriptions");
                    } else {
                        sh.connected = true;
                        sh.metrics.mqtt_connected.set(1);
                        sh.health.mqtt_connected.store(true, Ordering::Relaxed);
                        tracing::info!(broker = %broker, "hub sync connected");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => sh.received(&p.topic, &p.payload).await,
                Ok(_) => {}
                Err(e) => {
                    if sh.connected {
                        tracing::warn!(broker = %broker, error = %e, "hub lost the broker");
                    } else {
                        tracing::debug!(broker = %broker, error = %e, "hub cannot reach the broker");
                    }
                    sh.connected = false;
                    sh.metrics.mqtt_connected.set(0);
                    sh.health.mqtt_connected.store(false, Ordering::Relaxed);
                    // Answers for the dead connection's messages are moot:
                    // the nodes start over with Hello.
                    sh.unsent.clear();
                    tokio::select! {
                        biased;
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(sh.opts.reconnect_max);
                }
            },
        }
    }
    // Finish the commit in flight and the group being filled, so that what
    // was received is merged (answers are moot: nodes re-send anyway).
    if let Some((_, fut)) = sh.committing.take() {
        let _ = fut.await;
    }
    if !sh.filling.batches.is_empty() {
        sh.start_commit();
        if let Some((_, fut)) = sh.committing.take() {
            let _ = fut.await;
        }
    }
    if sh.connected {
        tributary_service::mqtt_disconnect(&sh.client, &mut eventloop).await;
    }
    tracing::info!("hub sync stopped");
    Ok(())
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Shell {
    fn reject(&self, reason: &'static str, topic: &str) {
        self.metrics
            .sync_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
        tracing::warn!(topic, reason, "sync message rejected");
    }

    async fn received(&mut self, topic: &str, payload: &[u8]) {
        let Some((node, kind)) = parse_topic(topic) else {
            self.reject("bad_topic", topic);
            return;
        };
        let msg = match v1::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                self.reject(e.reason(), topic);
                return;
            }
        };
        if msg.node() != node {
            // A node may only speak for itself (DESIGN.md §5).
            self.reject("wrong_node", topic);
            return;
        }
        let label = match (&msg, kind) {
            (Message::Hello(_), TopicKind::Hello) => "hello",
            (Message::Delta(_), TopicKind::Delta) => "delta",
            (Message::Alert(_), TopicKind::Alert) => "alert",
            (Message::Config(_), TopicKind::Config) => "config",
            _ => {
                self.reject("wrong_topic", topic);
                return;
            }
        };
        self.metrics
            .sync_messages
            .get_or_create(&[("kind", label)])
            .inc();
        let now = now_ms();
        if self.opts.shared_group.is_some() {
            // Other replicas merge part of this node's stream: learn what
            // they made durable before answering a Hello (its Resume) or
            // a delta beyond this hub's own watermark (its Ack).
            let behind = match &msg {
                Message::Hello(_) => true,
                Message::Delta(d) => d.from > self.hub.watermark(node),
                _ => false,
            };
            if behind {
                self.refresh_watermark(node).await;
            }
        }
        match msg {
            Message::Alert(a) => self.alert(node, a, now).await,
            Message::Config(c) => self.config(node, c.sync.into()),
            Message::Delta(d) => {
                let entries: Vec<(Key, Entry)> = d.entries().collect();
                let progress = Progress {
                    seen_ms: now,
                    watermark: d.to,
                };
                if let Err(e) = validate_batch(&entries, Some(&progress)) {
                    self.reject(e.reason(), topic);
                    return;
                }
                let mut sink = Collect::default();
                match self.hub.on_message(node, Message::Delta(d), now, &mut sink) {
                    Ok(answers) => {
                        let progress = Progress {
                            seen_ms: now,
                            watermark: self.hub.watermark(node),
                        };
                        self.enqueue(node, sink.0, progress, answers);
                    }
                    Err(e) => self.reject(e.reason(), topic),
                }
            }
            hello => {
                // Read first: `HubSync` compares the digest without I/O.
                let mut sink = self.digest_hashes(node, &hello).await;
                match self.hub.on_message(node, hello, now, &mut sink) {
                    Ok(answers) => {
                        let repairs = answers.iter().map(|m| match m {
                            Message::Resume(r) => r.repair.as_ref().map_or(0, Vec::len),
                            _ => 0,
                        });
                        let repairs: usize = repairs.sum();
                        if repairs > 0 {
                            self.metrics.repair_requests.inc_by(repairs as u64);
                            tracing::warn!(%node, cells = repairs,
                                "the store lacks data it acknowledged: asking the node to re-send");
                        }
                        // The Resume names the watermark: it waits for the
                        // commit of anything that advanced it. "Last seen"
                        // rides along in the same transaction.
                        let progress = Progress {
                            seen_ms: now,
                            watermark: self.hub.watermark(node),
                        };
                        self.enqueue(node, Vec::new(), progress, answers);
                    }
                    Err(e) => self.reject(e.reason(), topic),
                }
            }
        }
    }

    /// The store's hashes of the cells in `hello`'s digest (none if it has
    /// none, or the store cannot be read: the cells are then not compared,
    /// and the node offers them again on a later round).
    async fn digest_hashes(&self, node: NodeId, hello: &Message) -> Collect {
        let mut sink = Collect::default();
        let Message::Hello(h) = hello else {
            return sink;
        };
        let cells: Vec<Cell> = h
            .digest
            .iter()
            .flatten()
            .take(self.opts.hub.max_digest_cells)
            .map(Cell::from)
            .collect();
        if cells.is_empty() {
            return sink;
        }
        match self
            .writer
            .send(CellHashes {
                node,
                cells: cells.clone(),
            })
            .await
        {
            Ok(Ok(hashes)) => sink.1 = cells.into_iter().zip(hashes).collect(),
            Ok(Err(e)) => tracing::warn!(error = %e, "reading anti-entropy hashes failed"),
            Err(_) => tracing::warn!("store writer unreachable"),
        }
        sink
    }

    async fn refresh_watermark(&mut self, node: NodeId) {
        match self.writer.send(NodeWatermark(node)).await {
            Ok(Ok(w)) => self.hub.observe_durable(node, w),
            Ok(Err(e)) => tracing::warn!(error = %e, "reading a node's durable watermark failed"),
            Err(_) => tracing::warn!("store writer unreachable"),
        }
    }

    fn enqueue(
        &mut self,
        node: NodeId,
        entries: Vec<(Key, Entry)>,
        progress: Progress,
        answers: Vec<Message>,
    ) {
        let g = &mut self.filling;
        g.opened.get_or_insert_with(tokio::time::Instant::now);
        g.deltas += 1;
        g.batches.push(OwnedBatch {
            node,
            entries,
            progress: Some(progress),
        });
        g.answers.extend(answers);
    }

    fn group_due(&self) -> bool {
        self.filling.deltas >= self.opts.group_max_deltas.max(1)
    }

    fn start_commit(&mut self) {
        if self.committing.is_some() || self.filling.batches.is_empty() {
            return;
        }
        let g = std::mem::take(&mut self.filling);
        let writer = self.writer.clone();
        let fut: Commit = Box::pin(async move {
            match writer.send(MergeGroup { batches: g.batches }).await {
                Ok(r) => r,
                Err(_) => Err(MergeError::Corrupt("store writer stopped")),
            }
        });
        self.committing = Some((g.answers, fut));
    }

    async fn committed(&mut self, res: Result<Vec<MergeOutcome>, MergeError>) {
        let Some((answers, _)) = self.committing.take() else {
            return;
        };
        match res {
            Ok(_) => {
                self.health.store_ok.store(true, Ordering::Relaxed);
                for a in answers {
                    self.publish(a);
                }
                // Answers that arrived during the commit without a batch of
                // their own (alert acks) needed only this commit.
                if self.filling.batches.is_empty() {
                    for a in std::mem::take(&mut self.filling.answers) {
                        self.publish(a);
                    }
                }
            }
            Err(e) => {
                self.health.store_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, reason = e.reason(), dropped_answers = answers.len(),
                    "merge commit failed: nothing it covered is acknowledged");
                // The in-memory watermarks ran ahead of what is durable;
                // start again from the store's (and drop the next group's
                // answers too: they may vouch for the failed one).
                self.filling.answers.clear();
                match self.writer.send(Watermarks).await {
                    Ok(Ok(w)) => self.hub = HubSync::restore(self.opts.hub, w),
                    _ => {
                        self.hub = HubSync::restore(self.opts.hub, std::iter::empty());
                    }
                }
            }
        }
    }

    async fn alert(&mut self, node: NodeId, alert: v1::Alert, now: u64) {
        let hlc = alert.hlc;
        // A node's clock may run a little ahead; an alert stamped far in
        // the future would sort above every real one for as long as it is
        // stored (alerts are listed newest first), so it is refused.
        if hlc.physical_ms() > now.saturating_add(MAX_ALERT_FUTURE_MS) {
            self.reject("future_hlc", "alert");
            return;
        }
        match self
            .writer
            .send(InsertAlerts {
                node,
                alerts: vec![alert],
                received_ms: now,
            })
            .await
        {
            Ok(Ok(_)) => {
                // The ack carries the watermark too: it waits for the
                // group in progress like any answer.
                let ack = self.hub.alert_ack(node, hlc, now);
                if self.filling.batches.is_empty() && self.committing.is_none() {
                    self.publish(ack);
                } else {
                    self.filling.answers.push(ack);
                }
            }
            Ok(Err(e)) if e.is_rejection() => self.reject(e.reason(), "alert"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storing an alert failed; the node re-sends it")
            }
            Err(_) => tracing::error!("store writer unreachable; the node re-sends the alert"),
        }
    }

    /// Hands a fleet sync message to the document's actor; refusals are
    /// counted there (`tributary_hub_config_sync_rejected_total`).
    fn config(&mut self, node: NodeId, bytes: Vec<u8>) {
        let Some(fleet) = &self.fleet else {
            self.reject("config_disabled", "config");
            return;
        };
        if fleet.try_send(Receive { from: node, bytes }).is_err() {
            // The actor is busy (a large first sync): the node's round
            // stalls and starts again after its timeout.
            self.metrics
                .fleet
                .rejected
                .get_or_create(&[("reason", "busy")])
                .inc();
        }
    }

    fn publish(&mut self, m: Message) {
        self.unsent.push_back(m);
        self.flush_unsent();
    }

    fn flush_unsent(&mut self) {
        if !self.connected {
            return;
        }
        while let Some(m) = self.unsent.pop_front() {
            let bytes = v1::encode(&m);
            if self
                .client
                .try_publish(ack_topic(m.node()), QoS::AtLeastOnce, false, bytes)
                .is_err()
            {
                self.unsent.push_front(m);
                self.metrics.publish_failed.inc();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_only_in_the_documented_shape() {
        assert_eq!(
            parse_topic("tributary/v1/00000000000000ab/delta"),
            Some((NodeId(0xab), TopicKind::Delta))
        );
        for bad in [
            "tributary/v1/ab/delta",
            "tributary/v1/00000000000000ab/ack",
            "tributary/v1/00000000000000ab/configs",
            "tributary/v2/00000000000000ab/delta",
            "tributary/v1/zz000000000000ab/hello",
            "tributary/v1/00000000000000ab",
        ] {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
        assert_eq!(ack_topic(NodeId(1)), "tributary/v1/0000000000000001/ack");
    }
}
