//! Every Prometheus metric the gateway exports, in one registry, served at
//! `/metrics` in the text format. Names are public API (STYLE.md §5): add
//! and deprecate, never rename. Labels take bounded value sets only (source
//! kinds, reasons, actor names); ids go in log spans. docs/operations.md
//! explains each one.

use std::sync::Arc;

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

/// The gateway's metrics. Cheap to clone (every field is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Readings stored, by source (`tributary_readings_ingested_total`).
    pub readings_ingested: Family<Label1, Counter>,
    /// Submissions refused before the store, by source and reason
    /// (`tributary_readings_rejected_total`): bad bodies, NaN, future
    /// timestamps, bad frames.
    pub readings_rejected: Family<Label2, Counter>,
    /// Submissions whose (source, seq) was already stored
    /// (`tributary_submissions_duplicate_total`), by source.
    pub submissions_duplicate: Family<Label1, Counter>,
    /// Submissions refused for load or shutdown, by source and reason
    /// (`tributary_ingest_refused_total`: `busy`, `shutting_down`,
    /// `store_error` counted by ingest; `mailbox_closed`, `mailbox_timeout`
    /// counted by the sources). The sender keeps the data and retries.
    pub ingest_refused: Family<Label2, Counter>,
    /// Readings accepted by ingest but not yet committed
    /// (`tributary_ingest_pending_readings`).
    pub ingest_pending: Gauge,
    /// Time to commit one group transaction
    /// (`tributary_store_commit_duration_seconds`).
    pub store_commit_seconds: Histogram,
    /// Readings per group transaction (`tributary_store_batch_readings`).
    pub store_batch_readings: Histogram,
    /// Rows removed to stay within the disk budget, by kind
    /// (`tributary_store_evicted_total{kind="raw|bucket_1s|bucket_1m|bucket_1h"}`).
    pub store_evicted: Family<Label1, Counter>,
    /// Bytes the database uses (`tributary_store_disk_bytes`).
    pub store_disk_bytes: Gauge,
    /// The configured budget (`tributary_store_disk_budget_bytes`).
    pub store_disk_budget_bytes: Gauge,
    /// Store operations that failed, by operation
    /// (`tributary_store_errors_total`).
    pub store_errors: Family<Label1, Counter>,
    /// The node's highest aggregate version (`tributary_node_version`).
    pub node_version: Gauge,
    /// The highest version the hub acknowledged
    /// (`tributary_outbox_acked_version`).
    pub outbox_acked_version: Gauge,
    /// Aggregate entries not yet acknowledged by the hub
    /// (`tributary_outbox_pending_entries`).
    pub outbox_pending_entries: Gauge,
    /// Alert transitions, by event (`tributary_alerts_total{event="opened|resolved"}`).
    pub alerts: Family<Label1, Counter>,
    /// Readings the detectors did not score, by reason
    /// (`tributary_detect_skipped_total`: `out_of_order`, `mailbox_full`).
    pub detect_skipped: Family<Label1, Counter>,
    /// Serial frames refused, by reason (`tributary_frames_rejected_total`).
    pub frames_rejected: Family<Label1, Counter>,
    /// Actor restarts by a supervisor, by actor
    /// (`tributary_actor_restarts_total`).
    pub actor_restarts: Family<Label1, Counter>,
    /// HTTP responses, by route pattern and status class
    /// (`tributary_http_responses_total{route, class="2xx|4xx|5xx"}`).
    pub http_responses: Family<Label2, Counter>,
    /// Uplink state: 0 offline, 1 online, 2 backing off, -1 not configured
    /// (`tributary_uplink_state`).
    pub uplink_state: Gauge,
    /// Seconds since the uplink went down, 0 when online
    /// (`tributary_uplink_offline_seconds`).
    pub uplink_offline_seconds: Gauge,
    /// Sync messages published to the hub, by kind
    /// (`tributary_sync_published_total{kind="hello|delta|alert"}`).
    pub sync_published: Family<Label1, Counter>,
    /// Sync messages received from the hub, by kind
    /// (`tributary_sync_received_total{kind="resume|ack"}`).
    pub sync_received: Family<Label1, Counter>,
    /// Messages from the hub refused, by reason
    /// (`tributary_sync_rejected_total{reason}`).
    pub sync_rejected: Family<Label1, Counter>,
    /// Anti-entropy cells the hub asked to repair, re-sent
    /// (`tributary_sync_repaired_cells_total`).
    pub sync_repaired_cells: Counter,
    /// The fleet configuration document's counters
    /// (`tributary_config_sync_{rejected,messages,dropped}_total`).
    pub fleet: tributary_fleet::FleetMetrics,
}

