//! The uplink: the gateway's side of the edge ↔ hub sync over MQTT
//! (docs/protocol.md, "A session"; DESIGN.md §6).
//!
//! Entry point: [`run`] with [`UplinkOptions`] (`[uplink]` in the
//! configuration). One task owns the rumqttc `AsyncClient` + `EventLoop`
//! (the SyncAgent); it only moves bytes and reports events:
//!
//! - The protocol state ([`NodeSync`](tributary_core::sync::NodeSync)) lives
//!   in the store actor, which owns the outbox it reads; every event goes
//!   there as a [`SyncStep`] and the answer lists the messages to publish.
//!   The hub's acknowledged watermark is persisted by the store actor
//!   before the answer comes back.
//! - Connectivity follows the core's [`Link`]: online, offline, backing off
//!   with full-jitter exponential delays, and a circuit breaker. Its state
//!   and the time offline are in [`UplinkStatus`] (the status API) and in
//!   `tributary_uplink_state` / `tributary_uplink_offline_seconds`.
//! - MQTT sessions are clean: correctness never depends on the broker
//!   keeping anything. After every CONNACK the agent subscribes to its
//!   `…/{node}/ack` topic and, once the SUBACK is in, says `Hello`.
//! - Alerts go first: when the hub's `Resume` arrives, pending alerts are
//!   published before the deltas it releases. Each alert is re-sent until
//!   an `Ack` naming it arrives; the outbox then forgets alerts up to the
//!   highest id acknowledged without a gap.
//! - Publishes the client's request queue has no room for wait in a local
//!   queue and are retried each turn; dropping one would only cost a
//!   retransmission timeout, but there is no reason to.
//! - Fleet configuration (docs/fleet-config.md): the document's actor
//!   ([`FleetLink`]) is told when a session starts; its messages go out on
//!   `…/{node}/config`, and `Config` messages from the hub arrive on the
//!   `ack` topic (so the gateway never receives its own publishes back).
//!   While offline its messages are dropped: each session starts a new
//!   round.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeReasonCode};
use tokio::sync::watch;
use tributary_core::codec::v1::{self, Message};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution};
use tributary_core::sync::NodeConfig;
use tributary_core::sync::link::{Link, LinkConfig, LinkState};

use tributary_fleet::FleetLink;

use crate::metrics::Metrics;
use crate::sources::{duration_str, stopped, wall_now};
use crate::store::actor::{AckAlerts, PendingAlerts, StoreActor, SyncEvent, SyncOutput, SyncStep};

/// Options of the uplink to the hub (`[uplink]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkOptions {
    /// The hub's MQTT broker host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// MQTT client id; empty: `tributary-edge-{node}`.
    pub client_id: String,
    /// MQTT username; empty: the node id (16 hex digits), which is what
    /// the hub's embedded broker expects when it checks node logins.
    pub username: String,
    /// MQTT password; empty: none sent (an open broker).
    pub password: Secret,
    /// MQTT over TLS: the PEM file of the CA that signed the broker's
    /// certificate (the fleet's own CA; `host` must match the certificate).
    /// Empty: plain TCP.
    pub tls_ca: String,
    /// MQTT keep-alive (at least 1 s): how soon a silent, dead connection
    /// is noticed.
    #[serde(with = "duration_str")]
    pub keep_alive: Duration,
    /// The finest bucket resolution sent to the hub: `1s`, `1m` (the
    /// default), `1h` or `1d`. Coarser ones are always sent; finer ones
    /// stay on the gateway (its API serves them). Measured on a 24 h
    /// backlog of 100 sensors at 1 Hz (docs/benchmarks.md): with 1 s
    /// buckets the sync costs 0.39× the bytes of one JSON message per
    /// reading (each 1 s bucket holds one reading), without them 0.007×.
    #[serde(with = "resolution_str")]
    pub finest_resolution: Resolution,
    /// Largest encoded delta, bytes.
    pub max_batch_bytes: usize,
    /// Most entries per delta.
    pub max_batch_entries: usize,
    /// Most unacknowledged deltas in flight.
    pub window: usize,
    /// A delta, hello or alert unanswered this long is sent again.
    #[serde(with = "duration_str")]
    pub retransmit_after: Duration,
    /// How often the outbox is checked for new entries while connected.
    #[serde(with = "duration_str")]
    pub tick: Duration,
    /// An idle session says `Hello` this often, so the hub's "last seen"
    /// (its online/offline view of the fleet) stays fresh; the `Resume`
    /// answer doubles as an ack.
    #[serde(with = "duration_str")]
    pub heartbeat: Duration,
    /// How often a session offers the hub an anti-entropy digest (a
    /// `Hello` with the next `digest_cells` cells of the node's history;
    /// docs/protocol.md, "Anti-entropy"), so a hub that lost rows it had
    /// acknowledged gets them again.
    #[serde(with = "duration_str")]
    pub digest_interval: Duration,
    /// Cells (sensor × day) per digest; 0 turns anti-entropy off. At most
    /// the hub's limit (256).
    pub digest_cells: usize,
    /// Cap of the first reconnect delay (full jitter below it).
    #[serde(with = "duration_str")]
    pub backoff_initial: Duration,
    /// Cap of any reconnect delay.
    #[serde(with = "duration_str")]
    pub backoff_max: Duration,
    /// Growth of the cap per failed attempt.
    pub backoff_multiplier: f64,
    /// Failed attempts in a row that open the circuit breaker (0: never).
    pub breaker_failures: u32,
    /// How long an open breaker rests the link.
    #[serde(with = "duration_str")]
    pub breaker_open: Duration,
    /// Largest MQTT packet accepted from the broker, bytes.
    pub max_packet_bytes: usize,
}

