//! Every Prometheus metric the hub exports, in one registry, served at
//! `/metrics` in the text format. Names are public API (STYLE.md §5): add
//! and deprecate, never rename. Labels take bounded value sets only
//! (message kinds, reasons, routes); node ids go in log spans, except the
//! per-node lag gauge, whose cardinality is the fleet size by design.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label, `("name", "value")`, both from bounded sets.
pub type Label1 = [(&'static str, &'static str); 1];
/// Two labels.
pub type Label2 = [(&'static str, &'static str); 2];
/// The `node` label (16 hex digits) of the per-node families, whose
/// cardinality is the fleet size by design.
pub type NodeLabel = [(&'static str, String); 1];

/// The hub's metrics. Cheap to clone (every field is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Sync messages received, by kind (`tributary_hub_sync_messages_total{kind}`).
    pub sync_messages: Family<Label1, Counter>,
    /// Sync messages refused, by reason
    /// (`tributary_hub_sync_rejected_total{reason}`): undecodable payloads,
    /// a topic naming another node, invalid deltas, unexpected kinds.
    pub sync_rejected: Family<Label1, Counter>,
    /// Anti-entropy cells whose hash differed from a node's digest, asked
    /// to be re-sent (`tributary_hub_sync_repair_requests_total`): data the
    /// store had acknowledged and no longer holds.
    pub repair_requests: Counter,
    /// The fleet configuration document's counters
    /// (`tributary_hub_config_sync_{rejected,messages,dropped}_total`).
    pub fleet: tributary_fleet::FleetMetrics,
    /// API requests refused by the bearer-token check, by reason
    /// (`tributary_hub_http_auth_refused_total{reason="missing|invalid|forbidden"}`).
    pub http_auth_refused: Family<Label1, Counter>,
    /// MQTT connections the embedded broker's gate refused or closed, by
    /// reason (`tributary_hub_broker_refused_total{reason}`: `bad_password`,
    /// `unknown_node`, `foreign_topic`, `foreign_subscription`, …).
    pub broker_refused: crate::mqtt_gate::RefusedFamily,
    /// Delta entries merged, by outcome
    /// (`tributary_hub_merge_entries_total{outcome="applied|stale"}`).
    pub merge_entries: Family<Label1, Counter>,
    /// Time to commit one merge group (`tributary_hub_merge_commit_seconds`).
    pub merge_commit_seconds: Histogram,
    /// Deltas per merge transaction (`tributary_hub_merge_group_deltas`).
    pub merge_group_deltas: Histogram,
    /// Merge transactions that failed (`tributary_hub_merge_errors_total`).
    pub merge_errors: Counter,
    /// Alerts received, by outcome
    /// (`tributary_hub_alerts_total{outcome="new|duplicate"}`).
    pub alerts: Family<Label1, Counter>,
    /// Whether the hub's MQTT client is connected to the broker
    /// (`tributary_hub_mqtt_connected`, 0 or 1).
    pub mqtt_connected: Gauge,
    /// Publishes the hub could not hand to its MQTT client
    /// (`tributary_hub_publish_failed_total`); the node re-sends.
    pub publish_failed: Counter,
    /// HTTP responses, by route pattern and status class
    /// (`tributary_hub_http_responses_total{route, class="2xx|4xx|5xx"}`).
    pub http_responses: Family<Label2, Counter>,
    /// Per node, versions received but not yet contiguous
    /// (`tributary_hub_node_lag_versions{node}` = version_high − watermark),
    /// refreshed from the store at each scrape.
    pub node_lag_versions: Family<NodeLabel, Gauge>,
    /// Per node, seconds since the hub last heard from it
    /// (`tributary_hub_node_last_seen_age_seconds{node}`), refreshed at each
    /// scrape; absent for a node never seen.
    pub node_last_seen_age_seconds: Family<NodeLabel, Gauge<f64, AtomicU64>>,
}

fn seconds_histogram() -> Histogram {
    // 50 µs .. ~3.3 s: a group commit with synchronous=FULL.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Arc::default(),
            sync_messages: Family::default(),
            sync_rejected: Family::default(),
            repair_requests: Counter::default(),
            fleet: tributary_fleet::FleetMetrics::default(),
            http_auth_refused: Family::default(),
            broker_refused: Family::default(),
            merge_entries: Family::default(),
            merge_commit_seconds: seconds_histogram(),
            // 1 .. 4096 deltas per transaction.
            merge_group_deltas: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            merge_errors: Counter::default(),
            alerts: Family::default(),
            mqtt_connected: Gauge::default(),
            publish_failed: Counter::default(),
            http_responses: Family::default(),
            node_lag_versions: Family::default(),
            node_last_seen_age_seconds: Family::default(),
        };
        let mut r = Registry::with_prefix("tributary_hub");
        // The registry holds clones of the same `Arc`-backed handles.
        r.register(
            "sync_messages",
            "Sync messages received, by kind",
            m.sync_messages.clone(),
        );
        r.register(
            "sync_rejected",
            "Sync messages refused, by reason",
            m.sync_rejected.clone(),
        );
        m.fleet.register(&mut r);
        r.register(
            "broker_refused",
            "MQTT connections the embedded broker's gate refused or closed, by reason",
            m.broker_refused.clone(),
        );
        r.register(
            "http_auth_refused",
            "API requests refused by the bearer-token check, by reason",
            m.http_auth_refused.clone(),
        );
        r.register(
            "sync_repair_requests",
            "Anti-entropy cells asked to be re-sent (data the store lost)",
            m.repair_requests.clone(),
        );
        r.register(
            "merge_entries",
            "Delta entries merged, by outcome",
            m.merge_entries.clone(),
        );
        r.register(
            "merge_commit_seconds",
            "Time to commit one merge group",
            m.merge_commit_seconds.clone(),
        );
        r.register(
            "merge_group_deltas",
            "Deltas per merge transaction",
            m.merge_group_deltas.clone(),
        );
        r.register(
            "merge_errors",
            "Merge transactions that failed",
            m.merge_errors.clone(),
        );
        r.register("alerts", "Alerts received, by outcome", m.alerts.clone());
        r.register(
            "mqtt_connected",
            "Whether the hub's MQTT client is connected",
            m.mqtt_connected.clone(),
        );
        r.register(
            "publish_failed",
            "Publishes the MQTT client refused",
            m.publish_failed.clone(),
        );
        r.register(
            "http_responses",
            "HTTP responses, by route and status class",
            m.http_responses.clone(),
        );
        r.register(
            "node_lag_versions",
            "Per node, versions received but not yet contiguous (version_high - watermark)",
            m.node_lag_versions.clone(),
        );
        r.register(
            "node_last_seen_age_seconds",
            "Per node, seconds since the hub last heard from it",
            m.node_last_seen_age_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
