//! A local MQTT subscription for off-the-shelf devices that publish
//! readings to a broker next to the gateway (JSON or CBOR bodies, see
//! [`reading::parse_body`](crate::reading::parse_body)).
//!
//! Entry point: [`run`] with [`LocalMqttOptions`].
//!
//! - One rumqttc `AsyncClient` + `EventLoop`, polled by this source's task
//!   only. Subscriptions are QoS 1 with manual acks: a message's PUBACK is
//!   sent only once ingest says it is durable, or refused it as invalid
//!   (final). A message that is not acknowledged stays with the broker,
//!   which redelivers it after a reconnect (with `clean_session = false`,
//!   the default, it also keeps messages published while the gateway is
//!   away; a non-persistent broker loses them when it restarts).
//! - Messages are handled one at a time, in arrival order, so PUBACKs go
//!   out in order as MQTT 3.1.1 asks. The event loop keeps being polled
//!   while a submission waits (keep-alive pings continue); received messages
//!   queue up to `max_queue`, after which the source stops reading from the
//!   broker until the queue drains (TCP backpressure, no drops).
//! - **Exactly once needs an origin**: a body with `source` and `seq` is
//!   deduplicated by the store, so a redelivered message is not counted
//!   twice. A body without them is counted each time it arrives (QoS 1 is
//!   at-least-once).
//! - Bodies that do not parse are counted in
//!   `tributary_readings_rejected_total{source="mqtt", reason}` (`bad_json`,
//!   `bad_cbor`, `bad_origin`), logged, and acknowledged: a broken body does
//!   not get better when redelivered.
//! - A PUBACK belongs to the connection that delivered the message: after a
//!   reconnect, messages from the old connection are still ingested but not
//!   acknowledged (the packet id may now name another message); the broker
//!   redelivers them and the store's dedup absorbs the copy.
//! - When the broker goes away, the source reconnects with a capped
//!   backoff and subscribes again on every new connection.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix::Recipient;
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode};
use tokio::sync::watch;

use super::{Backoff, SourceError, Verdict, duration_str, stopped, submit, wall_now};
use crate::ingest::Submit;
use crate::metrics::Metrics;
use crate::reading::{SourceKind, parse_body};

const KIND: SourceKind = SourceKind::Mqtt;

/// Options of the local MQTT source.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalMqttOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; must be stable for the broker to keep the session.
    pub client_id: String,
    /// Topic filters to subscribe to (`+` and `#` wildcards allowed).
    pub topics: Vec<String>,
    /// Keep-alive interval (whole seconds, at least 1 s; `0s` disables).
    #[serde(with = "duration_str")]
    pub keep_alive: Duration,
    /// Ask the broker to forget the session on disconnect. `false` keeps
    /// unacknowledged and offline messages for the gateway.
    pub clean_session: bool,
    /// First wait before reconnecting.
    #[serde(with = "duration_str")]
    pub reconnect_min: Duration,
    /// Longest wait between reconnect attempts.
    #[serde(with = "duration_str")]
    pub reconnect_max: Duration,
    /// Largest message accepted from the broker, in bytes.
    pub max_packet_bytes: usize,
    /// Messages held while ingest is busy before reading from the broker
    /// pauses.
    pub max_queue: usize,
}

impl Default for LocalMqttOptions {
    fn default() -> Self {
        LocalMqttOptions {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "tributary-edge-local".into(),
            topics: vec!["sensors/+/readings".into()],
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            max_packet_bytes: 256 * 1024,
            max_queue: 256,
        }
    }
}

impl LocalMqttOptions {
    /// Checks every option (all problems at once); rumqttc panics on some
    /// invalid settings, so they are refused here first.
    pub fn validate(&self) -> Result<(), SourceError> {
        let mut problems = Vec::new();
        if self.host.is_empty() {
            problems.push("host is empty".to_owned());
        }
        if self.client_id.is_empty() && !self.clean_session {
            problems.push("client_id is required unless clean_session = true".to_owned());
        }
        if self.topics.is_empty() {
            problems.push("topics is empty".to_owned());
        }
        for t in &self.topics {
            if !rumqttc::valid_filter(t) {
                problems.push(format!("`{t}` is not a valid topic filter"));
            }
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            problems.push(format!(
                "keep_alive = {:?} (at least 1s, or 0s to disable)",
                self.keep_alive
            ));
        }
        if self.max_queue == 0 {
            problems.push("max_queue must be at least 1".to_owned());
        }
        if self.max_packet_bytes < 1024 {
            problems.push("max_packet_bytes must be at least 1024".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SourceError::Config {
                source_kind: "mqtt",
                detail: problems.join("; "),
            })
        }
    }

    fn client_options(&self) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(self.clean_session)
            .set_manual_acks(true)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        o
    }
}

/// A received message and the connection it came on.
struct Received {
    connection: u64,
    publish: Publish,
}

type InFlight = Pin<Box<dyn Future<Output = Verdict>>>;