impl Default for UplinkOptions {
    fn default() -> Self {
        let node = NodeConfig::default();
        let link = LinkConfig::default();
        UplinkOptions {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            username: String::new(),
            password: Secret::default(),
            tls_ca: String::new(),
            keep_alive: Duration::from_secs(15),
            finest_resolution: Resolution::Minute,
            max_batch_bytes: node.max_batch_bytes,
            max_batch_entries: node.max_batch_entries,
            window: node.window,
            retransmit_after: Duration::from_millis(node.retransmit_after_ms),
            tick: Duration::from_millis(250),
            heartbeat: Duration::from_secs(20),
            digest_interval: Duration::from_secs(60),
            digest_cells: node.digest_cells,
            backoff_initial: Duration::from_millis(link.initial_ms),
            backoff_max: Duration::from_millis(link.max_ms),
            backoff_multiplier: link.multiplier,
            breaker_failures: link.breaker_failures,
            breaker_open: Duration::from_millis(link.breaker_open_ms),
            max_packet_bytes: 1024 * 1024,
        }
    }
}

/// A configured secret: read from the config, never printed (`Debug`
/// shows `***`).
#[derive(Clone, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// Why the uplink cannot run.
#[derive(Debug, thiserror::Error)]
#[error("invalid [uplink] configuration: {0}")]
pub struct UplinkError(pub String);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl UplinkOptions {
    /// Checks every option (all problems at once); rumqttc panics on some
    /// invalid settings, so they are refused here first.
    pub fn validate(&self) -> Result<(), UplinkError> {
        let mut p = Vec::new();
        if self.host.is_empty() {
            p.push("host is empty".to_owned());
        }
        if self.keep_alive < Duration::from_secs(1) {
            p.push("keep_alive must be at least 1s".to_owned());
        }
        if !(128..=v1::MAX_MESSAGE).contains(&self.max_batch_bytes) {
            p.push(format!(
                "max_batch_bytes must be in 128..={}",
                v1::MAX_MESSAGE
            ));
        }
        if self.max_batch_entries == 0 || self.window == 0 {
            p.push("max_batch_entries and window must be at least 1".to_owned());
        }
        if self.retransmit_after.is_zero()
            || self.tick.is_zero()
            || self.heartbeat.is_zero()
            || self.digest_interval.is_zero()
        {
            p.push(
                "retransmit_after, tick, heartbeat and digest_interval must be above 0".to_owned(),
            );
        }
        if !self.tls_ca.is_empty()
            && let Err(e) = tributary_service::tls::client_config(self.tls_ca.as_ref())
        {
            p.push(format!("tls_ca: {e}"));
        }
        if self.digest_cells > 256 {
            p.push("digest_cells must be at most 256 (the hub compares no more)".to_owned());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            p.push("need 0 < backoff_initial <= backoff_max".to_owned());
        }
        if !(self.backoff_multiplier >= 1.0 && self.backoff_multiplier.is_finite()) {
            p.push("backoff_multiplier must be a finite number >= 1".to_owned());
        }
        if self.max_packet_bytes < self.max_batch_bytes.max(1024) {
            p.push("max_packet_bytes must be at least max_batch_bytes (and 1024)".to_owned());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(UplinkError(p.join("; ")))
        }
    }