fn seconds_histogram() -> Histogram {
    // 50 µs .. ~3.3 s: SQLite commits with synchronous=FULL on an SD card
    // range from sub-millisecond (page cache) to seconds (a slow card).
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Arc::default(),
            readings_ingested: Family::default(),
            readings_rejected: Family::default(),
            submissions_duplicate: Family::default(),
            ingest_refused: Family::default(),
            ingest_pending: Gauge::default(),
            store_commit_seconds: seconds_histogram(),
            // 1 .. 65536 readings per transaction.
            store_batch_readings: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            store_evicted: Family::default(),
            store_disk_bytes: Gauge::default(),
            store_disk_budget_bytes: Gauge::default(),
            store_errors: Family::default(),
            node_version: Gauge::default(),
            outbox_acked_version: Gauge::default(),
            outbox_pending_entries: Gauge::default(),
            alerts: Family::default(),
            detect_skipped: Family::default(),
            frames_rejected: Family::default(),
            actor_restarts: Family::default(),
            http_responses: Family::default(),
            uplink_state: Gauge::default(),
            uplink_offline_seconds: Gauge::default(),
            sync_published: Family::default(),
            sync_received: Family::default(),
            sync_rejected: Family::default(),
            sync_repaired_cells: Counter::default(),
            fleet: tributary_fleet::FleetMetrics::default(),
        };
        m.uplink_state.set(-1);
        let mut r = Registry::with_prefix("tributary");
        // The registry holds clones of the same `Arc`-backed handles.
        r.register(
            "readings_ingested",
            "Readings stored, by source",
            m.readings_ingested.clone(),
        );
        r.register(
            "readings_rejected",
            "Submissions refused as invalid, by source and reason",
            m.readings_rejected.clone(),
        );
        r.register(
            "submissions_duplicate",
            "Submissions already stored (same source and seq), by source",
            m.submissions_duplicate.clone(),
        );
        r.register(
            "ingest_refused",
            "Submissions refused for load or shutdown, by source and reason",
            m.ingest_refused.clone(),
        );
        r.register(
            "ingest_pending_readings",
            "Readings accepted by ingest and waiting for their commit",
            m.ingest_pending.clone(),
        );
        r.register(
            "store_commit_duration_seconds",
            "Time to commit one group transaction",
            m.store_commit_seconds.clone(),
        );
        r.register(
            "store_batch_readings",
            "Readings per group transaction",
            m.store_batch_readings.clone(),
        );
        r.register(
            "store_evicted",
            "Rows removed to stay within the disk budget, by kind",
            m.store_evicted.clone(),
        );
        r.register(
            "store_disk_bytes",
            "Bytes used by the database",
            m.store_disk_bytes.clone(),
        );
        r.register(
            "store_disk_budget_bytes",
            "Configured disk budget in bytes",
            m.store_disk_budget_bytes.clone(),
        );
        r.register(
            "store_errors",
            "Failed store operations, by operation",
            m.store_errors.clone(),
        );
        r.register(
            "node_version",
            "The node's highest aggregate version",
            m.node_version.clone(),
        );
        r.register(
            "outbox_acked_version",
            "Highest version acknowledged by the hub",
            m.outbox_acked_version.clone(),
        );
        r.register(
            "outbox_pending_entries",
            "Aggregate entries not yet acknowledged by the hub",
            m.outbox_pending_entries.clone(),
        );
        r.register("alerts", "Alert transitions, by event", m.alerts.clone());
        r.register(
            "detect_skipped",
            "Readings not scored by the detectors, by reason",
            m.detect_skipped.clone(),
        );
        r.register(
            "frames_rejected",
            "Serial frames refused, by reason",
            m.frames_rejected.clone(),
        );
        r.register(
            "actor_restarts",
            "Supervised actor restarts, by actor",
            m.actor_restarts.clone(),
        );
        r.register(
            "http_responses",
            "HTTP responses, by route and status class",
            m.http_responses.clone(),
        );
        r.register(
            "uplink_state",
            "Uplink: 0 offline, 1 online, 2 backing off, 3 circuit open, -1 not configured",
            m.uplink_state.clone(),
        );
        r.register(
            "uplink_offline_seconds",
            "Seconds since the uplink went down (0 when online)",
            m.uplink_offline_seconds.clone(),
        );
        r.register(
            "sync_published",
            "Sync messages published to the hub, by kind",
            m.sync_published.clone(),
        );
        r.register(
            "sync_received",
            "Sync messages received from the hub, by kind",
            m.sync_received.clone(),
        );
        r.register(
            "sync_repaired_cells",
            "Anti-entropy cells the hub asked to repair, re-sent",
            m.sync_repaired_cells.clone(),
        );
        r.register(
            "sync_rejected",
            "Messages from the hub refused, by reason",
            m.sync_rejected.clone(),
        );
        m.fleet.register(&mut r);
        m.registry = Arc::new(r);
        m
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_has_prefixed_names_units_and_labels() {
        let m = Metrics::new();
        m.readings_ingested
            .get_or_create(&[("source", "http")])
            .inc_by(3);
        m.readings_rejected
            .get_or_create(&[("source", "mqtt"), ("reason", "non_finite")])
            .inc();
        m.store_commit_seconds.observe(0.002);
        let text = m.encode();
        assert!(
            text.contains("tributary_readings_ingested_total{source=\"http\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "tributary_readings_rejected_total{source=\"mqtt\",reason=\"non_finite\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("tributary_store_commit_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("tributary_uplink_state -1"), "{text}");
    }
}