/// Subscribes and ingests until `shutdown`; see the [module docs](self).
///
/// Returns `Ok(())` on shutdown or when ingest is shutting down, `Err` for
/// invalid options. An unreachable broker is retried.
pub async fn run(
    opts: LocalMqttOptions,
    ingest: Recipient<Submit>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    opts.validate()?;
    let broker = format!("{}:{}", opts.host, opts.port);
    // The request channel carries our PUBACKs and SUBSCRIBEs; it is drained
    // by the same poll loop, so try_* calls never wait on ourselves.
    let (client, mut eventloop) = AsyncClient::new(opts.client_options(), 64);
    let filters: Vec<SubscribeFilter> = opts
        .topics
        .iter()
        .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
        .collect();
    let mut reconnect = Backoff::new(opts.reconnect_min, opts.reconnect_max);
    let mut connection: u64 = 0;
    let mut connected = false;
    let mut queue: VecDeque<Received> = VecDeque::new();
    let mut in_flight: Option<(Received, InFlight)> = None;
    // PUBACKs the request channel had no room for. The event loop drains
    // that channel only between incoming packets it has buffered, so under
    // load it can fill; an ack dropped there would leave the message
    // unacknowledged until the next reconnect (holding one of the broker's
    // in-flight slots meanwhile). Kept here and retried each turn instead.
    let mut unsent_acks: VecDeque<Received> = VecDeque::new();
    tracing::info!(broker = %broker, topics = ?opts.topics, "mqtt source starting");

    loop {
        while let Some(msg) = unsent_acks.pop_front() {
            if !ack(&client, &msg, connected, connection) {
                unsent_acks.push_front(msg);
                break;
            }
        }
        if in_flight.is_none()
            && let Some(msg) = queue.pop_front()
        {
            in_flight = start(
                msg,
                &client,
                connected,
                connection,
                &ingest,
                &metrics,
                &mut unsent_acks,
            );
        }
        let reading_paused = queue.len() >= opts.max_queue;
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            verdict = async {
                match in_flight.as_mut() {
                    Some((_, fut)) => fut.await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((msg, _)) = in_flight.take() else { continue };
                match verdict {
                    Verdict::ShuttingDown => break,
                    Verdict::Durable(_) | Verdict::Rejected(_) => {
                        if !ack(&client, &msg, connected, connection) {
                            unsent_acks.push_back(msg);
                        }
                    }
                }
            }
            event = eventloop.poll(), if !reading_paused => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connection += 1;
                    // Acks of the old connection are void (its packet ids
                    // may now name other messages); the broker redelivers.
                    unsent_acks.clear();
                    connected = true;
                    reconnect.reset();
                    tracing::info!(broker = %broker, session_present = ack.session_present, "mqtt connected");
                    // Subscribing on every connection is idempotent and covers
                    // a broker that lost the session.
                    if let Err(e) = client.try_subscribe_many(filters.clone()) {
                        tracing::error!(error = %e, "mqtt subscribe request failed");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        tracing::error!(broker = %broker, codes = ?ack.return_codes, "mqtt broker refused a subscription");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    queue.push_back(Received { connection, publish });
                }
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    let delay = reconnect.next_delay();
                    tracing::warn!(broker = %broker, error = %e, retry_in = ?delay, "mqtt connection lost");
                    tokio::select! {
                        biased;
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            },
        }
    }
    // Leave politely when we can: the broker then keeps the session without
    // waiting for the keep-alive to expire. Unacknowledged messages stay with
    // it for next time.
    if connected {
        tributary_service::mqtt_disconnect(&client, &mut eventloop).await;
    }
    tracing::info!(broker = %broker, queued = queue.len(), "mqtt source stopped");
    Ok(())
}

/// Parses a message and starts its submission; a body that does not parse
/// is counted and acknowledged at once (`None`).
fn start(
    msg: Received,
    client: &AsyncClient,
    connected: bool,
    connection: u64,
    ingest: &Recipient<Submit>,
    metrics: &Metrics,
    unsent_acks: &mut VecDeque<Received>,
) -> Option<(Received, InFlight)> {
    match parse_body(None, &msg.publish.payload, wall_now()) {
        Ok(submission) => {
            let what = match &submission.origin {
                Some(o) => format!("topic {} ({} seq {})", msg.publish.topic, o.source, o.seq),
                None => format!("topic {}", msg.publish.topic),
            };
            let ingest = ingest.clone();
            let metrics = metrics.clone();
            let fut: InFlight =
                Box::pin(async move { submit(&ingest, KIND, submission, &metrics, &what).await });
            Some((msg, fut))
        }
        Err(e) => {
            metrics
                .readings_rejected
                .get_or_create(&[("source", KIND.as_str()), ("reason", e.reason)])
                .inc();
            tracing::warn!(topic = %msg.publish.topic, reason = e.reason, error = %e, "mqtt message rejected");
            if !ack(client, &msg, connected, connection) {
                unsent_acks.push_back(msg);
            }
            None
        }
    }
}

/// Queues the PUBACK if the message came on the current connection.
/// `false` means "no room in the request channel now: try again later";
/// a message of an earlier connection is not acknowledged (the broker
/// redelivers it) and counts as done.
fn ack(client: &AsyncClient, msg: &Received, connected: bool, connection: u64) -> bool {
    if !connected || msg.connection != connection {
        tracing::debug!(topic = %msg.publish.topic, "message from an earlier connection: not acknowledged, the broker redelivers it");
        return true;
    }
    match client.try_ack(&msg.publish) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "mqtt PUBACK deferred: request channel full");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_options_are_refused_before_rumqttc_sees_them() {
        let bad = LocalMqttOptions {
            client_id: String::new(),
            topics: vec!["a/#/b".into()],
            keep_alive: Duration::from_millis(500),
            ..LocalMqttOptions::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        for word in ["client_id", "a/#/b", "keep_alive"] {
            assert!(err.contains(word), "{err}");
        }
        assert!(LocalMqttOptions::default().validate().is_ok());
        let parsed: LocalMqttOptions =
            serde_json::from_str(r#"{"port": 1884, "keep_alive": "10s"}"#).unwrap();
        assert_eq!(parsed.port, 1884);
        assert_eq!(parsed.keep_alive, Duration::from_secs(10));
        assert!(serde_json::from_str::<LocalMqttOptions>(r#"{"url": "x"}"#).is_err());
    }
}