    /// The protocol limits for [`NodeSync`](tributary_core::sync::NodeSync).
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig {
            max_batch_bytes: self.max_batch_bytes,
            max_batch_entries: self.max_batch_entries,
            window: self.window,
            retransmit_after_ms: ms(self.retransmit_after),
            digest_cells: self.digest_cells,
        }
    }

    /// The reconnect policy for [`Link`].
    pub fn link_config(&self) -> LinkConfig {
        LinkConfig {
            initial_ms: ms(self.backoff_initial),
            max_ms: ms(self.backoff_max),
            multiplier: self.backoff_multiplier,
            breaker_failures: self.breaker_failures,
            breaker_open_ms: ms(self.breaker_open),
        }
    }
}

/// The topic a node publishes `kind` messages on (DESIGN.md §6).
pub fn topic(node: NodeId, kind: &str) -> String {
    format!("tributary/v1/{node}/{kind}")
}

/// What the status API shows about the uplink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UplinkSnapshot {
    /// `not_configured`, `online`, `offline`, `backing_off`, `circuit_open`.
    pub state: &'static str,
    /// Whether a sync session is established (the hub answered `Hello`).
    pub streaming: bool,
    /// Milliseconds since the link went down (0 when online).
    pub offline_ms: u64,
    /// When the next connection attempt may start (ms since the epoch),
    /// while backing off.
    pub next_attempt_ms: Option<u64>,
    /// The broker, `host:port`.
    pub broker: String,
    /// The hub's acknowledged watermark.
    pub acked: u64,
    /// The node's highest version.
    pub version_high: u64,
}

/// The uplink's state, shared with the status API.
#[derive(Debug)]
pub struct UplinkStatus(Mutex<UplinkSnapshot>);

impl Default for UplinkStatus {
    fn default() -> Self {
        UplinkStatus(Mutex::new(UplinkSnapshot {
            state: "not_configured",
            streaming: false,
            offline_ms: 0,
            next_attempt_ms: None,
            broker: String::new(),
            acked: 0,
            version_high: 0,
        }))
    }
}

impl UplinkStatus {
    /// The current state.
    pub fn snapshot(&self) -> UplinkSnapshot {
        match self.0.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut UplinkSnapshot)) {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

/// An alert published and not yet acknowledged, in outbox-id order.
#[derive(Debug, Clone, Copy)]
struct AlertInFlight {
    id: i64,
    hlc: Hlc,
    sent_ms: u64,
    acked: bool,
}

/// Most alerts in flight at once.
const ALERT_WINDOW: usize = 16;

/// The agent's connection-scoped state.
struct Agent {
    node: NodeId,
    opts: UplinkOptions,
    client: AsyncClient,
    store: Addr<StoreActor>,
    metrics: Metrics,
    status: Arc<UplinkStatus>,
    link: Link,
    /// The MQTT connection is up and the ack topic subscribed.
    ready: bool,
    /// The store actor's session epoch seen at connect.
    epoch: u64,
    alerts: Vec<AlertInFlight>,
    /// The store actor restarted under a live session.
    lost_session: bool,
    /// Publishes the client's queue had no room for, oldest first.
    unsent: VecDeque<(String, Vec<u8>)>,
    /// When anything was last published (for the heartbeat).
    last_publish_ms: u64,
    /// When the last anti-entropy round started.
    last_digest_ms: u64,
    /// The node's highest version, as last reported by the store.
    version_high: u64,
    fleet: Option<Addr<tributary_fleet::FleetActor>>,
}

/// Runs the uplink until `shutdown`; see the [module docs](self).
pub async fn run(
    opts: UplinkOptions,
    node: NodeId,
    store: Addr<StoreActor>,
    metrics: Metrics,
    status: Arc<UplinkStatus>,
    fleet: Option<FleetLink>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), UplinkError> {
    opts.validate()?;
    let broker = format!("{}:{}", opts.host, opts.port);
    let client_id = if opts.client_id.is_empty() {
        format!("tributary-edge-{node}")
    } else {
        opts.client_id.clone()
    };
    let mut mqtt = rumqttc::MqttOptions::new(client_id, &opts.host, opts.port);
    if !opts.tls_ca.is_empty() {
        // Checked by `validate` above; read again here, as the file is
        // small and the uplink starts once.
        let tls = tributary_service::tls::client_config(opts.tls_ca.as_ref())
            .map_err(|e| UplinkError(format!("tls_ca: {e}")))?;
        mqtt.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
        ));
    }
    if !opts.password.0.is_empty() || !opts.username.is_empty() {
        let user = if opts.username.is_empty() {
            node.to_string()
        } else {
            opts.username.clone()
        };
        mqtt.set_credentials(user, opts.password.0.clone());
    }
    mqtt.set_keep_alive(opts.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(opts.max_packet_bytes, opts.max_packet_bytes);
    let (client, mut eventloop) = AsyncClient::new(mqtt, 256);
    let (fleet, mut fleet_out) = match fleet {
        Some(FleetLink { actor, out }) => (Some(actor), Some(out)),
        None => (None, None),
    };
    // The node id seeds the jitter: gateways that lost the hub together
    // spread their retries differently, and a replay is reproducible.
    let link = Link::starting_at(opts.link_config(), node.0 ^ 0x5bd1_e995, now());
    let mut agent = Agent {
        node,
        opts,
        client,
        store,
        metrics,
        status,
        link,
        ready: false,
        epoch: 0,
        alerts: Vec::new(),
        lost_session: false,
        unsent: VecDeque::new(),
        last_publish_ms: 0,
        last_digest_ms: now(),
        version_high: 0,
        fleet,
    };
    agent.status.update(|s| s.broker = broker.clone());
    agent.publish_state(now());
    let mut tick = tokio::time::interval(agent.opts.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(broker = %broker, node = %node, "uplink starting");

    loop {
        agent.flush_unsent();
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            _ = tick.tick() => {
                agent.publish_state(now());
                if agent.ready && agent.lost_session {
                    agent.connect().await;
                } else if agent.ready {
                    agent.step(SyncEvent::Tick).await;
                    agent.alerts_tick().await;
                    agent.heartbeat();
                    agent.digest().await;
                } else {
                    // Offline: nothing to send, but the status keeps
                    // showing how far behind the hub is.
                    agent.step(SyncEvent::Tick).await;
                }
            }
            Some((_, sync)) = async {
                match fleet_out.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if agent.ready {
                    let node = agent.node;
                    agent.publish(&Message::Config(v1::ConfigSync { node, sync: sync.into() }));
                }
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let t = now();
                    agent.link.on_connected(t);
                    agent.publish_state(t);
                    tracing::info!(broker = %broker, "uplink connected");
                    if let Err(e) = agent.client.try_subscribe(topic(node, "ack"), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "uplink subscribe request failed");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        // Without the ack topic no session can work; the
                        // broker's ACL is wrong. Retry after a backoff.
                        tracing::error!(broker = %broker, "broker refused the ack topic subscription");
                        let _ = agent.client.try_disconnect();
                    } else {
                        agent.ready = true;
                        agent.connect().await;
                        if let Some(f) = &agent.fleet
                            && f.try_send(tributary_fleet::Connected { peer: tributary_fleet::HUB }).is_err()
                        {
                            tracing::warn!("fleet configuration actor busy: its sync starts at its next check");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => agent.received(&p.payload).await,
                Ok(_) => {}
                Err(e) => {
                    let t = now();
                    if agent.ready || matches!(agent.link.state(), LinkState::Online { .. }) {
                        agent.link.on_disconnected(t);
                        agent.step(SyncEvent::Disconnect).await;
                        tracing::warn!(broker = %broker, error = %e, "uplink lost");
                    } else {
                        agent.link.on_attempt_failed(t);
                        tracing::debug!(broker = %broker, error = %e, "uplink connect failed");
                    }
                    agent.ready = false;
                    // Whatever was queued belonged to the dead connection;
                    // the session starts over with a Hello.
                    agent.unsent.clear();
                    agent.publish_state(t);
                    let wait = agent
                        .link
                        .next_attempt_ms()
                        .map_or(0, |at| at.saturating_sub(t));
                    tokio::select! {
                        biased;
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    }
                }
            },
        }
    }
    if agent.ready {
        tributary_service::mqtt_disconnect(&agent.client, &mut eventloop).await;
    }
    tracing::info!(broker = %broker, "uplink stopped");
    Ok(())
}

fn now() -> u64 {
    wall_now().as_millis()
}

impl Agent {
    /// Starts a session: `Hello` (through the store's state machine).
    async fn connect(&mut self) {
        self.alerts.clear();
        self.lost_session = false;
        let cfg = self.opts.node_config();
        let finest = self.opts.finest_resolution;
        if let Some(out) = self.step(SyncEvent::Connect(cfg, finest)).await {
            self.epoch = out.epoch;
        }
    }

    /// Feeds one event to the store's state machine and publishes what it
    /// answers. `None` if the store could not answer (counted, logged by
    /// the store; the next tick tries again).
    async fn step(&mut self, event: SyncEvent) -> Option<SyncOutput> {
        let connect = matches!(event, SyncEvent::Connect(..));
        let out = match self
            .store
            .send(SyncStep {
                event,
                now_ms: now(),
            })
            .await
        {
            Ok(Ok(out)) => out,
            Ok(Err(_)) => return None,
            Err(e) => {
                tracing::error!(error = %e, "store unreachable from the uplink");
                return None;
            }
        };
        if out.repaired_cells > 0 {
            self.metrics
                .sync_repaired_cells
                .inc_by(out.repaired_cells as u64);
        }
        if let Some(e) = &out.refused {
            self.metrics
                .sync_rejected
                .get_or_create(&[("reason", e.reason())])
                .inc();
            tracing::error!(error = %e, "hub message refused");
        }
        self.version_high = out.version_high;
        self.status.update(|s| {
            s.streaming = out.streaming;
            s.acked = out.acked;
            s.version_high = out.version_high;
        });
        for m in &out.send {
            self.publish(m);
        }
        if !connect && self.ready && out.epoch != self.epoch {
            // The store actor restarted and lost the session: start over
            // at the next tick.
            tracing::warn!("sync session state lost (store restarted): saying hello again");
            self.lost_session = true;
        }
        Some(out)
    }

    async fn received(&mut self, payload: &[u8]) {
        let msg = match v1::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                self.metrics
                    .sync_rejected
                    .get_or_create(&[("reason", e.reason())])
                    .inc();
                tracing::warn!(error = %e, "undecodable message on the ack topic");
                return;
            }
        };
        if msg.node() != self.node {
            self.metrics
                .sync_rejected
                .get_or_create(&[("reason", "wrong_node")])
                .inc();
            return;
        }
        self.metrics
            .sync_received
            .get_or_create(&[("kind", kind(&msg))])
            .inc();
        match &msg {
            Message::Config(c) => {
                // Not the sync state machine's: the fleet document's.
                if let Some(f) = &self.fleet {
                    let bytes: Vec<u8> = c.sync.clone().into();
                    if f.try_send(tributary_fleet::Receive {
                        from: tributary_fleet::HUB,
                        bytes,
                    })
                    .is_err()
                    {
                        self.metrics
                            .fleet
                            .rejected
                            .get_or_create(&[("reason", "busy")])
                            .inc();
                    }
                }
                return;
            }
            // Alerts first: publish pending alerts before the deltas the
            // Resume releases (one connection keeps publish order).
            Message::Resume(_) => self.alerts_tick().await,
            Message::Ack(a) => {
                if let Some(hlc) = a.alert {
                    self.alert_acked(hlc).await;
                }
            }
            _ => {}
        }
        self.step(SyncEvent::Received(msg)).await;
    }

    fn publish(&mut self, m: &Message) {
        let k = kind(m);
        let t = match m {
            Message::Hello(_) => "hello",
            Message::Delta(_) => "delta",
            Message::Alert(_) => "alert",
            Message::Config(_) => "config",
            // A node never sends these; the state machine does not either.
            Message::Resume(_) | Message::Ack(_) => return,
        };
        self.metrics
            .sync_published
            .get_or_create(&[("kind", k)])
            .inc();
        self.last_publish_ms = now();
        self.unsent.push_back((topic(self.node, t), v1::encode(m)));
        self.flush_unsent();
    }

    fn flush_unsent(&mut self) {
        while let Some((t, bytes)) = self.unsent.pop_front() {
            match self
                .client
                .try_publish(t.clone(), QoS::AtLeastOnce, false, bytes.clone())
            {
                Ok(()) => {}
                Err(_) => {
                    self.unsent.push_front((t, bytes));
                    break;
                }
            }
        }
    }

    /// An anti-entropy round every `digest_interval` (the first one a full
    /// interval after start-up: a session's first `Hello` carries one).
    async fn digest(&mut self) {
        let t = now();
        if self.opts.digest_cells == 0
            || t.saturating_sub(self.last_digest_ms) < ms(self.opts.digest_interval)
        {
            return;
        }
        self.last_digest_ms = t;
        self.step(SyncEvent::Digest).await;
    }

    /// An idle session's `Hello` (see [`UplinkOptions::heartbeat`]). Sent
    /// directly: the hub answers `Resume`, which the state machine takes as
    /// an ack of what it already knows.
    fn heartbeat(&mut self) {
        if now().saturating_sub(self.last_publish_ms) < ms(self.opts.heartbeat) {
            return;
        }
        self.publish(&Message::Hello(tributary_core::codec::v1::Hello {
            node: self.node,
            version_high: self.version_high,
            digest: None,
        }));
    }

    /// Sends pending alerts (up to the window) and re-sends stale ones.
    async fn alerts_tick(&mut self) {
        if !self.ready {
            return;
        }
        let t = now();
        let retransmit = ms(self.opts.retransmit_after);
        let mut resend = Vec::new();
        for a in &mut self.alerts {
            if !a.acked && t.saturating_sub(a.sent_ms) >= retransmit {
                a.sent_ms = t;
                resend.push(a.id);
            }
        }
        let last = self.alerts.last().map(|a| a.id);
        let room = ALERT_WINDOW.saturating_sub(self.alerts.len());
        if room == 0 && resend.is_empty() {
            return;
        }
        // The outbox lists unacknowledged alerts in id order; those already
        // in flight are skipped by id.
        let pending = match self
            .store
            .send(PendingAlerts {
                limit: ALERT_WINDOW,
            })
            .await
        {
            Ok(Ok(p)) => p,
            _ => return,
        };
        for (id, alert) in pending {
            let known = last.is_some_and(|l| id <= l);
            if known && !resend.contains(&id) {
                continue;
            }
            if !known {
                if self.alerts.len() >= ALERT_WINDOW {
                    break;
                }
                self.alerts.push(AlertInFlight {
                    id,
                    hlc: alert.hlc,
                    sent_ms: t,
                    acked: false,
                });
            }
            self.publish(&Message::Alert(alert));
        }
    }

    /// The hub stored the alert `hlc`: forget every alert up to the first
    /// one still unacknowledged.
    async fn alert_acked(&mut self, hlc: Hlc) {
        for a in &mut self.alerts {
            if a.hlc == hlc {
                a.acked = true;
            }
        }
        let done = self.alerts.iter().take_while(|a| a.acked).count();
        if done == 0 {
            return;
        }
        let Some(upto) = self.alerts.get(done - 1).map(|a| a.id) else {
            return;
        };
        if let Ok(Ok(())) = self.store.send(AckAlerts(upto)).await {
            self.alerts.drain(..done);
        }
    }

    fn publish_state(&self, t: u64) {
        let st = self.link.state();
        let code = match st {
            LinkState::Online { .. } => 1,
            LinkState::Offline { .. } => 0,
            LinkState::BackingOff { .. } => 2,
            LinkState::CircuitOpen { .. } => 3,
        };
        self.metrics.uplink_state.set(code);
        let offline = self.link.offline_ms(t);
        self.metrics
            .uplink_offline_seconds
            .set(i64::try_from(offline / 1000).unwrap_or(i64::MAX));
        self.status.update(|s| {
            s.state = st.as_str();
            s.offline_ms = offline;
            s.next_attempt_ms = self.link.next_attempt_ms();
            if !self.ready {
                s.streaming = false;
            }
        });
    }
}

/// Serde for a resolution written as `1s`, `1m`, `1h` or `1d`.
mod resolution_str {
    use serde::{Deserialize, Deserializer};
    use tributary_core::ids::Resolution;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Resolution, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid resolution `{s}` (expected 1s, 1m, 1h or 1d)"
            ))
        })
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "hello",
        Message::Resume(_) => "resume",
        Message::Delta(_) => "delta",
        Message::Ack(_) => "ack",
        Message::Alert(_) => "alert",
        Message::Config(_) => "config",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_all_reported() {
        UplinkOptions::default().validate().unwrap();
        let bad = UplinkOptions {
            host: String::new(),
            keep_alive: Duration::ZERO,
            window: 0,
            backoff_multiplier: f64::NAN,
            ..UplinkOptions::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        for what in ["host", "keep_alive", "window", "backoff_multiplier"] {
            assert!(e.contains(what), "{what} missing from: {e}");
        }
    }

    #[test]
    fn topics_use_the_sixteen_digit_node_id() {
        assert_eq!(
            topic(NodeId(0xab), "delta"),
            "tributary/v1/00000000000000ab/delta"
        );
    }
}
